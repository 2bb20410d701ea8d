# Builds the second layer tar of the merged.boot fixture (see README.md).
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    for name, data in [("dir/new.txt", b"second layer\n"), ("z", b"z" * 5000)]:
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000001; ti.mode = 0o644
        t.addfile(ti, io.BytesIO(data))
    ti = tarfile.TarInfo("dir/.wh.small.txt"); ti.mtime = 1700000001; t.addfile(ti)
