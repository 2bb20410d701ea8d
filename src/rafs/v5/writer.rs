//! Writing a RAFS v5 bootstrap: the merged tree as nydus-image `--fs-version 5` lays it out.
//!
//! 1. Inode numbers: the root is 1, a directory's children get consecutive numbers in name
//!    order when the directory is reached, directories are reached depth first (nydus's
//!    `Bootstrap::build_rafs`). Every name gets a record; the further names of a hard-linked
//!    regular file carry the first name's number, and the group's size of links.
//! 2. Inode digests, from the highest number down (children are numbered after their
//!    directory): a file's over its chunk digests, a directory's over its children's.
//! 3. Record offsets, in number order; then the super block, the tables and the records are
//!    written front to back.
//!
//! Per name the layout keeps 4 bytes of number, 4 of first-child number and 32 of digest; the
//! rest (xattr bytes, sizes) is derived again when the record is written. Every on-disk
//! structure comes from [`crate::ondisk::rafs_v5`].

use std::io::Write;
use std::os::unix::fs::FileExt;

use crate::blob::chunk::BlobInfo;
use crate::common::error::{Error, ErrorKind, Result};
use crate::common::path::ImagePath;
use crate::ondisk::rafs_v5::*;
use crate::ondisk::rafs_v6::{new_encode_dev, xattr_split_name};
use crate::rafs::bootstrap::{Bootstrap, BootstrapInput, chunk_record, super_flags};
use crate::tree::{DataRef, NodeId, Tree};

/// A directory's pseudo size counts each child's name plus this (`RAFS_V5_VIRTUAL_ENTRY_SIZE`).
const VIRTUAL_ENTRY_SIZE: u64 = 8;

/// Inode numbers, first children and digests of every name of the tree.
struct Numbering<'t> {
    tree: &'t Tree,
    /// The nodes in number order: number `i + 1` is `order[i]`.
    order: Vec<u32>,
    /// Per position in `order`: a directory's first child's number (the next number when it
    /// has none, as nydus writes it), 0 for the rest.
    first_child: Vec<u32>,
    /// Per position in `order`: a directory's number of children, 0 for the rest.
    child_count: Vec<u32>,
    /// Per position in `order`: the number of the directory holding it (0 for the root).
    parent: Vec<u32>,
    /// Per position in `order`: the inode number its record carries (a hard link group's
    /// first name's).
    ino: Vec<u32>,
    /// Per inode of the tree: how many names it has.
    links: Vec<u32>,
    /// Distinct inodes (`s_inodes_count`).
    inodes: u64,
}

impl<'t> Numbering<'t> {
    fn new(tree: &'t Tree) -> Result<Numbering<'t>> {
        let mut order = vec![to_u32(tree.root())?];
        let mut first_child = vec![0];
        let mut child_count = vec![0];
        let mut parent = vec![0];
        let mut dirs = vec![0usize];
        let mut subdirs = Vec::new();
        while let Some(at) = dirs.pop() {
            let dir = order[at] as NodeId;
            first_child[at] = to_u32(order.len() + 1)?;
            let children = tree.children(dir);
            child_count[at] = to_u32(children.len())?;
            for (_, child) in children {
                if tree.inode_of(child).is_dir() {
                    subdirs.push(order.len());
                }
                order.push(to_u32(child)?);
                first_child.push(0);
                child_count.push(0);
                parent.push(to_u32(at + 1)?);
            }
            // Reversed, so that the stack gives subdirectories back in name order.
            dirs.extend(subdirs.drain(..).rev());
        }
        let links = tree.link_counts();
        let mut group = vec![0u32; tree.inode_count()];
        let mut ino = Vec::with_capacity(order.len());
        let mut inodes = 0;
        for (i, &node) in order.iter().enumerate() {
            let node = node as NodeId;
            let inode = tree.node_inode(node);
            let own = to_u32(i + 1)?;
            let shared = matches!(tree.inode(inode).data, DataRef::File { .. });
            if shared && group[inode] != 0 {
                ino.push(group[inode]);
            } else {
                group[inode] = own;
                ino.push(own);
                inodes += 1;
            }
        }
        Ok(Numbering {
            tree,
            order,
            first_child,
            child_count,
            parent,
            ino,
            links,
            inodes,
        })
    }

    fn node(&self, i: usize) -> NodeId {
        self.order[i] as NodeId
    }

    /// The children of the directory at position `i`, as positions in `order`.
    fn children(&self, i: usize) -> std::ops::Range<usize> {
        let first = self.first_child[i] as usize - 1;
        first..first + self.child_count[i] as usize
    }

    /// `i_nlink` of the name at position `i`: a directory's 2 + subdirectories, a regular
    /// file's number of names, 1 for the rest (their further names are inodes of their own).
    fn nlink(&self, i: usize) -> u32 {
        let tree = self.tree;
        let node = self.node(i);
        match tree.inode_of(node).data {
            DataRef::Dir => {
                let subdirs = self
                    .children(i)
                    .filter(|&c| tree.inode_of(self.node(c)).is_dir())
                    .count();
                2 + subdirs as u32
            }
            DataRef::File { .. } => self.links[tree.node_inode(node)],
            _ => 1,
        }
    }
}

/// The inode digest of every name, in number order (module documentation).
fn digests(numbering: &Numbering, input: &BootstrapInput) -> Vec<[u8; 32]> {
    let tree = numbering.tree;
    let digester = input.options.digester;
    let mut out = vec![[0u8; 32]; numbering.order.len()];
    for i in (0..numbering.order.len()).rev() {
        let mut h = digester.hasher();
        match tree.inode_of(numbering.node(i)).data {
            DataRef::Dir => numbering.children(i).for_each(|c| h.update(&out[c])),
            DataRef::File { chunks, .. } => {
                chunks
                    .iter()
                    .for_each(|c| h.update(&input.chunks.get(c).digest));
            }
            DataRef::Symlink(target) => h.update(target),
            _ => {}
        }
        out[i] = h.finish();
    }
    out
}

/// What one record holds besides its fixed head, derived the same way by the layout and the
/// writing pass.
struct Record {
    inode: RafsV5Inode,
    name: Vec<u8>,
    symlink: Vec<u8>,
    /// The xattr table, empty without xattrs.
    xattrs: Vec<u8>,
}

impl Record {
    fn size(&self) -> u64 {
        let chunks = match self.inode.i_mode & libc::S_IFMT {
            libc::S_IFREG => u64::from(self.inode.i_child_count) * RafsV5ChunkInfo::SIZE as u64,
            _ => 0,
        };
        (self.inode.head_size() + self.xattrs.len()) as u64 + chunks
    }
}

/// The record of the name at position `i` (its digest aside).
fn record(numbering: &Numbering, i: usize, chunk_size: u64) -> Result<Record> {
    let tree = numbering.tree;
    let node = numbering.node(i);
    let inode = tree.inode_of(node);
    let what = || format!("entry '{}'", path_of(tree, node));
    let name = if node == tree.root() {
        b"/".to_vec()
    } else {
        tree.name(node).to_vec()
    };
    let (pairs, pairs_size) = xattr_pairs(tree, node, &what)?;
    let xattrs = if pairs.is_empty() {
        Vec::new()
    } else {
        encode_xattrs(&pairs)?
    };
    let (type_bits, size, child_count, symlink, rdev) = match inode.data {
        DataRef::Dir => {
            let kids = tree.children(node);
            let names: u64 = kids
                .iter()
                .map(|(n, _)| n.len() as u64 + VIRTUAL_ENTRY_SIZE)
                .sum();
            let size = names.next_multiple_of(4096).max(4096);
            (
                libc::S_IFDIR,
                size,
                to_u32(kids.len())?,
                Vec::new(),
                RAFS_V5_NO_RDEV,
            )
        }
        DataRef::File { size, chunks } => {
            debug_assert_eq!(chunks.len() as u64, size.div_ceil(chunk_size));
            (
                libc::S_IFREG,
                size,
                to_u32(chunks.len())?,
                Vec::new(),
                RAFS_V5_NO_RDEV,
            )
        }
        DataRef::Symlink(target) => {
            let len = target.len() as u64;
            (libc::S_IFLNK, len, 0, target.to_vec(), RAFS_V5_NO_RDEV)
        }
        DataRef::CharDevice { major, minor } => {
            (libc::S_IFCHR, 0, 0, Vec::new(), dev(major, minor, &what)?)
        }
        DataRef::BlockDevice { major, minor } => {
            (libc::S_IFBLK, 0, 0, Vec::new(), dev(major, minor, &what)?)
        }
        DataRef::Fifo => (libc::S_IFIFO, 0, 0, Vec::new(), 0),
        DataRef::Socket => (libc::S_IFSOCK, 0, 0, Vec::new(), RAFS_V5_NO_RDEV),
    };
    let own = to_u32(i + 1)?;
    let ino = numbering.ino[i];
    let mut flags = 0;
    if !symlink.is_empty() {
        flags |= RAFS_V5_INODE_FLAG_SYMLINK;
    }
    if ino != own {
        flags |= RAFS_V5_INODE_FLAG_HARDLINK;
    }
    if !xattrs.is_empty() {
        flags |= RAFS_V5_INODE_FLAG_XATTR;
    }
    // A directory's number is its own (only regular files share numbers); the root's parent
    // is 0.
    let parent = u64::from(numbering.parent[i]);
    let disk = RafsV5Inode {
        i_digest: [0; 32],
        i_parent: parent,
        i_ino: u64::from(ino),
        i_uid: inode.meta.uid,
        i_gid: inode.meta.gid,
        i_projid: 0,
        i_mode: type_bits | (inode.meta.mode & 0o7777),
        i_size: size,
        i_blocks: (size + align8(pairs_size) as u64).div_ceil(512),
        i_flags: flags,
        i_nlink: numbering.nlink(i),
        i_child_index: if type_bits == libc::S_IFDIR {
            numbering.first_child[i]
        } else {
            0
        },
        i_child_count: child_count,
        i_name_size: u16::try_from(name.len())
            .ok()
            .filter(|&n| (1..=RAFS_V5_MAX_NAME as u16).contains(&n))
            .ok_or_else(|| Error::bad_input(what(), "name longer than 255 bytes"))?,
        i_symlink_size: u16::try_from(symlink.len())
            .map_err(|_| Error::bad_input(what(), "symlink target longer than 65535 bytes"))?,
        i_rdev: rdev,
        i_mtime_nsec: inode.meta.mtime_nsec,
        // Two's complement, as nydusd reads the field back.
        i_mtime: inode.meta.mtime as u64,
        i_reserved: [0; 8],
    };
    Ok(Record {
        inode: disk,
        name,
        symlink,
        xattrs,
    })
}

/// An inode's xattrs as (full name, value).
type XattrPairs<'t> = Vec<(&'t [u8], &'t [u8])>;

/// The xattrs of a node, sorted by name (deterministic output), checked against what RAFS
/// keeps, and the table's unpadded pair bytes.
fn xattr_pairs<'t>(
    tree: &'t Tree,
    node: NodeId,
    what: &dyn Fn() -> String,
) -> Result<(XattrPairs<'t>, usize)> {
    let mut pairs = Vec::new();
    let mut size = 0;
    for (name, value) in tree.inode_of(node).meta.xattrs {
        if xattr_split_name(name).is_none() {
            return Err(Error::bad_input(
                format!("{}: xattr '{}'", what(), name.escape_ascii()),
                "RAFS stores only user., trusted., security. and POSIX ACL xattrs",
            ));
        }
        size += 4 + name.len() + 1 + value.len();
        pairs.push((name.as_slice(), value.as_slice()));
    }
    Ok((pairs, size))
}

fn dev(major: u32, minor: u32, what: &dyn Fn() -> String) -> Result<u32> {
    new_encode_dev(major, minor).ok_or_else(|| {
        Error::bad_input(
            what(),
            format!("device {major}:{minor} does not fit the 32-bit encoding (major ≤ 4095, minor ≤ 1048575)"),
        )
    })
}

fn to_u32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::bad_input("image", "more than 2^32 names"))
}

/// The path of a node, for error messages.
fn path_of(tree: &Tree, mut node: NodeId) -> ImagePath {
    let mut names = Vec::new();
    while node != tree.root() {
        names.push(tree.name(node));
        node = tree.parent(node);
    }
    names.iter().rev().fold(ImagePath::root(), |p, n| p.join(n))
}

/// Build the RAFS v5 bootstrap, writing it to `out` front to back; returns its size.
pub fn write_to(input: &BootstrapInput, out: &mut dyn Write) -> Result<u64> {
    let tree = input.tree;
    let numbering = Numbering::new(tree)?;
    let digests = digests(&numbering, input);
    let chunk_size = u64::from(input.options.chunk_size);
    let names = numbering.order.len();

    // Tables: inode table, prefetch table (no table without blobs: nothing to fetch), blob
    // table, extended blob table.
    let prefetch: Vec<u32> = if input.blobs.is_empty() {
        Vec::new()
    } else {
        let mut number = vec![0u32; tree.node_count()];
        for (i, &node) in numbering.order.iter().enumerate() {
            number[node as usize] = numbering.ino[i];
        }
        input
            .prefetch
            .nodes(tree)
            .into_iter()
            .map(|n| number[n])
            .collect()
    };
    let prefetch_table = encode_u32_table(&prefetch);
    let ids: Vec<&str> = input.blobs.iter().map(|b| b.id.as_str()).collect();
    let blob_table = encode_blob_table(&ids)?;
    let inode_table_offset = RafsV5SuperBlock::SIZE as u64;
    let prefetch_table_offset = inode_table_offset + align8(4 * names) as u64;
    let blob_table_offset = prefetch_table_offset + prefetch_table.len() as u64;
    let ext_table_offset = blob_table_offset + blob_table.len() as u64;
    let records_offset = ext_table_offset + (RafsV5ExtBlobEntry::SIZE * ids.len()) as u64;

    // Record offsets, in number order.
    let mut inode_table = Vec::with_capacity(names);
    let mut has_xattr = false;
    let mut at = records_offset;
    for i in 0..names {
        let record = record(&numbering, i, chunk_size)?;
        has_xattr |= !record.xattrs.is_empty();
        inode_table.push(
            u32::try_from(at / RAFS_V5_ALIGNMENT as u64)
                .map_err(|_| Error::bad_input("image", "more than 32 GiB of RAFS v5 metadata"))?,
        );
        at += record.size();
    }
    let total = at;

    let sb = RafsV5SuperBlock {
        s_block_size: input.options.chunk_size,
        s_flags: super_flags(input.options, has_xattr),
        s_inodes_count: numbering.inodes,
        s_inode_table_offset: inode_table_offset,
        s_prefetch_table_offset: prefetch_table_offset,
        s_blob_table_offset: blob_table_offset,
        s_inode_table_entries: to_u32(names)?,
        s_prefetch_table_entries: to_u32(prefetch.len())?,
        s_blob_table_size: to_u32(blob_table.len())?,
        s_extended_blob_table_entries: to_u32(ids.len())?,
        s_extended_blob_table_offset: ext_table_offset,
        ..RafsV5SuperBlock::default()
    };
    put(out, &sb.to_bytes())?;
    put(out, &encode_u32_table(&inode_table))?;
    put(out, &prefetch_table)?;
    put(out, &blob_table)?;
    for blob in input.blobs {
        put(out, &ext_entry(blob).to_bytes())?;
    }
    for (i, digest) in digests.iter().enumerate() {
        let mut record = record(&numbering, i, chunk_size)?;
        record.inode.i_digest = *digest;
        write_record(out, &record, numbering.node(i), input)?;
    }
    Ok(total)
}

/// The extended blob table entry of a blob.
fn ext_entry(blob: &BlobInfo) -> RafsV5ExtBlobEntry {
    RafsV5ExtBlobEntry {
        chunk_count: blob.chunk_count,
        features: blob.features,
        uncompressed_size: blob.uncompressed_size,
        compressed_size: blob.compressed_size,
        ..RafsV5ExtBlobEntry::default()
    }
}

/// One record: inode, name, symlink target, xattr table, then a regular file's chunk records.
fn write_record(
    out: &mut dyn Write,
    record: &Record,
    node: NodeId,
    input: &BootstrapInput,
) -> Result<()> {
    put(out, &record.inode.to_bytes())?;
    put(out, &padded(&record.name))?;
    if !record.symlink.is_empty() {
        put(out, &padded(&record.symlink))?;
    }
    put(out, &record.xattrs)?;
    if let DataRef::File { chunks, .. } = input.tree.inode_of(node).data {
        let chunk_size = u64::from(input.options.chunk_size);
        for (n, c) in chunks.iter().enumerate() {
            let info = input.chunks.get(c);
            // This file's offset, whichever file stored the chunk first.
            let chunk = chunk_record(&info, n as u64 * chunk_size, false);
            put(out, &chunk.to_bytes())?;
        }
    }
    Ok(())
}

fn padded(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.resize(align8(out.len()), 0);
    out
}

fn put(out: &mut dyn Write, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes)
        .map_err(|e| Error::new(ErrorKind::Io, format!("writing the bootstrap: {e}")))
}

/// The RAFS v5 part of [`crate::rafs::set_blob_ids`]: the blob table, found through the super
/// block, rewritten with the ids of `blobs` (of the same lengths).
pub fn set_blob_ids(bootstrap: &Bootstrap, blobs: &[BlobInfo]) -> Result<()> {
    let io_error = |e: std::io::Error| {
        Error::new(
            ErrorKind::Io,
            format!("rewriting the bootstrap's blob table: {e}"),
        )
    };
    let mut head = vec![0u8; RafsV5SuperBlock::SIZE];
    bootstrap
        .file
        .read_exact_at(&mut head, 0)
        .map_err(io_error)?;
    let sb = RafsV5SuperBlock::decode(&head)?;
    let ids: Vec<&str> = blobs.iter().map(|b| b.id.as_str()).collect();
    let table = encode_blob_table(&ids)?;
    if table.len() != sb.s_blob_table_size as usize {
        return Err(Error::internal(format!(
            "RAFS v5 blob table of {} bytes replaced by one of {}",
            sb.s_blob_table_size,
            table.len()
        )));
    }
    bootstrap
        .file
        .write_all_at(&table, sb.s_blob_table_offset)
        .map_err(io_error)
}
