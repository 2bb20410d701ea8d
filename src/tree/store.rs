//! The packed store of a tree: nodes (a name in a directory) and inodes (what names point at),
//! their side tables, and the lookups and edits every merge rule is built from. What the edits
//! mean for an image (whiteouts, hardlinks, symlinked parents) is in [`super::merge`].

use std::collections::BTreeMap;

use crate::blob::chunk::{ChunkIndex, FileData};
use crate::common::error::{Error, Result};
use crate::common::path::ImagePath;
use crate::layer::entry::{InodeData, Metadata};

/// Index of an inode in its [`Tree`].
pub type InodeId = usize;

/// Index of a node (a name in a directory) in its [`Tree`].
pub type NodeId = usize;

/// One inode: shared by all its names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub meta: Metadata,
    pub data: InodeData,
}

impl Inode {
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.data, InodeData::Dir)
    }
}

/// A name in a directory, packed: an image may hold hundreds of thousands of them.
///
/// A directory's children are a list threaded through `first_child` and `next`, newest first,
/// which may still hold names removed or replaced since (`live` false); lookups by name go
/// through the tree's hash index, and listings are sorted when asked for.
#[derive(Clone, Debug)]
pub(super) struct Node {
    /// The name: `name_len` bytes of the tree's name arena from `name_off` (empty for the
    /// root).
    pub(super) name_off: u32,
    pub(super) parent: u32,
    pub(super) inode: u32,
    pub(super) first_child: u32,
    pub(super) next: u32,
    pub(super) name_len: u16,
    /// Whether the name is still in its directory.
    pub(super) live: bool,
}

/// No node (end of a child list).
pub(super) const NO_NODE: u32 = u32::MAX;

/// An inode as the tree keeps it, packed like [`Node`]: what varies in size (symlink targets,
/// chunk lists that are not one run, xattrs) lives in the tree's side tables.
#[derive(Clone, Debug)]
pub(super) struct InodeRec {
    pub(super) mtime: i64,
    /// Regular files: the size.
    pub(super) size: u64,
    /// By kind: a file's first chunk ([`FILE_RUN`]) or where its chunk list starts
    /// ([`FILE_LIST`]), where a symlink target starts, a device's major.
    pub(super) a: u32,
    /// By kind: the number of chunks, the symlink target's length, a device's minor.
    pub(super) b: u32,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime_nsec: u32,
    /// Position + 1 in the xattr table, 0 for none.
    pub(super) xattrs: u32,
    pub(super) kind: u8,
}

// `InodeRec::kind`.
pub(super) const DIR: u8 = 0;
/// A regular file whose chunks are consecutive entries of the chunk table (the usual case:
/// the blob writer numbers a file's chunks as it reads them).
pub(super) const FILE_RUN: u8 = 1;
/// A regular file with any other chunk list, kept in the chunk list table.
pub(super) const FILE_LIST: u8 = 2;
pub(super) const SYMLINK: u8 = 3;
pub(super) const CHAR_DEVICE: u8 = 4;
pub(super) const BLOCK_DEVICE: u8 = 5;
pub(super) const FIFO: u8 = 6;
pub(super) const SOCKET: u8 = 7;

/// An inode of a [`Tree`], borrowed: what [`Inode`] holds, without owning it.
#[derive(Clone, Copy, Debug)]
pub struct InodeRef<'t> {
    pub meta: MetaRef<'t>,
    pub data: DataRef<'t>,
}

/// [`Metadata`], borrowed.
#[derive(Clone, Copy, Debug)]
pub struct MetaRef<'t> {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub xattrs: &'t BTreeMap<Vec<u8>, Vec<u8>>,
}

/// [`InodeData`], borrowed.
#[derive(Clone, Copy, Debug)]
pub enum DataRef<'t> {
    Dir,
    File { size: u64, chunks: Chunks<'t> },
    Symlink(&'t [u8]),
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
    Socket,
}

/// A file's chunk list, borrowed.
#[derive(Clone, Copy, Debug)]
pub enum Chunks<'t> {
    /// `count` consecutive chunks from `first`.
    Run {
        first: ChunkIndex,
        count: u32,
    },
    List(&'t [ChunkIndex]),
}

impl Chunks<'_> {
    /// The chunks, in file order.
    pub fn iter(&self) -> impl Iterator<Item = ChunkIndex> + '_ {
        let (run, list) = match *self {
            Chunks::Run { first, count } => (first..first + count, &[][..]),
            Chunks::List(list) => (0..0, list),
        };
        run.chain(list.iter().copied())
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        match self {
            Chunks::Run { count, .. } => *count as usize,
            Chunks::List(list) => list.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl InodeRef<'_> {
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.data, DataRef::Dir)
    }

    /// An owned copy.
    pub fn to_inode(&self) -> Inode {
        let m = &self.meta;
        Inode {
            meta: Metadata {
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
                mtime: m.mtime,
                mtime_nsec: m.mtime_nsec,
                xattrs: m.xattrs.clone(),
            },
            data: match self.data {
                DataRef::Dir => InodeData::Dir,
                DataRef::File { size, chunks } => InodeData::File(FileData {
                    size,
                    chunks: chunks.iter().collect(),
                }),
                DataRef::Symlink(target) => InodeData::Symlink(target.to_vec()),
                DataRef::CharDevice { major, minor } => InodeData::CharDevice { major, minor },
                DataRef::BlockDevice { major, minor } => InodeData::BlockDevice { major, minor },
                DataRef::Fifo => InodeData::Fifo,
                DataRef::Socket => InodeData::Socket,
            },
        }
    }
}

/// The xattrs of an inode without any.
pub(super) static NO_XATTRS: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();

/// The merged tree of every layer applied so far.
#[derive(Clone, Debug)]
pub struct Tree {
    pub(super) nodes: Vec<Node>,
    /// Every name ever attached, back to back.
    pub(super) names: Vec<u8>,
    /// Hash index of names by (directory, name): node id + 1 of the latest node attached under
    /// that key (live or not), 0 for a free slot. Its length is 0 or a power of two, at most
    /// half full.
    pub(super) index: Vec<u32>,
    /// Used slots of `index`.
    pub(super) indexed: usize,
    pub(super) inodes: Vec<InodeRec>,
    /// Symlink targets, back to back.
    pub(super) targets: Vec<u8>,
    /// Chunk lists of [`FILE_LIST`] files, back to back.
    pub(super) chunk_lists: Vec<ChunkIndex>,
    /// Xattrs of the inodes that have any.
    pub(super) xattrs: Vec<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Default for Tree {
    fn default() -> Tree {
        Tree::new()
    }
}

/// Where to start looking for (`dir`, `name`) in an index of `mask + 1` slots (FxHash-like).
pub(super) fn slot_of(dir: u32, name: &[u8], mask: usize) -> usize {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = u64::from(dir).wrapping_mul(K);
    let mut words = name.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ word).wrapping_mul(K);
    }
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(last) ^ name.len() as u64).wrapping_mul(K);
    (h ^ (h >> 32)) as usize & mask
}

impl Tree {
    /// An image with nothing but its root directory (0755, owned by root).
    pub fn new() -> Tree {
        let mut tree = Tree {
            nodes: vec![Node {
                name_off: 0,
                parent: 0,
                inode: 0,
                first_child: NO_NODE,
                next: NO_NODE,
                name_len: 0,
                live: true,
            }],
            names: Vec::new(),
            index: Vec::new(),
            indexed: 0,
            inodes: Vec::new(),
            targets: Vec::new(),
            chunk_lists: Vec::new(),
            xattrs: Vec::new(),
        };
        tree.push_inode(Metadata::implied_dir(), InodeData::Dir)
            .expect("one inode fits");
        tree
    }

    /// The root directory's node.
    pub fn root(&self) -> NodeId {
        0
    }

    /// The name of a node (empty for the root).
    pub fn name(&self, node: NodeId) -> &[u8] {
        let n = &self.nodes[node];
        &self.names[n.name_off as usize..n.name_off as usize + usize::from(n.name_len)]
    }

    /// The inode a node names.
    pub fn node_inode(&self, node: NodeId) -> InodeId {
        self.nodes[node].inode as InodeId
    }

    /// The directory holding a node (the root is its own parent).
    pub fn parent(&self, node: NodeId) -> NodeId {
        self.nodes[node].parent as NodeId
    }

    /// The entries of a directory, sorted by name bytes (nothing for anything else).
    pub fn children(&self, dir: NodeId) -> Vec<(&[u8], NodeId)> {
        let mut out: Vec<(&[u8], NodeId)> =
            self.live_children(dir).map(|c| (self.name(c), c)).collect();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// The entries of a directory, in no particular order.
    pub(super) fn live_children(&self, dir: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let mut next = self.nodes[dir].first_child;
        std::iter::from_fn(move || {
            while next != NO_NODE {
                let node = next as NodeId;
                next = self.nodes[node].next;
                if self.nodes[node].live {
                    return Some(node);
                }
            }
            None
        })
    }

    /// The entry `name` of directory `dir`.
    pub fn child(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        self.find_slot(dir, name)
            .ok()
            .map(|slot| self.index[slot] as NodeId - 1)
            .filter(|&node| self.nodes[node].live)
    }

    /// The index slot of (`dir`, `name`) (`Ok`), or the free slot where it would go (`Err`).
    pub(super) fn find_slot(&self, dir: NodeId, name: &[u8]) -> Result<usize, usize> {
        if self.index.is_empty() {
            return Err(usize::MAX);
        }
        let mask = self.index.len() - 1;
        let mut slot = slot_of(dir as u32, name, mask);
        loop {
            match self.index[slot] {
                0 => return Err(slot),
                n => {
                    let node = n as NodeId - 1;
                    if self.nodes[node].parent as NodeId == dir && self.name(node) == name {
                        return Ok(slot);
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Index `node` under its directory and name, replacing what had that key.
    pub(super) fn index_node(&mut self, node: NodeId) {
        if (self.indexed + 1) * 2 > self.index.len() {
            self.rehash((self.index.len() * 2).max(64));
        }
        match self.find_slot(self.nodes[node].parent as NodeId, self.name(node)) {
            Ok(slot) => self.index[slot] = node as u32 + 1,
            Err(slot) => {
                self.index[slot] = node as u32 + 1;
                self.indexed += 1;
            }
        }
    }

    /// Rebuild the index with `slots` slots (a power of two).
    pub(super) fn rehash(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.index, vec![0; slots]);
        self.indexed = 0;
        for n in old.into_iter().filter(|&n| n != 0) {
            self.index_node(n as NodeId - 1);
        }
    }

    /// An inode by id.
    pub fn inode(&self, id: InodeId) -> InodeRef<'_> {
        let rec = &self.inodes[id];
        let span = |a: u32, b: u32| a as usize..a as usize + b as usize;
        InodeRef {
            meta: MetaRef {
                mode: rec.mode,
                uid: rec.uid,
                gid: rec.gid,
                mtime: rec.mtime,
                mtime_nsec: rec.mtime_nsec,
                xattrs: match rec.xattrs {
                    0 => &NO_XATTRS,
                    n => &self.xattrs[n as usize - 1],
                },
            },
            data: match rec.kind {
                DIR => DataRef::Dir,
                FILE_RUN => DataRef::File {
                    size: rec.size,
                    chunks: Chunks::Run {
                        first: rec.a,
                        count: rec.b,
                    },
                },
                FILE_LIST => DataRef::File {
                    size: rec.size,
                    chunks: Chunks::List(&self.chunk_lists[span(rec.a, rec.b)]),
                },
                SYMLINK => DataRef::Symlink(&self.targets[span(rec.a, rec.b)]),
                CHAR_DEVICE => DataRef::CharDevice {
                    major: rec.a,
                    minor: rec.b,
                },
                BLOCK_DEVICE => DataRef::BlockDevice {
                    major: rec.a,
                    minor: rec.b,
                },
                FIFO => DataRef::Fifo,
                _ => DataRef::Socket,
            },
        }
    }

    /// Whether an inode is a directory.
    pub(super) fn is_dir_inode(&self, id: InodeId) -> bool {
        self.inodes[id].kind == DIR
    }

    /// Number of nodes ever created, reachable or not ([`NodeId`]s are below this).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of inodes ever created, reachable or not ([`InodeId`]s are below this).
    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// The inode a node names.
    pub fn inode_of(&self, node: NodeId) -> InodeRef<'_> {
        self.inode(self.node_inode(node))
    }

    /// Find the node at `path`, without following symlinks.
    pub fn lookup(&self, path: &ImagePath) -> Option<NodeId> {
        let mut id = self.root();
        for name in path.components() {
            id = self.child(id, name)?;
        }
        Some(id)
    }

    /// How many names each reachable inode has (0 for inodes no longer in the tree). Directories
    /// count once: their `nlink` is derived by the writers from their subdirectories.
    pub fn link_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.inodes.len()];
        let mut stack = vec![self.root()];
        while let Some(id) = stack.pop() {
            counts[self.node_inode(id)] += 1;
            stack.extend(self.live_children(id));
        }
        counts
    }

    /// Apply one layer's entries, in tar order, on top of the tree.
    ///
    /// Errors (a hardlink to a name never seen, an entry below something that is not a
    /// A new name `name` in directory `parent` for `inode`, replacing what had that name.
    pub(super) fn attach(&mut self, parent: NodeId, name: &[u8], inode: InodeId) -> Result<()> {
        if let Some(old) = self.child(parent, name) {
            self.nodes[old].live = false;
        }
        let too_many = || Error::bad_input("image", "more than 2^32 names or 4 GiB of names");
        let node = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&n| n < NO_NODE - 1)
            .ok_or_else(too_many)?;
        let name_off = u32::try_from(self.names.len()).map_err(|_| too_many())?;
        let name_len = u16::try_from(name.len()).map_err(|_| {
            Error::bad_input(
                format!("name '{}'", name.escape_ascii()),
                "longer than 65535 bytes",
            )
        })?;
        self.names.extend_from_slice(name);
        self.nodes.push(Node {
            name_off,
            parent: parent as u32,
            inode: u32::try_from(inode).map_err(|_| too_many())?,
            first_child: NO_NODE,
            next: self.nodes[parent].first_child,
            name_len,
            live: true,
        });
        self.nodes[parent].first_child = node;
        self.index_node(node as NodeId);
        Ok(())
    }

    pub(super) fn push_inode(&mut self, meta: Metadata, data: InodeData) -> Result<InodeId> {
        let too_much =
            || Error::bad_input("image", "more than 4 GiB of symlink targets or chunk lists");
        let (kind, size, a, b) = match data {
            InodeData::Dir => (DIR, 0, 0, 0),
            InodeData::File(f) => {
                let count = u32::try_from(f.chunks.len()).map_err(|_| too_much())?;
                let first = f.chunks.first().copied().unwrap_or(0);
                let run = f
                    .chunks
                    .iter()
                    .enumerate()
                    .all(|(i, &c)| u64::from(c) == u64::from(first) + i as u64);
                if run {
                    (FILE_RUN, f.size, first, count)
                } else {
                    let at = u32::try_from(self.chunk_lists.len()).map_err(|_| too_much())?;
                    self.chunk_lists.extend_from_slice(&f.chunks);
                    (FILE_LIST, f.size, at, count)
                }
            }
            InodeData::Symlink(target) => {
                let at = u32::try_from(self.targets.len()).map_err(|_| too_much())?;
                let len = u32::try_from(target.len()).map_err(|_| too_much())?;
                self.targets.extend_from_slice(&target);
                (SYMLINK, 0, at, len)
            }
            InodeData::CharDevice { major, minor } => (CHAR_DEVICE, 0, major, minor),
            InodeData::BlockDevice { major, minor } => (BLOCK_DEVICE, 0, major, minor),
            InodeData::Fifo => (FIFO, 0, 0, 0),
            InodeData::Socket => (SOCKET, 0, 0, 0),
        };
        let id = self.inodes.len();
        u32::try_from(id).map_err(|_| Error::bad_input("image", "more than 2^32 inodes"))?;
        self.inodes.push(InodeRec {
            mtime: 0,
            size,
            a,
            b,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_nsec: 0,
            xattrs: 0,
            kind,
        });
        self.set_meta(id, meta)?;
        Ok(id)
    }

    /// Give an inode new metadata.
    pub(super) fn set_meta(&mut self, id: InodeId, meta: Metadata) -> Result<()> {
        let rec = &mut self.inodes[id];
        rec.mode = meta.mode;
        rec.uid = meta.uid;
        rec.gid = meta.gid;
        rec.mtime = meta.mtime;
        rec.mtime_nsec = meta.mtime_nsec;
        if meta.xattrs.is_empty() {
            if rec.xattrs != 0 {
                // Left unused in the table: replacing xattrs with none is rare.
                self.xattrs[rec.xattrs as usize - 1] = BTreeMap::new();
                rec.xattrs = 0;
            }
        } else if rec.xattrs != 0 {
            self.xattrs[rec.xattrs as usize - 1] = meta.xattrs;
        } else {
            rec.xattrs = u32::try_from(self.xattrs.len() + 1)
                .map_err(|_| Error::bad_input("image", "more than 2^32 inodes with xattrs"))?;
            self.xattrs.push(meta.xattrs);
        }
        Ok(())
    }
}
