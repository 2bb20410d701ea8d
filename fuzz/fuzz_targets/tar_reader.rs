//! The layer tar reader on arbitrary bytes: headers, PAX records, GNU long names, sparse maps
//! (old GNU, PAX 0.0, 0.1, 1.0) and entry data, then the tree the entries make. The bytes are
//! read as a plain tar and, when they start with a gzip or zstd magic number, decompressed
//! first (at most 8 MiB of it). Every outcome but an error is a finding: a panic, an abort, a
//! hang, or memory beyond `-rss_limit_mb`.

#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use nydus_offline::blob::chunk::FileData;
use nydus_offline::blob::sink::ChunkSink;
use nydus_offline::common::path::ImagePath;
use nydus_offline::layer::entries::{self, Limits};
use nydus_offline::source::compression;
use nydus_offline::source::compression::{Compression, Decompressor, Detected};
use nydus_offline::tree::Tree;
use nydus_offline::{Error, Result};

/// Decompressed bytes read at most: a small bomb must not make every run slow.
const MAX_DECOMPRESSED: u64 = 8 << 20;

/// Holes of sparse files allowed: zeros cost time, and the limit itself is what is tested.
const MAX_HOLES: u64 = 4 << 20;

/// Reads each file's content to its end, as the blob writer would, and keeps nothing.
struct Drain;

impl ChunkSink for Drain {
    fn file(&mut self, _path: &ImagePath, data: &mut dyn Read, size: u64) -> Result<FileData> {
        let mut buf = [0u8; 65536];
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            match data.read(&mut buf[..want]) {
                Ok(0) => return Err(Error::bad_input("file", "truncated")),
                Ok(n) => left -= n as u64,
                Err(e) => return Err(Error::bad_input("file", e)),
            }
        }
        Ok(FileData {
            size,
            chunks: Vec::new(),
        })
    }
}

/// Read the tar, and apply what it held to a tree as a layer would be.
fn read(tar: impl Read) {
    let mut limits = Limits::new(MAX_HOLES);
    let Ok((entries, _notes)) = entries::read_layer(tar, &mut Drain, &mut limits) else {
        return;
    };
    let mut tree = Tree::new();
    let _ = tree.add_verbatim(entries.iter().cloned());
    let _ = Tree::new().apply(entries);
}

fuzz_target!(|data: &[u8]| {
    read(data);
    if let Ok((Detected::Known(c @ (Compression::Gzip | Compression::Zstd)), peeked)) =
        compression::sniff(data)
        && let Ok(decoder) = Decompressor::new(peeked, c)
    {
        read(decoder.take(MAX_DECOMPRESSED));
    }
});
