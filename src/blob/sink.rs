//! The door through which file content enters the blob side: while a layer's tar streams past,
//! the layer reader hands each regular file's bytes to a [`ChunkSink`], which cuts them into
//! chunks, stores what is new and returns the file's chunk list.

use std::io::Read;

use crate::blob::chunk::FileData;
use crate::common::error::Result;
use crate::common::path::ImagePath;

/// Where regular files' content goes while a layer's tar streams past: the blob writer cuts it
/// into chunks, stores what is new and returns the file's chunk list.
pub trait ChunkSink {
    /// Consume exactly `size` bytes of `data`, the content of the file at `path`. Fewer bytes
    /// mean a truncated layer, which is an error of kind `BadInput`.
    fn file(&mut self, path: &ImagePath, data: &mut dyn Read, size: u64) -> Result<FileData>;
}
