//! The one RAFS v6 bootstrap reader: super blocks, device slots, blob table, chunk info and
//! prefetch tables, inodes with their inline xattrs, chunk indexes, symlink targets and
//! directory entries, decoded from the structures declared in [`super`]. `check` judges what
//! it returns, `inspect` and `unpack` show and rebuild it, the tests edit bootstraps through it.
//!
//! It decides nothing about whether an image is *valid*: it refuses only what it cannot decode
//! (a structure past the end of the file, a mode with no file type, a name running out of its
//! block). Every offset and count comes from an untrusted file, so each is held to the bytes
//! the bootstrap has before it is used to index or to allocate.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::*;

const BLOCK: u64 = EROFS_BLOCK_SIZE;

/// What the reader returns: the value, or what could not be decoded (the caller names where).
pub type Decoded<T> = std::result::Result<T, String>;

/// What decoding a tree may cost, as a multiple of the bootstrap's size (plus [`BUDGET_SLACK`]):
/// in a sound bootstrap no two inodes share bytes, so their decoded parts (inode, xattrs, chunk
/// indexes, directory and symlink data) add up to less than the file. Damage can make inodes
/// overlap and directories share blocks; past this budget a walk stops instead of growing
/// without bound.
pub const DECODE_FACTOR: u64 = 2;
/// The paths of a tree, together, each with [`PATH_OVERHEAD`], as a multiple of the bootstrap's
/// size (plus [`BUDGET_SLACK`]): real trees stay far below (each path needs at least a dirent
/// and a name in the file); a damaged deep tree of long names could otherwise take memory
/// quadratic in its depth, and directories sharing one dirent block a listing quadratic in size.
pub const PATH_FACTOR: u64 = 16;
/// Room every bootstrap gets on top of the factors above.
pub const BUDGET_SLACK: u64 = 64 << 20;
/// What a listed path costs beyond its bytes: its key and inode in a listing's map. Charged
/// with the path, so a tree of many short names is bounded as well as one of long ones.
pub const PATH_OVERHEAD: u64 = 256;

/// What a walk of one bootstrap's tree has cost so far, against [`DECODE_FACTOR`] and
/// [`PATH_FACTOR`]. Each inode is charged once (a walk keeps the inodes it decoded by nid),
/// each path as it is listed.
#[derive(Clone, Debug)]
pub struct Budget {
    decoded: u64,
    decode_limit: u64,
    path_bytes: u64,
    path_limit: u64,
}

impl Budget {
    /// The budget of a bootstrap of `len` bytes.
    pub fn new(len: u64) -> Budget {
        Budget {
            decoded: 0,
            decode_limit: len
                .saturating_mul(DECODE_FACTOR)
                .saturating_add(BUDGET_SLACK),
            path_bytes: 0,
            path_limit: len.saturating_mul(PATH_FACTOR).saturating_add(BUDGET_SLACK),
        }
    }

    /// Count a decoded inode; an error once the budget is spent.
    pub fn charge_inode(&mut self, e: &Inode) -> Decoded<()> {
        let data = if e.kind == Kind::Dir { e.size } else { 0 };
        let cost = e
            .head
            .saturating_add((e.chunks.len() * RafsV6InodeChunkAddr::SIZE + e.symlink.len()) as u64)
            .saturating_add(data);
        self.charge(cost)
    }

    /// Count `bytes` decoded (a RAFS v5 record, whose length says all it holds); an error once
    /// the budget is spent.
    pub fn charge(&mut self, bytes: u64) -> Decoded<()> {
        self.decoded = self.decoded.saturating_add(bytes);
        if self.decoded > self.decode_limit {
            return Err(format!(
                "decoded inodes exceed {} bytes, {DECODE_FACTOR} times the bootstrap and \
                 {BUDGET_SLACK} more (inodes overlap?); the walk stops here",
                self.decode_limit
            ));
        }
        Ok(())
    }

    /// Whether the budget is spent (a walk that went on reporting problems stops here).
    pub fn is_spent(&self) -> bool {
        self.decoded > self.decode_limit || self.path_bytes > self.path_limit
    }

    /// Count a listed path; an error once the budget is spent.
    pub fn charge_path(&mut self, path: &[u8]) -> Decoded<()> {
        self.path_bytes = self
            .path_bytes
            .saturating_add(path.len() as u64 + PATH_OVERHEAD);
        if self.path_bytes > self.path_limit {
            return Err(format!(
                "the tree's paths exceed {} bytes together, {PATH_FACTOR} times the bootstrap \
                 and {BUDGET_SLACK} more; the walk stops here",
                self.path_limit
            ));
        }
        Ok(())
    }
}

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl Kind {
    /// The kind of `st_mode`, `None` for a mode with no file type.
    pub fn of_mode(mode: u32) -> Option<Kind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            _ => return None,
        })
    }

    /// The word a listing uses.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dir => "directory",
            Kind::File => "file",
            Kind::Symlink => "symlink",
            Kind::CharDevice => "char device",
            Kind::BlockDevice => "block device",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
        }
    }
}

/// One inode, decoded with what follows it (xattrs, chunk indexes, symlink target).
#[derive(Clone, Debug)]
pub struct Inode {
    pub nid: u64,
    pub kind: Kind,
    /// `st_mode`: file type and permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub mtime_nsec: u32,
    pub size: u64,
    pub nlink: u32,
    /// Device numbers (major, minor) of device inodes.
    pub rdev: (u32, u32),
    /// Inline xattrs, full names (prefix included). Shared, like `symlink` and `chunks`: a
    /// damaged bootstrap can give one inode thousands of names.
    pub xattrs: Arc<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Symlink target.
    pub symlink: Arc<[u8]>,
    /// Chunk indexes of a regular file.
    pub chunks: Arc<[RafsV6InodeChunkAddr]>,
    /// The data layout (`EROFS_INODE_*`).
    pub layout: u16,
    /// A 64-byte extended inode (else a 32-byte compact one).
    pub extended: bool,
    /// Byte offset of the inode in the bootstrap.
    pub offset: u64,
    /// Bytes of inode plus inline xattrs: what follows starts at `offset + head`.
    pub head: u64,
    /// The raw `i_u` field: first data block, chunk header or device number.
    pub i_u: u32,
}

/// One directory entry, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirent {
    pub name: Vec<u8>,
    pub nid: u64,
    pub file_type: u8,
}

/// One block of a directory: where it lies and the entries it holds.
#[derive(Clone, Debug)]
pub struct DirentBlock {
    pub offset: u64,
    pub len: u64,
    pub dirents: Vec<Dirent>,
}

/// A bootstrap whose super blocks could be decoded.
pub struct BootstrapReader {
    bytes: Vec<u8>,
    pub sb: RafsV6SuperBlock,
    pub ext: RafsV6SuperBlockExt,
}

impl BootstrapReader {
    /// Decode the super blocks of `bytes`.
    pub fn open(bytes: Vec<u8>) -> Decoded<BootstrapReader> {
        let sb = bytes
            .get(RafsV6SuperBlock::OFFSET as usize..)
            .filter(|b| b.len() >= RafsV6SuperBlock::SIZE)
            .ok_or("too short for a super block")?;
        let sb = RafsV6SuperBlock::decode(sb).map_err(|e| e.to_string())?;
        let ext = bytes
            .get(RafsV6SuperBlockExt::OFFSET as usize..)
            .filter(|b| b.len() >= RafsV6SuperBlockExt::SIZE)
            .ok_or("too short for the extended super block")?;
        let ext = RafsV6SuperBlockExt::decode(ext).map_err(|e| e.to_string())?;
        Ok(BootstrapReader { bytes, sb, ext })
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

    /// Device slot `i` (one per blob), `None` past the end of the file.
    pub fn device(&self, i: u32) -> Option<RafsV6Device> {
        let at = EROFS_DEVTABLE_OFFSET + u64::from(i) * RafsV6Device::SIZE as u64;
        self.at(at, RafsV6Device::SIZE as u64)
            .and_then(|b| RafsV6Device::decode(b).ok())
    }

    /// The blob table entries that lie inside the file (its size field may claim more).
    pub fn blob_table(&self) -> Vec<RafsV6Blob> {
        let n = u64::from(self.ext.s_blob_table_size) / RafsV6Blob::SIZE as u64;
        (0..n)
            .map_while(|i| {
                let at = self
                    .ext
                    .s_blob_table_offset
                    .checked_add(i * RafsV6Blob::SIZE as u64)?;
                RafsV6Blob::decode(self.at(at, RafsV6Blob::SIZE as u64)?).ok()
            })
            .collect()
    }

    /// The chunk info table (`nydus-image check` and `unpack` read chunks through it); empty
    /// when it does not lie inside the file.
    pub fn chunk_table(&self) -> Vec<RafsV5ChunkInfo> {
        self.at(self.ext.s_chunk_table_offset, self.ext.s_chunk_table_size)
            .map(|t| {
                t.chunks_exact(RafsV5ChunkInfo::SIZE)
                    .filter_map(|c| RafsV5ChunkInfo::decode(c).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The prefetch table's nids (the zero padding included); empty when there is none.
    pub fn prefetch_table(&self) -> Vec<u32> {
        self.at(
            self.ext.s_prefetch_table_offset,
            u64::from(self.ext.s_prefetch_table_size),
        )
        .and_then(|t| RafsV6PrefetchTable::decode(t).ok())
        .map(|t| t.nids)
        .unwrap_or_default()
    }

    /// The root directory's nid.
    pub fn root_nid(&self) -> u64 {
        u64::from(self.sb.s_root_nid)
    }

    /// The chunk size files are cut at (at least a block, whatever the super block says).
    pub fn chunk_size(&self) -> u64 {
        u64::from(self.ext.s_chunk_size.max(BLOCK as u32))
    }

    /// The inode at `nid`, with its xattrs and what follows it.
    pub fn inode(&self, nid: u64) -> Decoded<Inode> {
        let e = self.inode_head(nid)?;
        self.inode_body(e)
    }

    /// The inode at `nid` and its xattrs.
    fn inode_head(&self, nid: u64) -> Decoded<Inode> {
        // A nid from a damaged dirent may be anything: one past the file is refused before the
        // offset is computed from it (which could overflow).
        if nid > self.bytes.len() as u64 >> EROFS_INODE_SLOT_BITS {
            return Err(format!("nid {nid} lies past the end"));
        }
        let offset = nid_offset(nid, self.sb.s_meta_blkaddr);
        let head = self.at(offset, 2).ok_or("inode lies past the end")?;
        if offset < u64::from(self.sb.s_meta_blkaddr) * BLOCK {
            return Err("inode lies before the metadata area".into());
        }
        let format = u16::from_le_bytes([head[0], head[1]]);
        if format & !0xf != 0 {
            return Err(format!("i_format {format:#x} has unknown bits"));
        }
        let (mut e, isize, icount) = if i_format_version(format) == EROFS_INODE_LAYOUT_EXTENDED {
            let b = self
                .at(offset, RafsV6InodeExtended::SIZE as u64)
                .ok_or("inode lies past the end")?;
            let i = RafsV6InodeExtended::decode(b).map_err(|e| e.to_string())?;
            let e = Inode {
                mode: u32::from(i.i_mode),
                size: i.i_size,
                nlink: i.i_nlink,
                uid: i.i_uid,
                gid: i.i_gid,
                mtime: i.i_mtime,
                mtime_nsec: i.i_mtime_nsec,
                ..Inode::new(nid, format, offset, i.i_u)
            };
            (e, RafsV6InodeExtended::SIZE as u64, i.i_xattr_icount)
        } else {
            let b = self
                .at(offset, RafsV6InodeCompact::SIZE as u64)
                .ok_or("inode lies past the end")?;
            let i = RafsV6InodeCompact::decode(b).map_err(|e| e.to_string())?;
            let e = Inode {
                mode: u32::from(i.i_mode),
                size: u64::from(i.i_size),
                nlink: u32::from(i.i_nlink),
                uid: u32::from(i.i_uid),
                gid: u32::from(i.i_gid),
                ..Inode::new(nid, format, offset, i.i_u)
            };
            (e, RafsV6InodeCompact::SIZE as u64, i.i_xattr_icount)
        };
        e.kind =
            Kind::of_mode(e.mode).ok_or_else(|| format!("mode {:#o} is no file type", e.mode))?;
        if e.nlink == 0 {
            return Err("nlink is 0".into());
        }
        let xsize = xattr_ibody_size(icount) as u64;
        e.head = isize + xsize;
        if xsize > 0 {
            let body = self
                .at(offset + isize, xsize)
                .ok_or("xattrs lie past the end")?;
            e.xattrs = Arc::new(decode_xattrs(body)?);
        }
        Ok(e)
    }

    /// Chunk indexes, symlink target, device numbers: what follows the inode.
    fn inode_body(&self, mut e: Inode) -> Decoded<Inode> {
        let flat = e.layout == EROFS_INODE_FLAT_PLAIN || e.layout == EROFS_INODE_FLAT_INLINE;
        match e.kind {
            Kind::File => e.chunks = self.chunk_indexes(&e)?.into(),
            Kind::Symlink => {
                if !flat || e.size == 0 {
                    return Err(format!(
                        "symlink with layout {} and size {}",
                        e.layout, e.size
                    ));
                }
                e.symlink = self.data(&e)?.into();
            }
            Kind::Dir => {
                if !flat || e.size == 0 {
                    return Err(format!(
                        "directory with layout {} and size {}",
                        e.layout, e.size
                    ));
                }
                // Its dirents are in the file: a larger size is damage, not a big directory.
                if e.size > self.bytes.len() as u64 {
                    return Err(format!(
                        "directory size {} is more than the bootstrap's {} bytes",
                        e.size,
                        self.bytes.len()
                    ));
                }
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo | Kind::Socket => {
                if e.layout != EROFS_INODE_FLAT_PLAIN || e.size != 0 {
                    return Err(format!(
                        "special file with layout {} and size {}",
                        e.layout, e.size
                    ));
                }
                if matches!(e.kind, Kind::CharDevice | Kind::BlockDevice) {
                    e.rdev = new_decode_dev(e.i_u);
                }
            }
        }
        Ok(e)
    }

    /// A regular file's chunk index array, one entry per chunk of its size.
    fn chunk_indexes(&self, e: &Inode) -> Decoded<Vec<RafsV6InodeChunkAddr>> {
        if e.layout != EROFS_INODE_CHUNK_BASED {
            return Err(format!(
                "regular file with data layout {}, not chunk-based",
                e.layout
            ));
        }
        let header = RafsV6InodeChunkHeader::from_u32(e.i_u);
        if header.format & EROFS_CHUNK_FORMAT_INDEXES == 0 || header.reserved != 0 {
            return Err(format!("chunk header {:#x} lacks the index format", e.i_u));
        }
        let cs = self.chunk_size();
        let at = (e.offset + e.head).next_multiple_of(8);
        // The count comes from the size: the slice bound holds it to the file before any
        // allocation.
        let table = e
            .size
            .div_ceil(cs)
            .checked_mul(RafsV6InodeChunkAddr::SIZE as u64)
            .and_then(|len| self.at(at, len))
            .ok_or("chunk index array lies past the end")?;
        let chunks: Vec<_> = table
            .chunks_exact(RafsV6InodeChunkAddr::SIZE)
            .filter_map(|c| RafsV6InodeChunkAddr::decode(c).ok())
            .collect();
        let bits = header.chunk_size();
        if bits != cs {
            // Allowed only for nydus's page-cache-sharing case: one blob, contiguous.
            let contiguous = chunks.windows(2).all(|w| {
                w[0].c_blob_addr_hi & 0xff == w[1].c_blob_addr_hi & 0xff
                    && u64::from(w[1].c_blk_addr) * BLOCK == u64::from(w[0].c_blk_addr) * BLOCK + cs
            });
            if !(contiguous && bits >= e.size && bits > cs) {
                return Err(format!(
                    "chunk header announces {bits:#x}-byte chunks, the super block {cs:#x}"
                ));
            }
        }
        Ok(chunks)
    }

    /// Where the content of a flat inode (directory, symlink) lies: (offset, length) of each
    /// piece, whole blocks at `i_u`, then the inline tail after the inode.
    pub fn data_ranges(&self, e: &Inode) -> Decoded<Vec<(u64, u64)>> {
        // The size is read from the image: held to what the bootstrap can hold before
        // anything is allocated by it.
        if e.size > self.bytes.len() as u64 {
            return Err(format!(
                "size {} is larger than the whole bootstrap ({} bytes)",
                e.size,
                self.bytes.len()
            ));
        }
        let tail = if e.layout == EROFS_INODE_FLAT_INLINE {
            e.size % BLOCK
        } else {
            0
        };
        let full = e.size - tail;
        let mut ranges = Vec::new();
        if full > 0 {
            let start = u64::from(e.i_u) * BLOCK;
            if start < u64::from(self.sb.s_meta_blkaddr) * BLOCK {
                return Err(format!(
                    "data block {} lies before the metadata area",
                    e.i_u
                ));
            }
            self.at(start, full).ok_or("data blocks lie past the end")?;
            ranges.extend(
                (0..full)
                    .step_by(BLOCK as usize)
                    .map(|o| (start + o, (full - o).min(BLOCK))),
            );
        }
        if tail > 0 {
            let at = e.offset + e.head;
            if at % BLOCK + tail > BLOCK {
                return Err("inline data crosses a block boundary".into());
            }
            self.at(at, tail).ok_or("inline data lies past the end")?;
            ranges.push((at, tail));
        }
        Ok(ranges)
    }

    /// The content of a directory or symlink.
    pub fn data(&self, e: &Inode) -> Decoded<Vec<u8>> {
        let mut out = Vec::new();
        for (at, len) in self.data_ranges(e)? {
            out.extend_from_slice(self.at(at, len).ok_or("data lies past the end")?);
        }
        Ok(out)
    }

    /// A directory's entries in stored order. Whether they are sorted, and whether `.` and
    /// `..` are right, is for the caller to judge.
    pub fn dirents(&self, e: &Inode) -> Decoded<Vec<Dirent>> {
        Ok(self
            .dirent_blocks(e)?
            .into_iter()
            .flat_map(|b| b.dirents)
            .collect())
    }

    /// A directory's blocks: where each lies (offset, length) and the entries it holds.
    pub fn dirent_blocks(&self, e: &Inode) -> Decoded<Vec<DirentBlock>> {
        let mut out = Vec::new();
        for (b, (at, len)) in self.data_ranges(e)?.into_iter().enumerate() {
            let block = self.at(at, len).ok_or("data lies past the end")?;
            let dirents = block_dirents(block).map_err(|p| format!("dirent block {b}: {p}"))?;
            out.push(DirentBlock {
                offset: at,
                len,
                dirents,
            });
        }
        Ok(out)
    }

    /// The nid a path names, following directories from the root (no symlinks).
    pub fn lookup(&self, path: &[u8]) -> Decoded<Inode> {
        let mut e = self.inode(self.root_nid())?;
        for part in path.split(|&c| c == b'/').filter(|p| !p.is_empty()) {
            let d = self.dirents(&e)?;
            let next = d
                .iter()
                .find(|d| d.name == part)
                .ok_or_else(|| format!("{} is not in the tree", path.escape_ascii()))?;
            e = self.inode(next.nid)?;
        }
        Ok(e)
    }

    /// A fresh [`Budget`] for a walk of this bootstrap's tree.
    pub fn budget(&self) -> Budget {
        Budget::new(self.bytes.len() as u64)
    }

    /// Every path of the tree from the root ("/", "/etc", …) with its inode, each directory
    /// read once and each inode decoded once, within the bootstrap's [`Budget`]: the first
    /// problem met ends the walk. (`check` walks with its own loop, to report every problem
    /// and go on.)
    pub fn tree(&self) -> Decoded<BTreeMap<Vec<u8>, Inode>> {
        let mut out = BTreeMap::new();
        let mut budget = self.budget();
        let mut decoded: HashMap<u64, Inode> = HashMap::new();
        let mut inode = |nid: u64, budget: &mut Budget| -> Decoded<Inode> {
            if let Some(e) = decoded.get(&nid) {
                return Ok(e.clone());
            }
            let e = self.inode(nid)?;
            budget.charge_inode(&e)?;
            decoded.insert(nid, e.clone());
            Ok(e)
        };
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![(b"/".to_vec(), self.root_nid())];
        while let Some((path, nid)) = stack.pop() {
            let what = |p: String| format!("{} (nid {nid}): {p}", path.escape_ascii());
            let dir = inode(nid, &mut budget).map_err(what)?;
            if dir.kind != Kind::Dir || !seen.insert(nid) {
                return Err(what("not a directory, or reached twice".into()));
            }
            for d in self.dirents(&dir).map_err(what)? {
                if d.name == b"." || d.name == b".." {
                    continue;
                }
                let child_path = child_path(&path, &d.name);
                let child_what =
                    |p: String| format!("{} (nid {}): {p}", child_path.escape_ascii(), d.nid);
                budget.charge_path(&child_path).map_err(child_what)?;
                let child = inode(d.nid, &mut budget).map_err(child_what)?;
                if child.kind == Kind::Dir {
                    stack.push((child_path, d.nid));
                } else {
                    out.insert(child_path, child);
                }
            }
            out.insert(path, dir);
        }
        Ok(out)
    }
}

/// `parent/name`, where the root is "/".
pub fn child_path(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = if parent == b"/" {
        Vec::new()
    } else {
        parent.to_vec()
    };
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

impl Inode {
    fn new(nid: u64, format: u16, offset: u64, i_u: u32) -> Inode {
        Inode {
            nid,
            kind: Kind::File,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            size: 0,
            nlink: 0,
            rdev: (0, 0),
            xattrs: Arc::default(),
            symlink: Arc::default(),
            chunks: Arc::default(),
            layout: i_format_datalayout(format),
            extended: i_format_version(format) == EROFS_INODE_LAYOUT_EXTENDED,
            offset,
            head: 0,
            i_u,
        }
    }
}

/// The entries of one directory block: dirents first, the first one's `nameoff` giving their
/// count, then the names back to back (the last one ends at a NUL or the block's end).
fn block_dirents(block: &[u8]) -> Decoded<Vec<Dirent>> {
    let mut out = Vec::new();
    let first = RafsV6Dirent::decode(block).map_err(|_| "too short for a dirent")?;
    let nameoff0 = usize::from(first.e_nameoff);
    if nameoff0 < RafsV6Dirent::SIZE
        || !nameoff0.is_multiple_of(RafsV6Dirent::SIZE)
        || nameoff0 >= block.len()
    {
        return Err(format!("invalid first nameoff {nameoff0}"));
    }
    let dirents: Vec<RafsV6Dirent> = block[..nameoff0]
        .chunks_exact(RafsV6Dirent::SIZE)
        .filter_map(|d| RafsV6Dirent::decode(d).ok())
        .collect();
    for (j, d) in dirents.iter().enumerate() {
        let start = usize::from(d.e_nameoff);
        let end = match dirents.get(j + 1) {
            Some(next) => usize::from(next.e_nameoff),
            None => block[start.min(block.len())..]
                .iter()
                .position(|&c| c == 0)
                .map_or(block.len(), |p| start + p),
        };
        if start >= end || end > block.len() || end - start > 255 {
            return Err(format!(
                "dirent {j} has an invalid name range {start}..{end}"
            ));
        }
        out.push(Dirent {
            name: block[start..end].to_vec(),
            nid: d.e_nid,
            file_type: d.e_file_type,
        });
    }
    Ok(out)
}

/// Inline xattrs: the 12-byte header, then entries padded to 4 bytes.
fn decode_xattrs(body: &[u8]) -> Decoded<BTreeMap<Vec<u8>, Vec<u8>>> {
    let header = RafsV6XattrIbodyHeader::decode(body).map_err(|e| e.to_string())?;
    if header.h_shared_count != 0 {
        return Err("shared xattrs are not supported by nydus".into());
    }
    let mut out = BTreeMap::new();
    let mut pos = RafsV6XattrIbodyHeader::SIZE;
    while pos < body.len() {
        let e = RafsV6XattrEntry::decode(&body[pos..]).map_err(|e| e.to_string())?;
        let name_at = pos + RafsV6XattrEntry::SIZE;
        let value_at = name_at + usize::from(e.e_name_len);
        let end = value_at + usize::from(e.e_value_size);
        if end > body.len() {
            return Err("an xattr runs past the inline xattr area".into());
        }
        let prefix = xattr_prefix(e.e_name_index)
            .ok_or(format!("unknown xattr prefix index {}", e.e_name_index))?;
        let mut name = prefix.as_bytes().to_vec();
        name.extend_from_slice(&body[name_at..value_at]);
        out.insert(name, body[value_at..end].to_vec());
        pos += e.record_size();
    }
    Ok(out)
}
