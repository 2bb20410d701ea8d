//! The one RAFS v5 bootstrap reader: super block, inode table, prefetch table, blob and
//! extended blob tables, and inode records with their names, symlink targets, xattr tables and
//! chunk records, decoded from the structures declared in [`super`]. `check` judges what it
//! returns, `inspect` and `unpack` show and rebuild it.
//!
//! Like the v6 reader ([`crate::ondisk::rafs_v6::reader`]) it decides nothing about whether an
//! image is *valid*: it refuses only what it cannot decode (a record past the end of the file,
//! a mode with no file type, a child range outside the inode table). Every offset, count and
//! length comes from an untrusted file, so each is held to the bytes the bootstrap has before it
//! is used to index or to allocate, and a walk of the tree spends the same kind of [`Budget`].
//!
//! The tree is given in the v6 reader's terms ([`Inode`], [`Kind`]) so that `check --source`,
//! `inspect` and `unpack` share their code between the versions: an inode's `nid` is its
//! `i_ino` (the names of a hard-link group share it), its chunks are the chunk records'
//! (blob index, chunk index) pairs as v6 chunk addresses.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use super::*;
use crate::ondisk::rafs_v6::reader::{Budget, Decoded, Inode, Kind, child_path};
use crate::ondisk::rafs_v6::{RAFS_SUPER_FLAG_HASH_SHA256, RafsV6InodeChunkAddr, new_decode_dev};

/// The block unit v6 chunk addresses count in; a v5 chunk's uncompressed offset is shown in it
/// (rounded down: v5 lays chunks end to end).
const BLOCK: u64 = 4096;

/// One inode record, decoded with what follows it.
#[derive(Clone, Debug)]
pub struct Record {
    /// The inode table entry it was read through: the inode number of this name. (`i_ino` is
    /// the hard-link group's, the same for every name of the group.)
    pub slot: u64,
    /// Byte offset of the record.
    pub offset: u64,
    /// The fixed 128 bytes.
    pub inode: RafsV5Inode,
    pub kind: Kind,
    /// The name (the root's is "/").
    pub name: Vec<u8>,
    /// A symlink's target.
    pub symlink: Arc<[u8]>,
    /// The xattr table's pairs, by full name.
    pub xattrs: Arc<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Pairs the xattr table holds (a name twice counts twice; `xattrs` keeps the last).
    pub xattr_pairs: usize,
    /// A regular file's chunk records, in file order.
    pub chunks: Arc<[RafsV5ChunkInfo]>,
    /// Bytes of the whole record: inode, name, target, xattr table and chunk records.
    pub len: u64,
}

impl Record {
    /// The record as the v6 reader's [`Inode`], which `check --source`, `inspect` and `unpack`
    /// take. Fails only when a chunk record cannot be said as a v6 chunk address (a blob index
    /// over 254 or a chunk index of 2^24 or more: no nydus blob has so many).
    pub fn to_inode(&self) -> Decoded<Inode> {
        let i = &self.inode;
        let chunks = self
            .chunks
            .iter()
            .map(|c| {
                let block = u32::try_from(c.uncompressed_offset / BLOCK).unwrap_or(u32::MAX);
                RafsV6InodeChunkAddr::new(c.blob_index, c.index, block).map_err(|_| {
                    format!(
                        "chunk of blob {} index {} has no chunk address",
                        c.blob_index, c.index
                    )
                })
            })
            .collect::<Decoded<Vec<_>>>()?;
        let device = matches!(self.kind, Kind::CharDevice | Kind::BlockDevice);
        Ok(Inode {
            nid: i.i_ino,
            kind: self.kind,
            mode: i.i_mode,
            uid: i.i_uid,
            gid: i.i_gid,
            mtime: i.i_mtime,
            mtime_nsec: i.i_mtime_nsec,
            size: i.i_size,
            nlink: i.i_nlink,
            rdev: if device {
                new_decode_dev(i.i_rdev)
            } else {
                (0, 0)
            },
            xattrs: self.xattrs.clone(),
            symlink: self.symlink.clone(),
            chunks: chunks.into(),
            layout: 0,
            extended: false,
            offset: self.offset,
            head: self.len,
            i_u: i.i_rdev,
        })
    }
}

/// A bootstrap whose super block could be decoded.
pub struct BootstrapReader {
    bytes: Vec<u8>,
    pub sb: RafsV5SuperBlock,
}

impl BootstrapReader {
    /// Decode the super block of `bytes`.
    pub fn open(bytes: Vec<u8>) -> Decoded<BootstrapReader> {
        let sb = RafsV5SuperBlock::decode(&bytes).map_err(|e| e.to_string())?;
        Ok(BootstrapReader { bytes, sb })
    }

    /// The whole bootstrap.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `len` bytes at `offset`, if inside the file.
    pub fn at(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        self.bytes
            .get(usize::try_from(offset).ok()?..usize::try_from(end).ok()?)
    }

    /// Entries of the inode table: the highest inode number.
    pub fn entries(&self) -> u64 {
        u64::from(self.sb.s_inode_table_entries)
    }

    /// Entries of the inode table that lie inside the file (its count may claim more): the
    /// highest inode number a record can be read through.
    pub fn table_entries(&self) -> u64 {
        let room = (self.bytes.len() as u64).saturating_sub(self.sb.s_inode_table_offset) / 4;
        self.entries().min(room)
    }

    /// The chunk size files are cut at (held to 4 KiB ..= 16 MiB whatever the super block says;
    /// `check` reports a size outside).
    pub fn chunk_size(&self) -> u64 {
        u64::from(
            self.sb
                .s_block_size
                .clamp(4096, crate::ondisk::blob::BLOB_CHUNK_MAX_SIZE),
        )
    }

    /// Whether inode and chunk digests are sha256 (else blake3).
    pub fn sha256(&self) -> bool {
        self.sb.s_flags & RAFS_SUPER_FLAG_HASH_SHA256 != 0
    }

    /// The nydus compressor (`COMPRESSOR_*`) the super block's flags name; `None` unless
    /// exactly one.
    pub fn compressor(&self) -> Option<u32> {
        crate::ondisk::rafs_v6::compressor_of_flags(self.sb.s_flags)
    }

    /// The nydus digester (`DIGESTER_*`) of inode and chunk digests.
    pub fn digester(&self) -> u32 {
        if self.sha256() {
            crate::ondisk::blob::DIGESTER_SHA256
        } else {
            crate::ondisk::blob::DIGESTER_BLAKE3
        }
    }

    /// The blob table; empty when it does not lie inside the file or cannot be decoded.
    pub fn blob_table(&self) -> Vec<RafsV5BlobTableEntry> {
        self.at(
            self.sb.s_blob_table_offset,
            u64::from(self.sb.s_blob_table_size),
        )
        .and_then(|t| decode_blob_table(t).ok())
        .unwrap_or_default()
    }

    /// The extended blob table entries that lie inside the file (its count may claim more).
    pub fn ext_blob_table(&self) -> Vec<RafsV5ExtBlobEntry> {
        let size = RafsV5ExtBlobEntry::SIZE as u64;
        (0..u64::from(self.sb.s_extended_blob_table_entries))
            .map_while(|i| {
                let at = self.sb.s_extended_blob_table_offset.checked_add(i * size)?;
                RafsV5ExtBlobEntry::decode(self.at(at, size)?).ok()
            })
            .collect()
    }

    /// The prefetch table's inode numbers; empty when it does not lie inside the file.
    pub fn prefetch_table(&self) -> Vec<u32> {
        self.bytes
            .get(usize::try_from(self.sb.s_prefetch_table_offset).unwrap_or(usize::MAX)..)
            .and_then(|t| decode_u32_table(t, self.sb.s_prefetch_table_entries as usize))
            .unwrap_or_default()
    }

    /// Byte offset of the record of inode number `slot`, from the inode table.
    pub fn record_offset(&self, slot: u64) -> Decoded<u64> {
        if slot == 0 || slot > self.entries() {
            return Err(format!(
                "inode number {slot} is outside the inode table's 1..={}",
                self.entries()
            ));
        }
        let at = self
            .sb
            .s_inode_table_offset
            .checked_add((slot - 1) * 4)
            .and_then(|at| self.at(at, 4))
            .ok_or_else(|| format!("inode table entry {slot} lies past the end"))?;
        Ok(u64::from(u32::from_le_bytes(at.try_into().expect("4 bytes"))) << 3)
    }

    /// The record of inode number `slot`, with its name, target, xattrs and chunk records.
    pub fn record(&self, slot: u64) -> Decoded<Record> {
        let offset = self.record_offset(slot)?;
        let past = |part: &str| format!("{part} of the record at {offset:#x} lies past the end");
        let inode = self
            .at(offset, RafsV5Inode::SIZE as u64)
            .ok_or_else(|| past("the inode"))
            .and_then(|b| RafsV5Inode::decode(b).map_err(|e| e.to_string()))?;
        let kind = Kind::of_mode(inode.i_mode)
            .ok_or_else(|| format!("mode {:#o} is no file type", inode.i_mode))?;
        let name_at = offset + RafsV5Inode::SIZE as u64;
        let name = self
            .at(name_at, u64::from(inode.i_name_size))
            .ok_or_else(|| past("the name"))?
            .to_vec();
        let mut record = Record {
            slot,
            offset,
            inode,
            kind,
            name,
            symlink: Arc::default(),
            xattrs: Arc::default(),
            xattr_pairs: 0,
            chunks: Arc::default(),
            len: inode.head_size() as u64,
        };
        if kind == Kind::Symlink {
            let at = name_at + align8(usize::from(inode.i_name_size)) as u64;
            record.symlink = self
                .at(at, u64::from(inode.i_symlink_size))
                .ok_or_else(|| past("the symlink target"))?
                .into();
        }
        if inode.i_flags & RAFS_V5_INODE_FLAG_XATTR != 0 {
            self.read_xattrs(&mut record)?;
        }
        if kind == Kind::File {
            self.read_chunks(&mut record)?;
        }
        Ok(record)
    }

    /// The xattr table after the name and target.
    fn read_xattrs(&self, r: &mut Record) -> Decoded<()> {
        let at = r.offset + r.len;
        let rest = self
            .bytes
            .get(at as usize..)
            .ok_or("the xattr table lies past the end")?;
        let pairs = decode_xattrs(rest).map_err(|e| e.to_string())?;
        let size = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        r.len += xattr_table_size(size).ok_or("the xattr table's size overflows")?;
        r.xattr_pairs = pairs.len();
        r.xattrs = Arc::new(pairs.into_iter().collect());
        Ok(())
    }

    /// A regular file's `i_child_count` chunk records, after the xattr table.
    fn read_chunks(&self, r: &mut Record) -> Decoded<()> {
        let size = RafsV5ChunkInfo::SIZE as u64;
        // The count is the file's word: the slice bound holds it to the bootstrap before
        // anything is allocated by it.
        let len = u64::from(r.inode.i_child_count) * size;
        let table = self
            .at(r.offset + r.len, len)
            .ok_or_else(|| format!("{} chunk records lie past the end", r.inode.i_child_count))?;
        r.chunks = table
            .chunks_exact(RafsV5ChunkInfo::SIZE)
            .filter_map(|c| RafsV5ChunkInfo::decode(c).ok())
            .collect();
        r.len += len;
        Ok(())
    }

    /// The inode numbers of a directory's children (`i_child_index` ..+ `i_child_count`),
    /// held to the part of the inode table inside the file (so that a range is never longer
    /// than the file has room for).
    pub fn children(&self, dir: &Record) -> Decoded<Range<u64>> {
        let (first, count) = (
            u64::from(dir.inode.i_child_index),
            u64::from(dir.inode.i_child_count),
        );
        if count == 0 {
            return Ok(0..0);
        }
        if first == 0 || first + count - 1 > self.table_entries() {
            return Err(format!(
                "children {first} ..+ {count} lie outside the inode table's 1..={}",
                self.table_entries()
            ));
        }
        Ok(first..first + count)
    }

    /// The record a path names, following directories from the root (no symlinks).
    pub fn lookup(&self, path: &[u8]) -> Decoded<Record> {
        let mut e = self.record(RAFS_V5_ROOT_INODE)?;
        for part in path.split(|&c| c == b'/').filter(|p| !p.is_empty()) {
            if e.kind != Kind::Dir {
                return Err(format!("{} is not in the tree", path.escape_ascii()));
            }
            let mut found = None;
            for slot in self.children(&e)? {
                let child = self.record(slot)?;
                if child.name == part {
                    found = Some(child);
                    break;
                }
            }
            e = found.ok_or_else(|| format!("{} is not in the tree", path.escape_ascii()))?;
        }
        Ok(e)
    }

    /// A fresh [`Budget`] for a walk of this bootstrap's tree.
    pub fn budget(&self) -> Budget {
        Budget::new(self.bytes.len() as u64)
    }

    /// Every path of the tree from the root ("/", "/etc", …) with its record, each record
    /// decoded once, within the bootstrap's [`Budget`]: the first problem met ends the walk.
    /// (`check` walks with its own loop, to report every problem and go on.)
    pub fn records(&self) -> Decoded<BTreeMap<Vec<u8>, Record>> {
        let mut out = BTreeMap::new();
        let mut budget = self.budget();
        let mut decoded: HashMap<u64, Record> = HashMap::new();
        let mut load = |slot: u64, budget: &mut Budget| -> Decoded<Record> {
            if let Some(r) = decoded.get(&slot) {
                return Ok(r.clone());
            }
            let r = self.record(slot)?;
            budget.charge(r.len)?;
            decoded.insert(slot, r.clone());
            Ok(r)
        };
        let mut seen = HashSet::new();
        let mut stack = vec![(b"/".to_vec(), RAFS_V5_ROOT_INODE)];
        while let Some((path, slot)) = stack.pop() {
            let what = |p: String| format!("{} (inode {slot}): {p}", path.escape_ascii());
            let dir = load(slot, &mut budget).map_err(what)?;
            if dir.kind != Kind::Dir || !seen.insert(slot) {
                return Err(what("not a directory, or reached twice".into()));
            }
            for child_slot in self.children(&dir).map_err(what)? {
                let child = load(child_slot, &mut budget).map_err(what)?;
                if !is_plain_name(&child.name) {
                    return Err(what(format!(
                        "child {child_slot} has the name '{}', which no path can hold",
                        child.name.escape_ascii()
                    )));
                }
                let child_path = child_path(&path, &child.name);
                budget.charge_path(&child_path).map_err(what)?;
                if child.kind == Kind::Dir {
                    stack.push((child_path, child_slot));
                } else {
                    out.insert(child_path, child);
                }
            }
            out.insert(path, dir);
        }
        Ok(out)
    }

    /// [`records`](Self::records) as the v6 reader's [`Inode`]s.
    pub fn tree(&self) -> Decoded<BTreeMap<Vec<u8>, Inode>> {
        self.records()?
            .into_iter()
            .map(|(path, r)| {
                let inode = r
                    .to_inode()
                    .map_err(|p| format!("{}: {p}", path.escape_ascii()))?;
                Ok((path, inode))
            })
            .collect()
    }
}

/// Whether `name` can be one component of a path: not empty, not `.` or `..`, no `/` or NUL.
pub fn is_plain_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

#[cfg(test)]
mod tests;
