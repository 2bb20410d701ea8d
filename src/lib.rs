//! nydus-offline turns an ordinary container image into a Nydus image, with no registry, no daemon
//! and no network.
//!
//! The program is a pipeline, and the modules follow the data:
//!
//! ```text
//! source/   find the image in an OCI layout, oci-archive or docker save tarball; verify digests
//!   │
//! layer/    decompress each layer, walk its tar entries, cut regular files into chunks
//!   │
//! blob/     digest, dedup and compress chunks; write one Nydus data blob per layer
//!   │
//! tree/     the filesystem tree of each layer and their merge (whiteouts, hardlinks)
//!   │
//! rafs/     the RAFS bootstrap writers over the merged tree: v6 (EROFS) and v5
//!   │
//! output/   the new OCI image: blob layers, bootstrap layer, config, manifest, index
//! ```
//!
//! `check` reads a converted image back (layout, blobs, bootstraps) and compares it with its
//! source; it shares the input side with `convert` and writes nothing.
//!
//! `cli` parses the command line and calls one function of this library per subcommand; `main.rs`
//! only maps the outcome to an exit code.

pub mod blob;
pub mod check;
pub mod cli;
pub mod convert;
pub mod error;
pub mod layer;
pub mod output;
pub mod progress;
pub mod rafs;
pub mod source;
pub mod tree;

pub use error::{Error, ErrorKind, Result};
