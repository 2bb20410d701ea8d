//! Writing a RAFS v6 bootstrap: the merged tree laid out as EROFS metadata plus the Nydus
//! extended super block, blob table and chunk info table.
//!
//! The layout is computed in full before a byte is written:
//!
//! 1. every directory's dirents are sorted by raw bytes (`.` and `..` included, wherever they
//!    fall) and packed into 4 KiB blocks, which gives its real size;
//! 2. inode records (inode, inline xattrs, then the chunk index array or the inline tail of a
//!    directory or symlink) are placed in walk order, 32-byte aligned, never letting an inline
//!    tail cross a block; a hardlink group gets one record, shared by all its names;
//! 3. full data blocks of directories and symlinks follow the inode area;
//! 4. the chunk info table follows the data blocks, and the file is padded to 4 KiB.
//!
//! Every on-disk structure comes from [`super::ondisk`]; this file only decides where they go.

use super::ondisk::*;
use crate::blob::chunk::{BlobInfo, BlobOptions, ChunkTable, Compressor, Digester};
use crate::blob::ondisk::BLOB_FEATURE_INLINED_CHUNK_DIGEST;
use crate::error::{Error, Result};
use crate::tree::{ChunkIndex, ImagePath, InodeData, NodeId, Tree};

const BLOCK: u64 = EROFS_BLOCK_SIZE;

/// What a bootstrap describes: a tree, the chunks its files use, and the blobs holding them.
pub struct BootstrapInput<'a> {
    pub tree: &'a Tree,
    pub chunks: &'a ChunkTable,
    /// The blob table, in order: a chunk's `blob_index` is its position here.
    pub blobs: &'a [BlobInfo],
    pub options: BlobOptions,
}

/// Where one inode's record goes and what it holds beyond the inode itself.
struct Record {
    node: NodeId,
    /// Offset of the record from the start of the meta area.
    offset: u64,
    xattrs: Vec<u8>,
    /// Directory or symlink content, and how much of it sits inline after the inode.
    data: Vec<u8>,
    inline_tail: usize,
    /// First block (relative to the meta area) of the data's full blocks, if any.
    data_block: Option<u64>,
    nlink: u32,
    ino: u32,
    /// Whether a 32-byte compact inode holds everything (see [`fits_compact`]).
    compact: bool,
}

/// Whether an inode can be compact without losing anything: compact inodes have 16-bit owners
/// and nlink, a 32-bit size and no mtime at all (nydusd shows 0, the kernel `s_build_time`, which
/// is 0 here), so only inodes with mtime exactly 0 qualify. Devices stay extended: nydus keeps
/// no device number in compact inodes.
fn fits_compact(inode: &crate::tree::Inode, nlink: u32, size: u64) -> bool {
    let m = &inode.meta;
    m.mtime == 0
        && m.mtime_nsec == 0
        && m.uid <= 0xffff
        && m.gid <= 0xffff
        && nlink <= 0xffff
        && size <= u64::from(u32::MAX)
        && !matches!(
            inode.data,
            InodeData::CharDevice { .. } | InodeData::BlockDevice { .. }
        )
}

/// Build the bootstrap bytes.
pub fn write(input: &BootstrapInput) -> Result<Vec<u8>> {
    let tree = input.tree;
    let nblobs = input.blobs.len();
    if nblobs > 255 {
        return Err(Error::bad_input(
            "image",
            format!("{nblobs} layers hold data, RAFS v6 addresses at most 255 blobs"),
        ));
    }
    let blob_table_offset =
        (EROFS_DEVTABLE_OFFSET + (RafsV6Device::SIZE * nblobs) as u64).next_multiple_of(BLOCK);
    let blob_table_size = (RafsV6Blob::SIZE * nblobs) as u64;
    // Like the snapshotter's converter (`--prefetch-policy fs` with pattern `/`): a prefetch
    // table holding the root alone, which means "prefetch everything" to nydusd.
    let prefetch_size = if nblobs > 0 { 4 } else { 0 };
    let meta_addr = (blob_table_offset + blob_table_size + prefetch_size).next_multiple_of(BLOCK);
    let meta_blkaddr = block_number(meta_addr / BLOCK)?;

    // Walk: a directory's record, then its non-directory children, then its subdirectories.
    let link_counts = tree.link_counts();
    let mut record_of_inode: Vec<Option<usize>> = vec![None; tree.inode_count()];
    let mut records: Vec<Record> = Vec::new();
    // Parent of every node (the root is its own), indexed by node id.
    let mut parent_of: Vec<NodeId> = vec![NodeId::MAX; tree.node_count()];
    let mut nodes_total: u64 = 0;
    let mut dirs = vec![tree.root()];
    parent_of[tree.root()] = tree.root();
    let mut visit: Vec<NodeId> = Vec::new();
    while let Some(dir) = dirs.pop() {
        visit.push(dir);
        let mut subdirs = Vec::new();
        for &child in tree.node(dir).children.values() {
            parent_of[child] = dir;
            if tree.inode_of(child).is_dir() {
                subdirs.push(child);
            } else {
                visit.push(child);
            }
        }
        // Reverse so that the stack pops subdirectories in name order.
        dirs.extend(subdirs.into_iter().rev());
    }
    let paths = PathNames::new(tree, &parent_of);
    records.reserve_exact(visit.len());
    for &node in &visit {
        nodes_total += 1;
        let inode_id = tree.node(node).inode;
        if record_of_inode[inode_id].is_some() {
            continue; // Another name of a hardlink group already placed.
        }
        record_of_inode[inode_id] = Some(records.len());
        let inode = tree.inode(inode_id);
        let xattrs = encode_xattrs(tree, node, &paths)?;
        let (data, nlink) = match &inode.data {
            InodeData::Dir => {
                let subdirs = tree
                    .node(node)
                    .children
                    .values()
                    .filter(|&&c| tree.inode_of(c).is_dir())
                    .count();
                (Vec::new(), 2 + subdirs as u32)
            }
            InodeData::Symlink(target) => {
                if target.is_empty() {
                    return Err(Error::bad_input(
                        format!("entry '{}'", paths.path(node)),
                        "symlink with an empty target",
                    ));
                }
                (target.clone(), link_counts[inode_id])
            }
            _ => (Vec::new(), link_counts[inode_id]),
        };
        records.push(Record {
            node,
            offset: 0,
            xattrs,
            data,
            inline_tail: 0,
            data_block: None,
            nlink,
            ino: u32::try_from(records.len() + 1)
                .map_err(|_| Error::bad_input("image", "more than 2^32 inodes"))?,
            compact: false,
        });
    }

    // Directory contents depend only on names, so their sizes are known before any nid.
    let dir_blocks: Vec<Option<Vec<DirBlock>>> = records
        .iter()
        .map(|r| {
            tree.inode_of(r.node)
                .is_dir()
                .then(|| pack_dirents(tree, r.node))
        })
        .collect();

    // Pass 1: inode records.
    let mut cursor = BLOCK; // The meta area's first block stays empty: nid 0 breaks readdir.
    for (i, record) in records.iter_mut().enumerate() {
        let inode = tree.inode_of(record.node);
        let d_size = match &dir_blocks[i] {
            Some(blocks) => dir_size(blocks),
            None => record.data.len() as u64,
        };
        let size = match &inode.data {
            InodeData::File(f) => f.size,
            _ => d_size,
        };
        record.compact = fits_compact(inode, record.nlink, size);
        let head = (inode_size(record) + record.xattrs.len()) as u64;
        let tail = d_size % BLOCK;
        if tail != 0 && head + tail <= BLOCK {
            record.inline_tail = tail as usize;
        }
        let body = match &inode.data {
            InodeData::File(f) => {
                let chunks = f.size.div_ceil(u64::from(input.options.chunk_size));
                head.next_multiple_of(8) - head + chunks * RafsV6InodeChunkAddr::SIZE as u64
            }
            _ => record.inline_tail as u64,
        };
        cursor = cursor.next_multiple_of(1 << EROFS_INODE_SLOT_BITS);
        let fixed = head + if record.inline_tail > 0 { body } else { 0 };
        if cursor % BLOCK + fixed > BLOCK && fixed <= BLOCK {
            cursor = cursor.next_multiple_of(BLOCK);
        }
        record.offset = cursor;
        cursor += head + body;
    }
    // Pass 2: full data blocks of directories and symlinks.
    let mut block = cursor.div_ceil(BLOCK);
    for (i, record) in records.iter_mut().enumerate() {
        let d_size = match &dir_blocks[i] {
            Some(blocks) => dir_size(blocks),
            None => record.data.len() as u64,
        };
        let full = (d_size - record.inline_tail as u64).div_ceil(BLOCK);
        if full > 0 {
            record.data_block = Some(block);
            block += full;
        }
    }
    let meta_end = meta_addr + block * BLOCK;

    // The chunk info table: every chunk a file uses, sorted by digest then blob.
    let mut used: Vec<ChunkIndex> = Vec::new();
    for record in &records {
        if let InodeData::File(f) = &tree.inode_of(record.node).data {
            used.extend_from_slice(&f.chunks);
        }
    }
    // A repeated chunk has entries of its own in the chunk table (aliases of the stored one):
    // keep one record per digest and blob, the stored chunk's, which has the lowest index.
    used.sort_unstable_by_key(|&c| {
        let info = input.chunks.get(c);
        (info.digest, info.blob_index, c)
    });
    used.dedup_by_key(|c| {
        let info = input.chunks.get(*c);
        (info.digest, info.blob_index)
    });
    let chunk_table_offset = meta_end;
    let chunk_table_size = (used.len() * RafsV5ChunkInfo::SIZE) as u64;
    let total = (chunk_table_offset + chunk_table_size).next_multiple_of(BLOCK);

    let nid_of = |node: NodeId| -> u64 {
        let r = record_of_inode[tree.node(node).inode].expect("every reachable inode has a record");
        records[r].offset >> EROFS_INODE_SLOT_BITS
    };

    let mut out =
        vec![0u8; usize::try_from(total).map_err(|_| Error::internal("bootstrap too large"))?];
    let mut put = |offset: u64, bytes: &[u8]| {
        let at = offset as usize;
        out[at..at + bytes.len()].copy_from_slice(bytes);
    };

    // Super blocks, device slots, blob table, prefetch table.
    let has_xattr = records.iter().any(|r| !r.xattrs.is_empty());
    let sb = RafsV6SuperBlock {
        s_root_nid: u16::try_from(nid_of(tree.root()))
            .map_err(|_| Error::internal("root nid does not fit 16 bits"))?,
        s_inos: nodes_total,
        s_blocks: block_number(
            input
                .blobs
                .iter()
                .map(|b| b.uncompressed_size / BLOCK)
                .sum(),
        )?,
        s_meta_blkaddr: meta_blkaddr,
        s_extra_devices: nblobs as u16,
        ..RafsV6SuperBlock::default()
    };
    put(EROFS_SUPER_OFFSET, &sb.to_bytes());
    let mut flags = RAFS_SUPER_FLAG_EXPLICIT_UID_GID
        | match input.options.compressor {
            Compressor::None => RAFS_SUPER_FLAG_COMPRESSION_NONE,
            Compressor::Lz4Block => RAFS_SUPER_FLAG_COMPRESSION_LZ4,
            Compressor::Zstd => RAFS_SUPER_FLAG_COMPRESSION_ZSTD,
        }
        | match input.options.digester {
            Digester::Blake3 => RAFS_SUPER_FLAG_HASH_BLAKE3,
            Digester::Sha256 => RAFS_SUPER_FLAG_HASH_SHA256,
        };
    if has_xattr {
        flags |= RAFS_SUPER_FLAG_HAS_XATTR;
    }
    if input
        .blobs
        .iter()
        .all(|b| b.features & BLOB_FEATURE_INLINED_CHUNK_DIGEST != 0)
    {
        flags |= RAFS_SUPER_FLAG_INLINED_CHUNK_DIGEST;
    }
    let ext = RafsV6SuperBlockExt {
        s_flags: flags,
        s_blob_table_offset: blob_table_offset,
        s_blob_table_size: blob_table_size as u32,
        s_chunk_size: input.options.chunk_size,
        s_chunk_table_offset: if chunk_table_size > 0 {
            chunk_table_offset
        } else {
            0
        },
        s_chunk_table_size: chunk_table_size,
        s_prefetch_table_offset: if prefetch_size > 0 {
            blob_table_offset + blob_table_size
        } else {
            0
        },
        s_prefetch_table_size: prefetch_size as u32,
        ..RafsV6SuperBlockExt::default()
    };
    put(RAFS_V6_EXT_SUPER_OFFSET, &ext.to_bytes());
    for (i, blob) in input.blobs.iter().enumerate() {
        let id = blob_id_field(&blob.id)?;
        let device = RafsV6Device {
            blob_id: id,
            blocks: block_number(blob.uncompressed_size / BLOCK)?,
            ..RafsV6Device::default()
        };
        put(
            EROFS_DEVTABLE_OFFSET + (i * RafsV6Device::SIZE) as u64,
            &device.to_bytes(),
        );
        let entry = RafsV6Blob {
            blob_id: id,
            blob_index: i as u32,
            chunk_size: input.options.chunk_size,
            chunk_count: blob.chunk_count,
            compression_algo: input.options.compressor.ondisk_id(),
            digest_algo: input.options.digester.ondisk_id(),
            features: blob.features,
            compressed_size: blob.compressed_size,
            uncompressed_size: blob.uncompressed_size,
            blob_toc_size: blob.toc_size,
            ci_compressor: blob.ci_compressor,
            ci_offset: blob.ci_offset,
            ci_compressed_size: blob.ci_compressed_size,
            ci_uncompressed_size: blob.ci_uncompressed_size,
            blob_toc_digest: blob.toc_digest,
            ..RafsV6Blob::default()
        };
        put(
            blob_table_offset + (i * RafsV6Blob::SIZE) as u64,
            &entry.to_bytes(),
        );
    }
    if prefetch_size > 0 {
        let table = RafsV6PrefetchTable {
            nids: vec![nid_of(tree.root()) as u32],
        };
        put(blob_table_offset + blob_table_size, &table.to_bytes());
    }

    // Inode records and data blocks.
    let chunk_format = RafsV6InodeChunkHeader::new(u64::from(input.options.chunk_size))?.to_u32();
    for (i, record) in records.iter().enumerate() {
        let node = tree.node(record.node);
        let inode = tree.inode(node.inode);
        let at = meta_addr + record.offset;
        let head = inode_size(record) + record.xattrs.len();
        let data: Vec<u8> = match &dir_blocks[i] {
            Some(blocks) => encode_dir(tree, blocks, record.node, &parent_of, &nid_of),
            None => record.data.clone(),
        };
        let layout = match &inode.data {
            InodeData::File(_) => EROFS_INODE_CHUNK_BASED,
            InodeData::Dir | InodeData::Symlink(_) if record.inline_tail > 0 => {
                EROFS_INODE_FLAT_INLINE
            }
            _ => EROFS_INODE_FLAT_PLAIN,
        };
        let (type_bits, size, i_u) = match &inode.data {
            InodeData::Dir => (
                libc::S_IFDIR,
                data.len() as u64,
                data_addr(record, meta_blkaddr),
            ),
            InodeData::Symlink(_) => (
                libc::S_IFLNK,
                data.len() as u64,
                data_addr(record, meta_blkaddr),
            ),
            InodeData::File(f) => (libc::S_IFREG, f.size, chunk_format),
            InodeData::CharDevice { major, minor } => {
                (libc::S_IFCHR, 0, rdev(*major, *minor, &paths, record.node)?)
            }
            InodeData::BlockDevice { major, minor } => {
                (libc::S_IFBLK, 0, rdev(*major, *minor, &paths, record.node)?)
            }
            InodeData::Fifo => (libc::S_IFIFO, 0, 0),
            InodeData::Socket => (libc::S_IFSOCK, 0, 0),
        };
        let i_mode = (type_bits | (inode.meta.mode & 0o7777)) as u16;
        let i_xattr_icount = xattr_icount(record.xattrs.len())?;
        if record.compact {
            // fits_compact() checked that every narrowing below is lossless.
            let disk = RafsV6InodeCompact {
                i_format: i_format(EROFS_INODE_LAYOUT_COMPACT, layout),
                i_xattr_icount,
                i_mode,
                i_nlink: record.nlink as u16,
                i_size: size as u32,
                i_reserved: 0,
                i_u,
                i_ino: record.ino,
                i_uid: inode.meta.uid as u16,
                i_gid: inode.meta.gid as u16,
                i_reserved2: [0; 4],
            };
            put(at, &disk.to_bytes());
        } else {
            let disk = RafsV6InodeExtended {
                i_format: i_format(EROFS_INODE_LAYOUT_EXTENDED, layout),
                i_xattr_icount,
                i_mode,
                i_reserved: 0,
                i_size: size,
                i_u,
                i_ino: record.ino,
                i_uid: inode.meta.uid,
                i_gid: inode.meta.gid,
                // Two's complement: the kernel reads this field as a signed time.
                i_mtime: inode.meta.mtime as u64,
                i_mtime_nsec: inode.meta.mtime_nsec,
                i_nlink: record.nlink,
                i_reserved2: [0; 16],
            };
            put(at, &disk.to_bytes());
        }
        put(at + inode_size(record) as u64, &record.xattrs);
        match &inode.data {
            InodeData::File(f) => {
                let mut pos = (at + head as u64).next_multiple_of(8);
                for &c in &f.chunks {
                    let info = input.chunks.get(c);
                    let blk = block_number(info.uncompressed_offset / BLOCK)?;
                    let addr = RafsV6InodeChunkAddr::new(info.blob_index, info.ci_index, blk)?;
                    put(pos, &addr.to_bytes());
                    pos += RafsV6InodeChunkAddr::SIZE as u64;
                }
            }
            _ => {
                let full_len = data.len() - record.inline_tail;
                if record.inline_tail > 0 {
                    put(at + head as u64, &data[full_len..]);
                }
                if let Some(b) = record.data_block {
                    put(meta_addr + b * BLOCK, &data[..full_len]);
                }
            }
        }
    }

    // Chunk info table.
    for (n, &c) in used.iter().enumerate() {
        let info = input.chunks.get(c);
        let record = RafsV5ChunkInfo {
            block_id: info.digest,
            blob_index: info.blob_index,
            flags: if info.compressed {
                BLOB_CHUNK_FLAG_COMPRESSED
            } else {
                0
            },
            compressed_size: info.compressed_size,
            uncompressed_size: info.uncompressed_size,
            compressed_offset: info.compressed_offset,
            uncompressed_offset: info.uncompressed_offset,
            file_offset: info.file_offset,
            index: info.ci_index,
            reserved: 0,
        };
        put(
            chunk_table_offset + (n * RafsV5ChunkInfo::SIZE) as u64,
            &record.to_bytes(),
        );
    }
    Ok(out)
}

/// Bytes of a record's inode.
fn inode_size(record: &Record) -> usize {
    if record.compact {
        RafsV6InodeCompact::SIZE
    } else {
        RafsV6InodeExtended::SIZE
    }
}

fn block_number(n: u64) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::bad_input("image", "larger than 16 TiB of blocks"))
}

/// `i_u` of a flat directory or symlink: the absolute block of its first full block (0 when
/// everything is inline).
fn data_addr(record: &Record, meta_blkaddr: u32) -> u32 {
    record.data_block.map_or(0, |b| meta_blkaddr + b as u32)
}

fn rdev(major: u32, minor: u32, paths: &PathNames, node: NodeId) -> Result<u32> {
    new_encode_dev(major, minor).ok_or_else(|| {
        Error::bad_input(
            format!("entry '{}'", paths.path(node)),
            format!("device {major}:{minor} does not fit the 32-bit encoding (major ≤ 4095, minor ≤ 1048575)"),
        )
    })
}

/// One 4 KiB directory block: the entries it holds (name, target node or `None` for `.`/`..`).
struct DirBlock<'t> {
    entries: Vec<(&'t [u8], DirTarget)>,
    used: usize,
}

#[derive(Clone, Copy)]
enum DirTarget {
    Itself,
    Parent,
    Child(NodeId),
}

/// Sort a directory's entries and pack them into blocks; an entry never straddles two.
fn pack_dirents(tree: &Tree, dir: NodeId) -> Vec<DirBlock<'_>> {
    let mut entries: Vec<(&[u8], DirTarget)> =
        vec![(b".", DirTarget::Itself), (b"..", DirTarget::Parent)];
    entries.extend(
        tree.node(dir)
            .children
            .iter()
            .map(|(name, &child)| (&name[..], DirTarget::Child(child))),
    );
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut blocks = vec![DirBlock {
        entries: Vec::new(),
        used: 0,
    }];
    for entry in entries {
        let need = RafsV6Dirent::SIZE + entry.0.len();
        let last = blocks.last_mut().expect("at least one block");
        if last.used + need > BLOCK as usize {
            blocks.push(DirBlock {
                entries: Vec::new(),
                used: 0,
            });
        }
        let last = blocks.last_mut().expect("at least one block");
        last.used += need;
        last.entries.push(entry);
    }
    blocks
}

/// A directory's `i_size`: full blocks, plus what the last one uses.
fn dir_size(blocks: &[DirBlock]) -> u64 {
    (blocks.len() as u64 - 1) * BLOCK + blocks.last().map_or(0, |b| b.used as u64)
}

/// The directory's content: each block's dirents then names, blocks padded with zeros except
/// the last, which ends where its names end.
fn encode_dir(
    tree: &Tree,
    blocks: &[DirBlock],
    dir: NodeId,
    parent_of: &[NodeId],
    nid_of: &dyn Fn(NodeId) -> u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(blocks.len() * BLOCK as usize);
    for (i, block) in blocks.iter().enumerate() {
        let start = out.len();
        let mut nameoff = block.entries.len() * RafsV6Dirent::SIZE;
        for (name, target) in &block.entries {
            let node = match target {
                DirTarget::Itself => dir,
                DirTarget::Parent => parent_of[dir],
                DirTarget::Child(c) => *c,
            };
            let file_type = match &tree.inode_of(node).data {
                InodeData::Dir => EROFS_FT_DIR,
                InodeData::File(_) => EROFS_FT_REG_FILE,
                InodeData::Symlink(_) => EROFS_FT_SYMLINK,
                InodeData::CharDevice { .. } => EROFS_FT_CHRDEV,
                InodeData::BlockDevice { .. } => EROFS_FT_BLKDEV,
                InodeData::Fifo => EROFS_FT_FIFO,
                InodeData::Socket => EROFS_FT_SOCK,
            };
            let dirent = RafsV6Dirent {
                e_nid: nid_of(node),
                e_nameoff: nameoff as u16,
                e_file_type: file_type,
                e_reserved: 0,
            };
            out.extend_from_slice(&dirent.to_bytes());
            nameoff += name.len();
        }
        for (name, _) in &block.entries {
            out.extend_from_slice(name);
        }
        if i + 1 < blocks.len() {
            out.resize(start + BLOCK as usize, 0);
        }
    }
    out
}

/// The inline xattr area of a node's inode, entries sorted by name so output is deterministic.
fn encode_xattrs(tree: &Tree, node: NodeId, paths: &PathNames) -> Result<Vec<u8>> {
    let xattrs = &tree.inode_of(node).meta.xattrs;
    if xattrs.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = RafsV6XattrIbodyHeader::default().to_bytes().to_vec();
    for (name, value) in xattrs {
        let what = || {
            format!(
                "entry '{}': xattr '{}'",
                paths.path(node),
                name.escape_ascii()
            )
        };
        let (index, suffix) = xattr_split_name(name).ok_or_else(|| {
            Error::bad_input(
                what(),
                "RAFS v6 stores only user., trusted., security. and POSIX ACL xattrs",
            )
        })?;
        let entry = RafsV6XattrEntry {
            e_name_len: u8::try_from(suffix.len())
                .map_err(|_| Error::bad_input(what(), "name longer than 255 bytes"))?,
            e_name_index: index,
            e_value_size: u16::try_from(value.len())
                .map_err(|_| Error::bad_input(what(), "value longer than 65535 bytes"))?,
        };
        let start = out.len();
        out.extend_from_slice(&entry.to_bytes());
        out.extend_from_slice(suffix);
        out.extend_from_slice(value);
        out.resize(start + entry.record_size(), 0);
    }
    Ok(out)
}

/// Paths of nodes, rebuilt from parent links, for error messages only.
struct PathNames<'a> {
    tree: &'a Tree,
    parent_of: &'a [NodeId],
}

impl<'a> PathNames<'a> {
    fn new(tree: &'a Tree, parent_of: &'a [NodeId]) -> PathNames<'a> {
        PathNames { tree, parent_of }
    }

    fn path(&self, mut node: NodeId) -> ImagePath {
        let mut names = Vec::new();
        while node != self.tree.root() {
            names.push(self.tree.node(node).name.clone());
            node = self.parent_of[node];
        }
        names.iter().rev().fold(ImagePath::root(), |p, n| p.join(n))
    }
}
