//! The output's OCI image layout: `oci-layout`, `index.json`, every file under `blobs/` hashed
//! and compared with its name, every descriptor's size, each manifest's config and `diff_ids`,
//! and the bootstrap layer (`image/image.boot` in a gzip tar) unpacked.
//!
//! Indexes and manifests are read with the input reader of [`crate::source::layout`], which
//! verifies each against the digest and size its parent declares.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;
use serde_json::Value;

use super::Findings;
use crate::common::digest::{Hasher, check_bytes, from_io};
use crate::common::error::{Error, Result};
use crate::output::bootstrap_layer::{self, ReadError};
use crate::output::image::{
    ANNOTATION_CHUNK_DICT_BLOB, ANNOTATION_NYDUS_BLOB, ANNOTATION_NYDUS_BOOTSTRAP,
    ANNOTATION_NYDUS_EMPTY_LAYER, ANNOTATION_NYDUS_SOURCE_DIGEST, EMPTY_LAYER_DIFF_ID,
    EMPTY_LAYER_DIGEST, MEDIA_TYPE_NYDUS_BLOB,
};
use crate::source::layout::{blob_path, catalog, check_layout_version, read_manifest};
use crate::source::oci_layout::DirStore;
use crate::source::store::{BlobStore, METADATA_LIMIT, read_small};

/// One Nydus data blob layer of a manifest.
#[derive(Clone, Debug)]
pub(crate) struct BlobLayer {
    /// Hex of its sha256 digest: the blob id.
    pub hex: String,
    /// The blob file.
    pub path: PathBuf,
    /// A chunk dictionary's blob (annotated so): its inlined bootstrap is another image's.
    pub dict: bool,
}

/// One Nydus manifest of the output, with its layers found.
#[derive(Debug)]
pub(crate) struct NydusManifest {
    /// "manifest sha256:… (linux/amd64)", for messages.
    pub label: String,
    /// The manifest's platform as the index (or config) says, e.g. `linux/amd64`.
    pub platform: Option<crate::source::Platform>,
    /// `containerd.io/snapshot/nydus-source-digest`: the manifest it was converted from.
    pub source_digest: Option<String>,
    /// The data blob layers, bottom first.
    pub blobs: Vec<BlobLayer>,
    /// The merged bootstrap, if the bootstrap layer could be read.
    pub bootstrap: Option<Vec<u8>>,
}

/// Read and verify the layout at `out`; every Nydus manifest it holds, with problems recorded.
pub(crate) fn read(out: &Path, f: &mut Findings) -> Result<Vec<NydusManifest>> {
    let store = DirStore::new(out);
    verify_blob_files(out, f)?;
    f.take(check_layout_version(&store))?;
    let Some(images) = f.take(catalog(&store))? else {
        return Ok(Vec::new());
    };
    let mut manifests = Vec::new();
    for image in &images {
        for m in &image.manifests {
            let platform = m
                .platform
                .as_ref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default();
            let label = format!("manifest {}{platform}", m.digest);
            if !m.present {
                f.problem(&label, "is listed but its blob is missing");
                continue;
            }
            let Some(manifest) = f.take(read_manifest(&store, m))? else {
                continue;
            };
            let raw: Value = serde_json::from_slice(&manifest.raw)
                .map_err(|e| Error::internal(format!("{label}: parsed once, not twice: {e}")))?;
            if let Some(nydus) = read_nydus_manifest(&store, out, label, &raw, f)? {
                manifests.push(NydusManifest {
                    platform: m.platform.clone(),
                    ..nydus
                });
            }
        }
    }
    Ok(manifests)
}

/// Hash every file under `blobs/<algorithm>/` and compare it with its name.
fn verify_blob_files(out: &Path, f: &mut Findings) -> Result<()> {
    let blobs = out.join("blobs");
    let algorithms = match fs::read_dir(&blobs) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            f.problem(blobs.display(), "is missing");
            return Ok(());
        }
        Err(e) => return Err(Error::io(&blobs, e)),
    };
    let mut files = Vec::new();
    for alg in algorithms {
        let alg = alg.map_err(|e| Error::io(&blobs, e))?;
        let dir = alg.path();
        if !dir.is_dir() {
            continue;
        }
        for file in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let file = file.map_err(|e| Error::io(&dir, e))?;
            files.push((alg.file_name(), file.file_name(), file.path()));
        }
    }
    files.sort();
    for (alg, name, path) in files {
        let what = path.display();
        let digest: Digest =
            match format!("{}:{}", alg.to_string_lossy(), name.to_string_lossy()).parse() {
                Ok(d) => d,
                Err(_) => {
                    f.problem(&what, "file name is not a digest");
                    continue;
                }
            };
        let Some(mut hasher) = f.take(Hasher::for_digest(&digest, &what))? else {
            continue;
        };
        let mut file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual = hasher.finish();
        if actual != digest {
            f.problem(&what, format!("content has digest {actual}, not its name"));
        }
    }
    Ok(())
}

/// The Nydus parts of one manifest: `None` (and a problem) when it is not a Nydus manifest.
fn read_nydus_manifest(
    store: &DirStore,
    out: &Path,
    label: String,
    manifest: &Value,
    f: &mut Findings,
) -> Result<Option<NydusManifest>> {
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let annotation = |l: &Value, key: &str| l["annotations"][key].as_str().map(str::to_string);
    let Some(boot_pos) = layers
        .iter()
        .position(|l| annotation(l, ANNOTATION_NYDUS_BOOTSTRAP).is_some())
    else {
        // Not a Nydus manifest: an original one kept beside the Nydus ones (--merge-platform).
        read_original(store, out, &label, manifest, &layers, f)?;
        return Ok(None);
    };
    if boot_pos + 1 != layers.len() {
        f.problem(&label, "the bootstrap layer is not the last layer");
    }
    let diff_ids = read_diff_ids(store, &label, manifest, f)?;
    if let Some(ids) = &diff_ids
        && ids.len() != layers.len()
    {
        f.problem(
            &label,
            format!(
                "config lists {} diff_ids for {} layers",
                ids.len(),
                layers.len()
            ),
        );
    }
    let mut blobs = Vec::new();
    let mut bootstrap = None;
    for (i, layer) in layers.iter().enumerate() {
        let what = format!("{label}: layer {}", i + 1);
        let Some((digest, path, present)) = descriptor_file(store, out, &what, layer, f)? else {
            continue;
        };
        let diff_id = diff_ids.as_ref().and_then(|ids| ids.get(i));
        let media_type = layer["mediaType"].as_str().unwrap_or_default();
        if i == boot_pos {
            if !present {
                continue;
            }
            bootstrap = read_bootstrap_layer(&path, &what, diff_id.map(String::as_str), f)?;
            continue;
        }
        if media_type != MEDIA_TYPE_NYDUS_BLOB {
            f.problem(
                &what,
                format!("has media type {media_type}, not {MEDIA_TYPE_NYDUS_BLOB}"),
            );
            continue;
        }
        if annotation(layer, ANNOTATION_NYDUS_BLOB).as_deref() != Some("true") {
            f.problem(
                &what,
                format!("lacks the annotation {ANNOTATION_NYDUS_BLOB}: \"true\""),
            );
        }
        if let Some(id) = diff_id
            && id != &digest.to_string()
        {
            f.problem(
                &what,
                format!("diff_id {id} differs from the blob digest {digest} (a Nydus blob is stored uncompressed)"),
            );
        }
        blobs.push(BlobLayer {
            hex: digest.digest().to_string(),
            path,
            dict: annotation(layer, ANNOTATION_CHUNK_DICT_BLOB).as_deref() == Some("true"),
        });
    }
    Ok(Some(NydusManifest {
        label,
        platform: None,
        source_digest: manifest["annotations"][ANNOTATION_NYDUS_SOURCE_DIGEST]
            .as_str()
            .map(str::to_string),
        blobs,
        bootstrap,
    }))
}

/// An original manifest kept beside the Nydus ones (`--merge-platform`): its blobs must be
/// there all the same, and the empty layer prepended to it (`nydus-empty-layer`) must be the one
/// every such layer is, with its diff id in the config.
fn read_original(
    store: &DirStore,
    out: &Path,
    label: &str,
    manifest: &Value,
    layers: &[Value],
    f: &mut Findings,
) -> Result<()> {
    for (i, layer) in layers.iter().enumerate() {
        descriptor_file(store, out, &format!("{label}: layer {}", i + 1), layer, f)?;
    }
    let empty: Vec<usize> = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l["annotations"][ANNOTATION_NYDUS_EMPTY_LAYER].is_string())
        .map(|(i, _)| i)
        .collect();
    if empty.is_empty() {
        if manifest["config"].is_object() {
            descriptor_file(
                store,
                out,
                &format!("{label}: config"),
                &manifest["config"],
                f,
            )?;
        }
        return Ok(());
    }
    let diff_ids = read_diff_ids(store, label, manifest, f)?;
    for i in empty {
        let what = format!("{label}: layer {} ({ANNOTATION_NYDUS_EMPTY_LAYER})", i + 1);
        let digest = layers[i]["digest"].as_str().unwrap_or_default();
        if digest != EMPTY_LAYER_DIGEST {
            f.problem(
                &what,
                format!("has digest {digest}, not the empty layer's {EMPTY_LAYER_DIGEST}"),
            );
        }
        if let Some(ids) = &diff_ids
            && ids.get(i).map(String::as_str) != Some(EMPTY_LAYER_DIFF_ID)
        {
            f.problem(
                &what,
                format!("the config's diff_id is not the empty layer's {EMPTY_LAYER_DIFF_ID}"),
            );
        }
    }
    Ok(())
}

/// The config's `rootfs.diff_ids`, its digest verified.
fn read_diff_ids(
    store: &DirStore,
    label: &str,
    manifest: &Value,
    f: &mut Findings,
) -> Result<Option<Vec<String>>> {
    let config = &manifest["config"];
    let (Some(digest), Some(size)) = (config["digest"].as_str(), config["size"].as_u64()) else {
        f.problem(label, "has no config descriptor");
        return Ok(None);
    };
    let Ok(digest) = digest.parse::<Digest>() else {
        f.problem(label, format!("config digest {digest:?} is not a digest"));
        return Ok(None);
    };
    let Some(blob) = f.take(blob_path(&digest))? else {
        return Ok(None);
    };
    let Some(raw) = f.take(read_small(store, &blob, METADATA_LIMIT))? else {
        return Ok(None);
    };
    let Some(raw) = raw else {
        f.problem(label, format!("config {digest} is missing"));
        return Ok(None);
    };
    let what = store.describe(&blob);
    if f.take(check_bytes(&what, &raw, &digest, size, "the manifest"))?
        .is_none()
    {
        return Ok(None);
    }
    let Ok(config) = serde_json::from_slice::<Value>(&raw) else {
        f.problem(&what, "is not JSON");
        return Ok(None);
    };
    let Some(ids) = config["rootfs"]["diff_ids"].as_array() else {
        f.problem(&what, "has no rootfs.diff_ids");
        return Ok(None);
    };
    Ok(Some(
        ids.iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
    ))
}

/// A layer descriptor's blob file, and whether it is present with the declared size (its
/// digest was checked with every blob file). `None` when the descriptor names no file.
fn descriptor_file(
    store: &DirStore,
    out: &Path,
    what: &str,
    layer: &Value,
    f: &mut Findings,
) -> Result<Option<(Digest, PathBuf, bool)>> {
    let (Some(digest), Some(size)) = (layer["digest"].as_str(), layer["size"].as_u64()) else {
        f.problem(what, "descriptor lacks digest or size");
        return Ok(None);
    };
    let Ok(digest) = digest.parse::<Digest>() else {
        f.problem(what, format!("digest {digest:?} is not a digest"));
        return Ok(None);
    };
    let Some(blob) = f.take(blob_path(&digest))? else {
        return Ok(None);
    };
    let path = out.join(&blob);
    if !store.contains(&blob) {
        f.problem(
            what,
            format!("blob {digest} is missing ({})", path.display()),
        );
        return Ok(Some((digest, path, false)));
    }
    let len = fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
    if len != size {
        f.problem(
            path.display(),
            format!("is {len} bytes, but the manifest says {size}"),
        );
        return Ok(Some((digest, path, false)));
    }
    Ok(Some((digest, path, true)))
}

/// Unpack the bootstrap layer: its uncompressed tar must have digest `diff_id`, and hold
/// `image/image.boot`.
fn read_bootstrap_layer(
    path: &Path,
    what: &str,
    diff_id: Option<&str>,
    f: &mut Findings,
) -> Result<Option<Vec<u8>>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let layer = match bootstrap_layer::read(file) {
        Ok(layer) => layer,
        Err(ReadError::Io(e)) => return Err(from_io(e, path.display())),
        Err(ReadError::Bad(problem)) => {
            f.problem(what, problem);
            return Ok(None);
        }
    };
    if let Some(diff_id) = diff_id
        && diff_id != layer.diff_id
    {
        f.problem(
            what,
            format!(
                "uncompressed bootstrap layer has digest {}, but the config's diff_id is {diff_id}",
                layer.diff_id
            ),
        );
    }
    Ok(Some(layer.bootstrap))
}
