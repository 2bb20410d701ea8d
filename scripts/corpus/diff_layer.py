#!/usr/bin/env python3
"""Write the layer tar that turns directory tree BASE into tree NEW, as an image builder does.

    diff_layer.py BASE NEW OUT.tar

Entries of NEW that are new or changed (type, mode, owner, size, mtime, link target) are written
with their parent directories; what BASE has and NEW lacks becomes a whiteout (`.wh.NAME`; one
for a removed directory, nothing below it). Names sorted, numeric owners, every mtime
SOURCE_DATE_EPOCH, PAX format: the same trees give the same bytes.
"""
import os
import stat
import sys
import tarfile

EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))


def walk(root):
    """rel path -> lstat, for every entry under root (root itself left out)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = os.lstat(full)
    return out


def key(path, st):
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
    size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    return (stat.S_IFMT(st.st_mode), st.st_mode, st.st_uid, st.st_gid, size, st.st_mtime_ns, link)


def differs(base, new, p, old_st, st):
    """Whether NEW's entry p is not what BASE had (a directory: only its type, mode or owner)."""
    a, b = key(os.path.join(base, p), old_st), key(os.path.join(new, p), st)
    return a[:4] != b[:4] if stat.S_ISDIR(st.st_mode) else a != b


def main(base, new, out):
    old, cur = walk(base), walk(new)
    changed = {p for p, st in cur.items() if p not in old or differs(base, new, p, old[p], st)}
    for p in list(changed):  # parents of what changed go in too, as image builders write them
        d = os.path.dirname(p)
        while d:
            changed.add(d)
            d = os.path.dirname(d)
    gone = []
    for p in sorted(q for q in old if q not in cur):  # one whiteout covers a removed directory
        if not any(p.startswith(g + "/") for g in gone):
            gone.append(p)
    whiteouts = {os.path.join(os.path.dirname(p), ".wh." + os.path.basename(p)) for p in gone}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(changed | whiteouts):
            if p in whiteouts:
                info = tarfile.TarInfo(p)
                info.mtime, info.mode = EPOCH, 0o644
                tar.addfile(info)
                continue
            full = os.path.join(new, p)
            info = tar.gettarinfo(full, p)
            info.mtime, info.uname, info.gname = EPOCH, "", ""
            if info.isreg():
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
