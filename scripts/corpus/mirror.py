#!/usr/bin/env python3
"""Build `mirror.oci`: one OCI layout holding six related images, as a site mirroring its images
has them (issue 18's benchmark): debian-minbase, debian-python and debian-devstack as built by
their builders (all three on the same minbase layer), and three variants made from their layers
without converting anything: python's first two layers (a "python-base" image), devstack's
first three (a "toolchain" image), and python with one more small application layer on top.
Layers are stored once; every tag names its own manifest and config. Deterministic.

    mirror.py CORPUS_DIR        writes CORPUS_DIR/mirror.oci from CORPUS_DIR/debian-*.oci
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

corpus = sys.argv[1]
out = os.path.join(corpus, "mirror.oci")
tmp = out + ".tmp"
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(os.path.join(tmp, "blobs", "sha256"))


def dumps(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":")).encode()


def blob(layout, digest):
    return os.path.join(corpus, layout, "blobs", "sha256", digest.split(":", 1)[1])


def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(tmp, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)


def link(src):
    d = os.path.basename(src)
    dst = os.path.join(tmp, "blobs", "sha256", d)
    if not os.path.exists(dst):
        os.link(src, dst)


def image(layout):
    index = json.load(open(os.path.join(corpus, layout, "index.json")))
    manifest = json.load(open(blob(layout, index["manifests"][0]["digest"])))
    config = json.load(open(blob(layout, manifest["config"]["digest"])))
    return manifest, config


def write(tag, layout, manifest, config, layers, extra=None):
    """An image of `layers` (indexes into the source's) plus an optional extra layer."""
    config = json.loads(json.dumps(config))
    manifest = json.loads(json.dumps(manifest))
    config["rootfs"]["diff_ids"] = [config["rootfs"]["diff_ids"][i] for i in layers]
    config["history"] = [h for h in config.get("history", []) if not h.get("empty_layer")][: len(layers)]
    manifest["layers"] = [manifest["layers"][i] for i in layers]
    for l in manifest["layers"]:
        link(blob(layout, l["digest"]))
    if extra is not None:
        diff_id, gz = extra
        digest, size = put(gz)
        manifest["layers"].append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}
        )
        config["rootfs"]["diff_ids"].append(diff_id)
        config["history"].append({"created": config["history"][-1]["created"], "created_by": "mirror.py app layer"})
    cd, cs = put(dumps(config))
    manifest["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs}
    md, ms = put(dumps(manifest))
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md,
        "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": tag},
        "platform": {"architecture": "amd64", "os": "linux"},
    }


def app_layer():
    """A small deterministic layer: 200 files of a vendored application."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for i in range(200):
            data = (f"# module {i}\n" + "x = %d\n" % i * 50).encode()
            info = tarfile.TarInfo(f"app/vendor/mod{i:03}.py")
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            t.addfile(info, io.BytesIO(data))
    raw = raw.getvalue()
    gz = gzip.compress(raw, compresslevel=6, mtime=0)
    return "sha256:" + hashlib.sha256(raw).hexdigest(), gz


entries = []
for name in ["debian-minbase", "debian-python", "debian-devstack"]:
    manifest, config = image(name + ".oci")
    entries.append(write(name, name + ".oci", manifest, config, range(len(manifest["layers"]))))
manifest, config = image("debian-python.oci")
entries.append(write("python-base", "debian-python.oci", manifest, config, [0, 1]))
entries.append(write("python-app", "debian-python.oci", manifest, config, range(4), app_layer()))
manifest, config = image("debian-devstack.oci")
entries.append(write("toolchain", "debian-devstack.oci", manifest, config, [0, 1, 2]))
with open(os.path.join(tmp, "index.json"), "wb") as f:
    f.write(dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}))
with open(os.path.join(tmp, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
shutil.rmtree(out, ignore_errors=True)
os.rename(tmp, out)
print(out)
