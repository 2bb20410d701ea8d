#!/usr/bin/env bash
# many-small-files: the synthetic image of that name (gen.py says what it holds), one layer, no network.
#   many-small-files.sh OUT
source "$(dirname "$0")/lib.sh"
out=$1; work="$out/.work/many-small-files"
rm -rf "$work"; mkdir -p "$work/root"
log "generating many-small-files"
python3 "$here/gen.py" many-small-files "$work/root"
tar_dir "$work/root" "$work/layer.tar"
rm -rf "$work/root" "$out/many-small-files.oci"
python3 "$here/oci.py" "$out/many-small-files.oci" --layer "$work/layer.tar" >/dev/null
rm -rf "$work"
forms "$out" many-small-files
