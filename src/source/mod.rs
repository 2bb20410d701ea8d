//! Input sources: where the image comes from.
//!
//! Each input form (OCI image layout directory, oci-archive, `docker save` tarball) lives in its
//! own module behind one interface, [`ImageSource`], that lists the images the input holds, loads
//! a selected image's manifest and config, and opens its layers as verified streams. Every byte
//! read here is checked against the digest and size the input declares.
//!
//! ```text
//! open(path) ─▶ dyn ImageSource ─▶ select(…) ─▶ Vec<Image> ─▶ open_layer(layer) ─▶ LayerReader
//!                 ├ oci_layout      (DirStore)
//!                 ├ oci_archive     (TarStore) ─┐
//!                 └ docker_archive  (TarStore)  ├ layout: the one OCI layout reader
//!                                               ┘
//! ```
//!
//! Adding a form means adding a module that implements [`ImageSource`] and a line in [`open`].

pub mod compression;
pub mod docker_archive;
pub mod image;
pub mod layer_reader;
pub mod layout;
pub mod limits;
pub mod oci_archive;
pub mod oci_layout;
pub mod platform;
pub mod select;
pub mod store;
pub mod tar_index;
pub mod tar_store;

use std::path::Path;

pub use image::{Config, Image, ImageEntry, Layer, Manifest, ManifestEntry};
pub use layer_reader::{LayerReader, LayerSummary};
pub use platform::Platform;
pub use select::{PlatformChoice, Selection, select};
pub use store::{BlobStore, FileExtent};

use crate::common::error::{Error, Result};

/// One opened input: the images it holds and access to their bytes.
///
/// Opening an input reads and verifies its indexes (and, where the platform is not declared,
/// manifests and configs); loading an image verifies its manifest and config and checks its
/// layer blobs are present; reading a layer verifies its content.
pub trait ImageSource: Send + Sync {
    /// The input's path, as given.
    fn path(&self) -> &Path;

    /// The input's form, for messages and `inspect`: "OCI image layout", "oci-archive", …
    fn form(&self) -> &'static str;

    /// Every image the input lists, in its order.
    fn images(&self) -> &[ImageEntry];

    /// Load `manifest` of `image` (both from [`images`](ImageSource::images)): read and verify
    /// the manifest and config, check that every layer blob is present with its declared size.
    fn load(&self, image: &ImageEntry, manifest: &ManifestEntry) -> Result<Image>;

    /// The input's bytes.
    fn store(&self) -> &dyn BlobStore;

    /// Open a layer of an image loaded from this source as a verified, uncompressed stream.
    fn open_layer(&self, layer: &Layer) -> Result<LayerReader> {
        LayerReader::open(self.store(), layer)
    }
}

/// Open the input at `path`, recognising its form: a directory is an OCI image layout; a file is
/// a tar archive (plain, gzip or zstd) holding either `manifest.json` (a `docker save` tarball)
/// or an OCI layout (an oci-archive). Fails with `BadInput` for anything else.
pub fn open(path: &Path) -> Result<Box<dyn ImageSource>> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::bad_input(path.display(), "does not exist")
        } else {
            Error::io(path, e)
        }
    })?;
    if meta.is_dir() {
        return Ok(Box::new(oci_layout::OciLayout::open(path)?));
    }
    let store = tar_store::TarStore::open(path)?;
    if store.contains(docker_archive::MANIFEST_JSON) {
        Ok(Box::new(docker_archive::DockerArchive::from_store(store)?))
    } else if store.contains("index.json") || store.contains("oci-layout") {
        Ok(Box::new(oci_archive::OciArchive::from_store(store)?))
    } else {
        Err(Error::bad_input(
            path.display(),
            "is a tar archive but not an image: it holds neither manifest.json (docker save) \
             nor index.json (OCI layout)",
        ))
    }
}
