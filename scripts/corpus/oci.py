#!/usr/bin/env python3
"""Write an OCI image layout from uncompressed layer tars, deterministically.

    oci.py OUT.oci --layer A.tar [--layer B.tar ...] [--cmd ARG ...] [--workdir DIR]
           [--env K=V ...] [--tag latest]

Each layer is gzipped (level 6, no name or time in the header) and stored under its digest; the
config gets the layers' diff_ids, one history entry per layer and the given Cmd/WorkingDir/Env;
the manifest names config and layers; index.json names the manifest under the tag. Every time
in the config is SOURCE_DATE_EPOCH (default 1700000000), JSON keys are sorted: the same layers
and options give the same bytes. COMPRESSOR=pigz gzips with pigz instead (faster on many cores,
deterministic too, other bytes).
"""
import argparse
import datetime
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys


def dumps(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def put(blobs, data=None, path=None):
    """Store bytes (or move a file) under its sha256; return (digest, size)."""
    h = hashlib.sha256()
    if data is not None:
        h.update(data)
        size = len(data)
    else:
        size = 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    hexd = h.hexdigest()
    target = os.path.join(blobs, hexd)
    if data is not None:
        with open(target, "wb") as f:
            f.write(data)
    else:
        shutil.move(path, target)
    return "sha256:" + hexd, size


def gzip_layer(tar, out):
    """gzip `tar` into `out`; the sha256 of the uncompressed bytes (the diff_id)."""
    h = hashlib.sha256()
    with open(tar, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if os.environ.get("COMPRESSOR") == "pigz":
        with open(tar, "rb") as src, open(out, "wb") as dst:
            subprocess.run(["pigz", "-6", "-n", "-c"], stdin=src, stdout=dst, check=True)
    else:
        with open(tar, "rb") as src, open(out, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0, filename="") as z:
                shutil.copyfileobj(src, z, 1 << 20)
    return "sha256:" + h.hexdigest()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--layer", action="append", required=True)
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--workdir")
    p.add_argument("--env", action="append", default=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    p.add_argument("--tag", default="latest")
    a = p.parse_args()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    blobs = os.path.join(a.out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    layers, diff_ids, history = [], [], []
    for i, tar in enumerate(a.layer):
        tmp = os.path.join(blobs, f".layer-{i}")
        diff_ids.append(gzip_layer(tar, tmp))
        digest, size = put(blobs, path=tmp)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size})
        history.append({"created": created, "created_by": f"nydus-offline corpus: layer {i + 1} ({os.path.basename(tar)})"})
    config = {"architecture": "amd64", "os": "linux", "created": created,
              "config": {"Env": a.env}, "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}
    if a.cmd:
        config["config"]["Cmd"] = a.cmd
    if a.workdir:
        config["config"]["WorkingDir"] = a.workdir
    cdigest, csize = put(blobs, dumps(config))
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
                "layers": layers}
    mdigest, msize = put(blobs, dumps(manifest))
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": msize,
                            "platform": {"architecture": "amd64", "os": "linux"},
                            "annotations": {"org.opencontainers.image.ref.name": a.tag}}]}
    with open(os.path.join(a.out, "index.json"), "wb") as f:
        f.write(dumps(index))
    with open(os.path.join(a.out, "oci-layout"), "wb") as f:
        f.write(dumps({"imageLayoutVersion": "1.0.0"}))
    print(mdigest)


if __name__ == "__main__":
    sys.exit(main())
