//! A layer's trees built as its entries stream out of the tar, so that a layer's entries are
//! never all held at once: its own tree (whiteouts kept, [`Tree::add_verbatim_over`]) and what it
//! adds to the merged tree ([`Tree::apply`]), each exactly as the whole list of entries would
//! have built it.
//!
//! - The bottom layer goes straight into the merged tree, which is empty below it: there its
//!   whiteouts hide nothing, so applying the layer is adding its other entries in order. Until
//!   the first whiteout the layer's own tree is that same tree; at a whiteout (rare in a bottom
//!   layer) the own tree is split off as a copy and both grow from there.
//! - A layer above takes its whiteouts before its other entries in the merged tree, and its own
//!   tree needs the merged tree as it was below it: the own tree is built as the entries come,
//!   against the merged tree, and the entries are kept [packed](PackedEntries), a few dozen bytes
//!   each, to apply to the merged tree afterwards.

use std::borrow::Cow;

use super::{LowerCopies, PackedEntries, Tree};
use crate::common::error::Result;
use crate::layer::entry::LayerEntry;

/// Builds one layer's trees from its entries, one at a time, in tar order.
pub struct LayerBuilder<'l> {
    /// What the layer's hardlinks resolve against below it: the merged tree of the layers below,
    /// or an empty tree below the bottom layer.
    lower: Cow<'l, Tree>,
    /// The bottom layer only: the merged tree (the layer applied to an empty tree).
    merged: Option<Tree>,
    /// The layer's own tree; for the bottom layer, `None` until its first whiteout (until then
    /// the merged tree is the own tree).
    own: Option<Tree>,
    copies: LowerCopies,
    /// The entries packed, for a layer above the bottom one or when asked to keep them.
    packed: Option<PackedEntries>,
}

/// What [`LayerBuilder::finish`] gives.
pub struct BuiltLayer {
    /// The layer's own tree; `None` when it is the merged tree itself (a bottom layer without
    /// whiteouts).
    pub own: Option<Tree>,
    /// The merged tree, for the bottom layer: the layer applied to an empty tree.
    pub merged: Option<Tree>,
    /// The entries packed: for a layer above the bottom one, to
    /// [apply](Tree::apply_packed) to the merged tree below it; else if asked to keep them.
    pub packed: Option<PackedEntries>,
}

impl<'l> LayerBuilder<'l> {
    /// The bottom layer of an image: the merged tree is empty below it. With `keep`, the entries
    /// are also packed, for [`BuiltLayer::packed`].
    pub fn bottom(keep: bool) -> LayerBuilder<'static> {
        LayerBuilder {
            lower: Cow::Owned(Tree::new()),
            merged: Some(Tree::new()),
            own: None,
            copies: LowerCopies::default(),
            packed: keep.then(PackedEntries::new),
        }
    }

    /// A layer on top of `lower`, the merged tree of the layers below.
    pub fn over(lower: &'l Tree) -> LayerBuilder<'l> {
        LayerBuilder {
            lower: Cow::Borrowed(lower),
            merged: None,
            own: Some(Tree::new()),
            copies: LowerCopies::default(),
            packed: Some(PackedEntries::new()),
        }
    }

    /// The layer's next entry. Errors name the entry; the caller adds the layer.
    pub fn add(&mut self, entry: LayerEntry) -> Result<()> {
        if let Some(packed) = &mut self.packed {
            packed.push(&entry);
        }
        let Some(merged) = &mut self.merged else {
            let own = self.own.as_mut().expect("a layer above has its own tree");
            return own.add_verbatim_entry(entry, &self.lower, &mut self.copies);
        };
        let whiteout = entry.is_whiteout();
        if whiteout && self.own.is_none() {
            // Every entry so far went into both trees alike: a hardlink resolves the same in
            // either, and against the empty lower tree is never copied.
            self.own = Some(merged.clone());
        }
        match &mut self.own {
            // Whiteouts hide nothing in an empty tree: the merged tree skips them.
            Some(own) if whiteout => own.add_verbatim_entry(entry, &self.lower, &mut self.copies),
            Some(own) => {
                own.add_verbatim_entry(entry.clone(), &self.lower, &mut self.copies)?;
                merged.add(entry)
            }
            None => merged.add(entry),
        }
    }

    /// The trees, once every entry was added.
    pub fn finish(self) -> BuiltLayer {
        let mut packed = self.packed;
        if let Some(packed) = &mut packed {
            packed.shrink_to_fit();
        }
        BuiltLayer {
            own: self.own,
            merged: self.merged,
            packed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::chunk::FileData;
    use crate::common::path::ImagePath;
    use crate::layer::entry::{EntryKind, InodeData, Metadata};

    /// Everything a tree holds but its lookup index (sized differently when reserved ahead).
    fn dump(tree: &Tree) -> String {
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?}",
            tree.nodes, tree.names, tree.inodes, tree.targets, tree.chunk_lists, tree.xattrs
        )
    }

    fn entry(path: &str, kind: EntryKind) -> LayerEntry {
        LayerEntry {
            path: ImagePath::parse(path.as_bytes()).unwrap(),
            kind,
            meta: Metadata {
                mode: 0o640,
                mtime: path.len() as i64,
                ..Metadata::default()
            },
        }
    }

    fn file(path: &str, chunk: u32) -> LayerEntry {
        entry(
            path,
            EntryKind::Inode(InodeData::File(FileData {
                size: 10,
                chunks: vec![chunk, chunk + 1],
            })),
        )
    }

    fn dir(path: &str) -> LayerEntry {
        entry(path, EntryKind::Inode(InodeData::Dir))
    }

    fn link(path: &str, target: &str) -> LayerEntry {
        entry(
            path,
            EntryKind::Hardlink(ImagePath::parse(target.as_bytes()).unwrap()),
        )
    }

    fn symlink(path: &str, target: &str) -> LayerEntry {
        entry(
            path,
            EntryKind::Inode(InodeData::Symlink(target.as_bytes().to_vec())),
        )
    }

    /// The layers' own trees and the merged tree, built from whole lists as before streaming.
    fn whole(layers: &[Vec<LayerEntry>]) -> (Vec<String>, String) {
        let mut merged = Tree::new();
        let mut own = Vec::new();
        for layer in layers {
            let mut tree = Tree::new();
            tree.add_verbatim_over(layer.iter().cloned(), &merged)
                .unwrap();
            own.push(dump(&tree));
            merged.apply(layer.clone()).unwrap();
        }
        (own, dump(&merged))
    }

    /// The same, streamed.
    fn streamed(layers: &[Vec<LayerEntry>], keep: bool) -> (Vec<String>, String) {
        let mut merged = Tree::new();
        let mut own = Vec::new();
        for (n, layer) in layers.iter().enumerate() {
            let mut builder = if n == 0 {
                LayerBuilder::bottom(keep)
            } else {
                LayerBuilder::over(&merged)
            };
            for e in layer {
                builder.add(e.clone()).unwrap();
            }
            let built = builder.finish();
            if let Some(packed) = &built.packed {
                assert_eq!(&packed.iter().collect::<Vec<_>>(), layer);
            }
            assert_eq!(built.packed.is_some(), n > 0 || keep);
            match built.merged {
                Some(tree) => {
                    own.push(dump(built.own.as_ref().unwrap_or(&tree)));
                    merged = tree;
                }
                None => {
                    own.push(dump(&built.own.unwrap()));
                    merged.apply_packed(&built.packed.unwrap()).unwrap();
                }
            }
        }
        (own, dump(&merged))
    }

    #[test]
    fn streamed_trees_are_the_trees_of_whole_lists() {
        let bottom = vec![
            dir("a"),
            file("a/f", 0),
            link("a/g", "a/f"),
            symlink("l", "a"),
            file("l/h", 2),
            dir("a"),
            file("x/y/z", 4),
        ];
        let upper = vec![
            link("b", "a/f"),
            link("c", "a/f"),
            file("a/.wh.h", 0),
            file("a/new", 6),
            dir("x"),
            file("x/.wh..wh..opq", 0),
            file("x/w", 8),
            symlink("l", "x"),
            file("l/v", 10),
        ];
        let layers = [bottom.clone(), upper.clone(), vec![file("a/g", 12)]];
        for keep in [false, true] {
            assert_eq!(streamed(&layers, keep), whole(&layers));
        }
        // A bottom layer with whiteouts, the first after some entries and again at the start.
        let mut with_whiteouts = bottom.clone();
        with_whiteouts.insert(3, file("a/.wh.f", 0));
        with_whiteouts.push(file("n/.wh..wh..opq", 0));
        with_whiteouts.push(link("m", "a/g"));
        for bottom in [
            with_whiteouts.clone(),
            [vec![file(".wh.q", 0)], bottom].concat(),
        ] {
            let layers = [bottom, upper.clone()];
            let (own, merged) = streamed(&layers, false);
            assert_eq!((&own, &merged), (&whole(&layers).0, &whole(&layers).1));
            assert_ne!(own[0], dump(&tree_of(&layers[0])), "the whiteouts are kept");
        }
    }

    fn tree_of(entries: &[LayerEntry]) -> Tree {
        let mut tree = Tree::new();
        tree.apply(entries.to_vec()).unwrap();
        tree
    }

    #[test]
    fn errors_still_name_the_entry() {
        let mut builder = LayerBuilder::bottom(false);
        builder.add(file("f", 0)).unwrap();
        let err = builder.add(file("f/under", 0)).unwrap_err();
        assert!(err.to_string().contains("'/f' is not a directory"), "{err}");
        let lower = tree_of(&[file("a", 0)]);
        let mut builder = LayerBuilder::over(&lower);
        let err = builder.add(link("b", "nowhere")).unwrap_err();
        assert!(err.to_string().contains("entry '/b'"), "{err}");
    }
}
