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

    /// Number of nodes ever created, reachable or not ([`NodeId`]s are below this).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
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
            self.apply_whiteout(&whiteout.path)?;
        }
        for entry in entries {
            self.add(entry)?;
        }
        Ok(())
    }

    /// Add one layer's entries as they are, whiteouts included as ordinary entries: the tree of
    /// a single layer, as its own bootstrap records it (nydus `--whiteout-spec none`), so that
    /// merging the per-layer bootstraps applies the whiteouts later.
    ///
    /// A hardlink to a file of a lower layer fails here; use
    /// [`add_verbatim_over`](Tree::add_verbatim_over) for layers above the first.
    pub fn add_verbatim(&mut self, entries: Vec<LayerEntry>) -> Result<()> {
        self.add_verbatim_over(entries, &Tree::new())
    }

    /// [`add_verbatim`](Tree::add_verbatim) for a layer on top of `lower` (the merged tree of
    /// the layers below): a hardlink to a file that only `lower` has becomes, in this layer's
    /// tree, a file of its own with the lower file's metadata and chunks (later links to the
    /// same lower file share it). A layer's own bootstrap cannot name an inode of another
    /// bootstrap; the merged tree keeps the real hardlink.
    pub fn add_verbatim_over(&mut self, entries: Vec<LayerEntry>, lower: &Tree) -> Result<()> {
        let mut copies: BTreeMap<InodeId, InodeId> = BTreeMap::new();
        for mut entry in entries {
            if let EntryKind::Hardlink(target) = &entry.kind
                && self.resolve_link_target(target)?.is_none()
                && let Some(found) = lower.resolve_link_target(target)?
            {
                let lower_inode = lower.nodes[found].inode;
                if let Some(&copy) = copies.get(&lower_inode) {
                    self.link_inode(&entry.path, copy)?;
                    continue;
                }
                let inode = lower.inodes[lower_inode].clone();
                entry.meta = inode.meta;
                entry.kind = EntryKind::Inode(inode.data);
                self.add(entry.clone())?;
                let node = self.resolve_link_target(&entry.path)?.expect("just added");
                copies.insert(lower_inode, self.nodes[node].inode);
                continue;
            }
            self.add(entry)?;
        }
        Ok(())
    }

    fn apply_whiteout(&mut self, path: &ImagePath) -> Result<()> {
        let name = path.file_name().expect("whiteouts have a name");
        let Some(dir) = self.resolve_dir(path, false)? else {
            return Ok(()); // Hides something that does not exist below: nothing to do.
        };
        if name == OPAQUE_WHITEOUT {
            self.nodes[dir].children.clear();
        } else {
            self.nodes[dir]
                .children
                .remove(&name[WHITEOUT_PREFIX.len()..]);
        }
        Ok(())
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
                let found = self.resolve_link_target(&target)?.ok_or_else(|| {
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
        self.attach(parent, name, inode);
        Ok(())
    }

    /// A new name `name` in directory `parent` for `inode`, replacing what had that name.
    fn attach(&mut self, parent: NodeId, name: Vec<u8>, inode: InodeId) {
        let node = self.nodes.len();
        self.nodes.push(Node {
            name: name.clone(),
            inode,
            children: BTreeMap::new(),
        });
        self.nodes[parent].children.insert(name, node);
    }

    fn push_inode(&mut self, meta: Metadata, data: InodeData) -> InodeId {
        self.inodes.push(Inode { meta, data });
        self.inodes.len() - 1
    }

    /// The directory that will hold `path`, creating missing directories as runtimes do.
    fn make_parents(&mut self, path: &ImagePath) -> Result<NodeId> {
        Ok(self.resolve_dir(path, true)?.expect("created"))
    }

    /// Another name for an inode, at `path`.
    fn link_inode(&mut self, path: &ImagePath, inode: InodeId) -> Result<()> {
        let name = path.file_name().expect("a link has a name").to_vec();
        let parent = self.make_parents(path)?;
        self.attach(parent, name, inode);
        Ok(())
    }

    /// The node a hardlink's target names: its parent directories resolved as for any entry,
    /// the last component itself not followed (a hardlink to a symlink links the symlink, as
    /// `link(2)` and umoci do).
    fn resolve_link_target(&self, target: &ImagePath) -> Result<Option<NodeId>> {
        let Some(name) = target.file_name() else {
            return Ok(Some(self.root()));
        };
        let found = self.walk_dir(target, &mut |_, _| {})?;
        Ok(found.and_then(|dir| self.nodes[dir].children.get(name).copied()))
    }

    /// The directory holding `path`'s last component, resolved as container runtimes resolve
    /// an entry's parent (containerd's `fs.RootPath`, umoci's `SecureJoin`): a symlink among the
    /// parents is followed, inside the image (an absolute target starts again at the root, `..`
    /// stops at the root), so `link/file` under `link -> dir` lands in `dir/file`. Missing
    /// directories are created (with `create`; otherwise the answer is `None`). A parent that
    /// is neither a directory nor a symlink, and a symlink loop, are errors naming the entry.
    fn resolve_dir(&mut self, path: &ImagePath, create: bool) -> Result<Option<NodeId>> {
        if !create {
            return self.walk_dir(path, &mut |_, _| {});
        }
        // Walk again after creating each missing directory the walk stopped at.
        loop {
            let mut missing = None;
            let found = self.walk_dir(path, &mut |dir, name| {
                missing = Some((dir, name.to_vec()));
            })?;
            if let Some(dir) = found {
                return Ok(Some(dir));
            }
            let (dir, name) = missing.expect("a walk stops only at a missing directory");
            let inode = self.push_inode(Metadata::implied_dir(), InodeData::Dir);
            let child = self.nodes.len();
            self.nodes.push(Node {
                name: name.clone(),
                inode,
                children: BTreeMap::new(),
            });
            self.nodes[dir].children.insert(name, child);
        }
    }

    /// The walk of [`resolve_dir`](Tree::resolve_dir), read-only: `missing(dir, name)` is told of
    /// the first directory that does not exist, and the walk gives `None` there.
    fn walk_dir(
        &self,
        path: &ImagePath,
        missing: &mut dyn FnMut(NodeId, &[u8]),
    ) -> Result<Option<NodeId>> {
        /// Linux's limit on symlinks followed in one lookup (`MAXSYMLINKS`).
        const MAX_FOLLOWS: usize = 40;
        let parents = path.parent();
        let mut todo: std::collections::VecDeque<Vec<u8>> =
            parents.components().map(<[u8]>::to_vec).collect();
        let mut stack = vec![self.root()];
        let mut follows = 0;
        while let Some(name) = todo.pop_front() {
            match &name[..] {
                b"" | b"." => continue,
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let dir = *stack.last().expect("the root stays");
            let Some(&child) = self.nodes[dir].children.get(&name) else {
                missing(dir, &name);
                return Ok(None);
            };
            match &self.inode_of(child).data {
                InodeData::Dir => stack.push(child),
                InodeData::Symlink(target) => {
                    follows += 1;
                    if follows > MAX_FOLLOWS {
                        return Err(Error::bad_input(
                            format!("entry '{path}'"),
                            format!(
                                "a symlink loop in its parent directories (more than {MAX_FOLLOWS} symlinks followed, at '{}')",
                                self.stack_path(&stack, &name)
                            ),
                        ));
                    }
                    if target.starts_with(b"/") {
                        stack.truncate(1);
                    }
                    for part in target.split(|&b| b == b'/').rev() {
                        todo.push_front(part.to_vec());
                    }
                }
                _ => {
                    return Err(Error::bad_input(
                        format!("entry '{path}'"),
                        format!("'{}' is not a directory", self.stack_path(&stack, &name)),
                    ));
                }
            }
        }
        Ok(Some(*stack.last().expect("the root stays")))
    }

    /// The path of the directory at the top of a walk's stack, joined with `name`.
    fn stack_path(&self, stack: &[NodeId], name: &[u8]) -> ImagePath {
        stack[1..]
            .iter()
            .fold(ImagePath::root(), |p, &id| p.join(&self.nodes[id].name))
            .join(name)
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

    fn symlink(path: &str, target: &str) -> LayerEntry {
        LayerEntry {
            path: ImagePath::parse(path.as_bytes()).unwrap(),
            kind: EntryKind::Inode(InodeData::Symlink(target.as_bytes().to_vec())),
            meta: meta(0o777),
        }
    }

    #[test]
    fn parent_symlinks_are_followed_inside_the_image_and_loops_are_errors() {
        let tree = tree_of(vec![
            vec![
                dir("real"),
                symlink("rel", "real"),
                symlink("abs", "/../real"),
            ],
            vec![file("rel/a", 1), file("abs/b", 2)],
            vec![file("rel/.wh.a", 0)],
        ]);
        assert_eq!(
            paths(&tree),
            ["/abs:other", "/real/b:2", "/real:dir", "/rel:other"]
        );
        let mut tree = tree_of(vec![vec![symlink("x", "y"), symlink("y", "x")]]);
        let err = tree.apply(vec![file("x/f", 1)]).unwrap_err();
        assert!(err.to_string().contains("symlink loop"), "{err}");
    }

    #[test]
    fn a_layer_tree_copies_a_lower_hardlink_target() {
        let lower = tree_of(vec![vec![file("a", 4)]]);
        let mut layer = Tree::new();
        layer
            .add_verbatim_over(vec![link("b", "a"), link("c", "a")], &lower)
            .unwrap();
        assert_eq!(paths(&layer), ["/b:4", "/c:4"]);
        let (b, c) = (
            layer.lookup(&ImagePath::parse(b"b").unwrap()).unwrap(),
            layer.lookup(&ImagePath::parse(b"c").unwrap()).unwrap(),
        );
        assert_eq!(layer.node(b).inode, layer.node(c).inode);
    }
}
