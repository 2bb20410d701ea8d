//! The oci-archive: a tar of an OCI image layout (what `skopeo copy … oci-archive:` writes),
//! optionally gzip- or zstd-compressed, read in place through a [`TarStore`].

use std::path::Path;

use crate::common::error::Result;
use crate::source::image::{Image, ImageEntry, ManifestEntry};
use crate::source::store::BlobStore;
use crate::source::tar_store::TarStore;
use crate::source::{ImageSource, layout};

/// An OCI image layout inside a tar archive.
pub struct OciArchive {
    store: TarStore,
    images: Vec<ImageEntry>,
}

impl OciArchive {
    /// Open the oci-archive at `path` and list its images.
    pub fn open(path: &Path) -> Result<OciArchive> {
        OciArchive::from_store(TarStore::open(path)?)
    }

    /// List the images of an already indexed archive.
    pub fn from_store(store: TarStore) -> Result<OciArchive> {
        layout::check_layout_version(&store)?;
        let images = layout::catalog(&store)?;
        Ok(OciArchive { store, images })
    }
}

impl ImageSource for OciArchive {
    fn path(&self) -> &Path {
        self.store.path()
    }

    fn form(&self) -> &'static str {
        "oci-archive"
    }

    fn images(&self) -> &[ImageEntry] {
        &self.images
    }

    fn load(&self, image: &ImageEntry, manifest: &ManifestEntry) -> Result<Image> {
        layout::load(&self.store, &image.names, manifest)
    }

    fn store(&self) -> &dyn BlobStore {
        &self.store
    }
}
