//! What the blob writers record and the bootstrap writers read: the image-wide chunk table, the
//! description of each finished blob, and the build options both sides must agree on.
//!
//! A chunk is written once, into the blob of the first layer that holds it; every later file
//! with the same content (in that layer or an upper one) refers to the same [`ChunkInfo`] by its
//! [`ChunkIndex`].

use sha2::{Digest as _, Sha256};

use crate::ondisk::blob::{
    COMPRESSOR_LZ4_BLOCK, COMPRESSOR_NONE, COMPRESSOR_ZSTD, DIGESTER_BLAKE3, DIGESTER_SHA256,
};

/// Index of a chunk in the image's chunk table (kept by the blob writer).
pub type ChunkIndex = u32;

/// The content of a regular file: its size and its chunks, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileData {
    pub size: u64,
    pub chunks: Vec<ChunkIndex>,
}

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

    /// Its name as nydus-image's `--compressor` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Compressor::None => "none",
            Compressor::Lz4Block => "lz4_block",
            Compressor::Zstd => "zstd",
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

    /// Its name as nydus-image's `--digester` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Digester::Blake3 => "blake3",
            Digester::Sha256 => "sha256",
        }
    }

    /// A hasher of this algorithm, for digests over several pieces (RAFS v5 inode digests).
    pub fn hasher(self) -> DigestHasher {
        match self {
            Digester::Blake3 => DigestHasher::Blake3(Box::default()),
            Digester::Sha256 => DigestHasher::Sha256(Sha256::new()),
        }
    }
}

/// A running digest of a [`Digester`].
pub enum DigestHasher {
    Blake3(Box<blake3::Hasher>),
    Sha256(Sha256),
}

impl DigestHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            DigestHasher::Blake3(h) => {
                h.update(bytes);
            }
            DigestHasher::Sha256(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> [u8; 32] {
        match self {
            DigestHasher::Blake3(h) => *h.finalize().as_bytes(),
            DigestHasher::Sha256(h) => h.finalize().into(),
        }
    }
}

/// Which RAFS version the bootstraps are, which also decides how blobs are laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FsVersion {
    /// RAFS v5: nydusd only. Uncompressed chunks laid end to end; blobs without ci table or
    /// TOC (what `nydus-image create --fs-version 5 --blob-inline-meta` writes).
    V5,
    /// RAFS v6, EROFS-compatible: nydusd and the kernel.
    #[default]
    V6,
}

impl FsVersion {
    /// The number `--fs-version` and the `nydus-fs-version` annotation use.
    pub fn number(self) -> u32 {
        match self {
            FsVersion::V5 => 5,
            FsVersion::V6 => 6,
        }
    }
}

/// Options every blob and bootstrap of one image share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobOptions {
    /// `--fs-version`.
    pub fs_version: FsVersion,
    /// Power of two, 4 KiB to 16 MiB.
    pub chunk_size: u32,
    pub compressor: Compressor,
    pub digester: Digester,
    /// `--encrypt`: every blob's chunks and ci data encrypted (AES-128-XTS, a key per blob).
    pub encrypt: bool,
    /// Threads digesting and compressing chunks; 0 means one per CPU. The output does not
    /// depend on it.
    pub jobs: usize,
    /// `--batch-size`: chunks of single-chunk files smaller than half of it are compressed
    /// together, in frames of up to this many bytes (nydus 2.3+ readers); 0: off. A power of
    /// two from 4 KiB to the chunk size.
    pub batch_size: u32,
}

impl Default for BlobOptions {
    fn default() -> BlobOptions {
        BlobOptions {
            fs_version: FsVersion::V6,
            chunk_size: 1 << 20,
            compressor: Compressor::Zstd,
            digester: Digester::Blake3,
            jobs: 0,
            batch_size: 0,
            encrypt: false,
        }
    }
}

/// One stored chunk: where its bytes are, in the blob file and in the blob's uncompressed space
/// (4 KiB-aligned in RAFS v6, end to end in v5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Digest of the uncompressed bytes.
    pub digest: [u8; 32],
    /// Position of the blob holding it in the image's blob table (blobs enter it in the order
    /// of their first use).
    pub blob_index: u32,
    /// Sequence number inside its blob (the ci table index).
    pub ci_index: u32,
    pub compressed_offset: u64,
    pub compressed_size: u32,
    /// 4 KiB aligned in RAFS v6.
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
/// one becomes an alias, an entry equal to the one that holds its bytes.
///
/// An image of 200,000 small files has 200,000 entries, so they are kept dense: an entry is the
/// position of its description (4 bytes; aliases share the stored chunk's description), a
/// description is packed into 64 bytes ([`Packed`]), and the dedup index is an open-addressing
/// table of entry numbers (about 8 bytes per stored chunk), whose keys are read from the
/// descriptions themselves.
#[derive(Debug, Default)]
pub struct ChunkTable {
    /// Per entry: the position of its description in `infos`, or [`UNFILLED`].
    entries: Vec<u32>,
    /// The distinct descriptions, in the order they were filled.
    infos: Vec<Packed>,
    /// The descriptions [`Packed`] cannot hold (none from the blob writer), by position.
    wide: Vec<ChunkInfo>,
    /// Dedup index by (digest, uncompressed size): entry number + 1 of the stored chunk, 0 for
    /// a free slot. Its length is 0 or a power of two, at most half full.
    by_content: Vec<u32>,
    /// Used slots of `by_content`.
    indexed: usize,
}

/// An entry reserved and not filled yet.
const UNFILLED: u32 = u32::MAX;

/// A [`ChunkInfo`] in 64 bytes instead of 80: uncompressed offsets are 4 KiB blocks, the blob
/// index (at most 255 in RAFS v6) shares a word with the 24-bit ci index, and the `compressed`
/// flag is a bit of the uncompressed size (at most 16 MiB). A description that does not fit is
/// kept whole in the table's `wide` list, which `uncompressed_block` then indexes.
#[derive(Clone, Copy, Debug)]
struct Packed {
    digest: [u8; 32],
    compressed_offset: u64,
    file_offset: u64,
    uncompressed_block: u32,
    compressed_size: u32,
    /// The uncompressed size, with [`COMPRESSED`] and [`WIDE`].
    size_flags: u32,
    /// `ci_index | blob_index << 24`.
    ci_blob: u32,
}

/// `Packed::size_flags`: the chunk is stored compressed.
const COMPRESSED: u32 = 1 << 31;
/// `Packed::size_flags`: the description is in the `wide` list.
const WIDE: u32 = 1 << 30;

impl Packed {
    /// `chunk` packed, if it fits.
    fn new(chunk: &ChunkInfo) -> Option<Packed> {
        let fits = chunk.uncompressed_offset.is_multiple_of(4096)
            && chunk.uncompressed_size < WIDE
            && chunk.ci_index < 1 << 24
            && chunk.blob_index < 1 << 8;
        Some(Packed {
            digest: chunk.digest,
            compressed_offset: chunk.compressed_offset,
            file_offset: chunk.file_offset,
            uncompressed_block: u32::try_from(chunk.uncompressed_offset / 4096)
                .ok()
                .filter(|_| fits)?,
            compressed_size: chunk.compressed_size,
            size_flags: chunk.uncompressed_size | if chunk.compressed { COMPRESSED } else { 0 },
            ci_blob: chunk.ci_index | chunk.blob_index << 24,
        })
    }

    fn uncompressed_size(&self) -> u32 {
        self.size_flags & !(COMPRESSED | WIDE)
    }

    fn unpack(&self) -> ChunkInfo {
        ChunkInfo {
            digest: self.digest,
            blob_index: self.ci_blob >> 24,
            ci_index: self.ci_blob & 0xff_ffff,
            compressed_offset: self.compressed_offset,
            compressed_size: self.compressed_size,
            uncompressed_offset: u64::from(self.uncompressed_block) * 4096,
            uncompressed_size: self.uncompressed_size(),
            compressed: self.size_flags & COMPRESSED != 0,
            file_offset: self.file_offset,
        }
    }
}

/// Where to start looking for a key in a dedup index of `mask + 1` slots. Digests are
/// cryptographic, but tests use made-up ones: every byte counts.
fn slot_of(digest: &[u8; 32], uncompressed_size: u32, mask: usize) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = u64::from(uncompressed_size).wrapping_mul(K);
    for word in digest.chunks_exact(8) {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        h = (h ^ word).wrapping_mul(K).rotate_left(31);
    }
    (h ^ (h >> 29)) as usize & mask
}

impl ChunkTable {
    /// An empty table.
    pub fn new() -> ChunkTable {
        ChunkTable::default()
    }

    /// The stored chunk with this digest and uncompressed size, if there is one.
    pub fn find(&self, digest: &[u8; 32], uncompressed_size: u32) -> Option<ChunkIndex> {
        self.find_slot(digest, uncompressed_size)
            .ok()
            .map(|slot| self.by_content[slot] - 1)
    }

    /// The dedup index slot holding this key (`Ok`), or the free slot where it would go
    /// (`Err`; `usize::MAX` when the index is empty).
    fn find_slot(&self, digest: &[u8; 32], uncompressed_size: u32) -> Result<usize, usize> {
        if self.by_content.is_empty() {
            return Err(usize::MAX);
        }
        let mask = self.by_content.len() - 1;
        let mut slot = slot_of(digest, uncompressed_size, mask);
        loop {
            match self.by_content[slot] {
                0 => return Err(slot),
                entry => {
                    let (found, size) = self.key(entry - 1);
                    if found == digest && size == uncompressed_size {
                        return Ok(slot);
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Index entry `index` (already filled) under its content, replacing what had that key.
    fn index_content(&mut self, index: ChunkIndex) {
        if (self.indexed + 1) * 2 > self.by_content.len() {
            let old = std::mem::take(&mut self.by_content);
            self.by_content = vec![0; (old.len() * 2).max(64)];
            self.indexed = 0;
            for entry in old.into_iter().filter(|&e| e != 0) {
                self.index_content(entry - 1);
            }
        }
        let (digest, size) = self.key(index);
        let digest = *digest;
        match self.find_slot(&digest, size) {
            Ok(slot) => self.by_content[slot] = index + 1,
            Err(slot) => {
                self.by_content[slot] = index + 1;
                self.indexed += 1;
            }
        }
    }

    /// Take the next index for a chunk whose description comes later, by [`fill`](Self::fill).
    pub fn reserve(&mut self) -> ChunkIndex {
        // The last index stays free: entry numbers + 1 must fit the dedup index.
        let index = ChunkIndex::try_from(self.entries.len())
            .ok()
            .filter(|&i| i < u32::MAX - 1)
            .expect("fewer than 2^32 - 1 chunks");
        self.entries.push(UNFILLED);
        index
    }

    /// Describe a reserved chunk. With `stored`, it is the chunk that holds these bytes and later
    /// chunks with the same content are found through it; otherwise it is an alias.
    pub fn fill(&mut self, index: ChunkIndex, chunk: ChunkInfo, stored: bool) {
        if !stored
            && let Some(found) = self.find(&chunk.digest, chunk.uncompressed_size)
            && self.get(found) == chunk
        {
            // An alias: the same description as the stored chunk, shared.
            self.entries[index as usize] = self.entries[found as usize];
            return;
        }
        let position = u32::try_from(self.infos.len()).expect("fewer than 2^32 chunks");
        let packed = Packed::new(&chunk).unwrap_or_else(|| {
            let wide = Packed {
                uncompressed_block: u32::try_from(self.wide.len()).expect("fewer than 2^32"),
                size_flags: WIDE,
                ..Packed::new(&ChunkInfo {
                    uncompressed_offset: 0,
                    uncompressed_size: 0,
                    ci_index: 0,
                    blob_index: 0,
                    ..chunk.clone()
                })
                .expect("fits")
            };
            self.wide.push(chunk);
            wide
        });
        self.infos.push(packed);
        self.entries[index as usize] = position;
        if stored {
            self.index_content(index);
        }
    }

    /// Record a newly stored chunk and return its index ([`reserve`](Self::reserve) and
    /// [`fill`](Self::fill) in one).
    pub fn push(&mut self, chunk: ChunkInfo) -> ChunkIndex {
        let index = self.reserve();
        self.fill(index, chunk, true);
        index
    }

    /// A chunk by index (a copy: the table keeps it packed). Panics if it was reserved and never filled: every chunk of a file is
    /// filled before its blob's data ends, so that would be a bug.
    pub fn get(&self, index: ChunkIndex) -> ChunkInfo {
        let packed = self.packed(index);
        if packed.size_flags & WIDE != 0 {
            self.wide[packed.uncompressed_block as usize].clone()
        } else {
            packed.unpack()
        }
    }

    /// The digest and uncompressed size of a chunk: its key for dedup.
    pub fn key(&self, index: ChunkIndex) -> (&[u8; 32], u32) {
        let packed = self.packed(index);
        if packed.size_flags & WIDE != 0 {
            let wide = &self.wide[packed.uncompressed_block as usize];
            (&wide.digest, wide.uncompressed_size)
        } else {
            (&packed.digest, packed.uncompressed_size())
        }
    }

    fn packed(&self, index: ChunkIndex) -> &Packed {
        let position = self.entries[index as usize];
        assert!(position != UNFILLED, "chunk filled before it is read");
        &self.infos[position as usize]
    }

    /// Number of entries (stored chunks and aliases).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
    /// `--encrypt`: the blob's AES-128-XTS key and IV (the blob table keeps them).
    pub cipher: Option<CipherKey>,
}

/// An encrypted blob's key and IV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CipherKey {
    pub key: [u8; 32],
    pub iv: [u8; 16],
}

/// The placeholder blob id of a blob's own inlined bootstrap.
pub const INLINED_BLOB_ID_PLACEHOLDER: &str =
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u32, size: u32) -> ChunkInfo {
        let mut digest = [0; 32];
        digest[..4].copy_from_slice(&n.to_le_bytes());
        ChunkInfo {
            digest,
            blob_index: n % 3,
            ci_index: n,
            compressed_offset: u64::from(n) * 10,
            compressed_size: size / 2,
            uncompressed_offset: u64::from(n) * 4096,
            uncompressed_size: size,
            compressed: n.is_multiple_of(2),
            file_offset: 0,
        }
    }

    #[test]
    fn stored_chunks_are_found_by_content_and_aliases_share_them() {
        let mut table = ChunkTable::new();
        let mut stored = Vec::new();
        for n in 0..10_000 {
            stored.push(table.push(chunk(n, 4096)));
        }
        // Same digest, another size: another chunk.
        let other = table.push(chunk(7, 100));
        assert_eq!(table.find(&chunk(7, 100).digest, 100), Some(other));
        for n in 0..10_000 {
            let c = chunk(n, 4096);
            let found = table.find(&c.digest, 4096).expect("stored");
            assert_eq!(found, stored[n as usize]);
            assert_eq!(table.get(found), c);
        }
        assert_eq!(table.find(&chunk(10_000, 4096).digest, 4096), None);
        assert_eq!(table.find(&chunk(1, 4096).digest, 100), None);

        let alias = table.reserve();
        let reserved = table.reserve();
        table.fill(alias, chunk(5, 4096), false);
        assert_eq!(table.get(alias), chunk(5, 4096));
        assert_eq!(table.find(&chunk(5, 4096).digest, 4096), Some(stored[5]));
        // An alias that differs from the stored chunk keeps its own description.
        let mut odd = chunk(6, 4096);
        odd.file_offset = 1 << 20;
        table.fill(reserved, odd.clone(), false);
        assert_eq!(table.get(reserved), odd);
        assert_eq!(table.get(stored[6]), chunk(6, 4096));
        assert_eq!(table.len(), 10_003);

        // Storing the same content again makes the newer entry the one found.
        let again = table.push(chunk(9, 4096));
        assert_eq!(table.find(&chunk(9, 4096).digest, 4096), Some(again));

        // Descriptions too wide to pack come back whole, and are found by content.
        let mut odd = chunk(20_000, 4096);
        odd.uncompressed_offset = 4097;
        odd.blob_index = 300;
        odd.ci_index = u32::MAX - 1;
        let mut huge = chunk(20_001, 1 << 30);
        huge.compressed = true;
        for c in [odd, huge] {
            let index = table.push(c.clone());
            assert_eq!(table.get(index), c);
            assert_eq!(table.find(&c.digest, c.uncompressed_size), Some(index));
            assert_eq!(table.key(index), (&c.digest, c.uncompressed_size));
        }
        assert_eq!(table.get(stored[11]), chunk(11, 4096));
    }
}
