#!/usr/bin/env bash
# debian-python: an application image of four layers, with what real images carry: the minbase
# rootfs; python3 and libraries installed with apt-get in a chroot (a large diff layer); an
# application layer that deletes (real whiteouts: usr/share/doc, etc/issue, etc/issue.net,
# usr/bin/pydoc3) and adds /app with a symlink; and a hand-written layer with an opaque
# directory (etc/apt/apt.conf.d) refilled and a whiteout of etc/debian_version.
# Config: Cmd ["/usr/bin/python3","/app/main.py"], WorkingDir /app.
#   debian-python.sh OUT        (builds debian-minbase's rootfs first if it is not there)
source "$(dirname "$0")/lib.sh"
out=$1; work="$out/.work"
[[ -f "$work/minbase.done" ]] || bash "$here/debian-minbase.sh" "$out"
base="$work/minbase-rootfs"; py="$work/python-rootfs"; app="$work/app-rootfs"
rm -rf "$py" "$app"
cp -a "$base" "$py"
log "apt-get install python3 in a chroot"
in_chroot "$py" sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends \
  python3 python3-yaml python3-requests python3-six ca-certificates >/dev/null && apt-get clean'
rm -rf "$py"/var/lib/apt/lists/* "$py"/var/log/* "$py"/var/cache/apt/*.bin "$py"/var/cache/debconf/*-old
cp -a "$py" "$app"
rm -rf "$app/usr/share/doc" "$app/etc/issue" "$app/etc/issue.net" "$app/usr/bin/pydoc3"
mkdir -p "$app/app/data"
cat >"$app/app/main.py" <<'PY'
import sys
import yaml

with open("/app/data/lines.txt") as f:
    lines = f.read().splitlines()
print(yaml.safe_dump({"python": sys.version.split()[0], "lines": len(lines)}), end="")
PY
printf 'pyyaml\nrequests\nsix\n' >"$app/app/requirements.txt"
python3 -c 'import random; r = random.Random(7); print("\n".join("line %d %x" % (i, r.getrandbits(64)) for i in range(5000)))' >"$app/app/data/lines.txt"
ln -s main.py "$app/app/entrypoint.py"
python3 "$here/diff_layer.py" "$base" "$py" "$work/python.tar"
python3 "$here/diff_layer.py" "$py" "$app" "$work/app.tar"
# The fourth layer by hand: an opaque directory refilled, and a whiteout of a lower file.
python3 - "$work/opaque.tar" <<'PY'
import io, os, sys, tarfile
epoch = int(os.environ["SOURCE_DATE_EPOCH"])
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as tar:
    for name, data, mode in [("etc/", None, 0o755), ("etc/.wh.debian_version", b"", 0o644),
                             ("etc/apt/", None, 0o755), ("etc/apt/apt.conf.d/", None, 0o755),
                             ("etc/apt/apt.conf.d/.wh..wh..opq", b"", 0o644),
                             ("etc/apt/apt.conf.d/99bench", b'APT::Install-Recommends "false";\n', 0o644)]:
        info = tarfile.TarInfo(name.rstrip("/"))
        info.mtime, info.mode = epoch, mode
        if data is None:
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        else:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
PY
tar_dir "$base" "$work/minbase.tar"
rm -rf "$out/debian-python.oci"
python3 "$here/oci.py" "$out/debian-python.oci" --layer "$work/minbase.tar" --layer "$work/python.tar" \
  --layer "$work/app.tar" --layer "$work/opaque.tar" --cmd /usr/bin/python3 --cmd /app/main.py --workdir /app >/dev/null
forms "$out" debian-python
