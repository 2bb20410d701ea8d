#!/usr/bin/env bash
# Blob size and conversion time of --batch-size (issue 16) on the corpus images, against the
# default (no batches): medians of RUNS runs, release build, printed as a Markdown table for
# BENCHMARKS.md. Also what the same options cost with --encrypt.
#
# Usage: scripts/batch-bench.sh [IMAGE...]     default: many-small-files debian-python
# Environment: RUNS (default 3), NYDUS_OFFLINE_CACHE (corpus, built by scripts/build-corpus.sh)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${NYDUS_OFFLINE_CACHE:-/var/cache/nydus-offline}"
RUNS="${RUNS:-3}"
images=("$@")
((${#images[@]})) || images=(many-small-files debian-python)
bash "$here/scripts/build-corpus.sh" "${images[@]}" >&2
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin="$here/target/release/nydus-offline"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "| image | options | blob bytes | vs default | chunks | time (median of $RUNS) |"
echo "|---|---|---|---|---|---|"
for image in "${images[@]}"; do
  base=""
  for opts in "" "--batch-size 64KiB" "--batch-size 256KiB" "--batch-size 1MiB" "--encrypt" "--encrypt --batch-size 256KiB"; do
    times=()
    for _ in $(seq "$RUNS"); do
      rm -rf "$tmp/out"
      sync
      start=$(date +%s.%N)
      # shellcheck disable=SC2086
      "$bin" convert "$CACHE/corpus/$image.oci" "$tmp/out" --json $opts > "$tmp/report.json"
      end=$(date +%s.%N)
      times+=("$(echo "$end - $start" | bc)")
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
    read -r size chunks < <(python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['totals']; print(t['blob_size'], t['chunks'])" "$tmp/report.json")
    [[ -n "$base" ]] || base=$size
    ratio=$(python3 -c "print(f'{$size / $base:.3f}')")
    printf '| %s | %s | %s | %s | %s | %.2f s |\n' "$image" "${opts:-default}" "$size" "$ratio" "$chunks" "$median"
  done
done
