//! `check --source`: the converted trees against the source image's, path by path.
//!
//! The source is read with the converter's own input side ([`crate::source`] with its digest
//! verification, [`crate::layer::entries`], [`crate::tree`]), never unpacked to disk; file
//! content is cut into the output's chunk size and each piece hashed with sha256. The output
//! side is what the bootstraps say, with each file's content taken from the chunks of our blobs
//! (decompressed and hashed with sha256 by the blob check). Both become one [`Canon`] record
//! per path, and every field that differs is a problem.
//!
//! The merged bootstrap is compared with all layers applied (whiteouts, opaque directories,
//! hardlinks), and each blob's inlined bootstrap with its layer's entries as they are
//! (whiteouts kept, as nydus's per-layer bootstraps keep them; hardlinks to lower layers become
//! files of their own, [`Tree::add_verbatim_over`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::bootstrap::Listing;
use super::layout::NydusManifest;
use super::{Boot, CheckedImage, Findings};
use crate::blob::chunk::{ChunkIndex, FileData};
use crate::blob::sink::ChunkSink;
use crate::common::digest::from_io;
use crate::common::error::{Error, Result};
use crate::common::path::ImagePath;
use crate::layer::entries;
use crate::layer::entry::InodeData;
use crate::ondisk::rafs_v6::reader::Kind;
use crate::source::{self, ImageEntry, ImageSource, ManifestEntry};
use crate::tree::Tree;

/// Most differences listed per tree; the rest are counted.
const MAX_DIFFERENCES: usize = 100;

/// The image OUT was converted from.
pub(crate) struct Source {
    inner: Box<dyn ImageSource>,
    /// What its layers may declare, as `convert` was told (`--max-sparse-holes`).
    limits: entries::Limits,
}

impl Source {
    /// Open the source input (any form `convert` reads). A source that cannot be read is an
    /// error of its own kind, not a problem of OUT.
    pub fn open(path: &Path, limits: entries::Limits) -> Result<Source> {
        Ok(Source {
            inner: source::open(path).map_err(|e| e.context("--source"))?,
            limits,
        })
    }

    /// The manifest of the source that `image` was converted from: by the manifest digest the
    /// output records, else the only one with the same platform, else the only one.
    fn find(&self, image: &NydusManifest) -> Option<(&ImageEntry, &ManifestEntry)> {
        let all: Vec<(&ImageEntry, &ManifestEntry)> = self
            .inner
            .images()
            .iter()
            .flat_map(|i| i.manifests.iter().map(move |m| (i, m)))
            .filter(|(_, m)| m.present)
            .collect();
        if let Some(digest) = &image.source_digest
            && let Some(found) = all.iter().find(|(_, m)| &m.digest.to_string() == digest)
        {
            return Some(*found);
        }
        let same_platform: Vec<_> = all
            .iter()
            .filter(|(_, m)| {
                matches!((&m.platform, &image.platform), (Some(a), Some(b)) if a.normalized() == b.normalized())
            })
            .collect();
        match (same_platform.as_slice(), all.as_slice()) {
            ([one], _) => Some(**one),
            ([], [one]) => Some(*one),
            _ => None,
        }
    }

    /// Compare the trees of one checked Nydus manifest with the source's; returns the number of
    /// paths compared.
    pub fn compare(
        &self,
        image: &NydusManifest,
        checked: &CheckedImage,
        f: &mut Findings,
    ) -> Result<usize> {
        let Some((entry, manifest)) = self.find(image) else {
            f.problem(
                &image.label,
                "no image of --source matches it (by its nydus-source-digest annotation or its platform)",
            );
            return Ok(0);
        };
        let source = self.inner.load(entry, manifest)?;
        let (boot, listing) = &checked.merged;
        // One blob layer per source layer; any after them must be chunk dictionary blobs the
        // image refers to (convert --chunk-dict with a Nydus image).
        let ids = boot.blob_ids();
        let referenced = |hex: &str| ids.iter().any(|id| id == hex);
        if source.layers.len() > image.blobs.len()
            || image.blobs[source.layers.len()..]
                .iter()
                .any(|b| !b.dict || !referenced(&b.hex))
        {
            f.problem(
                &image.label,
                format!(
                    "has {} blob layers, the source image {} has {} layers (and no more blobs \
                     the bootstrap refers to)",
                    image.blobs.len(),
                    source.manifest.digest,
                    source.layers.len()
                ),
            );
        }
        let mut sink = HashSink {
            chunk_size: boot.chunk_size(),
            pieces: Vec::new(),
        };
        let mut merged = Tree::new();
        let mut compared = 0;
        let mut limits = self.limits;
        for (i, layer) in source.layers.iter().enumerate() {
            let mut reader = self.inner.open_layer(layer)?;
            let source_layer = format!("--source {}", layer.label());
            let (layer_entries, notes) = entries::read_layer(&mut reader, &mut sink, &mut limits)
                .map_err(|e| e.context(&source_layer))?;
            reader.finish().map_err(|e| e.context(&source_layer))?;
            notes.warn(&source_layer);
            if let (Some(Some((lboot, llisting))), Some(blob)) =
                (checked.layers.get(i), image.blobs.get(i))
            {
                let mut tree = Tree::new();
                if f.take(tree.add_verbatim_over(layer_entries.clone(), &merged))?
                    .is_some()
                {
                    let what = format!(
                        "{}: bootstrap inlined in blob {} against {}",
                        image.label,
                        blob.hex,
                        layer.label()
                    );
                    let actual = canon_listing(llisting, lboot, checked, Some(&blob.hex));
                    compared += diff(&what, &canon_tree(&tree, &sink), &actual, f);
                }
            }
            f.take(merged.apply(layer_entries))?;
        }
        let what = format!(
            "{}: merged tree against source {}",
            image.label, source.manifest.digest
        );
        let actual = canon_listing(listing, boot, checked, None);
        compared += diff(&what, &canon_tree(&merged, &sink), &actual, f);
        Ok(compared)
    }
}

/// Cuts source files into the output's chunk size and keeps the sha256 of each piece; a file's
/// "chunks" are indexes into `pieces`.
struct HashSink {
    chunk_size: u64,
    pieces: Vec<[u8; 32]>,
}

impl ChunkSink for HashSink {
    fn file(&mut self, path: &ImagePath, data: &mut dyn Read, size: u64) -> Result<FileData> {
        let mut chunks = Vec::new();
        let mut buf = vec![0u8; self.chunk_size.min(size) as usize];
        let mut offset = 0;
        while offset < size {
            let len = self.chunk_size.min(size - offset) as usize;
            data.read_exact(&mut buf[..len]).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    Error::bad_input(format!("--source: {path}"), "file content is truncated")
                } else {
                    from_io(e, format!("--source: reading {path}"))
                }
            })?;
            let index = ChunkIndex::try_from(self.pieces.len())
                .map_err(|_| Error::internal("more than 2^32 chunks in the source"))?;
            self.pieces.push(Sha256::digest(&buf[..len]).into());
            chunks.push(index);
            offset += len as u64;
        }
        Ok(FileData { size, chunks })
    }
}

/// One path as both sides are compared: everything a reader shows. The bulky fields are shared:
/// a damaged bootstrap can give one inode (with all its xattrs and chunks) thousands of names.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Canon {
    kind: &'static str,
    /// Permission bits with setuid, setgid and sticky.
    perm: u32,
    uid: u32,
    gid: u32,
    mtime: (u64, u32),
    /// Not for directories: their size is the bootstrap's own dirent packing.
    size: Option<u64>,
    nlink: u32,
    rdev: Option<(u32, u32)>,
    symlink: Arc<[u8]>,
    xattrs: Arc<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// sha256 of each chunk-sized piece; `None` where the output's chunk was unreadable.
    content: Arc<[Option<[u8; 32]>]>,
    /// The first path (in byte order) of its hardlink group, when it has several names.
    link: Option<Arc<[u8]>>,
}

/// A field of [`Canon`], in the order differences are listed.
#[derive(Clone, Copy, Debug)]
enum Field {
    Type,
    Mode,
    Uid,
    Gid,
    Mtime,
    Size,
    Nlink,
    Device,
    Symlink,
    Xattrs,
    Link,
    Content,
}

impl Canon {
    /// The fields that differ between `self` (source) and `other` (output). Only compared, not
    /// rendered: past [`MAX_DIFFERENCES`] differences are merely counted.
    fn differing(&self, other: &Canon) -> Vec<Field> {
        let same = [
            (Field::Type, self.kind == other.kind),
            (Field::Mode, self.perm == other.perm),
            (Field::Uid, self.uid == other.uid),
            (Field::Gid, self.gid == other.gid),
            (Field::Mtime, self.mtime == other.mtime),
            (Field::Size, self.size == other.size),
            (Field::Nlink, self.nlink == other.nlink),
            (Field::Device, self.rdev == other.rdev),
            (Field::Symlink, self.symlink == other.symlink),
            (Field::Xattrs, self.xattrs == other.xattrs),
            (Field::Link, self.link == other.link),
            (Field::Content, self.content == other.content),
        ];
        same.iter()
            .filter(|(_, same)| !same)
            .map(|&(field, _)| field)
            .collect()
    }

    /// How `field` differs, as "NAME is A in the source, B in the output".
    fn describe(&self, other: &Canon, field: Field) -> String {
        let link = |l: &Option<Arc<[u8]>>| {
            l.as_ref()
                .map_or("none".into(), |l| format!("'{}'", l.escape_ascii()))
        };
        let (name, a, b) = match field {
            Field::Type => ("type", self.kind.into(), other.kind.into()),
            Field::Mode => (
                "mode",
                format!("{:04o}", self.perm),
                format!("{:04o}", other.perm),
            ),
            Field::Uid => ("uid", self.uid.to_string(), other.uid.to_string()),
            Field::Gid => ("gid", self.gid.to_string(), other.gid.to_string()),
            Field::Mtime => (
                "mtime",
                format!("{}.{:09}", self.mtime.0, self.mtime.1),
                format!("{}.{:09}", other.mtime.0, other.mtime.1),
            ),
            Field::Size => (
                "size",
                format!("{:?}", self.size),
                format!("{:?}", other.size),
            ),
            Field::Nlink => ("nlink", self.nlink.to_string(), other.nlink.to_string()),
            Field::Device => (
                "device",
                format!("{:?}", self.rdev),
                format!("{:?}", other.rdev),
            ),
            Field::Symlink => (
                "symlink target",
                format!("'{}'", self.symlink.escape_ascii()),
                format!("'{}'", other.symlink.escape_ascii()),
            ),
            Field::Xattrs => (
                "xattrs",
                render_xattrs(&self.xattrs),
                render_xattrs(&other.xattrs),
            ),
            Field::Link => ("hardlink group", link(&self.link), link(&other.link)),
            Field::Content => return self.content_difference(other),
        };
        format!("{name} is {a} in the source, {b} in the output")
    }

    /// Where the content first differs, and why.
    fn content_difference(&self, other: &Canon) -> String {
        let k = self
            .content
            .iter()
            .zip(other.content.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(self.content.len().min(other.content.len()));
        let why = match other.content.get(k) {
            Some(None) => "unreadable from its blob",
            _ => "different bytes",
        };
        format!("content differs from chunk {k} on: {why}")
    }
}

fn render_xattrs(x: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    let mut s = String::from("{");
    for (k, v) in x {
        let _ = write!(s, "{}={} ", k.escape_ascii(), v.escape_ascii());
    }
    s.push('}');
    s
}

/// The source side: every path of `tree`.
fn canon_tree(tree: &Tree, sink: &HashSink) -> BTreeMap<Vec<u8>, Canon> {
    let counts = tree.link_counts();
    let mut out = BTreeMap::new();
    let mut first_path: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut stack = vec![(b"/".to_vec(), tree.root())];
    let mut inode_of_path = Vec::new();
    while let Some((path, node)) = stack.pop() {
        let n_inode = tree.node_inode(node);
        let inode = tree.inode(n_inode).to_inode();
        let mut subdirs = 0;
        for (name, child) in tree.children(node) {
            let mut p = if path == b"/" {
                Vec::new()
            } else {
                path.clone()
            };
            p.push(b'/');
            p.extend_from_slice(name);
            if tree.inode_of(child).is_dir() {
                subdirs += 1;
            }
            stack.push((p, child));
        }
        let (kind, size, nlink, rdev, symlink, content) = match &inode.data {
            InodeData::Dir => ("directory", None, 2 + subdirs, None, Vec::new(), Vec::new()),
            InodeData::File(d) => (
                "file",
                Some(d.size),
                counts[n_inode],
                None,
                Vec::new(),
                d.chunks
                    .iter()
                    .map(|&c| sink.pieces.get(c as usize).copied())
                    .collect(),
            ),
            InodeData::Symlink(t) => (
                "symlink",
                Some(t.len() as u64),
                counts[n_inode],
                None,
                t.clone(),
                Vec::new(),
            ),
            InodeData::CharDevice { major, minor } => (
                "char device",
                Some(0),
                counts[n_inode],
                Some((*major, *minor)),
                Vec::new(),
                Vec::new(),
            ),
            InodeData::BlockDevice { major, minor } => (
                "block device",
                Some(0),
                counts[n_inode],
                Some((*major, *minor)),
                Vec::new(),
                Vec::new(),
            ),
            InodeData::Fifo => (
                "fifo",
                Some(0),
                counts[n_inode],
                None,
                Vec::new(),
                Vec::new(),
            ),
            InodeData::Socket => (
                "socket",
                Some(0),
                counts[n_inode],
                None,
                Vec::new(),
                Vec::new(),
            ),
        };
        if !inode.is_dir() {
            let first = first_path.entry(n_inode).or_insert_with(|| path.clone());
            if path < *first {
                *first = path.clone();
            }
            inode_of_path.push((path.clone(), n_inode));
        }
        let m = &inode.meta;
        out.insert(
            path,
            Canon {
                kind,
                perm: m.mode & 0o7777,
                uid: m.uid,
                gid: m.gid,
                mtime: (m.mtime as u64, m.mtime_nsec),
                size,
                nlink,
                rdev,
                symlink: symlink.into(),
                xattrs: Arc::new(m.xattrs.clone()),
                content: content.into(),
                link: None,
            },
        );
    }
    let first_path: HashMap<usize, Arc<[u8]>> = first_path
        .into_iter()
        .map(|(inode, path)| (inode, path.into()))
        .collect();
    for (path, inode) in inode_of_path {
        if counts[inode] > 1 {
            out.get_mut(&path).expect("listed").link = first_path.get(&inode).cloned();
        }
    }
    out
}

/// The output side: every path of a bootstrap's tree, content read from the blobs. An inode's
/// content and hardlink group are worked out once, however many names it has.
fn canon_listing(
    listing: &Listing,
    boot: &Boot,
    checked: &CheckedImage,
    own: Option<&str>,
) -> BTreeMap<Vec<u8>, Canon> {
    // Paths come in byte order, so the first name of an inode is its group's smallest.
    let mut names: HashMap<u64, (&[u8], usize)> = HashMap::new();
    for (path, e) in &listing.entries {
        if e.kind != Kind::Dir {
            names.entry(e.nid).or_insert((path, 0)).1 += 1;
        }
    }
    let links: HashMap<u64, Arc<[u8]>> = names
        .into_iter()
        .filter(|(_, (_, n))| *n > 1)
        .map(|(nid, (first, _))| (nid, first.into()))
        .collect();
    let mut contents: HashMap<u64, Arc<[Option<[u8; 32]>]>> = HashMap::new();
    listing
        .entries
        .iter()
        .map(|(path, e)| {
            let content = if e.kind == Kind::File {
                contents
                    .entry(e.nid)
                    .or_insert_with(|| boot.content(e, &checked.blobs, own).into())
                    .clone()
            } else {
                Arc::default()
            };
            let canon = Canon {
                kind: e.kind.name(),
                perm: e.mode & 0o7777,
                uid: e.uid,
                gid: e.gid,
                mtime: (e.mtime, e.mtime_nsec),
                size: (e.kind != Kind::Dir).then_some(e.size),
                nlink: e.nlink,
                rdev: matches!(e.kind, Kind::CharDevice | Kind::BlockDevice).then_some(e.rdev),
                symlink: e.symlink.clone(),
                xattrs: e.xattrs.clone(),
                content,
                link: links.get(&e.nid).cloned(),
            };
            (path.clone(), canon)
        })
        .collect()
}

/// Record every difference between `expected` (source) and `actual` (output); returns the
/// number of paths compared.
fn diff(
    what: &str,
    expected: &BTreeMap<Vec<u8>, Canon>,
    actual: &BTreeMap<Vec<u8>, Canon>,
    f: &mut Findings,
) -> usize {
    let paths: BTreeSet<&Vec<u8>> = expected.keys().chain(actual.keys()).collect();
    let mut found = 0usize;
    // The problem is rendered only while it will be listed.
    let mut report = |path: &[u8], problem: &dyn Fn() -> String, f: &mut Findings| {
        found += 1;
        if found <= MAX_DIFFERENCES {
            f.problem(format!("{what}: {}", path.escape_ascii()), problem());
        }
    };
    for path in &paths {
        match (expected.get(*path), actual.get(*path)) {
            (Some(_), None) => report(path, &|| "in the source, missing from the output".into(), f),
            (None, Some(_)) => report(path, &|| "in the output, not in the source".into(), f),
            (Some(e), Some(a)) => {
                for field in e.differing(a) {
                    report(path, &|| e.describe(a, field), f);
                }
            }
            (None, None) => unreachable!("a path of one side"),
        }
    }
    if found > MAX_DIFFERENCES {
        f.problem(
            what,
            format!("{} more differences not listed", found - MAX_DIFFERENCES),
        );
    }
    paths.len()
}
