#!/usr/bin/env python3
"""Write a layer tar twice the size of a given one, for showing how memory and time scale.

    double-layer.py IN.tar OUT.tar     (IN uncompressed: it is read twice)

OUT holds every entry of IN as it is, then every entry again with its first path component
renamed (`srv/a` -> `srv-2/a`) and every regular file's bytes altered: the first byte of each
1 MiB block (the default chunk size) is flipped, so no chunk of the copy deduplicates against
the original and the copy compresses just as well. Hardlink targets are renamed with their
links; symlink targets are kept. The result has twice the files, twice the directories and
twice the file bytes, in one layer. Deterministic: same input, same output.
"""
import sys
import tarfile

BLOCK = 1 << 20


def renamed(name):
    """`srv/a/b` -> `srv-2/a/b`; a leading `./` is kept."""
    prefix = ""
    if name.startswith("./"):
        prefix, name = "./", name[2:]
    head, sep, tail = name.partition("/")
    return f"{prefix}{head}-2{sep}{tail}"


class Altered:
    """A file object reading `inner` with the first byte of each BLOCK flipped."""

    def __init__(self, inner):
        self.inner = inner
        self.pos = 0

    def read(self, n=-1):
        data = bytearray(self.inner.read(n))
        start = self.pos
        self.pos += len(data)
        first = -(-start // BLOCK) * BLOCK  # first block start at or after `start`
        for at in range(first, self.pos, BLOCK):
            data[at - start] ^= 0xA5
        return bytes(data)


def copy(src, out, second):
    with tarfile.open(src, "r:") as tar:
        for member in tar:
            if second:
                if member.name.strip("./") == "":
                    continue  # the root directory is there once
                member.name = renamed(member.name)
                if member.islnk():
                    member.linkname = renamed(member.linkname)
            data = tar.extractfile(member) if member.isreg() else None
            if data is not None and second:
                data = Altered(data)
            out.addfile(member, data)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as out:
        copy(src, out, second=False)
        copy(src, out, second=True)


if __name__ == "__main__":
    main()
