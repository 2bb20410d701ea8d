//! The limits the input readers enforce, in one place (README.md, "Input images").
//!
//! An input image is untrusted: its indexes, manifests, configs, `manifest.json` and archive
//! headers are written by whoever made it. Every count and size they declare is bounded here
//! before anything is allocated or walked, so that a hostile input costs bounded time and memory
//! and ends in one clear error. Each limit is far above what real images use (the figures in
//! the comments), so that only inputs built to do harm ever meet one.

/// The largest index, manifest, config, `oci-layout` or `manifest.json` read (real ones are a
/// few kilobytes; a config with a long history rarely reaches 1 MiB).
pub const METADATA_LIMIT: u64 = 16 << 20;

/// The most metadata bytes (the sum of every [`METADATA_LIMIT`]-bounded read) one input may make
/// us read and hash, counting repeated reads of the same blob. It bounds the work of inputs that
/// name one large blob many times; a layout of ten thousand images reads a few hundred MiB.
pub const METADATA_BUDGET: u64 = 1 << 30;

/// How deep indexes may nest below `index.json` (real images use one level, a multi-platform
/// index; content addressing rules out cycles, this rules out abuse).
pub const MAX_INDEX_DEPTH: usize = 8;

/// The most descriptors examined while listing an input's images, counted over every index
/// (`index.json` included) and every time an index is reached. A layout of five hundred
/// multi-platform tags with attestations examines about ten thousand.
pub const MAX_DESCRIPTORS: usize = 20_000;

/// The most layers one image may have. overlayfs and containerd stop at a few hundred lower
/// layers in practice (Docker refuses more than 125 at build time); this is generous.
pub const MAX_LAYERS: usize = 1000;

/// The most images a `docker save` `manifest.json` may list.
pub const MAX_DOCKER_IMAGES: usize = 1000;

/// The most members an input archive may hold (an image archive holds about three per layer).
pub const MAX_MEMBERS: usize = 100_000;

/// The longest member name in an input archive, in bytes (Linux's PATH_MAX).
pub const MAX_MEMBER_NAME: usize = 4096;

/// The most bytes of member names and link targets an input archive may hold in all (real
/// archives use some 80 bytes a member).
pub const MAX_NAME_BYTES: usize = 32 << 20;

/// The largest PAX extended header in an input archive, in bytes (real ones hold a name and a
/// few times).
pub const MAX_PAX_HEADER: u64 = 1 << 20;
