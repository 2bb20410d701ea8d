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
use crate::blob::reader::ci_size;
use crate::ondisk::blob::*;
use crate::ondisk::rafs_v6::reader::{BootstrapReader, Budget, Dirent, Inode, Kind, child_path};
use crate::ondisk::rafs_v6::*;

const BLOCK: u64 = EROFS_BLOCK_SIZE;

/// The tree a bootstrap describes: every path ("/", "/etc", …) with its inode.
#[derive(Clone, Debug, Default)]
pub(crate) struct Listing {
    pub entries: BTreeMap<Vec<u8>, Inode>,
}

/// The inodes a walk has decoded (by nid, `None` when undecodable), and its budget.
struct Cache {
    entries: HashMap<u64, Option<Inode>>,
    budget: Budget,
    /// The budget ran out (reported once): the walk stops.
    exhausted: bool,
}

/// A bootstrap whose super blocks could be decoded, with its tables, for the rules to judge.
pub(crate) struct Bootstrap {
    what: String,
    reader: BootstrapReader,
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
        let reader = match BootstrapReader::open(bytes) {
            Ok(r) => r,
            Err(e) => {
                f.problem(&what, e);
                return None;
            }
        };
        let mut boot = Bootstrap {
            what,
            sb: reader.sb,
            ext: reader.ext,
            blobs: reader.blob_table(),
            devices: Vec::new(),
            chunk_table: reader.chunk_table(),
            prefetch: reader.prefetch_table(),
            reader,
        };
        boot.check_super(f);
        boot.read_devices(f);
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
        let len = self.reader.bytes().len() as u64;
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
        let compression = ext.s_flags & RAFS_SUPER_FLAGS_COMPRESSION;
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

    /// Device slots, one per blob.
    fn read_devices(&mut self, f: &mut Findings) {
        for i in 0..u32::from(self.sb.s_extra_devices) {
            match self.reader.device(i) {
                Some(d) => self.devices.push(d),
                None => f.problem(&self.what, format!("device slot {i} lies past the end")),
            }
        }
    }

    /// The blob table and device slots (`RafsV6Blob::validate`), against the manifest's blob
    /// layers. For an inlined bootstrap, `inlined` names the blob holding it and the merged
    /// bootstrap, whose entries its own must repeat.
    ///
    /// A blob in `external` (a chunk dictionary's, given to `check --chunk-dict`) may be
    /// missing from the manifest: the image refers to it where nydusd finds it.
    pub fn check_blob_table(
        &self,
        layers: &[BlobLayer],
        external: &[String],
        inlined: Option<(&str, &Bootstrap)>,
        f: &mut Findings,
    ) {
        let compressor = compressor_of_flags(self.ext.s_flags);
        let mut seen: Vec<usize> = Vec::new();
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
            // Batch and encrypted blobs (nydus 2.3+) are the features beyond 2.2.0 this program
            // writes; both need V2 ci entries.
            let batch = b.features & BLOB_FEATURE_BATCH != 0;
            let encrypted = b.features & BLOB_FEATURE_ENCRYPTED != 0;
            rule(
                b.features
                    & BLOB_FEATURE_INCOMPAT_MASK
                    & !(BLOB_FEATURE_INCOMPAT_V2_2 | BLOB_FEATURE_BATCH | BLOB_FEATURE_ENCRYPTED)
                    == 0
                    && b.features & BLOB_FEATURE_V5_NO_EXT_BLOB_TABLE == 0,
                format!("features {:#x} have bits nydus readers reject", b.features),
            );
            rule(
                (b.features & BLOB_FEATURE_CHUNK_INFO_V2 != 0) == (batch || encrypted),
                "ci V2 entries are written by tar-rafs builds with batch or encrypted chunks only"
                    .to_string(),
            );
            // An encrypted blob keeps its key and IV where zran blobs keep their meta blob.
            rule(
                if encrypted {
                    b.cipher_algo == CIPHER_AES128_XTS
                } else {
                    b.cipher_algo == CIPHER_NONE
                        && b.cipher_iv == [0; 8]
                        && b.blob_meta_digest == [0; 32]
                        && b.blob_meta_size == 0
                },
                format!(
                    "cipher {} and its key fields do not fit the ENCRYPTED feature",
                    b.cipher_algo
                ),
            );
            rule(
                b.ci_compressed_size <= b.ci_uncompressed_size,
                "ci compressed size exceeds its uncompressed size".to_string(),
            );
            // A batch blob's ci data ends with its batch contexts (their number is in the ci
            // header, checked with the blob).
            let entries = ci_size(b, 0);
            rule(
                b.ci_uncompressed_size == entries
                    || (batch
                        && b.ci_uncompressed_size > entries
                        && (b.ci_uncompressed_size - entries)
                            .is_multiple_of(BatchInflateContext::SIZE as u64)),
                format!(
                    "ci_uncompressed_size {} is not what {} ci entries take",
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
            // Blobs enter the table in the order of their first use (a chunk dictionary's blob
            // may come before a layer's own), so only a blob named twice is wrong.
            match layers.iter().position(|l| l.hex == file_id) {
                Some(pos) => {
                    rule(
                        !seen.contains(&pos),
                        "names a blob named before".to_string(),
                    );
                    seen.push(pos);
                }
                None => rule(
                    external.contains(&file_id),
                    format!(
                        "blob {file_id} is not a layer of the manifest (the registry backend \
                         fetches blobs by this id; a chunk dictionary's blob? give check \
                         --chunk-dict)"
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
        let root = self.reader.root_nid();
        let mut stack: Vec<(Vec<u8>, u64, u64)> = vec![(b"/".to_vec(), root, root)];
        let mut visited_dirs = HashSet::new();
        let mut cache = Cache {
            entries: HashMap::new(),
            budget: self.reader.budget(),
            exhausted: false,
        };
        let mut paths_of: HashMap<u64, u32> = HashMap::new();
        while let Some((path, nid, parent)) = stack.pop() {
            if cache.exhausted {
                break;
            }
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
                let find = |name: &[u8]| dirents.iter().find(|d| d.name == name).map(|d| d.nid);
                if find(b".") != Some(nid) {
                    f.problem(&what, "'.' is missing or names another inode");
                }
                if find(b"..") != Some(parent) {
                    f.problem(&what, "'..' is missing or does not name the parent");
                }
                for Dirent {
                    name,
                    nid: child_nid,
                    file_type: ftype,
                } in dirents
                {
                    if name == b"." || name == b".." {
                        continue;
                    }
                    if cache.exhausted {
                        break;
                    }
                    let child_path = child_path(&path, &name);
                    if let Err(p) = cache.budget.charge_path(&child_path) {
                        cache.exhausted = true;
                        f.problem(&what, p);
                        break;
                    }
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

    /// Decode the inode at `nid` (once; later calls return the same), within the walk's budget.
    fn load(&self, nid: u64, path: &[u8], cache: &mut Cache, f: &mut Findings) -> Option<Inode> {
        if let Some(e) = cache.entries.get(&nid) {
            return e.clone();
        }
        let what = format!("{}: {} (nid {nid})", self.what, path.escape_ascii());
        let entry = self
            .reader
            .inode(nid)
            .and_then(|e| {
                cache.budget.charge_inode(&e).inspect_err(|_| {
                    cache.exhausted = true;
                })?;
                Ok(e)
            })
            .map_err(|p| f.problem(&what, p))
            .ok();
        if let Some(e) = &entry {
            self.check_unused_fields(e, &what, f);
        }
        cache.entries.insert(nid, entry.clone());
        entry
    }

    /// Fields no reader needs but nydus-image always writes the same way: reserved bytes are
    /// zero and nanoseconds stay below a second. Damage there is damage all the same.
    fn check_unused_fields(&self, e: &Inode, what: &str, f: &mut Findings) {
        let (reserved, nsec) = if e.extended {
            let Some(i) = self
                .reader
                .at(e.offset, RafsV6InodeExtended::SIZE as u64)
                .and_then(|b| RafsV6InodeExtended::decode(b).ok())
            else {
                return;
            };
            (
                i.i_reserved != 0 || i.i_reserved2 != [0; 16],
                i.i_mtime_nsec,
            )
        } else {
            let Some(i) = self
                .reader
                .at(e.offset, RafsV6InodeCompact::SIZE as u64)
                .and_then(|b| RafsV6InodeCompact::decode(b).ok())
            else {
                return;
            };
            (i.i_reserved != 0 || i.i_reserved2 != [0; 4], 0)
        };
        if reserved {
            f.problem(what, "reserved inode bytes are not zero");
        }
        if nsec >= 1_000_000_000 {
            f.problem(
                what,
                format!("mtime nanoseconds {nsec} are a second or more"),
            );
        }
    }

    /// A directory's entries, in stored order, and the rule that they are sorted.
    fn dirents(&self, e: &Inode, what: &str, f: &mut Findings) -> Option<Vec<Dirent>> {
        let mut out = self
            .reader
            .dirents(e)
            .map_err(|p| f.problem(what, p))
            .ok()?;
        out.retain(|d| {
            let bad = d.name.contains(&b'/') || d.name.contains(&0);
            if bad {
                // No path can hold it: report it and leave it out of the tree.
                f.problem(
                    what,
                    format!("dirent name '{}' holds '/' or NUL", d.name.escape_ascii()),
                );
            }
            !bad
        });
        for w in out.windows(2) {
            if w[0].name >= w[1].name {
                f.problem(
                    what,
                    format!(
                        "dirents '{}' and '{}' are not in byte order (lookups would miss them)",
                        w[0].name.escape_ascii(),
                        w[1].name.escape_ascii()
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
                blobs.get(&id).map(|b| {
                    (
                        b.ci.entries.get(c.index as usize),
                        b.chunks.get(c.index as usize),
                    )
                })
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
            // ENCRYPTED exactly on the chunks of an encrypted blob.
            let encrypted = blob.features & BLOB_FEATURE_ENCRYPTED != 0;
            if c.flags & !(BLOB_CHUNK_FLAG_COMPRESSED | BLOB_CHUNK_FLAG_ENCRYPTED) != 0
                || (c.flags & BLOB_CHUNK_FLAG_ENCRYPTED != 0) != encrypted
                || c.reserved != 0
            {
                f.problem(
                    &what,
                    format!(
                        "flags {:#x} or reserved {:#x} hold bits nydus-image never sets here",
                        c.flags, c.reserved
                    ),
                );
            }
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
                // A batch member's record has no compressed place (nydus-image writes 0, 0 and
                // no flag): readers find its bytes through the ci table.
                let (offset, size, compressed) = match ci.batch {
                    Some(_) => (0, 0, false),
                    None => (ci.compressed_offset, ci.compressed_size, ci.compressed),
                };
                let same = offset == c.compressed_offset
                    && size == c.compressed_size
                    && ci.uncompressed_offset == c.uncompressed_offset
                    && ci.uncompressed_size == c.uncompressed_size
                    && compressed == (c.flags & BLOB_CHUNK_FLAG_COMPRESSED != 0);
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
        let cs = self.reader.chunk_size();
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
                        .and_then(|b| b.ci.entries.get(ci_index as usize).copied())
                }) {
                    if ci.uncompressed_offset != u64::from(c.c_blk_addr) * BLOCK {
                        f.problem(
                            &cwhat,
                            format!(
                                "block {} but the ci table puts chunk {ci_index} at {:#x}",
                                c.c_blk_addr, ci.uncompressed_offset
                            ),
                        );
                    }
                    if ci.uncompressed_size != piece {
                        f.problem(&cwhat, format!("the ci table's chunk {ci_index} holds {} bytes, the file needs {piece} here", ci.uncompressed_size));
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
    pub fn content(&self, e: &Inode, blobs: &BlobSet, own: Option<&str>) -> Vec<Option<[u8; 32]>> {
        e.chunks
            .iter()
            .map(|c| {
                let id = self.blob_id_of(c.blob_index()?, own)?;
                blobs.get(&id)?.chunks.get(c.ci_index() as usize)?.sha256
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::chunk::{BlobOptions, ChunkTable};
    use crate::common::path::ImagePath;
    use crate::layer::entry::{EntryKind, InodeData, LayerEntry, Metadata};
    use crate::rafs::{BootstrapInput, write};
    use crate::tree::Tree;

    /// A bootstrap of the tree `/a/b/c`, all directories, with no blobs.
    fn nested_dirs() -> Vec<u8> {
        let mut tree = Tree::new();
        let dir = |path: &str| LayerEntry {
            path: ImagePath::parse(path.as_bytes()).unwrap(),
            kind: EntryKind::Inode(InodeData::Dir),
            meta: Metadata {
                mode: 0o755,
                ..Metadata::default()
            },
        };
        tree.apply(vec![dir("a"), dir("a/b"), dir("a/b/c")])
            .unwrap();
        write(&BootstrapInput {
            tree: &tree,
            chunks: &ChunkTable::new(),
            blobs: &[],
            options: BlobOptions::default(),
            prefetch: &crate::rafs::Prefetch::Root,
        })
        .unwrap()
    }

    /// The inode at `path` of a sound bootstrap.
    fn inode(bytes: &[u8], path: &[u8]) -> Inode {
        BootstrapReader::open(bytes.to_vec())
            .unwrap()
            .lookup(path)
            .unwrap()
    }

    /// The stored dirent of `/a` naming `name`: its offset in `bytes`.
    fn dirent_in_a(bytes: &[u8], name: &[u8]) -> usize {
        let reader = BootstrapReader::open(bytes.to_vec()).unwrap();
        let a = reader.lookup(b"/a").unwrap();
        let child = reader.lookup(&child_path(b"/a", name)).unwrap();
        for block in reader.dirent_blocks(&a).unwrap() {
            let data = &bytes[block.offset as usize..(block.offset + block.len) as usize];
            if let Some(at) = (0..data.len().saturating_sub(11))
                .step_by(RafsV6Dirent::SIZE)
                .find(|&at| data[at..at + 8] == child.nid.to_le_bytes())
            {
                return block.offset as usize + at;
            }
        }
        panic!("no dirent of {name:?} in /a");
    }

    /// Point the dirent of `/a/b` in `/a` at the inode of `target`: a directory hardlink, or a
    /// cycle when `target` is an ancestor.
    fn point_b_at(bytes: &mut [u8], target: &[u8]) {
        assert!(walk(bytes.to_vec()).is_empty());
        let to = inode(bytes, target);
        let at = dirent_in_a(bytes, b"b");
        bytes[at..at + 8].copy_from_slice(&to.nid.to_le_bytes());
    }

    /// Walk `bytes`: the problems found.
    fn walk(bytes: Vec<u8>) -> Vec<String> {
        let mut f = Findings::default();
        let boot = Bootstrap::parse("bootstrap".into(), bytes, &mut f).unwrap();
        boot.walk(&mut f);
        f.problems
    }

    #[test]
    fn a_dirent_naming_an_ancestor_is_a_cycle_reported_not_followed() {
        for ancestor in [&b"/"[..], b"/a"] {
            let mut bytes = nested_dirs();
            point_b_at(&mut bytes, ancestor);
            let problems = walk(bytes);
            assert!(
                problems.iter().any(|p| p.contains("/a/b (nid")
                    && p.contains("directory reached twice (a loop or a directory hardlink)")),
                "{ancestor:?}: {problems:#?}"
            );
        }
    }

    #[test]
    fn a_dirent_naming_a_deeper_directory_breaks_its_parent_link() {
        let mut bytes = nested_dirs();
        point_b_at(&mut bytes, b"/a/b/c");
        let problems = walk(bytes);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("'..' is missing or does not name the parent")),
            "{problems:#?}"
        );
    }

    #[test]
    fn a_dirent_name_holding_a_slash_is_a_problem_left_out_of_the_tree() {
        let mut bytes = nested_dirs();
        let reader = BootstrapReader::open(bytes.clone()).unwrap();
        let a = reader.lookup(b"/a").unwrap();
        // `/a` holds `.`, `..` and `b`: the last name is `b`, one byte at the block's end.
        let block = &reader.dirent_blocks(&a).unwrap()[0];
        let data = &bytes[block.offset as usize..(block.offset + block.len) as usize];
        let b_at = data.iter().rposition(|&c| c == b'b').unwrap() + block.offset as usize;
        bytes[b_at] = b'/';
        let mut f = Findings::default();
        let boot = Bootstrap::parse("bootstrap".into(), bytes, &mut f).unwrap();
        let listing = boot.walk(&mut f);
        assert!(
            f.problems.iter().any(|p| p.contains("holds '/' or NUL")),
            "{:#?}",
            f.problems
        );
        assert!(listing.entries.keys().all(|p| !p.starts_with(b"/a/")));
    }

    #[test]
    fn reserved_inode_bytes_and_nanoseconds_past_a_second_are_problems() {
        let sound = nested_dirs();
        let a = inode(&sound, b"/a");
        let mut bytes = sound.clone();
        // i_reserved of an extended inode (offset 6) or a compact one (offset 12).
        let at = a.offset as usize + if a.extended { 6 } else { 12 };
        bytes[at] = 1;
        let problems = walk(bytes);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("/a (nid") && p.contains("reserved inode bytes")),
            "{problems:#?}"
        );
        if a.extended {
            let mut bytes = sound;
            let at = a.offset as usize + 40;
            bytes[at..at + 4].copy_from_slice(&1_000_000_000u32.to_le_bytes());
            let problems = walk(bytes);
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains("mtime nanoseconds 1000000000")),
                "{problems:#?}"
            );
        }
    }
}
