//! Hardlinks across layers, found again. A layer's tar may link a name to a file of a lower
//! layer; the layer's own bootstrap cannot name another bootstrap's inode, so it holds a copy
//! (same metadata and chunks), and only the merged bootstrap shares one inode between the
//! names. Unpacking the copy as a file would lose the link; this finds, for each such copy, the
//! lower name to link it to instead.
//!
//! A copy at `P` in layer `L` is linked to `Q` when the merged bootstrap gives `P` and `Q` one
//! inode, `Q` is not in layer `L`'s own tree, the newest layer below `L` that lists `Q` lists it
//! with the same metadata and chunks as the copy, and no layer from there up to `L` whites `Q`
//! out (a `.wh.` entry for it, or an opaque marker in a directory above it). Anything else stays
//! a copy: the tree is the same, only the link count differs.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::ondisk::rafs_v6::reader::{Inode, Kind};

/// Names of one merged inode tried as a copy's link target. Any lower name of the inode will
/// do, and the first usually does; the cap bounds the work a hostile image can ask for.
const MAX_CANDIDATES: usize = 1024;

/// One layer's tree: every path with its inode.
pub type LayerTree = BTreeMap<Vec<u8>, Inode>;

/// For each layer, bottom first: which of its inodes (by nid) to write as a hardlink to which
/// lower path.
pub fn find(layers: &[&LayerTree], merged: &LayerTree) -> Vec<HashMap<u64, Vec<u8>>> {
    let mut names_of: HashMap<u64, Vec<&Vec<u8>>> = HashMap::new();
    for (path, inode) in merged {
        if inode.kind != Kind::Dir && inode.nlink > 1 {
            names_of.entry(inode.nid).or_default().push(path);
        }
    }
    let mut out = vec![HashMap::new(); layers.len()];
    for (l, tree) in layers.iter().enumerate().skip(1) {
        // Each merged inode's names are searched once per layer: a hostile image naming one
        // inode a million times costs a million steps, not a million squared.
        let mut tried = HashSet::new();
        for (path, copy) in tree.iter() {
            if copy.kind == Kind::Dir || out[l].contains_key(&copy.nid) {
                continue;
            }
            let Some(m) = merged.get(path) else {
                continue;
            };
            let Some(names) = names_of.get(&m.nid).filter(|_| tried.insert(m.nid)) else {
                continue;
            };
            let target = names
                .iter()
                .take(MAX_CANDIDATES)
                .filter(|q| q.as_slice() != path.as_slice() && !tree.contains_key(q.as_slice()))
                .find(|q| lists_unchanged(&layers[..=l], q, copy));
            if let Some(q) = target {
                out[l].insert(copy.nid, (*q).clone());
            }
        }
    }
    out
}

/// Whether the newest layer below the last of `layers` that lists `q` lists it as `copy` is,
/// and nothing from there up to the last layer whites it out.
fn lists_unchanged(layers: &[&LayerTree], q: &[u8], copy: &Inode) -> bool {
    let (top, below) = layers.split_last().expect("at least the layer itself");
    let Some(k) = below.iter().rposition(|t| t.contains_key(q)) else {
        return false;
    };
    same_file(&below[k][q], copy)
        && below[k + 1..]
            .iter()
            .chain(std::iter::once(top))
            .all(|t| !whites_out(t, q))
}

/// Whether a layer's tree holds a whiteout of `path` or an opaque marker above it.
fn whites_out(tree: &LayerTree, path: &[u8]) -> bool {
    let Some(slash) = path.iter().rposition(|&c| c == b'/') else {
        return false;
    };
    let (dir, name) = (&path[..slash], &path[slash + 1..]);
    let mut whiteout = dir.to_vec();
    whiteout.extend_from_slice(b"/.wh.");
    whiteout.extend_from_slice(name);
    if tree.contains_key(&whiteout) {
        return true;
    }
    // An opaque marker in `dir` or any directory above it.
    let mut prefix = dir;
    loop {
        let mut opaque = prefix.to_vec();
        opaque.extend_from_slice(b"/.wh..wh..opq");
        if tree.contains_key(&opaque) {
            return true;
        }
        match prefix.iter().rposition(|&c| c == b'/') {
            Some(at) => prefix = &prefix[..at],
            None => return false,
        }
    }
}

/// Same metadata and the same chunks (by ci index and place: the blob tables of two layers
/// number their blobs apart, the chunks' places in them do not).
fn same_file(a: &Inode, b: &Inode) -> bool {
    let chunks = |i: &Inode| -> Vec<(u32, u32)> {
        i.chunks
            .iter()
            .map(|c| (c.ci_index(), c.c_blk_addr))
            .collect()
    };
    a.kind == b.kind
        && a.mode == b.mode
        && (a.uid, a.gid) == (b.uid, b.gid)
        && (a.mtime, a.mtime_nsec) == (b.mtime, b.mtime_nsec)
        && a.size == b.size
        && a.xattrs == b.xattrs
        && a.symlink == b.symlink
        && a.rdev == b.rdev
        && chunks(a) == chunks(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(paths: &[&str]) -> LayerTree {
        let root = dir();
        paths
            .iter()
            .map(|p| (p.as_bytes().to_vec(), root.clone()))
            .collect()
    }

    /// A stand-in inode: only the paths matter to `whites_out`.
    fn dir() -> Inode {
        Inode {
            nid: 0,
            kind: Kind::Dir,
            mode: 0o40755,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            size: 0,
            nlink: 2,
            rdev: (0, 0),
            xattrs: Default::default(),
            symlink: Default::default(),
            chunks: Default::default(),
            layout: 0,
            extended: false,
            offset: 0,
            head: 0,
            i_u: 0,
        }
    }

    #[test]
    fn whiteouts_and_opaque_markers_above_a_path_remove_it() {
        assert!(whites_out(&tree(&["/a/b/.wh.f"]), b"/a/b/f"));
        assert!(whites_out(&tree(&["/a/b/.wh..wh..opq"]), b"/a/b/f"));
        assert!(whites_out(&tree(&["/a/.wh..wh..opq"]), b"/a/b/f"));
        assert!(whites_out(&tree(&["/.wh.f"]), b"/f"));
        assert!(!whites_out(
            &tree(&["/a/b/.wh.g", "/a/c/.wh..wh..opq"]),
            b"/a/b/f"
        ));
        assert!(!whites_out(&tree(&["/a/b/f/.wh..wh..opq"]), b"/a/b/f"));
    }
}
