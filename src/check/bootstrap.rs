//! One RAFS v6 bootstrap, decoded with [`crate::ondisk::rafs_v6`] and judged by the rules
//! nydus 2.2.0 and the kernel apply (`docs/format.md` §5.3): super blocks, device
//! slots, blob table, prefetch and chunk info tables, then the whole tree from the root: every
//! inode, its inline xattrs, dirents (sorted, `.` and `..` right, names inside their block),
//! symlink targets, and every chunk index resolved through its blob's ci table and through the
//! chunk info table `nydus-image check` and `unpack` use.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::Findings;
use super::blob::{BlobSet, hex};
use super::layout::BlobLayer;
use crate::blob::chunk::INLINED_BLOB_ID_PLACEHOLDER;
use crate::ondisk::blob::*;
use crate::ondisk::rafs_v6::*;

const BLOCK: u64 = EROFS_BLOCK_SIZE;

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// One inode, decoded, as a path of the tree shows it.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
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
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Symlink target.
    pub symlink: Vec<u8>,
    /// Chunk indexes of a regular file.
    pub chunks: Vec<RafsV6InodeChunkAddr>,
    layout: u16,
    /// Byte offset of the inode, and bytes of inode plus xattrs.
    offset: u64,
    head: u64,
    i_u: u32,
}

/// The tree a bootstrap describes: every path ("/", "/etc", …) with its inode.
#[derive(Clone, Debug, Default)]
pub(crate) struct Listing {
    pub entries: BTreeMap<Vec<u8>, Entry>,
}

/// A decoded bootstrap whose super blocks and tables could be read.
pub(crate) struct Bootstrap {
    what: String,
    bytes: Vec<u8>,
    sb: RafsV6SuperBlock,
    pub ext: RafsV6SuperBlockExt,
    pub blobs: Vec<RafsV6Blob>,
    devices: Vec<RafsV6Device>,
    chunk_table: Vec<RafsV5ChunkInfo>,
    prefetch: Vec<u32>,
}

impl Bootstrap {
    /// Decode the super blocks and tables of `bytes`, recording every rule broken. `None` when
    /// not even the super blocks can be read.
    pub fn parse(what: String, bytes: Vec<u8>, f: &mut Findings) -> Option<Bootstrap> {
        let len = bytes.len() as u64;
        if len < BLOCK || !len.is_multiple_of(BLOCK) {
            f.problem(
                &what,
                format!("is {len} bytes, not a non-zero multiple of 4096"),
            );
        }
        let at = |off: u64, n: usize| bytes.get(off as usize..off as usize + n);
        let sb = at(RafsV6SuperBlock::OFFSET, RafsV6SuperBlock::SIZE)
            .map(RafsV6SuperBlock::decode)
            .transpose();
        let sb = match sb {
            Ok(Some(sb)) => sb,
            Ok(None) => {
                f.problem(&what, "too short for a super block");
                return None;
            }
            Err(e) => {
                f.problem(&what, e);
                return None;
            }
        };
        let Some(Ok(ext)) = at(RafsV6SuperBlockExt::OFFSET, RafsV6SuperBlockExt::SIZE)
            .map(RafsV6SuperBlockExt::decode)
        else {
            f.problem(&what, "too short for the extended super block");
            return None;
        };
        let mut boot = Bootstrap {
            what,
            bytes,
            sb,
            ext,
            blobs: Vec::new(),
            devices: Vec::new(),
            chunk_table: Vec::new(),
            prefetch: Vec::new(),
        };
        boot.check_super(f);
        boot.read_tables(f);
        Some(boot)
    }

    /// `RafsV6SuperBlock::validate` and `RafsV6SuperBlockExt::validate` of nydus 2.2.0.
    fn check_super(&self, f: &mut Findings) {
        let what = format!("{}: super block", self.what);
        let sb = &self.sb;
        let mut rule = |ok: bool, problem: String| {
            if !ok {
                f.problem(&what, problem);
            }
        };
        rule(
            sb.s_checksum == 0,
            format!("checksum {:#x} is not 0", sb.s_checksum),
        );
        rule(
            sb.s_feature_compat & EROFS_FEATURE_COMPAT_RAFS_V6 != 0,
            format!("feature_compat {:#x} lacks RAFS_V6", sb.s_feature_compat),
        );
        rule(
            sb.s_blkszbits == EROFS_BLOCK_BITS,
            format!("blkszbits {} is not 12", sb.s_blkszbits),
        );
        rule(
            sb.s_extslots == 0,
            format!("extslots {} is not 0", sb.s_extslots),
        );
        rule(sb.s_inos != 0, "inos is 0".to_string());
        rule(
            sb.s_xattr_blkaddr == 0,
            format!("xattr_blkaddr {} is not 0", sb.s_xattr_blkaddr),
        );
        rule(
            sb.s_feature_incompat == RAFS_V6_FEATURE_INCOMPAT,
            format!(
                "feature_incompat {:#x} is not {RAFS_V6_FEATURE_INCOMPAT:#x}",
                sb.s_feature_incompat
            ),
        );
        rule(sb.s_u == 0, format!("s_u {} is not 0", sb.s_u));
        rule(
            u64::from(sb.s_devt_slotoff) * RafsV6Device::SIZE as u64 == EROFS_DEVTABLE_OFFSET,
            format!("devt_slotoff {} is not 11", sb.s_devt_slotoff),
        );
        rule(
            sb.s_reserved.iter().all(|&b| b == 0),
            "reserved bytes are not zero".to_string(),
        );
        rule(
            sb.s_extra_devices != 0 || sb.s_blocks == 0 || sb.s_blocks == 4096,
            format!("blocks {} with no devices", sb.s_blocks),
        );

        let what = format!("{}: extended super block", self.what);
        let ext = &self.ext;
        let len = self.bytes.len() as u64;
        let mut rule = |ok: bool, problem: String| {
            if !ok {
                f.problem(&what, problem);
            }
        };
        rule(
            ext.s_flags & !RAFS_SUPER_FLAGS_KNOWN_V2_2 == 0,
            format!(
                "flags {:#x} has bits nydus 2.2.0 does not know",
                ext.s_flags
            ),
        );
        let compression = ext.s_flags
            & (RAFS_SUPER_FLAG_COMPRESSION_NONE
                | RAFS_SUPER_FLAG_COMPRESSION_LZ4
                | RAFS_SUPER_FLAG_COMPRESSION_GZIP
                | RAFS_SUPER_FLAG_COMPRESSION_ZSTD);
        rule(
            compression.count_ones() == 1,
            format!(
                "flags {:#x} name {} compressors",
                ext.s_flags,
                compression.count_ones()
            ),
        );
        let hash = ext.s_flags & (RAFS_SUPER_FLAG_HASH_BLAKE3 | RAFS_SUPER_FLAG_HASH_SHA256);
        rule(
            hash.count_ones() == 1,
            format!(
                "flags {:#x} name {} digesters",
                ext.s_flags,
                hash.count_ones()
            ),
        );
        let table_end = ext
            .s_blob_table_offset
            .saturating_add(u64::from(ext.s_blob_table_size));
        rule(
            ext.s_blob_table_offset >= BLOCK
                && ext.s_blob_table_offset.is_multiple_of(BLOCK)
                && table_end <= len,
            format!(
                "blob table at {:#x} (+{}) is not 4 KiB aligned inside the file",
                ext.s_blob_table_offset, ext.s_blob_table_size
            ),
        );
        rule(
            u64::from(ext.s_blob_table_size)
                == RafsV6Blob::SIZE as u64 * u64::from(self.sb.s_extra_devices),
            format!(
                "blob table is {} bytes for {} devices",
                ext.s_blob_table_size, self.sb.s_extra_devices
            ),
        );
        let cs = ext.s_chunk_size;
        rule(
            cs.is_power_of_two() && (4096..=BLOB_CHUNK_MAX_SIZE).contains(&cs),
            format!("chunk size {cs:#x} is not a power of two from 4 KiB to 16 MiB"),
        );
        let overlaps =
            |off: u64, size: u64| off < table_end && ext.s_blob_table_offset < off + size;
        if ext.s_chunk_table_size > 0 {
            rule(
                ext.s_chunk_table_offset >= BLOCK
                    && ext.s_chunk_table_offset.is_multiple_of(BLOCK)
                    && ext
                        .s_chunk_table_size
                        .is_multiple_of(RafsV5ChunkInfo::SIZE as u64)
                    && ext
                        .s_chunk_table_offset
                        .saturating_add(ext.s_chunk_table_size)
                        <= len
                    && !overlaps(ext.s_chunk_table_offset, ext.s_chunk_table_size),
                format!(
                    "chunk info table at {:#x} (+{}) is misplaced",
                    ext.s_chunk_table_offset, ext.s_chunk_table_size
                ),
            );
        }
        if ext.s_prefetch_table_size > 0 {
            let size = u64::from(ext.s_prefetch_table_size);
            rule(
                ext.s_prefetch_table_offset >= BLOCK
                    && ext.s_prefetch_table_offset.is_multiple_of(8)
                    && size.is_multiple_of(4)
                    && ext.s_prefetch_table_offset.saturating_add(size) <= len
                    && !overlaps(ext.s_prefetch_table_offset, size),
                format!(
                    "prefetch table at {:#x} (+{size}) is misplaced",
                    ext.s_prefetch_table_offset
                ),
            );
        }
        rule(
            ext.s_padding == 0 && ext.s_reserved.iter().all(|&b| b == 0),
            "reserved bytes are not zero".to_string(),
        );
    }

    /// `len` bytes at `offset`, if inside the file.
    fn at(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        self.bytes
            .get(usize::try_from(offset).ok()?..usize::try_from(end).ok()?)
    }

    /// Device slots, blob table, chunk info table and prefetch table.
    fn read_tables(&mut self, f: &mut Findings) {
        for i in 0..u64::from(self.sb.s_extra_devices) {
            match self.at(
                EROFS_DEVTABLE_OFFSET + i * RafsV6Device::SIZE as u64,
                RafsV6Device::SIZE as u64,
            ) {
                Some(b) => self
                    .devices
                    .push(RafsV6Device::decode(b).expect("128 bytes")),
                None => f.problem(&self.what, format!("device slot {i} lies past the end")),
            }
        }
        let n = u64::from(self.ext.s_blob_table_size) / RafsV6Blob::SIZE as u64;
        for i in 0..n {
            match self.at(
                self.ext
                    .s_blob_table_offset
                    .saturating_add(i * RafsV6Blob::SIZE as u64),
                RafsV6Blob::SIZE as u64,
            ) {
                Some(b) => self.blobs.push(RafsV6Blob::decode(b).expect("256 bytes")),
                None => break,
            }
        }
        if let Some(table) = self.at(self.ext.s_chunk_table_offset, self.ext.s_chunk_table_size) {
            self.chunk_table = table
                .chunks_exact(RafsV5ChunkInfo::SIZE)
                .map(|c| RafsV5ChunkInfo::decode(c).expect("80 bytes"))
                .collect();
        }
        if let Some(table) = self.at(
            self.ext.s_prefetch_table_offset,
            u64::from(self.ext.s_prefetch_table_size),
        ) && let Ok(t) = RafsV6PrefetchTable::decode(table)
        {
            self.prefetch = t.nids;
        }
    }

    /// The blob table and device slots (`RafsV6Blob::validate`), against the manifest's blob
    /// layers. For an inlined bootstrap, `inlined` names the blob holding it and the merged
    /// bootstrap, whose entries its own must repeat.
    pub fn check_blob_table(
        &self,
        layers: &[BlobLayer],
        inlined: Option<(&str, &Bootstrap)>,
        f: &mut Findings,
    ) {
        let compressor = match self.ext.s_flags
            & (RAFS_SUPER_FLAG_COMPRESSION_NONE
                | RAFS_SUPER_FLAG_COMPRESSION_LZ4
                | RAFS_SUPER_FLAG_COMPRESSION_GZIP
                | RAFS_SUPER_FLAG_COMPRESSION_ZSTD)
        {
            RAFS_SUPER_FLAG_COMPRESSION_NONE => Some(COMPRESSOR_NONE),
            RAFS_SUPER_FLAG_COMPRESSION_LZ4 => Some(COMPRESSOR_LZ4_BLOCK),
            RAFS_SUPER_FLAG_COMPRESSION_GZIP => Some(COMPRESSOR_GZIP),
            RAFS_SUPER_FLAG_COMPRESSION_ZSTD => Some(COMPRESSOR_ZSTD),
            _ => None,
        };
        let mut last_layer = None;
        for (i, b) in self.blobs.iter().enumerate() {
            let what = format!("{}: blob table entry {i}", self.what);
            let mut rule = |ok: bool, problem: String| {
                if !ok {
                    f.problem(&what, problem);
                }
            };
            let id = b.blob_id().unwrap_or("").to_string();
            rule(
                id.len() == BLOB_ID_LEN,
                format!("blob id {id:?} is not 64 characters"),
            );
            rule(
                b.blob_index == i as u32,
                format!("blob_index {} at position {i}", b.blob_index),
            );
            rule(
                b.chunk_size == self.ext.s_chunk_size,
                format!(
                    "chunk size {:#x}, the super block says {:#x}",
                    b.chunk_size, self.ext.s_chunk_size
                ),
            );
            rule(
                b.chunk_count > 0 && b.chunk_count <= RAFS_V6_MAX_CI_INDEX + 1,
                format!("chunk_count {} is not within 1 ..= 2^24", b.chunk_count),
            );
            rule(
                Some(b.compression_algo) == compressor,
                format!(
                    "compressor {} does not match the super block flags",
                    b.compression_algo
                ),
            );
            let digester = if self.ext.s_flags & RAFS_SUPER_FLAG_HASH_SHA256 != 0 {
                DIGESTER_SHA256
            } else {
                DIGESTER_BLAKE3
            };
            rule(
                b.digest_algo == digester,
                format!(
                    "digester {} does not match the super block flags",
                    b.digest_algo
                ),
            );
            rule(
                b.features & BLOB_FEATURE_ALIGNED != 0,
                format!("features {:#x} lack ALIGNED", b.features),
            );
            rule(
                b.features & BLOB_FEATURE_INCOMPAT_MASK & !BLOB_FEATURE_INCOMPAT_V2_2 == 0
                    && b.features & BLOB_FEATURE_V5_NO_EXT_BLOB_TABLE == 0,
                format!("features {:#x} have bits nydus 2.2.0 rejects", b.features),
            );
            rule(
                b.features & BLOB_FEATURE_CHUNK_INFO_V2 == 0,
                "ci V2 entries are not written by tar-rafs builds".to_string(),
            );
            rule(
                b.ci_compressed_size <= b.ci_uncompressed_size,
                "ci compressed size exceeds its uncompressed size".to_string(),
            );
            rule(
                b.ci_uncompressed_size
                    == u64::from(b.chunk_count) * BlobChunkInfoV1Ondisk::SIZE as u64,
                format!(
                    "ci_uncompressed_size {} is not 16 × {} chunks",
                    b.ci_uncompressed_size, b.chunk_count
                ),
            );
            rule(
                b.uncompressed_size.is_multiple_of(BLOCK) && b.uncompressed_size <= 1 << 44,
                format!(
                    "uncompressed size {:#x} is not 4 KiB aligned below 2^44",
                    b.uncompressed_size
                ),
            );
            rule(
                b.reserved.iter().all(|&x| x == 0),
                "reserved bytes are not zero".to_string(),
            );
            match self.devices.get(i) {
                Some(d) => {
                    rule(
                        d.blob_id == b.blob_id,
                        "device slot names another blob id".to_string(),
                    );
                    rule(
                        u64::from(d.blocks) == b.uncompressed_size / BLOCK,
                        format!(
                            "device slot has {} blocks, the blob {}",
                            d.blocks,
                            b.uncompressed_size / BLOCK
                        ),
                    );
                }
                None => rule(false, "has no device slot".to_string()),
            }
            // Which blob file it is, and what it must repeat.
            let own = inlined.is_some_and(|_| id == INLINED_BLOB_ID_PLACEHOLDER);
            let file_id = match inlined {
                Some((hex_id, _)) if own => hex_id.to_string(),
                _ => id.clone(),
            };
            match layers.iter().position(|l| l.hex == file_id) {
                Some(pos) => {
                    rule(
                        last_layer.is_none_or(|l| l < pos),
                        "blobs are not in layer order".to_string(),
                    );
                    last_layer = Some(pos);
                }
                None => rule(
                    false,
                    format!(
                        "blob {file_id} is not a layer of the manifest (the registry backend fetches blobs by this id)"
                    ),
                ),
            }
            if let Some((_, merged)) = inlined {
                match merged
                    .blobs
                    .iter()
                    .find(|m| m.blob_id().ok() == Some(file_id.as_str()))
                {
                    Some(m) => {
                        let mut expected = *m;
                        if own {
                            expected.blob_id =
                                blob_id_field(INLINED_BLOB_ID_PLACEHOLDER).expect("a valid id");
                            expected.features |= BLOB_FEATURE_INLINED_FS_META;
                        }
                        rule(
                            b == &expected,
                            "differs from the merged bootstrap's entry for the same blob"
                                .to_string(),
                        );
                    }
                    None => rule(
                        false,
                        format!("blob {file_id} is missing from the merged bootstrap"),
                    ),
                }
            }
        }
        let blocks: u64 = self.blobs.iter().map(|b| b.uncompressed_size / BLOCK).sum();
        if u64::from(self.sb.s_blocks) != blocks && !self.blobs.is_empty() {
            f.problem(
                &self.what,
                format!(
                    "super block counts {} blocks, the blobs {blocks}",
                    self.sb.s_blocks
                ),
            );
        }
        let all_digests = self
            .blobs
            .iter()
            .all(|b| b.features & BLOB_FEATURE_INLINED_CHUNK_DIGEST != 0);
        if (self.ext.s_flags & RAFS_SUPER_FLAG_INLINED_CHUNK_DIGEST != 0) != all_digests {
            f.problem(
                &self.what,
                "flag INLINED_CHUNK_DIGEST disagrees with the blobs' features",
            );
        }
    }

    /// Walk the tree from the root, decoding every inode and directory.
    pub fn walk(&self, f: &mut Findings) -> Listing {
        let mut listing = Listing::default();
        let root = u64::from(self.sb.s_root_nid);
        let mut stack: Vec<(Vec<u8>, u64, u64)> = vec![(b"/".to_vec(), root, root)];
        let mut visited_dirs = HashSet::new();
        let mut cache: HashMap<u64, Option<Entry>> = HashMap::new();
        let mut paths_of: HashMap<u64, u32> = HashMap::new();
        while let Some((path, nid, parent)) = stack.pop() {
            let Some(entry) = self.load(nid, &path, &mut cache, f) else {
                continue;
            };
            let what = format!("{}: {} (nid {nid})", self.what, path.escape_ascii());
            if entry.kind != Kind::Dir {
                f.problem(&what, "the root is not a directory");
                continue;
            }
            if !visited_dirs.insert(nid) {
                f.problem(
                    &what,
                    "directory reached twice (a loop or a directory hardlink)",
                );
                continue;
            }
            let mut subdirs = 0u32;
            if let Some(dirents) = self.dirents(&entry, &what, f) {
                let find = |name: &[u8]| dirents.iter().find(|d| d.0 == name).map(|d| d.1);
                if find(b".") != Some(nid) {
                    f.problem(&what, "'.' is missing or names another inode");
                }
                if find(b"..") != Some(parent) {
                    f.problem(&what, "'..' is missing or does not name the parent");
                }
                for (name, child_nid, ftype) in dirents {
                    if name == b"." || name == b".." {
                        continue;
                    }
                    let mut child_path = if path == b"/" {
                        Vec::new()
                    } else {
                        path.clone()
                    };
                    child_path.push(b'/');
                    child_path.extend_from_slice(&name);
                    let Some(child) = self.load(child_nid, &child_path, &mut cache, f) else {
                        continue;
                    };
                    if erofs_file_type(child.mode) != ftype {
                        f.problem(
                            format!("{}: {}", self.what, child_path.escape_ascii()),
                            format!("dirent file type {ftype} does not match the inode's mode"),
                        );
                    }
                    if child.kind == Kind::Dir {
                        subdirs += 1;
                        stack.push((child_path, child_nid, nid));
                    } else {
                        *paths_of.entry(child_nid).or_default() += 1;
                        listing.entries.insert(child_path, child);
                    }
                }
            }
            if entry.nlink != 2 + subdirs {
                f.problem(
                    &what,
                    format!(
                        "nlink {} for a directory with {subdirs} subdirectories",
                        entry.nlink
                    ),
                );
            }
            listing.entries.insert(path, entry);
        }
        for (path, e) in &listing.entries {
            if e.kind != Kind::Dir && paths_of.get(&e.nid).is_some_and(|&n| n != e.nlink) {
                f.problem(
                    format!("{}: {}", self.what, path.escape_ascii()),
                    format!(
                        "nlink {} but {} names in the tree",
                        e.nlink, paths_of[&e.nid]
                    ),
                );
            }
        }
        if self.sb.s_inos != listing.entries.len() as u64 {
            f.problem(
                &self.what,
                format!(
                    "super block counts {} inodes, the tree has {} paths",
                    self.sb.s_inos,
                    listing.entries.len()
                ),
            );
        }
        let nids: HashSet<u64> = listing.entries.values().map(|e| e.nid).collect();
        for &nid in self.prefetch.iter().take_while(|&&n| n != 0) {
            if !nids.contains(&u64::from(nid)) {
                f.problem(
                    &self.what,
                    format!("prefetch table names nid {nid}, which is not in the tree"),
                );
            }
        }
        listing
    }

    /// Decode the inode at `nid` (once; later calls return the same).
    fn load(
        &self,
        nid: u64,
        path: &[u8],
        cache: &mut HashMap<u64, Option<Entry>>,
        f: &mut Findings,
    ) -> Option<Entry> {
        if let Some(e) = cache.get(&nid) {
            return e.clone();
        }
        let what = format!("{}: {} (nid {nid})", self.what, path.escape_ascii());
        let entry = self
            .decode_inode(nid)
            .and_then(|e| self.decode_body(e))
            .map_err(|p| f.problem(&what, p))
            .ok();
        cache.insert(nid, entry.clone());
        entry
    }

    /// The inode at `nid` and its xattrs.
    fn decode_inode(&self, nid: u64) -> Result<Entry, String> {
        // A nid from a damaged dirent may be anything: one past the file is refused before the
        // offset is computed from it (which could overflow).
        if nid > self.bytes.len() as u64 >> EROFS_INODE_SLOT_BITS {
            return Err(format!("nid {nid} lies past the end"));
        }
        let offset = nid_offset(nid, self.sb.s_meta_blkaddr);
        let meta_start = u64::from(self.sb.s_meta_blkaddr) * BLOCK;
        let head = self.at(offset, 2).ok_or("inode lies past the end")?;
        if offset < meta_start {
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
            (
                new_entry(
                    nid,
                    format,
                    i.i_mode,
                    i.i_u,
                    i.i_size,
                    i.i_nlink,
                    i.i_uid,
                    i.i_gid,
                    i.i_mtime,
                    i.i_mtime_nsec,
                ),
                RafsV6InodeExtended::SIZE as u64,
                i.i_xattr_icount,
            )
        } else {
            let b = self
                .at(offset, RafsV6InodeCompact::SIZE as u64)
                .ok_or("inode lies past the end")?;
            let i = RafsV6InodeCompact::decode(b).map_err(|e| e.to_string())?;
            (
                new_entry(
                    nid,
                    format,
                    i.i_mode,
                    i.i_u,
                    u64::from(i.i_size),
                    u32::from(i.i_nlink),
                    u32::from(i.i_uid),
                    u32::from(i.i_gid),
                    0,
                    0,
                ),
                RafsV6InodeCompact::SIZE as u64,
                i.i_xattr_icount,
            )
        };
        e.offset = offset;
        let kind = match e.mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            other => return Err(format!("mode {other:#o} is no file type")),
        };
        e.kind = kind;
        if e.nlink == 0 {
            return Err("nlink is 0".into());
        }
        let xsize = xattr_ibody_size(icount) as u64;
        e.head = isize + xsize;
        if xsize > 0 {
            let body = self
                .at(offset + isize, xsize)
                .ok_or("xattrs lie past the end")?;
            e.xattrs = decode_xattrs(body)?;
        }
        Ok(e)
    }

    /// Chunk indexes, symlink target, device numbers: what follows the inode.
    fn decode_body(&self, mut e: Entry) -> Result<Entry, String> {
        let plain_or_inline =
            e.layout == EROFS_INODE_FLAT_PLAIN || e.layout == EROFS_INODE_FLAT_INLINE;
        match e.kind {
            Kind::File => {
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
                let cs = u64::from(self.ext.s_chunk_size.max(4096));
                let count = e.size.div_ceil(cs);
                let at = (e.offset + e.head).next_multiple_of(8);
                let table = self
                    .at(at, count * RafsV6InodeChunkAddr::SIZE as u64)
                    .ok_or("chunk index array lies past the end")?;
                e.chunks = table
                    .chunks_exact(RafsV6InodeChunkAddr::SIZE)
                    .map(|c| RafsV6InodeChunkAddr::decode(c).expect("8 bytes"))
                    .collect();
                let bits = header.chunk_size();
                if bits != cs {
                    // Allowed only for nydus's page-cache-sharing case: one blob, contiguous.
                    let contiguous = e.chunks.windows(2).all(|w| {
                        w[0].c_blob_addr_hi & 0xff == w[1].c_blob_addr_hi & 0xff
                            && u64::from(w[1].c_blk_addr) * BLOCK
                                == u64::from(w[0].c_blk_addr) * BLOCK + cs
                    });
                    if !(contiguous && bits >= e.size && bits > cs) {
                        return Err(format!(
                            "chunk header announces {bits:#x}-byte chunks, the super block {cs:#x}"
                        ));
                    }
                }
            }
            Kind::Symlink => {
                if !plain_or_inline || e.size == 0 {
                    return Err(format!(
                        "symlink with layout {} and size {}",
                        e.layout, e.size
                    ));
                }
                e.symlink = self.data(&e)?;
            }
            Kind::Dir => {
                if !plain_or_inline || e.size == 0 {
                    return Err(format!(
                        "directory with layout {} and size {}",
                        e.layout, e.size
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

    /// The content of a directory or symlink: full blocks at `i_u`, then the inline tail.
    fn data(&self, e: &Entry) -> Result<Vec<u8>, String> {
        // The size is read from the image: held to what the bootstrap can hold before anything
        // is allocated by it.
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
        let mut out = Vec::with_capacity(e.size as usize);
        if full > 0 {
            let start = u64::from(e.i_u) * BLOCK;
            if start < u64::from(self.sb.s_meta_blkaddr) * BLOCK {
                return Err(format!(
                    "data block {} lies before the metadata area",
                    e.i_u
                ));
            }
            out.extend_from_slice(self.at(start, full).ok_or("data blocks lie past the end")?);
        }
        if tail > 0 {
            let at = e.offset + e.head;
            if at % BLOCK + tail > BLOCK {
                return Err("inline data crosses a block boundary".into());
            }
            out.extend_from_slice(self.at(at, tail).ok_or("inline data lies past the end")?);
        }
        Ok(out)
    }

    /// A directory's entries, in stored order, checked block by block.
    fn dirents(&self, e: &Entry, what: &str, f: &mut Findings) -> Option<Vec<(Vec<u8>, u64, u8)>> {
        let data = match self.data(e) {
            Ok(d) => d,
            Err(p) => {
                f.problem(what, p);
                return None;
            }
        };
        let mut out: Vec<(Vec<u8>, u64, u8)> = Vec::new();
        for (b, block) in data.chunks(BLOCK as usize).enumerate() {
            let bwhat = format!("{what}: dirent block {b}");
            let Ok(first) = RafsV6Dirent::decode(block) else {
                f.problem(&bwhat, "too short for a dirent");
                return None;
            };
            let nameoff0 = usize::from(first.e_nameoff);
            if nameoff0 < RafsV6Dirent::SIZE
                || !nameoff0.is_multiple_of(RafsV6Dirent::SIZE)
                || nameoff0 >= block.len()
            {
                f.problem(&bwhat, format!("invalid first nameoff {nameoff0}"));
                return None;
            }
            let count = nameoff0 / RafsV6Dirent::SIZE;
            let dirents: Vec<RafsV6Dirent> = (0..count)
                .map(|j| {
                    RafsV6Dirent::decode(&block[j * RafsV6Dirent::SIZE..])
                        .expect("inside the block")
                })
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
                    f.problem(
                        &bwhat,
                        format!("dirent {j} has an invalid name range {start}..{end}"),
                    );
                    return None;
                }
                out.push((block[start..end].to_vec(), d.e_nid, d.e_file_type));
            }
        }
        for w in out.windows(2) {
            if w[0].0 >= w[1].0 {
                f.problem(
                    what,
                    format!(
                        "dirents '{}' and '{}' are not in byte order (lookups would miss them)",
                        w[0].0.escape_ascii(),
                        w[1].0.escape_ascii()
                    ),
                );
            }
        }
        Some(out)
    }

    /// The blob id of blob table entry `index`: the placeholder means `own`.
    fn blob_id_of(&self, index: u32, own: Option<&str>) -> Option<String> {
        let id = self.blobs.get(index as usize)?.blob_id().ok()?;
        match own {
            Some(own) if id == INLINED_BLOB_ID_PLACEHOLDER => Some(own.to_string()),
            _ => Some(id.to_string()),
        }
    }

    /// Every chunk index of every file, resolved through its blob's ci table and the chunk
    /// info table; every chunk info record against its blob.
    pub fn check_chunks(
        &self,
        listing: &Listing,
        blobs: &BlobSet,
        own: Option<&str>,
        f: &mut Findings,
    ) {
        let mut table: HashMap<(u32, u32, u32), &RafsV5ChunkInfo> = HashMap::new();
        for (r, c) in self.chunk_table.iter().enumerate() {
            let what = format!("{}: chunk info {r}", self.what);
            let ci_entry = self.blob_id_of(c.blob_index, own).and_then(|id| {
                blobs
                    .get(&id)
                    .map(|b| (b.ci.get(c.index as usize), b.chunks.get(c.index as usize)))
            });
            let Some(blob) = self.blobs.get(c.blob_index as usize) else {
                f.problem(
                    &what,
                    format!(
                        "names blob {}, the table has {}",
                        c.blob_index,
                        self.blobs.len()
                    ),
                );
                continue;
            };
            if c.index >= blob.chunk_count {
                f.problem(
                    &what,
                    format!(
                        "ci index {} beyond the blob's {} chunks",
                        c.index, blob.chunk_count
                    ),
                );
                continue;
            }
            if let Some((Some(ci), chunk)) = ci_entry {
                let same = ci.compressed_offset() == c.compressed_offset
                    && ci.compressed_size() == c.compressed_size
                    && ci.uncompressed_offset() == c.uncompressed_offset
                    && ci.uncompressed_size() == c.uncompressed_size
                    && ci.is_compressed() == (c.flags & BLOB_CHUNK_FLAG_COMPRESSED != 0);
                if !same {
                    f.problem(&what, "differs from the blob's ci table entry");
                }
                if let Some(chunk) = chunk
                    && chunk.digest != c.block_id
                {
                    f.problem(
                        &what,
                        format!(
                            "digest {} differs from the blob's {}",
                            hex(&c.block_id),
                            hex(&chunk.digest)
                        ),
                    );
                }
            }
            let blk = (c.uncompressed_offset / BLOCK) as u32;
            table.insert((c.blob_index, c.index, blk), c);
        }
        let mut seen = HashSet::new();
        let cs = u64::from(self.ext.s_chunk_size.max(4096));
        for (path, e) in &listing.entries {
            if e.kind != Kind::File || !seen.insert(e.nid) {
                continue;
            }
            let what = format!("{}: {}", self.what, path.escape_ascii());
            for (k, c) in e.chunks.iter().enumerate() {
                let cwhat = format!("{what}: chunk {k}");
                let Some(bi) = c.blob_index().filter(|&b| (b as usize) < self.blobs.len()) else {
                    f.problem(
                        &cwhat,
                        format!(
                            "names device {}, the blob table has {}",
                            c.c_blob_addr_hi & 0xff,
                            self.blobs.len()
                        ),
                    );
                    continue;
                };
                let ci_index = c.ci_index();
                if ci_index >= self.blobs[bi as usize].chunk_count {
                    f.problem(
                        &cwhat,
                        format!(
                            "ci index {ci_index} beyond the blob's {} chunks",
                            self.blobs[bi as usize].chunk_count
                        ),
                    );
                    continue;
                }
                let piece = cs.min(e.size - k as u64 * cs) as u32;
                if let Some(ci) = self.blob_id_of(bi, own).and_then(|id| {
                    blobs
                        .get(&id)
                        .and_then(|b| b.ci.get(ci_index as usize).copied())
                }) {
                    if ci.uncompressed_offset() != u64::from(c.c_blk_addr) * BLOCK {
                        f.problem(
                            &cwhat,
                            format!(
                                "block {} but the ci table puts chunk {ci_index} at {:#x}",
                                c.c_blk_addr,
                                ci.uncompressed_offset()
                            ),
                        );
                    }
                    if ci.uncompressed_size() != piece {
                        f.problem(&cwhat, format!("the ci table's chunk {ci_index} holds {} bytes, the file needs {piece} here", ci.uncompressed_size()));
                    }
                }
                if !table.contains_key(&(bi, ci_index, c.c_blk_addr)) {
                    f.problem(&cwhat, "is not in the chunk info table (nydus-image check and unpack look it up there)");
                }
            }
        }
    }

    /// Resolve a file's chunks to the sha256 of their bytes (for the comparison with the
    /// source): `None` for a chunk that could not be read or verified.
    pub fn content(&self, e: &Entry, blobs: &BlobSet, own: Option<&str>) -> Vec<Option<[u8; 32]>> {
        e.chunks
            .iter()
            .map(|c| {
                let id = self.blob_id_of(c.blob_index()?, own)?;
                blobs.get(&id)?.chunks.get(c.ci_index() as usize)?.sha256
            })
            .collect()
    }
}

#[allow(clippy::too_many_arguments)]
fn new_entry(
    nid: u64,
    format: u16,
    mode: u16,
    i_u: u32,
    size: u64,
    nlink: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    mtime_nsec: u32,
) -> Entry {
    Entry {
        nid,
        kind: Kind::File,
        mode: u32::from(mode),
        uid,
        gid,
        mtime,
        mtime_nsec,
        size,
        nlink,
        rdev: (0, 0),
        xattrs: BTreeMap::new(),
        symlink: Vec::new(),
        chunks: Vec::new(),
        layout: i_format_datalayout(format),
        offset: 0,
        head: 0,
        i_u,
    }
}

/// Inline xattrs: the 12-byte header, then entries padded to 4 bytes.
fn decode_xattrs(body: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
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
