#!/usr/bin/env bash
# Time whole conversions of the benchmark corpus, side by side, and write BENCHMARKS.md.
#
# For each image, RUNS rounds (default 3) each run, in turn:
#   ours       nydus-offline convert (release build; v6, zstd, 1 MiB chunks, blake3: the defaults)
#   nydus-image  nydus-image 2.2.0 doing the same job: `create --type targz-rafs` per gzip layer
#              (tar-rafs for uncompressed ones), then `merge`; v6, zstd, 0x100000, blake3
#              (both with FS_VERSION=5: RAFS v5)
#   limit      the machine's limit for the same bytes: every layer through the fastest decoder
#              Debian ships (igzip -dc for gzip, zstd -dc for zstd), all piped into
#              `zstd -3 -T0 -q > /dev/null`
# and records wall time and peak RSS (/usr/bin/time -v). The table (median, min–max, peak RSS)
# goes to BENCHMARKS.md with the machine and the date.
#
# Usage: scripts/bench.sh [IMAGE...]     default: debian-python debian-devstack large-files many-small-files
#        IMAGE-x2 (large-files-x2, many-small-files-x2): IMAGE's one layer doubled, built once.
# Environment: FS_VERSION (6, or 5 for RAFS v5 on both sides), RUNS (default 3), NYDUS_OFFLINE_CACHE (corpus and nydus binaries), OUT_MD
#              (default BENCHMARKS.md), BENCH_TMP (scratch dir, default under /var/tmp),
#              STARTUP (default 1; 0 skips the container-start section, scripts/startup-bench.sh,
#              run on STARTUP_IMAGES, default debian-python debian-minbase, and added to the table's page).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CACHE="${NYDUS_OFFLINE_CACHE:-/var/cache/nydus-offline}"
RUNS="${RUNS:-3}"
FS_VERSION="${FS_VERSION:-6}"
OUT_MD="${OUT_MD:-BENCHMARKS.md}"
# Layers of the image tagged latest in an OCI layout: "mediaType<TAB>path" per line.
layers_of() {
  local dir="$1" m
  m="$(jq -r '.manifests[0].digest' "$dir/index.json")"
  jq -r '.layers[] | "\(.mediaType)\t\(.digest)"' "$dir/blobs/sha256/${m#sha256:}" |
    while IFS=$'\t' read -r mt dg; do printf '%s\t%s\n' "$mt" "$dir/blobs/sha256/${dg#sha256:}"; done
}

run_ours() {
  rm -rf "$TMP/ours.out"
  "$OURS" convert --quiet --fs-version "$FS_VERSION" "$1" "$TMP/ours.out" >/dev/null
}

run_reference() {
  local dir="$1" work="$TMP/ref" boots=() i=0 mt path type
  rm -rf "$work" && mkdir -p "$work/blobs"
  while IFS=$'\t' read -r mt path; do
    case "$mt" in
      *gzip) type=targz-rafs ;;
      *) type=tar-rafs ;;
    esac
    "$NYDUS_BIN/nydus-image" create --log-level error --type "$type" --fs-version "$FS_VERSION" \
      --compressor zstd --chunk-size 0x100000 --digester blake3 \
      --bootstrap "$work/layer$i.boot" --blob-dir "$work/blobs" "$path" >/dev/null
    boots+=("$work/layer$i.boot")
    i=$((i + 1))
  done < <(layers_of "$dir")
  "$NYDUS_BIN/nydus-image" merge --log-level error --bootstrap "$work/merged.boot" "${boots[@]}" >/dev/null
}

run_limit() {
  local dir="$1"
  while IFS=$'\t' read -r mt path; do
    case "$mt" in
      *gzip) igzip -dc "$path" ;;
      *zstd) zstd -dc -q "$path" ;;
      *) cat "$path" ;;
    esac
  done < <(layers_of "$dir") | zstd -3 -T0 -q >/dev/null
}

# One timed run, when measure() calls this script again.
if [[ "${1:-}" == --run ]]; then
  "run_${2/-/_}" "$3"
  exit
fi

images=("$@")
((${#images[@]})) || images=(debian-python debian-devstack large-files many-small-files)

for tool in igzip zstd jq /usr/bin/time; do
  command -v "$tool" >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq isal zstd jq time >/dev/null
    break
  }
done
NYDUS_BIN="$(bash scripts/install-readers.sh)"
# NAME-x2 is NAME with its one layer doubled (scripts/double-layer.py): twice the files and
# twice the bytes, to show how time and memory scale.
bases=()
for image in "${images[@]}"; do bases+=("${image%-x2}"); done
bash scripts/build-corpus.sh "${bases[@]}"
for image in "${images[@]}"; do
  [[ "$image" == *-x2 && ! -f "$CACHE/corpus/$image.oci/index.json" ]] || continue
  command -v pigz >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pigz >/dev/null
  base="$CACHE/corpus/${image%-x2}.oci"
  work="$(mktemp -d /var/tmp/nydus-offline-double.XXXXXX)"
  layer="$(layers_of "$base" | cut -f2)"
  [[ "$(wc -l <<<"$layer")" == 1 ]] || { echo "bench: $image: ${image%-x2} has more than one layer" >&2; exit 1; }
  echo "bench: building $image" >&2
  igzip -dc "$layer" >"$work/base.tar"
  python3 scripts/double-layer.py "$work/base.tar" "$work/double.tar"
  rm -f "$work/base.tar"
  COMPRESSOR=pigz python3 scripts/corpus/oci.py "$work/out.oci" --layer "$work/double.tar" >/dev/null
  mv "$work/out.oci" "$CACHE/corpus/$image.oci"
  rm -rf "$work"
done
cargo build --release --locked -q
OURS="$PWD/target/release/nydus-offline"

TMP="${BENCH_TMP:-$(mktemp -d /var/tmp/nydus-offline-bench.XXXXXX)}"
export TMP OURS NYDUS_BIN FS_VERSION
trap 'rm -rf "$TMP"' EXIT
RESULTS="$TMP/results.tsv"
: >"$RESULTS"

# measure IMAGE WHAT DIR: one timed run of run_WHAT (this script again, with --run), appended to
# RESULTS.
measure() {
  local image="$1" what="$2" dir="$3" log="$TMP/time.log"
  /usr/bin/time -v -o "$log" bash "$0" --run "$what" "$dir"
  local wall rss
  wall="$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s }' "$log")"
  rss="$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$log")"
  printf '%s\t%s\t%s\t%s\n' "$image" "$what" "$wall" "$rss" >>"$RESULTS"
  printf '  %-18s %-12s %7.2f s %8d KiB\n' "$image" "$what" "$wall" "$rss" >&2
}

for image in "${images[@]}"; do
  dir="$CACHE/corpus/$image.oci"
  echo "bench: $image ($RUNS rounds)" >&2
  for ((r = 0; r < RUNS; r++)); do
    measure "$image" ours "$dir"
    measure "$image" reference "$dir"
    measure "$image" limit "$dir"
  done
done

# Container starts from lazily pulled images (issue 17): their own script, its table appended.
STARTUP_MD="$TMP/startup.md"
if [[ "${STARTUP:-1}" != 0 ]]; then
  # shellcheck disable=SC2086
  OUT_MD="$STARTUP_MD" BENCH_TMP="$TMP/startup" bash scripts/startup-bench.sh ${STARTUP_IMAGES:-debian-python debian-minbase} >/dev/null
fi

machine="$(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(free -g | awk '/Mem:/ { print $2 }') GiB RAM, Linux $(uname -r)"
python3 - "$RESULTS" "$OUT_MD" "$machine" "$RUNS" "$STARTUP_MD" "$FS_VERSION" <<'EOF'
import os, statistics, sys, datetime, collections
results, out, machine, runs, startup, fs_version = sys.argv[1:7]
rows = collections.defaultdict(list)
order = []
for line in open(results):
    image, what, wall, rss = line.split("\t")
    if image not in order:
        order.append(image)
    rows[(image, what)].append((float(wall), int(rss)))
def cell(image, what):
    runs = rows[(image, what)]
    walls = [w for w, _ in runs]
    rss = max(r for _, r in runs)
    return statistics.median(walls), min(walls), max(walls), rss
lines = [
    "# Benchmarks",
    "",
    f"Measured by `scripts/bench.sh` on {datetime.date.today().isoformat()}: {machine}.",
    f"Whole-process wall time, median of {runs} alternating runs (min–max), and peak RSS over the runs.",
    f"Options everywhere: RAFS v{fs_version}, zstd, 1 MiB chunks, blake3. *limit* = every layer through `igzip -dc`",
    "(gzip) or `zstd -dc`, piped into `zstd -3 -T0 -q > /dev/null`.",
    "",
    "| image | nydus-offline | nydus-image 2.2.0 | limit | ours / limit | speed-up vs nydus-image |",
    "|---|---|---|---|---|---|",
]
for image in order:
    o, r, l = cell(image, "ours"), cell(image, "reference"), cell(image, "limit")
    fmt = lambda c: f"{c[0]:.2f} s ({c[1]:.2f}–{c[2]:.2f}), {c[3] // 1024} MiB"
    lines.append(f"| {image} | {fmt(o)} | {fmt(r)} | {fmt(l)} | {o[0] / l[0]:.2f}x | {r[0] / o[0]:.2f}x |")
text = "\n".join(lines) + "\n"
if os.path.exists(startup):
    text += "\n" + open(startup).read()
try:
    old = open(out).read()
    marker = "\n## Notes"
    if marker in old:
        text += old[old.index(marker):]
except FileNotFoundError:
    pass
open(out, "w").write(text)
print(text)
EOF
