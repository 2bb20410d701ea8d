//! What one tar entry of a layer says, decoded: its path, what kind of inode it makes (or which
//! one it links), and the inode's metadata. The layer reader produces these; the tree applies
//! them. Whiteouts are entries too, told apart by their names.

use std::collections::BTreeMap;

use crate::blob::chunk::FileData;
use crate::common::path::ImagePath;

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

/// What one tar entry of a layer says, already decoded and with its file content chunked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerEntry {
    pub path: ImagePath,
    pub kind: EntryKind,
    pub meta: Metadata,
}

impl LayerEntry {
    /// Whether this is a whiteout (`.wh.NAME` or `.wh..wh..opq`).
    pub fn is_whiteout(&self) -> bool {
        self.path
            .file_name()
            .is_some_and(|n| n.starts_with(WHITEOUT_PREFIX))
    }
}

/// The kinds of layer entries: inode types, plus hardlinks, which name an existing inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Inode(InodeData),
    /// Another name for the inode at this path (earlier in this layer or in a lower one).
    Hardlink(ImagePath),
}
