//! The filesystem tree: what the image shows once its layers are stacked, built by applying each
//! layer's entries, in order, onto the tree of the layers below.
//!
//! Names and inodes are kept apart, as in a real filesystem: a [`Node`] is a name in a directory,
//! an [`Inode`] is what the name points at. Hardlinks are several nodes sharing one inode, so an
//! upper layer that deletes or replaces one name of a hardlinked file leaves the other names
//! pointing at the old inode, exactly as a container runtime unpacking the layers would.
//!
//! Whiteouts follow the OCI image spec: `.wh.NAME` removes `NAME` from the layers below, and
//! `.wh..wh..opq` empties its directory of everything the layers below put there; neither appears
//! in the tree. Within one layer all whiteouts are applied before any entry is added, so a layer
//! may mark a directory opaque and fill it again, in any order.

pub mod path;

use std::collections::BTreeMap;

pub use path::ImagePath;

use crate::error::{Error, Result};

/// Index of a chunk in the image's chunk table (kept by the blob writer).
pub type ChunkIndex = u32;

/// Index of an [`Inode`] in its [`Tree`].
pub type InodeId = usize;

/// Index of a [`Node`] in its [`Tree`].
pub type NodeId = usize;

/// Prefix of a whiteout entry's name.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Name of the entry that makes its directory opaque.
pub const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";

/// Ownership, permissions, times and xattrs of an inode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Permission bits with setuid, setgid and sticky (`0o7777`); the type is in [`InodeData`].
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, seconds since the epoch (negative before 1970).
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub mtime_nsec: u32,
    /// Extended attributes, full names (`user.x`, `security.capability`) to raw values.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Metadata {
    /// What container runtimes give a directory that a layer implies but never lists: 0755,
    /// owned by root.
    pub fn implied_dir() -> Metadata {
        Metadata {
            mode: 0o755,
            ..Metadata::default()
        }
    }
}

/// The content of a regular file: its size and its chunks, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileData {
    pub size: u64,
    pub chunks: Vec<ChunkIndex>,
}

/// What an inode is, with what only that type has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InodeData {
    Dir,
    File(FileData),
    Symlink(Vec<u8>),
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
    Socket,
}

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

/// A name in a directory.
#[derive(Clone, Debug)]
pub struct Node {
    /// The name (empty for the root).
    pub name: Vec<u8>,
    pub inode: InodeId,
    /// The entries of a directory, sorted by name bytes; empty for everything else.
    pub children: BTreeMap<Vec<u8>, NodeId>,
}

/// What one tar entry of a layer says, already decoded and with its file content chunked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerEntry {
    pub path: ImagePath,
    pub kind: EntryKind,
    pub meta: Metadata,
}

/// The kinds of layer entries: inode types, plus hardlinks, which name an existing inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Inode(InodeData),
    /// Another name for the inode at this path (earlier in this layer or in a lower one).
    Hardlink(ImagePath),
}

/// The merged tree of every layer applied so far.
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: Vec<Node>,
    inodes: Vec<Inode>,
}

impl Default for Tree {
    fn default() -> Tree {
        Tree::new()
    }
}

impl Tree {
    /// An image with nothing but its root directory (0755, owned by root).
    pub fn new() -> Tree {
        Tree {
            nodes: vec![Node {
                name: Vec::new(),
                inode: 0,
                children: BTreeMap::new(),
            }],
            inodes: vec![Inode {
                meta: Metadata::implied_dir(),
                data: InodeData::Dir,
            }],
        }
    }

    /// The root directory's node.
    pub fn root(&self) -> NodeId {
        0
    }

    /// A node by id.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// An inode by id.
    pub fn inode(&self, id: InodeId) -> &Inode {
        &self.inodes[id]
    }

    /// Number of inodes ever created, reachable or not ([`InodeId`]s are below this).
    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// The inode a node names.
    pub fn inode_of(&self, node: NodeId) -> &Inode {
        &self.inodes[self.nodes[node].inode]
    }

    /// Find the node at `path`, without following symlinks.
    pub fn lookup(&self, path: &ImagePath) -> Option<NodeId> {
        let mut id = self.root();
        for name in path.components() {
            id = *self.nodes[id].children.get(name)?;
        }
        Some(id)
    }

    /// How many names each reachable inode has (0 for inodes no longer in the tree). Directories
    /// count once: their `nlink` is derived by the writers from their subdirectories.
    pub fn link_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.inodes.len()];
        let mut stack = vec![self.root()];
        while let Some(id) = stack.pop() {
            let node = &self.nodes[id];
            counts[node.inode] += 1;
            stack.extend(node.children.values().copied());
        }
        counts
    }

    /// Apply one layer's entries, in tar order, on top of the tree.
    ///
    /// Errors (a hardlink to a name never seen, an entry below something that is not a
    /// directory, a root that is not a directory) name the entry; the caller adds the layer.
    pub fn apply(&mut self, entries: Vec<LayerEntry>) -> Result<()> {
        let (whiteouts, entries): (Vec<LayerEntry>, Vec<LayerEntry>) =
            entries.into_iter().partition(|e| {
                e.path
                    .file_name()
                    .is_some_and(|n| n.starts_with(WHITEOUT_PREFIX))
            });
        for whiteout in &whiteouts {
            self.apply_whiteout(&whiteout.path);
        }
        for entry in entries {
            self.add(entry)?;
        }
        Ok(())
    }

    /// Add one layer's entries as they are, whiteouts included as ordinary entries: the tree of
    /// a single layer, as its own bootstrap records it (nydus `--whiteout-spec none`), so that
    /// merging the per-layer bootstraps applies the whiteouts later.
    pub fn add_verbatim(&mut self, entries: Vec<LayerEntry>) -> Result<()> {
        for entry in entries {
            self.add(entry)?;
        }
        Ok(())
    }

    fn apply_whiteout(&mut self, path: &ImagePath) {
        let name = path.file_name().expect("whiteouts have a name");
        let Some(dir) = self.lookup(&path.parent()) else {
            return; // Hides something that does not exist below: nothing to do.
        };
        if name == OPAQUE_WHITEOUT {
            if self.inode_of(dir).is_dir() {
                self.nodes[dir].children.clear();
            }
        } else {
            self.nodes[dir]
                .children
                .remove(&name[WHITEOUT_PREFIX.len()..]);
        }
    }

    fn add(&mut self, entry: LayerEntry) -> Result<()> {
        let LayerEntry { path, kind, meta } = entry;
        let Some(name) = path.file_name().map(<[u8]>::to_vec) else {
            // The root itself: only its metadata can change.
            return match kind {
                EntryKind::Inode(InodeData::Dir) => {
                    self.inodes[self.nodes[0].inode].meta = meta;
                    Ok(())
                }
                _ => Err(Error::bad_input(
                    format!("entry '{path}'"),
                    "the image root must be a directory",
                )),
            };
        };
        let parent = self.make_parents(&path)?;
        let existing = self.nodes[parent].children.get(&name).copied();
        let inode = match kind {
            EntryKind::Hardlink(target) => {
                let found = self.lookup(&target).ok_or_else(|| {
                    Error::bad_input(
                        format!("entry '{path}'"),
                        format!(
                            "hardlink to '{target}', which no earlier entry or lower layer has"
                        ),
                    )
                })?;
                if self.inode_of(found).is_dir() {
                    return Err(Error::bad_input(
                        format!("entry '{path}'"),
                        format!("hardlink to the directory '{target}'"),
                    ));
                }
                if existing == Some(found) {
                    return Ok(()); // A name linked to itself changes nothing.
                }
                self.nodes[found].inode
            }
            EntryKind::Inode(InodeData::Dir) => {
                if let Some(id) = existing.filter(|&id| self.inode_of(id).is_dir()) {
                    // A directory listed again keeps its entries and takes the new metadata.
                    // Its inode is shared by no one (directories have no hardlinks), so update
                    // it in place.
                    let inode = self.nodes[id].inode;
                    self.inodes[inode].meta = meta;
                    return Ok(());
                }
                self.push_inode(meta, InodeData::Dir)
            }
            EntryKind::Inode(data) => self.push_inode(meta, data),
        };
        let node = self.nodes.len();
        self.nodes.push(Node {
            name: name.clone(),
            inode,
            children: BTreeMap::new(),
        });
        self.nodes[parent].children.insert(name, node);
        Ok(())
    }

    fn push_inode(&mut self, meta: Metadata, data: InodeData) -> InodeId {
        self.inodes.push(Inode { meta, data });
        self.inodes.len() - 1
    }

    /// The directory that will hold `path`, creating missing directories as runtimes do.
    fn make_parents(&mut self, path: &ImagePath) -> Result<NodeId> {
        let mut id = self.root();
        let parent = path.parent();
        for (depth, name) in parent.components().iter().enumerate() {
            id = match self.nodes[id].children.get(name).copied() {
                Some(child) if self.inode_of(child).is_dir() => child,
                Some(_) => {
                    let blocker = parent.components()[..=depth]
                        .iter()
                        .fold(ImagePath::root(), |p, c| p.join(c));
                    return Err(Error::bad_input(
                        format!("entry '{path}'"),
                        format!("'{blocker}' is not a directory"),
                    ));
                }
                None => {
                    let inode = self.push_inode(Metadata::implied_dir(), InodeData::Dir);
                    let child = self.nodes.len();
                    self.nodes.push(Node {
                        name: name.clone(),
                        inode,
                        children: BTreeMap::new(),
                    });
                    self.nodes[id].children.insert(name.clone(), child);
                    child
                }
            };
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(mode: u32) -> Metadata {
        Metadata {
            mode,
            ..Metadata::default()
        }
    }

    fn dir(path: &str) -> LayerEntry {
        LayerEntry {
            path: ImagePath::parse(path.as_bytes()).unwrap(),
            kind: EntryKind::Inode(InodeData::Dir),
            meta: meta(0o755),
        }
    }

    fn file(path: &str, size: u64) -> LayerEntry {
        LayerEntry {
            path: ImagePath::parse(path.as_bytes()).unwrap(),
            kind: EntryKind::Inode(InodeData::File(FileData {
                size,
                chunks: vec![],
            })),
            meta: meta(0o644),
        }
    }

    fn link(path: &str, target: &str) -> LayerEntry {
        LayerEntry {
            path: ImagePath::parse(path.as_bytes()).unwrap(),
            kind: EntryKind::Hardlink(ImagePath::parse(target.as_bytes()).unwrap()),
            meta: meta(0o644),
        }
    }

    /// Every path in the tree with its size (files) or "dir"/"other", for compact assertions.
    fn paths(tree: &Tree) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![(tree.root(), String::new())];
        while let Some((id, prefix)) = stack.pop() {
            for (name, &child) in &tree.node(id).children {
                let path = format!("{prefix}/{}", String::from_utf8_lossy(name));
                let what = match &tree.inode_of(child).data {
                    InodeData::File(f) => f.size.to_string(),
                    InodeData::Dir => "dir".into(),
                    _ => "other".into(),
                };
                out.push(format!("{path}:{what}"));
                stack.push((child, path));
            }
        }
        out.sort();
        out
    }

    fn tree_of(layers: Vec<Vec<LayerEntry>>) -> Tree {
        let mut tree = Tree::new();
        for layer in layers {
            tree.apply(layer).unwrap();
        }
        tree
    }

    #[test]
    fn whiteouts_remove_lower_files_and_directories_and_never_appear() {
        let tree = tree_of(vec![
            vec![
                dir("a"),
                file("a/f", 1),
                dir("a/d"),
                file("a/d/x", 2),
                file("keep", 3),
            ],
            vec![
                file("a/.wh.f", 0),
                file("a/.wh.d", 0),
                file(".wh.missing", 0),
            ],
        ]);
        assert_eq!(paths(&tree), ["/a:dir", "/keep:3"]);
    }

    #[test]
    fn opaque_directory_hides_lower_entries_but_keeps_its_own_layer() {
        let tree = tree_of(vec![
            vec![dir("etc"), file("etc/old", 1), file("etc/also-old", 1)],
            // The opaque marker comes after the new entry in tar order: still applied first.
            vec![dir("etc"), file("etc/new", 2), file("etc/.wh..wh..opq", 0)],
        ]);
        assert_eq!(paths(&tree), ["/etc/new:2", "/etc:dir"]);
    }

    #[test]
    fn replacing_directory_by_file_and_file_by_directory() {
        let tree = tree_of(vec![
            vec![dir("d"), file("d/inner", 1), file("f", 1)],
            vec![file("d", 5), dir("f"), file("f/new", 6)],
        ]);
        assert_eq!(paths(&tree), ["/d:5", "/f/new:6", "/f:dir"]);
    }

    #[test]
    fn missing_parents_are_created_and_last_duplicate_wins() {
        let tree = tree_of(vec![vec![file("x/y/z", 1), file("x/y/z", 7)]]);
        assert_eq!(paths(&tree), ["/x/y/z:7", "/x/y:dir", "/x:dir"]);
        let y = tree.lookup(&ImagePath::parse(b"x/y").unwrap()).unwrap();
        assert_eq!(tree.inode_of(y).meta, Metadata::implied_dir());
    }

    #[test]
    fn hardlinks_share_an_inode_until_an_upper_layer_replaces_one_name() {
        let mut tree = tree_of(vec![vec![file("a", 4), link("b", "a")]]);
        let (a, b) = (
            tree.lookup(&ImagePath::parse(b"a").unwrap()).unwrap(),
            tree.lookup(&ImagePath::parse(b"b").unwrap()).unwrap(),
        );
        assert_eq!(tree.node(a).inode, tree.node(b).inode);
        assert_eq!(tree.link_counts()[tree.node(a).inode], 2);

        // An upper layer links to the lower file, then overwrites the original name.
        tree.apply(vec![link("c", "b"), file("a", 9)]).unwrap();
        let counts = tree.link_counts();
        let b_inode = tree
            .node(tree.lookup(&ImagePath::parse(b"b").unwrap()).unwrap())
            .inode;
        assert_eq!(counts[b_inode], 2, "b and c still share the old inode");
        assert_eq!(paths(&tree), ["/a:9", "/b:4", "/c:4"]);
    }

    #[test]
    fn bad_entries_get_errors_naming_them() {
        let mut tree = Tree::new();
        let err = tree.apply(vec![link("x", "nowhere")]).unwrap_err();
        assert!(err.to_string().contains("entry '/x'") && err.to_string().contains("'/nowhere'"));

        let err = tree
            .apply(vec![file("f", 1), file("f/under", 1)])
            .unwrap_err();
        assert!(err.to_string().contains("'/f' is not a directory"), "{err}");

        let err = tree.apply(vec![dir("d"), link("l", "d")]).unwrap_err();
        assert!(
            err.to_string().contains("hardlink to the directory"),
            "{err}"
        );
    }

    #[test]
    fn a_repeated_directory_keeps_its_children_and_takes_new_metadata() {
        let mut tree = tree_of(vec![vec![dir("d"), file("d/f", 1)]]);
        let mut again = dir("d");
        again.meta.mode = 0o700;
        again.meta.xattrs.insert(b"user.k".to_vec(), b"v".to_vec());
        tree.apply(vec![again]).unwrap();
        let d = tree.lookup(&ImagePath::parse(b"d").unwrap()).unwrap();
        assert_eq!(tree.inode_of(d).meta.mode, 0o700);
        assert_eq!(paths(&tree), ["/d/f:1", "/d:dir"]);
    }
}
