#!/usr/bin/env bash
# Install the real readers the tests compare our output with, idempotently:
#   - from Debian: skopeo, umoci, erofs-utils, docker-registry, fuse3, libarchive-tools (bsdtar),
#     runc (tests/startup.rs runs programs from converted images with it),
#     and cmake (needed to build nydus-rs);
#   - nydus-image and nydusd 2.2.0, built once with `cargo install` (about 13 minutes) into a cache
#     directory and reused by every later run;
#   - nydus-image and nydusd 2.4.4, the newest release, which no package registry serves: built once
#     (about 10 minutes) from the source snapshot in ../shared/readers beside the checkout
#     (NYDUS_READERS_SRC overrides), into $CACHE/nydus-2.4.4/bin, where the tests look for it.
#
# Usage: scripts/install-readers.sh          prints the directory holding nydus-image and nydusd 2.2.0
# Environment: NYDUS_OFFLINE_CACHE  cache root (default /var/cache/nydus-offline)
set -euo pipefail

CACHE="${NYDUS_OFFLINE_CACHE:-/var/cache/nydus-offline}"
NYDUS_VERSION=2.2.0
NYDUS_ROOT="$CACHE/nydus-$NYDUS_VERSION"

log() { printf 'install-readers: %s\n' "$*" >&2; }

# Debian packages: install only what is missing, so a warm machine does no apt work at all.
packages=(cmake skopeo umoci erofs-utils docker-registry fuse3 libarchive-tools util-linux kmod runc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package starts a registry service on some systems; tests start their own on a free port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

# nydus-image and nydusd: a binary that runs is a cache hit.
if "$NYDUS_ROOT/bin/nydus-image" --version >/dev/null 2>&1 && "$NYDUS_ROOT/bin/nydusd" --version >/dev/null 2>&1; then
  log "nydus $NYDUS_VERSION found in $NYDUS_ROOT/bin"
else
  log "building nydus-image and nydusd $NYDUS_VERSION into $NYDUS_ROOT (about 13 minutes, once)"
  mkdir -p "$CACHE"
  # Build into a temporary root and move it into place, so an interrupted build never looks cached.
  tmp="$CACHE/.nydus-$NYDUS_VERSION.partial"
  rm -rf "$tmp"
  cargo install --quiet --locked nydus-rs --version "$NYDUS_VERSION" --root "$tmp"
  rm -rf "$NYDUS_ROOT"
  mv "$tmp" "$NYDUS_ROOT"
fi

# The newest release, from the source snapshot (its build script is idempotent: a cached binary
# that runs is kept). Built into a temporary root by that script and moved into place, as above.
NEW_VERSION=2.4.4
NEW_ROOT="$CACHE/nydus-$NEW_VERSION"
READERS_SRC="${NYDUS_READERS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/readers}"
if "$NEW_ROOT/bin/nydusd" --version >/dev/null 2>&1 && "$NEW_ROOT/bin/nydus-image" --version >/dev/null 2>&1; then
  log "nydus $NEW_VERSION found in $NEW_ROOT/bin"
else
  [[ -x "$READERS_SRC/build-nydus.sh" ]] || { log "no nydus $NEW_VERSION sources at $READERS_SRC (set NYDUS_READERS_SRC)"; exit 1; }
  log "building nydus-image and nydusd $NEW_VERSION into $NEW_ROOT (about 10 minutes, once)"
  mkdir -p "$CACHE"
  bash "$READERS_SRC/build-nydus.sh" "$NEW_ROOT" >/dev/null
fi

# FUSE needs its device node and the kernel needs EROFS; both are there on these machines, but say
# so clearly when they are not rather than failing deep inside a test.
[[ -e /dev/fuse ]] || log "warning: /dev/fuse is missing: nydusd tests will fail"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null || log "warning: the kernel has no erofs support"

echo "$NYDUS_ROOT/bin"
