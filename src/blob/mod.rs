//! Nydus data blobs: digest, deduplicate and compress chunks, and write one blob per layer with
//! its compression-context table, header, inlined bootstrap and TOC.

pub mod chunk;
pub mod cipher;
pub(crate) mod compress;
pub mod dict;
pub mod pipeline;
pub mod reader;
pub mod reader_v5;
pub mod sink;
pub mod writer;
