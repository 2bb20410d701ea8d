//! The merge rules: how one layer's entries change the tree of the layers below, as container
//! runtimes unpack them (README's "What a layer tar means"): whiteouts and opaque directories
//! first, then each entry, with symlinked parents followed inside the image, hardlinks sharing an
//! inode, and a name listed again replacing what was there.

use std::collections::BTreeMap;
use std::ops::Range;
use std::rc::Rc;

use crate::common::error::{Error, Result};
use crate::common::path::ImagePath;
use crate::layer::entry::{
    EntryKind, InodeData, LayerEntry, Metadata, OPAQUE_WHITEOUT, WHITEOUT_PREFIX,
};

use super::store::*;
use super::{InodeId, NodeId, PackedEntries, Tree};

/// Hand each entry, in order, to `f`, giving the list's memory back as it shrinks: the entries
/// of a layer of 200,000 files take tens of MiB, and the tree they are applied to grows
/// meanwhile.
pub(super) fn consume(
    mut entries: Vec<LayerEntry>,
    mut f: impl FnMut(LayerEntry) -> Result<()>,
) -> Result<()> {
    entries.reverse();
    while let Some(entry) = entries.pop() {
        f(entry)?;
        // Often: the tree grows meanwhile, and a shrinking allocation this large is
        // remapped, not copied.
        if entries.capacity() - entries.len() >= 4096 {
            entries.shrink_to_fit();
            give_back_freed_memory();
        }
    }
    Ok(())
}

/// Return to the system the heap pages that freed entries left empty. Each entry owns small
/// allocations (its path, its chunk list) that the tree does not take over; glibc keeps freed
/// small blocks for reuse, and nothing else asks for blocks that small in numbers, so without
/// this the pages of a layer's entries would stay resident while the tree grows beside them.
pub(super) fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// For [`Tree::add_verbatim_entry`]: the inode of the layer's tree that each lower file a
/// hardlink of the layer named was copied into.
#[derive(Debug, Default)]
pub struct LowerCopies(BTreeMap<InodeId, InodeId>);

impl Tree {
    /// directory, a root that is not a directory) name the entry; the caller adds the layer.
    pub fn apply(&mut self, entries: Vec<LayerEntry>) -> Result<()> {
        let names = entries
            .iter()
            .filter_map(|e| e.path.file_name())
            .map(<[u8]>::len)
            .sum();
        self.reserve(entries.len(), names);
        for whiteout in entries.iter().filter(|e| e.is_whiteout()) {
            self.apply_whiteout(&whiteout.path)?;
        }
        consume(entries, |entry| {
            if entry.is_whiteout() {
                Ok(())
            } else {
                self.add(entry)
            }
        })
    }

    /// [`apply`](Tree::apply) for packed entries: the same changes in the same order, one
    /// entry unpacked at a time.
    pub fn apply_packed(&mut self, entries: &PackedEntries) -> Result<()> {
        self.reserve(entries.len(), entries.name_bytes());
        if entries.has_whiteouts() {
            for whiteout in entries.iter().filter(LayerEntry::is_whiteout) {
                self.apply_whiteout(&whiteout.path)?;
            }
        }
        for entry in entries.iter() {
            if !entry.is_whiteout() {
                self.add(entry)?;
            }
        }
        Ok(())
    }

    /// Make room for `entries` entries with `names` bytes of names at once: grown one by one,
    /// the tables would be copied as they double while the entries still take their own memory.
    pub(super) fn reserve(&mut self, entries: usize, names: usize) {
        self.nodes.reserve_exact(entries);
        self.inodes.reserve_exact(entries);
        self.names.reserve_exact(names);
        let wanted = ((self.indexed + entries) * 2).next_power_of_two();
        if wanted > self.index.len() {
            self.rehash(wanted);
        }
    }

    /// Add one layer's entries as they are, whiteouts included as ordinary entries: the tree of
    /// a single layer, as its own bootstrap records it (nydus `--whiteout-spec none`), so that
    /// merging the per-layer bootstraps applies the whiteouts later.
    ///
    /// A hardlink to a file of a lower layer fails here; use
    /// [`add_verbatim_over`](Tree::add_verbatim_over) for layers above the first.
    pub fn add_verbatim(&mut self, entries: impl IntoIterator<Item = LayerEntry>) -> Result<()> {
        self.add_verbatim_over(entries, &Tree::new())
    }

    /// [`add_verbatim`](Tree::add_verbatim) for a layer on top of `lower` (the merged tree of
    /// the layers below): a hardlink to a file that only `lower` has becomes, in this layer's
    /// tree, a file of its own with the lower file's metadata and chunks (later links to the
    /// same lower file share it). A layer's own bootstrap cannot name an inode of another
    /// bootstrap; the merged tree keeps the real hardlink.
    ///
    /// Entries are taken one by one: pass `entries.iter().cloned()` to keep a layer's entries
    /// without a second copy of all of them at once.
    pub fn add_verbatim_over(
        &mut self,
        entries: impl IntoIterator<Item = LayerEntry>,
        lower: &Tree,
    ) -> Result<()> {
        let mut copies = LowerCopies::default();
        for entry in entries {
            self.add_verbatim_entry(entry, lower, &mut copies)?;
        }
        Ok(())
    }

    /// One entry of [`add_verbatim_over`](Tree::add_verbatim_over); `copies` carries, from one
    /// entry of the layer to the next, which lower files were copied already.
    pub fn add_verbatim_entry(
        &mut self,
        mut entry: LayerEntry,
        lower: &Tree,
        copies: &mut LowerCopies,
    ) -> Result<()> {
        if let EntryKind::Hardlink(target) = &entry.kind
            && self.resolve_link_target(target)?.is_none()
            && let Some(found) = lower.resolve_link_target(target)?
        {
            let lower_inode = lower.node_inode(found);
            if let Some(&copy) = copies.0.get(&lower_inode) {
                return self.link_inode(&entry.path, copy);
            }
            let inode = lower.inode(lower_inode).to_inode();
            entry.meta = inode.meta;
            entry.kind = EntryKind::Inode(inode.data);
            self.add(entry.clone())?;
            let node = self.resolve_link_target(&entry.path)?.expect("just added");
            copies.0.insert(lower_inode, self.node_inode(node));
            return Ok(());
        }
        self.add(entry)
    }

    pub(super) fn apply_whiteout(&mut self, path: &ImagePath) -> Result<()> {
        let name = path.file_name().expect("whiteouts have a name");
        let Some(dir) = self.resolve_dir(path, false)? else {
            return Ok(()); // Hides something that does not exist below: nothing to do.
        };
        if name == OPAQUE_WHITEOUT {
            let mut next = self.nodes[dir].first_child;
            while next != NO_NODE {
                let node = &mut self.nodes[next as usize];
                node.live = false;
                next = node.next;
            }
            self.nodes[dir].first_child = NO_NODE;
        } else if let Some(node) = self.child(dir, &name[WHITEOUT_PREFIX.len()..]) {
            self.nodes[node].live = false;
        }
        Ok(())
    }

    pub(super) fn add(&mut self, entry: LayerEntry) -> Result<()> {
        let LayerEntry { path, kind, meta } = entry;
        let Some(name) = path.file_name().map(<[u8]>::to_vec) else {
            // The root itself: only its metadata can change.
            return match kind {
                EntryKind::Inode(InodeData::Dir) => {
                    let root = self.node_inode(self.root());
                    self.set_meta(root, meta)?;
                    Ok(())
                }
                _ => Err(Error::bad_input(
                    format!("entry '{path}'"),
                    "the image root must be a directory",
                )),
            };
        };
        let parent = self.make_parents(&path)?;
        let existing = self.child(parent, &name);
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
                if self.is_dir_inode(self.node_inode(found)) {
                    return Err(Error::bad_input(
                        format!("entry '{path}'"),
                        format!("hardlink to the directory '{target}'"),
                    ));
                }
                if existing == Some(found) {
                    return Ok(()); // A name linked to itself changes nothing.
                }
                self.node_inode(found)
            }
            EntryKind::Inode(InodeData::Dir) => {
                if let Some(id) = existing.filter(|&id| self.is_dir_inode(self.node_inode(id))) {
                    // A directory listed again keeps its entries and takes the new metadata.
                    // Its inode is shared by no one (directories have no hardlinks), so update
                    // it in place.
                    let inode = self.node_inode(id);
                    self.set_meta(inode, meta)?;
                    return Ok(());
                }
                self.push_inode(meta, InodeData::Dir)?
            }
            EntryKind::Inode(data) => self.push_inode(meta, data)?,
        };
        self.attach(parent, &name, inode)
    }

    /// The directory that will hold `path`, creating missing directories as runtimes do.
    pub(super) fn make_parents(&mut self, path: &ImagePath) -> Result<NodeId> {
        Ok(self.resolve_dir(path, true)?.expect("created"))
    }

    /// Another name for an inode, at `path`.
    pub(super) fn link_inode(&mut self, path: &ImagePath, inode: InodeId) -> Result<()> {
        let name = path.file_name().expect("a link has a name").to_vec();
        let parent = self.make_parents(path)?;
        self.attach(parent, &name, inode)
    }

    /// The node a hardlink's target names: its parent directories resolved as for any entry,
    /// the last component itself not followed (a hardlink to a symlink links the symlink, as
    /// `link(2)` and umoci do).
    pub(super) fn resolve_link_target(&self, target: &ImagePath) -> Result<Option<NodeId>> {
        let Some(name) = target.file_name() else {
            return Ok(Some(self.root()));
        };
        let found = self.walk_dir(target)?;
        Ok(found.and_then(|dir| self.child(dir, name)))
    }

    /// The directory holding `path`'s last component, resolved as container runtimes resolve
    /// an entry's parent (containerd's `fs.RootPath`, umoci's `SecureJoin`): a symlink among the
    /// parents is followed, inside the image (an absolute target starts again at the root, `..`
    /// stops at the root), so `link/file` under `link -> dir` lands in `dir/file`. Missing
    /// directories are created (with `create`; otherwise the answer is `None`). A parent that
    /// is neither a directory nor a symlink, a symlink loop, and a walk deeper than
    /// [`MAX_DEPTH`](crate::common::path::MAX_DEPTH) are errors naming the entry.
    pub(super) fn resolve_dir(&mut self, path: &ImagePath, create: bool) -> Result<Option<NodeId>> {
        if !create {
            return self.walk_dir(path);
        }
        // The walk goes on below each directory it creates: one pass, whatever the depth.
        let mut walk = Walk::new(path);
        loop {
            match self.walk_on(path, &mut walk)? {
                Step::Found(dir) => return Ok(Some(dir)),
                Step::Missing(dir, name) => {
                    let inode = self.push_inode(Metadata::implied_dir(), InodeData::Dir)?;
                    self.attach(dir, &name, inode)?;
                    let created = self.child(dir, &name).expect("just attached");
                    walk.stack.push(created);
                }
            }
        }
    }

    /// [`resolve_dir`](Tree::resolve_dir) without creating anything: `None` at the first
    /// directory that does not exist.
    pub(super) fn walk_dir(&self, path: &ImagePath) -> Result<Option<NodeId>> {
        match self.walk_on(path, &mut Walk::new(path))? {
            Step::Found(dir) => Ok(Some(dir)),
            Step::Missing(..) => Ok(None),
        }
    }

    /// Go on with `walk` through `path`'s parents until they are all behind it, or until a
    /// directory is missing (the walk then stands in the directory that lacks it).
    pub(super) fn walk_on(&self, path: &ImagePath, walk: &mut Walk) -> Result<Step> {
        /// Linux's limit on symlinks followed in one lookup (`MAXSYMLINKS`).
        const MAX_FOLLOWS: usize = 40;
        /// The longest symlink target followed: Linux's `PATH_MAX`, which no symlink on a
        /// Linux filesystem exceeds. Each component of a followed target costs a step of every
        /// walk through it, and every entry below the symlink walks through it.
        const MAX_FOLLOWED_TARGET: usize = 4096;
        let error = |problem: String| Error::bad_input(format!("entry '{path}'"), problem);
        while let Some((bytes, range)) = walk.next_name() {
            let name = &bytes[range];
            match name {
                b"." => continue,
                b".." => {
                    if walk.stack.len() > 1 {
                        walk.stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            if name.len() > crate::common::path::NAME_MAX || name.contains(&0) {
                // Only a symlink target can hold such a name; the entry's own path was checked.
                return Err(error(format!(
                    "a symlink among its parent directories has a target with a name no \
                     filesystem can hold ('{}')",
                    crate::common::error::shown(name)
                )));
            }
            if walk.stack.len() > crate::common::path::MAX_DEPTH {
                return Err(error(format!(
                    "its parent directories are more than {} deep once symlinks are followed",
                    crate::common::path::MAX_DEPTH
                )));
            }
            let dir = *walk.stack.last().expect("the root stays");
            let Some(child) = self.child(dir, name) else {
                return Ok(Step::Missing(dir, name.to_vec()));
            };
            match self.inode_of(child).data {
                DataRef::Dir => walk.stack.push(child),
                DataRef::Symlink(target) => {
                    walk.follows += 1;
                    if walk.follows > MAX_FOLLOWS {
                        return Err(error(format!(
                            "a symlink loop in its parent directories (more than {MAX_FOLLOWS} symlinks followed, at '{}')",
                            self.stack_path(&walk.stack, name)
                        )));
                    }
                    if target.len() > MAX_FOLLOWED_TARGET {
                        return Err(error(format!(
                            "the symlink '{}' among its parent directories has a target of {} bytes, more than the {MAX_FOLLOWED_TARGET} a symlink on Linux may have",
                            self.stack_path(&walk.stack, name),
                            target.len()
                        )));
                    }
                    if target.starts_with(b"/") {
                        walk.stack.truncate(1);
                    }
                    walk.todo.push((target.into(), 0));
                }
                _ => {
                    return Err(error(format!(
                        "'{}' is not a directory",
                        self.stack_path(&walk.stack, name)
                    )));
                }
            }
        }
        Ok(Step::Found(*walk.stack.last().expect("the root stays")))
    }

    /// The path of the directory at the top of a walk's stack, joined with `name`.
    pub(super) fn stack_path(&self, stack: &[NodeId], name: &[u8]) -> ImagePath {
        // Joined at once: joining one name at a time would copy the path once per component.
        let names: Vec<&[u8]> = stack[1..].iter().map(|&id| self.name(id)).collect();
        let mut joined = names.join(&b'/');
        if !joined.is_empty() {
            joined.push(b'/');
        }
        joined.extend_from_slice(name);
        ImagePath::from_joined(&joined)
    }
}

/// Where a walk through an entry's parent directories stands: the names still to go, the
/// directories it is in (the root first), and how many symlinks it followed.
pub(super) struct Walk {
    /// Paths still to go and how far into each the walk is, the one to go on with last: the
    /// entry's parents, then each symlink target as it is followed. Components are cut from them
    /// as they are needed, so a step costs its name's bytes and nothing per component else.
    pub(super) todo: Vec<(Rc<[u8]>, usize)>,
    pub(super) stack: Vec<NodeId>,
    pub(super) follows: usize,
}

impl Walk {
    /// A walk from the root through `path`'s parents.
    pub(super) fn new(path: &ImagePath) -> Walk {
        Walk {
            todo: vec![(path.parent().joined().into(), 0)],
            stack: vec![0],
            follows: 0,
        }
    }

    /// The next non-empty component to walk through: the path that holds it, and where.
    pub(super) fn next_name(&mut self) -> Option<(Rc<[u8]>, Range<usize>)> {
        while let Some((bytes, at)) = self.todo.last_mut() {
            let start = *at;
            let len = bytes[start..]
                .iter()
                .position(|&b| b == b'/')
                .unwrap_or(bytes.len() - start);
            let bytes = Rc::clone(bytes);
            *at = (start + len + 1).min(bytes.len());
            if start + len >= bytes.len() {
                self.todo.pop();
            }
            if len > 0 {
                return Some((bytes, start..start + len));
            }
        }
        None
    }
}

/// How far [`Tree::walk_on`] got.
pub(super) enum Step {
    /// Every parent is behind: the directory that holds the last component.
    Found(NodeId),
    /// Directory `.0` has no entry `.1`, which the walk needs next.
    Missing(NodeId, Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::chunk::FileData;

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
            for (name, child) in tree.children(id) {
                let path = format!("{prefix}/{}", String::from_utf8_lossy(name));
                let what = match tree.inode_of(child).data {
                    DataRef::File { size, .. } => size.to_string(),
                    DataRef::Dir => "dir".into(),
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
        assert_eq!(tree.inode_of(y).to_inode().meta, Metadata::implied_dir());
    }

    #[test]
    fn hardlinks_share_an_inode_until_an_upper_layer_replaces_one_name() {
        let mut tree = tree_of(vec![vec![file("a", 4), link("b", "a")]]);
        let (a, b) = (
            tree.lookup(&ImagePath::parse(b"a").unwrap()).unwrap(),
            tree.lookup(&ImagePath::parse(b"b").unwrap()).unwrap(),
        );
        assert_eq!(tree.node_inode(a), tree.node_inode(b));
        assert_eq!(tree.link_counts()[tree.node_inode(a)], 2);

        // An upper layer links to the lower file, then overwrites the original name.
        tree.apply(vec![link("c", "b"), file("a", 9)]).unwrap();
        let counts = tree.link_counts();
        let b_inode = tree.node_inode(tree.lookup(&ImagePath::parse(b"b").unwrap()).unwrap());
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
        assert_eq!(tree.inode_of(d).to_inode().meta.mode, 0o700);
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
    fn names_removed_and_added_again_through_many_layers() {
        let mut tree = tree_of(vec![
            (0..3000).map(|n| file(&format!("d/f{n}"), n)).collect(),
        ]);
        // Removed by a whiteout, then by an opaque directory, and added again each time.
        tree.apply(vec![file("d/.wh.f7", 0), file("d/f7", 70)])
            .unwrap();
        assert_eq!(
            tree.children(tree.lookup(&ImagePath::parse(b"d").unwrap()).unwrap())
                .len(),
            3000
        );
        tree.apply(vec![
            file("d/.wh..wh..opq", 0),
            file("d/f9", 90),
            file("d/g", 1),
        ])
        .unwrap();
        assert_eq!(paths(&tree), ["/d/f9:90", "/d/g:1", "/d:dir"]);
        assert!(tree.lookup(&ImagePath::parse(b"d/f7").unwrap()).is_none());
        tree.apply(vec![file("d/f7", 71), file("d/.wh.g", 0)])
            .unwrap();
        assert_eq!(paths(&tree), ["/d/f7:71", "/d/f9:90", "/d:dir"]);
        let d = tree.lookup(&ImagePath::parse(b"d").unwrap()).unwrap();
        let names: Vec<&[u8]> = tree.children(d).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"f7"[..], b"f9"]);
        assert_eq!(
            tree.parent(tree.lookup(&ImagePath::parse(b"d/f7").unwrap()).unwrap()),
            d
        );
    }

    #[test]
    fn inodes_come_back_as_they_were_added() {
        let mut xattrs = BTreeMap::new();
        xattrs.insert(b"user.a".to_vec(), b"1".to_vec());
        let full = Metadata {
            mode: 0o4755,
            uid: 70_000,
            gid: 3,
            mtime: -5,
            mtime_nsec: 9,
            xattrs,
        };
        let kinds = [
            InodeData::File(FileData {
                size: 3 << 20,
                chunks: vec![7, 8, 9],
            }),
            InodeData::File(FileData {
                size: 3 << 20,
                chunks: vec![9, 2, 2],
            }),
            InodeData::File(FileData::default()),
            InodeData::Symlink(b"../x/y".to_vec()),
            InodeData::CharDevice { major: 1, minor: 3 },
            InodeData::BlockDevice { major: 8, minor: 1 },
            InodeData::Fifo,
            InodeData::Socket,
            InodeData::Dir,
        ];
        let mut tree = Tree::new();
        let entries = kinds
            .iter()
            .enumerate()
            .map(|(i, data)| LayerEntry {
                path: ImagePath::parse(format!("n{i}").as_bytes()).unwrap(),
                kind: EntryKind::Inode(data.clone()),
                meta: full.clone(),
            })
            .collect();
        tree.apply(entries).unwrap();
        for (i, data) in kinds.iter().enumerate() {
            let node = tree.lookup(&ImagePath::parse(format!("n{i}").as_bytes()).unwrap());
            let inode = tree.inode_of(node.unwrap()).to_inode();
            assert_eq!((&inode.meta, &inode.data), (&full, data));
        }
        // A directory listed again takes new metadata, xattrs gone.
        tree.apply(vec![dir("n8")]).unwrap();
        let n8 = tree.lookup(&ImagePath::parse(b"n8").unwrap()).unwrap();
        assert_eq!(tree.inode_of(n8).to_inode().meta, meta(0o755));
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
        assert_eq!(layer.node_inode(b), layer.node_inode(c));
    }

    #[test]
    fn deep_paths_are_walked_once_and_bounded_through_symlinks() {
        // 4096 missing parents: created in one walk, each below the last.
        let deep = "d/".repeat(crate::common::path::MAX_DEPTH - 1) + "f";
        let mut tree = Tree::new();
        tree.apply(vec![file(&deep, 0o644)]).unwrap();
        let found = tree.lookup(&ImagePath::parse(deep.as_bytes()).unwrap());
        assert!(found.is_some());
        assert_eq!(tree.node_count(), crate::common::path::MAX_DEPTH + 1);

        // A symlink to a deep directory and more below it: deeper than a path may be.
        let mut tree = Tree::new();
        let target = "/".to_string() + &"d/".repeat(2000);
        let err = tree
            .apply(vec![
                dir(&"d/".repeat(2000)),
                symlink("link", &target),
                file(&format!("link/{}", "e/".repeat(2500) + "f"), 0o644),
            ])
            .unwrap_err();
        assert!(err.to_string().contains("more than 4096 deep"), "{err}");

        // A target longer than Linux lets a symlink be is not followed.
        let mut tree = Tree::new();
        let err = tree
            .apply(vec![
                symlink("link", &"./".repeat(3000)),
                file("link/f", 0o644),
            ])
            .unwrap_err();
        assert!(err.to_string().contains("target of 6000 bytes"), "{err}");
    }
}
