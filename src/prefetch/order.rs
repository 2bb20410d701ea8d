//! Where a layer's files go in its blob when a startup list is given: the files the list names
//! (a path, or any file under a listed directory) first, in list order, so that their chunks
//! lie together at the blob's start and nydusd's prefetch fetches them in a few large ranges;
//! every other file after them, in tar order.
//!
//! The blob is written as the tar streams past, so the layer is read twice: a first pass keeps
//! the listed files' content in a spool file (disk, not memory), which then goes to the blob
//! in list order; the second, ordinary pass hands every other file to the blob and gives each
//! listed one the chunk list it already has. Files are matched between the passes by their
//! place among the layer's regular files, so a path the tar holds twice stays two files.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::blob::chunk::FileData;
use crate::blob::sink::ChunkSink;
use crate::common::error::{Error, Result};
use crate::common::path::ImagePath;
use crate::layer::entries::{self, Limits};

use super::SpoolFile;

/// The startup list as a ranking of paths.
#[derive(Clone, Debug, Default)]
pub struct Order {
    /// Each listed path (without its trailing `/`; the root is empty) and its first place.
    ranks: HashMap<Vec<u8>, usize>,
}

impl Order {
    /// The ranking of `paths`, absolute paths in list order.
    pub fn new(paths: &[Vec<u8>]) -> Order {
        let mut ranks = HashMap::new();
        for (rank, path) in paths.iter().enumerate() {
            let key = path.strip_suffix(b"/").unwrap_or(path).to_vec();
            ranks.entry(key).or_insert(rank);
        }
        Order { ranks }
    }

    /// The place of the first listed path that is `path` or a directory above it.
    pub fn rank(&self, path: &ImagePath) -> Option<usize> {
        let full = path.to_bytes();
        let full = full.strip_suffix(b"/").unwrap_or(&full);
        let mut best = self.ranks.get(full).copied();
        // Every ancestor, from the parent up to the root (the empty key).
        for (i, &b) in full.iter().enumerate().rev() {
            if b == b'/'
                && let Some(&rank) = self.ranks.get(&full[..i])
            {
                best = Some(best.map_or(rank, |b| b.min(rank)));
            }
        }
        best
    }
}

/// The listed files of one layer, their content spooled by the first pass.
pub struct HotFiles {
    spool: File,
    /// In list order (ties in tar order).
    files: Vec<HotFile>,
}

struct HotFile {
    /// The file's place among the layer's regular files.
    ordinal: u64,
    rank: usize,
    path: ImagePath,
    offset: u64,
    size: u64,
}

impl HotFiles {
    /// The first pass: read the layer's tar from `reader` and spool every file `order` names
    /// into a temporary file in `tmp`. The caller verifies the stream after this returns.
    pub fn collect(
        reader: impl Read,
        order: &Order,
        limits: Limits,
        tmp: &Path,
    ) -> Result<HotFiles> {
        let mut sink = Spool {
            order,
            spool: SpoolFile::new(tmp)?,
            ordinal: 0,
            files: Vec::new(),
        };
        let mut limits = limits;
        // What the layer's entries deserve a warning for, the second reading warns once.
        let _notes = entries::for_each_entry(reader, &mut sink, &mut limits, &mut |_| Ok(()))?;
        let Spool {
            spool, mut files, ..
        } = sink;
        let spool = spool.finish()?;
        files.sort_by_key(|f| (f.rank, f.ordinal));
        Ok(HotFiles { spool, files })
    }

    /// Whether the layer holds none of the listed files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Hand the listed files to `blob`, in list order: the sink for the second pass.
    pub fn write_first<'s>(mut self, blob: &'s mut dyn ChunkSink) -> Result<LaidOut<'s>> {
        let mut done = HashMap::with_capacity(self.files.len());
        for file in &self.files {
            self.spool
                .seek(SeekFrom::Start(file.offset))
                .map_err(|e| Error::io(Path::new("the startup spool"), e))?;
            let mut data = (&mut self.spool).take(file.size);
            let chunks = blob.file(&file.path, &mut data, file.size)?;
            done.insert(file.ordinal, chunks);
        }
        Ok(LaidOut {
            blob,
            done,
            ordinal: 0,
        })
    }
}

/// The first pass's sink: keeps the listed files, skips the rest.
struct Spool<'o> {
    order: &'o Order,
    spool: SpoolFile<'o>,
    ordinal: u64,
    files: Vec<HotFile>,
}

impl ChunkSink for Spool<'_> {
    fn file(&mut self, path: &ImagePath, data: &mut dyn Read, size: u64) -> Result<FileData> {
        let ordinal = self.ordinal;
        self.ordinal += 1;
        match self.order.rank(path) {
            Some(rank) => {
                let offset = self.spool.append(path, data, size)?;
                self.files.push(HotFile {
                    ordinal,
                    rank,
                    path: path.clone(),
                    offset,
                    size,
                });
            }
            None => self.spool.skip(path, data, size)?,
        }
        Ok(FileData {
            size,
            chunks: Vec::new(),
        })
    }
}

/// The second pass's sink: listed files already have their chunks; the rest go to the blob.
pub struct LaidOut<'s> {
    blob: &'s mut dyn ChunkSink,
    done: HashMap<u64, FileData>,
    ordinal: u64,
}

impl ChunkSink for LaidOut<'_> {
    fn file(&mut self, path: &ImagePath, data: &mut dyn Read, size: u64) -> Result<FileData> {
        let ordinal = self.ordinal;
        self.ordinal += 1;
        let Some(chunks) = self.done.remove(&ordinal) else {
            return self.blob.file(path, data, size);
        };
        // The same verified layer read again: the file must be the one the first pass kept.
        let skipped = io::copy(&mut data.take(size), &mut io::sink())
            .map_err(|e| Error::io(Path::new("the layer"), e))?;
        if skipped != size || chunks.size != size {
            return Err(Error::internal(format!(
                "{path}: the layer's second reading differs from its first"
            )));
        }
        Ok(chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> ImagePath {
        ImagePath::parse(p.as_bytes()).unwrap()
    }

    #[test]
    fn a_file_takes_the_first_place_that_names_it_or_a_directory_above() {
        let order = Order::new(&[
            b"/usr/bin/python3".to_vec(),
            b"/usr/lib/".to_vec(),
            b"/usr".to_vec(),
            b"/usr/lib/x.so".to_vec(),
        ]);
        assert_eq!(order.rank(&path("/usr/bin/python3")), Some(0));
        assert_eq!(order.rank(&path("/usr/lib/x.so")), Some(1));
        assert_eq!(order.rank(&path("/usr/share/doc")), Some(2));
        assert_eq!(order.rank(&path("/etc/passwd")), None);
        // A name that merely starts like a listed one is not under it.
        assert_eq!(order.rank(&path("/usrx")), None);
        let all = Order::new(&[b"/etc".to_vec(), b"/".to_vec()]);
        assert_eq!(all.rank(&path("/etc/passwd")), Some(0));
        assert_eq!(all.rank(&path("/bin/sh")), Some(1));
    }
}
