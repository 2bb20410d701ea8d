//! `--chunk-dict bootstrap=PATH`: where the chunk dictionary comes from, and how the blobs an
//! image refers to in it reach the reader.
//!
//! PATH is either a RAFS v6 bootstrap file (what `nydus-image create --bootstrap` writes, or a
//! Nydus image's `image/image.boot`), or a Nydus image in any input form this tool reads (an
//! OCI layout, an oci-archive): then the bootstrap of its manifest for the converted image's
//! platform is the dictionary, and every dictionary blob the image refers to is copied from it
//! into the output and listed in the manifest, so that `skopeo copy` pushes it beside the
//! image's own blobs (as nydus-snapshotter's converter lists the blobs of the merged bootstrap).
//! A bare bootstrap carries no blobs: the image then needs them where nydusd looks for its
//! blobs (the same repository, or the localfs blob directory), and the run says which.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::Descriptor as OciDescriptor;

use crate::blob::chunk::{BlobInfo, BlobOptions};
use crate::blob::dict::ChunkDict;
use crate::common::error::{Error, Result};
use crate::ondisk::rafs_v6::{EROFS_SUPER_MAGIC_V1, EROFS_SUPER_OFFSET};
use crate::output::bootstrap_layer::{self, BOOTSTRAP_LIMIT};
use crate::output::layout::{LayoutWriter, StoredBlob};
use crate::source::layout::{blob_path, read_manifest};
use crate::source::select::{PlatformChoice, Selection, choose};
use crate::source::{self, Image, ImageSource};

/// The dictionary of a run, loaded once per platform it is needed for.
pub struct DictSource {
    path: PathBuf,
    /// The Nydus image it is, when PATH is not a bare bootstrap.
    image: Option<Box<dyn ImageSource>>,
    loaded: HashMap<String, Arc<LoadedDict>>,
}

/// A dictionary ready to use.
pub struct LoadedDict {
    pub dict: ChunkDict,
    /// When it came from an image: its blob layers by blob id (the digest's hex).
    layers: HashMap<String, OciDescriptor>,
}

impl DictSource {
    /// The dictionary at `path` (read at first use).
    pub fn open(path: &Path) -> Result<DictSource> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let image = if meta.is_file() && is_bootstrap(path)? {
            None
        } else {
            Some(source::open(path)?)
        };
        Ok(DictSource {
            path: path.to_path_buf(),
            image,
            loaded: HashMap::new(),
        })
    }

    /// The dictionary for converting `image`.
    pub fn for_image(&mut self, image: &Image, options: BlobOptions) -> Result<Arc<LoadedDict>> {
        let key = match &self.image {
            Some(_) => image.platform.to_string(),
            None => String::new(),
        };
        if let Some(loaded) = self.loaded.get(&key) {
            return Ok(Arc::clone(loaded));
        }
        let name = self.path.display().to_string();
        let loaded = Arc::new(match &self.image {
            None => LoadedDict {
                dict: ChunkDict::from_bootstrap(&name, read_bootstrap(&self.path)?, options)?,
                layers: HashMap::new(),
            },
            Some(source) => from_image(&**source, image, options)?,
        });
        self.loaded.insert(key, Arc::clone(&loaded));
        Ok(loaded)
    }

    /// The Nydus image the dictionary is, if it is one.
    pub fn image_source(&self) -> Option<&dyn ImageSource> {
        self.image.as_deref()
    }

    /// The dictionaries loaded so far.
    pub fn loaded(&self) -> impl Iterator<Item = Arc<LoadedDict>> + '_ {
        self.loaded.values().cloned()
    }
}

impl LoadedDict {
    /// Copy the dictionary blob `blob` into the output, verified; `Ok(None)` when the
    /// dictionary is a bare bootstrap (its blobs are the user's to provide).
    pub fn copy_blob(
        &self,
        source: Option<&dyn ImageSource>,
        blob: &BlobInfo,
        layout: &mut LayoutWriter,
    ) -> Result<Option<StoredBlob>> {
        let Some(source) = source else {
            return Ok(None);
        };
        let layer = self.layers.get(&blob.id).ok_or_else(|| {
            Error::bad_input(
                format!("chunk dictionary {}", source.path().display()),
                format!(
                    "its bootstrap names blob {}, which no layer of its manifest is",
                    blob.id
                ),
            )
        })?;
        let name = blob_path(layer.digest())?;
        let what = source.store().describe(&name);
        let Some(mut member) = source.store().open(&name)? else {
            return Err(Error::bad_input(
                what,
                "is missing from the chunk dictionary's image",
            ));
        };
        let copied = layout.copy(&mut member.reader)?;
        if copied.hex() != blob.id {
            return Err(Error::bad_input(
                what,
                format!(
                    "has digest {}, not the blob id {} it stands for",
                    copied.digest, blob.id
                ),
            ));
        }
        Ok(Some(copied))
    }
}

/// Whether the file at `path` starts like a RAFS v6 bootstrap (the EROFS magic in its super
/// block) rather than an archive.
fn is_bootstrap(path: &Path) -> Result<bool> {
    const AT: usize = EROFS_SUPER_OFFSET as usize;
    let mut head = [0u8; AT + 4];
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    // Shorter than a super block: not a bootstrap (the archive reader says what it is).
    Ok(file.read_exact(&mut head).is_ok() && head[AT..] == EROFS_SUPER_MAGIC_V1.to_le_bytes())
}

/// The bytes of the bootstrap file at `path`, refused past [`BOOTSTRAP_LIMIT`].
fn read_bootstrap(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(BOOTSTRAP_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > BOOTSTRAP_LIMIT {
        return Err(Error::bad_input(
            format!("chunk dictionary {}", path.display()),
            format!("is larger than {BOOTSTRAP_LIMIT} bytes, more than any bootstrap"),
        ));
    }
    Ok(bytes)
}

/// The dictionary a Nydus image holds for `image`'s platform: the bootstrap of its one Nydus
/// manifest of that platform (or its only Nydus manifest, when the index names no platform).
fn from_image(source: &dyn ImageSource, image: &Image, options: BlobOptions) -> Result<LoadedDict> {
    let name = format!("chunk dictionary {}", source.path().display());
    let all = Selection {
        image: None,
        platform: PlatformChoice::All,
    };
    let mut found = Vec::new();
    for (_, manifests) in choose(source, &all, true)? {
        for m in manifests.into_iter().filter(|m| m.present) {
            let manifest = read_manifest(source.store(), m)?;
            if bootstrap_layer::find(&manifest.parsed).is_none() {
                continue;
            }
            if found.iter().any(|(d, _, _)| *d == m.digest.to_string()) {
                continue;
            }
            found.push((m.digest.to_string(), m.platform.clone(), manifest));
        }
    }
    let same: Vec<_> = found
        .iter()
        .filter(|(_, p, _)| p.as_ref() == Some(&image.platform))
        .collect();
    let chosen = match (same.as_slice(), found.as_slice()) {
        ([one], _) => *one,
        ([], [only]) if only.1.is_none() => only,
        ([], _) => {
            return Err(Error::bad_input(
                name,
                format!("holds no Nydus image for {}", image.platform),
            ));
        }
        _ => {
            return Err(Error::bad_input(
                name,
                format!(
                    "holds {} Nydus images for {}; give a layout of one",
                    same.len(),
                    image.platform
                ),
            ));
        }
    };
    let manifest = &chosen.2;
    let boot = bootstrap_layer::find(&manifest.parsed).expect("found above");
    let what = format!(
        "{name}: manifest {}: bootstrap layer {}",
        chosen.0,
        boot.digest()
    );
    let bytes = bootstrap_layer::read_from(source.store(), boot, &what)?;
    let dict = ChunkDict::from_bootstrap(&source.path().display().to_string(), bytes, options)?;
    let layers = manifest
        .parsed
        .layers()
        .iter()
        .map(|l| (l.digest().digest().to_string(), l.clone()))
        .collect();
    Ok(LoadedDict { dict, layers })
}
