//! The OCI image layout directory: `oci-layout`, `index.json` and `blobs/<alg>/<hex>` as files.
//!
//! Blobs are opened when read, not held open, so a layout with many layers costs no descriptors.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::common::error::{Error, IoContext, Result};
use crate::source::image::{Image, ImageEntry, ManifestEntry};
use crate::source::store::{BlobStore, FileExtent, Member, MetadataBudget};
use crate::source::{ImageSource, layout};

/// The files of a directory, as a [`BlobStore`].
pub struct DirStore {
    root: PathBuf,
    budget: MetadataBudget,
}

impl DirStore {
    /// A store over the directory `root`.
    pub fn new(root: &Path) -> DirStore {
        DirStore {
            root: root.to_path_buf(),
            budget: MetadataBudget::default(),
        }
    }
}

impl DirStore {
    /// Whether the directory holds `name` as a regular file. A directory that cannot be looked
    /// into (no search permission) gives no answer: an I/O error naming `dir`, not "no".
    fn probe(&self, dir: &Path, name: &str) -> Result<bool> {
        match std::fs::metadata(self.root.join(name)) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::io(dir, e)),
        }
    }
}

impl BlobStore for DirStore {
    fn describe(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }

    fn open(&self, name: &str) -> Result<Option<Member>> {
        let path = self.root.join(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let meta = file.metadata().with_path(&path)?;
        if !meta.is_file() {
            return Err(Error::bad_input(path.display(), "is not a regular file"));
        }
        Ok(Some(Member {
            reader: Box::new(file),
            len: meta.len(),
            extent: Some(FileExtent {
                path,
                offset: 0,
                len: meta.len(),
            }),
        }))
    }

    fn contains(&self, name: &str) -> bool {
        self.root.join(name).is_file()
    }

    fn metadata_budget(&self) -> Option<&MetadataBudget> {
        Some(&self.budget)
    }
}

/// An OCI image layout directory.
pub struct OciLayout {
    path: PathBuf,
    store: DirStore,
    images: Vec<ImageEntry>,
}

impl OciLayout {
    /// Open the layout in directory `path` and list its images. A directory with neither
    /// `oci-layout` nor `index.json` is no image, and says so.
    pub fn open(path: &Path) -> Result<OciLayout> {
        let store = DirStore::new(path);
        if !store.probe(path, "oci-layout")? && !store.probe(path, "index.json")? {
            return Err(Error::bad_input(
                path.display(),
                "is a directory but not an OCI image layout: it has neither oci-layout nor \
                 index.json",
            ));
        }
        layout::check_layout_version(&store)?;
        let images = layout::catalog(&store)?;
        Ok(OciLayout {
            path: path.to_path_buf(),
            store,
            images,
        })
    }
}

impl ImageSource for OciLayout {
    fn path(&self) -> &Path {
        &self.path
    }

    fn form(&self) -> &'static str {
        "OCI image layout"
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
