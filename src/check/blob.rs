//! One Nydus data blob, read from its end as nydus-snapshotter reads it: the TOC and the reverse
//! tar header after every section, every TOC entry's content against its digest and size, the
//! ci header against the merged bootstrap's blob table entry, the ci table's ordering rules, and
//! every chunk decompressed and compared with its digest in `blob.digest`
//! (`docs/format.md` §5.2).
//!
//! What survives is kept for the bootstrap and tree checks: the ci table, each chunk's digest and
//! the sha256 of its decompressed bytes, and the inlined bootstrap.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};

use super::Findings;
use super::bootstrap_v5::ChunkPlace;
use super::layout::BlobLayer;
use crate::blob::reader::{
    BatchCache, BlobError, BlobReader, CiTable, Read, SECTION_LIMIT, chunk_digest, ci_size,
    decode_ci, toc_compressor,
};
use crate::common::error::Result;
pub(crate) use crate::common::hex::hex;
use crate::ondisk::blob::*;
use crate::ondisk::rafs_v6::RafsV6Blob;

/// One chunk of a blob, as verified.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    /// Its digest as `blob.digest` records it (the computed one when there is no such section).
    pub digest: [u8; 32],
    /// sha256 of its decompressed bytes; `None` when they could not be read or did not match
    /// the digest.
    pub sha256: Option<[u8; 32]>,
}

/// What a blob holds, once checked.
#[derive(Debug)]
pub(crate) struct BlobData {
    /// Its id: the hex of its layer digest.
    pub id: String,
    /// The decoded ci table, in ci-index order, with its batch contexts (empty for a blob
    /// without chunks, or when it is unreadable).
    pub ci: CiTable,
    /// Each chunk, in ci-index order, parallel to `ci`.
    pub chunks: Vec<Chunk>,
    /// The bootstrap inlined in the blob (TOC entry `image.boot`), decompressed and verified.
    pub inlined_bootstrap: Option<Vec<u8>>,
    /// A RAFS v5 blob's chunks (it has no ci table), by chunk index: where its own bootstrap's
    /// records put each, and the chunk as verified.
    pub by_index: HashMap<u32, (ChunkPlace, Chunk)>,
}

/// The checked blobs of one image, by id.
#[derive(Debug, Default)]
pub(crate) struct BlobSet {
    by_id: HashMap<String, BlobData>,
}

impl BlobSet {
    /// Add a checked blob.
    pub fn insert(&mut self, blob: BlobData) {
        self.by_id.insert(blob.id.clone(), blob);
    }

    /// A checked blob by id.
    pub fn get(&self, id: &str) -> Option<&BlobData> {
        self.by_id.get(id)
    }
}

/// Record a blob the reader found wanting as a problem of `what` (`None`); pass a failing
/// file up.
pub(crate) fn judged<T>(r: Read<T>, what: &str, f: &mut Findings) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(BlobError::Bad(p)) => {
            f.problem(what, p);
            Ok(None)
        }
        Err(BlobError::Io(e)) => Err(e),
    }
}

/// An I/O failure passed up; anything else left to the caller's rules.
fn io<T>(r: Read<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(BlobError::Bad(_)) => Ok(None),
        Err(BlobError::Io(e)) => Err(e),
    }
}

/// Check the blob of `layer`. `entry` is its blob table entry in the merged bootstrap (`None`
/// for a blob without chunks, which must not be in the table). `None` when the file cannot be
/// opened at all (already reported by the layout check).
pub(crate) fn check(
    layer: &BlobLayer,
    entry: Option<&RafsV6Blob>,
    f: &mut Findings,
) -> Result<Option<BlobData>> {
    let what = format!("blob {}", layer.hex);
    let Ok(blob) = BlobReader::open(&layer.path) else {
        return Ok(None);
    };
    let mut data = BlobData {
        id: layer.hex.clone(),
        ci: CiTable::default(),
        chunks: Vec::new(),
        inlined_bootstrap: None,
        by_index: HashMap::new(),
    };
    let sections = read_toc(&blob, &what, entry, f)?;
    let section = |name: &str| sections.iter().find(|(n, _)| n == name).map(|(_, s)| s);
    data.inlined_bootstrap = section(TOC_ENTRY_BOOTSTRAP).cloned().flatten();
    if section(TOC_ENTRY_BOOTSTRAP).is_none() {
        f.problem(&what, format!("has no {TOC_ENTRY_BOOTSTRAP} in its TOC (the snapshotter needs the inlined bootstrap)"));
    }
    let Some(entry) = entry else {
        if section(TOC_ENTRY_BLOB_RAW).is_some() {
            f.problem(
                &what,
                "holds chunk data, but the merged bootstrap's blob table does not list it",
            );
        }
        return Ok(Some(data));
    };
    let ci_bytes = check_ci(&blob, &what, entry, f)?;
    if let (Some(ci), Some(Some(toc_ci))) = (&ci_bytes, section(TOC_ENTRY_BLOB_META))
        && ci != toc_ci
    {
        f.problem(
            &what,
            "the ci table the blob table points at differs from TOC entry blob.meta",
        );
    }
    let Some(ci_bytes) = ci_bytes else {
        return Ok(Some(data));
    };
    match decode_ci(entry, &ci_bytes) {
        Ok(ci) => data.ci = ci,
        Err(problem) => {
            f.problem(&what, format!("ci table: {problem}"));
            return Ok(Some(data));
        }
    }
    if data.ci.entries.len() != entry.chunk_count as usize {
        return Ok(Some(data));
    }
    let tar_header = if entry.features & BLOB_FEATURE_HAS_TAR_HEADER != 0 {
        BlobTarHeader::SIZE as u64
    } else {
        0
    };
    let data_end = entry.ci_offset.saturating_sub(tar_header);
    check_ci_rules(&data.ci, &what, data_end, entry.uncompressed_size, f);
    let chunk_count = data.ci.entries.len();
    let recorded: Option<Vec<[u8; 32]>> = if entry.features & BLOB_FEATURE_INLINED_CHUNK_DIGEST != 0
    {
        match section(TOC_ENTRY_BLOB_DIGEST) {
            Some(Some(bytes)) if bytes.len() == 32 * chunk_count => Some(
                bytes
                    .chunks_exact(32)
                    .map(|d| d.try_into().expect("32 bytes"))
                    .collect(),
            ),
            Some(Some(bytes)) => {
                f.problem(
                    &what,
                    format!(
                        "blob.digest holds {} bytes for {} chunks",
                        bytes.len(),
                        chunk_count
                    ),
                );
                None
            }
            Some(None) => None,
            None => {
                f.problem(
                    &what,
                    "has feature INLINED_CHUNK_DIGEST but no blob.digest section",
                );
                None
            }
        }
    } else {
        None
    };
    // Each byte of chunk data is read at most once: a chunk that overlaps or precedes an
    // earlier one (the ci rules report it) is not read again, or 2^24 entries naming one
    // region would read 2^48 bytes.
    // A batch is read once for all its members (they follow each other).
    let mut read_end = 0;
    let mut cache = BatchCache::default();
    let mut last_batch = None;
    for (k, ci) in data.ci.entries.iter().enumerate() {
        let (offset, csize) = stored_extent(ci, &data.ci);
        let chunk_what = format!("{what}: chunk {k}");
        let mut chunk = Chunk {
            digest: recorded.as_ref().map(|d| d[k]).unwrap_or([0; 32]),
            sha256: None,
        };
        let batch = ci.batch.map(|b| b.index);
        let read_already = batch.is_some() && batch == last_batch;
        if (offset < read_end && !read_already)
            || offset.saturating_add(csize) > data_end
            || !blob.holds(offset, csize)
        {
            // Reported by the ci rules.
            data.chunks.push(chunk);
            continue;
        }
        read_end = offset + csize;
        last_batch = batch;
        match blob.chunk(ci, &data.ci, entry, &mut cache) {
            Ok(bytes) => {
                let digest = chunk_digest(entry.digest_algo, &bytes);
                if recorded.is_none() {
                    chunk.digest = digest;
                }
                if digest == chunk.digest {
                    chunk.sha256 = Some(Sha256::digest(&bytes).into());
                } else {
                    f.problem(
                        &chunk_what,
                        format!(
                            "decompressed bytes have digest {}, blob.digest records {}",
                            hex(&digest),
                            hex(&chunk.digest)
                        ),
                    );
                }
            }
            Err(BlobError::Bad(p)) => f.problem(&chunk_what, p),
            Err(BlobError::Io(e)) => return Err(e),
        }
        data.chunks.push(chunk);
    }
    Ok(Some(data))
}

/// Where a chunk's stored bytes are: its own, or its batch's for a batch member (0 bytes when
/// the batch is unknown; the ci rules report that).
fn stored_extent(c: &ChunkCi, ci: &CiTable) -> (u64, u64) {
    match c.batch {
        Some(b) => (
            c.compressed_offset,
            ci.batches
                .get(b.index as usize)
                .map_or(0, |ctx| u64::from(ctx.compressed_size)),
        ),
        None => (c.compressed_offset, u64::from(c.compressed_size)),
    }
}

/// Read the TOC from the blob's end, check every entry and its tar header, and return each
/// entry's name with its verified, decompressed content (`None` when it failed verification;
/// `image.blob` is verified but not returned).
fn read_toc(
    blob: &BlobReader,
    what: &str,
    entry: Option<&RafsV6Blob>,
    f: &mut Findings,
) -> Result<Vec<(String, Option<Vec<u8>>)>> {
    let Some(toc) = judged(blob.toc(), what, f)? else {
        return Ok(Vec::new());
    };
    let toc_len = (toc.bytes.len() + toc.header_bytes.len()) as u64;
    if let Some(e) = entry {
        if e.blob_toc_size != 0 && u64::from(e.blob_toc_size) != toc_len {
            f.problem(
                what,
                format!(
                    "blob table says the TOC is {} bytes, it is {toc_len}",
                    e.blob_toc_size
                ),
            );
        }
        if e.blob_toc_digest != [0; 32] {
            let mut h = Sha256::new();
            h.update(&toc.bytes);
            h.update(&toc.header_bytes);
            let actual: [u8; 32] = h.finalize().into();
            if actual != e.blob_toc_digest {
                f.problem(
                    what,
                    "TOC digest differs from the blob table's blob_toc_digest",
                );
            }
        }
    }
    let blob_entry = entry;
    let mut out: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    for decoded in &toc.entries {
        let entry = match decoded {
            Ok(e) => e,
            Err(p) => {
                f.problem(what, p.clone());
                continue;
            }
        };
        let name = entry.name().unwrap_or_default().to_string();
        let ewhat = format!("{what}: TOC entry {name}");
        if out.iter().any(|(n, _)| n == &name) {
            f.problem(&ewhat, "appears twice");
            continue;
        }
        let content = check_toc_entry(blob, &ewhat, &name, entry, toc.at, blob_entry, f)?;
        out.push((name, content));
    }
    Ok(out)
}

/// One TOC entry: its range, its tar header, its content against digest and size.
fn check_toc_entry(
    blob: &BlobReader,
    what: &str,
    name: &str,
    toc: &TocEntry,
    toc_at: u64,
    blob_entry: Option<&RafsV6Blob>,
    f: &mut Findings,
) -> Result<Option<Vec<u8>>> {
    let (offset, csize) = (toc.compressed_offset, toc.compressed_size);
    let Some(end) = offset.checked_add(csize).filter(|&e| e <= toc_at) else {
        f.problem(
            what,
            format!("range {offset}+{csize} runs past the TOC at {toc_at}"),
        );
        return Ok(None);
    };
    if toc_compressor(toc.flags).is_none() {
        f.problem(what, format!("flags {:#x} name no compressor", toc.flags));
        return Ok(None);
    }
    // The reverse tar header after the section (blob.meta's covers the ci header too; the
    // ci header has none of its own).
    let (header_at, section) = match name {
        TOC_ENTRY_BLOB_META_HEADER => (None, 0),
        TOC_ENTRY_BLOB_META => (
            Some(end + BlobCompressionContextHeader::SIZE as u64),
            csize + BlobCompressionContextHeader::SIZE as u64,
        ),
        _ => (Some(end), csize),
    };
    if let Some(at) = header_at {
        if at + BlobTarHeader::SIZE as u64 > toc_at {
            f.problem(what, "its tar header lies past the TOC");
        } else {
            match blob.tar_header(at) {
                Ok(h) if h.section_name().ok() == Some(name) && h.section_size().ok() == Some(section) => {}
                Ok(h) => f.problem(
                    what,
                    format!(
                        "tar header after it names {:?} of {:?} bytes, expected {name:?} of {section}",
                        h.section_name().unwrap_or("?"),
                        h.section_size().ok()
                    ),
                ),
                Err(BlobError::Bad(e)) => f.problem(what, format!("no valid tar header after it: {e}")),
                Err(BlobError::Io(e)) => return Err(e),
            }
        }
    }
    if name == TOC_ENTRY_BLOB_RAW {
        // nydus-image hashes the chunk data and then its tar header.
        let Some(actual) = io(blob.sha256(offset, csize + BlobTarHeader::SIZE as u64))? else {
            return Ok(None);
        };
        if actual != toc.uncompressed_digest {
            f.problem(
                what,
                "chunk data (with its tar header) does not match the TOC digest",
            );
        }
        return Ok(None);
    }
    if !matches!(
        name,
        TOC_ENTRY_BLOB_META
            | TOC_ENTRY_BLOB_META_HEADER
            | TOC_ENTRY_BLOB_DIGEST
            | TOC_ENTRY_BOOTSTRAP
    ) {
        f.problem(what, "is not an entry nydus 2.2.0 writes");
        return Ok(None);
    }
    // Known before decompressing: a size the blob table entry rules out is not worth inflating.
    let per_chunk = |bytes: u64| blob_entry.map(|e| u64::from(e.chunk_count) * bytes);
    let expected = match name {
        TOC_ENTRY_BLOB_META_HEADER => Some(BlobCompressionContextHeader::SIZE as u64),
        // V1 or V2 entries and any batch contexts: what the entry's own fields are held to.
        TOC_ENTRY_BLOB_META => blob_entry.map(|e| e.ci_uncompressed_size),
        TOC_ENTRY_BLOB_DIGEST => per_chunk(32),
        _ => None,
    };
    if let Some(expected) = expected.filter(|&e| e != toc.uncompressed_size) {
        f.problem(
            what,
            format!(
                "is {} bytes, the blob table entry needs {expected}",
                toc.uncompressed_size
            ),
        );
        return Ok(None);
    }
    // An encrypted blob's ci table and header are stored encrypted.
    let cipher = match (name, blob_entry) {
        (TOC_ENTRY_BLOB_META | TOC_ENTRY_BLOB_META_HEADER, Some(e)) => {
            crate::blob::reader::cipher_of(e).ok().flatten()
        }
        _ => None,
    };
    judged(blob.section_sealed(toc, toc_at, cipher.as_ref()), what, f)
}

/// The ci header against the blob table entry, and the ci table decompressed.
fn check_ci(
    blob: &BlobReader,
    what: &str,
    entry: &RafsV6Blob,
    f: &mut Findings,
) -> Result<Option<Vec<u8>>> {
    let header_at = entry.ci_offset.saturating_add(entry.ci_compressed_size);
    let hsize = BlobCompressionContextHeader::SIZE as u64;
    if !blob.holds(header_at, hsize) || !blob.holds(entry.ci_offset, entry.ci_compressed_size) {
        f.problem(what, format!("the ci table and header the blob table points at ({} + {} + 4096) lie past the end", entry.ci_offset, entry.ci_compressed_size));
        return Ok(None);
    }
    let hwhat = format!("{what}: ci header");
    let mut batches = 0;
    if let Some(h) = judged(blob.ci_header(entry), what, f)? {
        let mut mismatch = |field: &str, header: u64, table: u64| {
            if header != table {
                f.problem(
                    &hwhat,
                    format!("{field} is {header:#x}, the blob table says {table:#x}"),
                );
            }
        };
        // The merged table drops INLINED_FS_META, as nydus-image merge does; nydusd 2.2.0
        // tolerates exactly that difference.
        mismatch(
            "features",
            u64::from(h.s_features & !BLOB_FEATURE_INLINED_FS_META),
            u64::from(entry.features & !BLOB_FEATURE_INLINED_FS_META),
        );
        mismatch(
            "ci_compressor",
            u64::from(h.s_ci_compressor),
            u64::from(entry.ci_compressor),
        );
        mismatch(
            "ci_entries",
            u64::from(h.s_ci_entries),
            u64::from(entry.chunk_count),
        );
        mismatch("ci_offset", h.s_ci_offset, entry.ci_offset);
        mismatch(
            "ci_compressed_size",
            h.s_ci_compressed_size,
            entry.ci_compressed_size,
        );
        mismatch(
            "ci_uncompressed_size",
            h.s_ci_uncompressed_size,
            entry.ci_uncompressed_size,
        );
        // A batch blob keeps its batch contexts where a zran blob keeps its contexts.
        let batch = entry.features & BLOB_FEATURE_BATCH != 0;
        let batches_ok = if batch {
            h.s_ci_zran_offset == ci_size(entry, 0)
                && h.s_ci_zran_size
                    == u64::from(h.s_ci_zran_count) * BatchInflateContext::SIZE as u64
        } else {
            h.s_ci_zran_offset == 0 && h.s_ci_zran_size == 0 && h.s_ci_zran_count == 0
        };
        if !batches_ok || h.s_reserved.iter().any(|&b| b != 0) {
            f.problem(
                &hwhat,
                "zran (batch) or reserved fields do not describe the ci data",
            );
        }
        batches = if batch { h.s_ci_zran_count } else { 0 };
    }
    let expected = ci_size(entry, batches);
    if entry.ci_uncompressed_size != expected || expected > SECTION_LIMIT {
        // Reported with the blob table.
        return Ok(None);
    }
    judged(blob.ci_bytes(entry), what, f)
}

/// The ordering rules nydusd relies on: chunks back to back in 4 KiB-aligned uncompressed
/// space, ascending compressed offsets, everything inside the chunk data and the blob's
/// uncompressed size.
fn check_ci_rules(
    ci: &CiTable,
    what: &str,
    data_end: u64,
    uncompressed_size: u64,
    f: &mut Findings,
) {
    let mut next_uncompressed = 0;
    let mut compressed_end = 0;
    // Batch members share their batch's bytes: the batch, not each member, follows the
    // previous stored bytes, and batches come in order.
    let mut last_batch: Option<u32> = None;
    for (k, c) in ci.entries.iter().enumerate() {
        let cwhat = format!("{what}: ci entry {k}");
        if c.uncompressed_offset != next_uncompressed {
            f.problem(&cwhat, format!("uncompressed offset {:#x}, expected {next_uncompressed:#x} (right after the previous chunk)", c.uncompressed_offset));
        }
        next_uncompressed =
            c.uncompressed_offset + u64::from(c.uncompressed_size).next_multiple_of(4096);
        if let Some(b) = c.batch {
            let Some(context) = ci.batches.get(b.index as usize) else {
                f.problem(
                    &cwhat,
                    format!("names batch {}, the blob has {}", b.index, ci.batches.len()),
                );
                continue;
            };
            if u64::from(b.offset) + u64::from(c.uncompressed_size)
                > u64::from(context.uncompressed_batch_size)
            {
                f.problem(
                    &cwhat,
                    format!(
                        "lies at {} (+{}) in batch {}, which holds {} bytes",
                        b.offset, c.uncompressed_size, b.index, context.uncompressed_batch_size
                    ),
                );
            }
            if last_batch == Some(b.index) {
                continue;
            }
            if b.index != last_batch.map_or(0, |l| l + 1) {
                f.problem(
                    &cwhat,
                    format!("batch {} does not follow batch {last_batch:?}", b.index),
                );
            }
            last_batch = Some(b.index);
        }
        let (offset, size) = stored_extent(c, ci);
        if offset < compressed_end {
            f.problem(
                &cwhat,
                format!("compressed offset {offset:#x} overlaps the previous chunk"),
            );
        }
        compressed_end = offset + size;
        if compressed_end > data_end {
            f.problem(&cwhat, format!("compressed data ends at {compressed_end:#x}, past the chunk data ({data_end:#x})"));
        }
    }
    if ci.entries.iter().any(|c| c.batch.is_some())
        && last_batch.map_or(0, |l| l as usize + 1) != ci.batches.len()
    {
        f.problem(
            what,
            format!(
                "{} batch contexts, members name {:?} as the last",
                ci.batches.len(),
                last_batch
            ),
        );
    }
    if next_uncompressed != uncompressed_size {
        f.problem(what, format!("chunks end at {next_uncompressed:#x} in uncompressed space, the blob table says {uncompressed_size:#x}"));
    }
}
