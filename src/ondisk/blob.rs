//! On-disk structures of a Nydus data blob, as nydus-image 2.2.0 writes them: the compression
//! context ("ci") entry, the 4096-byte ci header, the 128-byte TOC entry and the 512-byte GNU tar
//! header that follows each section ("reverse tar"). Also the numbering shared with the RAFS
//! blob table: blob feature bits, compressor and digester ids.
//!
//! Every structure is declared once, with its fields in on-disk order, and is encoded and decoded
//! only here, through the little-endian codec of [`crate::common::le`]. Sizes are asserted at
//! compile time next to each type. All integers are little-endian.
//!
//! A blob built the way the snapshotter's converter builds it
//! (`--blob-inline-meta --features blob-toc`) reads, from offset 0:
//!
//! ```text
//! +-------------+-----+----------+---------+-----+----------+-----+-----------+-----+-----+-----+
//! | chunk data  | T   | ci table | ci hdr  | T   | chunk    | T   | bootstrap | T   | TOC | T   |
//! | (per chunk  |image| (V1 16 B | 4096 B  |blob.| digests  |blob.| (zstd)    |image|128 B|rafs.|
//! | compressed) |.blob| entries, |         |meta | 32 B each|diges|           |.boot|each |blob.|
//! |             |     | zstd)    |         |     |          |t    |           |     |     |toc  |
//! +-------------+-----+----------+---------+-----+----------+-----+-----------+-----+-----+-----+
//!                 T = 512-byte GNU tar header describing the section *before* it
//! ```
//!
//! The default layout (no flags) is just `chunk data | ci table | ci header`.
//! See `docs/format.md` §2 for which sections are present when.

use std::io::{self, Write};
use std::mem::size_of;

use crate::common::error::{Error, Result};
use crate::common::le::{LeReader, LeWriter};

// ---------------------------------------------------------------------------------------------
// Numbering shared with the RAFS blob table (nydus `storage/src/device.rs`, `utils/src/compress`,
// `utils/src/digest.rs`).
// ---------------------------------------------------------------------------------------------

/// Blob feature: uncompressed chunks are 4 KiB aligned. Always set for RAFS v6 and required by
/// nydus's `RafsV6Blob::validate`. (`BlobFeatures::ALIGNED`)
pub const BLOB_FEATURE_ALIGNED: u32 = 0x0000_0001;
/// Blob feature: the bootstrap is inlined in the blob (`image.boot` section).
/// (`BlobFeatures::INLINED_FS_META`)
pub const BLOB_FEATURE_INLINED_FS_META: u32 = 0x0000_0002;
/// Blob feature: the ci table uses 24-byte V2 entries. (`BlobFeatures::CHUNK_INFO_V2`)
pub const BLOB_FEATURE_CHUNK_INFO_V2: u32 = 0x0000_0004;
/// Blob feature: the ci table carries gzip random-access (zran) context. (`BlobFeatures::ZRAN`)
pub const BLOB_FEATURE_ZRAN: u32 = 0x0000_0008;
/// Blob feature: chunk data lives in another blob (the original OCI layer).
/// (`BlobFeatures::SEPARATE`)
pub const BLOB_FEATURE_SEPARATE: u32 = 0x0000_0010;
/// Blob feature: a `blob.digest` section holds every chunk's digest.
/// (`BlobFeatures::INLINED_CHUNK_DIGEST`)
pub const BLOB_FEATURE_INLINED_CHUNK_DIGEST: u32 = 0x0000_0020;
/// Blob feature: each section is followed by a tar header. (`BlobFeatures::HAS_TAR_HEADER`)
pub const BLOB_FEATURE_HAS_TAR_HEADER: u32 = 0x1000_0000;
/// Blob feature: the blob ends with a TOC. (`BlobFeatures::HAS_TOC`)
pub const BLOB_FEATURE_HAS_TOC: u32 = 0x2000_0000;
/// Blob feature: built by nydus-image 2.2 or newer; set on every blob by 2.2.0.
/// (`BlobFeatures::CAP_TAR_TOC`)
pub const BLOB_FEATURE_CAP_TAR_TOC: u32 = 0x4000_0000;
/// Blob feature: chunks of single-chunk files are compressed together, several to a frame
/// ("batch chunks", nydus 2.3 and newer; needs [`BLOB_FEATURE_CHUNK_INFO_V2`]); the ci data
/// ends with one [`BatchInflateContext`] per batch. (`BlobFeatures::BATCH`)
pub const BLOB_FEATURE_BATCH: u32 = 0x0000_0080;
/// Blob feature: chunk data (and the ci table) are encrypted. (`BlobFeatures::ENCRYPTED`)
pub const BLOB_FEATURE_ENCRYPTED: u32 = 0x0000_0100;
/// Internal nydus flag that must never reach the disk; readers reject it.
/// (`BlobFeatures::_V5_NO_EXT_BLOB_TABLE`)
pub const BLOB_FEATURE_V5_NO_EXT_BLOB_TABLE: u32 = 0x8000_0000;
/// The low 16 bits are "incompatible" features: a reader rejects any it does not know.
/// (`BLOB_FEATURE_INCOMPAT_MASK`)
pub const BLOB_FEATURE_INCOMPAT_MASK: u32 = 0x0000_ffff;
/// The incompatible features nydus 2.2.0 knows; any other bit under
/// [`BLOB_FEATURE_INCOMPAT_MASK`] makes 2.2.0 reject the blob. (`BLOB_FEATURE_INCOMPAT_VALUE`)
pub const BLOB_FEATURE_INCOMPAT_V2_2: u32 = 0x0000_003f;

/// Compressor id `None`: data stored as is. (`compress::Algorithm::None`)
pub const COMPRESSOR_NONE: u32 = 0;
/// Compressor id `Lz4Block`: a raw LZ4 block, no frame, no size prefix.
pub const COMPRESSOR_LZ4_BLOCK: u32 = 1;
/// Compressor id `GZip` (only used by ref/stargz builds).
pub const COMPRESSOR_GZIP: u32 = 2;
/// Compressor id `Zstd`: one zstd frame.
pub const COMPRESSOR_ZSTD: u32 = 3;

/// Digester id `Blake3`. (`digest::Algorithm::Blake3`)
pub const DIGESTER_BLAKE3: u32 = 0;
/// Digester id `Sha256`. (`digest::Algorithm::Sha256`)
pub const DIGESTER_SHA256: u32 = 1;

/// Largest uncompressed (and V1 compressed) chunk size a ci entry can describe: 16 MiB.
pub const BLOB_CHUNK_MAX_SIZE: u32 = 0x100_0000;

// ---------------------------------------------------------------------------------------------
// Compression context entry (V1)
// ---------------------------------------------------------------------------------------------

const CI_V1_COMP_OFFSET_MASK: u64 = 0xff_ffff_ffff; // bits 0..40 of comp_info
const CI_V1_UNCOMP_OFFSET_MASK: u64 = 0xfff_ffff_f000; // bits 12..44 of uncomp_info
const CI_V1_SIZE_LOW_MASK: u64 = 0x0f_ffff; // bits 0..20 of (size - 1)
const CI_V1_SIZE_HIGH_MASK: u64 = 0xf0_0000; // bits 20..24 of (size - 1)
const CI_V1_SIZE_LOW_SHIFT: u32 = 44;
const CI_V1_UNCOMP_SIZE_HIGH_SHIFT: u32 = 12; // size bits 20..24 live at bits 8..12
const CI_V1_COMP_SIZE_HIGH_SHIFT: u32 = 20; // size bits 20..24 live at bits 40..44

/// One chunk's place in the compressed blob and in the uncompressed (4 KiB aligned) cache file,
/// 16 bytes; the ci table is an array of these in chunk-index order.
///
/// Mirrors `BlobChunkInfoV1Ondisk` (nydus v2.2.0 `storage/src/meta/chunk_info_v1.rs`). Sizes are
/// stored minus one in 24 bits, split into a low 20-bit and a high 4-bit part:
///
/// ```text
/// uncomp_info: 63..44 usize-1 [19:0] | 43..12 uncompressed offset [43:12] | 11..8 usize-1 [23:20] | 7..0 0
/// comp_info:   63..44 csize-1 [19:0] | 43..40 csize-1 [23:20]             | 39..0 compressed offset
/// ```
///
/// V1 has no "compressed" flag: readers treat a chunk as compressed iff its two sizes differ.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobChunkInfoV1Ondisk {
    /// Uncompressed offset (4 KiB aligned, < 2^44) and uncompressed size − 1, packed as above.
    pub uncomp_info: u64,
    /// Compressed offset in the blob (< 2^40) and compressed size − 1, packed as above.
    pub comp_info: u64,
}
const _: () = assert!(size_of::<BlobChunkInfoV1Ondisk>() == BlobChunkInfoV1Ondisk::SIZE);

impl BlobChunkInfoV1Ondisk {
    /// Bytes on disk.
    pub const SIZE: usize = 16;
    const WHAT: &'static str = "ci entry (V1)";

    /// Packs one chunk's location.
    ///
    /// Fails if an offset or size does not fit the format: the uncompressed offset must be 4 KiB
    /// aligned and below 2^44, the compressed offset below 2^40, and both sizes 1 ..= 16 MiB.
    pub fn new(
        uncompressed_offset: u64,
        uncompressed_size: u32,
        compressed_offset: u64,
        compressed_size: u32,
    ) -> Result<BlobChunkInfoV1Ondisk> {
        if uncompressed_offset & !CI_V1_UNCOMP_OFFSET_MASK != 0 {
            return Err(Error::internal(format!(
                "{}: uncompressed offset {uncompressed_offset:#x} is not 4 KiB aligned or >= 2^44",
                Self::WHAT
            )));
        }
        if compressed_offset & !CI_V1_COMP_OFFSET_MASK != 0 {
            return Err(Error::internal(format!(
                "{}: compressed offset {compressed_offset:#x} is >= 2^40",
                Self::WHAT
            )));
        }
        for size in [uncompressed_size, compressed_size] {
            if size == 0 || size > BLOB_CHUNK_MAX_SIZE {
                return Err(Error::internal(format!(
                    "{}: chunk size {size:#x} is not within 1 ..= 16 MiB",
                    Self::WHAT
                )));
            }
        }
        let usize_m1 = u64::from(uncompressed_size - 1);
        let csize_m1 = u64::from(compressed_size - 1);
        Ok(BlobChunkInfoV1Ondisk {
            uncomp_info: (usize_m1 & CI_V1_SIZE_LOW_MASK) << CI_V1_SIZE_LOW_SHIFT
                | uncompressed_offset
                | (usize_m1 & CI_V1_SIZE_HIGH_MASK) >> CI_V1_UNCOMP_SIZE_HIGH_SHIFT,
            comp_info: (csize_m1 & CI_V1_SIZE_LOW_MASK) << CI_V1_SIZE_LOW_SHIFT
                | (csize_m1 & CI_V1_SIZE_HIGH_MASK) << CI_V1_COMP_SIZE_HIGH_SHIFT
                | compressed_offset,
        })
    }

    /// Offset of the chunk's data in the (4 KiB aligned) uncompressed cache file.
    pub fn uncompressed_offset(&self) -> u64 {
        self.uncomp_info & CI_V1_UNCOMP_OFFSET_MASK
    }

    /// Length of the chunk's data once decompressed.
    pub fn uncompressed_size(&self) -> u32 {
        let low = self.uncomp_info >> CI_V1_SIZE_LOW_SHIFT;
        let high = (self.uncomp_info << CI_V1_UNCOMP_SIZE_HIGH_SHIFT) & CI_V1_SIZE_HIGH_MASK;
        (low | high) as u32 + 1
    }

    /// Offset of the chunk's bytes in the blob file.
    pub fn compressed_offset(&self) -> u64 {
        self.comp_info & CI_V1_COMP_OFFSET_MASK
    }

    /// Number of bytes the chunk occupies in the blob file.
    pub fn compressed_size(&self) -> u32 {
        let low = self.comp_info >> CI_V1_SIZE_LOW_SHIFT;
        let high = (self.comp_info >> CI_V1_COMP_SIZE_HIGH_SHIFT) & CI_V1_SIZE_HIGH_MASK;
        (low | high) as u32 + 1
    }

    /// Whether the stored bytes are compressed (the two sizes differ), as readers decide it.
    pub fn is_compressed(&self) -> bool {
        self.compressed_size() != self.uncompressed_size()
    }

    /// The 16 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u64(self.uncomp_info);
        w.u64(self.comp_info);
        w.finish()
    }

    /// Writes the 16 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads an entry from the first 16 bytes of `buf`. Fails on short input or when the
    /// reserved low byte of `uncomp_info` is not zero.
    pub fn decode(buf: &[u8]) -> Result<BlobChunkInfoV1Ondisk> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let ci = BlobChunkInfoV1Ondisk {
            uncomp_info: r.u64(),
            comp_info: r.u64(),
        };
        r.finish();
        if ci.uncomp_info & 0xff != 0 {
            return Err(Error::bad_input(
                Self::WHAT,
                format!("reserved bits set in uncomp_info {:#x}", ci.uncomp_info),
            ));
        }
        Ok(ci)
    }
}

// ---------------------------------------------------------------------------------------------
// Compression context entry (V2) and batch contexts
// ---------------------------------------------------------------------------------------------

const CI_V2_COMP_OFFSET_MASK: u64 = 0xff_ffff_ffff; // bits 0..40 of comp_info
const CI_V2_COMP_SIZE_SHIFT: u32 = 40; // compressed size (not minus one) in bits 40..64
const CI_V2_UNCOMP_OFFSET_MASK: u64 = 0xffff_ffff; // uncompressed offset / 4096, bits 0..32
const CI_V2_UNCOMP_SIZE_SHIFT: u32 = 32; // uncompressed size - 1 in bits 32..56
const CI_V2_SIZE_MASK: u64 = 0xff_ffff;
const CI_V2_FLAGS_SHIFT: u32 = 56; // flags in bits 56..64 of uncomp_info

/// ci V2 flag: the stored bytes are compressed (V2 says so; V1 compared sizes).
pub const CI_V2_FLAG_COMPRESSED: u8 = 0x01;
/// ci V2 flag: a chunk of an original gzip layer (OCI-ref images).
pub const CI_V2_FLAG_ZRAN: u8 = 0x02;
/// ci V2 flag: the chunk is inside a batch; `data` holds the batch index (high 32 bits) and
/// its offset in the batch's uncompressed bytes (low 32 bits).
pub const CI_V2_FLAG_BATCH: u8 = 0x04;
/// ci V2 flag: the stored bytes are encrypted.
pub const CI_V2_FLAG_ENCRYPTED: u8 = 0x08;
/// ci V2 flag: `data` holds a CRC32 of the chunk (nydus 2.4 writes it by default).
pub const CI_V2_FLAG_HAS_CRC32: u8 = 0x10;

/// One chunk's place in the blob, 24 bytes: the V2 form of [`BlobChunkInfoV1Ondisk`], with
/// explicit flags and a word of data, written when a blob has batch or encrypted chunks.
///
/// Mirrors `BlobChunkInfoV2Ondisk` (nydus v2.4 `storage/src/meta/chunk_info_v2.rs`):
///
/// ```text
/// uncomp_info: 63..56 flags | 55..32 usize-1 | 31..0 uncompressed offset / 4096
/// comp_info:   63..40 csize (0 for a batch member) | 39..0 compressed offset
/// data:        batch index << 32 | offset in the batch (batch), CRC32 (HAS_CRC32), or 0
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobChunkInfoV2Ondisk {
    pub uncomp_info: u64,
    pub comp_info: u64,
    pub data: u64,
}
const _: () = assert!(size_of::<BlobChunkInfoV2Ondisk>() == BlobChunkInfoV2Ondisk::SIZE);

impl BlobChunkInfoV2Ondisk {
    /// Bytes on disk.
    pub const SIZE: usize = 24;
    const WHAT: &'static str = "ci entry (V2)";

    /// Packs a chunk as [`ChunkCi`] describes it. Fails if a field does not fit the format.
    pub fn new(c: &ChunkCi) -> Result<BlobChunkInfoV2Ondisk> {
        let fits = c.uncompressed_offset.is_multiple_of(4096)
            && c.uncompressed_offset >> 12 <= CI_V2_UNCOMP_OFFSET_MASK
            && c.compressed_offset <= CI_V2_COMP_OFFSET_MASK
            && (1..=BLOB_CHUNK_MAX_SIZE).contains(&c.uncompressed_size)
            && u64::from(c.compressed_size) <= CI_V2_SIZE_MASK;
        if !fits {
            return Err(Error::internal(format!(
                "{}: {c:?} does not fit",
                Self::WHAT
            )));
        }
        let mut flags = if c.compressed {
            CI_V2_FLAG_COMPRESSED
        } else {
            0
        };
        if c.encrypted {
            flags |= CI_V2_FLAG_ENCRYPTED;
        }
        let mut data = 0;
        if let Some(b) = c.batch {
            flags |= CI_V2_FLAG_BATCH;
            data = u64::from(b.index) << 32 | u64::from(b.offset);
        }
        Ok(BlobChunkInfoV2Ondisk {
            uncomp_info: u64::from(flags) << CI_V2_FLAGS_SHIFT
                | u64::from(c.uncompressed_size - 1) << CI_V2_UNCOMP_SIZE_SHIFT
                | c.uncompressed_offset >> 12,
            comp_info: u64::from(c.compressed_size) << CI_V2_COMP_SIZE_SHIFT | c.compressed_offset,
            data,
        })
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        (self.uncomp_info >> CI_V2_FLAGS_SHIFT) as u8
    }

    /// What the entry says, for the chunks this program reads: plain or batch members,
    /// encrypted or not, with or without a CRC32. Zran entries and unknown flags are refused.
    pub fn ci(&self) -> Result<ChunkCi> {
        let flags = self.flags();
        let known =
            CI_V2_FLAG_COMPRESSED | CI_V2_FLAG_BATCH | CI_V2_FLAG_ENCRYPTED | CI_V2_FLAG_HAS_CRC32;
        if flags & !known != 0 {
            return Err(Error::bad_input(
                Self::WHAT,
                format!("flags {flags:#x}: zran or unknown chunks cannot be read"),
            ));
        }
        let batch = (flags & CI_V2_FLAG_BATCH != 0).then_some(BatchRef {
            index: (self.data >> 32) as u32,
            offset: self.data as u32,
        });
        Ok(ChunkCi {
            uncompressed_offset: (self.uncomp_info & CI_V2_UNCOMP_OFFSET_MASK) << 12,
            uncompressed_size: ((self.uncomp_info >> CI_V2_UNCOMP_SIZE_SHIFT) & CI_V2_SIZE_MASK)
                as u32
                + 1,
            compressed_offset: self.comp_info & CI_V2_COMP_OFFSET_MASK,
            compressed_size: (self.comp_info >> CI_V2_COMP_SIZE_SHIFT) as u32,
            compressed: flags & CI_V2_FLAG_COMPRESSED != 0,
            encrypted: flags & CI_V2_FLAG_ENCRYPTED != 0,
            batch,
        })
    }

    /// The 24 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u64(self.uncomp_info);
        w.u64(self.comp_info);
        w.u64(self.data);
        w.finish()
    }

    /// Reads an entry from the first 24 bytes of `buf`. Fails only on short input.
    pub fn decode(buf: &[u8]) -> Result<BlobChunkInfoV2Ondisk> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let ci = BlobChunkInfoV2Ondisk {
            uncomp_info: r.u64(),
            comp_info: r.u64(),
            data: r.u64(),
        };
        r.finish();
        Ok(ci)
    }
}

/// Where a batch member lies: which batch, and where in the batch's uncompressed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRef {
    pub index: u32,
    pub offset: u32,
}

/// What a ci entry says of a chunk, whatever its format (V1 or V2): what readers and the
/// writer work with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkCi {
    pub uncompressed_offset: u64,
    pub uncompressed_size: u32,
    /// For a batch member: where its batch starts (its bytes are the batch's).
    pub compressed_offset: u64,
    /// 0 for a batch member (its batch's context has the size).
    pub compressed_size: u32,
    pub compressed: bool,
    /// The stored bytes (the batch's, for a member) are encrypted.
    pub encrypted: bool,
    pub batch: Option<BatchRef>,
}

impl From<&BlobChunkInfoV1Ondisk> for ChunkCi {
    fn from(v1: &BlobChunkInfoV1Ondisk) -> ChunkCi {
        ChunkCi {
            uncompressed_offset: v1.uncompressed_offset(),
            uncompressed_size: v1.uncompressed_size(),
            compressed_offset: v1.compressed_offset(),
            compressed_size: v1.compressed_size(),
            compressed: v1.is_compressed(),
            encrypted: false,
            batch: None,
        }
    }
}

/// One batch of a batch blob, 40 bytes, after the V2 entries in the ci data (the ci header's
/// `s_ci_zran_*` fields say where and how many). The batch's bytes lie at the compressed offset
/// of its members' entries.
///
/// Mirrors `BatchInflateContext` (nydus v2.4 `storage/src/meta/batch.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchInflateContext {
    /// Bytes of the batch in the blob; equal to the next field when stored uncompressed.
    pub compressed_size: u32,
    /// Bytes of its members back to back, unaligned.
    pub uncompressed_batch_size: u32,
    /// Zeros.
    pub reserved: [u8; 32],
}
const _: () = assert!(size_of::<BatchInflateContext>() == BatchInflateContext::SIZE);

impl BatchInflateContext {
    /// Bytes on disk.
    pub const SIZE: usize = 40;
    const WHAT: &'static str = "batch context";

    /// The 40 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u32(self.compressed_size);
        w.u32(self.uncompressed_batch_size);
        w.bytes(&self.reserved);
        w.finish()
    }

    /// Reads a context from the first 40 bytes of `buf`. Fails only on short input.
    pub fn decode(buf: &[u8]) -> Result<BatchInflateContext> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let c = BatchInflateContext {
            compressed_size: r.u32(),
            uncompressed_batch_size: r.u32(),
            reserved: r.bytes(),
        };
        r.finish();
        Ok(c)
    }
}

// ---------------------------------------------------------------------------------------------
// Compression context header
// ---------------------------------------------------------------------------------------------

/// Magic number at both ends of the ci header. (`BLOB_CCT_MAGIC`)
pub const BLOB_CCT_MAGIC: u32 = 0xb10b_b10b;

/// The 4096-byte header written right after the (compressed) ci table; it says where the table
/// is and how to read it, and must agree with the blob's entry in the bootstrap's blob table.
///
/// Mirrors `BlobCompressionContextHeader` (nydus v2.2.0 `storage/src/meta/mod.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobCompressionContextHeader {
    /// [`BLOB_CCT_MAGIC`].
    pub s_magic: u32,
    /// Blob feature bits (`BLOB_FEATURE_*`); same value as the blob table entry's `features`.
    pub s_features: u32,
    /// Compressor of the ci table (`COMPRESSOR_*`): zstd, or none when zstd did not shrink it.
    pub s_ci_compressor: u32,
    /// Number of entries in the ci table (= the blob's chunk count).
    pub s_ci_entries: u32,
    /// Offset of the compressed ci table in the blob.
    pub s_ci_offset: u64,
    /// Bytes of the ci table as stored (compressed).
    pub s_ci_compressed_size: u64,
    /// Bytes of the ci table decompressed: 16 × entries for V1.
    pub s_ci_uncompressed_size: u64,
    /// zran blobs only: offset of the zran context inside the decompressed ci data; else 0.
    pub s_ci_zran_offset: u64,
    /// zran blobs only: bytes of zran context table and dictionaries; else 0.
    pub s_ci_zran_size: u64,
    /// zran blobs only: number of zran context entries; else 0.
    pub s_ci_zran_count: u32,
    /// Zeros.
    pub s_reserved: [u8; 4032],
    /// [`BLOB_CCT_MAGIC`] again, in the header's last 4 bytes.
    pub s_magic2: u32,
}
const _: () =
    assert!(size_of::<BlobCompressionContextHeader>() == BlobCompressionContextHeader::SIZE);

impl Default for BlobCompressionContextHeader {
    /// Both magics set, everything else zero (compressor `None`).
    fn default() -> Self {
        BlobCompressionContextHeader {
            s_magic: BLOB_CCT_MAGIC,
            s_features: 0,
            s_ci_compressor: COMPRESSOR_NONE,
            s_ci_entries: 0,
            s_ci_offset: 0,
            s_ci_compressed_size: 0,
            s_ci_uncompressed_size: 0,
            s_ci_zran_offset: 0,
            s_ci_zran_size: 0,
            s_ci_zran_count: 0,
            s_reserved: [0; 4032],
            s_magic2: BLOB_CCT_MAGIC,
        }
    }
}

impl BlobCompressionContextHeader {
    /// Bytes on disk.
    pub const SIZE: usize = 4096;
    const WHAT: &'static str = "blob compression context header";

    /// The 4096 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u32(self.s_magic);
        w.u32(self.s_features);
        w.u32(self.s_ci_compressor);
        w.u32(self.s_ci_entries);
        w.u64(self.s_ci_offset);
        w.u64(self.s_ci_compressed_size);
        w.u64(self.s_ci_uncompressed_size);
        w.u64(self.s_ci_zran_offset);
        w.u64(self.s_ci_zran_size);
        w.u32(self.s_ci_zran_count);
        w.bytes(&self.s_reserved);
        w.u32(self.s_magic2);
        w.finish()
    }

    /// Writes the 4096 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads a header from the first 4096 bytes of `buf`. Fails on short input or when either
    /// magic number is wrong.
    pub fn decode(buf: &[u8]) -> Result<BlobCompressionContextHeader> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let h = BlobCompressionContextHeader {
            s_magic: r.u32(),
            s_features: r.u32(),
            s_ci_compressor: r.u32(),
            s_ci_entries: r.u32(),
            s_ci_offset: r.u64(),
            s_ci_compressed_size: r.u64(),
            s_ci_uncompressed_size: r.u64(),
            s_ci_zran_offset: r.u64(),
            s_ci_zran_size: r.u64(),
            s_ci_zran_count: r.u32(),
            s_reserved: r.bytes(),
            s_magic2: r.u32(),
        };
        r.finish();
        if h.s_magic != BLOB_CCT_MAGIC || h.s_magic2 != BLOB_CCT_MAGIC {
            return Err(Error::bad_input(
                Self::WHAT,
                format!(
                    "bad magic {:#x}/{:#x}, expected {BLOB_CCT_MAGIC:#x}",
                    h.s_magic, h.s_magic2
                ),
            ));
        }
        Ok(h)
    }
}

// ---------------------------------------------------------------------------------------------
// TOC entry
// ---------------------------------------------------------------------------------------------

/// TOC entry name of the chunk data section. (`TOC_ENTRY_BLOB_RAW`)
pub const TOC_ENTRY_BLOB_RAW: &str = "image.blob";
/// TOC entry name of the inlined bootstrap. (`TOC_ENTRY_BOOTSTRAP`)
pub const TOC_ENTRY_BOOTSTRAP: &str = "image.boot";
/// TOC entry name of the ci table (its tar header covers the ci header too).
/// (`TOC_ENTRY_BLOB_META`)
pub const TOC_ENTRY_BLOB_META: &str = "blob.meta";
/// TOC entry name of the 4096-byte ci header. (`TOC_ENTRY_BLOB_META_HEADER`)
pub const TOC_ENTRY_BLOB_META_HEADER: &str = "blob.meta.header";
/// TOC entry name of the chunk digest array. (`TOC_ENTRY_BLOB_DIGEST`)
pub const TOC_ENTRY_BLOB_DIGEST: &str = "blob.digest";
/// Tar header name of the TOC itself (no TOC entry describes it). (`TOC_ENTRY_BLOB_TOC`)
pub const TOC_ENTRY_BLOB_TOC: &str = "rafs.blob.toc";

/// TOC entry flag: the entry's data is stored as is. (`TocEntryFlags::COMPRESSION_NONE`)
pub const TOC_FLAG_COMPRESSION_NONE: u32 = 0x0001;
/// TOC entry flag: the entry's data is one zstd frame. (`TocEntryFlags::COMPRESSION_ZSTD`)
pub const TOC_FLAG_COMPRESSION_ZSTD: u32 = 0x0002;
/// TOC entry flag: LZ4 block; nydus 2.2.0 refuses to extract such entries.
/// (`TocEntryFlags::COMPRESSION_LZ4_BLOCK`)
pub const TOC_FLAG_COMPRESSION_LZ4_BLOCK: u32 = 0x0004;

/// One section of the blob as listed in its table of contents, 128 bytes; the TOC is an array of
/// these followed by the `rafs.blob.toc` tar header at the very end of the blob.
///
/// Mirrors `TocEntry` (nydus v2.2.0 `storage/src/meta/toc.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TocEntry {
    /// `TOC_FLAG_COMPRESSION_*`: how the entry's data is stored.
    pub flags: u32,
    /// Zero.
    pub reserved1: u32,
    /// Section name (`TOC_ENTRY_*`), NUL padded.
    pub name: [u8; 16],
    /// sha256 of the section's data once decompressed.
    pub uncompressed_digest: [u8; 32],
    /// Absolute offset of the section's data in the blob.
    pub compressed_offset: u64,
    /// Bytes of the section's data as stored.
    pub compressed_size: u64,
    /// Bytes of the section's data once decompressed.
    pub uncompressed_size: u64,
    /// Zeros.
    pub reserved2: [u8; 48],
}
const _: () = assert!(size_of::<TocEntry>() == TocEntry::SIZE);

impl TocEntry {
    /// Bytes on disk.
    pub const SIZE: usize = 128;
    const WHAT: &'static str = "blob TOC entry";

    /// An entry with the given name (at most 16 bytes, no NUL), reserved fields zero.
    pub fn new(
        name: &str,
        flags: u32,
        uncompressed_digest: [u8; 32],
        compressed_offset: u64,
        compressed_size: u64,
        uncompressed_size: u64,
    ) -> Result<TocEntry> {
        let bytes = name.as_bytes();
        if bytes.len() > 16 || bytes.contains(&0) {
            return Err(Error::internal(format!(
                "{}: invalid name {name:?}",
                Self::WHAT
            )));
        }
        let mut padded = [0u8; 16];
        padded[..bytes.len()].copy_from_slice(bytes);
        Ok(TocEntry {
            flags,
            reserved1: 0,
            name: padded,
            uncompressed_digest,
            compressed_offset,
            compressed_size,
            uncompressed_size,
            reserved2: [0; 48],
        })
    }

    /// The entry name without its NUL padding. Fails if it is not UTF-8.
    pub fn name(&self) -> Result<&str> {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(16);
        std::str::from_utf8(&self.name[..end])
            .map_err(|_| Error::bad_input(Self::WHAT, "name is not UTF-8"))
    }

    /// The 128 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u32(self.flags);
        w.u32(self.reserved1);
        w.bytes(&self.name);
        w.bytes(&self.uncompressed_digest);
        w.u64(self.compressed_offset);
        w.u64(self.compressed_size);
        w.u64(self.uncompressed_size);
        w.bytes(&self.reserved2);
        w.finish()
    }

    /// Writes the 128 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads an entry from the first 128 bytes of `buf`. Fails on short input or a name that is
    /// not UTF-8.
    pub fn decode(buf: &[u8]) -> Result<TocEntry> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let e = TocEntry {
            flags: r.u32(),
            reserved1: r.u32(),
            name: r.bytes(),
            uncompressed_digest: r.bytes(),
            compressed_offset: r.u64(),
            compressed_size: r.u64(),
            uncompressed_size: r.u64(),
            reserved2: r.bytes(),
        };
        r.finish();
        e.name()?;
        Ok(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Reverse tar header
// ---------------------------------------------------------------------------------------------

/// GNU magic + version: `"ustar "` then `" \0"`.
const GNU_MAGIC_VERSION: [u8; 8] = *b"ustar  \0";
/// Tar type flag of a regular file.
pub const TAR_TYPE_REGULAR: u8 = b'0';
/// The 512-byte GNU tar header nydus writes *after* each section of a blob (a "reverse tar"
/// header: a reader walks the blob from its end; the section's data is the `size` bytes just
/// before the header, not padded to 512).
///
/// Declared with the GNU layout (`struct posix_header` + GNU extensions); every field is text or
/// bytes, as in tar. nydus v2.2.0 writes it with the `tar` crate (`Header::new_gnu`, then
/// `set_path`, `set_entry_type(Regular)`, `set_size`, `set_cksum`; `ArtifactWriter::
/// write_tar_header` in `src/bin/nydus-image/core/context.rs`), which leaves mode, uid, gid and
/// everything after `version` NUL and sets mtime to the octal text `00000000000`.
/// [`BlobTarHeader::new`] reproduces those bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobTarHeader {
    /// Section name (`TOC_ENTRY_*`), NUL padded.
    pub name: [u8; 100],
    /// File mode, octal text; NUL in nydus headers.
    pub mode: [u8; 8],
    /// Owner uid, octal text; NUL in nydus headers.
    pub uid: [u8; 8],
    /// Owner gid, octal text; NUL in nydus headers.
    pub gid: [u8; 8],
    /// Section size: 11 octal digits and a NUL, or GNU base-256 (first byte 0x80) from 8 GiB.
    pub size: [u8; 12],
    /// Modification time, octal text; `00000000000\0` in nydus headers.
    pub mtime: [u8; 12],
    /// Sum of all header bytes with this field counted as spaces: 7 octal digits and a NUL.
    pub cksum: [u8; 8],
    /// Entry type; [`TAR_TYPE_REGULAR`].
    pub typeflag: u8,
    /// Link target; NUL.
    pub linkname: [u8; 100],
    /// `"ustar "` (GNU).
    pub magic: [u8; 6],
    /// `" \0"` (GNU).
    pub version: [u8; 2],
    /// Owner user name; NUL.
    pub uname: [u8; 32],
    /// Owner group name; NUL.
    pub gname: [u8; 32],
    /// Device major, octal text; NUL.
    pub devmajor: [u8; 8],
    /// Device minor, octal text; NUL.
    pub devminor: [u8; 8],
    /// GNU access time; NUL.
    pub atime: [u8; 12],
    /// GNU change time; NUL.
    pub ctime: [u8; 12],
    /// GNU multivolume offset; NUL.
    pub offset: [u8; 12],
    /// GNU long names (unused); NUL.
    pub longnames: [u8; 4],
    /// Unused byte; NUL.
    pub unused: u8,
    /// GNU sparse map (4 × offset/size pairs of 12 bytes); NUL.
    pub sparse: [u8; 96],
    /// GNU sparse continuation flag; NUL.
    pub isextended: u8,
    /// GNU sparse real size; NUL.
    pub realsize: [u8; 12],
    /// Padding to 512 bytes; NUL.
    pub pad: [u8; 17],
}
const _: () = assert!(size_of::<BlobTarHeader>() == BlobTarHeader::SIZE);

impl BlobTarHeader {
    /// Bytes on disk.
    pub const SIZE: usize = 512;
    const WHAT: &'static str = "blob tar header";

    /// The header nydus-image 2.2.0 writes after a section called `name` holding `size` bytes.
    ///
    /// Fails if the name is empty, longer than 100 bytes or contains a NUL.
    pub fn new(name: &str, size: u64) -> Result<BlobTarHeader> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > 100 || bytes.contains(&0) {
            return Err(Error::internal(format!(
                "{}: invalid section name {name:?}",
                Self::WHAT
            )));
        }
        // The `tar` crate builds it, as it does in nydus-image: GNU magic, mode, uid and gid
        // NUL, mtime 0 in octal, the size in octal (GNU base-256 from 8 GiB), the checksum.
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().expect("a GNU header").name[..bytes.len()].copy_from_slice(bytes);
        h.set_size(size);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        BlobTarHeader::decode(h.as_bytes())
            .map_err(|e| Error::internal(format!("{}: {e}", Self::WHAT)))
    }

    /// The section name, without NUL padding. Fails if it is not UTF-8.
    pub fn section_name(&self) -> Result<&str> {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(100);
        std::str::from_utf8(&self.name[..end])
            .map_err(|_| Error::bad_input(Self::WHAT, "name is not UTF-8"))
    }

    /// The section size. Fails if the size field is neither octal text nor base-256.
    pub fn section_size(&self) -> Result<u64> {
        if self.size[0] & 0x80 != 0 {
            // GNU base-256: the remaining bits, big-endian. 8 bytes are enough for a u64.
            if self.size[1..4] != [0, 0, 0] || self.size[0] != 0x80 {
                return Err(Error::bad_input(Self::WHAT, "base-256 size too large"));
            }
            let mut be = [0u8; 8];
            be.copy_from_slice(&self.size[4..]);
            return Ok(u64::from_be_bytes(be));
        }
        parse_octal(&self.size)
            .ok_or_else(|| Error::bad_input(Self::WHAT, "size field is not octal"))
    }

    /// The tar checksum of this header: the byte sum with `cksum` counted as 8 spaces.
    fn checksum(&self) -> u64 {
        let bytes = self.to_bytes();
        let mut sum: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
        sum -= self.cksum.iter().map(|&b| u64::from(b)).sum::<u64>();
        sum + 8 * u64::from(b' ')
    }

    /// The 512 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.bytes(&self.name);
        w.bytes(&self.mode);
        w.bytes(&self.uid);
        w.bytes(&self.gid);
        w.bytes(&self.size);
        w.bytes(&self.mtime);
        w.bytes(&self.cksum);
        w.u8(self.typeflag);
        w.bytes(&self.linkname);
        w.bytes(&self.magic);
        w.bytes(&self.version);
        w.bytes(&self.uname);
        w.bytes(&self.gname);
        w.bytes(&self.devmajor);
        w.bytes(&self.devminor);
        w.bytes(&self.atime);
        w.bytes(&self.ctime);
        w.bytes(&self.offset);
        w.bytes(&self.longnames);
        w.u8(self.unused);
        w.bytes(&self.sparse);
        w.u8(self.isextended);
        w.bytes(&self.realsize);
        w.bytes(&self.pad);
        w.finish()
    }

    /// Writes the 512 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads a header from the first 512 bytes of `buf`.
    ///
    /// Fails on short input, a header that is not GNU (`"ustar  \0"`), a type other than a
    /// regular file (`'0'` or NUL), a bad checksum, or a name or size that does not parse —
    /// the checks nydus's `TocEntryList::parse_toc_header` makes on the TOC header.
    pub fn decode(buf: &[u8]) -> Result<BlobTarHeader> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let h = BlobTarHeader {
            name: r.bytes(),
            mode: r.bytes(),
            uid: r.bytes(),
            gid: r.bytes(),
            size: r.bytes(),
            mtime: r.bytes(),
            cksum: r.bytes(),
            typeflag: r.u8(),
            linkname: r.bytes(),
            magic: r.bytes(),
            version: r.bytes(),
            uname: r.bytes(),
            gname: r.bytes(),
            devmajor: r.bytes(),
            devminor: r.bytes(),
            atime: r.bytes(),
            ctime: r.bytes(),
            offset: r.bytes(),
            longnames: r.bytes(),
            unused: r.u8(),
            sparse: r.bytes(),
            isextended: r.u8(),
            realsize: r.bytes(),
            pad: r.bytes(),
        };
        r.finish();
        if h.magic != GNU_MAGIC_VERSION[..6] || h.version != GNU_MAGIC_VERSION[6..] {
            return Err(Error::bad_input(Self::WHAT, "not a GNU tar header"));
        }
        if h.typeflag != TAR_TYPE_REGULAR && h.typeflag != 0 {
            return Err(Error::bad_input(
                Self::WHAT,
                format!("type {:?} is not a regular file", h.typeflag as char),
            ));
        }
        let stored = parse_octal(&h.cksum)
            .ok_or_else(|| Error::bad_input(Self::WHAT, "checksum field is not octal"))?;
        if stored != h.checksum() {
            return Err(Error::bad_input(
                Self::WHAT,
                format!("checksum {stored:#o} does not match {:#o}", h.checksum()),
            ));
        }
        h.section_name()?;
        h.section_size()?;
        Ok(h)
    }
}

/// Parses octal text, allowing leading spaces and trailing NULs/spaces. None if anything else.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| b != 0 && b != b' ');
    let mut value: u64 = 0;
    let mut any = false;
    for &b in text {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests;
