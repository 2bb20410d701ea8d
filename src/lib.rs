//! nydus-offline turns an ordinary container image into a Nydus image, with no registry, no daemon
//! and no network.
//!
//! The program is a pipeline, and the modules follow the data. They are listed here
//! bottom first: each imports only modules above it in this list
//! (`tests/module_graph.rs` fails on any other import).
//!
//! ```text
//! common/   errors and exit codes, sha256 digests, hex, little-endian fields, image paths
//! ondisk/   every on-disk structure of a Nydus blob and a RAFS v6 bootstrap, declared once,
//!   │       and the one bootstrap reader
//! source/   find the image in an OCI layout, oci-archive or docker save tarball; open its
//!   │       layers as verified, decompressed streams
//! blob/     cut file content into chunks; digest, dedup and compress them; write one Nydus data
//!   │       blob per layer (the layer reader hands file content to its ChunkSink); the one
//!   │       blob reader
//! layer/    walk a layer's tar entries (PAX, GNU, sparse), decode each into a LayerEntry
//!   │
//! tree/     the filesystem tree of each layer and their merge (whiteouts, hardlinks)
//!   │
//! prefetch/ the startup files: which files a container needs first (a list given, or derived
//!   │       from the entrypoint), and their place first in each layer's blob
//! rafs/     the RAFS v6 bootstrap writer over a tree
//!   │
//! output/   the new OCI image: blob layers, bootstrap layer, config, manifest, index, written
//!           whole or not at all
//! report/   what a conversion wrote, as `--json` prints it
//! cache/    converted layers kept on disk for later runs (`--cache DIR`), keyed by their chain
//! progress/ a conversion's display on stderr
//! inspect/  check/  unpack/  convert/   the commands
//! chunkdict/ a chunk dictionary from local images, converted by `convert`;  cli/  the
//!           command line
//! ```
//!
//! `blob` sits below `layer` although the tar is read first: the layer reader pushes each file's
//! bytes into the blob side's [`blob::sink::ChunkSink`] and keeps the chunk list it returns, so
//! the layer side names blob types, never the other way round.
//!
//! `check` reads a converted image back (layout, blobs, bootstraps) through those two readers,
//! keeps the rules, and compares the tree with its source; it shares the input side with
//! `convert` and writes nothing.
//!
//! `cli` parses the command line and calls one function of this library per subcommand; `main.rs`
//! only maps the outcome to an exit code.

pub mod blob;
pub mod cache;
pub mod check;
pub mod chunkdict;
pub mod cli;
pub mod common;
pub mod convert;
pub mod inspect;
pub mod layer;
pub mod ondisk;
pub mod output;
pub mod prefetch;
pub mod progress;
pub mod rafs;
pub mod report;
pub mod source;
pub mod tree;
pub mod unpack;

pub use common::error::{Error, ErrorKind, Result};
