//! The output image: an OCI image layout holding one Nydus blob layer per source layer, the
//! bootstrap layer, and the rewritten config, manifest and index; written atomically.

pub mod image;
pub mod layout;
