//! Blob stores: where the bytes of an input live, addressed by their path inside the image
//! (`index.json`, `blobs/sha256/<hex>`, `<id>/layer.tar`).
//!
//! A directory and a tar archive store bytes differently but answer the same question: "give me
//! a reader over member X, and tell me its length". [`BlobStore`] is that question; the OCI and
//! Docker readers are written once against it. Members are always read in place: a member of an
//! archive is a byte range of the archive file, read with positional reads so that several
//! readers can share one open file.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::digest::into_io;
use crate::common::error::{Error, Result};

/// Where a member's bytes lie in a plain file on disk, for callers that want to map them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileExtent {
    /// The file holding the bytes (the blob itself, or the archive it is a member of).
    pub path: PathBuf,
    /// Offset of the first byte in `path`.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
}

/// An opened member: a reader over its bytes (not yet verified), and where they are.
pub struct Member {
    /// The member's bytes, from the first.
    pub reader: Box<dyn Read + Send>,
    /// The member's length in bytes.
    pub len: u64,
    /// Where the bytes lie in a plain file, when they do; `None` when they only exist in a
    /// temporary copy (a compressed archive unpacked for random access).
    pub extent: Option<FileExtent>,
}

/// The bytes of one input (a directory or an archive), addressed by member path.
pub trait BlobStore: Send + Sync {
    /// The member's location for error messages: a path, or `archive.tar:member`.
    fn describe(&self, name: &str) -> String;

    /// Open member `name` (a normalised relative path, see [`normalize`]). `Ok(None)` when it
    /// does not exist.
    fn open(&self, name: &str) -> Result<Option<Member>>;

    /// Whether member `name` exists.
    fn contains(&self, name: &str) -> bool;

    /// The store's [`MetadataBudget`], charged by [`read_small`]; `None` (the default) charges
    /// nothing. A wrapper passes on its inner store's.
    fn metadata_budget(&self) -> Option<&MetadataBudget> {
        None
    }
}

/// What is left of an input's [`METADATA_BUDGET`]: every whole read of an index, manifest or
/// config is charged to it, so that an input naming one large blob many times cannot make us
/// read it without end.
#[derive(Debug, Default)]
pub struct MetadataBudget {
    used: AtomicU64,
}

impl MetadataBudget {
    /// Charge `len` bytes read from `what`; fails once the input's total passes the budget.
    pub fn charge(&self, what: &str, len: u64) -> Result<()> {
        // Saturating, so that a huge charge cannot wrap the total back under the budget.
        let before = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_add(len))
            })
            .unwrap_or(u64::MAX);
        if before.saturating_add(len) > METADATA_BUDGET {
            return Err(Error::bad_input(
                what,
                format!(
                    "reading it would pass {METADATA_BUDGET} bytes of indexes, manifests and \
                     configs read for this input; an input that names its metadata so many \
                     times is refused"
                ),
            ));
        }
        Ok(())
    }
}

/// Normalise a relative member path: drop `.` and empty components and a leading `./`. `None`
/// when the path is absolute or has a `..` component at all: such a path may name something outside the
/// image, and no member of a well-formed image does that.
pub fn normalize(path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

/// Read a small member (an index, manifest or config) whole. Refuses members larger than `limit`
/// bytes, so that a hostile input cannot make us allocate without bound.
pub fn read_small(store: &dyn BlobStore, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    let Some(member) = store.open(name)? else {
        return Ok(None);
    };
    if member.len > limit {
        return Err(Error::bad_input(
            store.describe(name),
            format!(
                "is {} bytes; metadata larger than {limit} bytes is refused",
                member.len
            ),
        ));
    }
    if let Some(budget) = store.metadata_budget() {
        budget.charge(&store.describe(name), member.len)?;
    }
    // `member.len` is at most `limit` here, so this allocation is bounded.
    let capacity = usize::try_from(member.len).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    member
        .reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| crate::common::digest::from_io(e, store.describe(name)))?;
    if bytes.len() as u64 > limit {
        // The member grew after it was measured (a file being written).
        return Err(Error::bad_input(
            store.describe(name),
            format!("metadata larger than {limit} bytes is refused"),
        ));
    }
    Ok(Some(bytes))
}

pub use crate::source::limits::{METADATA_BUDGET, METADATA_LIMIT};

/// A byte range of a shared open file, read with `pread` so that readers never disturb each
/// other's position.
pub struct RangeReader {
    file: Arc<File>,
    path: Arc<Path>,
    pos: u64,
    end: u64,
}

impl RangeReader {
    /// Read `len` bytes of `file` (opened from `path`) starting at `offset`.
    pub fn new(file: Arc<File>, path: Arc<Path>, offset: u64, len: u64) -> RangeReader {
        RangeReader {
            file,
            path,
            pos: offset,
            end: offset.saturating_add(len),
        }
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.end.saturating_sub(self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self
            .file
            .read_at(&mut buf[..want], self.pos)
            .map_err(|e| into_io(Error::io(&self.path, e)))?;
        if n == 0 {
            // The file shrank under us after we measured it.
            return Err(into_io(Error::bad_input(
                self.path.display(),
                format!("ends early, at byte {}", self.pos),
            )));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// A [`BlobStore`] that counts the bytes read from the members it opens into one counter.
pub struct CountingStore<'a> {
    pub inner: &'a dyn BlobStore,
    pub read: Arc<AtomicU64>,
}

impl BlobStore for CountingStore<'_> {
    fn describe(&self, name: &str) -> String {
        self.inner.describe(name)
    }

    fn open(&self, name: &str) -> Result<Option<Member>> {
        Ok(self.inner.open(name)?.map(|member| Member {
            reader: Box::new(CountingReader {
                inner: member.reader,
                read: Arc::clone(&self.read),
            }),
            ..member
        }))
    }

    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }

    fn metadata_budget(&self) -> Option<&MetadataBudget> {
        self.inner.metadata_budget()
    }
}

struct CountingReader<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::{METADATA_BUDGET, MetadataBudget, normalize};

    #[test]
    fn metadata_budget_refuses_past_its_total() {
        let budget = MetadataBudget::default();
        budget.charge("a", METADATA_BUDGET - 1).unwrap();
        budget.charge("b", 1).unwrap();
        let e = budget.charge("c", 1).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadInput);
        assert!(e.to_string().starts_with("c: reading it would pass"), "{e}");
        // Near 2^64 the running total must not wrap back under the budget.
        assert!(budget.charge("d", u64::MAX).is_err());
        assert!(budget.charge("e", 1).is_err());
    }

    #[test]
    fn normalize_keeps_inside_paths_only() {
        assert_eq!(normalize("./a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(
            normalize("blobs/sha256/ab").as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(normalize("../etc/passwd"), None);
        assert_eq!(normalize("a/../../b"), None);
        assert_eq!(normalize("/etc/passwd"), None);
        assert_eq!(normalize("."), None);
    }
}
