//! The image's merged tree read from its source layers, for the resolver: one reading of every
//! layer (the same streams, verification and merge rules as `convert`), keeping in a spool
//! file (disk, not memory) the content of the only files the resolver reads: those beginning
//! with the ELF magic or `#!`, the dynamic loader's configuration under `/etc/ld.so.conf`, and
//! Python sources (`.py`, for their imports).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::{ImageFiles, Node, SpoolFile, Startup};
use crate::blob::chunk::{ChunkIndex, FileData};
use crate::blob::sink::ChunkSink;
use crate::common::error::{Error, Result};
use crate::common::path::ImagePath;
use crate::layer::entries::{self, Limits};
use crate::layer::readahead::ReadAhead;
use crate::source::{Image, ImageSource};
use crate::tree::{DataRef, LayerBuilder, Tree};

/// An image's merged tree with its startup-relevant content spooled.
pub struct SpooledImage {
    tree: Tree,
    spool: File,
    /// Where each kept file lies in the spool: a file's one "chunk" in `tree` is its index here
    /// (this tree is never written as a bootstrap, so its chunk lists are free for that use).
    kept: Vec<(u64, u64)>,
}

impl SpooledImage {
    /// Read every layer of `image` (bottom first) into the merged tree; the spool is a
    /// temporary file in `tmp`.
    pub fn read(
        source: &dyn ImageSource,
        image: &Image,
        limits: Limits,
        tmp: &Path,
    ) -> Result<SpooledImage> {
        let mut sink = Keep {
            spool: SpoolFile::new(tmp)?,
            kept: Vec::new(),
        };
        let mut limits = limits;
        let mut merged = Tree::new();
        for layer in &image.layers {
            let what = layer.label();
            let mut reader = ReadAhead::open(source.store(), layer, Arc::new(AtomicU64::new(0)))?;
            let mut builder = if layer.index == 0 {
                LayerBuilder::bottom(false)
            } else {
                LayerBuilder::over(&merged)
            };
            // The conversion reading warns about the layer's entries; this one stays quiet.
            let _notes = entries::for_each_entry(&mut reader, &mut sink, &mut limits, &mut |e| {
                builder.add(e)
            })
            .map_err(|e| e.context(&what))?;
            let built = builder.finish();
            reader.finish().map_err(|e| e.context(&what))?;
            match (built.merged, built.packed) {
                (Some(tree), _) => merged = tree,
                (None, Some(packed)) => {
                    merged.apply_packed(&packed).map_err(|e| e.context(&what))?
                }
                (None, None) => {}
            }
        }
        let Keep { spool, kept } = sink;
        let spool = spool.finish()?;
        Ok(SpooledImage {
            tree: merged,
            spool,
            kept,
        })
    }

    fn file(&self, path: &[u8]) -> Option<DataRef<'_>> {
        let path = ImagePath::parse(path).ok()?;
        let node = self.tree.lookup(&path)?;
        Some(self.tree.inode_of(node).data)
    }
}

impl ImageFiles for SpooledImage {
    fn node(&self, path: &[u8]) -> Option<Node> {
        Some(match self.file(path)? {
            DataRef::Dir => Node::Dir,
            DataRef::File { size, .. } => Node::File { size },
            DataRef::Symlink(target) => Node::Symlink(target.to_vec()),
            _ => Node::Other,
        })
    }

    fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let Some(node) = ImagePath::parse(dir)
            .ok()
            .and_then(|p| self.tree.lookup(&p))
        else {
            return Vec::new();
        };
        self.tree
            .children(node)
            .into_iter()
            .map(|(name, _)| name.to_vec())
            .collect()
    }

    fn read_at(&self, path: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize> {
        let Some(DataRef::File { chunks, .. }) = self.file(path) else {
            return Ok(0);
        };
        let Some(&(start, len)) = chunks.iter().next().and_then(|i| self.kept.get(i as usize))
        else {
            return Ok(0);
        };
        if offset >= len {
            return Ok(0);
        }
        let n = buf.len().min((len - offset) as usize);
        self.spool
            .read_exact_at(&mut buf[..n], start + offset)
            .map_err(|e| Error::io(Path::new("the startup spool"), e))?;
        Ok(n)
    }
}

/// Python sources larger than this are not kept (the resolver reads no more of one).
const PYTHON_SOURCE_MAX: u64 = 1 << 20;

/// Whether the resolver reads a file of this path that begins with `head`.
fn kept(path: &ImagePath, head: &[u8], size: u64) -> bool {
    if head.starts_with(b"\x7fELF") || head.starts_with(b"#!") {
        return true;
    }
    let path = path.to_bytes();
    path == b"/etc/ld.so.conf"
        || path.starts_with(b"/etc/ld.so.conf.d/")
        || (path.ends_with(b".py") && size <= PYTHON_SOURCE_MAX)
}

/// The reading's sink: spools the files the resolver reads, skips the rest.
struct Keep<'t> {
    spool: SpoolFile<'t>,
    /// Each kept file's offset and size in the spool.
    kept: Vec<(u64, u64)>,
}

impl ChunkSink for Keep<'_> {
    fn file(&mut self, path: &ImagePath, data: &mut dyn Read, size: u64) -> Result<FileData> {
        let mut data = data.take(size);
        let mut head = [0u8; 4];
        let mut got = 0;
        while got < head.len() {
            match data.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(Path::new("the layer"), e)),
            }
        }
        let mut rest = (&head[..got]).chain(&mut data);
        if !kept(path, &head[..got], size) {
            self.spool.skip(path, &mut rest, size)?;
            return Ok(FileData {
                size,
                chunks: Vec::new(),
            });
        }
        let index = ChunkIndex::try_from(self.kept.len())
            .map_err(|_| Error::internal("more than 2^32 startup files kept"))?;
        let offset = self.spool.append(path, &mut rest, size)?;
        self.kept.push((offset, size));
        Ok(FileData {
            size,
            chunks: vec![index],
        })
    }
}

/// What the image's config says a container runs first.
pub fn startup(image: &Image) -> Startup {
    let Some(config) = image.config.parsed.config() else {
        return Startup::default();
    };
    Startup {
        entrypoint: config.entrypoint().clone().unwrap_or_default(),
        cmd: config.cmd().clone().unwrap_or_default(),
        env: config.env().clone().unwrap_or_default(),
        working_dir: config.working_dir().clone(),
    }
}
