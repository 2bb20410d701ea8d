//! On-disk structures of a RAFS v5 bootstrap, as nydus-image writes them with `--fs-version 5`.
//!
//! RAFS v5 is Nydus's own metadata format, older than v6 and read by nydusd only (no kernel
//! reader). Every structure is declared once here, in the order a reader meets it, encoded and
//! decoded only here through [`crate::common::le`], its size asserted beside it. The chunk
//! record ([`RafsV5ChunkInfo`]) is shared with v6, whose chunk info table uses it, and is
//! declared in [`super::rafs_v6`]; super block flags and chunk flags are the same bits as v6's.
//!
//! ```text
//! byte 0        +---------------------------------------------+
//!               | RafsV5SuperBlock        8192 B              |
//! 8192          | inode table   u32 × inodes: record offset/8 |  entry i−1 = inode number i
//!               | prefetch table  u32 inode numbers           |  (zero padded to 8)
//!               | blob table  {u32 0, u32 0, id} '\0'-separated, padded to 8
//!               | RafsV5ExtBlobEntry      64 B × blobs        |
//!               +---------------------------------------------+
//!               | inode records, 8-byte aligned:              |
//!               |   RafsV5Inode (128 B) | name, pad 8          |
//!               |   [symlink target, pad 8]                    |
//!               |   [xattr table: u64 size, pairs, pad 8]      |
//!               |   [RafsV5ChunkInfo (80 B) × chunks]          |  regular files
//!               +---------------------------------------------+
//! ```
//!
//! Inode numbers count from 1 (the root) in the builder's order: a directory's children get
//! consecutive numbers, sorted by name, directories numbered depth first. Every name has a
//! record; a hard link's extra names carry the first name's inode number. Each inode carries a
//! digest (a regular file's over its chunk digests, a directory's over its children's) that
//! `nydus-image check` verifies. See `docs/format.md` §4.15.

use std::mem::size_of;

use crate::common::error::{Error, Result};
use crate::common::le::{LeReader, LeWriter};

pub mod reader;

pub use super::rafs_v6::RafsV5ChunkInfo;

/// `s_magic`: "RAFS" read as a little-endian u32. (`RAFSV5_SUPER_MAGIC`)
pub const RAFS_V5_MAGIC: u32 = 0x5241_4653;
/// `s_fs_version` of v5. (`RAFS_SUPER_VERSION_V5`)
pub const RAFS_V5_VERSION: u32 = 0x500;
/// Every table and record starts on, and is padded to, this many bytes. (`RAFSV5_ALIGNMENT`)
pub const RAFS_V5_ALIGNMENT: usize = 8;
/// Inode number of the root. (`RAFS_V5_ROOT_INODE`)
pub const RAFS_V5_ROOT_INODE: u64 = 1;
/// Longest name a record holds (the root's is "/", 1 byte). (`RAFS_MAX_NAME`)
pub const RAFS_V5_MAX_NAME: usize = 255;

/// Inode flag: a symlink (its target follows the name). (`RafsInodeFlags::SYMLINK`)
pub const RAFS_V5_INODE_FLAG_SYMLINK: u64 = 0x1;
/// Inode flag: a further name of a hard-linked file. (`RafsInodeFlags::HARDLINK`)
pub const RAFS_V5_INODE_FLAG_HARDLINK: u64 = 0x2;
/// Inode flag: an xattr table follows the name (and target). (`RafsInodeFlags::XATTR`)
pub const RAFS_V5_INODE_FLAG_XATTR: u64 = 0x4;
/// Inode flag: the file has holes (chunk count may be below size / chunk size).
/// (`RafsInodeFlags::HAS_HOLE`)
pub const RAFS_V5_INODE_FLAG_HAS_HOLE: u64 = 0x8;

/// `i_rdev` of everything but devices and fifos, as nydus-image's tar builder writes it.
pub const RAFS_V5_NO_RDEV: u32 = u32::MAX;

/// `n` rounded up to [`RAFS_V5_ALIGNMENT`].
pub fn align8(n: usize) -> usize {
    n.next_multiple_of(RAFS_V5_ALIGNMENT)
}

// ---------------------------------------------------------------------------------------------
// Super block
// ---------------------------------------------------------------------------------------------

/// The super block at byte 0, 8192 bytes (80 of them used).
///
/// Mirrors `RafsV5SuperBlock` (nydus `rafs/src/metadata/layout/v5.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RafsV5SuperBlock {
    /// [`RAFS_V5_MAGIC`].
    pub s_magic: u32,
    /// [`RAFS_V5_VERSION`].
    pub s_fs_version: u32,
    /// 8192.
    pub s_sb_size: u32,
    /// The chunk size: a power of two, 4 KiB ..= 16 MiB.
    pub s_block_size: u32,
    /// `RAFS_SUPER_FLAG_*` (the bits of [`super::rafs_v6`]).
    pub s_flags: u64,
    /// Distinct inodes (hard-linked names count once); at most `s_inode_table_entries`.
    pub s_inodes_count: u64,
    /// 8192.
    pub s_inode_table_offset: u64,
    /// Byte offset of the prefetch table (where it would be when it has no entry).
    pub s_prefetch_table_offset: u64,
    /// Byte offset of the blob table.
    pub s_blob_table_offset: u64,
    /// Entries of the inode table: one per name.
    pub s_inode_table_entries: u32,
    /// Entries of the prefetch table.
    pub s_prefetch_table_entries: u32,
    /// Bytes of the blob table, padded to 8.
    pub s_blob_table_size: u32,
    /// Entries of the extended blob table (one per blob).
    pub s_extended_blob_table_entries: u32,
    /// Byte offset of the extended blob table.
    pub s_extended_blob_table_offset: u64,
    /// Zeros.
    pub s_reserved: [u8; 8112],
}
const _: () = assert!(size_of::<RafsV5SuperBlock>() == RafsV5SuperBlock::SIZE);

impl Default for RafsV5SuperBlock {
    fn default() -> Self {
        RafsV5SuperBlock {
            s_magic: RAFS_V5_MAGIC,
            s_fs_version: RAFS_V5_VERSION,
            s_sb_size: Self::SIZE as u32,
            s_block_size: 0x10_0000,
            s_flags: 0,
            s_inodes_count: 0,
            s_inode_table_offset: Self::SIZE as u64,
            s_prefetch_table_offset: 0,
            s_blob_table_offset: 0,
            s_inode_table_entries: 0,
            s_prefetch_table_entries: 0,
            s_blob_table_size: 0,
            s_extended_blob_table_entries: 0,
            s_extended_blob_table_offset: 0,
            s_reserved: [0; 8112],
        }
    }
}

impl RafsV5SuperBlock {
    /// Bytes on disk.
    pub const SIZE: usize = 8192;
    const WHAT: &'static str = "RAFS v5 super block";

    /// The 8192 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u32(self.s_magic);
        w.u32(self.s_fs_version);
        w.u32(self.s_sb_size);
        w.u32(self.s_block_size);
        w.u64(self.s_flags);
        w.u64(self.s_inodes_count);
        w.u64(self.s_inode_table_offset);
        w.u64(self.s_prefetch_table_offset);
        w.u64(self.s_blob_table_offset);
        w.u32(self.s_inode_table_entries);
        w.u32(self.s_prefetch_table_entries);
        w.u32(self.s_blob_table_size);
        w.u32(self.s_extended_blob_table_entries);
        w.u64(self.s_extended_blob_table_offset);
        w.bytes(&self.s_reserved);
        w.finish()
    }

    /// Reads the super block from the first 8192 bytes of `buf`. Fails on short input and on a
    /// wrong magic or version (the bytes are then not a RAFS v5 bootstrap at all).
    pub fn decode(buf: &[u8]) -> Result<RafsV5SuperBlock> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let sb = RafsV5SuperBlock {
            s_magic: r.u32(),
            s_fs_version: r.u32(),
            s_sb_size: r.u32(),
            s_block_size: r.u32(),
            s_flags: r.u64(),
            s_inodes_count: r.u64(),
            s_inode_table_offset: r.u64(),
            s_prefetch_table_offset: r.u64(),
            s_blob_table_offset: r.u64(),
            s_inode_table_entries: r.u32(),
            s_prefetch_table_entries: r.u32(),
            s_blob_table_size: r.u32(),
            s_extended_blob_table_entries: r.u32(),
            s_extended_blob_table_offset: r.u64(),
            s_reserved: r.bytes(),
        };
        r.finish();
        if sb.s_magic != RAFS_V5_MAGIC || sb.s_fs_version != RAFS_V5_VERSION {
            return Err(Error::bad_input(
                Self::WHAT,
                format!(
                    "magic {:#x} version {:#x}: not a RAFS v5 bootstrap",
                    sb.s_magic, sb.s_fs_version
                ),
            ));
        }
        Ok(sb)
    }

    /// Whether the first bytes of `buf` are a RAFS v5 super block's magic and version.
    pub fn is_v5(buf: &[u8]) -> bool {
        buf.len() >= 8
            && buf[..4] == RAFS_V5_MAGIC.to_le_bytes()
            && buf[4..8] == RAFS_V5_VERSION.to_le_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// Blob tables
// ---------------------------------------------------------------------------------------------

/// The blob table: per blob `u32` readahead offset, `u32` readahead size (both 0 here), the blob
/// id, and a NUL between entries (none after the last), zero padded to 8 bytes.
///
/// Mirrors `RafsV5BlobTable::store`. Fails if an id holds a NUL byte.
pub fn encode_blob_table(ids: &[&str]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if id.is_empty() || id.contains('\0') {
            return Err(Error::internal(format!("RAFS v5 blob id {id:?}")));
        }
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(id.as_bytes());
    }
    out.resize(align8(out.len()), 0);
    Ok(out)
}

/// One entry of the blob table as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RafsV5BlobTableEntry {
    pub readahead_offset: u32,
    pub readahead_size: u32,
    pub blob_id: String,
}

/// Reads a blob table of `buf.len()` bytes as nydusd does (`RafsV5BlobTable::load`): entries
/// while more than 8 bytes remain, each id running to the next NUL or the end. The number of
/// entries is bounded by the table's size (each takes at least 9 bytes).
pub fn decode_blob_table(buf: &[u8]) -> Result<Vec<RafsV5BlobTableEntry>> {
    let mut rest = buf;
    let mut out = Vec::new();
    while rest.len() > 8 {
        let mut r = LeReader::new("RAFS v5 blob table entry", rest, 8)?;
        let (readahead_offset, readahead_size) = (r.u32(), r.u32());
        let id = &rest[8..];
        let end = id.iter().position(|&b| b == 0).unwrap_or(id.len());
        let blob_id = std::str::from_utf8(&id[..end])
            .map_err(|_| Error::bad_input("RAFS v5 blob table", "a blob id is not UTF-8"))?
            .to_string();
        out.push(RafsV5BlobTableEntry {
            readahead_offset,
            readahead_size,
            blob_id,
        });
        rest = id.get(end + 1..).unwrap_or(&[]);
    }
    Ok(out)
}

/// One extended blob table entry per blob, in blob table order, 64 bytes.
///
/// Mirrors `RafsV5ExtBlobEntry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RafsV5ExtBlobEntry {
    /// Chunks stored in the blob.
    pub chunk_count: u32,
    /// `BLOB_FEATURE_*` of [`super::blob`].
    pub features: u32,
    /// End of the last chunk in the blob's uncompressed space.
    pub uncompressed_size: u64,
    /// Bytes of chunk data in the blob file (with the `image.blob` tar header, when there is one).
    pub compressed_size: u64,
    /// Zeros.
    pub reserved: [u8; 40],
}
const _: () = assert!(size_of::<RafsV5ExtBlobEntry>() == RafsV5ExtBlobEntry::SIZE);

impl Default for RafsV5ExtBlobEntry {
    fn default() -> Self {
        RafsV5ExtBlobEntry {
            chunk_count: 0,
            features: 0,
            uncompressed_size: 0,
            compressed_size: 0,
            reserved: [0; 40],
        }
    }
}

impl RafsV5ExtBlobEntry {
    /// Bytes on disk.
    pub const SIZE: usize = 64;
    const WHAT: &'static str = "RAFS v5 extended blob table entry";

    /// The 64 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.u32(self.chunk_count);
        w.u32(self.features);
        w.u64(self.uncompressed_size);
        w.u64(self.compressed_size);
        w.bytes(&self.reserved);
        w.finish()
    }

    /// Reads an entry from the first 64 bytes of `buf`. Fails only on short input.
    pub fn decode(buf: &[u8]) -> Result<RafsV5ExtBlobEntry> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let e = RafsV5ExtBlobEntry {
            chunk_count: r.u32(),
            features: r.u32(),
            uncompressed_size: r.u64(),
            compressed_size: r.u64(),
            reserved: r.bytes(),
        };
        r.finish();
        Ok(e)
    }
}

/// The inode table (`u32` record offset / 8 per inode number, from 1) or the prefetch table
/// (`u32` inode numbers): little-endian words, zero padded to 8 bytes.
pub fn encode_u32_table(words: &[u32]) -> Vec<u8> {
    let mut out: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    out.resize(align8(out.len()), 0);
    out
}

/// The words of an inode or prefetch table of `count` entries at the start of `buf`; `None` if
/// `buf` is too short.
pub fn decode_u32_table(buf: &[u8], count: usize) -> Option<Vec<u32>> {
    let bytes = buf.get(..count.checked_mul(4)?)?;
    Some(
        bytes
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Inode record
// ---------------------------------------------------------------------------------------------

/// The fixed head of an inode record, 128 bytes; its name (and a symlink's target, and the
/// xattr table, and a file's chunk records) follow.
///
/// Mirrors `RafsV5Inode`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RafsV5Inode {
    /// The inode digest (module documentation).
    pub i_digest: [u8; 32],
    /// The parent directory's inode number; 0 for the root.
    pub i_parent: u64,
    /// The inode number: this record's, or a hard link group's first name's.
    pub i_ino: u64,
    pub i_uid: u32,
    pub i_gid: u32,
    /// Zero.
    pub i_projid: u32,
    /// File type and permission bits.
    pub i_mode: u32,
    /// File size; a symlink's target length; a directory's pseudo size.
    pub i_size: u64,
    /// 512-byte blocks: `ceil((i_size + padded xattr pairs) / 512)`.
    pub i_blocks: u64,
    /// `RAFS_V5_INODE_FLAG_*`.
    pub i_flags: u64,
    pub i_nlink: u32,
    /// Directories: the inode number of the first child.
    pub i_child_index: u32,
    /// Directories: number of children; regular files: number of chunk records.
    pub i_child_count: u32,
    /// Bytes of the name (1..=255; the root's name is "/").
    pub i_name_size: u16,
    /// Bytes of the symlink target.
    pub i_symlink_size: u16,
    /// Device number (`new_encode_dev`), or [`RAFS_V5_NO_RDEV`].
    pub i_rdev: u32,
    pub i_mtime_nsec: u32,
    pub i_mtime: u64,
    /// Zeros.
    pub i_reserved: [u8; 8],
}
const _: () = assert!(size_of::<RafsV5Inode>() == RafsV5Inode::SIZE);

impl RafsV5Inode {
    /// Bytes on disk.
    pub const SIZE: usize = 128;
    const WHAT: &'static str = "RAFS v5 inode";

    /// The 128 bytes on disk.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut w = LeWriter::new();
        w.bytes(&self.i_digest);
        w.u64(self.i_parent);
        w.u64(self.i_ino);
        w.u32(self.i_uid);
        w.u32(self.i_gid);
        w.u32(self.i_projid);
        w.u32(self.i_mode);
        w.u64(self.i_size);
        w.u64(self.i_blocks);
        w.u64(self.i_flags);
        w.u32(self.i_nlink);
        w.u32(self.i_child_index);
        w.u32(self.i_child_count);
        w.u16(self.i_name_size);
        w.u16(self.i_symlink_size);
        w.u32(self.i_rdev);
        w.u32(self.i_mtime_nsec);
        w.u64(self.i_mtime);
        w.bytes(&self.i_reserved);
        w.finish()
    }

    /// Reads an inode from the first 128 bytes of `buf`. Fails only on short input.
    pub fn decode(buf: &[u8]) -> Result<RafsV5Inode> {
        let mut r = LeReader::new(Self::WHAT, buf, Self::SIZE)?;
        let i = RafsV5Inode {
            i_digest: r.bytes(),
            i_parent: r.u64(),
            i_ino: r.u64(),
            i_uid: r.u32(),
            i_gid: r.u32(),
            i_projid: r.u32(),
            i_mode: r.u32(),
            i_size: r.u64(),
            i_blocks: r.u64(),
            i_flags: r.u64(),
            i_nlink: r.u32(),
            i_child_index: r.u32(),
            i_child_count: r.u32(),
            i_name_size: r.u16(),
            i_symlink_size: r.u16(),
            i_rdev: r.u32(),
            i_mtime_nsec: r.u32(),
            i_mtime: r.u64(),
            i_reserved: r.bytes(),
        };
        r.finish();
        Ok(i)
    }

    /// Bytes of the record without its xattr table and chunk records: the inode, the name and
    /// a symlink's target, each padded to 8.
    pub fn head_size(&self) -> usize {
        Self::SIZE
            + align8(usize::from(self.i_name_size))
            + align8(usize::from(self.i_symlink_size))
    }
}

/// The xattr table of a record: `u64` size of the pairs (unpadded), then per pair a `u32` size
/// (name + 1 + value), the full name, a NUL and the value; zero padded to 8.
///
/// Mirrors `RafsXAttrs::store_v5`. Pairs are written in the order given.
pub fn encode_xattrs(pairs: &[(&[u8], &[u8])]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    for (name, value) in pairs {
        let size = u32::try_from(name.len() + 1 + value.len())
            .map_err(|_| Error::internal("xattr pair over 4 GiB"))?;
        body.extend_from_slice(&size.to_le_bytes());
        body.extend_from_slice(name);
        body.push(0);
        body.extend_from_slice(value);
    }
    let mut out = (body.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out.resize(align8(out.len()), 0);
    Ok(out)
}

/// Bytes of an xattr table (header included) whose `u64` size field is `pairs_size`.
pub fn xattr_table_size(pairs_size: u64) -> Option<u64> {
    pairs_size.checked_add(8)?.checked_next_multiple_of(8)
}

/// The pairs of the xattr table at the start of `buf` (its header included), as
/// (name, value); fails if a pair runs past the table or the table past `buf`.
pub fn decode_xattrs(buf: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    const WHAT: &str = "RAFS v5 xattr table";
    let mut r = LeReader::new(WHAT, buf, 8)?;
    let size = r.u64();
    let body = usize::try_from(size)
        .ok()
        .and_then(|size| buf.get(8..8usize.checked_add(size)?))
        .ok_or_else(|| Error::bad_input(WHAT, format!("size {size} runs past the bootstrap")))?;
    let mut pairs = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let mut r = LeReader::new(WHAT, rest, 4)?;
        let len = r.u32() as usize;
        let pair = rest
            .get(4..4 + len)
            .ok_or_else(|| Error::bad_input(WHAT, format!("a pair of {len} bytes runs past it")))?;
        let nul = pair
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| Error::bad_input(WHAT, "a pair without the NUL after its name"))?;
        pairs.push((pair[..nul].to_vec(), pair[nul + 1..].to_vec()));
        rest = &rest[4 + len..];
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests;
