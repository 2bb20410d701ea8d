//! A layer whose tar already lies uncompressed in a plain file (a member of a `docker save`
//! tarball, an uncompressed layer blob), read by mapping the file rather than by `read()`.
//!
//! Streaming such a layer costs a kernel-to-user copy of every byte, and hashes it twice: once
//! against the manifest's digest and once against the config's diff_id, although for a plain tar
//! these are the same bytes (and for a docker save tarball the same digest). Here the bytes are
//! mapped [`WINDOW`] at a time, hashed once per digest algorithm, and handed to the tar reader
//! as the mapping itself.
//!
//! Memory stays flat in the layer's size: a mapped page that has been touched counts in the
//! resident set until it is unmapped, so the layer is never mapped whole. Each window is
//! unmapped as soon as its reader drops it, and only the few windows in
//! [`ReadAhead`](super::readahead::ReadAhead)'s queue are mapped at once.
//!
//! The file must not change while it is mapped: a concurrent writer could make the bytes read
//! differ from the bytes hashed, and truncating it would make reading the lost pages fault
//! (`SIGBUS`). Inputs are files the user hands us to read, so we accept that, as every mmap-based
//! reader does; the length is checked when the layer is opened.

use std::fs::File;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{Mmap, MmapOptions};
use oci_spec::image::Digest;

use crate::common::digest::Hasher;
use crate::common::error::{Error, Result};
use crate::source::{Layer, LayerSummary};

/// Bytes mapped at a time: large enough that mapping and unmapping cost nothing next to hashing
/// and chunking, small enough that the windows alive at once stay as small as the streaming
/// path's buffers. On the 2 GiB large-files layer, windows of 256 KiB to 4 MiB took the same CPU
/// time, and peak RSS grew with the windows' size times the windows alive: 23 MiB with these
/// (as when streaming), 25 MiB with 1 MiB windows, 41 MiB with 4 MiB.
pub const WINDOW: usize = 512 << 10;

/// One mapped window of a layer's bytes, already hashed; unmapped when dropped.
pub struct Window {
    map: Mmap,
}

impl Deref for Window {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

/// The digests to check and the running hashes for them. An uncompressed layer's stored digest
/// and diff_id name the same bytes, so they share one hash when they use the same algorithm.
struct Checks {
    stored: Hasher,
    /// A separate hash for the diff_id, only when its algorithm differs from the stored digest's.
    diff_id: Option<Hasher>,
}

/// A layer mapped window by window; see the module documentation.
pub struct MappedLayer {
    file: File,
    path: PathBuf,
    /// Offset in `file` of the next window.
    next: u64,
    /// Offset in `file` just past the layer's last byte.
    end: u64,
    /// The first window, mapped when opening (to know that mapping works at all).
    first: Option<Window>,
    checks: Option<Checks>,
    size: u64,
    digest: Digest,
    diff_id: Digest,
    label: String,
    location: String,
    /// Bytes hashed so far, for whoever shows progress.
    read: Arc<AtomicU64>,
}

impl MappedLayer {
    /// Map `layer` if its tar lies uncompressed in a plain file; `Ok(None)` when it does not, or
    /// when the file cannot be mapped (some file systems cannot): then the caller streams it.
    ///
    /// Errors: the file is missing or unreadable (`Io`), shorter than the layer (`BadInput`),
    /// the extent's length is not the size the manifest declares, or a digest uses an
    /// algorithm we cannot compute (`BadInput`, as when streaming).
    pub fn open(layer: &Layer, read: Arc<AtomicU64>) -> Result<Option<MappedLayer>> {
        let Some(extent) = layer.uncompressed_extent() else {
            return Ok(None);
        };
        let label = layer.label();
        let stored = Hasher::for_digest(&layer.digest, &layer.location)?;
        let diff_id = if layer.diff_id.algorithm() == layer.digest.algorithm() {
            None
        } else {
            Some(Hasher::for_digest(&layer.diff_id, &label)?)
        };
        if extent.len != layer.size {
            // What streaming reports when the member's length is not the declared one.
            return Err(Error::bad_input(
                &layer.location,
                format!(
                    "is {} bytes, but the manifest says {} bytes (truncated?)",
                    extent.len, layer.size
                ),
            ));
        }
        let file = File::open(&extent.path).map_err(|e| Error::io(&extent.path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| Error::io(&extent.path, e))?
            .len();
        let end = extent.offset.checked_add(extent.len);
        if end.is_none_or(|end| end > file_len) {
            return Err(Error::bad_input(
                extent.path.display(),
                format!(
                    "ends early, at byte {file_len}: {} needs {} bytes from byte {}",
                    label, extent.len, extent.offset
                ),
            ));
        }
        let mut mapped = MappedLayer {
            file,
            path: extent.path.clone(),
            next: extent.offset,
            end: extent.offset + extent.len,
            first: None,
            checks: Some(Checks { stored, diff_id }),
            size: layer.size,
            digest: layer.digest.clone(),
            diff_id: layer.diff_id.clone(),
            label,
            location: layer.location.clone(),
            read,
        };
        // The kernel reads ahead of a sequential reader of the file; say that we are one.
        // Advice only: nothing to do if it is not taken.
        // SAFETY: a plain system call on a descriptor we own; it touches no memory of ours.
        unsafe {
            libc::posix_fadvise(
                mapped.file.as_raw_fd(),
                extent.offset as libc::off_t,
                extent.len as libc::off_t,
                libc::POSIX_FADV_SEQUENTIAL,
            );
        }
        match mapped.map_next() {
            Ok(first) => mapped.first = first,
            Err(e) => {
                log::info!(
                    "{}: cannot be mapped ({e}): streamed instead",
                    layer.label()
                );
                return Ok(None);
            }
        }
        Ok(Some(mapped))
    }

    /// Map the next window; `None` past the end. Errors are the mapping's own.
    fn map_next(&mut self) -> std::io::Result<Option<Window>> {
        if self.next >= self.end {
            return Ok(None);
        }
        let len = (self.end - self.next).min(WINDOW as u64) as usize;
        // SAFETY: the mapping is read-only and private to us, and every access to it is bounds
        // checked as a slice. The one unsoundness mmap always carries, the file changing under
        // the mapping, is documented at the top of this module.
        let map = unsafe {
            MmapOptions::new()
                .offset(self.next)
                .len(len)
                // Fault the window in with the mapping: one system call instead of a page fault
                // per 64 KiB as it is hashed.
                .populate()
                .map(&self.file)?
        };
        self.next += len as u64;
        Ok(Some(Window { map }))
    }

    /// The next window of the layer, hashed; `None` at the end.
    pub fn next_window(&mut self) -> Result<Option<Window>> {
        let window = match self.first.take() {
            Some(first) => first,
            None => match self.map_next() {
                Ok(Some(window)) => window,
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(Error::io(
                        &self.path,
                        std::io::Error::new(e.kind(), format!("mapping {}: {e}", self.label)),
                    ));
                }
            },
        };
        if let Some(checks) = self.checks.as_mut() {
            checks.stored.update(&window);
            if let Some(h) = checks.diff_id.as_mut() {
                h.update(&window);
            }
        }
        self.read.fetch_add(window.len() as u64, Ordering::Relaxed);
        Ok(Some(window))
    }

    /// Hash whatever was not handed out yet and check both digests, with the messages streaming
    /// gives: the stored digest first (against the manifest), then the diff_id (the config).
    pub fn finish(mut self) -> Result<LayerSummary> {
        while self.next_window()?.is_some() {}
        let Some(checks) = self.checks.take() else {
            return Err(Error::internal("mapped layer finished twice"));
        };
        let stored = checks.stored.finish();
        if stored != self.digest {
            return Err(Error::bad_input(
                &self.location,
                format!(
                    "content has digest {stored}, but the manifest says {}",
                    self.digest
                ),
            ));
        }
        let diff_id = match checks.diff_id {
            Some(h) => h.finish(),
            None => stored,
        };
        if diff_id != self.diff_id {
            return Err(Error::bad_input(
                &self.location,
                format!(
                    "uncompressed content has digest {diff_id}, but the config's \
                     rootfs.diff_ids says {}",
                    self.diff_id
                ),
            ));
        }
        Ok(LayerSummary {
            stored_size: self.size,
            uncompressed_size: self.size,
            diff_id,
        })
    }
}
