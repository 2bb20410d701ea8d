# The layer of the RAFS v5 fixture: layer1.py's entries, with the xattrs on a file that has no
# hard link (nydus-image 2.2.0 lays out a v5 hard link to a file with xattrs wrongly).
import io, random, sys, tarfile
def add(t, name, typ, data=b"", mode=0o644, **kw):
    ti = tarfile.TarInfo(name); ti.type = typ; ti.mode = mode; ti.mtime = 1700000000
    ti.uid = kw.get("uid", 0); ti.gid = kw.get("gid", 0)
    if "link" in kw: ti.linkname = kw["link"]
    if "dev" in kw: ti.devmajor, ti.devminor = kw["dev"]
    if "pax" in kw: ti.pax_headers = kw["pax"]
    if typ == tarfile.REGTYPE:
        ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    else:
        t.addfile(ti)
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    add(t, "dir", tarfile.DIRTYPE, mode=0o755, uid=70000, gid=70001)
    add(t, "dir/small.txt", tarfile.REGTYPE, b"hello nydus\n")
    r = random.Random(5)
    data = b"a" * 4096 + bytes(r.getrandbits(8) for _ in range(4096)) + bytes(r.getrandbits(8) for _ in range(1000))
    add(t, "dir/multi.bin", tarfile.REGTYPE, data, pax={"SCHILY.xattr.user.foo": "bar"})
    add(t, "dir/hard", tarfile.LNKTYPE, link="dir/small.txt")
    add(t, "empty", tarfile.REGTYPE, b"")
    add(t, "link", tarfile.SYMTYPE, mode=0o777, link="dir/small.txt")
    add(t, "null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3))
    add(t, "sub", tarfile.DIRTYPE, mode=0o700)
    add(t, "sub/dup", tarfile.REGTYPE, b"a" * 4096)
