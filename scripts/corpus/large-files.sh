#!/usr/bin/env bash
# large-files: the synthetic image of that name (gen.py says what it holds), one layer, no network.
#   large-files.sh OUT
source "$(dirname "$0")/lib.sh"
out=$1; work="$out/.work/large-files"
rm -rf "$work"; mkdir -p "$work/root"
log "generating large-files"
python3 "$here/gen.py" large-files "$work/root"
tar_dir "$work/root" "$work/layer.tar"
rm -rf "$work/root" "$out/large-files.oci"
python3 "$here/oci.py" "$out/large-files.oci" --layer "$work/layer.tar" >/dev/null
rm -rf "$work"
forms "$out" large-files
