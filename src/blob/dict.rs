//! The chunk dictionary (`--chunk-dict bootstrap=PATH`, as nydus-image and nydusify spell it):
//! the chunks of another image's blobs, read from that image's RAFS v6 bootstrap, which a
//! conversion refers to instead of storing them again.
//!
//! The dictionary's chunk info table names every chunk it holds (digest, blob, ci index, where
//! its bytes are); nydus-image 2.2.0 and this tool both write one into every v6 bootstrap. A
//! chunk found here is described exactly as the dictionary describes it, its blob taking a
//! place in the image's blob table at its first use (as nydus-image does: only blobs actually
//! referenced enter the table), so that nydusd reads it from the dictionary's blob.
//!
//! The bootstrap is hostile input like any other: every blob entry and chunk record is checked
//! against what a reader will do with it before it is believed, and a dictionary built with
//! another chunk size, compressor or digester is refused (nydus-image refuses it too: digests
//! of other cuts or hashes never match, and one image's blobs share one compressor).

use sha2::Digest as _;

use super::chunk::{BlobInfo, BlobOptions, ChunkInfo, ChunkTable};
use super::writer::MAX_CHUNKS_PER_BLOB;
use crate::common::error::{Error, Result};
use crate::ondisk::blob::{
    BLOB_CHUNK_MAX_SIZE, BLOB_FEATURE_ALIGNED, BLOB_FEATURE_CAP_TAR_TOC,
    BLOB_FEATURE_HAS_TAR_HEADER, BLOB_FEATURE_HAS_TOC, BLOB_FEATURE_INLINED_CHUNK_DIGEST,
    BLOB_FEATURE_INLINED_FS_META,
};
use crate::ondisk::rafs_v6::reader::BootstrapReader;
use crate::ondisk::rafs_v6::{
    BLOB_CHUNK_FLAG_COMPRESSED, BLOB_CHUNK_FLAG_HAS_CRC32, RAFS_SUPER_FLAG_HASH_SHA256,
    RafsV5ChunkInfo, RafsV6Blob,
};

/// Blob features a dictionary blob may have: those of plain RAFS v6 data blobs, with or without
/// inlined metadata. Batch, encrypted, zran and separate-meta blobs need fields and readers this
/// writer does not handle yet, so a dictionary holding them is refused, not half-used.
const DICT_BLOB_FEATURES: u32 = BLOB_FEATURE_ALIGNED
    | BLOB_FEATURE_INLINED_FS_META
    | BLOB_FEATURE_INLINED_CHUNK_DIGEST
    | BLOB_FEATURE_HAS_TAR_HEADER
    | BLOB_FEATURE_HAS_TOC
    | BLOB_FEATURE_CAP_TAR_TOC;

/// Uncompressed chunks of v6 blobs start on 4 KiB boundaries.
const ALIGNMENT: u64 = 4096;

/// The chunks of a dictionary bootstrap, found by content.
#[derive(Debug)]
pub struct ChunkDict {
    /// How errors and reports name it: the path given.
    name: String,
    /// The dictionary's blob table, as it describes each blob (merged form: real blob ids).
    blobs: Vec<BlobInfo>,
    /// Every chunk of the dictionary; `blob_index` is the position in `blobs`.
    table: ChunkTable,
    /// sha256 hex of the bootstrap (a converted layer depends on the dictionary it used).
    digest: String,
}

impl ChunkDict {
    /// Read the dictionary bootstrap `bytes` (named `name` in errors), for images written with
    /// `options`.
    pub fn from_bootstrap(name: &str, bytes: Vec<u8>, options: BlobOptions) -> Result<ChunkDict> {
        let bad = |problem: String| Error::bad_input(format!("chunk dictionary {name}"), problem);
        let digest = crate::common::hex::hex(&sha2::Sha256::digest(&bytes));
        let reader = BootstrapReader::open(bytes)
            .map_err(|p| bad(format!("not a RAFS v6 bootstrap: {p}")))?;
        let digester = if reader.ext.s_flags & RAFS_SUPER_FLAG_HASH_SHA256 != 0 {
            crate::blob::chunk::Digester::Sha256
        } else {
            crate::blob::chunk::Digester::Blake3
        };
        if digester != options.digester {
            return Err(bad(format!(
                "its chunks are digested with {digester:?}, this conversion uses {:?}; \
                 convert with the dictionary's --digester",
                options.digester
            )));
        }
        if reader.ext.s_chunk_size != options.chunk_size {
            return Err(bad(format!(
                "its chunk size is {:#x}, this conversion uses {:#x}; convert with \
                 --chunk-size {:#x}",
                reader.ext.s_chunk_size, options.chunk_size, reader.ext.s_chunk_size
            )));
        }
        let table = reader.blob_table();
        let declared = u64::from(reader.ext.s_blob_table_size) / RafsV6Blob::SIZE as u64;
        if table.len() as u64 != declared || table.is_empty() {
            return Err(bad(format!(
                "its blob table holds {} of {declared} entries; a dictionary needs at least one \
                 blob",
                table.len()
            )));
        }
        let blobs = table
            .iter()
            .enumerate()
            .map(|(i, b)| dict_blob(b, options).map_err(|p| bad(format!("blob {i}: {p}"))))
            .collect::<Result<Vec<_>>>()?;
        let records = reader
            .at(
                reader.ext.s_chunk_table_offset,
                reader.ext.s_chunk_table_size,
            )
            .filter(|t| t.len().is_multiple_of(RafsV5ChunkInfo::SIZE))
            .ok_or_else(|| {
                bad(format!(
                    "its chunk info table ({} bytes at {}) is not whole records inside the file",
                    reader.ext.s_chunk_table_size, reader.ext.s_chunk_table_offset
                ))
            })?;
        let mut dict = ChunkDict {
            name: name.to_string(),
            blobs,
            table: ChunkTable::new(),
            digest,
        };
        for (i, record) in records.chunks_exact(RafsV5ChunkInfo::SIZE).enumerate() {
            let record = RafsV5ChunkInfo::decode(record).map_err(|e| bad(e.to_string()))?;
            let chunk = dict
                .chunk(&record, options)
                .map_err(|p| bad(format!("chunk record {i}: {p}")))?;
            // The first record of a content is the one used (the table is sorted by digest,
            // then blob index: the lowest blob).
            if dict
                .table
                .find(&chunk.digest, chunk.uncompressed_size)
                .is_none()
            {
                dict.table.push(chunk);
            }
        }
        if dict.table.is_empty() {
            return Err(bad("it names no chunk".to_string()));
        }
        Ok(dict)
    }

    /// A chunk record, checked against its blob.
    fn chunk(
        &self,
        c: &RafsV5ChunkInfo,
        options: BlobOptions,
    ) -> std::result::Result<ChunkInfo, String> {
        let blob = self.blobs.get(c.blob_index as usize).ok_or_else(|| {
            format!(
                "names blob {}, the table has {}",
                c.blob_index,
                self.blobs.len()
            )
        })?;
        // nydus-image 2.4 marks every chunk HAS_CRC32; the CRC is not needed to refer to it.
        if c.flags & !(BLOB_CHUNK_FLAG_COMPRESSED | BLOB_CHUNK_FLAG_HAS_CRC32) != 0 {
            return Err(format!(
                "flags {:#x} are not those of a plain chunk",
                c.flags
            ));
        }
        let compressed = c.flags & BLOB_CHUNK_FLAG_COMPRESSED != 0;
        if c.uncompressed_size == 0 || c.uncompressed_size > options.chunk_size {
            return Err(format!(
                "uncompressed size {} is not within the chunk size {:#x}",
                c.uncompressed_size, options.chunk_size
            ));
        }
        if c.compressed_size == 0
            || c.compressed_size > BLOB_CHUNK_MAX_SIZE
            || (!compressed && c.compressed_size != c.uncompressed_size)
        {
            return Err(format!(
                "compressed size {} does not fit its uncompressed size {}",
                c.compressed_size, c.uncompressed_size
            ));
        }
        let data_end = c
            .compressed_offset
            .checked_add(u64::from(c.compressed_size));
        if data_end.is_none_or(|end| end > blob.ci_offset) {
            return Err(format!(
                "bytes at {} (+{}) reach past the blob's chunk data (which ends at {})",
                c.compressed_offset, c.compressed_size, blob.ci_offset
            ));
        }
        let end = c
            .uncompressed_offset
            .checked_add(u64::from(c.uncompressed_size));
        if !c.uncompressed_offset.is_multiple_of(ALIGNMENT)
            || end.is_none_or(|end| end > blob.uncompressed_size)
        {
            return Err(format!(
                "uncompressed offset {} is not 4 KiB aligned inside the blob's {} bytes",
                c.uncompressed_offset, blob.uncompressed_size
            ));
        }
        if c.index >= blob.chunk_count {
            return Err(format!(
                "ci index {} is past the blob's {} chunks",
                c.index, blob.chunk_count
            ));
        }
        Ok(ChunkInfo {
            digest: c.block_id,
            blob_index: c.blob_index,
            ci_index: c.index,
            compressed_offset: c.compressed_offset,
            compressed_size: c.compressed_size,
            uncompressed_offset: c.uncompressed_offset,
            uncompressed_size: c.uncompressed_size,
            compressed,
            file_offset: c.file_offset,
        })
    }

    /// The dictionary's chunk with this content, if it has one; its `blob_index` is the blob's
    /// position in [`blobs`](Self::blobs).
    pub fn find(&self, digest: &[u8; 32], uncompressed_size: u32) -> Option<ChunkInfo> {
        self.table
            .find(digest, uncompressed_size)
            .map(|i| self.table.get(i))
    }

    /// The dictionary's blobs, in its blob table's order.
    pub fn blobs(&self) -> &[BlobInfo] {
        &self.blobs
    }

    /// How many distinct chunks it holds.
    pub fn chunk_count(&self) -> usize {
        self.table.len()
    }

    /// The sha256 hex of its bootstrap.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The path it was read from.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A dictionary's blob table entry, checked: it must be a blob this conversion's blobs could sit
/// beside in one blob table.
fn dict_blob(b: &RafsV6Blob, options: BlobOptions) -> std::result::Result<BlobInfo, String> {
    let id = b.blob_id().map_err(|e| e.to_string())?;
    if id.len() != 64
        || !id
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(format!(
            "id {id:?} is not a sha256 hex digest (a layer's own bootstrap? give the image's \
             merged bootstrap)"
        ));
    }
    if b.compression_algo != options.compressor.ondisk_id() {
        return Err(format!(
            "compressor {} differs from this conversion's {:?}; convert with the dictionary's \
             --compressor",
            b.compression_algo, options.compressor
        ));
    }
    if b.digest_algo != options.digester.ondisk_id() || b.chunk_size != options.chunk_size {
        return Err("digester or chunk size differs from the super block's".to_string());
    }
    if b.features & !DICT_BLOB_FEATURES != 0 || b.features & BLOB_FEATURE_ALIGNED == 0 {
        return Err(format!(
            "features {:#x} are not those of a plain RAFS v6 data blob (batch, encrypted and \
             zran blobs cannot serve as a dictionary yet)",
            b.features
        ));
    }
    if b.chunk_count == 0 || b.chunk_count > MAX_CHUNKS_PER_BLOB {
        return Err(format!("chunk count {} is out of range", b.chunk_count));
    }
    Ok(BlobInfo {
        id: id.to_string(),
        chunk_count: b.chunk_count,
        compressed_size: b.compressed_size,
        uncompressed_size: b.uncompressed_size,
        features: b.features,
        ci_compressor: b.ci_compressor,
        ci_offset: b.ci_offset,
        ci_compressed_size: b.ci_compressed_size,
        ci_uncompressed_size: b.ci_uncompressed_size,
        toc_size: b.blob_toc_size,
        toc_digest: b.blob_toc_digest,
        cipher: None,
    })
}
