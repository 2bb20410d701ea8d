//! Criterion benches for the hot parts of a conversion:
//! - chunk digest + compress throughput through the blob writer (text-like and random data, one
//!   and all worker threads), the work every byte of every layer goes through;
//! - building a RAFS v6 bootstrap for 100,000, 200,000 and 400,000 small files, to show the metadata work
//!   stays linear in the number of files;
//! - reading and verifying a 64 MiB plain layer of a docker save tarball, mapped (as `convert`
//!   reads it) and streamed (as from a gzipped copy of the same tarball).
//!
//! `cargo bench --bench pipeline`; whole-process timings against nydus-image are in
//! scripts/bench.sh and BENCHMARKS.md.

use std::io::{Cursor, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nydus_offline::blob::chunk::FileData;
use nydus_offline::blob::chunk::{BlobOptions, ChunkTable};
use nydus_offline::blob::sink::ChunkSink;
use nydus_offline::blob::writer::{BlobWriter, Hashed};
use nydus_offline::common::path::ImagePath;
use nydus_offline::layer::entry::{EntryKind, InodeData, LayerEntry, Metadata};
use nydus_offline::layer::readahead::ReadAhead;
use nydus_offline::rafs::{self, BootstrapInput};
use nydus_offline::source::{self, Selection};
use nydus_offline::tree::Tree;

/// Deterministic bytes: text-like (compressible about 3:1) or random (incompressible).
fn data(len: usize, text: bool) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let words: [&[u8]; 8] = [
        b"nydus ", b"chunk ", b"blob ", b"layer ", b"inode ", b"merge ", b"zstd ", b"\n",
    ];
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        if text {
            out.extend_from_slice(words[(next() % 8) as usize]);
        } else {
            out.extend_from_slice(&next().to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn chunking(c: &mut Criterion) {
    let len = 64 << 20;
    let mut group = c.benchmark_group("digest+compress");
    group.throughput(Throughput::Bytes(len as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (kind, text) in [("text", true), ("random", false)] {
        let bytes = data(len, text);
        for jobs in [1, 0] {
            let label = if jobs == 0 { "all-cpus" } else { "1-thread" };
            group.bench_with_input(BenchmarkId::new(kind, label), &bytes, |b, bytes| {
                b.iter(|| {
                    let options = BlobOptions {
                        jobs,
                        ..BlobOptions::default()
                    };
                    let mut table = ChunkTable::new();
                    let mut writer =
                        BlobWriter::new(Hashed::new(std::io::sink()), 0, options, &mut table)
                            .unwrap();
                    let path = ImagePath::parse(b"/f").unwrap();
                    writer
                        .file(&path, &mut Cursor::new(bytes), bytes.len() as u64)
                        .unwrap();
                    writer.finish_data().unwrap();
                });
            });
        }
    }
    group.finish();
}

/// A tree shaped like the many-small-files corpus image: `files` files of one 4 KiB chunk each,
/// 16 per directory, directories 8 per parent.
fn small_files_tree(files: usize, table: &mut ChunkTable) -> Tree {
    let mut writer = BlobWriter::new(
        Hashed::new(std::io::sink()),
        0,
        BlobOptions::default(),
        table,
    )
    .unwrap();
    let content = data(4096, true);
    let path = ImagePath::parse(b"/x").unwrap();
    let chunk = writer
        .file(&path, &mut Cursor::new(&content), 4096)
        .unwrap();
    writer.finish_data().unwrap();
    let meta = Metadata {
        mode: 0o644,
        mtime: 1_700_000_000,
        ..Metadata::default()
    };
    let mut entries = Vec::with_capacity(files);
    for n in 0..files {
        let dir = n / 16;
        let path = format!("srv/{}/{}/{}/f{n}", dir / 64, (dir / 8) % 8, dir % 8);
        entries.push(LayerEntry {
            path: ImagePath::parse(path.as_bytes()).unwrap(),
            kind: EntryKind::Inode(InodeData::File(FileData {
                size: 4096,
                chunks: chunk.chunks.clone(),
            })),
            meta: meta.clone(),
        });
    }
    let mut tree = Tree::new();
    tree.apply(entries).unwrap();
    tree
}

fn bootstrap(c: &mut Criterion) {
    let mut group = c.benchmark_group("bootstrap-v6");
    group.sample_size(10);
    for files in [100_000, 200_000, 400_000] {
        let mut table = ChunkTable::new();
        let tree = small_files_tree(files, &mut table);
        let blob = nydus_offline::blob::chunk::BlobInfo {
            id: "a".repeat(64),
            chunk_count: 1,
            compressed_size: 4096,
            uncompressed_size: 4096,
            features: 0x4000_0001,
            ci_compressor: 0,
            ci_offset: 0,
            ci_compressed_size: 16,
            ci_uncompressed_size: 16,
            toc_size: 0,
            toc_digest: [0; 32],
            cipher: None,
        };
        group.throughput(Throughput::Elements(files as u64));
        group.bench_with_input(BenchmarkId::from_parameter(files), &tree, |b, tree| {
            b.iter(|| {
                rafs::write(&BootstrapInput {
                    tree,
                    chunks: &table,
                    blobs: std::slice::from_ref(&blob),
                    options: BlobOptions::default(),
                    prefetch: &rafs::Prefetch::Root,
                })
                .unwrap()
            });
        });
    }
    group.finish();
}

/// A docker save tarball at `path` holding one image of one plain layer, `layer`.
fn docker_save(path: &Path, layer: &[u8]) {
    use sha2::{Digest as _, Sha256};
    let hex = |b: &[u8]| -> String {
        Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    let layer_hex = hex(layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{layer_hex}"]}}}}"#
    );
    let config_name = format!("{}.json", hex(config.as_bytes()));
    let layer_name = format!("{layer_hex}/layer.tar");
    let manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":["bench:latest"],"Layers":["{layer_name}"]}}]"#
    );
    let mut archive = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in [
        (layer_name.as_str(), layer),
        (config_name.as_str(), config.as_bytes()),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        archive.append_data(&mut h, name, bytes).unwrap();
    }
    archive.into_inner().unwrap().flush().unwrap();
}

/// The layer reader thread's work on a plain layer, mapped and streamed. Both hash the bytes once
/// (SHA-256, about 1.2 GiB/s here), which bounds both; mapping saves the kernel's copy into the
/// read buffer (CPU time this does not show: the consumer copies out on another core).
fn layer_reading(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut layer = tar::Builder::new(Vec::new());
    for n in 0..4 {
        let bytes = data(16 << 20, n % 2 == 0);
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        layer
            .append_data(&mut h, format!("f{n}"), &bytes[..])
            .unwrap();
    }
    let layer = layer.into_inner().unwrap();
    let plain = dir.path().join("plain.tar");
    docker_save(&plain, &layer);
    let gzipped = dir.path().join("plain.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    std::fs::write(&gzipped, gz.finish().unwrap()).unwrap();

    let mut group = c.benchmark_group("layer read+verify");
    group.throughput(Throughput::Bytes(layer.len() as u64));
    group.sample_size(20);
    for (label, path) in [("mapped", &plain), ("streamed", &gzipped)] {
        let src = source::open(path).unwrap();
        let image = source::select(&*src, &Selection::default())
            .unwrap()
            .remove(0);
        let layer = image.layers[0].clone();
        assert_eq!(layer.uncompressed_extent().is_some(), label == "mapped");
        group.bench_function(label, |b| {
            b.iter(|| {
                let read = Arc::new(AtomicU64::new(0));
                let mut reader = ReadAhead::open(src.store(), &layer, read).unwrap();
                std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
                reader.finish().unwrap()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, chunking, bootstrap, layer_reading);
criterion_main!(benches);
