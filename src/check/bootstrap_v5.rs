//! One RAFS v5 bootstrap, decoded with [`crate::ondisk::rafs_v5::reader`] and judged by the
//! rules nydus applies to it: the super block as `RafsV5SuperBlock::validate` (sizes, chunk
//! size, known flags, tables inside the file and apart), every inode record as nydusd's
//! `OndiskInodeWrapper::validate` (inode numbers, parents, link counts, names, child ranges,
//! chunk counts), the inode digest tree `nydus-image check` verifies, the blob and extended
//! blob tables against the manifest's blobs, and every chunk record against its blob's extents
//! and, with the blob at hand, against the chunk read from it.

use std::collections::{HashMap, HashSet};

use super::Findings;
use super::blob::{BlobSet, hex};
use super::bootstrap::Listing;
use super::layout::BlobLayer;
use crate::blob::chunk::INLINED_BLOB_ID_PLACEHOLDER;
use crate::blob::reader::chunk_digest;
use crate::ondisk::blob::*;
use crate::ondisk::rafs_v5::reader::{BootstrapReader, Record, is_plain_name};
use crate::ondisk::rafs_v5::*;
use crate::ondisk::rafs_v6::reader::{Budget, Inode, Kind, child_path};
use crate::ondisk::rafs_v6::{
    BLOB_CHUNK_FLAG_COMPRESSED, BLOB_CHUNK_FLAG_HAS_CRC32, BLOB_ID_LEN,
    RAFS_SUPER_FLAG_HASH_BLAKE3, RAFS_SUPER_FLAG_HASH_SHA256, RAFS_SUPER_FLAGS_KNOWN_V2_2,
};

/// Blob features nydus-image gives a v5 blob with its bootstrap inlined (`--blob-inline-meta`)
/// in the merged bootstrap; the blob's own bootstrap adds [`BLOB_FEATURE_INLINED_FS_META`].
pub(crate) const V5_BLOB_FEATURES: u32 = BLOB_FEATURE_CAP_TAR_TOC | BLOB_FEATURE_HAS_TAR_HEADER;

/// A v5 bootstrap whose super block could be decoded, with its tables.
pub(crate) struct BootstrapV5 {
    what: String,
    pub reader: BootstrapReader,
    pub blobs: Vec<RafsV5BlobTableEntry>,
    pub ext: Vec<RafsV5ExtBlobEntry>,
    prefetch: Vec<u32>,
}

/// What a walk found beyond the listing: every record decoded, by inode number (slot).
pub(crate) type Records = HashMap<u64, Record>;

/// One directory met by the walk: its path and inode number.
struct Visit {
    path: Vec<u8>,
    slot: u64,
}

impl BootstrapV5 {
    /// Decode the super block and tables of `bytes`, recording every rule broken. `None` when
    /// not even the super block can be read.
    pub fn parse(what: String, bytes: Vec<u8>, f: &mut Findings) -> Option<BootstrapV5> {
        let reader = match BootstrapReader::open(bytes) {
            Ok(r) => r,
            Err(e) => {
                f.problem(&what, e);
                return None;
            }
        };
        let boot = BootstrapV5 {
            what,
            blobs: reader.blob_table(),
            ext: reader.ext_blob_table(),
            prefetch: reader.prefetch_table(),
            reader,
        };
        boot.check_super(f);
        Some(boot)
    }

    /// The blob ids of the blob table, in order.
    pub fn blob_ids(&self) -> Vec<String> {
        self.blobs.iter().map(|b| b.blob_id.clone()).collect()
    }

    /// `RafsV5SuperBlock::validate`: sizes, chunk size, flags, and the tables inside the file
    /// and apart from each other.
    fn check_super(&self, f: &mut Findings) {
        let what = format!("{}: super block", self.what);
        let sb = &self.reader.sb;
        let len = self.reader.bytes().len() as u64;
        let mut rule = |ok: bool, problem: String| {
            if !ok {
                f.problem(&what, problem);
            }
        };
        rule(
            sb.s_sb_size as usize == RafsV5SuperBlock::SIZE && len > RafsV5SuperBlock::SIZE as u64,
            format!("sb size {} in a file of {len} bytes", sb.s_sb_size),
        );
        let cs = sb.s_block_size;
        rule(
            cs.is_power_of_two() && (4096..=BLOB_CHUNK_MAX_SIZE).contains(&cs),
            format!("chunk size {cs:#x} is not a power of two from 4 KiB to 16 MiB"),
        );
        rule(
            sb.s_flags & !RAFS_SUPER_FLAGS_KNOWN_V2_2 == 0,
            format!("flags {:#x} have bits nydus does not know", sb.s_flags),
        );
        rule(
            self.reader.compressor().is_some(),
            format!("flags {:#x} do not name one compressor", sb.s_flags),
        );
        let hash = sb.s_flags & (RAFS_SUPER_FLAG_HASH_BLAKE3 | RAFS_SUPER_FLAG_HASH_SHA256);
        rule(
            hash.count_ones() == 1,
            format!("flags {:#x} do not name one digester", sb.s_flags),
        );
        rule(
            sb.s_inodes_count <= u64::from(sb.s_inode_table_entries),
            format!(
                "inodes count {} is more than the inode table's {} entries",
                sb.s_inodes_count, sb.s_inode_table_entries
            ),
        );
        rule(
            sb.s_reserved.iter().all(|&b| b == 0),
            "reserved bytes are not zero".to_string(),
        );
        let inside = |off: u64, size: u64| {
            off >= RafsV5SuperBlock::SIZE as u64
                && off.is_multiple_of(RAFS_V5_ALIGNMENT as u64)
                && off.checked_add(size).is_some_and(|end| end <= len)
        };
        let apart = |a: (u64, u64), b: (u64, u64)| {
            a.1 == 0 || b.1 == 0 || a.0.saturating_add(a.1) <= b.0 || b.0.saturating_add(b.1) <= a.0
        };
        let inodes = (
            sb.s_inode_table_offset,
            u64::from(sb.s_inode_table_entries) * 4,
        );
        let blobs = (sb.s_blob_table_offset, u64::from(sb.s_blob_table_size));
        let ext = (
            sb.s_extended_blob_table_offset,
            u64::from(sb.s_extended_blob_table_entries) * RafsV5ExtBlobEntry::SIZE as u64,
        );
        let prefetch = (
            sb.s_prefetch_table_offset,
            u64::from(sb.s_prefetch_table_entries) * 4,
        );
        rule(
            sb.s_inode_table_entries > 0 && inside(inodes.0, inodes.1),
            format!(
                "inode table at {:#x} (+{}) is misplaced",
                inodes.0, inodes.1
            ),
        );
        rule(
            inside(blobs.0, blobs.1) && apart(blobs, inodes),
            format!("blob table at {:#x} (+{}) is misplaced", blobs.0, blobs.1),
        );
        rule(
            ext.1 == 0 || (inside(ext.0, ext.1) && apart(ext, inodes) && apart(ext, blobs)),
            format!(
                "extended blob table at {:#x} (+{}) is misplaced",
                ext.0, ext.1
            ),
        );
        rule(
            prefetch.1 == 0
                || (inside(prefetch.0, prefetch.1)
                    && apart(prefetch, inodes)
                    && apart(prefetch, blobs)
                    && apart(prefetch, ext)),
            format!(
                "prefetch table at {:#x} (+{}) is misplaced",
                prefetch.0, prefetch.1
            ),
        );
        rule(
            (blobs.1 == 0 || !self.blobs.is_empty()) && blobs.1 % 8 == 0,
            format!("blob table of {} bytes cannot be decoded", blobs.1),
        );
    }

    /// The blob and extended blob tables against the manifest's blob layers. For an inlined
    /// bootstrap, `inlined` names the blob holding it and the merged bootstrap, whose entries
    /// its own must repeat (its own blob named by the placeholder id, with INLINED_FS_META).
    pub fn check_blob_table(
        &self,
        layers: &[BlobLayer],
        external: &[String],
        inlined: Option<(&str, &BootstrapV5)>,
        f: &mut Findings,
    ) {
        if self.ext.len() != self.blobs.len() {
            f.problem(
                &self.what,
                format!(
                    "{} blobs but {} extended blob table entries",
                    self.blobs.len(),
                    self.ext.len()
                ),
            );
        }
        let mut seen = HashSet::new();
        for (i, b) in self.blobs.iter().enumerate() {
            let what = format!("{}: blob table entry {i}", self.what);
            let own = inlined.is_some_and(|_| b.blob_id == INLINED_BLOB_ID_PLACEHOLDER);
            let file_id = match inlined {
                Some((hex_id, _)) if own => hex_id.to_string(),
                _ => b.blob_id.clone(),
            };
            if b.blob_id.len() != BLOB_ID_LEN {
                f.problem(
                    &what,
                    format!("blob id {:?} is not 64 characters", b.blob_id),
                );
            }
            if !seen.insert(file_id.clone()) {
                f.problem(&what, "names a blob named before");
            }
            if !layers.iter().any(|l| l.hex == file_id) && !external.contains(&file_id) {
                f.problem(
                    &what,
                    format!("blob {file_id} is not a layer of the manifest"),
                );
            }
            let Some(e) = self.ext.get(i) else { continue };
            let mut expected = V5_BLOB_FEATURES;
            if own {
                expected |= BLOB_FEATURE_INLINED_FS_META;
            }
            if e.features != expected {
                f.problem(
                    &what,
                    format!(
                        "features {:#x}, nydus-image writes {expected:#x}",
                        e.features
                    ),
                );
            }
            if e.reserved != [0; 40] {
                f.problem(&what, "reserved bytes of the extended entry are not zero");
            }
            if let Some((_, merged)) = inlined {
                let pos = merged.blobs.iter().position(|m| m.blob_id == file_id);
                match pos.and_then(|p| merged.ext.get(p)) {
                    Some(m)
                        if (m.chunk_count, m.uncompressed_size, m.compressed_size)
                            == (e.chunk_count, e.uncompressed_size, e.compressed_size) => {}
                    Some(_) => f.problem(
                        &what,
                        "differs from the merged bootstrap's entry for the same blob",
                    ),
                    None => f.problem(
                        &what,
                        format!("blob {file_id} is missing from the merged bootstrap"),
                    ),
                }
            }
        }
    }

    /// Walk the tree from the root, decoding every record once and judging it; the listing
    /// and the records decoded.
    pub fn walk(&self, f: &mut Findings) -> (Listing, Records) {
        let mut listing = Listing::default();
        let mut records = Records::new();
        let mut budget = self.reader.budget();
        let mut stack = vec![Visit {
            path: b"/".to_vec(),
            slot: RAFS_V5_ROOT_INODE,
        }];
        let mut visited = HashSet::new();
        let mut names: HashMap<u64, u32> = HashMap::new();
        'walk: while let Some(v) = stack.pop() {
            let what = format!(
                "{}: {} (inode {})",
                self.what,
                v.path.escape_ascii(),
                v.slot
            );
            let Some(dir) = self.load(v.slot, &what, &mut records, &mut budget, f) else {
                if budget.is_spent() {
                    break;
                }
                continue;
            };
            if v.slot == RAFS_V5_ROOT_INODE {
                self.check_root(&dir, &what, f);
            }
            if dir.kind != Kind::Dir {
                f.problem(&what, "the root is not a directory");
                continue;
            }
            if !visited.insert(v.slot) {
                f.problem(
                    &what,
                    "directory reached twice (a loop or a directory hardlink)",
                );
                continue;
            }
            let children = match self.reader.children(&dir) {
                Ok(c) => c,
                Err(p) => {
                    f.problem(&what, p);
                    0..0
                }
            };
            if !children.is_empty() && children.start <= dir.inode.i_ino {
                f.problem(
                    &what,
                    format!("first child {} is not after it", children.start),
                );
            }
            let mut subdirs = 0u32;
            let mut last_name: Option<Vec<u8>> = None;
            for slot in children {
                let Some(child) = self.load(slot, &what, &mut records, &mut budget, f) else {
                    // An undecodable child costs what a listed one does: directories sharing a
                    // range of broken entries would otherwise take time quadratic in the file.
                    if budget.charge_path(b"").is_err() || budget.is_spent() {
                        f.problem(&what, "the walk's budget is spent; it stops here");
                        break 'walk;
                    }
                    continue;
                };
                if !is_plain_name(&child.name) {
                    f.problem(
                        &what,
                        format!(
                            "child {slot} is named '{}', which no path can hold",
                            child.name.escape_ascii()
                        ),
                    );
                    continue;
                }
                let path = child_path(&v.path, &child.name);
                if let Err(p) = budget.charge_path(&path) {
                    f.problem(&what, p);
                    break 'walk;
                }
                let cwhat = format!("{}: {} (inode {slot})", self.what, path.escape_ascii());
                if last_name.as_ref().is_some_and(|l| *l >= child.name) {
                    f.problem(
                        &cwhat,
                        "children are not sorted by name (lookups would miss it)",
                    );
                }
                last_name = Some(child.name.clone());
                if child.inode.i_parent != dir.inode.i_ino {
                    f.problem(
                        &cwhat,
                        format!(
                            "parent {} but it is a child of inode {}",
                            child.inode.i_parent, dir.inode.i_ino
                        ),
                    );
                }
                self.check_record(&child, &cwhat, f);
                if child.kind == Kind::Dir {
                    subdirs += 1;
                    stack.push(Visit { path, slot });
                } else {
                    *names.entry(child.inode.i_ino).or_default() += 1;
                    if let Some(inode) = self.inode(&child, &cwhat, f) {
                        listing.entries.insert(path, inode);
                    }
                }
            }
            if dir.inode.i_nlink != 2 + subdirs {
                f.problem(
                    &what,
                    format!(
                        "nlink {} for a directory with {subdirs} subdirectories",
                        dir.inode.i_nlink
                    ),
                );
            }
            if let Some(inode) = self.inode(&dir, &what, f) {
                listing.entries.insert(v.path, inode);
            }
        }
        self.check_links(&listing, &names, f);
        // Each directory's children are read again for its digest: only after a walk that read
        // them all within its budget.
        if !budget.is_spent() {
            self.check_digests(&records, f);
        }
        self.check_prefetch(&records, f);
        (listing, records)
    }

    /// The record at `slot`, decoded once per walk within its budget.
    fn load(
        &self,
        slot: u64,
        what: &str,
        records: &mut Records,
        budget: &mut Budget,
        f: &mut Findings,
    ) -> Option<Record> {
        if let Some(r) = records.get(&slot) {
            return Some(r.clone());
        }
        let record = self
            .reader
            .record(slot)
            .and_then(|r| budget.charge(r.len).map(|_| r))
            .map_err(|p| f.problem(what, format!("inode {slot}: {p}")))
            .ok()?;
        records.insert(slot, record.clone());
        Some(record)
    }

    /// The record as the listing's [`Inode`].
    fn inode(&self, r: &Record, what: &str, f: &mut Findings) -> Option<Inode> {
        r.to_inode().map_err(|p| f.problem(what, p)).ok()
    }

    /// The root's own rules: inode number 1, no parent, named "/".
    fn check_root(&self, root: &Record, what: &str, f: &mut Findings) {
        let i = &root.inode;
        if i.i_ino != RAFS_V5_ROOT_INODE || i.i_parent != 0 || root.name != b"/" {
            f.problem(
                what,
                format!(
                    "the root has inode {} parent {} name '{}', not 1, 0 and '/'",
                    i.i_ino,
                    i.i_parent,
                    root.name.escape_ascii()
                ),
            );
        }
    }

    /// `OndiskInodeWrapper::validate` of nydusd, and the fields nydus-image always writes the
    /// same way.
    fn check_record(&self, r: &Record, what: &str, f: &mut Findings) {
        let i = &r.inode;
        let entries = self.reader.entries();
        let hardlink = r.kind == Kind::File && i.i_nlink > 1;
        let mut rule = |ok: bool, problem: String| {
            if !ok {
                f.problem(what, problem);
            }
        };
        rule(
            (1..=entries).contains(&i.i_ino),
            format!("inode number {} is outside 1..={entries}", i.i_ino),
        );
        // Further names of any non-directory share their group's inode number (tar can link
        // a symlink or a device as well as a file).
        rule(
            i.i_ino == r.slot || (r.kind != Kind::Dir && i.i_nlink > 1 && i.i_ino < r.slot),
            format!("inode number {} read through entry {}", i.i_ino, r.slot),
        );
        rule(i.i_parent != 0, "parent 0, which only the root has".into());
        rule(i.i_nlink != 0, "nlink is 0".into());
        rule(
            (1..=RAFS_V5_MAX_NAME + 1).contains(&usize::from(i.i_name_size)),
            format!("name size {} is not 1..=256", i.i_name_size),
        );
        rule(
            i.i_parent < i.i_ino || hardlink,
            format!(
                "parent {} is not below its inode number {}",
                i.i_parent, i.i_ino
            ),
        );
        rule(
            i.i_projid == 0 && i.i_reserved == [0; 8],
            "projid or reserved bytes are not zero".into(),
        );
        rule(
            i.i_mtime_nsec < 1_000_000_000,
            format!("mtime nanoseconds {} are a second or more", i.i_mtime_nsec),
        );
        let flags = RAFS_V5_INODE_FLAG_SYMLINK
            | RAFS_V5_INODE_FLAG_HARDLINK
            | RAFS_V5_INODE_FLAG_XATTR
            | RAFS_V5_INODE_FLAG_HAS_HOLE;
        rule(
            i.i_flags & !flags == 0
                && (i.i_flags & RAFS_V5_INODE_FLAG_SYMLINK != 0) == (r.kind == Kind::Symlink),
            format!("flags {:#x} do not fit a {}", i.i_flags, r.kind.name()),
        );
        rule(
            (i.i_flags & RAFS_V5_INODE_FLAG_XATTR != 0) == (r.xattr_pairs > 0),
            "the XATTR flag and the xattr table disagree".into(),
        );
        rule(
            r.xattr_pairs == r.xattrs.len(),
            "the xattr table names an xattr twice".into(),
        );
        match r.kind {
            Kind::Symlink => rule(
                i.i_symlink_size != 0 && i.i_size == u64::from(i.i_symlink_size),
                format!(
                    "symlink target of {} bytes, size {}",
                    i.i_symlink_size, i.i_size
                ),
            ),
            Kind::File => {
                let cs = self.reader.chunk_size();
                let chunks = i.i_size.div_ceil(cs);
                rule(
                    i.i_flags & RAFS_V5_INODE_FLAG_HAS_HOLE != 0
                        || chunks == u64::from(i.i_child_count),
                    format!(
                        "{} chunk records for {} bytes in {cs}-byte chunks",
                        i.i_child_count, i.i_size
                    ),
                );
            }
            _ => rule(
                i.i_symlink_size == 0,
                format!("a {} with a symlink target", r.kind.name()),
            ),
        }
        if r.kind != Kind::File {
            rule(
                r.kind == Kind::Dir || i.i_child_count == 0,
                format!("a {} with {} children", r.kind.name(), i.i_child_count),
            );
        }
    }

    /// Every name of a file, symlink or special file counted: as many as its nlink.
    fn check_links(&self, listing: &Listing, names: &HashMap<u64, u32>, f: &mut Findings) {
        for (path, e) in &listing.entries {
            if e.kind != Kind::Dir && names.get(&e.nid).is_some_and(|&n| n != e.nlink) {
                f.problem(
                    format!("{}: {}", self.what, path.escape_ascii()),
                    format!("nlink {} but {} names in the tree", e.nlink, names[&e.nid]),
                );
            }
        }
    }

    /// The inode digest tree `nydus-image check` verifies: a file's digest over its chunk
    /// digests, a symlink's over its target, a special file's over nothing, a directory's over
    /// its children's digests in child order.
    fn check_digests(&self, records: &Records, f: &mut Findings) {
        let algo = self.reader.digester();
        for (slot, r) in records {
            let mut input = Vec::new();
            match r.kind {
                Kind::File => r.chunks.iter().for_each(|c| input.extend(c.block_id)),
                Kind::Symlink => input.extend_from_slice(&r.symlink),
                Kind::Dir => {
                    let Ok(children) = self.reader.children(r) else {
                        continue;
                    };
                    for child in children {
                        // A child the walk could not decode is reported already.
                        let Some(c) = records.get(&child) else {
                            input.clear();
                            break;
                        };
                        input.extend(c.inode.i_digest);
                    }
                    if input.is_empty() && r.inode.i_child_count > 0 {
                        continue;
                    }
                }
                _ => {}
            }
            let expected = chunk_digest(algo, &input);
            if expected != r.inode.i_digest {
                f.problem(
                    format!("{}: inode {slot} '{}'", self.what, r.name.escape_ascii()),
                    format!(
                        "digest {}, its {} give {}",
                        hex(&r.inode.i_digest),
                        match r.kind {
                            Kind::File => "chunk digests",
                            Kind::Symlink => "target",
                            Kind::Dir => "children's digests",
                            _ => "(empty) content",
                        },
                        hex(&expected)
                    ),
                );
            }
        }
    }

    /// Every prefetch table entry names an inode of the tree.
    fn check_prefetch(&self, records: &Records, f: &mut Findings) {
        let inos: HashSet<u64> = records.values().map(|r| r.inode.i_ino).collect();
        for &ino in &self.prefetch {
            if !inos.contains(&u64::from(ino)) {
                f.problem(
                    &self.what,
                    format!("prefetch table names inode {ino}, which is not in the tree"),
                );
            }
        }
    }

    /// The blob id of blob table entry `index`: the placeholder means `own`.
    fn blob_id_of(&self, index: u32, own: Option<&str>) -> Option<String> {
        let id = &self.blobs.get(index as usize)?.blob_id;
        match own {
            Some(own) if id == INLINED_BLOB_ID_PLACEHOLDER => Some(own.to_string()),
            _ => Some(id.clone()),
        }
    }

    /// Every chunk record of every file record: inside its blob's extents as the extended blob
    /// table gives them, cut where the file's chunk size says, and, with its blob at hand, the
    /// chunk the blob holds at that index (the same place, the same digest).
    pub fn check_chunks(
        &self,
        records: &Records,
        blobs: &BlobSet,
        own: Option<&str>,
        f: &mut Findings,
    ) {
        let cs = self.reader.chunk_size();
        let mut slots: Vec<&u64> = records.keys().collect();
        slots.sort();
        for slot in slots {
            let r = &records[slot];
            for (k, c) in r.chunks.iter().enumerate() {
                let what = format!(
                    "{}: inode {slot} '{}': chunk {k}",
                    self.what,
                    r.name.escape_ascii()
                );
                let offset = k as u64 * cs;
                let piece = cs.min(r.inode.i_size.saturating_sub(offset));
                if c.file_offset != offset || u64::from(c.uncompressed_size) != piece {
                    f.problem(
                        &what,
                        format!(
                            "{} bytes at file offset {}, the file needs {piece} at {offset}",
                            c.uncompressed_size, c.file_offset
                        ),
                    );
                }
                // nydus-image 2.4 keeps a crc32 in the reserved word, and says so by a flag.
                if c.flags & !(BLOB_CHUNK_FLAG_COMPRESSED | BLOB_CHUNK_FLAG_HAS_CRC32) != 0
                    || (c.reserved != 0 && c.flags & BLOB_CHUNK_FLAG_HAS_CRC32 == 0)
                    || (c.flags & BLOB_CHUNK_FLAG_COMPRESSED == 0
                        && c.compressed_size != c.uncompressed_size)
                {
                    f.problem(
                        &what,
                        format!(
                            "flags {:#x}, reserved {:#x} or sizes {}/{} are not what nydus-image writes",
                            c.flags, c.reserved, c.compressed_size, c.uncompressed_size
                        ),
                    );
                }
                self.check_chunk_in_blob(c, blobs, own, &what, f);
            }
        }
    }

    /// One chunk record against its blob's extended entry and the chunk read from the blob.
    fn check_chunk_in_blob(
        &self,
        c: &RafsV5ChunkInfo,
        blobs: &BlobSet,
        own: Option<&str>,
        what: &str,
        f: &mut Findings,
    ) {
        let Some(id) = self.blob_id_of(c.blob_index, own) else {
            f.problem(
                what,
                format!(
                    "names blob {}, the table has {}",
                    c.blob_index,
                    self.blobs.len()
                ),
            );
            return;
        };
        if let Some(e) = self.ext.get(c.blob_index as usize) {
            let tar_header = if e.features & BLOB_FEATURE_HAS_TAR_HEADER != 0 {
                BlobTarHeader::SIZE as u64
            } else {
                0
            };
            let inside = c.index < e.chunk_count
                && c.uncompressed_offset
                    .checked_add(u64::from(c.uncompressed_size))
                    .is_some_and(|end| end <= e.uncompressed_size)
                && c.compressed_offset
                    .checked_add(u64::from(c.compressed_size) + tar_header)
                    .is_some_and(|end| end <= e.compressed_size);
            if !inside {
                f.problem(
                    what,
                    format!(
                        "index {} at {:#x}+{} ({:#x}+{} stored) lies outside blob {id}'s {} \
                         chunks, {:#x} bytes ({:#x} stored)",
                        c.index,
                        c.uncompressed_offset,
                        c.uncompressed_size,
                        c.compressed_offset,
                        c.compressed_size,
                        e.chunk_count,
                        e.uncompressed_size,
                        e.compressed_size
                    ),
                );
            }
        }
        let Some(blob) = blobs.get(&id) else { return };
        match blob.by_index.get(&c.index) {
            Some((place, chunk)) => {
                if *place != ChunkPlace::of(c) {
                    f.problem(
                        what,
                        format!("differs from blob {id}'s own record of chunk {}", c.index),
                    );
                }
                if chunk.digest != c.block_id {
                    f.problem(
                        what,
                        format!(
                            "digest {} differs from the blob's {}",
                            hex(&c.block_id),
                            hex(&chunk.digest)
                        ),
                    );
                }
            }
            None => f.problem(what, format!("blob {id} holds no chunk {}", c.index)),
        }
    }

    /// Resolve a file's chunks to the sha256 of their bytes (for the comparison with the
    /// source): `None` for a chunk that could not be read or verified.
    pub fn content(&self, e: &Inode, blobs: &BlobSet, own: Option<&str>) -> Vec<Option<[u8; 32]>> {
        e.chunks
            .iter()
            .map(|c| {
                let id = self.blob_id_of(c.blob_index()?, own)?;
                blobs.get(&id)?.by_index.get(&c.ci_index())?.1.sha256
            })
            .collect()
    }
}

/// Where a chunk lies in its blob, as a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkPlace {
    pub compressed_offset: u64,
    pub compressed_size: u32,
    pub uncompressed_offset: u64,
    pub uncompressed_size: u32,
    pub compressed: bool,
}

impl ChunkPlace {
    pub fn of(c: &RafsV5ChunkInfo) -> ChunkPlace {
        ChunkPlace {
            compressed_offset: c.compressed_offset,
            compressed_size: c.compressed_size,
            uncompressed_offset: c.uncompressed_offset,
            uncompressed_size: c.uncompressed_size,
            compressed: c.flags & BLOB_CHUNK_FLAG_COMPRESSED != 0,
        }
    }
}

#[cfg(test)]
mod tests;
