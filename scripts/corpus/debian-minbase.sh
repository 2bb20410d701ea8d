#!/usr/bin/env bash
# debian-minbase: Debian bookworm's `debootstrap --variant=minbase` root filesystem, one layer:
# a real distribution base layer (a few thousand entries, about 115 MiB). The rootfs is kept in
# OUT/.work/minbase-rootfs for debian-python (FRESH=1 bootstraps it again).
#   debian-minbase.sh OUT
source "$(dirname "$0")/lib.sh"
out=$1; work="$out/.work"; root="$work/minbase-rootfs"
mkdir -p "$work"
if [[ -n "${FRESH:-}" || ! -f "$work/minbase.done" ]]; then
  rm -rf "$root" "$work/minbase.done"
  log "debootstrap minbase from $(mirror)"
  debootstrap --variant=minbase bookworm "$root" "$(mirror)" >&2
  # What the build machine put there, not the image: caches, logs, host identity.
  rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
  : >"$root/etc/resolv.conf"; echo localhost >"$root/etc/hostname"; : >"$root/etc/machine-id"
  touch "$work/minbase.done"
fi
tar_dir "$root" "$work/minbase.tar"
rm -rf "$out/debian-minbase.oci"
python3 "$here/oci.py" "$out/debian-minbase.oci" --layer "$work/minbase.tar" --cmd /bin/bash >/dev/null
forms "$out" debian-minbase
