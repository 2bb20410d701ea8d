//! Reading a RAFS v5 Nydus data blob, as nydus-image `create --fs-version 5 --blob-inline-meta`
//! lays it out:
//!
//! ```text
//! chunks | tar header image.blob | v5 bootstrap (raw) | tar header image.boot
//! ```
//!
//! A v5 blob has no ci table, no chunk digests section and no TOC: its sections are found from
//! the two tar headers at its end, and each chunk through the record a v5 bootstrap keeps of it
//! (offset, sizes, COMPRESSED flag; the compressor is the bootstrap's). `check` and `unpack`
//! read v5 blobs through here.

use super::compress::decompress;
use super::reader::{BlobError, BlobReader, Read};
use crate::ondisk::blob::{
    BLOB_CHUNK_MAX_SIZE, BlobTarHeader, COMPRESSOR_NONE, TOC_ENTRY_BLOB_RAW, TOC_ENTRY_BOOTSTRAP,
};
use crate::ondisk::rafs_v5::{RafsV5ChunkInfo, RafsV5SuperBlock};
use crate::ondisk::rafs_v6::BLOB_CHUNK_FLAG_COMPRESSED;

/// The sections of a v5 blob, found from its end.
#[derive(Clone, Debug)]
pub struct Sections {
    /// Bytes of chunk data, from offset 0 (the `image.blob` tar header follows them).
    pub data_end: u64,
    /// The inlined bootstrap.
    pub bootstrap: Vec<u8>,
}

/// Whether `blob` ends with an `image.boot` tar header over a RAFS v5 bootstrap (a v6 blob ends
/// with its TOC's header).
pub fn is_v5_blob(blob: &BlobReader) -> bool {
    let Some(at) = blob.len().checked_sub(BlobTarHeader::SIZE as u64) else {
        return false;
    };
    let Ok(h) = blob.tar_header(at) else {
        return false;
    };
    let Ok(len) = h.section_size() else {
        return false;
    };
    h.section_name().ok() == Some(TOC_ENTRY_BOOTSTRAP)
        && at
            .checked_sub(len)
            .and_then(|b| blob.read(b, 8).ok())
            .is_some_and(|head| RafsV5SuperBlock::is_v5(&head))
}

/// The inlined bootstrap and where the chunk data ends, from the two tar headers at the end:
/// `image.boot` last, over the bootstrap; `image.blob` before it, over everything before it.
pub fn sections(blob: &BlobReader) -> Read<Sections> {
    let size = BlobTarHeader::SIZE as u64;
    let boot_header = blob
        .len()
        .checked_sub(size)
        .ok_or("is too short for a tar header")?;
    let h = blob.tar_header(boot_header)?;
    if h.section_name().ok() != Some(TOC_ENTRY_BOOTSTRAP) {
        return Err(format!("the last tar header is not {TOC_ENTRY_BOOTSTRAP}").into());
    }
    let boot_len = h.section_size().map_err(|e| e.to_string())?;
    let boot_at = boot_header
        .checked_sub(boot_len)
        .ok_or_else(|| format!("{TOC_ENTRY_BOOTSTRAP} of {boot_len} bytes runs past the start"))?;
    let bootstrap = blob.read(boot_at, boot_len)?;
    let data_header = boot_at
        .checked_sub(size)
        .ok_or_else(|| format!("no {TOC_ENTRY_BLOB_RAW} tar header before the bootstrap"))?;
    let h = blob.tar_header(data_header).map_err(|e| match e {
        BlobError::Bad(p) => BlobError::Bad(format!("the tar header before the bootstrap: {p}")),
        io => io,
    })?;
    let data_end = h.section_size().map_err(|e| e.to_string())?;
    if h.section_name().ok() != Some(TOC_ENTRY_BLOB_RAW) || data_end != data_header {
        return Err(format!(
            "the tar header before the bootstrap is not {TOC_ENTRY_BLOB_RAW} over the \
             {data_header} bytes before it"
        )
        .into());
    }
    Ok(Sections {
        data_end,
        bootstrap,
    })
}

/// The decompressed bytes of the chunk `c` describes; `compressor` is the bootstrap's
/// (`None` when its flags name no one compressor). Nothing larger than a chunk is allocated.
/// The caller compares the digest.
pub fn read_chunk(
    blob: &BlobReader,
    c: &RafsV5ChunkInfo,
    compressor: Option<u32>,
) -> Read<Vec<u8>> {
    if c.uncompressed_size > BLOB_CHUNK_MAX_SIZE {
        return Err(format!("is {} bytes, more than a chunk holds", c.uncompressed_size).into());
    }
    let stored = blob.read(c.compressed_offset, u64::from(c.compressed_size))?;
    let algo = if c.flags & BLOB_CHUNK_FLAG_COMPRESSED != 0 {
        compressor.ok_or("is compressed, but the super block names no one compressor")?
    } else {
        COMPRESSOR_NONE
    };
    decompress(algo, &stored, c.uncompressed_size as usize)
        .map_err(|e| BlobError::Bad(format!("cannot be decompressed: {e}")))
}
