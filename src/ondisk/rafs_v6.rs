//! On-disk structures of a RAFS v6 bootstrap, as nydus-image 2.2.0 writes them.
//!
//! A RAFS v6 bootstrap is an EROFS image (metadata only, 4 KiB blocks) whose regular files are
//! chunk-based and whose "devices" are the Nydus data blobs, plus Nydus-only tables the kernel
//! never looks at. Every structure is declared once here, in the order a reader meets it, with
//! its fields in on-disk order; each is encoded and decoded only here, through the little-endian
//! codec of [`crate::common::le`], and its size is asserted at compile time beside it. Blob feature
//! bits and compressor/digester ids are shared with the blob and live in
//! [`crate::ondisk::blob`].
//!
//! ```text
//! byte 0        +--------------------------------------------+
//!               | zeros (1024 B)                             |
//! 1024          | RafsV6SuperBlock      128 B  (EROFS sb)    |
//! 1152          | RafsV6SuperBlockExt   256 B  (Nydus only)  |
//! 1408          | RafsV6Device          128 B × nblobs       |  s_devt_slotoff = 1408/128 = 11
//!               +--------------------------------------------+
//! 4096·k        | RafsV6Blob            256 B × nblobs       |  s_blob_table_offset
//!               | prefetch table        u32 nid × n          |  s_prefetch_table_offset
//!               +--------------------------------------------+
//! meta_blkaddr  | one empty block (so that no inode has nid 0)|  s_meta_blkaddr · 4096
//!    +4096      | inode [xattrs] [chunk indexes | inline tail]|  root: nid 128
//!               | inode ...   (32-byte slots: nid = (off − meta_blkaddr·4096) / 32)
//!               | dirent blocks, symlink/dir data blocks      |
//!               +--------------------------------------------+
//! 4096·m        | RafsV5ChunkInfo        80 B × nchunks      |  s_chunk_table_offset
//!               | zeros to a 4096 multiple                    |
//!               +--------------------------------------------+
//!
//! one inode record (every record starts 32-byte aligned):
//!   RafsV6InodeCompact (32 B) | RafsV6InodeExtended (64 B)
//!   [RafsV6XattrIbodyHeader (12 B), RafsV6XattrEntry + name suffix + value, each padded to 4] ...
//!   regular file (CHUNK_BASED):  pad to 8, RafsV6InodeChunkAddr (8 B) × ceil(size / chunk size)
//!   dir / symlink (FLAT_INLINE): the data's last partial block, in the same 4096-byte block
//! ```
//!
//! The kernel reads the EROFS part (super block, device table, inodes, xattrs, chunk indexes,
//! dirents); nydusd reads the extended super block and the blob table; `nydus-image check`,
//! `unpack` and `merge` also read the chunk info table. See `docs/format.md` §4.

use std::io::{self, Write};
use std::mem::size_of;

use crate::common::error::{Error, Result};
use crate::common::le::{LeReader, LeWriter};

// ---------------------------------------------------------------------------------------------
// Geometry
// ---------------------------------------------------------------------------------------------

/// log2 of the EROFS block size; nydus 2.2.0 only accepts 12. (`EROFS_BLOCK_BITS`)
pub const EROFS_BLOCK_BITS: u8 = 12;
/// EROFS block size: 4096. The bootstrap size must be a multiple of it. (`EROFS_BLOCK_SIZE`)
pub const EROFS_BLOCK_SIZE: u64 = 1 << EROFS_BLOCK_BITS;
/// Byte offset of the super block. (`EROFS_SUPER_OFFSET`)
pub const EROFS_SUPER_OFFSET: u64 = 1024;
/// Byte offset of the Nydus extended super block, right after the EROFS one.
pub const RAFS_V6_EXT_SUPER_OFFSET: u64 = EROFS_SUPER_OFFSET + RafsV6SuperBlock::SIZE as u64;
/// Byte offset of the device table, right after the extended super block.
/// (`EROFS_DEVTABLE_OFFSET`)
pub const EROFS_DEVTABLE_OFFSET: u64 = RAFS_V6_EXT_SUPER_OFFSET + RafsV6SuperBlockExt::SIZE as u64;
/// log2 of the inode slot size: a nid counts 32-byte slots. (`EROFS_INODE_SLOT_BITS`)
pub const EROFS_INODE_SLOT_BITS: u8 = 5;
/// Block address meaning "no block" (a hole) in a chunk index. nydus never writes it.
/// (`EROFS_NULL_ADDR`, kernel `erofs_fs.h`)
pub const EROFS_NULL_ADDR: u32 = u32::MAX;

/// The nid of the inode stored at byte `offset` of a bootstrap whose metadata area starts at
/// block `meta_blkaddr`: `(offset − meta_blkaddr·4096) / 32` (nydus `calculate_nid`).
///
/// Returns `None` if `offset` lies before the metadata area or is not 32-byte aligned.
pub fn calculate_nid(offset: u64, meta_blkaddr: u32) -> Option<u64> {
    let rel = offset.checked_sub(u64::from(meta_blkaddr) * EROFS_BLOCK_SIZE)?;
    (rel % (1 << EROFS_INODE_SLOT_BITS) == 0).then_some(rel >> EROFS_INODE_SLOT_BITS)
}

/// The byte offset of inode `nid` in a bootstrap whose metadata area starts at `meta_blkaddr`.
pub fn nid_offset(nid: u64, meta_blkaddr: u32) -> u64 {
    u64::from(meta_blkaddr) * EROFS_BLOCK_SIZE + (nid << EROFS_INODE_SLOT_BITS)
}

/// A device number as stored in `i_u` of a device inode: the kernel's `new_encode_dev`, which is
/// also what nydus-image 2.2.0 stores (`makedev(major, minor) as u32`):
/// `minor[7:0] | major[11:0] << 8 | minor[19:8] << 20`.
///
/// Returns `None` when the pair does not fit (major > 0xfff or minor > 0xfffff); nydus would
/// silently truncate it.
pub fn new_encode_dev(major: u32, minor: u32) -> Option<u32> {
    if major > 0xfff || minor > 0xf_ffff {
        return None;
    }
    Some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// The (major, minor) pair of an `i_u` written by [`new_encode_dev`] (kernel `new_decode_dev`).
pub fn new_decode_dev(dev: u32) -> (u32, u32) {
    (
        (dev & 0xf_ff00) >> 8,
        (dev & 0xff) | ((dev >> 12) & 0xf_ff00),
    )
}

// ---------------------------------------------------------------------------------------------
// Super block
// ---------------------------------------------------------------------------------------------

/// EROFS super block magic. (`EROFS_SUPER_MAGIC_V1`)
pub const EROFS_SUPER_MAGIC_V1: u32 = 0xE0F5_E1E2;
/// Compat feature: the super block has a crc32c. Never set by nydus (the checksum must be 0).
/// (`EROFS_FEATURE_COMPAT_SB_CHKSUM`)
pub const EROFS_FEATURE_COMPAT_SB_CHKSUM: u32 = 0x0000_0001;
/// Compat feature: this is a RAFS v6 image; nydus requires it. (`EROFS_FEATURE_COMPAT_RAFS_V6`)
pub const EROFS_FEATURE_COMPAT_RAFS_V6: u32 = 0x4000_0000;
/// Incompat feature: chunk-based files (kernel ≥ 5.15).
/// (`EROFS_FEATURE_INCOMPAT_CHUNKED_FILE`)
pub const EROFS_FEATURE_INCOMPAT_CHUNKED_FILE: u32 = 0x0000_0004;
/// Incompat feature: device table (kernel ≥ 5.16). (`EROFS_FEATURE_INCOMPAT_DEVICE_TABLE`)
pub const EROFS_FEATURE_INCOMPAT_DEVICE_TABLE: u32 = 0x0000_0008;
/// The exact `s_feature_incompat` nydus 2.2.0 requires, even with no blobs.
pub const RAFS_V6_FEATURE_INCOMPAT: u32 =
    EROFS_FEATURE_INCOMPAT_CHUNKED_FILE | EROFS_FEATURE_INCOMPAT_DEVICE_TABLE;

/// The EROFS super block at byte 1024, 128 bytes.
///
/// Mirrors `RafsV6SuperBlock` (nydus v2.2.0 `rafs/src/metadata/layout/v6.rs`) and
/// `struct erofs_super_block` (Linux `fs/erofs/erofs_fs.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RafsV6SuperBlock {
    /// [`EROFS_SUPER_MAGIC_V1`].
    pub s_magic: u32,
    /// crc32c of the super block; 0 (nydus rejects anything else).
    pub s_checksum: u32,
    /// Compatible features; [`EROFS_FEATURE_COMPAT_RAFS_V6`].
    pub s_feature_compat: u32,
    /// log2 of the block size: [`EROFS_BLOCK_BITS`].
    pub s_blkszbits: u8,
    /// Number of 16-byte super block extension slots; 0.
    pub s_extslots: u8,
    /// nid of the root directory (128 in nydus-built images).
    pub s_root_nid: u16,
    /// Number of inodes (nydus: nodes of the tree, a hardlink counted once per path); not 0.
    pub s_inos: u64,
    /// Build time, seconds; the mtime the kernel shows for compact inodes. 0 in nydus images.
    pub s_build_time: u64,
    /// Build time, nanoseconds.
    pub s_build_time_nsec: u32,
    /// Total blocks, for statfs: Σ over blobs of uncompressed size / 4096.
    pub s_blocks: u32,
    /// Block address where the metadata area (nid 0) starts.
    pub s_meta_blkaddr: u32,
    /// Block address of the shared xattr area; 0 (nydus has no shared xattrs).
    pub s_xattr_blkaddr: u32,
    /// Volume uuid; zeros.
    pub s_uuid: [u8; 16],
    /// Volume name; zeros.
    pub s_volume_name: [u8; 16],
    /// Incompatible features; exactly [`RAFS_V6_FEATURE_INCOMPAT`].
    pub s_feature_incompat: u32,
    /// Union of `available_compr_algs` / `lz4_max_distance`; 0.
    pub s_u: u16,
    /// Number of devices besides the bootstrap = number of blobs.
    pub s_extra_devices: u16,
    /// Device table offset in 128-byte slots: 11 (= 1408 / 128).
    pub s_devt_slotoff: u16,
    /// Zeros. (Newer kernels read byte 0 as `dirblkbits`, then `xattr_prefix_count`,
    /// `xattr_prefix_start`, `packed_nid`; all must stay 0.)
    pub s_reserved: [u8; 38],
}
const _: () = assert!(size_of::<RafsV6SuperBlock>() == RafsV6SuperBlock::SIZE);

impl Default for RafsV6SuperBlock {
    /// The constant fields nydus-image 2.2.0 writes (magic, features, block bits, device table
    /// slot); everything else 0.
    fn default() -> Self {
        RafsV6SuperBlock {
            s_magic: EROFS_SUPER_MAGIC_V1,
            s_checksum: 0,
            s_feature_compat: EROFS_FEATURE_COMPAT_RAFS_V6,
            s_blkszbits: EROFS_BLOCK_BITS,
            s_extslots: 0,
            s_root_nid: 0,
            s_inos: 0,
            s_build_time: 0,
            s_build_time_nsec: 0,
            s_blocks: 0,
            s_meta_blkaddr: 0,
            s_xattr_blkaddr: 0,
            s_uuid: [0; 16],
            s_volume_name: [0; 16],
            s_feature_incompat: RAFS_V6_FEATURE_INCOMPAT,
            s_u: 0,
            s_extra_devices: 0,
            s_devt_slotoff: (EROFS_DEVTABLE_OFFSET / RafsV6Device::SIZE as u64) as u16,
            s_reserved: [0; 38],
        }
    }
}

impl RafsV6SuperBlock {
    /// Bytes on disk.
    pub const SIZE: usize = 128;
    /// Where it sits in the bootstrap.
    pub const OFFSET: u64 = EROFS_SUPER_OFFSET;
    const WHAT: &'static str = "RAFS v6 super block";

    /// The 128 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u32(self.s_magic);
        w.u32(self.s_checksum);
        w.u32(self.s_feature_compat);
        w.u8(self.s_blkszbits);
        w.u8(self.s_extslots);
        w.u16(self.s_root_nid);
        w.u64(self.s_inos);
        w.u64(self.s_build_time);
        w.u32(self.s_build_time_nsec);
        w.u32(self.s_blocks);
        w.u32(self.s_meta_blkaddr);
        w.u32(self.s_xattr_blkaddr);
        w.bytes(&self.s_uuid);
        w.bytes(&self.s_volume_name);
        w.u32(self.s_feature_incompat);
        w.u16(self.s_u);
        w.u16(self.s_extra_devices);
        w.u16(self.s_devt_slotoff);
        w.bytes(&self.s_reserved);
        w.finish()
    }

    /// Writes the 128 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads a super block from the first 128 bytes of `buf` (the caller slices the bootstrap at
    /// [`Self::OFFSET`]). Fails on short input or a wrong magic; other fields are returned as
    /// found, for a checker to judge.
    pub fn decode(buf: &[u8]) -> Result<RafsV6SuperBlock> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let sb = RafsV6SuperBlock {
            s_magic: r.u32(),
            s_checksum: r.u32(),
            s_feature_compat: r.u32(),
            s_blkszbits: r.u8(),
            s_extslots: r.u8(),
            s_root_nid: r.u16(),
            s_inos: r.u64(),
            s_build_time: r.u64(),
            s_build_time_nsec: r.u32(),
            s_blocks: r.u32(),
            s_meta_blkaddr: r.u32(),
            s_xattr_blkaddr: r.u32(),
            s_uuid: r.bytes(),
            s_volume_name: r.bytes(),
            s_feature_incompat: r.u32(),
            s_u: r.u16(),
            s_extra_devices: r.u16(),
            s_devt_slotoff: r.u16(),
            s_reserved: r.bytes(),
        };
        r.finish();
        if sb.s_magic != EROFS_SUPER_MAGIC_V1 {
            return Err(Error::bad_input(
                Self::WHAT,
                format!(
                    "bad magic {:#x}, expected {EROFS_SUPER_MAGIC_V1:#x}",
                    sb.s_magic
                ),
            ));
        }
        Ok(sb)
    }
}

// ---------------------------------------------------------------------------------------------
// Extended super block
// ---------------------------------------------------------------------------------------------

/// Super flag: chunks are stored uncompressed. (`RafsSuperFlags::COMPRESSION_NONE`)
pub const RAFS_SUPER_FLAG_COMPRESSION_NONE: u64 = 0x0000_0001;
/// Super flag: chunks are LZ4 blocks. (`RafsSuperFlags::COMPRESSION_LZ4`)
pub const RAFS_SUPER_FLAG_COMPRESSION_LZ4: u64 = 0x0000_0002;
/// Super flag: chunk digests are blake3. (`RafsSuperFlags::HASH_BLAKE3`)
pub const RAFS_SUPER_FLAG_HASH_BLAKE3: u64 = 0x0000_0004;
/// Super flag: chunk digests are sha256. (`RafsSuperFlags::HASH_SHA256`)
pub const RAFS_SUPER_FLAG_HASH_SHA256: u64 = 0x0000_0008;
/// Super flag: inode uid/gid are meaningful; without it nydusd shows its own euid/egid.
/// (`RafsSuperFlags::EXPLICIT_UID_GID`)
pub const RAFS_SUPER_FLAG_EXPLICIT_UID_GID: u64 = 0x0000_0010;
/// Super flag: some inode has xattrs; nydusd then serves getxattr.
/// (`RafsSuperFlags::HAS_XATTR`)
pub const RAFS_SUPER_FLAG_HAS_XATTR: u64 = 0x0000_0020;
/// Super flag: chunks are gzip (ref/stargz builds only). (`RafsSuperFlags::COMPRESSION_GZIP`)
pub const RAFS_SUPER_FLAG_COMPRESSION_GZIP: u64 = 0x0000_0040;
/// Super flag: chunks are zstd frames. (`RafsSuperFlags::COMPRESSION_ZSTD`)
pub const RAFS_SUPER_FLAG_COMPRESSION_ZSTD: u64 = 0x0000_0080;
/// Super flag: every blob carries a `blob.digest` section (set by 2.2.0 also when there are no
/// blobs). (`RafsSuperFlags::INLINED_CHUNK_DIGEST`)
pub const RAFS_SUPER_FLAG_INLINED_CHUNK_DIGEST: u64 = 0x0000_0100;
/// Super flag: chunks are encrypted with AES-128-XTS (nydus 2.3+; a compatible bit for 2.2.0,
/// whose blob features then refuse the blobs). (`RafsSuperFlags::ENCRYPTION_ASE_128_XTS`)
pub const RAFS_SUPER_FLAG_ENCRYPTION_AES_128_XTS: u64 = 0x0200_0000;
/// Bits reserved for compatible additions, tolerated by 2.2.0.
/// (`RafsSuperFlags::PRESERVED_COMPAT_0..7`)
pub const RAFS_SUPER_FLAG_PRESERVED_COMPAT: u64 = 0xff00_0000;
/// Every flag nydus 2.2.0 accepts; any other bit makes it refuse the bootstrap.
pub const RAFS_SUPER_FLAGS_KNOWN_V2_2: u64 = 0x0000_01ff | RAFS_SUPER_FLAG_PRESERVED_COMPAT;

/// The compression flags of `s_flags` (v5 and v6 use the same bits).
pub const RAFS_SUPER_FLAGS_COMPRESSION: u64 = RAFS_SUPER_FLAG_COMPRESSION_NONE
    | RAFS_SUPER_FLAG_COMPRESSION_LZ4
    | RAFS_SUPER_FLAG_COMPRESSION_GZIP
    | RAFS_SUPER_FLAG_COMPRESSION_ZSTD;

/// The nydus compressor id (`COMPRESSOR_*`) super block flags name; `None` unless exactly one.
pub fn compressor_of_flags(flags: u64) -> Option<u32> {
    use crate::ondisk::blob::{
        COMPRESSOR_GZIP, COMPRESSOR_LZ4_BLOCK, COMPRESSOR_NONE, COMPRESSOR_ZSTD,
    };
    match flags & RAFS_SUPER_FLAGS_COMPRESSION {
        RAFS_SUPER_FLAG_COMPRESSION_NONE => Some(COMPRESSOR_NONE),
        RAFS_SUPER_FLAG_COMPRESSION_LZ4 => Some(COMPRESSOR_LZ4_BLOCK),
        RAFS_SUPER_FLAG_COMPRESSION_GZIP => Some(COMPRESSOR_GZIP),
        RAFS_SUPER_FLAG_COMPRESSION_ZSTD => Some(COMPRESSOR_ZSTD),
        _ => None,
    }
}

/// The Nydus extended super block right after the EROFS one (byte 1152), 256 bytes. The kernel
/// never reads it (`s_extslots` is 0).
///
/// Mirrors `RafsV6SuperBlockExt` (nydus v2.2.0 `rafs/src/metadata/layout/v6.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RafsV6SuperBlockExt {
    /// `RAFS_SUPER_FLAG_*`: exactly one compression flag, exactly one hash flag, and others.
    pub s_flags: u64,
    /// Byte offset of the blob table; 4096-aligned, at least 4096.
    pub s_blob_table_offset: u64,
    /// Bytes of the blob table: 256 × number of blobs.
    pub s_blob_table_size: u32,
    /// Chunk size of the filesystem: a power of two, 4 KiB ..= 16 MiB.
    pub s_chunk_size: u32,
    /// Byte offset of the chunk info table; 4096-aligned.
    pub s_chunk_table_offset: u64,
    /// Bytes of the chunk info table: 80 × records.
    pub s_chunk_table_size: u64,
    /// Byte offset of the prefetch table; 0 if there is none.
    pub s_prefetch_table_offset: u64,
    /// Bytes of the prefetch table: 4 × entries.
    pub s_prefetch_table_size: u32,
    /// Zero.
    pub s_padding: u32,
    /// Zeros.
    pub s_reserved: [u8; 200],
}
const _: () = assert!(size_of::<RafsV6SuperBlockExt>() == RafsV6SuperBlockExt::SIZE);

impl Default for RafsV6SuperBlockExt {
    fn default() -> Self {
        RafsV6SuperBlockExt {
            s_flags: 0,
            s_blob_table_offset: 0,
            s_blob_table_size: 0,
            s_chunk_size: 0,
            s_chunk_table_offset: 0,
            s_chunk_table_size: 0,
            s_prefetch_table_offset: 0,
            s_prefetch_table_size: 0,
            s_padding: 0,
            s_reserved: [0; 200],
        }
    }
}

impl RafsV6SuperBlockExt {
    /// Bytes on disk.
    pub const SIZE: usize = 256;
    /// Where it sits in the bootstrap.
    pub const OFFSET: u64 = RAFS_V6_EXT_SUPER_OFFSET;
    const WHAT: &'static str = "RAFS v6 extended super block";

    /// The 256 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u64(self.s_flags);
        w.u64(self.s_blob_table_offset);
        w.u32(self.s_blob_table_size);
        w.u32(self.s_chunk_size);
        w.u64(self.s_chunk_table_offset);
        w.u64(self.s_chunk_table_size);
        w.u64(self.s_prefetch_table_offset);
        w.u32(self.s_prefetch_table_size);
        w.u32(self.s_padding);
        w.bytes(&self.s_reserved);
        w.finish()
    }

    /// Writes the 256 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads an extended super block from the first 256 bytes of `buf`. Fails only on short
    /// input; field values are returned as found.
    pub fn decode(buf: &[u8]) -> Result<RafsV6SuperBlockExt> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let ext = RafsV6SuperBlockExt {
            s_flags: r.u64(),
            s_blob_table_offset: r.u64(),
            s_blob_table_size: r.u32(),
            s_chunk_size: r.u32(),
            s_chunk_table_offset: r.u64(),
            s_chunk_table_size: r.u64(),
            s_prefetch_table_offset: r.u64(),
            s_prefetch_table_size: r.u32(),
            s_padding: r.u32(),
            s_reserved: r.bytes(),
        };
        r.finish();
        Ok(ext)
    }
}

// ---------------------------------------------------------------------------------------------
// Blob ids (device slots and blob table)
// ---------------------------------------------------------------------------------------------

/// Length of a blob id field: a sha256 in hex.
pub const BLOB_ID_LEN: usize = 64;

/// `id` as a 64-byte blob id field, NUL padded. Fails if it is empty, longer than 64 bytes or
/// contains a NUL. (nydus's readers further insist on exactly 64 characters.)
pub fn blob_id_field(id: &str) -> Result<[u8; BLOB_ID_LEN]> {
    let bytes = id.as_bytes();
    if bytes.is_empty() || bytes.len() > BLOB_ID_LEN || bytes.contains(&0) {
        return Err(Error::internal(format!("invalid blob id {id:?}")));
    }
    let mut field = [0u8; BLOB_ID_LEN];
    field[..bytes.len()].copy_from_slice(bytes);
    Ok(field)
}

/// The text of a blob id field, without NUL padding. Fails if it is not UTF-8.
fn blob_id_text<'a>(what: &str, field: &'a [u8; BLOB_ID_LEN]) -> Result<&'a str> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(BLOB_ID_LEN);
    std::str::from_utf8(&field[..end]).map_err(|_| Error::bad_input(what, "blob id is not UTF-8"))
}

// ---------------------------------------------------------------------------------------------
// Device slot
// ---------------------------------------------------------------------------------------------

/// One EROFS device slot per blob, in blob table order, from byte 1408; 128 bytes. Read by the
/// kernel only (nydus 2.2.0 readers use the blob table).
///
/// Mirrors `RafsV6Device` (nydus v2.2.0 `rafs/src/metadata/layout/v6.rs`) and
/// `struct erofs_deviceslot` (Linux `fs/erofs/erofs_fs.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RafsV6Device {
    /// Blob id, ASCII, NUL padded (EROFS: `tag`, the fscache cookie / device path).
    pub blob_id: [u8; BLOB_ID_LEN],
    /// Size of the blob's uncompressed data in 4 KiB blocks.
    pub blocks: u32,
    /// Where the device is mapped in a flat address space; 0 in nydus 2.2.0 images.
    pub mapped_blkaddr: u32,
    /// Zeros.
    pub reserved: [u8; 56],
}
const _: () = assert!(size_of::<RafsV6Device>() == RafsV6Device::SIZE);

impl Default for RafsV6Device {
    fn default() -> Self {
        RafsV6Device {
            blob_id: [0; BLOB_ID_LEN],
            blocks: 0,
            mapped_blkaddr: 0,
            reserved: [0; 56],
        }
    }
}

impl RafsV6Device {
    /// Bytes on disk.
    pub const SIZE: usize = 128;
    const WHAT: &'static str = "RAFS v6 device slot";

    /// The blob id without its NUL padding. Fails if it is not UTF-8.
    pub fn blob_id(&self) -> Result<&str> {
        blob_id_text(Self::WHAT, &self.blob_id)
    }

    /// The 128 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.bytes(&self.blob_id);
        w.u32(self.blocks);
        w.u32(self.mapped_blkaddr);
        w.bytes(&self.reserved);
        w.finish()
    }

    /// Writes the 128 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads a device slot from the first 128 bytes of `buf`. Fails only on short input.
    pub fn decode(buf: &[u8]) -> Result<RafsV6Device> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let dev = RafsV6Device {
            blob_id: r.bytes(),
            blocks: r.u32(),
            mapped_blkaddr: r.u32(),
            reserved: r.bytes(),
        };
        r.finish();
        Ok(dev)
    }
}

// ---------------------------------------------------------------------------------------------
// Blob table entry
// ---------------------------------------------------------------------------------------------

/// One data blob as the bootstrap describes it, 256 bytes; entry *i* of the blob table is blob
/// index *i*. nydusd finds every chunk through the blob's ci table, located by these fields.
///
/// Mirrors `RafsV6Blob` (nydus v2.2.0 `rafs/src/metadata/layout/v6.rs`). Feature bits and
/// algorithm ids are the `BLOB_FEATURE_*`, `COMPRESSOR_*` and `DIGESTER_*` constants of
/// [`crate::ondisk::blob`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RafsV6Blob {
    /// Blob id, ASCII (readers require exactly 64 characters: the sha256 hex).
    pub blob_id: [u8; BLOB_ID_LEN],
    /// Index of this entry in the blob table.
    pub blob_index: u32,
    /// Chunk size; equals the super block's `s_chunk_size`.
    pub chunk_size: u32,
    /// Number of chunks (= ci table entries); 1 ..= 2^24.
    pub chunk_count: u32,
    /// Compressor of the chunks (`COMPRESSOR_*`).
    pub compression_algo: u32,
    /// Digester of the chunks (`DIGESTER_*`).
    pub digest_algo: u32,
    /// `BLOB_FEATURE_*`; must contain `ALIGNED`; same value as the ci header's `s_features`.
    pub features: u32,
    /// Size of the blob file as known when the bootstrap was written (for inline-meta blobs: the
    /// offset of the inlined bootstrap's data).
    pub compressed_size: u64,
    /// End of the last chunk in the 4 KiB-aligned uncompressed space; ≤ 2^44.
    pub uncompressed_size: u64,
    /// Bytes of the TOC entries plus its 512-byte tar header; 0 without TOC or when unknown.
    pub blob_toc_size: u32,
    /// Compressor of the ci table (`COMPRESSOR_*`).
    pub ci_compressor: u32,
    /// Offset of the compressed ci table in the blob.
    pub ci_offset: u64,
    /// Bytes of the ci table as stored; ≤ `ci_uncompressed_size`.
    pub ci_compressed_size: u64,
    /// Bytes of the decompressed ci table: 16 × `chunk_count` (V1).
    pub ci_uncompressed_size: u64,
    /// sha256 of TOC entries ‖ TOC tar header; zeros when `blob_toc_size` is 0.
    pub blob_toc_digest: [u8; 32],
    /// zran/separate blobs only: sha256 of the meta blob; an encrypted blob's key (nydus
    /// reuses the field); zeros otherwise.
    pub blob_meta_digest: [u8; 32],
    /// zran/separate blobs only: size of the meta blob; an encrypted blob's IV bytes 0..8
    /// (little-endian); 0 otherwise.
    pub blob_meta_size: u64,
    /// An encrypted blob's IV bytes 8..16; zeros otherwise.
    pub cipher_iv: [u8; 8],
    /// `CIPHER_*`: how the blob's chunks and ci data are encrypted.
    pub cipher_algo: u32,
    /// Zeros.
    pub reserved: [u8; 36],
}

/// `RafsV6Blob::cipher_algo`: not encrypted. (`crypt::Algorithm::None`)
pub const CIPHER_NONE: u32 = 0;
/// `RafsV6Blob::cipher_algo`: AES-128-XTS, one key and IV per blob. (`crypt::Algorithm::Aes128Xts`)
pub const CIPHER_AES128_XTS: u32 = 1;
const _: () = assert!(size_of::<RafsV6Blob>() == RafsV6Blob::SIZE);

impl Default for RafsV6Blob {
    fn default() -> Self {
        RafsV6Blob {
            blob_id: [0; BLOB_ID_LEN],
            blob_index: 0,
            chunk_size: 0,
            chunk_count: 0,
            compression_algo: 0,
            digest_algo: 0,
            features: 0,
            compressed_size: 0,
            uncompressed_size: 0,
            blob_toc_size: 0,
            ci_compressor: 0,
            ci_offset: 0,
            ci_compressed_size: 0,
            ci_uncompressed_size: 0,
            blob_toc_digest: [0; 32],
            blob_meta_digest: [0; 32],
            blob_meta_size: 0,
            cipher_iv: [0; 8],
            cipher_algo: CIPHER_NONE,
            reserved: [0; 36],
        }
    }
}

impl RafsV6Blob {
    /// Bytes on disk.
    pub const SIZE: usize = 256;
    const WHAT: &'static str = "RAFS v6 blob table entry";

    /// The blob id without its NUL padding. Fails if it is not UTF-8.
    pub fn blob_id(&self) -> Result<&str> {
        blob_id_text(Self::WHAT, &self.blob_id)
    }

    /// The 256 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.bytes(&self.blob_id);
        w.u32(self.blob_index);
        w.u32(self.chunk_size);
        w.u32(self.chunk_count);
        w.u32(self.compression_algo);
        w.u32(self.digest_algo);
        w.u32(self.features);
        w.u64(self.compressed_size);
        w.u64(self.uncompressed_size);
        w.u32(self.blob_toc_size);
        w.u32(self.ci_compressor);
        w.u64(self.ci_offset);
        w.u64(self.ci_compressed_size);
        w.u64(self.ci_uncompressed_size);
        w.bytes(&self.blob_toc_digest);
        w.bytes(&self.blob_meta_digest);
        w.u64(self.blob_meta_size);
        w.bytes(&self.cipher_iv);
        w.u32(self.cipher_algo);
        w.bytes(&self.reserved);
        w.finish()
    }

    /// Writes the 256 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads a blob table entry from the first 256 bytes of `buf`. Fails only on short input.
    pub fn decode(buf: &[u8]) -> Result<RafsV6Blob> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let blob = RafsV6Blob {
            blob_id: r.bytes(),
            blob_index: r.u32(),
            chunk_size: r.u32(),
            chunk_count: r.u32(),
            compression_algo: r.u32(),
            digest_algo: r.u32(),
            features: r.u32(),
            compressed_size: r.u64(),
            uncompressed_size: r.u64(),
            blob_toc_size: r.u32(),
            ci_compressor: r.u32(),
            ci_offset: r.u64(),
            ci_compressed_size: r.u64(),
            ci_uncompressed_size: r.u64(),
            blob_toc_digest: r.bytes(),
            blob_meta_digest: r.bytes(),
            blob_meta_size: r.u64(),
            cipher_iv: r.bytes(),
            cipher_algo: r.u32(),
            reserved: r.bytes(),
        };
        r.finish();
        Ok(blob)
    }
}

// ---------------------------------------------------------------------------------------------
// Prefetch table
// ---------------------------------------------------------------------------------------------

/// The nids of the files and directories to prefetch at mount, right after the blob table; a
/// 0 entry ends the list early (unmatched patterns leave zeros), a table holding only the root
/// nid means "everything".
///
/// Mirrors `RafsV6PrefetchTable` (nydus v2.2.0 `rafs/src/metadata/layout/v6.rs`): an array of
/// little-endian `u32`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RafsV6PrefetchTable {
    /// The entries, in table order.
    pub nids: Vec<u32>,
}

impl RafsV6PrefetchTable {
    /// Bytes of one entry.
    pub const ENTRY_SIZE: usize = size_of::<u32>();
    const WHAT: &'static str = "RAFS v6 prefetch table";

    /// The table's bytes on disk: 4 per entry.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.nids.iter().flat_map(|nid| nid.to_le_bytes()).collect()
    }

    /// Writes the table to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads a table of `buf.len() / 4` entries. Fails if the length is not a multiple of 4.
    pub fn decode(buf: &[u8]) -> Result<RafsV6PrefetchTable> {
        if !buf.len().is_multiple_of(Self::ENTRY_SIZE) {
            return Err(Error::bad_input(
                Self::WHAT,
                format!("size {} is not a multiple of 4", buf.len()),
            ));
        }
        let nids = buf
            .chunks_exact(Self::ENTRY_SIZE)
            .map(|e| u32::from_le_bytes([e[0], e[1], e[2], e[3]]))
            .collect();
        Ok(RafsV6PrefetchTable { nids })
    }
}

// ---------------------------------------------------------------------------------------------
// Inodes
// ---------------------------------------------------------------------------------------------

/// `i_format` bit 0 (version): 32-byte compact inode. (`EROFS_INODE_LAYOUT_COMPACT`)
pub const EROFS_INODE_LAYOUT_COMPACT: u16 = 0;
/// `i_format` bit 0 (version): 64-byte extended inode. (`EROFS_INODE_LAYOUT_EXTENDED`)
pub const EROFS_INODE_LAYOUT_EXTENDED: u16 = 1;
/// Data layout: data in whole blocks starting at block `i_u`. (`EROFS_INODE_FLAT_PLAIN`)
pub const EROFS_INODE_FLAT_PLAIN: u16 = 0;
/// Data layout: whole blocks at `i_u`, the last partial block inline after the inode.
/// (`EROFS_INODE_FLAT_INLINE`)
pub const EROFS_INODE_FLAT_INLINE: u16 = 2;
/// Data layout: chunk indexes after the inode, `i_u` is a [`RafsV6InodeChunkHeader`].
/// (`EROFS_INODE_CHUNK_BASED`)
pub const EROFS_INODE_CHUNK_BASED: u16 = 4;
/// Width of the version field of `i_format`. (`EROFS_I_VERSION_BITS`)
pub const EROFS_I_VERSION_BITS: u16 = 1;
/// Width of the data layout field of `i_format`, above the version bit.
/// (`EROFS_I_DATALAYOUT_BITS`)
pub const EROFS_I_DATALAYOUT_BITS: u16 = 3;

/// `i_format` for an inode of version `layout_version` (compact/extended) and data layout
/// `datalayout` (`EROFS_INODE_FLAT_*`, `EROFS_INODE_CHUNK_BASED`).
pub const fn i_format(layout_version: u16, datalayout: u16) -> u16 {
    layout_version | (datalayout << EROFS_I_VERSION_BITS)
}

/// The version bit of an `i_format`: [`EROFS_INODE_LAYOUT_COMPACT`] or
/// [`EROFS_INODE_LAYOUT_EXTENDED`].
pub const fn i_format_version(i_format: u16) -> u16 {
    i_format & ((1 << EROFS_I_VERSION_BITS) - 1)
}

/// The data layout of an `i_format` (`EROFS_INODE_FLAT_*`, `EROFS_INODE_CHUNK_BASED`).
pub const fn i_format_datalayout(i_format: u16) -> u16 {
    (i_format >> EROFS_I_VERSION_BITS) & ((1 << EROFS_I_DATALAYOUT_BITS) - 1)
}

fn check_inode_version(what: &str, i_format: u16, want: u16) -> Result<()> {
    if i_format_version(i_format) != want {
        return Err(Error::bad_input(
            what,
            format!("i_format {i_format:#x} has the wrong version bit"),
        ));
    }
    Ok(())
}

/// A 32-byte inode. Has no mtime (the kernel shows `s_build_time`, nydusd 0) and 16-bit
/// uid/gid/nlink, 32-bit size; nydus stores no rdev in it. nydus-image 2.2.0 never writes it.
///
/// Mirrors `RafsV6InodeCompact` (nydus v2.2.0 `rafs/src/metadata/layout/v6.rs`) and
/// `struct erofs_inode_compact` (Linux `fs/erofs/erofs_fs.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RafsV6InodeCompact {
    /// Version bit 0 = [`EROFS_INODE_LAYOUT_COMPACT`], data layout in bits 1–3 ([`i_format`]).
    pub i_format: u16,
    /// Inline xattr size in 4-byte units, see [`xattr_icount`]; 0 without xattrs.
    pub i_xattr_icount: u16,
    /// File type and permission bits (`st_mode`).
    pub i_mode: u16,
    /// Hard link count.
    pub i_nlink: u16,
    /// File size (symlink: target length; directory: bytes of dirent data).
    pub i_size: u32,
    /// Zero.
    pub i_reserved: u32,
    /// Union: first data block (flat layouts) or [`RafsV6InodeChunkHeader`] (chunk-based).
    pub i_u: u32,
    /// Inode number shown by nydusd in some paths; informational.
    pub i_ino: u32,
    /// Owner uid.
    pub i_uid: u16,
    /// Owner gid.
    pub i_gid: u16,
    /// Zeros.
    pub i_reserved2: [u8; 4],
}
const _: () = assert!(size_of::<RafsV6InodeCompact>() == RafsV6InodeCompact::SIZE);

impl RafsV6InodeCompact {
    /// Bytes on disk.
    pub const SIZE: usize = 32;
    const WHAT: &'static str = "RAFS v6 compact inode";

    /// The 32 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u16(self.i_format);
        w.u16(self.i_xattr_icount);
        w.u16(self.i_mode);
        w.u16(self.i_nlink);
        w.u32(self.i_size);
        w.u32(self.i_reserved);
        w.u32(self.i_u);
        w.u32(self.i_ino);
        w.u16(self.i_uid);
        w.u16(self.i_gid);
        w.bytes(&self.i_reserved2);
        w.finish()
    }

    /// Writes the 32 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads a compact inode from the first 32 bytes of `buf`. Fails on short input or when the
    /// version bit says "extended".
    pub fn decode(buf: &[u8]) -> Result<RafsV6InodeCompact> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let inode = RafsV6InodeCompact {
            i_format: r.u16(),
            i_xattr_icount: r.u16(),
            i_mode: r.u16(),
            i_nlink: r.u16(),
            i_size: r.u32(),
            i_reserved: r.u32(),
            i_u: r.u32(),
            i_ino: r.u32(),
            i_uid: r.u16(),
            i_gid: r.u16(),
            i_reserved2: r.bytes(),
        };
        r.finish();
        check_inode_version(Self::WHAT, inode.i_format, EROFS_INODE_LAYOUT_COMPACT)?;
        Ok(inode)
    }
}

/// A 64-byte inode, the only kind nydus-image 2.2.0 writes.
///
/// Mirrors `RafsV6InodeExtended` (nydus v2.2.0 `rafs/src/metadata/layout/v6.rs`) and
/// `struct erofs_inode_extended` (Linux `fs/erofs/erofs_fs.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RafsV6InodeExtended {
    /// Version bit 0 = [`EROFS_INODE_LAYOUT_EXTENDED`], data layout in bits 1–3 ([`i_format`]).
    pub i_format: u16,
    /// Inline xattr size in 4-byte units, see [`xattr_icount`]; 0 without xattrs.
    pub i_xattr_icount: u16,
    /// File type and permission bits (`st_mode`).
    pub i_mode: u16,
    /// Zero.
    pub i_reserved: u16,
    /// File size (symlink: target length; directory: bytes of dirent data; devices: 0).
    pub i_size: u64,
    /// Union: first data block (flat layouts), [`RafsV6InodeChunkHeader`] (chunk-based), or the
    /// device number of chr/blk/fifo/socket inodes ([`new_encode_dev`]).
    pub i_u: u32,
    /// Inode number shown by nydusd in some paths; informational.
    pub i_ino: u32,
    /// Owner uid.
    pub i_uid: u32,
    /// Owner gid.
    pub i_gid: u32,
    /// Modification time, seconds.
    pub i_mtime: u64,
    /// Modification time, nanoseconds.
    pub i_mtime_nsec: u32,
    /// Hard link count (directories: 2 + number of subdirectories).
    pub i_nlink: u32,
    /// Zeros.
    pub i_reserved2: [u8; 16],
}
const _: () = assert!(size_of::<RafsV6InodeExtended>() == RafsV6InodeExtended::SIZE);

impl RafsV6InodeExtended {
    /// Bytes on disk.
    pub const SIZE: usize = 64;
    const WHAT: &'static str = "RAFS v6 extended inode";

    /// The 64 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u16(self.i_format);
        w.u16(self.i_xattr_icount);
        w.u16(self.i_mode);
        w.u16(self.i_reserved);
        w.u64(self.i_size);
        w.u32(self.i_u);
        w.u32(self.i_ino);
        w.u32(self.i_uid);
        w.u32(self.i_gid);
        w.u64(self.i_mtime);
        w.u32(self.i_mtime_nsec);
        w.u32(self.i_nlink);
        w.bytes(&self.i_reserved2);
        w.finish()
    }

    /// Writes the 64 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads an extended inode from the first 64 bytes of `buf`. Fails on short input or when
    /// the version bit says "compact".
    pub fn decode(buf: &[u8]) -> Result<RafsV6InodeExtended> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let inode = RafsV6InodeExtended {
            i_format: r.u16(),
            i_xattr_icount: r.u16(),
            i_mode: r.u16(),
            i_reserved: r.u16(),
            i_size: r.u64(),
            i_u: r.u32(),
            i_ino: r.u32(),
            i_uid: r.u32(),
            i_gid: r.u32(),
            i_mtime: r.u64(),
            i_mtime_nsec: r.u32(),
            i_nlink: r.u32(),
            i_reserved2: r.bytes(),
        };
        r.finish();
        check_inode_version(Self::WHAT, inode.i_format, EROFS_INODE_LAYOUT_EXTENDED)?;
        Ok(inode)
    }
}

// ---------------------------------------------------------------------------------------------
// Extended attributes (inline only)
// ---------------------------------------------------------------------------------------------

/// Xattr name index of `user.`. (`EROFS_XATTR_INDEX_USER`)
pub const EROFS_XATTR_INDEX_USER: u8 = 1;
/// Xattr name index of `system.posix_acl_access`. (`EROFS_XATTR_INDEX_POSIX_ACL_ACCESS`)
pub const EROFS_XATTR_INDEX_POSIX_ACL_ACCESS: u8 = 2;
/// Xattr name index of `system.posix_acl_default`. (`EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT`)
pub const EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT: u8 = 3;
/// Xattr name index of `trusted.`. (`EROFS_XATTR_INDEX_TRUSTED`)
pub const EROFS_XATTR_INDEX_TRUSTED: u8 = 4;
/// Xattr name index of `security.`. (`EROFS_XATTR_INDEX_SECURITY`)
pub const EROFS_XATTR_INDEX_SECURITY: u8 = 6;

/// The name prefixes RAFS v6 can store, with their index, in the order nydus matches them
/// (`RAFSV6_XATTR_TYPES`). A name is stored as (index, name without the prefix); a name with
/// none of these prefixes cannot be stored. nydus-image 2.2.0 also refuses a name that *is* a
/// prefix (so it cannot store the two POSIX ACL names, whose suffix is empty); the format and
/// the kernel allow it.
pub const XATTR_PREFIXES: [(u8, &str); 5] = [
    (EROFS_XATTR_INDEX_USER, "user."),
    (
        EROFS_XATTR_INDEX_POSIX_ACL_ACCESS,
        "system.posix_acl_access",
    ),
    (
        EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT,
        "system.posix_acl_default",
    ),
    (EROFS_XATTR_INDEX_TRUSTED, "trusted."),
    (EROFS_XATTR_INDEX_SECURITY, "security."),
];

/// Splits an xattr name into its prefix index and the suffix stored on disk. `None` if no
/// prefix of [`XATTR_PREFIXES`] matches.
pub fn xattr_split_name(name: &[u8]) -> Option<(u8, &[u8])> {
    XATTR_PREFIXES
        .iter()
        .find(|(_, prefix)| name.starts_with(prefix.as_bytes()))
        .map(|&(index, prefix)| (index, &name[prefix.len()..]))
}

/// The prefix of name index `index`; `None` for an index RAFS v6 does not use.
pub fn xattr_prefix(index: u8) -> Option<&'static str> {
    XATTR_PREFIXES
        .iter()
        .find(|(i, _)| *i == index)
        .map(|&(_, prefix)| prefix)
}

/// `i_xattr_icount` for an inline xattr area of `ibody_size` bytes (header + padded entries):
/// `(ibody_size − 12) / 4 + 1`, or 0 for no xattrs. Fails if the area does not fit.
pub fn xattr_icount(ibody_size: usize) -> Result<u16> {
    if ibody_size == 0 {
        return Ok(0);
    }
    let entries = ibody_size
        .checked_sub(RafsV6XattrIbodyHeader::SIZE)
        .filter(|rest| rest % RafsV6XattrEntry::SIZE == 0)
        .map(|rest| rest / RafsV6XattrEntry::SIZE + 1);
    entries
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| Error::internal(format!("invalid inline xattr size {ibody_size}")))
}

/// Bytes of the inline xattr area announced by `i_xattr_icount` (inverse of [`xattr_icount`]).
pub fn xattr_ibody_size(icount: u16) -> usize {
    match icount {
        0 => 0,
        n => RafsV6XattrIbodyHeader::SIZE + (usize::from(n) - 1) * RafsV6XattrEntry::SIZE,
    }
}

/// The 12-byte header that starts an inode's inline xattr area, right after the inode.
///
/// Mirrors `RafsV6XattrIbodyHeader` (nydus v2.2.0 `rafs/src/metadata/layout/v6.rs`) and
/// `struct erofs_xattr_ibody_header` (Linux `fs/erofs/erofs_fs.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RafsV6XattrIbodyHeader {
    /// Zero (newer kernels: `h_name_filter`, only read when the xattr filter feature is on).
    pub h_reserved: u32,
    /// Number of shared xattr ids that follow; 0 (nydus has no shared xattrs).
    pub h_shared_count: u8,
    /// Zeros.
    pub h_reserved2: [u8; 7],
}
const _: () = assert!(size_of::<RafsV6XattrIbodyHeader>() == RafsV6XattrIbodyHeader::SIZE);

impl RafsV6XattrIbodyHeader {
    /// Bytes on disk.
    pub const SIZE: usize = 12;
    const WHAT: &'static str = "RAFS v6 xattr header";

    /// The 12 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u32(self.h_reserved);
        w.u8(self.h_shared_count);
        w.bytes(&self.h_reserved2);
        w.finish()
    }

    /// Writes the 12 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads a header from the first 12 bytes of `buf`. Fails only on short input.
    pub fn decode(buf: &[u8]) -> Result<RafsV6XattrIbodyHeader> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let h = RafsV6XattrIbodyHeader {
            h_reserved: r.u32(),
            h_shared_count: r.u8(),
            h_reserved2: r.bytes(),
        };
        r.finish();
        Ok(h)
    }
}

/// The 4-byte head of one inline xattr; followed by the name suffix (`e_name_len` bytes), the
/// value (`e_value_size` bytes) and zero padding to a multiple of 4 ([`Self::record_size`]).
///
/// Mirrors `RafsV6XattrEntry` (nydus v2.2.0 `rafs/src/metadata/layout/v6.rs`) and
/// `struct erofs_xattr_entry` (Linux `fs/erofs/erofs_fs.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RafsV6XattrEntry {
    /// Length of the name suffix (the name without its prefix).
    pub e_name_len: u8,
    /// Prefix index (`EROFS_XATTR_INDEX_*`).
    pub e_name_index: u8,
    /// Length of the value.
    pub e_value_size: u16,
}
const _: () = assert!(size_of::<RafsV6XattrEntry>() == RafsV6XattrEntry::SIZE);

impl RafsV6XattrEntry {
    /// Bytes on disk (of the head alone).
    pub const SIZE: usize = 4;
    const WHAT: &'static str = "RAFS v6 xattr entry";

    /// Bytes the whole record takes: head, suffix, value, padded to 4.
    pub fn record_size(&self) -> usize {
        (Self::SIZE + usize::from(self.e_name_len) + usize::from(self.e_value_size))
            .next_multiple_of(4)
    }

    /// The 4 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u8(self.e_name_len);
        w.u8(self.e_name_index);
        w.u16(self.e_value_size);
        w.finish()
    }

    /// Writes the 4 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads an entry head from the first 4 bytes of `buf`. Fails only on short input.
    pub fn decode(buf: &[u8]) -> Result<RafsV6XattrEntry> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let e = RafsV6XattrEntry {
            e_name_len: r.u8(),
            e_name_index: r.u8(),
            e_value_size: r.u16(),
        };
        r.finish();
        Ok(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Chunk-based regular files
// ---------------------------------------------------------------------------------------------

/// Chunk format flag: the inode is followed by 8-byte chunk indexes (not 4-byte block
/// addresses). (`EROFS_CHUNK_FORMAT_INDEXES`)
pub const EROFS_CHUNK_FORMAT_INDEXES: u16 = 0x0020;
/// Chunk format bits holding log2(chunk size) − 12. (`EROFS_CHUNK_FORMAT_BLKBITS_MASK`)
pub const EROFS_CHUNK_FORMAT_BLKBITS_MASK: u16 = 0x001f;

/// The `i_u` of a chunk-based inode: how its chunk indexes are laid out.
///
/// Mirrors `RafsV6InodeChunkHeader` (nydus v2.2.0 `rafs/src/metadata/layout/v6.rs`) and
/// `struct erofs_inode_chunk_info` (Linux `fs/erofs/erofs_fs.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RafsV6InodeChunkHeader {
    /// [`EROFS_CHUNK_FORMAT_INDEXES`] | (log2(chunk size) − 12). The kernel uses these chunk
    /// bits; nydusd uses the super block's chunk size.
    pub format: u16,
    /// Zero.
    pub reserved: u16,
}
const _: () = assert!(size_of::<RafsV6InodeChunkHeader>() == RafsV6InodeChunkHeader::SIZE);

impl RafsV6InodeChunkHeader {
    /// Bytes on disk (as `i_u`).
    pub const SIZE: usize = 4;
    const WHAT: &'static str = "RAFS v6 chunk header";

    /// The header for chunks of `chunk_size` bytes. Fails unless it is a power of two from
    /// 4 KiB to 2^43.
    pub fn new(chunk_size: u64) -> Result<RafsV6InodeChunkHeader> {
        let bits = chunk_size.trailing_zeros() as u16;
        if !chunk_size.is_power_of_two()
            || bits < u16::from(EROFS_BLOCK_BITS)
            || bits - u16::from(EROFS_BLOCK_BITS) > EROFS_CHUNK_FORMAT_BLKBITS_MASK
        {
            return Err(Error::internal(format!(
                "{}: invalid chunk size {chunk_size:#x}",
                Self::WHAT
            )));
        }
        Ok(RafsV6InodeChunkHeader {
            format: EROFS_CHUNK_FORMAT_INDEXES | (bits - u16::from(EROFS_BLOCK_BITS)),
            reserved: 0,
        })
    }

    /// The chunk size these bits announce.
    pub fn chunk_size(&self) -> u64 {
        1u64 << (u32::from(self.format & EROFS_CHUNK_FORMAT_BLKBITS_MASK) + 12)
    }

    /// The header as the inode's `i_u`.
    pub fn to_u32(&self) -> u32 {
        u32::from_le_bytes(self.to_bytes())
    }

    /// The header stored in an inode's `i_u`.
    pub fn from_u32(i_u: u32) -> RafsV6InodeChunkHeader {
        RafsV6InodeChunkHeader {
            format: i_u as u16,
            reserved: (i_u >> 16) as u16,
        }
    }

    /// The 4 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u16(self.format);
        w.u16(self.reserved);
        w.finish()
    }

    /// Writes the 4 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads a header from the first 4 bytes of `buf`. Fails only on short input.
    pub fn decode(buf: &[u8]) -> Result<RafsV6InodeChunkHeader> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let h = RafsV6InodeChunkHeader {
            format: r.u16(),
            reserved: r.u16(),
        };
        r.finish();
        Ok(h)
    }
}

/// Largest blob index a chunk index can name (the byte holds index + 1, 0 meaning "the
/// bootstrap itself").
pub const RAFS_V6_MAX_BLOB_INDEX: u32 = 254;
/// Largest ci index (chunk number within its blob) a chunk index can hold: 24 bits.
pub const RAFS_V6_MAX_CI_INDEX: u32 = 0x00ff_ffff;

/// One chunk of a regular file, 8 bytes; an array of these follows the inode (and its xattrs),
/// 8-byte aligned, one per `s_chunk_size` piece of the file.
///
/// Mirrors `RafsV6InodeChunkAddr` (nydus v2.2.0 `rafs/src/metadata/layout/v6.rs`), which reuses
/// `struct erofs_inode_chunk_index` (Linux `fs/erofs/erofs_fs.h`: `advise`, `device_id`,
/// `blkaddr`):
///
/// ```text
/// c_blob_addr_lo: ci index [15:0]
/// c_blob_addr_hi: ci index [23:16] << 8 | (blob index + 1)     (EROFS device_id = low byte)
/// c_blk_addr:     uncompressed offset of the chunk in its blob / 4096
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RafsV6InodeChunkAddr {
    /// Bits 0–15 of the chunk's ci index (EROFS `advise`).
    pub c_blob_addr_lo: u16,
    /// Low byte: blob index + 1 (EROFS device id); high byte: bits 16–23 of the ci index.
    pub c_blob_addr_hi: u16,
    /// Block of the chunk in the blob's uncompressed, 4 KiB-aligned space (EROFS `blkaddr`).
    pub c_blk_addr: u32,
}
const _: () = assert!(size_of::<RafsV6InodeChunkAddr>() == RafsV6InodeChunkAddr::SIZE);

impl RafsV6InodeChunkAddr {
    /// Bytes on disk.
    pub const SIZE: usize = 8;
    const WHAT: &'static str = "RAFS v6 chunk index";

    /// The index entry of chunk `ci_index` of blob `blob_index`, at uncompressed block
    /// `blk_addr`. Fails if `blob_index` > 254 or `ci_index` ≥ 2^24.
    pub fn new(blob_index: u32, ci_index: u32, blk_addr: u32) -> Result<RafsV6InodeChunkAddr> {
        if blob_index > RAFS_V6_MAX_BLOB_INDEX || ci_index > RAFS_V6_MAX_CI_INDEX {
            return Err(Error::internal(format!(
                "{}: blob index {blob_index} / ci index {ci_index:#x} out of range",
                Self::WHAT
            )));
        }
        Ok(RafsV6InodeChunkAddr {
            c_blob_addr_lo: ci_index as u16,
            c_blob_addr_hi: ((ci_index >> 8) as u16 & 0xff00) | (blob_index + 1) as u16,
            c_blk_addr: blk_addr,
        })
    }

    /// The blob index (0-based); `None` if the device byte is 0 (data in the bootstrap itself,
    /// never the case for nydus).
    pub fn blob_index(&self) -> Option<u32> {
        u32::from(self.c_blob_addr_hi & 0xff).checked_sub(1)
    }

    /// The chunk's ci index within its blob.
    pub fn ci_index(&self) -> u32 {
        u32::from(self.c_blob_addr_hi >> 8) << 16 | u32::from(self.c_blob_addr_lo)
    }

    /// The 8 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u16(self.c_blob_addr_lo);
        w.u16(self.c_blob_addr_hi);
        w.u32(self.c_blk_addr);
        w.finish()
    }

    /// Writes the 8 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads a chunk index from the first 8 bytes of `buf`. Fails only on short input.
    pub fn decode(buf: &[u8]) -> Result<RafsV6InodeChunkAddr> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let c = RafsV6InodeChunkAddr {
            c_blob_addr_lo: r.u16(),
            c_blob_addr_hi: r.u16(),
            c_blk_addr: r.u32(),
        };
        r.finish();
        Ok(c)
    }
}

// ---------------------------------------------------------------------------------------------
// Directory entries
// ---------------------------------------------------------------------------------------------

/// Dirent file type: unknown. (`EROFS_FT_UNKNOWN`)
pub const EROFS_FT_UNKNOWN: u8 = 0;
/// Dirent file type: regular file. (`EROFS_FT_REG_FILE`)
pub const EROFS_FT_REG_FILE: u8 = 1;
/// Dirent file type: directory. (`EROFS_FT_DIR`)
pub const EROFS_FT_DIR: u8 = 2;
/// Dirent file type: character device. (`EROFS_FT_CHRDEV`)
pub const EROFS_FT_CHRDEV: u8 = 3;
/// Dirent file type: block device. (`EROFS_FT_BLKDEV`)
pub const EROFS_FT_BLKDEV: u8 = 4;
/// Dirent file type: FIFO. (`EROFS_FT_FIFO`)
pub const EROFS_FT_FIFO: u8 = 5;
/// Dirent file type: socket. (`EROFS_FT_SOCK`)
pub const EROFS_FT_SOCK: u8 = 6;
/// Dirent file type: symlink. (`EROFS_FT_SYMLINK`)
pub const EROFS_FT_SYMLINK: u8 = 7;

/// The dirent file type for an `st_mode` (`RafsV6Dirent::file_type`).
pub fn erofs_file_type(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFREG => EROFS_FT_REG_FILE,
        libc::S_IFDIR => EROFS_FT_DIR,
        libc::S_IFCHR => EROFS_FT_CHRDEV,
        libc::S_IFBLK => EROFS_FT_BLKDEV,
        libc::S_IFIFO => EROFS_FT_FIFO,
        libc::S_IFSOCK => EROFS_FT_SOCK,
        libc::S_IFLNK => EROFS_FT_SYMLINK,
        _ => EROFS_FT_UNKNOWN,
    }
}

/// One directory entry, 12 bytes. A directory block holds k of these, then the k names packed
/// back to back (no NUL, no padding); the first entry's `e_nameoff` / 12 is k.
///
/// Mirrors `RafsV6Dirent` (nydus v2.2.0 `rafs/src/metadata/layout/v6.rs`) and
/// `struct erofs_dirent` (Linux `fs/erofs/erofs_fs.h`). Packed to 2-byte alignment there and
/// here, so that the Rust type is 12 bytes like the disk record.
#[repr(C, packed(2))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RafsV6Dirent {
    /// nid of the entry's inode.
    pub e_nid: u64,
    /// Offset of the entry's name from the start of its block.
    pub e_nameoff: u16,
    /// `EROFS_FT_*`.
    pub e_file_type: u8,
    /// Zero.
    pub e_reserved: u8,
}
const _: () = assert!(size_of::<RafsV6Dirent>() == RafsV6Dirent::SIZE);

impl RafsV6Dirent {
    /// Bytes on disk.
    pub const SIZE: usize = 12;
    const WHAT: &'static str = "RAFS v6 dirent";

    /// The 12 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u64(self.e_nid);
        w.u16(self.e_nameoff);
        w.u8(self.e_file_type);
        w.u8(self.e_reserved);
        w.finish()
    }

    /// Writes the 12 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads a dirent from the first 12 bytes of `buf`. Fails only on short input.
    pub fn decode(buf: &[u8]) -> Result<RafsV6Dirent> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let d = RafsV6Dirent {
            e_nid: r.u64(),
            e_nameoff: r.u16(),
            e_file_type: r.u8(),
            e_reserved: r.u8(),
        };
        r.finish();
        Ok(d)
    }
}

// ---------------------------------------------------------------------------------------------
// Chunk info table
// ---------------------------------------------------------------------------------------------

/// Chunk flag: the chunk's bytes in the blob are compressed. (`BlobChunkFlags::COMPRESSED`)
pub const BLOB_CHUNK_FLAG_COMPRESSED: u32 = 0x0000_0001;
/// Chunk flag: the chunk's stored bytes are encrypted. (`BlobChunkFlags::ENCRYPTED`)
pub const BLOB_CHUNK_FLAG_ENCRYPTED: u32 = 0x0000_0004;
/// Chunk flag: a CRC32 of the chunk is kept (nydus-image 2.4 sets it on every chunk it
/// writes). (`BlobChunkFlags::HAS_CRC32`)
pub const BLOB_CHUNK_FLAG_HAS_CRC32: u32 = 0x0000_0010;
/// Chunk flag: the chunk is a hole (all zeros); defined but never written by nydus.
/// (`BlobChunkFlags::_HOLECHUNK`)
pub const BLOB_CHUNK_FLAG_HOLE: u32 = 0x0000_0002;

/// One record of the chunk info table at the end of a v6 bootstrap (one per distinct chunk
/// digest and blob, sorted by digest then blob index), 80 bytes. Also the chunk record of RAFS
/// v5 inodes. `nydus-image check`, `unpack` and `merge` find chunks here by
/// (blob index, ci index, block address).
///
/// Mirrors `RafsV5ChunkInfo` (nydus v2.2.0 `rafs/src/metadata/layout/v5.rs`), written for v6 by
/// `Bootstrap::rafsv6_dump` (`src/bin/nydus-image/core/bootstrap.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RafsV5ChunkInfo {
    /// Digest of the uncompressed chunk data (blake3 or sha256).
    pub block_id: [u8; 32],
    /// Index of the chunk's blob in the blob table (0-based).
    pub blob_index: u32,
    /// `BLOB_CHUNK_FLAG_*`.
    pub flags: u32,
    /// Bytes of the chunk in the blob.
    pub compressed_size: u32,
    /// Bytes of the chunk decompressed (the last chunk of a file may be short).
    pub uncompressed_size: u32,
    /// Offset of the chunk in the blob file.
    pub compressed_offset: u64,
    /// Offset of the chunk in the blob's uncompressed space (4 KiB aligned for v6).
    pub uncompressed_offset: u64,
    /// Offset of the chunk in (one of) the file(s) using it.
    pub file_offset: u64,
    /// The chunk's ci index: its number within its blob, in allocation order.
    pub index: u32,
    /// Zero.
    pub reserved: u32,
}
const _: () = assert!(size_of::<RafsV5ChunkInfo>() == RafsV5ChunkInfo::SIZE);

impl RafsV5ChunkInfo {
    /// Bytes on disk.
    pub const SIZE: usize = 80;
    const WHAT: &'static str = "RAFS chunk info";

    /// The 80 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.bytes(&self.block_id);
        w.u32(self.blob_index);
        w.u32(self.flags);
        w.u32(self.compressed_size);
        w.u32(self.uncompressed_size);
        w.u64(self.compressed_offset);
        w.u64(self.uncompressed_offset);
        w.u64(self.file_offset);
        w.u32(self.index);
        w.u32(self.reserved);
        w.finish()
    }

    /// Writes the 80 bytes to `out`.
    pub fn encode(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())
    }

    /// Reads a record from the first 80 bytes of `buf`. Fails only on short input.
    pub fn decode(buf: &[u8]) -> Result<RafsV5ChunkInfo> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let c = RafsV5ChunkInfo {
            block_id: r.bytes(),
            blob_index: r.u32(),
            flags: r.u32(),
            compressed_size: r.u32(),
            uncompressed_size: r.u32(),
            compressed_offset: r.u64(),
            uncompressed_offset: r.u64(),
            file_offset: r.u64(),
            index: r.u32(),
            reserved: r.u32(),
        };
        r.finish();
        Ok(c)
    }
}

pub mod reader;
#[cfg(test)]
mod tests;
