//! The `docker save` tarball, in both of its forms:
//!
//! - legacy (Docker before 25, `skopeo copy … docker-archive:`): `manifest.json` lists each
//!   image's config (`<hex>.json`) and layer tars (`<id>/layer.tar`, often symlinks to one another,
//!   or `<hex>.tar`), with `RepoTags` for names; `repositories` repeats the tags for old clients
//!   and is not needed. There is no image manifest: one is synthesised from `manifest.json`, and
//!   each layer's digest is that of its stored bytes (for uncompressed layers, the diff_id).
//! - newer (Docker 25 and later): the same `manifest.json` beside a full OCI image layout
//!   (`oci-layout`, `index.json`, `blobs/`). The layout is authoritative and read as one;
//!   `manifest.json` only adds `RepoTags` as names.
//!
//! Paths in `manifest.json` are untrusted: one that leaves the archive (`../`, absolute) is an
//! error, never followed. Its counts are bounded ([`MAX_DOCKER_IMAGES`] images, [`MAX_LAYERS`]
//! layers each), and a layer named many times (legacy tarballs link repeats to one copy) is read
//! and hashed once.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use oci_spec::image::{Digest, ImageManifest};
use serde::Deserialize;

use super::compression;
use crate::common::digest::{Hasher, from_io, sha256_of};
use crate::common::error::{Error, Result};
use crate::common::text::count;
use crate::source::compression::Compression;
use crate::source::image::{Config, Image, ImageEntry, Layer, Manifest, ManifestEntry, media};
use crate::source::limits::{MAX_DOCKER_IMAGES, MAX_LAYERS};
use crate::source::store::{BlobStore, METADATA_LIMIT, normalize, read_small};
use crate::source::tar_store::TarStore;
use crate::source::{ImageSource, layout};

/// The member that marks a `docker save` tarball.
pub const MANIFEST_JSON: &str = "manifest.json";

/// One entry of `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Parse `manifest.json` (read from `what`) and check its counts: at least one image, at most
/// [`MAX_DOCKER_IMAGES`], each of at most [`MAX_LAYERS`] layers. Public for the fuzz targets.
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<Vec<DockerEntry>> {
    let entries: Vec<DockerEntry> = layout::parse_json(bytes, what, "docker save manifest.json")?;
    if entries.is_empty() {
        return Err(Error::bad_input(what, "lists no images"));
    }
    if entries.len() > MAX_DOCKER_IMAGES {
        return Err(Error::bad_input(
            what,
            format!(
                "lists {} images; more than {MAX_DOCKER_IMAGES} in one archive are refused",
                entries.len()
            ),
        ));
    }
    for (n, entry) in entries.iter().enumerate() {
        if entry.layers.len() > MAX_LAYERS {
            return Err(Error::bad_input(
                what,
                format!(
                    "image {} lists {} layers; images of more than {MAX_LAYERS} layers are \
                     refused",
                    n + 1,
                    entry.layers.len()
                ),
            ));
        }
    }
    Ok(entries)
}

/// A `docker save` tarball.
pub struct DockerArchive {
    store: TarStore,
    images: Vec<ImageEntry>,
    /// The images of a legacy tarball, loaded while listing them (they have no manifest to load
    /// later); empty for the newer form.
    legacy: Vec<Image>,
    embedded_layout: bool,
}

impl DockerArchive {
    /// Open the `docker save` tarball at `path` and list its images.
    pub fn open(path: &Path) -> Result<DockerArchive> {
        DockerArchive::from_store(TarStore::open(path)?)
    }

    /// List the images of an already indexed archive.
    pub fn from_store(store: TarStore) -> Result<DockerArchive> {
        let what = store.describe(MANIFEST_JSON);
        let bytes = read_small(&store, MANIFEST_JSON, METADATA_LIMIT)?
            .ok_or_else(|| Error::bad_input(&what, "is missing"))?;
        let entries = parse_manifest(&bytes, &what)?;
        if store.contains("index.json") {
            layout::check_layout_version(&store)?;
            let mut images = layout::catalog(&store)?;
            add_repo_tags(&store, &entries, &mut images)?;
            return Ok(DockerArchive {
                store,
                images,
                legacy: Vec::new(),
                embedded_layout: true,
            });
        }
        let mut images = Vec::new();
        let mut legacy = Vec::new();
        let mut hashed = HashMap::new();
        for (n, entry) in entries.iter().enumerate() {
            let (listed, image) = legacy_image(&store, entry, n, &mut hashed)?;
            images.push(listed);
            legacy.push(image);
        }
        Ok(DockerArchive {
            store,
            images,
            legacy,
            embedded_layout: false,
        })
    }
}

/// Give the images of an embedded layout the `RepoTags` that `manifest.json` lists for their
/// config.
fn add_repo_tags(
    store: &TarStore,
    entries: &[DockerEntry],
    images: &mut [ImageEntry],
) -> Result<()> {
    // Config member path to tags, so that matching costs one look-up per image.
    let mut tags: HashMap<String, Vec<&String>> = HashMap::new();
    for entry in entries {
        if let Some(config) = normalize(&entry.config) {
            tags.entry(config)
                .or_default()
                .extend(entry.repo_tags.iter().flatten());
        }
    }
    for image in images.iter_mut() {
        let Some(m) = image.manifests.iter().find(|m| m.present) else {
            continue;
        };
        let manifest = layout::read_manifest(store, m)?;
        let config_blob = layout::blob_path(manifest.parsed.config().digest())?;
        for tag in tags.get(&config_blob).into_iter().flatten() {
            if !image.names.contains(tag) {
                image.names.push((*tag).clone());
            }
        }
    }
    Ok(())
}

/// A member path from `manifest.json`, which must stay inside the archive.
fn member_path(store: &TarStore, raw: &str, field: &str, n: usize) -> Result<String> {
    normalize(raw).ok_or_else(|| {
        Error::bad_input(
            store.describe(MANIFEST_JSON),
            format!("image {}: {field} path {raw:?} escapes the archive", n + 1),
        )
    })
}

/// The hex digest a member's name carries, if any: `<hex>.json`, `<hex>.tar`, `blobs/sha256/<hex>`.
fn digest_in_name(name: &str) -> Option<&str> {
    let file = name.rsplit('/').next()?;
    let stem = file
        .strip_suffix(".json")
        .or_else(|| file.strip_suffix(".tar"))
        .unwrap_or(file);
    (stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit())).then_some(stem)
}

/// The digest of each compressed layer hashed so far, by the member holding its bytes.
type Hashed = HashMap<String, Digest>;

/// Read one legacy entry whole (config, layer checks) and synthesise its manifest.
fn legacy_image(
    store: &TarStore,
    entry: &DockerEntry,
    n: usize,
    hashed: &mut Hashed,
) -> Result<(ImageEntry, Image)> {
    let manifest_what = store.describe(MANIFEST_JSON);
    let config_name = member_path(store, &entry.config, "Config", n)?;
    let config_what = store.describe(&config_name);
    let raw = read_small(store, &config_name, METADATA_LIMIT)?.ok_or_else(|| {
        Error::bad_input(
            &manifest_what,
            format!(
                "image {}: names config {config_name}, which is not in the archive",
                n + 1
            ),
        )
    })?;
    let config_digest = sha256_of(&raw);
    if let Some(hex) = digest_in_name(&config_name)
        && hex != config_digest.digest()
    {
        return Err(Error::bad_input(
            config_what,
            format!("content has digest {config_digest}, but its name says sha256:{hex}"),
        ));
    }
    let config = Config {
        digest: config_digest.clone(),
        parsed: layout::parse_json(&raw, &config_what, "image config")?,
        raw,
    };
    let diff_ids = config.parsed.rootfs().diff_ids();
    if diff_ids.len() != entry.layers.len() {
        return Err(Error::bad_input(
            config_what,
            format!(
                "rootfs.diff_ids lists {}, but manifest.json lists {}",
                count(diff_ids.len() as u64, "layer"),
                entry.layers.len()
            ),
        ));
    }

    let mut layers = Vec::with_capacity(entry.layers.len());
    for (index, (raw_path, diff_id)) in entry.layers.iter().zip(diff_ids).enumerate() {
        let blob = member_path(store, raw_path, "Layers", n)?;
        let location = store.describe(&blob);
        let diff_id: Digest = diff_id.parse().map_err(|e| {
            Error::bad_input(
                &config_what,
                format!("rootfs.diff_ids[{index}] {diff_id:?} is not a digest: {e}"),
            )
        })?;
        let member = store.open(&blob)?.ok_or_else(|| {
            Error::bad_input(
                &manifest_what,
                format!(
                    "image {}: names layer {blob}, which is not in the archive",
                    n + 1
                ),
            )
        })?;
        let len = member.len;
        let extent = member.extent;
        let (stored, mut reader) = compression::sniff_readable(member.reader, &location)?;
        // An uncompressed layer's digest is its diff_id, checked when it is read. A compressed
        // one has no declared digest anywhere, so hash it now, streaming.
        let digest = if stored == Compression::None {
            diff_id.clone()
        } else {
            hash_once(store, &blob, &location, &diff_id, &mut reader, hashed)?
        };
        layers.push(Layer {
            index,
            media_type: media::oci_layer_for(stored).to_string(),
            digest,
            size: len,
            diff_id,
            declared: stored,
            stored,
            extent,
            location,
            blob,
        });
    }

    let manifest = synthesize_manifest(&config, &layers)?;
    let platform = layout::config_platform(&config.parsed);
    let names = entry.repo_tags.clone().unwrap_or_default();
    let listed = ImageEntry {
        names: names.clone(),
        digest: config_digest,
        media_type: media::OCI_MANIFEST.to_string(),
        manifests: vec![ManifestEntry {
            digest: manifest.digest.clone(),
            size: manifest.raw.len() as u64,
            media_type: media::OCI_MANIFEST.to_string(),
            platform: Some(platform.clone()),
            present: true,
            blob: String::new(),
        }],
    };
    let image = Image {
        names,
        platform,
        manifest,
        config,
        layers,
    };
    Ok((listed, image))
}

/// The digest of a compressed layer's stored bytes, hashed once per member: an archive naming one
/// layer a thousand times costs one read of it. Hashed with the diff_id's algorithm.
fn hash_once(
    store: &TarStore,
    blob: &str,
    location: &str,
    diff_id: &Digest,
    reader: &mut impl io::Read,
    hashed: &mut Hashed,
) -> Result<Digest> {
    let key = format!(
        "{} {}",
        diff_id.algorithm(),
        store.resolve(blob)?.unwrap_or_else(|| blob.to_string())
    );
    if let Some(digest) = hashed.get(&key) {
        return Ok(digest.clone());
    }
    let mut hasher = HashWriter(Hasher::for_digest(diff_id, location)?);
    io::copy(reader, &mut hasher).map_err(|e| from_io(e, location))?;
    let digest = hasher.0.finish();
    hashed.insert(key, digest.clone());
    Ok(digest)
}

/// The OCI manifest a legacy entry would have had.
fn synthesize_manifest(config: &Config, layers: &[Layer]) -> Result<Manifest> {
    let value = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {
            "mediaType": media::OCI_CONFIG,
            "digest": config.digest.to_string(),
            "size": config.raw.len(),
        },
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type,
            "digest": l.digest.to_string(),
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let raw = serde_json::to_vec(&value)
        .map_err(|e| Error::internal(format!("serialising a synthesised manifest: {e}")))?;
    let parsed: ImageManifest = serde_json::from_slice(&raw)
        .map_err(|e| Error::internal(format!("re-reading a synthesised manifest: {e}")))?;
    Ok(Manifest {
        digest: sha256_of(&raw),
        raw,
        parsed,
        media_type: media::OCI_MANIFEST.to_string(),
        synthesized: true,
    })
}

/// An `io::Write` that only hashes.
struct HashWriter(Hasher);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ImageSource for DockerArchive {
    fn path(&self) -> &Path {
        self.store.path()
    }

    fn form(&self) -> &'static str {
        if self.embedded_layout {
            "docker save tarball (with OCI layout)"
        } else {
            "docker save tarball"
        }
    }

    fn images(&self) -> &[ImageEntry] {
        &self.images
    }

    fn load(&self, image: &ImageEntry, manifest: &ManifestEntry) -> Result<Image> {
        if self.embedded_layout {
            return layout::load(&self.store, &image.names, manifest);
        }
        self.legacy
            .iter()
            .find(|i| i.manifest.digest == manifest.digest)
            .cloned()
            .ok_or_else(|| {
                Error::internal(format!(
                    "{}: manifest {} was listed but not loaded",
                    self.store.path().display(),
                    manifest.digest
                ))
            })
    }

    fn store(&self) -> &dyn BlobStore {
        &self.store
    }
}
