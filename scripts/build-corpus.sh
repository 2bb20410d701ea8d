#!/usr/bin/env bash
# Build benchmark-corpus images once into the cache, for the tests and scripts/bench.sh, with
# the builders in scripts/corpus/ (one per image; lib.sh, oci.py, diff_layer.py and gen.py say
# how). Images already built are kept.
#
# Usage: scripts/build-corpus.sh NAME...     e.g. debian-minbase debian-python
# Environment: NYDUS_OFFLINE_CACHE (default /var/cache/nydus-offline): the corpus goes to
#              $NYDUS_OFFLINE_CACHE/corpus. Needs root (debootstrap, chroot).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${NYDUS_OFFLINE_CACHE:-/var/cache/nydus-offline}"
BUILDERS="$here/scripts/corpus"
OUT="$CACHE/corpus"

missing=()
for name in "$@"; do
  [[ -f "$OUT/$name.oci/index.json" && -f "$OUT/$name.docker.tar" && -f "$OUT/$name.oci.tar" ]] || missing+=("$name")
done
if ((${#missing[@]} == 0)); then
  echo "build-corpus: $* already in $OUT" >&2
  exit 0
fi
need=()
for p in debootstrap skopeo zstd jq; do command -v "$p" >/dev/null || need+=("$p"); done
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p "$OUT"
echo "build-corpus: building ${missing[*]} into $OUT" >&2
for name in "${missing[@]}"; do
  [[ -f "$BUILDERS/$name.sh" ]] || { echo "build-corpus: no builder for $name in $BUILDERS" >&2; exit 1; }
  bash "$BUILDERS/$name.sh" "$OUT" >&2
done
