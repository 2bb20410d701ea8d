//! The output image: an OCI image layout (a directory or one oci-archive tar file) holding one
//! Nydus blob layer per source layer, the bootstrap layer, and the rewritten config, manifest and
//! index; written atomically, and stopped cleanly by SIGINT and SIGTERM.

pub mod archive;
pub mod bootstrap_layer;
pub mod gzip;
pub mod image;
pub mod interrupt;
pub mod layout;
