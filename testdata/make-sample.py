#!/usr/bin/env python3
"""Build testdata/sample/, the small OCI image every test starts from.

    python3 testdata/make-sample.py [OUT]      (default: testdata/sample next to this script)

The whole image is described in this file (LAYERS below) and the file contents come from
fixed-seed generators, so the script is its own input: running it again gives the same bytes
(gzip streams carry no name or time, mtimes are fixed, JSON keys are sorted).

The sample is meant to exercise what a converter most often gets wrong while staying under
1 MiB: two layers, a file whiteout and a directory whiteout, a symlink, a hardlink, xattrs
(one binary), setuid/setgid/sticky bits, a character device, owners above 65535, an empty file,
a file of several 1 MiB chunks, an incompressible file, and a file repeated in the upper layer
(cross-layer dedup).
"""
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import sys
import tarfile

# SAMPLE_MTIME=0 builds the variant reproducible builders produce (every mtime 0), which lets
# the bootstrap writer use compact inodes.
MTIME = int(os.environ.get("SAMPLE_MTIME", "1700000000"))
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"


def text_bytes(seed, size):
    """Text-like bytes (compressible about 3:1) from a fixed seed."""
    rng = random.Random(seed)
    words = [
        "nydus", "chunk", "blob", "bootstrap", "inode", "layer", "whiteout", "erofs",
        "registry", "lazy", "offline", "container", "image", "merge", "digest", "zstd",
    ]
    out = io.BytesIO()
    line = 0
    while out.tell() < size:
        line += 1
        out.write(("%06d " % line).encode())
        out.write(" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))).encode())
        out.write(b"\n")
    return out.getvalue()[:size]


def random_bytes(seed, size):
    """Incompressible bytes from a fixed seed."""
    rng = random.Random(seed)
    return bytes(rng.getrandbits(8) for _ in range(size))


TOOL = text_bytes(1, 40_000) + random_bytes(2, 8_000)

# One list per layer, bottom first. Each entry: (type, path, options).
# Types: dir, file, symlink, hardlink, char. Options: mode, uid, gid, data, target, xattrs, dev.
LAYERS = [
    [
        ("dir", "bin", {}),
        ("file", "bin/tool", {"mode": 0o755, "data": TOOL}),
        ("hardlink", "bin/tool-hardlink", {"target": "bin/tool"}),
        ("symlink", "bin/tool-symlink", {"target": "tool"}),
        ("file", "bin/su-tool", {"mode": 0o4755, "data": b"#!/bin/sh\necho setuid\n"}),
        ("file", "bin/sg-tool", {"mode": 0o2711, "gid": 50, "data": b"#!/bin/sh\necho setgid\n"}),
        ("dir", "dev", {}),
        ("char", "dev/null", {"mode": 0o666, "dev": (1, 3)}),
        ("dir", "etc", {"xattrs": {"user.dir-note": b"layer one"}}),
        ("file", "etc/hostname", {"data": b"sample\n", "xattrs": {"user.sample": b"hello"}}),
        ("file", "etc/remove-me", {"data": b"this file is whited out by layer 2\n"}),
        ("file", "etc/empty", {"mode": 0o600, "uid": 1000, "gid": 1000, "data": b""}),
        ("dir", "home", {}),
        ("dir", "home/big-ids", {"uid": 100000, "gid": 200000, "mode": 0o750}),
        ("file", "home/big-ids/owned", {"uid": 100000, "gid": 200000, "data": b"owned\n"}),
        ("dir", "opt", {}),
        ("dir", "opt/old", {}),
        ("file", "opt/old/file", {"data": b"the whole directory is whited out by layer 2\n"}),
        ("dir", "opt/old/sub", {}),
        ("file", "opt/old/sub/deep", {"data": b"deep\n"}),
        ("dir", "tmp", {"mode": 0o1777}),
        ("dir", "usr", {}),
        ("dir", "usr/share", {}),
        ("dir", "usr/share/data", {}),
        # Two full 1 MiB chunks and a short third one at the default chunk size.
        ("file", "usr/share/data/words.txt", {"data": text_bytes(3, 2 * 1024 * 1024 + 4097)}),
        ("file", "usr/share/data/random.bin", {"data": random_bytes(4, 12_288)}),
        ("file", "usr/share/data/caps", {
            "mode": 0o755,
            "data": b"#!/bin/sh\n",
            "xattrs": {"user.binary": bytes([1, 2, 127, 255, 254, 128])},
        }),
    ],
    [
        ("dir", "app", {"uid": 1000, "gid": 1000}),
        ("file", "app/main.sh", {"mode": 0o755, "uid": 1000, "gid": 1000,
                                 "data": b"#!/bin/sh\nexec /bin/tool \"$@\"\n"}),
        # Same bytes as bin/tool: its chunks are deduplicated against layer 1.
        ("file", "app/tool-copy", {"mode": 0o755, "data": TOOL}),
        ("symlink", "app/data", {"target": "/usr/share/data"}),
        ("dir", "etc", {"xattrs": {"user.dir-note": b"layer one"}}),
        ("file", "etc/hostname", {"data": b"sample-upper\n", "xattrs": {"user.sample": b"changed"}}),
        ("file", "etc/.wh.remove-me", {"data": b""}),
        ("dir", "opt", {}),
        ("file", "opt/.wh.old", {"data": b""}),
        ("file", "opt/new", {"data": b"new in layer 2\n"}),
    ],
]


def tar_layer(entries):
    """Uncompressed PAX tar bytes of one layer."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, path, opt in entries:
            info = tarfile.TarInfo(path)
            info.mtime = MTIME
            info.uid = opt.get("uid", 0)
            info.gid = opt.get("gid", 0)
            info.uname = info.gname = ""
            data = None
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = opt.get("mode", 0o755)
            elif kind == "file":
                info.type = tarfile.REGTYPE
                info.mode = opt.get("mode", 0o644)
                data = opt["data"]
                info.size = len(data)
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.mode = 0o777
                info.linkname = opt["target"]
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.mode = 0o755
                info.linkname = opt["target"]
            elif kind == "char":
                info.type = tarfile.CHRTYPE
                info.mode = opt.get("mode", 0o666)
                info.devmajor, info.devminor = opt["dev"]
            else:
                raise ValueError(kind)
            for name, value in opt.get("xattrs", {}).items():
                # tarfile writes str values as UTF-8; binary values need surrogateescape.
                info.pax_headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def put_blob(out, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def jbytes(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "sample")
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "blobs", "sha256"))

    layers, diff_ids, history = [], [], []
    for i, entries in enumerate(LAYERS):
        raw = tar_layer(entries)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        gz = io.BytesIO()
        with gzip.GzipFile(fileobj=gz, mode="wb", compresslevel=9, mtime=0, filename="") as z:
            z.write(raw)
        desc = put_blob(out, gz.getvalue())
        desc["mediaType"] = MT_LAYER
        layers.append(desc)
        history.append({"created": "2023-11-14T22:13:20Z", "created_by": "make-sample.py layer %d" % (i + 1)})

    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Cmd": ["/app/main.sh"], "Env": ["PATH=/usr/bin:/bin"], "WorkingDir": "/app"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    cdesc = put_blob(out, jbytes(config))
    cdesc["mediaType"] = MT_CONFIG
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cdesc, "layers": layers}
    mdesc = put_blob(out, jbytes(manifest))
    mdesc["mediaType"] = MT_MANIFEST
    mdesc["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    mdesc["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [mdesc]}
    with open(os.path.join(out, "index.json"), "wb") as f:
        f.write(jbytes(index))
    with open(os.path.join(out, "oci-layout"), "wb") as f:
        f.write(jbytes({"imageLayoutVersion": "1.0.0"}))
    print(mdesc["digest"])


if __name__ == "__main__":
    main()
