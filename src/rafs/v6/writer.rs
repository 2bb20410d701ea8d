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
//! Then the bootstrap is written front to back, as a stream: what the layout keeps per inode is
//! its nid and link count, and per name its place in its directory's sorted list, so that a
//! bootstrap of 200,000 files costs a few MiB to build, not its own size plus a record per inode.
//! Everything else (xattr bytes, dirent blocks, sizes, inline tails) is derived again, by the
//! same functions, when it is written.
//!
//! Every on-disk structure comes from [`crate::ondisk::rafs_v6`]; this file only decides where they go.

use std::io::Write;
use std::os::unix::fs::FileExt;

use crate::blob::chunk::ChunkIndex;
use crate::blob::chunk::{BlobInfo, BlobOptions, CipherKey};
use crate::common::error::{Error, ErrorKind, Result};
use crate::common::path::ImagePath;
use crate::ondisk::blob::BLOB_FEATURE_INLINED_CHUNK_DIGEST;
use crate::ondisk::rafs_v6::*;
use crate::rafs::bootstrap::{Bootstrap, BootstrapInput, chunk_record, super_flags};
use crate::tree::{DataRef, InodeRef, NodeId, Tree};

const BLOCK: u64 = EROFS_BLOCK_SIZE;

/// Where every inode goes: what the writing pass needs and cannot cheaply derive again.
struct Layout<'t> {
    tree: &'t Tree,
    /// The node of each record, in record (walk) order: a hardlink group's first name.
    records: Vec<u32>,
    /// Per inode: its record's nid, 0 for inodes no longer in the tree.
    nid: Vec<u32>,
    /// Per inode: how many names it has (directories: 1, their nlink is derived).
    links: Vec<u32>,
    /// Every directory's children sorted by name, directories in record order, and where
    /// each directory's run starts (one more entry than directories, for the end).
    kids: Vec<u32>,
    kid_start: Vec<u32>,
    /// Number of names (`s_inos`).
    nodes_total: u64,
    has_xattr: bool,
    /// First block (relative to the meta area) of the data blocks area, and the end of the meta
    /// area in blocks.
    first_data_block: u64,
    meta_blocks: u64,
}

/// The shape of one record, derived from the tree the same way by the layout and the writing
/// pass.
struct Shape {
    compact: bool,
    xattrs: Vec<u8>,
    /// Directory or symlink content size.
    d_size: u64,
    /// How much of that content sits inline after the inode.
    inline_tail: usize,
    /// Full data blocks of that content outside the inode area.
    full_blocks: u64,
    nlink: u32,
    /// `i_size`.
    size: u64,
}

impl Shape {
    fn inode_size(&self) -> usize {
        if self.compact {
            RafsV6InodeCompact::SIZE
        } else {
            RafsV6InodeExtended::SIZE
        }
    }

    /// Inode and inline xattrs.
    fn head(&self) -> u64 {
        (self.inode_size() + self.xattrs.len()) as u64
    }
}

impl<'t> Layout<'t> {
    /// Walk the tree (a directory's record, then its non-directory children, then its
    /// subdirectories) and place every record.
    fn new(tree: &'t Tree, chunk_size: u32) -> Result<Layout<'t>> {
        let mut layout = Layout {
            tree,
            records: Vec::new(),
            nid: vec![0; tree.inode_count()],
            links: vec![0; tree.inode_count()],
            kids: Vec::new(),
            kid_start: Vec::new(),
            nodes_total: 0,
            has_xattr: false,
            first_data_block: 0,
            meta_blocks: 0,
        };
        // Record order. `nid` marks placed inodes with 1 until the offsets are known.
        let mut dirs: Vec<NodeId> = vec![tree.root()];
        let mut subdirs = Vec::new();
        while let Some(dir) = dirs.pop() {
            layout.visit(dir)?;
            layout.kid_start.push(to_u32(layout.kids.len())?);
            for (_, child) in tree.children(dir) {
                layout.kids.push(to_u32(child)?);
                if tree.inode_of(child).is_dir() {
                    subdirs.push(child);
                } else {
                    layout.visit(child)?;
                }
            }
            // Reverse so that the stack pops subdirectories in name order.
            dirs.extend(subdirs.drain(..).rev());
        }
        layout.kid_start.push(to_u32(layout.kids.len())?);
        layout.records.shrink_to_fit();
        layout.kids.shrink_to_fit();

        // Pass 1: inode records.
        let mut cursor = BLOCK; // The meta area's first block stays empty: nid 0 breaks readdir.
        let mut dir = 0;
        let mut full_blocks = 0;
        for &node in &layout.records {
            let node = node as NodeId;
            let shape = layout.shape(node, &mut dir)?;
            layout.has_xattr |= !shape.xattrs.is_empty();
            full_blocks += shape.full_blocks;
            let head = shape.head();
            let body = match &tree.inode_of(node).data {
                DataRef::File { size, .. } => {
                    let chunks = size.div_ceil(u64::from(chunk_size));
                    head.next_multiple_of(8) - head + chunks * RafsV6InodeChunkAddr::SIZE as u64
                }
                _ => shape.inline_tail as u64,
            };
            cursor = cursor.next_multiple_of(1 << EROFS_INODE_SLOT_BITS);
            let fixed = head + if shape.inline_tail > 0 { body } else { 0 };
            if cursor % BLOCK + fixed > BLOCK && fixed <= BLOCK {
                cursor = cursor.next_multiple_of(BLOCK);
            }
            layout.nid[tree.node_inode(node)] = u32::try_from(cursor >> EROFS_INODE_SLOT_BITS)
                .map_err(|_| Error::bad_input("image", "more than 128 GiB of metadata"))?;
            cursor += head + body;
        }
        // Pass 2: full data blocks of directories and symlinks, in record order.
        layout.first_data_block = cursor.div_ceil(BLOCK);
        layout.meta_blocks = layout.first_data_block + full_blocks;
        Ok(layout)
    }

    /// Give `node` a record unless its inode (a hardlink group) has one.
    fn visit(&mut self, node: NodeId) -> Result<()> {
        self.nodes_total += 1;
        let inode = self.tree.node_inode(node);
        self.links[inode] += 1;
        if self.nid[inode] == 0 {
            self.nid[inode] = 1;
            self.records.push(to_u32(node)?);
        }
        Ok(())
    }

    /// The sorted children of directory number `dir` (record order).
    fn kids(&self, dir: usize) -> &[u32] {
        &self.kids[self.kid_start[dir] as usize..self.kid_start[dir + 1] as usize]
    }

    /// The nid of the record of `node`'s inode.
    fn nid_of(&self, node: NodeId) -> u64 {
        u64::from(self.nid[self.tree.node_inode(node)])
    }

    /// The shape of `node`'s record; `dir` counts directories in record order and advances
    /// past this one if it is a directory.
    fn shape(&self, node: NodeId, dir: &mut usize) -> Result<Shape> {
        let tree = self.tree;
        let inode_id = tree.node_inode(node);
        let inode = tree.inode(inode_id);
        let xattrs = encode_xattrs(tree, node, &self.paths())?;
        let (d_size, nlink) = match &inode.data {
            DataRef::Dir => {
                let kids = self.kids(*dir);
                *dir += 1;
                let subdirs = kids
                    .iter()
                    .filter(|&&c| tree.inode_of(c as NodeId).is_dir())
                    .count();
                (dir_size(&pack_dirents(tree, kids)), 2 + subdirs as u32)
            }
            DataRef::Symlink(target) => {
                if target.is_empty() {
                    return Err(Error::bad_input(
                        format!("entry '{}'", self.paths().path(node)),
                        "symlink with an empty target",
                    ));
                }
                (target.len() as u64, self.links[inode_id])
            }
            _ => (0, self.links[inode_id]),
        };
        let size = match inode.data {
            DataRef::File { size, .. } => size,
            _ => d_size,
        };
        let mut shape = Shape {
            compact: fits_compact(&inode, nlink, size),
            xattrs,
            d_size,
            inline_tail: 0,
            full_blocks: 0,
            nlink,
            size,
        };
        let tail = d_size % BLOCK;
        if tail != 0 && shape.head() + tail <= BLOCK {
            shape.inline_tail = tail as usize;
        }
        shape.full_blocks = (d_size - shape.inline_tail as u64).div_ceil(BLOCK);
        Ok(shape)
    }

    fn paths(&self) -> PathNames<'_> {
        PathNames { tree: self.tree }
    }
}

fn to_u32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::bad_input("image", "more than 2^32 names or inodes"))
}

/// Whether an inode can be compact without losing anything: compact inodes have 16-bit owners
/// and nlink, a 32-bit size and no mtime at all (nydusd shows 0, the kernel `s_build_time`, which
/// is 0 here), so only inodes with mtime exactly 0 qualify. Devices stay extended: nydus keeps
/// no device number in compact inodes.
fn fits_compact(inode: &InodeRef, nlink: u32, size: u64) -> bool {
    let m = &inode.meta;
    m.mtime == 0
        && m.mtime_nsec == 0
        && m.uid <= 0xffff
        && m.gid <= 0xffff
        && nlink <= 0xffff
        && size <= u64::from(u32::MAX)
        && !matches!(
            inode.data,
            DataRef::CharDevice { .. } | DataRef::BlockDevice { .. }
        )
}

/// Writes the bootstrap front to back: every `put` lands at or after the end of the previous
/// one, and the gaps are zeros.
struct Emit<'w> {
    out: &'w mut dyn Write,
    pos: u64,
}

impl Emit<'_> {
    fn put(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.zeros_to(offset)?;
        self.write(bytes)
    }

    fn zeros_to(&mut self, offset: u64) -> Result<()> {
        if offset < self.pos {
            return Err(Error::internal(format!(
                "bootstrap writer: offset {offset:#x} written after {:#x}",
                self.pos
            )));
        }
        const ZEROS: [u8; 4096] = [0; 4096];
        while self.pos < offset {
            let n = (offset - self.pos).min(ZEROS.len() as u64) as usize;
            self.write(&ZEROS[..n])?;
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::new(ErrorKind::Io, format!("writing the bootstrap: {e}")))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

/// The device slots and the blob table for `blobs`: (offset, bytes) of each entry, in offset
/// order.
fn blob_tables(blobs: &[BlobInfo], options: BlobOptions) -> Result<Vec<(u64, Vec<u8>)>> {
    let blob_table_offset =
        (EROFS_DEVTABLE_OFFSET + (RafsV6Device::SIZE * blobs.len()) as u64).next_multiple_of(BLOCK);
    let ids = blobs
        .iter()
        .map(|b| blob_id_field(&b.id))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(2 * blobs.len());
    for (i, (blob, &id)) in blobs.iter().zip(&ids).enumerate() {
        let device = RafsV6Device {
            blob_id: id,
            blocks: block_number(blob.uncompressed_size / BLOCK)?,
            ..RafsV6Device::default()
        };
        out.push((
            EROFS_DEVTABLE_OFFSET + (i * RafsV6Device::SIZE) as u64,
            device.to_bytes().to_vec(),
        ));
    }
    for (i, (blob, &id)) in blobs.iter().zip(&ids).enumerate() {
        let entry = RafsV6Blob {
            blob_id: id,
            blob_index: i as u32,
            chunk_size: options.chunk_size,
            chunk_count: blob.chunk_count,
            compression_algo: options.compressor.ondisk_id(),
            digest_algo: options.digester.ondisk_id(),
            features: blob.features,
            compressed_size: blob.compressed_size,
            uncompressed_size: blob.uncompressed_size,
            blob_toc_size: blob.toc_size,
            ci_compressor: blob.ci_compressor,
            ci_offset: blob.ci_offset,
            ci_compressed_size: blob.ci_compressed_size,
            ci_uncompressed_size: blob.ci_uncompressed_size,
            blob_toc_digest: blob.toc_digest,
            ..cipher_fields(blob.cipher)
        };
        out.push((
            blob_table_offset + (i * RafsV6Blob::SIZE) as u64,
            entry.to_bytes().to_vec(),
        ));
    }
    Ok(out)
}

/// The blob table fields that hold an encrypted blob's key and IV, where nydus keeps them (the
/// zran fields, unused by such a blob); the rest default.
fn cipher_fields(cipher: Option<CipherKey>) -> RafsV6Blob {
    match cipher {
        None => RafsV6Blob::default(),
        Some(c) => RafsV6Blob {
            blob_meta_digest: c.key,
            blob_meta_size: u64::from_le_bytes(c.iv[..8].try_into().expect("8 bytes")),
            cipher_iv: c.iv[8..].try_into().expect("8 bytes"),
            cipher_algo: CIPHER_AES128_XTS,
            ..RafsV6Blob::default()
        },
    }
}

/// The RAFS v6 part of [`crate::rafs::set_blob_ids`]: the device slots and the blob table.
pub fn set_blob_ids(bootstrap: &Bootstrap, blobs: &[BlobInfo], options: BlobOptions) -> Result<()> {
    for (offset, bytes) in blob_tables(blobs, options)? {
        bootstrap.file.write_all_at(&bytes, offset).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("writing the bootstrap's blob table: {e}"),
            )
        })?;
    }
    Ok(())
}

/// Build the RAFS v6 bootstrap, writing it to `out` front to back; returns its size.
pub fn write_to(input: &BootstrapInput, out: &mut dyn Write) -> Result<u64> {
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
    // Like the snapshotter's converter (`--prefetch-policy fs`): the patterns' inodes, by
    // default the root alone, which means "prefetch everything" to nydusd; no table without
    // blobs (nothing to fetch).
    let prefetch = if nblobs > 0 {
        input.prefetch.nodes(tree)
    } else {
        Vec::new()
    };
    let prefetch_size = 4 * prefetch.len() as u64;
    let meta_addr = (blob_table_offset + blob_table_size + prefetch_size).next_multiple_of(BLOCK);
    let meta_blkaddr = block_number(meta_addr / BLOCK)?;

    let layout = Layout::new(tree, input.options.chunk_size)?;
    let meta_end = meta_addr + layout.meta_blocks * BLOCK;

    // The chunk info table: every chunk a file uses, sorted by digest then blob.
    let mut used: Vec<ChunkIndex> = Vec::new();
    for &node in &layout.records {
        if let DataRef::File { chunks, .. } = tree.inode_of(node as NodeId).data {
            used.extend(chunks.iter());
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
    used.shrink_to_fit();
    let chunk_table_offset = meta_end;
    let chunk_table_size = (used.len() * RafsV5ChunkInfo::SIZE) as u64;
    let total = (chunk_table_offset + chunk_table_size).next_multiple_of(BLOCK);

    let mut out = Emit { out, pos: 0 };

    // Super blocks, device slots, blob table, prefetch table.
    let root_nid = layout.nid_of(tree.root());
    let sb = RafsV6SuperBlock {
        s_root_nid: u16::try_from(root_nid)
            .map_err(|_| Error::internal("root nid does not fit 16 bits"))?,
        s_inos: layout.nodes_total,
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
    out.put(EROFS_SUPER_OFFSET, &sb.to_bytes())?;
    let mut flags = super_flags(input.options, layout.has_xattr);
    if input
        .blobs
        .iter()
        .all(|b| b.features & BLOB_FEATURE_INLINED_CHUNK_DIGEST != 0)
    {
        flags |= RAFS_SUPER_FLAG_INLINED_CHUNK_DIGEST;
    }
    if input.options.encrypt {
        flags |= RAFS_SUPER_FLAG_ENCRYPTION_AES_128_XTS;
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
    out.put(RAFS_V6_EXT_SUPER_OFFSET, &ext.to_bytes())?;
    for (offset, bytes) in blob_tables(input.blobs, input.options)? {
        out.put(offset, &bytes)?;
    }
    if prefetch_size > 0 {
        let table = RafsV6PrefetchTable {
            nids: prefetch.iter().map(|&n| layout.nid_of(n) as u32).collect(),
        };
        out.put(blob_table_offset + blob_table_size, &table.to_bytes())?;
    }

    // Inode records, with inline tails.
    let chunk_format = RafsV6InodeChunkHeader::new(u64::from(input.options.chunk_size))?.to_u32();
    let mut buf = Vec::new();
    let mut dir = 0;
    let mut next_block = layout.first_data_block;
    for (record, &node) in layout.records.iter().enumerate() {
        let node = node as NodeId;
        let this_dir = dir;
        let shape = layout.shape(node, &mut dir)?;
        let inode = tree.inode_of(node);
        let at = meta_addr + (layout.nid_of(node) << EROFS_INODE_SLOT_BITS);
        let head = shape.head();
        let data_block = (shape.full_blocks > 0).then(|| {
            let block = next_block;
            next_block += shape.full_blocks;
            block
        });
        // `i_u` of a flat directory or symlink: the absolute block of its first full block (0
        // when everything is inline).
        let data_addr = data_block.map_or(Ok(0), |b| block_number(u64::from(meta_blkaddr) + b))?;
        let layout_bits = match &inode.data {
            DataRef::File { .. } => EROFS_INODE_CHUNK_BASED,
            DataRef::Dir | DataRef::Symlink(_) if shape.inline_tail > 0 => EROFS_INODE_FLAT_INLINE,
            _ => EROFS_INODE_FLAT_PLAIN,
        };
        let (type_bits, i_u) = match &inode.data {
            DataRef::Dir => (libc::S_IFDIR, data_addr),
            DataRef::Symlink(_) => (libc::S_IFLNK, data_addr),
            DataRef::File { .. } => (libc::S_IFREG, chunk_format),
            DataRef::CharDevice { major, minor } => {
                (libc::S_IFCHR, rdev(*major, *minor, &layout.paths(), node)?)
            }
            DataRef::BlockDevice { major, minor } => {
                (libc::S_IFBLK, rdev(*major, *minor, &layout.paths(), node)?)
            }
            DataRef::Fifo => (libc::S_IFIFO, 0),
            DataRef::Socket => (libc::S_IFSOCK, 0),
        };
        let i_mode = (type_bits | (inode.meta.mode & 0o7777)) as u16;
        let i_xattr_icount = xattr_icount(shape.xattrs.len())?;
        // `i_ino`: the record's position in record order, from 1.
        let ino = to_u32(record + 1)?;
        if shape.compact {
            // fits_compact() checked that every narrowing below is lossless.
            let disk = RafsV6InodeCompact {
                i_format: i_format(EROFS_INODE_LAYOUT_COMPACT, layout_bits),
                i_xattr_icount,
                i_mode,
                i_nlink: shape.nlink as u16,
                i_size: shape.size as u32,
                i_reserved: 0,
                i_u,
                i_ino: ino,
                i_uid: inode.meta.uid as u16,
                i_gid: inode.meta.gid as u16,
                i_reserved2: [0; 4],
            };
            out.put(at, &disk.to_bytes())?;
        } else {
            let disk = RafsV6InodeExtended {
                i_format: i_format(EROFS_INODE_LAYOUT_EXTENDED, layout_bits),
                i_xattr_icount,
                i_mode,
                i_reserved: 0,
                i_size: shape.size,
                i_u,
                i_ino: ino,
                i_uid: inode.meta.uid,
                i_gid: inode.meta.gid,
                // Two's complement: the kernel reads this field as a signed time.
                i_mtime: inode.meta.mtime as u64,
                i_mtime_nsec: inode.meta.mtime_nsec,
                i_nlink: shape.nlink,
                i_reserved2: [0; 16],
            };
            out.put(at, &disk.to_bytes())?;
        }
        out.put(at + shape.inode_size() as u64, &shape.xattrs)?;
        match &inode.data {
            DataRef::File { chunks, .. } => {
                let mut pos = (at + head).next_multiple_of(8);
                for c in chunks.iter() {
                    let info = input.chunks.get(c);
                    let blk = block_number(info.uncompressed_offset / BLOCK)?;
                    let addr = RafsV6InodeChunkAddr::new(info.blob_index, info.ci_index, blk)?;
                    out.put(pos, &addr.to_bytes())?;
                    pos += RafsV6InodeChunkAddr::SIZE as u64;
                }
            }
            _ if shape.inline_tail > 0 => {
                content(&layout, node, this_dir, &shape, Part::Tail, &mut buf);
                out.put(at + head, &buf)?;
            }
            _ => {}
        }
    }

    // Full data blocks of directories and symlinks, in record order.
    let mut dir = 0;
    let mut next_block = layout.first_data_block;
    for &node in &layout.records {
        let node = node as NodeId;
        if !matches!(tree.inode_of(node).data, DataRef::Dir | DataRef::Symlink(_)) {
            continue;
        }
        let this_dir = dir;
        let shape = layout.shape(node, &mut dir)?;
        if shape.full_blocks > 0 {
            content(&layout, node, this_dir, &shape, Part::Blocks, &mut buf);
            out.put(meta_addr + next_block * BLOCK, &buf)?;
            next_block += shape.full_blocks;
        }
    }
    debug_assert_eq!(next_block, layout.meta_blocks);

    // Chunk info table.
    out.zeros_to(chunk_table_offset)?;
    for &c in &used {
        let info = input.chunks.get(c);
        let record = chunk_record(&info, info.file_offset, input.options.encrypt);
        out.write(&record.to_bytes())?;
    }
    out.zeros_to(total)?;
    Ok(total)
}

/// Which part of a directory's or symlink's content.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// What sits inline after the inode.
    Tail,
    /// The full blocks outside the inode area.
    Blocks,
}

/// Put one part of the content of `node` (a directory, number `dir` in record order, or a
/// symlink) into `buf`.
fn content(
    layout: &Layout,
    node: NodeId,
    dir: usize,
    shape: &Shape,
    part: Part,
    buf: &mut Vec<u8>,
) {
    buf.clear();
    let tree = layout.tree;
    let full_len = (shape.d_size - shape.inline_tail as u64) as usize;
    match &tree.inode_of(node).data {
        DataRef::Symlink(target) => buf.extend_from_slice(match part {
            Part::Tail => &target[full_len..],
            Part::Blocks => &target[..full_len],
        }),
        _ => {
            let blocks = pack_dirents(tree, layout.kids(dir));
            // The inline tail is the last block (it ends where its names end); without one,
            // every block goes out of line.
            let range = match (part, shape.inline_tail > 0) {
                (Part::Tail, _) => blocks.len() - 1..blocks.len(),
                (Part::Blocks, true) => 0..blocks.len() - 1,
                (Part::Blocks, false) => 0..blocks.len(),
            };
            let parent = tree.parent(node);
            for i in range {
                encode_dir_block(layout, &blocks[i], node, parent, buf);
                if i + 1 < blocks.len() {
                    buf.resize(buf.len().next_multiple_of(BLOCK as usize), 0);
                }
            }
        }
    }
}

fn block_number(n: u64) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::bad_input("image", "larger than 16 TiB of blocks"))
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

/// Sort a directory's entries (its children, sorted by name, with `.` and `..`) and pack them
/// into blocks; an entry never straddles two.
fn pack_dirents<'t>(tree: &'t Tree, kids: &[u32]) -> Vec<DirBlock<'t>> {
    let mut entries: Vec<(&[u8], DirTarget)> = Vec::with_capacity(kids.len() + 2);
    entries.push((b".", DirTarget::Itself));
    entries.push((b"..", DirTarget::Parent));
    entries.extend(
        kids.iter()
            .map(|&c| (tree.name(c as NodeId), DirTarget::Child(c as NodeId))),
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

/// One block of a directory's content onto `out`: its dirents then its names (not padded).
fn encode_dir_block(
    layout: &Layout,
    block: &DirBlock,
    dir: NodeId,
    parent: NodeId,
    out: &mut Vec<u8>,
) {
    let tree = layout.tree;
    let mut nameoff = block.entries.len() * RafsV6Dirent::SIZE;
    for (name, target) in &block.entries {
        let node = match target {
            DirTarget::Itself => dir,
            DirTarget::Parent => parent,
            DirTarget::Child(c) => *c,
        };
        let file_type = match &tree.inode_of(node).data {
            DataRef::Dir => EROFS_FT_DIR,
            DataRef::File { .. } => EROFS_FT_REG_FILE,
            DataRef::Symlink(_) => EROFS_FT_SYMLINK,
            DataRef::CharDevice { .. } => EROFS_FT_CHRDEV,
            DataRef::BlockDevice { .. } => EROFS_FT_BLKDEV,
            DataRef::Fifo => EROFS_FT_FIFO,
            DataRef::Socket => EROFS_FT_SOCK,
        };
        let dirent = RafsV6Dirent {
            e_nid: layout.nid_of(node),
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
}

/// The inline xattr area of a node's inode, entries sorted by name so output is deterministic.
fn encode_xattrs(tree: &Tree, node: NodeId, paths: &PathNames) -> Result<Vec<u8>> {
    let xattrs = tree.inode_of(node).meta.xattrs;
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

/// Paths of nodes, for error messages only.
struct PathNames<'a> {
    tree: &'a Tree,
}

impl PathNames<'_> {
    fn path(&self, mut node: NodeId) -> ImagePath {
        let tree = self.tree;
        let mut names = Vec::new();
        while node != tree.root() {
            names.push(tree.name(node));
            node = tree.parent(node);
        }
        names.iter().rev().fold(ImagePath::root(), |p, n| p.join(n))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::blob::chunk::ChunkTable;
    use crate::layer::entry::{EntryKind, LayerEntry, Metadata};
    use crate::rafs::bootstrap::Prefetch;
    use crate::rafs::{set_blob_ids, write, write_temp};

    #[test]
    fn a_bootstrap_in_a_file_is_the_bootstrap_in_memory() {
        let mut tree = Tree::new();
        let entries = (0..2000)
            .map(|n| LayerEntry {
                path: ImagePath::parse(format!("d{}/some-longer-name-{n}", n % 7).as_bytes())
                    .unwrap(),
                kind: EntryKind::Inode(crate::layer::entry::InodeData::Symlink(b"target".to_vec())),
                meta: Metadata {
                    mode: 0o777,
                    ..Metadata::default()
                },
            })
            .collect();
        tree.apply(entries).unwrap();
        let input = BootstrapInput {
            tree: &tree,
            chunks: &ChunkTable::new(),
            blobs: &[],
            options: BlobOptions::default(),
            prefetch: &Prefetch::Root,
        };
        let bytes = write(&input).unwrap();
        let file = write_temp(&input, &std::env::temp_dir()).unwrap();
        assert_eq!(file.len(), bytes.len() as u64);
        assert_eq!(file.to_vec().unwrap(), bytes);
        let mapped = file.map().unwrap();
        // Read it twice, slowly, while its pages are being dropped.
        for _ in 0..2 {
            for (a, b) in mapped.chunks(4096).zip(bytes.chunks(4096)) {
                assert_eq!(a, b);
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    #[test]
    fn blob_ids_set_afterwards_give_the_bootstrap_written_with_them() {
        let tree = Tree::new();
        let blob = |id: char| BlobInfo {
            id: id.to_string().repeat(64),
            chunk_count: 3,
            compressed_size: 3 << 12,
            uncompressed_size: 3 << 12,
            features: BLOB_FEATURE_INLINED_CHUNK_DIGEST,
            ci_compressor: 0,
            ci_offset: 3 << 12,
            ci_compressed_size: 48,
            ci_uncompressed_size: 48,
            toc_size: 0,
            toc_digest: [7; 32],
            cipher: None,
        };
        let chunks = ChunkTable::new();
        let input = |blobs| BootstrapInput {
            tree: &tree,
            chunks: &chunks,
            blobs,
            options: BlobOptions::default(),
            prefetch: &Prefetch::Root,
        };
        let real = [blob('a'), blob('b')];
        let placeholder = [blob('a'), blob('0')];
        let early = write_temp(&input(&placeholder), &std::env::temp_dir()).unwrap();
        assert_ne!(early.to_vec().unwrap(), write(&input(&real)).unwrap());
        set_blob_ids(&early, &real, BlobOptions::default()).unwrap();
        assert_eq!(early.to_vec().unwrap(), write(&input(&real)).unwrap());
    }
}
