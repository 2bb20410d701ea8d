#!/usr/bin/env python3
"""The synthetic file trees of the benchmark corpus, from fixed-seed generators (no network).

    gen.py large-files DIR        four large files under DIR/data (2 GiB in all)
    gen.py many-small-files DIR   200,000 small files under DIR/srv

large-files: random.bin (640 MiB + 4097 B, incompressible), text.log (640 MiB + 333 B, text-like,
about 3:1 under zstd), zeros.img (512 MiB of zeros), mixed.bin (256 MiB - 1, 1 MiB periods of
random, text and zeros); sizes deliberately not multiples of the 1 MiB chunk size.
many-small-files: 200,000 files of 100 B to 16 KiB (log-uniform sizes; 70 % text-like, 25 %
random, 5 % copies of earlier files) in a fan-out-8, depth-5 tree (32,768 leaf directories) under
/srv, and one chain of directories 48 deep. The same seed gives the same bytes.
"""
import math
import os
import random
import sys

MIB = 1 << 20
WORDS = ("the quick brown fox jumps over lazy dog request response error warning info debug "
         "user session token cache miss hit latency millis bytes sent received connection "
         "closed opened retry timeout server client worker queue job started finished").split()


def text(r, n):
    """n bytes of log-like text."""
    out, size = [], 0
    while size < n:
        line = "%08d %s %s\n" % (r.getrandbits(26), r.choice(("INFO", "WARN", "DEBUG")),
                                 " ".join(r.choices(WORDS, k=r.randint(4, 14))))
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def write_stream(path, size, block):
    with open(path, "wb") as f:
        left, i = size, 0
        while left > 0:
            data = block(i, min(MIB, left))
            f.write(data)
            left -= len(data)
            i += 1


def large_files(root):
    d = os.path.join(root, "data")
    os.makedirs(d, exist_ok=True)
    r = random.Random(1)
    write_stream(os.path.join(d, "random.bin"), 640 * MIB + 4097, lambda i, n: r.randbytes(n))
    t = random.Random(2)
    write_stream(os.path.join(d, "text.log"), 640 * MIB + 333, lambda i, n: text(t, n))
    write_stream(os.path.join(d, "zeros.img"), 512 * MIB, lambda i, n: bytes(n))
    m = random.Random(3)
    kinds = (lambda n: m.randbytes(n), lambda n: text(m, n), lambda n: bytes(n))
    write_stream(os.path.join(d, "mixed.bin"), 256 * MIB - 1, lambda i, n: kinds[i % 3](n))


def many_small_files(root):
    r = random.Random(4)
    leaves = []

    def tree(path, depth):
        if depth == 5:
            leaves.append(path)
            return
        for i in range(8):
            tree(os.path.join(path, "d%d" % i), depth + 1)

    tree(os.path.join(root, "srv"), 0)
    for leaf in leaves:
        os.makedirs(leaf, exist_ok=True)
    chain = os.path.join(root, "srv", *["deep%02d" % i for i in range(48)])
    os.makedirs(chain, exist_ok=True)
    leaves.append(chain)
    written = []
    for n in range(200_000):
        size = int(math.exp(r.uniform(math.log(100), math.log(16 * 1024))))
        kind = r.random()
        if kind < 0.05 and written:
            data = written[r.randrange(len(written))]
        elif kind < 0.30:
            data = r.randbytes(size)
        else:
            data = text(r, size)
        if len(written) < 4096:
            written.append(data)
        path = os.path.join(leaves[n % len(leaves)], "f%06d.dat" % n)
        with open(path, "wb") as f:
            f.write(data)


if __name__ == "__main__":
    {"large-files": large_files, "many-small-files": many_small_files}[sys.argv[1]](sys.argv[2])
