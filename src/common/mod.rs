//! The small pieces every stage of the pipeline shares and that belong to none of them: the error
//! type and its exit codes, sha256 digests and their verification, hex, the little-endian field
//! codec of the on-disk structures, paths inside an image, and words for counts. Nothing here imports the rest of
//! the crate.

pub mod digest;
pub mod error;
pub mod hex;
pub mod le;
pub mod path;
pub mod text;
