//! Layer reading: decompress a layer (plain tar, gzip or zstd), walk its tar entries, and cut the
//! content of each regular file into fixed-size chunks.

pub mod decompress;
