#!/usr/bin/env bash
# Build benchmark-corpus images (../shared/bench-corpus) once into the cache, for the tests and
# scripts/bench.sh. Images already built are kept.
#
# Usage: scripts/build-corpus.sh NAME...     e.g. debian-minbase debian-python
# Environment: NYDUS_OFFLINE_CACHE (default /var/cache/nydus-offline): the corpus goes to
#              $NYDUS_OFFLINE_CACHE/corpus; BENCH_CORPUS_DIR: where the builders are.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${NYDUS_OFFLINE_CACHE:-/var/cache/nydus-offline}"
BUILDERS="${BENCH_CORPUS_DIR:-$here/../shared/bench-corpus}"
OUT="$CACHE/corpus"

missing=()
for name in "$@"; do
  [[ -f "$OUT/$name.oci/index.json" && -f "$OUT/$name.docker.tar" && -f "$OUT/$name.oci.tar" ]] || missing+=("$name")
done
if ((${#missing[@]} == 0)); then
  echo "build-corpus: $* already in $OUT" >&2
  exit 0
fi
[[ -d "$BUILDERS" ]] || { echo "build-corpus: no corpus builders at $BUILDERS (set BENCH_CORPUS_DIR)" >&2; exit 1; }
need=()
for p in debootstrap skopeo umoci zstd jq; do command -v "$p" >/dev/null || need+=("$p"); done
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p "$OUT"
echo "build-corpus: building ${missing[*]} into $OUT" >&2
ONLY="${missing[*]}" bash "$BUILDERS/build-all.sh" "$OUT" >&2
