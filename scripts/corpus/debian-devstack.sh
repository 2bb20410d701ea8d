#!/usr/bin/env bash
# debian-devstack: a real-world-shaped image for the benchmarks (issue 20): a few hundred MB and
# tens of thousands of files in several layers, as language and toolchain images are. The
# minbase rootfs; a toolchain layer (gcc, make, git, libc headers: many small headers and a few
# large binaries); a Python stack layer (python3 with numpy, scipy and their libraries: many
# small .py files and large shared objects); an application layer with a virtualenv-like tree of
# small files and a whiteout. Config: Cmd ["/usr/bin/python3","-c","import numpy"].
#   debian-devstack.sh OUT      (builds debian-minbase's rootfs first if it is not there)
source "$(dirname "$0")/lib.sh"
out=$1; work="$out/.work"
[[ -f "$work/minbase.done" ]] || bash "$here/debian-minbase.sh" "$out"
base="$work/minbase-rootfs"; tools="$work/devstack-tools"; py="$work/devstack-python"
app="$work/devstack-app"
rm -rf "$tools" "$py" "$app"
cp -a "$base" "$tools"
log "apt-get install a toolchain in a chroot"
in_chroot "$tools" sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends \
  gcc g++ make git libc6-dev pkg-config >/dev/null && apt-get clean'
rm -rf "$tools"/var/lib/apt/lists/* "$tools"/var/log/* "$tools"/var/cache/apt/*.bin
cp -a "$tools" "$py"
log "apt-get install a Python stack in a chroot"
in_chroot "$py" sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends \
  python3 python3-numpy python3-scipy python3-yaml python3-requests >/dev/null && apt-get clean'
rm -rf "$py"/var/lib/apt/lists/* "$py"/var/log/* "$py"/var/cache/apt/*.bin "$py"/var/cache/debconf/*-old
cp -a "$py" "$app"
rm -rf "$app/usr/share/doc"
# A site-packages-like tree of small modules, as applications vendor them.
python3 - "$app/app/vendor" <<'PY'
import os, random, sys
root = sys.argv[1]
r = random.Random(20)
for p in range(200):
    pkg = os.path.join(root, f"pkg{p:03d}")
    os.makedirs(pkg, exist_ok=True)
    for m in range(40):
        body = "\n".join(f"def f{i}(x):\n    return x * {r.randrange(1000)} + {i}\n" for i in range(r.randrange(5, 60)))
        with open(os.path.join(pkg, f"mod{m:02d}.py"), "w") as f:
            f.write(body)
PY
python3 "$here/diff_layer.py" "$base" "$tools" "$work/devstack-tools.tar"
python3 "$here/diff_layer.py" "$tools" "$py" "$work/devstack-python.tar"
python3 "$here/diff_layer.py" "$py" "$app" "$work/devstack-app.tar"
tar_dir "$base" "$work/minbase.tar"
rm -rf "$out/debian-devstack.oci"
python3 "$here/oci.py" "$out/debian-devstack.oci" --layer "$work/minbase.tar" \
  --layer "$work/devstack-tools.tar" --layer "$work/devstack-python.tar" \
  --layer "$work/devstack-app.tar" --cmd /usr/bin/python3 --cmd=-c --cmd "import numpy" >/dev/null
rm -rf "$tools" "$py" "$app"
forms "$out" debian-devstack
