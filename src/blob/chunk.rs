//! What the blob writers record and the bootstrap writers read: the image-wide chunk table, the
//! description of each finished blob, and the build options both sides must agree on.
//!
//! A chunk is written once, into the blob of the first layer that holds it; every later file
//! with the same content (in that layer or an upper one) refers to the same [`ChunkInfo`] by its
//! [`ChunkIndex`].

use std::collections::HashMap;

use super::ondisk::{
    COMPRESSOR_LZ4_BLOCK, COMPRESSOR_NONE, COMPRESSOR_ZSTD, DIGESTER_BLAKE3, DIGESTER_SHA256,
};
use crate::tree::ChunkIndex;

/// How chunk data is compressed. Each chunk is compressed alone; when that does not make it
/// strictly smaller it is stored raw, as nydus does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compressor {
    None,
    /// A raw LZ4 block (no frame, no size prefix), as `LZ4_compress_default` writes it.
    Lz4Block,
    /// One zstd frame per chunk, level 3.
    Zstd,
}

impl Compressor {
    /// The id nydus stores in blob tables and ci headers.
    pub fn ondisk_id(self) -> u32 {
        match self {
            Compressor::None => COMPRESSOR_NONE,
            Compressor::Lz4Block => COMPRESSOR_LZ4_BLOCK,
            Compressor::Zstd => COMPRESSOR_ZSTD,
        }
    }
}

/// How chunks are digested (over their uncompressed bytes) for dedup and verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Digester {
    Blake3,
    Sha256,
}

impl Digester {
    /// The id nydus stores in blob tables.
    pub fn ondisk_id(self) -> u32 {
        match self {
            Digester::Blake3 => DIGESTER_BLAKE3,
            Digester::Sha256 => DIGESTER_SHA256,
        }
    }
}

/// Options every blob and bootstrap of one image share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobOptions {
    /// Power of two, 4 KiB to 16 MiB.
    pub chunk_size: u32,
    pub compressor: Compressor,
    pub digester: Digester,
    /// Threads digesting and compressing chunks; 0 means one per CPU. The output does not
    /// depend on it.
    pub jobs: usize,
}

impl Default for BlobOptions {
    fn default() -> BlobOptions {
        BlobOptions {
            chunk_size: 1 << 20,
            compressor: Compressor::Zstd,
            digester: Digester::Blake3,
            jobs: 0,
        }
    }
}

/// One stored chunk: where its bytes are, in the blob file and in the blob's 4 KiB-aligned
/// uncompressed space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Digest of the uncompressed bytes.
    pub digest: [u8; 32],
    /// Position of the blob holding it in the image's blob table (layer order).
    pub blob_index: u32,
    /// Sequence number inside its blob (the ci table index).
    pub ci_index: u32,
    pub compressed_offset: u64,
    pub compressed_size: u32,
    /// 4 KiB aligned.
    pub uncompressed_offset: u64,
    pub uncompressed_size: u32,
    /// Whether the stored bytes are compressed (false when compression did not shrink them).
    pub compressed: bool,
    /// Offset in the file that first stored this chunk (the chunk info table records one user).
    pub file_offset: u64,
}

/// Every chunk of the image, with a digest index for dedup.
///
/// Each chunk of each file gets an entry, in the order files are read, the moment it is read:
/// that is what lets the parallel blob writer hand back a file's chunk list before its chunks
/// are digested. The entry is filled once the chunk is stored; a chunk found to repeat an earlier
/// one becomes an alias, a copy of the entry that holds its bytes.
#[derive(Debug, Default)]
pub struct ChunkTable {
    chunks: Vec<Option<ChunkInfo>>,
    by_content: HashMap<([u8; 32], u32), ChunkIndex>,
}

impl ChunkTable {
    /// An empty table.
    pub fn new() -> ChunkTable {
        ChunkTable::default()
    }

    /// The stored chunk with this digest and uncompressed size, if there is one.
    pub fn find(&self, digest: &[u8; 32], uncompressed_size: u32) -> Option<ChunkIndex> {
        self.by_content.get(&(*digest, uncompressed_size)).copied()
    }

    /// Take the next index for a chunk whose description comes later, by [`fill`](Self::fill).
    pub fn reserve(&mut self) -> ChunkIndex {
        let index = ChunkIndex::try_from(self.chunks.len()).expect("fewer than 2^32 chunks");
        self.chunks.push(None);
        index
    }

    /// Describe a reserved chunk. With `stored`, it is the chunk that holds these bytes and later
    /// chunks with the same content are found through it; otherwise it is an alias.
    pub fn fill(&mut self, index: ChunkIndex, chunk: ChunkInfo, stored: bool) {
        if stored {
            self.by_content
                .insert((chunk.digest, chunk.uncompressed_size), index);
        }
        self.chunks[index as usize] = Some(chunk);
    }

    /// Record a newly stored chunk and return its index ([`reserve`](Self::reserve) and
    /// [`fill`](Self::fill) in one).
    pub fn push(&mut self, chunk: ChunkInfo) -> ChunkIndex {
        let index = self.reserve();
        self.fill(index, chunk, true);
        index
    }

    /// A chunk by index. Panics if it was reserved and never filled: every chunk of a file is
    /// filled before its blob's data ends, so that would be a bug.
    pub fn get(&self, index: ChunkIndex) -> &ChunkInfo {
        self.chunks[index as usize]
            .as_ref()
            .expect("chunk filled before it is read")
    }

    /// Number of entries (stored chunks and aliases).
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// A finished blob as the bootstrap's blob table describes it (`RafsV6Blob` fields we choose).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// The blob id: sha256 hex of the blob file, or 64 × `x` inside the blob's own inlined
    /// bootstrap, where the digest cannot be known yet.
    pub id: String,
    pub chunk_count: u32,
    /// The `compressed_size` of the blob table: for blobs with an inlined bootstrap, the offset
    /// where the bootstrap's data starts.
    pub compressed_size: u64,
    /// End of the last chunk in uncompressed space (a 4 KiB multiple).
    pub uncompressed_size: u64,
    /// `BLOB_FEATURE_*` bits, identical in the blob table and the ci header.
    pub features: u32,
    pub ci_compressor: u32,
    pub ci_offset: u64,
    pub ci_compressed_size: u64,
    pub ci_uncompressed_size: u64,
    /// TOC entries + their tar header, 0 when unknown (always 0 in an inlined bootstrap).
    pub toc_size: u32,
    pub toc_digest: [u8; 32],
}

/// The placeholder blob id of a blob's own inlined bootstrap.
pub const INLINED_BLOB_ID_PLACEHOLDER: &str =
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
