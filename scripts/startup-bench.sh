#!/usr/bin/env bash
# Time a real program's start from a lazily pulled converted image (issue 17), the way
# nydus-snapshotter's FUSE mode runs containers: the image pushed to a local docker-registry, its
# merged bootstrap mounted by nydusd's registry backend through a proxy that holds every request
# back by DELAY_MS (so that round trips show) and counts them, an overlayfs on top, `runc run`.
#
# Each image is converted (release build) in up to three ways:
#   none        --prefetch-patterns none: no prefetch table
#   list        --prefetch-patterns scripts/startup/IMAGE.list: the hand-written startup list
#   entrypoint  --prefetch-entrypoint: the list derived from the image (skipped, with a message,
#               when `convert --help` has no such flag)
# and each started with nydusd's prefetch as nydus-snapshotter configures it by default
# (fs_prefetch enabled, prefetch_all, 8 threads, 1 MiB merging, amplify_io 1 MiB) and with
# fs_prefetch disabled, with every nydusd version the tests know. The runner is the ignored test
# `startup_bench` in tests/startup.rs, which prints one JSON line per run; this script prints the
# medians as a Markdown table (and writes it to OUT_MD when set). Nothing is asserted.
#
# Per run: time from the start of nydusd's mount to the program's first output; blob GETs and
# their bytes that reached the proxy before that output (the critical path: demand reads, plus
# prefetch reads when prefetch is on) and until the program ended.
#
# Usage: scripts/startup-bench.sh [IMAGE...]   default: debian-python debian-minbase
# Environment: RUNS (default 3), DELAY_MS (default 20), NYDUSD (versions, comma-separated; default
#              both), OUT_MD (also write the table there), NYDUS_OFFLINE_CACHE, BENCH_TMP.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CACHE="${NYDUS_OFFLINE_CACHE:-/var/cache/nydus-offline}"
RUNS="${RUNS:-3}"
DELAY_MS="${DELAY_MS:-20}"

images=("$@")
((${#images[@]})) || images=(debian-python debian-minbase)

# What each image runs and prints: a JSON argument array and the expected output.
program_of() {
  case "$1" in
    # The image's own command (Cmd), so that --prefetch-entrypoint is judged on what it reads.
    debian-python) echo '["/usr/bin/python3", "/app/main.py"]' ;;
    # An ELF entrypoint: Cmd is /bin/bash; -c makes it print and exit without a terminal.
    debian-minbase) echo '["/bin/bash", "-c", "echo ok"]' ;;
    *) echo "startup-bench: no program known for $1 (add it to program_of)" >&2; return 1 ;;
  esac
}
expected_of() {
  case "$1" in
    debian-python) printf 'lines: 5000\npython: 3.11.2\n' ;;
    debian-minbase) printf 'ok\n' ;;
  esac
}

log() { printf 'startup-bench: %s\n' "$*" >&2; }

bash scripts/install-readers.sh >/dev/null
bash scripts/build-corpus.sh "${images[@]}"
cargo build --release --locked -q
OURS="$PWD/target/release/nydus-offline"

TMP="${BENCH_TMP:-$(mktemp -d /var/tmp/nydus-offline-startup.XXXXXX)}"
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT

has_entrypoint=1
if ! "$OURS" convert --help | grep -q -- '--prefetch-entrypoint'; then
  has_entrypoint=0
  log "nydus-offline convert has no --prefetch-entrypoint yet: that mode is skipped"
fi

results="$TMP/results.jsonl"
: >"$results"
for image in "${images[@]}"; do
  input="$CACHE/corpus/$image.oci"
  program="$(program_of "$image")"
  expected="$(expected_of "$image"; echo x)"
  expected="${expected%x}"
  entries=()
  convert() {
    local mode="$1"
    shift
    log "converting $image ($mode)"
    rm -rf "$TMP/$image-$mode.oci"
    "$OURS" convert --quiet "$@" "$input" "$TMP/$image-$mode.oci"
    entries+=("$image/$mode=$TMP/$image-$mode.oci")
  }
  convert none --prefetch-patterns none
  list="scripts/startup/$image.list"
  if [[ -f "$list" ]]; then
    convert list --prefetch-patterns "$list"
  else
    log "no $list: the hand-written list mode is skipped for $image"
  fi
  if ((has_entrypoint)); then
    convert entrypoint --prefetch-entrypoint
  fi
  joined="$(IFS=';'; echo "${entries[*]}")"
  log "starting $image: ${#entries[@]} conversions x fs_prefetch on/off x nydusd ${NYDUSD:-all} x $RUNS rounds, ${DELAY_MS} ms per request"
  STARTUP_BENCH_IMAGES="$joined" \
    STARTUP_BENCH_ARGS="$program" \
    STARTUP_BENCH_EXPECT="$expected" \
    STARTUP_BENCH_DELAY_MS="$DELAY_MS" \
    STARTUP_BENCH_RUNS="$RUNS" \
    STARTUP_BENCH_NYDUSD="${NYDUSD:-}" \
    cargo test --locked -q --test startup -- --ignored --exact startup_bench --nocapture |
    sed -n 's/^STARTUP-BENCH //p' >>"$results"
done

python3 - "$results" "${OUT_MD:-}" "$RUNS" "$DELAY_MS" <<'EOF'
import collections, json, statistics, sys
results, out, runs, delay = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = collections.defaultdict(list)
order = []
for line in open(results):
    r = json.loads(line)
    key = (r["image"], r["nydusd"], r["fs_prefetch"])
    if key not in order:
        order.append(key)
    rows[key].append(r)
mib = lambda b: b / (1 << 20)
lines = [
    "## Container start from a lazily pulled image",
    "",
    f"Measured by `scripts/startup-bench.sh`: runc over an overlay on nydusd's registry mount, every registry",
    f"request delayed {delay} ms by a proxy; median of {runs} runs. *to output*: from the start of the mount to",
    "the program's first output; *before output*: blob GETs (and their MiB) the proxy saw by then; *all*: until",
    "the program ended. fs_prefetch on = nydus-snapshotter's default (prefetch_all, 8 threads, 1 MiB merging).",
    "*mounted*, *runc started*: when nydusd's mount appeared and when `runc run` began (overlay mounted), from",
    "the same start.",
    "",
    "| image / prefetch table | nydusd | fs_prefetch | to output | mounted | runc started | blob GETs before output | MiB before output | blob GETs, all | MiB, all | failed runs |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]
for key in order:
    rs = rows[key]
    good = [r for r in rs if r["ok"] and r["to_output_ms"] is not None]
    failed = len(rs) - len(good)
    if not good:
        lines.append(f"| {key[0]} | {key[1]} | {'on' if key[2] else 'off'} | – | – | – | – | – | – | – | {failed} |")
        continue
    med = lambda f: statistics.median(f(r) for r in good)
    lines.append(
        f"| {key[0]} | {key[1]} | {'on' if key[2] else 'off'} "
        f"| {med(lambda r: r['to_output_ms']):.0f} ms "
        f"({min(r['to_output_ms'] for r in good):.0f}–{max(r['to_output_ms'] for r in good):.0f}) "
        f"| {med(lambda r: r['mounted_ms']):.0f} ms "
        f"| {med(lambda r: r['runc_started_ms']):.0f} ms "
        f"| {med(lambda r: r['blob_requests_to_output']):.0f} "
        f"| {med(lambda r: mib(r['blob_bytes_to_output'])):.1f} "
        f"| {med(lambda r: r['blob_requests']):.0f} "
        f"| {med(lambda r: mib(r['blob_bytes'])):.1f} of {mib(good[0]['image_blob_bytes']):.1f} "
        f"| {failed} |"
    )
text = "\n".join(lines) + "\n"
print(text)
if out:
    open(out, "w").write(text)
EOF
