//! One RAFS v5 Nydus data blob ([`crate::blob::reader_v5`]: chunks, `image.blob` tar header,
//! raw v5 bootstrap, `image.boot` tar header; no TOC, no ci table), judged: where each chunk
//! lies comes from the chunk records of the blob's own bootstrap. Every chunk those records name is read
//! once, decompressed and its digest compared with the record's; the blob's extended blob table
//! entry is held to what the blob holds. What survives is kept for the bootstrap checks and the
//! comparison with the source: each chunk by index, and the inlined bootstrap.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};

use super::Findings;
use super::blob::{BlobData, Chunk, hex, judged};
use super::bootstrap_v5::{ChunkPlace, V5_BLOB_FEATURES};
use super::layout::BlobLayer;
use crate::blob::chunk::INLINED_BLOB_ID_PLACEHOLDER;
use crate::blob::reader::{BlobError, BlobReader, chunk_digest};
use crate::blob::reader_v5::{read_chunk, sections};
use crate::common::error::Result;
use crate::ondisk::blob::*;
use crate::ondisk::rafs_v5::RafsV5ChunkInfo;
use crate::ondisk::rafs_v5::reader::BootstrapReader;

/// Check the v5 blob of `layer`: its sections, every chunk its own bootstrap names, and its
/// extended blob table entry. `None` when the file cannot be opened (reported by the layout
/// check).
pub(crate) fn check(layer: &BlobLayer, f: &mut Findings) -> Result<Option<BlobData>> {
    let what = format!("blob {}", layer.hex);
    let Ok(blob) = BlobReader::open(&layer.path) else {
        return Ok(None);
    };
    let mut data = BlobData {
        id: layer.hex.clone(),
        ci: Default::default(),
        chunks: Vec::new(),
        inlined_bootstrap: None,
        by_index: HashMap::new(),
    };
    let Some(sections) = judged(sections(&blob), &what, f)? else {
        return Ok(Some(data));
    };
    data.inlined_bootstrap = Some(sections.bootstrap.clone());
    let Ok(boot) = BootstrapReader::open(sections.bootstrap) else {
        f.problem(
            &what,
            format!("{TOC_ENTRY_BOOTSTRAP} is not a RAFS v5 bootstrap"),
        );
        return Ok(Some(data));
    };
    // An unreadable tree is reported by the check of the inlined bootstrap.
    let Ok(records) = boot.records() else {
        return Ok(Some(data));
    };
    let own = boot
        .blob_table()
        .iter()
        .position(|b| b.blob_id == INLINED_BLOB_ID_PLACEHOLDER || b.blob_id == layer.hex);
    let mut chunks: HashMap<u32, RafsV5ChunkInfo> = HashMap::new();
    for r in records.values() {
        for c in r.chunks.iter() {
            if own == Some(c.blob_index as usize) {
                let first = chunks.entry(c.index).or_insert(*c);
                if ChunkPlace::of(first) != ChunkPlace::of(c) || first.block_id != c.block_id {
                    f.problem(
                        &what,
                        format!(
                            "its bootstrap gives chunk {} two places or digests",
                            c.index
                        ),
                    );
                }
            }
        }
    }
    let Some(own) = own else {
        if sections.data_end > 0 {
            f.problem(
                &what,
                "holds chunk data, but its bootstrap does not name it",
            );
        }
        return Ok(Some(data));
    };
    let ext = boot.ext_blob_table().get(own).copied();
    check_ext(&what, ext.as_ref(), &chunks, sections.data_end, f);
    let algo = boot.compressor();
    let hash = boot.digester();
    let mut ordered: Vec<&RafsV5ChunkInfo> = chunks.values().collect();
    ordered.sort_by_key(|c| (c.compressed_offset, c.index));
    // Each byte of chunk data is read at most once: chunks overlapping an earlier one are
    // reported, not read again.
    let mut read_end = 0;
    for c in ordered {
        let cwhat = format!("{what}: chunk {}", c.index);
        let mut chunk = Chunk {
            digest: c.block_id,
            sha256: None,
        };
        let (offset, size) = (c.compressed_offset, u64::from(c.compressed_size));
        if offset < read_end || offset.saturating_add(size) > sections.data_end {
            f.problem(
                &cwhat,
                format!(
                    "at {offset}+{size} overlaps another chunk or runs past the {} bytes of \
                     chunk data",
                    sections.data_end
                ),
            );
        } else {
            read_end = offset + size;
            match read_chunk(&blob, c, algo) {
                Ok(bytes) => {
                    let digest = chunk_digest(hash, &bytes);
                    if digest == c.block_id {
                        chunk.sha256 = Some(Sha256::digest(&bytes).into());
                    } else {
                        f.problem(
                            &cwhat,
                            format!(
                                "decompressed bytes have digest {}, its record says {}",
                                hex(&digest),
                                hex(&c.block_id)
                            ),
                        );
                    }
                }
                Err(BlobError::Bad(p)) => f.problem(&cwhat, p),
                Err(BlobError::Io(e)) => return Err(e),
            }
        }
        data.by_index.insert(c.index, (ChunkPlace::of(c), chunk));
    }
    Ok(Some(data))
}

/// The blob's entry in its own extended blob table against what the blob holds.
fn check_ext(
    what: &str,
    ext: Option<&crate::ondisk::rafs_v5::RafsV5ExtBlobEntry>,
    chunks: &HashMap<u32, RafsV5ChunkInfo>,
    data_end: u64,
    f: &mut Findings,
) {
    let Some(e) = ext else {
        f.problem(
            what,
            "its bootstrap has no extended blob table entry for it",
        );
        return;
    };
    let uncompressed = chunks
        .values()
        .map(|c| {
            c.uncompressed_offset
                .saturating_add(u64::from(c.uncompressed_size))
        })
        .max()
        .unwrap_or(0);
    let expected = (
        chunks.len() as u64,
        V5_BLOB_FEATURES | BLOB_FEATURE_INLINED_FS_META,
        uncompressed,
        data_end + BlobTarHeader::SIZE as u64,
    );
    let actual = (
        u64::from(e.chunk_count),
        e.features,
        e.uncompressed_size,
        e.compressed_size,
    );
    if actual != expected {
        f.problem(
            what,
            format!(
                "extended blob table entry says {} chunks, features {:#x}, {} bytes \
                 uncompressed, {} stored; the blob holds {}, {:#x}, {}, {}",
                actual.0,
                actual.1,
                actual.2,
                actual.3,
                expected.0,
                expected.1,
                expected.2,
                expected.3
            ),
        );
    }
}
