//! Layer reading: walk a layer's tar entries as the verified, decompressed stream (or the mapped
//! plain tar) goes past, decode each into a [`entry::LayerEntry`], and hand each regular file's
//! content to the blob side's [`ChunkSink`](crate::blob::sink::ChunkSink).

pub mod entries;
pub mod entry;
pub mod mapped;
pub mod readahead;
