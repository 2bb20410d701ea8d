#!/usr/bin/env python3
"""Write the startup list of a program: the files it opens, in order, found by running it under
strace in a chroot of an unpacked image (umoci unpack), resolved through the image's symlinks to
regular files, the ELF interpreter added after the program (the kernel opens it, strace does not
show it). Appends to OUT.

Usage: trace.py ROOTFS OUT PROGRAM [ARG...]
"""
import os, re, subprocess, sys
root, out = sys.argv[1], sys.argv[2]; cmd = sys.argv[3:]
log = "/tmp/trace.log"
r = subprocess.run(["strace", "-f", "-o", log, "-e", "trace=execve,openat", "chroot", root] + cmd, capture_output=True)
sys.stderr.write(repr(r.stdout) + "\n")
def resolve(p):
    parts = [c for c in p.split("/") if c and c != "."]
    at = []; hops = 0
    while parts:
        c = parts.pop(0)
        if c == "..":
            if at: at.pop()
            continue
        at.append(c)
        full = root + "/" + "/".join(at)
        if os.path.islink(full):
            hops += 1
            t = os.readlink(full); at.pop()
            if t.startswith("/"): at = []
            parts = [x for x in t.split("/") if x and x != "."] + parts
    return "/" + "/".join(at)
paths = []; started = False
for line in open(log):
    if "execve(" in line and "= 0" in line:
        m = re.search(r'execve\("([^"]+)"', line)
        if m and "chroot" not in m.group(1):
            started = True
            paths.append(m.group(1)); paths.append("/lib64/ld-linux-x86-64.so.2")
        continue
    if not started: continue
    m = re.search(r'openat\([^,]+, "([^"]+)".*= (\d+)$', line.strip())
    if m: paths.append(m.group(1))
seen = []; 
for p in paths:
    rp = resolve(p)
    if not rp.startswith('/dev/') and os.path.isfile(root + rp) and not os.path.islink(root + rp) and rp not in seen:
        seen.append(rp)
with open(out, "a") as f:
    f.write("\n".join(seen) + "\n")
print(len(seen))
