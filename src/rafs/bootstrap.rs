//! What every RAFS bootstrap writer shares: what a bootstrap describes ([`BootstrapInput`],
//! [`Prefetch`]) and what a written one is ([`Bootstrap`], a temporary file read as a stream or
//! mapped as one slice). The version-specific layouts live in [`super::v5`] and [`super::v6`].

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::blob::chunk::{BlobInfo, BlobOptions, ChunkInfo, ChunkTable, Compressor, Digester};
use crate::common::error::{Error, ErrorKind, Result};
use crate::common::path::ImagePath;
use crate::ondisk::rafs_v6::{
    BLOB_CHUNK_FLAG_COMPRESSED, BLOB_CHUNK_FLAG_ENCRYPTED, RAFS_SUPER_FLAG_COMPRESSION_LZ4,
    RAFS_SUPER_FLAG_COMPRESSION_NONE, RAFS_SUPER_FLAG_COMPRESSION_ZSTD,
    RAFS_SUPER_FLAG_EXPLICIT_UID_GID, RAFS_SUPER_FLAG_HAS_XATTR, RAFS_SUPER_FLAG_HASH_BLAKE3,
    RAFS_SUPER_FLAG_HASH_SHA256, RafsV5ChunkInfo,
};
use crate::tree::{NodeId, Tree};

/// What a bootstrap describes: a tree, the chunks its files use, and the blobs holding them.
pub struct BootstrapInput<'a> {
    pub tree: &'a Tree,
    pub chunks: &'a ChunkTable,
    /// The blob table, in order: a chunk's `blob_index` is its position here.
    pub blobs: &'a [BlobInfo],
    pub options: BlobOptions,
    /// What the prefetch table names.
    pub prefetch: &'a Prefetch,
}

/// What a bootstrap's prefetch table names: the inodes nydusd reads ahead at mount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Prefetch {
    /// The root alone, which nydusd reads as "everything": what the snapshotter's converter
    /// writes by default (`--prefetch-policy fs`, pattern `/`).
    #[default]
    Root,
    /// No table (`--prefetch-patterns none`).
    None,
    /// These paths (files or directories, in this order); those the tree lacks are left out.
    Paths(Vec<ImagePath>),
}

impl Prefetch {
    /// The nodes of `tree` the table names, in order, each once.
    pub(super) fn nodes(&self, tree: &Tree) -> Vec<NodeId> {
        let paths = match self {
            Prefetch::Root => return vec![tree.root()],
            Prefetch::None => return Vec::new(),
            Prefetch::Paths(paths) => paths,
        };
        let mut nodes = Vec::new();
        for path in paths {
            match tree.lookup(path) {
                Some(node) if !nodes.contains(&node) => nodes.push(node),
                Some(_) => {}
                None => log::info!(
                    "prefetch pattern /{} is not in this tree",
                    path.to_bytes().escape_ascii()
                ),
            }
        }
        nodes
    }
}

/// A finished bootstrap, kept in an unnamed temporary file rather than in memory: the bootstrap
/// of 200,000 files is over 40 MiB, and its readers (the blob writer, the bootstrap layer)
/// stream it.
pub struct Bootstrap {
    pub(super) file: File,
    pub(super) len: u64,
}

impl Bootstrap {
    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no byte (never, for a written bootstrap).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A reader of the whole bootstrap from its first byte; several may read at once.
    pub fn reader(&self) -> BootstrapReader<'_> {
        BootstrapReader {
            file: &self.file,
            pos: 0,
            len: self.len,
        }
    }

    /// The whole bootstrap as one slice, for readers that need it whole (the blob writer
    /// compresses it as one zstd frame, which must be exactly the frame nydus-image writes)
    /// without holding it in memory: the bytes are the temporary file's pages, mapped, and
    /// while the view lives a thread takes them out of this process every few milliseconds.
    /// A page read again comes back from the page cache; a reader going front to back (zstd,
    /// whose matches reach back only its window, sha256, gzip) holds a few MiB at a time.
    pub fn map(&self) -> Result<MappedBootstrap> {
        let io_error =
            |e: io::Error| Error::new(ErrorKind::Io, format!("mapping the bootstrap: {e}"));
        // SAFETY: the file is an unnamed temporary file of ours, written and never changed
        // again, so the mapped bytes cannot change under the slice.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&self.file) }.map_err(io_error)?);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let dropper = {
            let (map, stop) = (Arc::clone(&map), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("bootstrap-pages".into())
                .spawn(move || {
                    let (stopped, wake) = &*stop;
                    let mut stopped = stopped.lock().unwrap_or_else(|e| e.into_inner());
                    while !*stopped {
                        // SAFETY: a shared mapping of a file: dropped pages are read again
                        // from the file, never zero-filled.
                        let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
                        stopped = wake
                            .wait_timeout(stopped, Duration::from_millis(4))
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                })
                .map_err(io_error)?
        };
        Ok(MappedBootstrap {
            map,
            stop,
            dropper: Some(dropper),
        })
    }

    /// The whole bootstrap in memory (tests and small images).
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len as usize);
        self.reader()
            .read_to_end(&mut out)
            .map_err(|e| Error::new(ErrorKind::Io, format!("reading the bootstrap back: {e}")))?;
        Ok(out)
    }
}

/// A [`Bootstrap`] seen as one slice; see [`Bootstrap::map`].
pub struct MappedBootstrap {
    map: Arc<memmap2::Mmap>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    dropper: Option<JoinHandle<()>>,
}

impl Deref for MappedBootstrap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for MappedBootstrap {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(dropper) = self.dropper.take() {
            let _ = dropper.join();
        }
    }
}

/// Reads a [`Bootstrap`] front to back, with positioned reads (no shared file cursor).
pub struct BootstrapReader<'b> {
    file: &'b File,
    pos: u64,
    len: u64,
}

impl Read for BootstrapReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = (self.len - self.pos).min(buf.len() as u64) as usize;
        if left == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..left], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the bootstrap's temporary file is shorter than written",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// The super block flags both versions set (the same bits in v5 and v6): owners kept, the
/// compressor and digester, and whether any inode has xattrs.
pub(super) fn super_flags(options: BlobOptions, has_xattr: bool) -> u64 {
    let compressor = match options.compressor {
        Compressor::None => RAFS_SUPER_FLAG_COMPRESSION_NONE,
        Compressor::Lz4Block => RAFS_SUPER_FLAG_COMPRESSION_LZ4,
        Compressor::Zstd => RAFS_SUPER_FLAG_COMPRESSION_ZSTD,
    };
    let digester = match options.digester {
        Digester::Blake3 => RAFS_SUPER_FLAG_HASH_BLAKE3,
        Digester::Sha256 => RAFS_SUPER_FLAG_HASH_SHA256,
    };
    let xattr = if has_xattr {
        RAFS_SUPER_FLAG_HAS_XATTR
    } else {
        0
    };
    RAFS_SUPER_FLAG_EXPLICIT_UID_GID | compressor | digester | xattr
}

/// The chunk record (v6: of the chunk info table; v5: of a file's record) of a stored chunk, as
/// used at `file_offset` of a file; `encrypted` for an image written with `--encrypt`, whose
/// every chunk is.
pub(super) fn chunk_record(info: &ChunkInfo, file_offset: u64, encrypted: bool) -> RafsV5ChunkInfo {
    let mut flags = 0;
    if info.compressed {
        flags |= BLOB_CHUNK_FLAG_COMPRESSED;
    }
    if encrypted {
        flags |= BLOB_CHUNK_FLAG_ENCRYPTED;
    }
    RafsV5ChunkInfo {
        block_id: info.digest,
        blob_index: info.blob_index,
        flags,
        compressed_size: info.compressed_size,
        uncompressed_size: info.uncompressed_size,
        compressed_offset: info.compressed_offset,
        uncompressed_offset: info.uncompressed_offset,
        file_offset,
        index: info.ci_index,
        reserved: 0,
    }
}
