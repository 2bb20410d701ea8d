#!/usr/bin/env bash
# Converting a mirror (issue 18): six related images in one OCI layout (scripts/corpus/mirror.py:
# debian-minbase, debian-python, debian-devstack and three variants sharing their layers),
# converted one by one, in one --all-images run, with a layer cache cold and warm, and as four
# shards at once on one shared cache followed by the --all-images run that assembles them.
# Whole-process wall time and peak RSS (GNU time); every output is compared with the one-run
# output (diff -r), so a fast wrong answer cannot pass. Prints a Markdown table.
#
# Usage: scripts/mirror-bench.sh        Environment: NYDUS_OFFLINE_CACHE, BENCH_TMP, OUT_MD.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CACHE="${NYDUS_OFFLINE_CACHE:-/var/cache/nydus-offline}"
bash scripts/build-corpus.sh debian-minbase debian-python debian-devstack
[[ -f "$CACHE/corpus/mirror.oci/index.json" ]] || python3 scripts/corpus/mirror.py "$CACHE/corpus" >/dev/null
MIRROR="$CACHE/corpus/mirror.oci"
cargo build --release --locked -q
OURS="$PWD/target/release/nydus-offline"
TMP="${BENCH_TMP:-$(mktemp -d /var/tmp/nydus-offline-mirror.XXXXXX)}"
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT
tags=$(python3 -c "import json,sys; print(' '.join(m['annotations']['org.opencontainers.image.ref.name'] for m in json.load(open(sys.argv[1]))['manifests']))" "$MIRROR/index.json")

# timed NAME CMD...: run, record "NAME seconds max-rss-KiB".
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$TMP/time" "$@" >/dev/null
  echo "$name $(cat "$TMP/time")" >>"$TMP/results"
}
same() { diff -r "$TMP/all" "$1" >/dev/null || { echo "mirror-bench: $1 differs from the one-run output" >&2; exit 1; }; }
: >"$TMP/results"

timed all-images "$OURS" convert -q --all-images "$MIRROR" "$TMP/all"
start=$(date +%s.%N); rss=0
for tag in $tags; do
  /usr/bin/time -f "%M" -o "$TMP/time" "$OURS" convert -q --image "$tag" --tag "$tag" "$MIRROR" "$TMP/one-$tag" >/dev/null
  r=$(cat "$TMP/time"); ((r > rss)) && rss=$r
done
echo "one-by-one $(echo "$(date +%s.%N) - $start" | bc) $rss" >>"$TMP/results"
timed cache-cold "$OURS" convert -q --all-images --cache "$TMP/cache" "$MIRROR" "$TMP/cold"
same "$TMP/cold"
timed cache-warm "$OURS" convert -q --all-images --cache "$TMP/cache" "$MIRROR" "$TMP/warm"
same "$TMP/warm"
start=$(date +%s.%N); pids=()
for i in 0 1 2 3; do
  "$OURS" convert -q --all-images --shard "$i/4" --cache "$TMP/shared" "$MIRROR" "$TMP/shard-$i" >/dev/null & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
echo "4-shards $(echo "$(date +%s.%N) - $start" | bc) -" >>"$TMP/results"
timed assemble "$OURS" convert -q --all-images --cache "$TMP/shared" "$MIRROR" "$TMP/assembled"
same "$TMP/assembled"
stored() { du -sb "$1" | cut -f1; }

python3 - "$TMP/results" "$(stored "$TMP/all")" "${OUT_MD:-}" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
out = ["| run | wall time | peak RSS |", "|---|---|---|"]
what = {
    "all-images": "one `--all-images` run",
    "one-by-one": "six runs, one image each (`--image TAG`)",
    "cache-cold": "`--all-images --cache DIR`, cache empty",
    "cache-warm": "the same again, cache warm (nothing converted)",
    "4-shards": "four `--shard I/4 --cache DIR` runs at once, own outputs",
    "assemble": "then `--all-images --cache DIR` assembling them",
}
for name, secs, rss in rows:
    rss = "-" if rss == "-" else f"{int(rss) / 1024:.0f} MiB"
    out.append(f"| {what[name]} | {float(secs):.2f} s | {rss} |")
out.append("")
out.append(f"Output layout: {int(sys.argv[2]) / 2**20:.0f} MiB; every cached, warm and assembled output byte-identical to the one-run output.")
text = "\n".join(out) + "\n"
print(text)
if sys.argv[3]:
    open(sys.argv[3], "w").write(text)
PY
