//! Input sources: where the image comes from.
//!
//! Each input form (OCI image layout directory, oci-archive, `docker save` tarball) lives in its
//! own module behind one interface that yields the selected image's manifest, config and layer
//! readers. Every byte read here is checked against the digest and size the input declares.
