# The layer of the RAFS v5 fixture: layer1.py's entries, with the xattrs on a file that has no
# hard link (nydus-image 2.2.0 lays out a v5 hard link to a file with xattrs wrongly).
import os, random, sys, tarfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layer1 import add
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
