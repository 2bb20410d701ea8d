# Builds the small layer tars used for testdata/ondisk fixtures.
import io, tarfile, sys
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
def layer1(path):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        add(t, "dir", tarfile.DIRTYPE, mode=0o755, uid=70000, gid=70001)
        add(t, "dir/small.txt", tarfile.REGTYPE, b"hello nydus\n", pax={"SCHILY.xattr.user.foo": "bar", "SCHILY.xattr.trusted.t": "tv"})
        # 3 chunks of 4 KiB with --chunk-size 0x1000: one repetitive (compresses), two pseudo-random (raw)
        import random; r = random.Random(5)
        data = b"a" * 4096 + bytes(r.getrandbits(8) for _ in range(4096)) + bytes(r.getrandbits(8) for _ in range(1000))
        add(t, "dir/multi.bin", tarfile.REGTYPE, data)
        add(t, "dir/hard", tarfile.LNKTYPE, link="dir/small.txt")
        add(t, "empty", tarfile.REGTYPE, b"")
        add(t, "link", tarfile.SYMTYPE, mode=0o777, link="dir/small.txt")
        add(t, "null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3))
        add(t, "bigdev", tarfile.BLKTYPE, mode=0o660, dev=(259, 0x12345))
        add(t, "sub", tarfile.DIRTYPE, mode=0o700)
        add(t, "sub/dup", tarfile.REGTYPE, b"a" * 4096)
if __name__ == "__main__":
    layer1(sys.argv[1])
