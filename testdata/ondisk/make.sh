#!/bin/sh
# Regenerates the fixtures of this directory with nydus-image 2.2.0 (see README.md).
# Usage: NYDUS_IMAGE=/path/to/nydus-image ./make.sh   (run inside testdata/ondisk)
set -eu
N=${NYDUS_IMAGE:-nydus-image}
T=$(mktemp -d)
python3 layer1.py "$T/l1.tar"
python3 layer2.py "$T/l2.tar"
$N create --type tar-rafs --fs-version 6 --chunk-size 0x1000 --bootstrap plain.boot --blob plain.blob "$T/l1.tar"
$N create --type tar-rafs --fs-version 6 --chunk-size 0x1000 --blob-inline-meta --features blob-toc --blob toc.blob "$T/l1.tar"
printf '/dir/small.txt\n/nonexistent\n/sub\n' | $N create --type tar-rafs --fs-version 6 --chunk-size 0x1000 \
    --compressor lz4_block --digester sha256 --prefetch-policy fs --bootstrap pf.boot --blob "$T/pf.blob" "$T/l1.tar"
$N create --type tar-rafs --fs-version 6 --chunk-size 0x1000 --whiteout-spec none --bootstrap "$T/l1.boot" --blob "$T/l1.blob" "$T/l1.tar"
$N create --type tar-rafs --fs-version 6 --chunk-size 0x1000 --whiteout-spec none --bootstrap "$T/l2.boot" --blob "$T/l2.blob" "$T/l2.tar"
$N merge --bootstrap merged.boot \
    --blob-digests "$(sha256sum "$T/l1.blob" | cut -c1-64),$(sha256sum "$T/l2.blob" | cut -c1-64)" "$T/l1.boot" "$T/l2.boot"
python3 layer5.py "$T/l5.tar"
$N create --type tar-rafs --fs-version 5 --chunk-size 0x1000 --bootstrap v5.boot --blob "$T/v5.blob" "$T/l5.tar"
rm -rf "$T"
