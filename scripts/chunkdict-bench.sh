#!/usr/bin/env bash
# What a chunk dictionary (issue 18, `chunkdict generate`) saves on a mirror of related images:
# total blob bytes stored with and without one, each image converted on its own and all of them
# in one --all-images run. Prints a Markdown table for BENCHMARKS.md.
#
# Usage: scripts/chunkdict-bench.sh [LAYOUT]     default: the corpus's mirror.oci (six images)
# Environment: NYDUS_OFFLINE_CACHE (corpus; scripts/build-corpus.sh and scripts/corpus/mirror.py)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${NYDUS_OFFLINE_CACHE:-/var/cache/nydus-offline}"
mirror="${1:-$CACHE/corpus/mirror.oci}"
if [[ ! -f "$mirror/index.json" ]]; then
  bash "$here/scripts/build-corpus.sh" debian-minbase debian-python debian-devstack >&2
  python3 "$here/scripts/corpus/mirror.py" "$CACHE/corpus" >&2
fi
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin="$here/target/release/nydus-offline"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
blob_bytes() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['totals']['blob_size'])" "$1"; }

start=$(date +%s.%N)
"$bin" chunkdict generate "$mirror" -o "$tmp/dict" --json > "$tmp/dict.json"
dict_seconds=$(echo "$(date +%s.%N) - $start" | bc)
dict_blob=$(python3 - "$tmp/dict" <<'PY'
import json, os, sys
lay = sys.argv[1]
idx = json.load(open(os.path.join(lay, "index.json")))
m = json.load(open(os.path.join(lay, "blobs/sha256", idx["manifests"][0]["digest"][7:])))
print(sum(l["size"] for l in m["layers"] if l["mediaType"].endswith("nydus.blob.v1")))
PY
)
tags=$(python3 -c "import json,sys; print(' '.join(m['annotations']['org.opencontainers.image.ref.name'] for m in json.load(open(sys.argv[1]))['manifests']))" "$mirror/index.json")
alone=0; with=0
for tag in $tags; do
  "$bin" convert "$mirror" "$tmp/a-$tag" --image "$tag" --json > "$tmp/a.json"
  alone=$((alone + $(blob_bytes "$tmp/a.json")))
  "$bin" convert "$mirror" "$tmp/d-$tag" --image "$tag" --json --chunk-dict "bootstrap=$tmp/dict" > "$tmp/d.json"
  with=$((with + $(blob_bytes "$tmp/d.json")))
  rm -rf "$tmp/a-$tag" "$tmp/d-$tag"
done
"$bin" convert "$mirror" "$tmp/all" --all-images --json > "$tmp/all.json"
"$bin" convert "$mirror" "$tmp/all-d" --all-images --json --chunk-dict "bootstrap=$tmp/dict" > "$tmp/all-d.json"
all=$(blob_bytes "$tmp/all.json"); all_d=$(blob_bytes "$tmp/all-d.json")
mib() { python3 -c "print(f'{$1 / 1048576:.1f} MiB')"; }
read -r images dict_chunks <<<"$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['images'], d['dict_chunks'])" "$tmp/dict.json")"
echo "Dictionary: $dict_chunks chunks found in 2 or more of $images images, one blob of $(mib "$dict_blob"), made in ${dict_seconds%???????} s."
echo
echo "| conversion | without dictionary | with dictionary (+ its blob once) | saved |"
echo "|---|---|---|---|"
printf '| each image alone (%s) | %s | %s + %s = %s | %s |\n' "$(echo $tags | wc -w)" "$(mib $alone)" "$(mib $with)" "$(mib $dict_blob)" "$(mib $((with + dict_blob)))" "$(python3 -c "print(f'{1 - ($with + $dict_blob) / $alone:.1%}')")"
printf '| all in one --all-images run | %s | %s + %s = %s | %s |\n' "$(mib $all)" "$(mib $all_d)" "$(mib $dict_blob)" "$(mib $((all_d + dict_blob)))" "$(python3 -c "print(f'{1 - ($all_d + $dict_blob) / $all:.1%}')")"
