#!/usr/bin/env bash
# Shared by the corpus builders (sourced): deterministic tars of directory trees, the Debian
# mirror apt is configured with, chroot apt-get, and the other input forms of an OCI layout.
set -euo pipefail
: "${SOURCE_DATE_EPOCH:=1700000000}"
export SOURCE_DATE_EPOCH
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf 'corpus: %s\n' "$*" >&2; }

# tar_dir DIR OUT.tar [TAR OPTIONS...]: every entry of DIR sorted by name, numeric owners, every mtime the epoch,
# POSIX format without atime/ctime records: the same tree gives the same bytes.
tar_dir() {
  tar --create --file "$2" --directory "$1" --sort=name --numeric-owner --format=posix \
    --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
    --mtime="@$SOURCE_DATE_EPOCH" --xattrs --xattrs-include='*' "${@:3}" .
}

# The Debian mirror apt uses here (first deb line of its sources); DEBIAN_MIRROR overrides.
mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local m
  m=$(grep -hsE '^\s*deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | grep -v security | head -n1 | sed -E 's/^\s*deb\s+(\[[^]]*\]\s+)?//' | awk '{print $1}')
  if [[ -z "$m" ]]; then
    m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 | awk '{print $2}')
  fi
  [[ -n "$m" ]] || { log "no Debian mirror found in apt's sources (set DEBIAN_MIRROR)"; exit 1; }
  echo "$m"
}

# in_chroot ROOT CMD...: run CMD in ROOT with /proc, /sys and /dev mounted, unmounted after.
in_chroot() {
  local root=$1; shift
  mount -t proc proc "$root/proc"; mount -t sysfs sys "$root/sys"; mount --bind /dev "$root/dev"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  local rc=0
  chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@" || rc=$?
  umount "$root/dev" "$root/sys" "$root/proc"
  : >"$root/etc/resolv.conf"
  return $rc
}

# forms OUT NAME: from OUT/NAME.oci, the docker save tarball, the oci-archive and the zstd layout.
forms() {
  local out=$1 name=$2
  rm -f "$out/$name.docker.tar" "$out/$name.oci.tar"; rm -rf "$out/$name-zstd.oci"
  skopeo copy -q "oci:$out/$name.oci:latest" "docker-archive:$out/$name.docker.tar:$name:latest"
  tar --create --file "$out/$name.oci.tar" --directory "$out/$name.oci" --sort=name \
    --numeric-owner --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" --format=posix \
    --pax-option='delete=atime,delete=ctime' .
  skopeo inspect "oci-archive:$out/$name.oci.tar" >/dev/null
  skopeo copy -q --dest-compress --dest-compress-format zstd "oci:$out/$name.oci:latest" "oci:$out/$name-zstd.oci:latest"
  local types
  types=$(jq -r '.manifests[0].digest' "$out/$name-zstd.oci/index.json" | sed 's/sha256://' \
    | xargs -I{} jq -r '.layers[].mediaType' "$out/$name-zstd.oci/blobs/sha256/{}" | sort -u)
  [[ "$types" == "application/vnd.oci.image.layer.v1.tar+zstd" ]] || { log "$name-zstd.oci has layers $types"; exit 1; }
  printf '%s\t%s\n' "$name" "$(du -sh "$out/$name.oci" | cut -f1)" >>"$out/SIZES.tsv"
}
