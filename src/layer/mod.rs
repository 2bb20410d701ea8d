//! Layer reading: decompress a layer (plain tar, gzip or zstd) or map it (a plain tar in a plain
//! file), walk its tar entries, and cut the content of each regular file into fixed-size chunks.

pub mod decompress;
pub mod entries;
pub mod mapped;
pub mod readahead;

use std::io::Read;

use crate::error::Result;
use crate::tree::{FileData, ImagePath};

/// Where regular files' content goes while a layer's tar streams past: the blob writer cuts it
/// into chunks, stores what is new and returns the file's chunk list.
pub trait ChunkSink {
    /// Consume exactly `size` bytes of `data`, the content of the file at `path`. Fewer bytes
    /// mean a truncated layer, which is an error of kind `BadInput`.
    fn file(&mut self, path: &ImagePath, data: &mut dyn Read, size: u64) -> Result<FileData>;
}
