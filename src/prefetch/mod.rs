//! Startup files: which of an image's files a container needs first, so that the bootstrap's
//! prefetch table names them and each layer's blob holds their chunks first, together.
//!
//! - [`files`]: the image's merged tree, read from the source layers in one pass, with the
//!   content kept of the only files the resolver reads (ELF objects, `#!` scripts, the dynamic
//!   loader's configuration).
//! - [`elf`] and [`resolve`]: `--prefetch-entrypoint`, the list derived offline from the
//!   config's Entrypoint and Cmd as the kernel and the dynamic loader would find the files.
//! - [`order`]: where a file of a layer goes in its blob, given the list.

pub mod elf;
pub mod files;
pub mod order;
pub mod resolve;

use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::path::Path;

use crate::common::error::{Error, Result};
use crate::common::path::ImagePath;

/// What the merged tree holds at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    /// A regular file (a hardlink is the file it names) of `size` bytes.
    File {
        size: u64,
    },
    /// A symbolic link and its target, as stored.
    Symlink(Vec<u8>),
    /// A device, fifo or socket.
    Other,
}

/// The image's merged filesystem, as the resolver reads it.
pub trait ImageFiles {
    /// What is at `path`: absolute, `/`-separated, without `.` or `..` components, and not
    /// followed through symlinks: each component is a name in the tree, so a path through a
    /// symlinked directory finds nothing (the caller follows links itself).
    fn node(&self, path: &[u8]) -> Option<Node>;
    /// The names in the directory at `path` (found as [`node`](ImageFiles::node) finds it),
    /// sorted; none if it is not a directory.
    fn children(&self, dir: &[u8]) -> Vec<Vec<u8>>;
    /// Up to `buf.len()` bytes of the regular file at `path` from `offset`; 0 at its end.
    /// Content is kept only for files that begin with the ELF magic or `#!` and for
    /// `/etc/ld.so.conf` and the files under `/etc/ld.so.conf.d`, and `.py` files up to 1 MiB:
    /// any other file reads as empty.
    fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize>;
}

/// The parts of an image's config that say what a container runs first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Startup {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` strings; PATH and LD_LIBRARY_PATH are the ones read.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
}

/// The derived list: absolute paths, in the order a starting container needs them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartupList {
    pub paths: Vec<Vec<u8>>,
    /// What could not be resolved or was cut short by a bound, one line each, for `-v`.
    pub notes: Vec<String>,
}

/// File content kept on disk while a layer streams past (the listed files of the layout's first
/// reading, the resolver's files): appended one file after another, each at a known offset.
struct SpoolFile<'t> {
    out: BufWriter<File>,
    /// Where the spool lives, for messages.
    tmp: &'t Path,
    len: u64,
}

impl<'t> SpoolFile<'t> {
    /// An anonymous temporary file in `tmp`, gone when dropped.
    fn new(tmp: &'t Path) -> Result<SpoolFile<'t>> {
        let file = tempfile::tempfile_in(tmp).map_err(|e| Error::io(tmp, e))?;
        Ok(SpoolFile {
            out: BufWriter::new(file),
            tmp,
            len: 0,
        })
    }

    /// Keep exactly `size` bytes of `data`, the content of `path`; their offset in the spool.
    fn append(&mut self, path: &ImagePath, data: &mut dyn Read, size: u64) -> Result<u64> {
        let copied =
            io::copy(&mut data.take(size), &mut self.out).map_err(|e| Error::io(self.tmp, e))?;
        check_size(path, copied, size)?;
        let offset = self.len;
        self.len += size;
        Ok(offset)
    }

    /// Skip exactly `size` bytes of `data`, the content of `path`.
    fn skip(&self, path: &ImagePath, data: &mut dyn Read, size: u64) -> Result<()> {
        let skipped =
            io::copy(&mut data.take(size), &mut io::sink()).map_err(|e| Error::io(self.tmp, e))?;
        check_size(path, skipped, size)
    }

    /// The spool, written out, for reading back.
    fn finish(self) -> Result<File> {
        self.out
            .into_inner()
            .map_err(|e| Error::io(self.tmp, e.into_error()))
    }
}

/// Fewer bytes than the tar header declared: a truncated layer.
fn check_size(path: &ImagePath, got: u64, size: u64) -> Result<()> {
    if got == size {
        Ok(())
    } else {
        Err(Error::bad_input(
            path.to_string(),
            "file content is truncated",
        ))
    }
}
