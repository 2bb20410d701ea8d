//! Canonical listings of a directory tree, and readable differences between two of them.
//!
//! A listing has one line per path with everything a container can observe of it: type, mode
//! (setuid/setgid/sticky included), owner, size, sha256 of the content, symlink target, sorted
//! xattrs, nlink and hardlink group, and device numbers. The same function lists umoci's unpacked
//! rootfs, a nydusd FUSE mount and a kernel EROFS mount, so differences are the readers', never
//! the lister's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Which observations a listing records. Readers differ in what they can show: file contents are
/// meaningless on the kernel mount of a bootstrap, and nydusd's FUSE inode numbers are not stable,
/// so hardlink groups are judged on the kernel mount only.
#[derive(Clone, Copy, Debug)]
pub struct ListOptions {
    /// Hash the content of regular files.
    pub content: bool,
    /// Record nlink and the hardlink group of non-directories.
    pub hardlinks: bool,
}

impl ListOptions {
    /// Everything: for umoci's rootfs compared with itself or with a reader that shows it all.
    pub const ALL: ListOptions = ListOptions {
        content: true,
        hardlinks: true,
    };
    /// What nydusd shows reliably: everything but inode identity.
    pub const NYDUSD: ListOptions = ListOptions {
        content: true,
        hardlinks: false,
    };
    /// What the kernel shows of a bootstrap: metadata, hardlinks included, no content.
    pub const KERNEL: ListOptions = ListOptions {
        content: false,
        hardlinks: true,
    };
}

/// One observed path. Fields that do not apply to the entry's type are `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub target: Option<Vec<u8>>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub nlink: Option<u64>,
    pub hardlink: Option<Vec<u8>>,
    pub rdev: Option<(u64, u64)>,
    /// Modification time, seconds and nanoseconds; `None` for the root, whose time nydusd does
    /// not take from the image (it reports a time of its own for the mount point).
    pub mtime: Option<(i64, i64)>,
}

/// Field names in line order; differences are reported by these names.
pub const FIELDS: [&str; 12] = [
    "type", "mode", "uid", "gid", "size", "sha256", "link", "xattrs", "nlink", "hardlink", "rdev",
    "mtime",
];

impl Entry {
    /// The entry's fields, rendered, in [`FIELDS`] order; absent fields are omitted.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("type", self.kind.to_string()),
            ("mode", format!("{:04o}", self.mode)),
            ("uid", self.uid.to_string()),
            ("gid", self.gid.to_string()),
        ];
        if let Some(size) = self.size {
            out.push(("size", size.to_string()));
        }
        if let Some(hash) = &self.sha256 {
            out.push(("sha256", hash.clone()));
        }
        if let Some(target) = &self.target {
            out.push(("link", escape(target)));
        }
        if !self.xattrs.is_empty() {
            let rendered: Vec<String> = self
                .xattrs
                .iter()
                .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
                .collect();
            out.push(("xattrs", rendered.join(",")));
        }
        if let Some(nlink) = self.nlink {
            out.push(("nlink", nlink.to_string()));
        }
        if let Some(group) = &self.hardlink {
            out.push(("hardlink", escape(group)));
        }
        if let Some((major, minor)) = self.rdev {
            out.push(("rdev", format!("{major}:{minor}")));
        }
        if let Some((secs, nsecs)) = self.mtime {
            out.push(("mtime", format!("{secs}.{nsecs:09}")));
        }
        out
    }
}

/// A whole tree: canonical paths (`/`, `/etc`, `/etc/hostname`) to entries, sorted by bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub entries: BTreeMap<Vec<u8>, Entry>,
}

/// One difference between an expected and an actual listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub path: Vec<u8>,
    /// The differing field, or `None` when the path exists on one side only.
    pub field: Option<&'static str>,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

impl Listing {
    /// The same listing without directories' mtimes: for trees rebuilt by `nydus-image merge`,
    /// which stamps the directories it rebuilds with the time of the merge.
    pub fn without_dir_mtimes(mut self) -> Listing {
        for entry in self.entries.values_mut() {
            if entry.kind == "dir" {
                entry.mtime = None;
            }
        }
        self
    }

    /// One line per path: `path<TAB>field=value ...`.
    pub fn lines(&self) -> Vec<String> {
        self.entries.iter().map(|(path, e)| line(path, e)).collect()
    }

    /// Every difference between `self` (expected) and `actual`, path by path, field by field.
    pub fn diff(&self, actual: &Listing) -> Vec<Difference> {
        let mut out = Vec::new();
        let mut paths: Vec<&Vec<u8>> = self.entries.keys().chain(actual.entries.keys()).collect();
        paths.sort();
        paths.dedup();
        for path in paths {
            match (self.entries.get(path), actual.entries.get(path)) {
                (Some(e), Some(a)) => {
                    let ef: BTreeMap<_, _> = e.fields().into_iter().collect();
                    let af: BTreeMap<_, _> = a.fields().into_iter().collect();
                    for field in FIELDS {
                        let (ev, av) = (ef.get(field), af.get(field));
                        if ev != av {
                            out.push(Difference {
                                path: path.clone(),
                                field: Some(field),
                                expected: ev.cloned(),
                                actual: av.cloned(),
                            });
                        }
                    }
                }
                (e, a) => out.push(Difference {
                    path: path.clone(),
                    field: None,
                    expected: e.map(|e| line(path, e)),
                    actual: a.map(|a| line(path, a)),
                }),
            }
        }
        out
    }
}

/// Render differences for a human: what was expected, what the reader showed.
pub fn render(diffs: &[Difference]) -> String {
    let mut s = String::new();
    for d in diffs {
        match d.field {
            Some(field) => {
                let _ = writeln!(
                    s,
                    "  {} {field}: expected {} but got {}",
                    escape(&d.path),
                    d.expected.as_deref().unwrap_or("(none)"),
                    d.actual.as_deref().unwrap_or("(none)")
                );
            }
            None => match (&d.expected, &d.actual) {
                (Some(e), None) => {
                    let _ = writeln!(s, "  missing: {e}");
                }
                (None, Some(a)) => {
                    let _ = writeln!(s, "  unexpected: {a}");
                }
                _ => unreachable!("a path is on at least one side"),
            },
        }
    }
    s
}

/// [`assert_same`] for a tree shown by nydusd, which reports its own start time wherever an
/// inode's mtime is 0 (nydus-rafs `fs.rs`: "older rafs image doesn't include mtime"): there the
/// mtime is left out on both sides; the kernel mount still judges it.
pub fn assert_same_nydusd(expected: &Listing, actual: &Listing, what: &str) {
    let mut expected = expected.clone();
    let mut actual = actual.clone();
    for (path, entry) in expected.entries.iter_mut() {
        if entry.mtime == Some((0, 0)) {
            entry.mtime = None;
            if let Some(shown) = actual.entries.get_mut(path) {
                shown.mtime = None;
            }
        }
    }
    assert_same(&expected, &actual, what);
}

/// Panic with a readable report unless the trees are identical.
pub fn assert_same(expected: &Listing, actual: &Listing, what: &str) {
    assert!(
        !expected.entries.is_empty(),
        "{what}: the expected tree is empty, which proves nothing"
    );
    let diffs = expected.diff(actual);
    assert!(
        diffs.is_empty(),
        "{what}: {} difference(s) between the expected tree and the reader's:\n{}",
        diffs.len(),
        render(&diffs)
    );
}

fn line(path: &[u8], e: &Entry) -> String {
    let mut s = escape(path);
    for (name, value) in e.fields() {
        let _ = write!(s, "\t{name}={value}");
    }
    s
}

/// Bytes as text: printable ASCII as is (backslash doubled), anything else as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x21..=0x7e | b' ' => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

/// List the tree under `root` (not following symlinks, not crossing into other mounts' trees
/// other than `root` itself).
pub fn list(root: &Path, opts: ListOptions) -> Listing {
    let mut raw: Vec<(Vec<u8>, fs::Metadata, std::path::PathBuf)> = Vec::new();
    walk(root, b"", &mut raw);

    // Hardlink groups: non-directories sharing (dev, ino); the group is named by its first path.
    let mut groups: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    if opts.hardlinks {
        for (path, md, _) in &raw {
            if !md.is_dir() {
                groups
                    .entry((md.dev(), md.ino()))
                    .or_insert_with(|| path.clone());
            }
        }
    }
    let mut counts: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    for (_, md, _) in &raw {
        *counts.entry((md.dev(), md.ino())).or_default() += 1;
    }

    let mut listing = Listing::default();
    for (path, md, full) in raw {
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else {
            "unknown"
        };
        let key = (md.dev(), md.ino());
        let shared = opts.hardlinks && !ft.is_dir() && (md.nlink() > 1 || counts[&key] > 1);
        let entry = Entry {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: (ft.is_file() || ft.is_symlink()).then_some(md.len()),
            sha256: (opts.content && ft.is_file()).then(|| super::sha256_hex(&full)),
            target: ft.is_symlink().then(|| {
                fs::read_link(&full)
                    .unwrap_or_else(|e| panic!("readlink {}: {e}", full.display()))
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            }),
            xattrs: xattrs(&full),
            nlink: (opts.hardlinks && !ft.is_dir()).then(|| md.nlink()),
            hardlink: shared.then(|| groups[&key].clone()),
            rdev: (ft.is_char_device() || ft.is_block_device()).then(|| split_dev(md.rdev())),
            mtime: (path != b"/").then(|| (md.mtime(), md.mtime_nsec())),
        };
        listing.entries.insert(path, entry);
    }
    listing
}

fn walk(dir: &Path, rel: &[u8], out: &mut Vec<(Vec<u8>, fs::Metadata, std::path::PathBuf)>) {
    let md = fs::symlink_metadata(dir).unwrap_or_else(|e| panic!("lstat {}: {e}", dir.display()));
    let name = if rel.is_empty() {
        b"/".to_vec()
    } else {
        rel.to_vec()
    };
    out.push((name, md, dir.to_path_buf()));
    let mut children: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|e| e.unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display())))
        .collect();
    children.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
    for child in children {
        let mut path = rel.to_vec();
        path.push(b'/');
        path.extend_from_slice(child.file_name().as_bytes());
        let full = child.path();
        let md =
            fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("lstat {}: {e}", full.display()));
        if md.is_dir() {
            walk(&full, &path, out);
        } else {
            out.push((path, md, full));
        }
    }
}

fn xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    // The xattr crate uses the l*xattr calls: symlinks' own attributes, never their targets'.
    let names = xattr::list(path).unwrap_or_else(|e| panic!("listxattr {}: {e}", path.display()));
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = names
        .map(|name| {
            let value = xattr::get(path, &name)
                .unwrap_or_else(|e| panic!("getxattr {} {name:?}: {e}", path.display()))
                .unwrap_or_default();
            (name.as_bytes().to_vec(), value)
        })
        .collect();
    out.sort();
    out
}

/// Linux's dev_t split (glibc's gnu_dev_major/minor).
fn split_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}
