//! The OCI image layout, read from any [`BlobStore`]: `oci-layout`, `index.json`, nested indexes,
//! manifests, configs and the presence of every layer blob.
//!
//! This is the one reader of OCI layouts; the layout directory, the oci-archive and the newer
//! `docker save` form (which embeds a layout) all call it with their own store. The legacy docker
//! reader reuses the config and layer checks.
//!
//! `index.json` is the root of trust: it has no digest of its own. Everything it names is checked
//! against the digest and size it declares, and so on down.

use std::collections::HashSet;

use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest};
use serde::de::DeserializeOwned;

use super::compression;
use crate::common::digest::check_bytes;
use crate::common::error::{Error, Result};
use crate::common::text::count;
use crate::source::image::{Config, Image, ImageEntry, Layer, Manifest, ManifestEntry, media};
use crate::source::platform::Platform;
use crate::source::store::{BlobStore, METADATA_LIMIT, normalize, read_small};

/// The annotation holding a tag in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd (and Docker 25+) put the full image name in.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The annotation BuildKit puts on attestation manifests, which are not runnable images.
const DOCKER_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// How deep indexes may nest; content addressing rules out cycles, this rules out abuse.
const MAX_INDEX_DEPTH: usize = 8;

/// Parse JSON bytes read from `what`, naming it in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str, kind: &str) -> Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_input(what, format!("is empty, expected {kind}")));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Error::bad_input(what, format!("is not a valid {kind}: {e}")))
}

/// The member path of the blob with `digest`: `blobs/<algorithm>/<encoded>`.
pub fn blob_path(digest: &Digest) -> Result<String> {
    normalize(&format!("blobs/{}/{}", digest.algorithm(), digest.digest()))
        .ok_or_else(|| Error::bad_input(digest, "digest cannot name a blob file"))
}

/// Check the `oci-layout` file: it must exist and declare a 1.x layout.
pub fn check_layout_version(store: &dyn BlobStore) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct OciLayout {
        #[serde(rename = "imageLayoutVersion")]
        image_layout_version: String,
    }
    let what = store.describe("oci-layout");
    let Some(bytes) = read_small(store, "oci-layout", METADATA_LIMIT)? else {
        return Err(Error::bad_input(
            what,
            "is missing; an OCI image layout must have one",
        ));
    };
    let layout: OciLayout = parse_json(&bytes, &what, "oci-layout file")?;
    let version = layout.image_layout_version;
    if version.split('.').next() != Some("1") {
        return Err(Error::bad_input(
            what,
            format!("declares imageLayoutVersion {version:?}; only 1.x layouts are understood"),
        ));
    }
    Ok(())
}

/// Every image `index.json` lists, with nested indexes followed and verified.
///
/// Top-level entries with the same digest, or sharing a name, are one image. Attestation
/// manifests and artifacts that are not images are left out. A manifest missing from the store
/// is listed as absent (a partial export holds some platforms only); a missing nested index is an
/// error, since nothing below it can be listed.
pub fn catalog(store: &dyn BlobStore) -> Result<Vec<ImageEntry>> {
    let what = store.describe("index.json");
    let Some(bytes) = read_small(store, "index.json", METADATA_LIMIT)? else {
        return Err(Error::bad_input(what, "is missing"));
    };
    let index: ImageIndex = parse_json(&bytes, &what, "image index")?;
    if index.manifests().is_empty() {
        return Err(Error::bad_input(what, "lists no images"));
    }
    let mut images: Vec<ImageEntry> = Vec::new();
    for desc in index.manifests() {
        let mut manifests = Vec::new();
        let mut walked = HashSet::new();
        walk(store, desc, &what, 0, &mut walked, &mut manifests)?;
        if manifests.is_empty() {
            continue;
        }
        for m in manifests
            .iter_mut()
            .filter(|m| m.platform.is_none() && m.present)
        {
            let manifest = read_manifest(store, m)?;
            let config = read_config(store, &manifest)?;
            m.platform = Some(config_platform(&config.parsed));
        }
        let names = names_of(desc);
        let same = images
            .iter_mut()
            .find(|i| &i.digest == desc.digest() || i.names.iter().any(|n| names.contains(n)));
        match same {
            Some(image) => {
                for n in names {
                    if !image.names.contains(&n) {
                        image.names.push(n);
                    }
                }
                for m in manifests {
                    if !image.manifests.iter().any(|x| x.digest == m.digest) {
                        image.manifests.push(m);
                    }
                }
            }
            None => images.push(ImageEntry {
                names,
                digest: desc.digest().clone(),
                media_type: desc.media_type().to_string(),
                manifests,
            }),
        }
    }
    if images.is_empty() {
        return Err(Error::bad_input(
            what,
            "lists no container images (only artifacts or attestations)",
        ));
    }
    Ok(images)
}

/// Tags and names an index entry carries.
fn names_of(desc: &Descriptor) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(a) = desc.annotations() {
        for key in [REF_NAME, CONTAINERD_NAME] {
            if let Some(v) = a.get(key)
                && !v.is_empty()
                && !names.contains(v)
            {
                names.push(v.clone());
            }
        }
    }
    names
}

/// Collect the image manifests reachable from `desc` into `out`. `walked` holds the indexes
/// already walked: a hostile image may name one index many times at every level (k^depth walks
/// without it); each is read once.
fn walk(
    store: &dyn BlobStore,
    desc: &Descriptor,
    parent: &str,
    depth: usize,
    walked: &mut HashSet<Digest>,
    out: &mut Vec<ManifestEntry>,
) -> Result<()> {
    let media_type = desc.media_type().to_string();
    let platform = desc.platform().as_ref().map(Platform::from);
    let is_attestation = desc
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(DOCKER_REFERENCE_TYPE))
        || platform.as_ref().is_some_and(Platform::is_unknown);
    if is_attestation {
        return Ok(());
    }
    let blob = blob_path(desc.digest())?;
    if media::is_index(&media_type) {
        if !walked.insert(desc.digest().clone()) {
            return Ok(());
        }
        if depth >= MAX_INDEX_DEPTH {
            return Err(Error::bad_input(
                parent,
                format!("indexes nest deeper than {MAX_INDEX_DEPTH} levels"),
            ));
        }
        let what = store.describe(&blob);
        let Some(bytes) = read_small(store, &blob, METADATA_LIMIT)? else {
            return Err(Error::bad_input(
                parent,
                format!(
                    "names index {}, but its blob is missing ({what})",
                    desc.digest()
                ),
            ));
        };
        check_bytes(&what, &bytes, desc.digest(), desc.size(), parent)?;
        let index: ImageIndex = parse_json(&bytes, &what, "image index")?;
        for child in index.manifests() {
            walk(store, child, &what, depth + 1, walked, out)?;
        }
    } else if media::is_manifest(&media_type) && !out.iter().any(|m| &m.digest == desc.digest()) {
        out.push(ManifestEntry {
            digest: desc.digest().clone(),
            size: desc.size(),
            media_type,
            platform,
            present: store.contains(&blob),
            blob,
        });
    }
    // Anything else (signatures, SBOMs, other artifacts) is not an image; skip it.
    Ok(())
}

/// Read and verify the manifest `m` names.
pub fn read_manifest(store: &dyn BlobStore, m: &ManifestEntry) -> Result<Manifest> {
    let what = store.describe(&m.blob);
    let Some(raw) = read_small(store, &m.blob, METADATA_LIMIT)? else {
        return Err(Error::bad_input(
            what,
            format!(
                "manifest {}{} is missing from the input",
                m.digest,
                m.platform
                    .as_ref()
                    .map(|p| format!(" (platform {p})"))
                    .unwrap_or_default()
            ),
        ));
    };
    check_bytes(&what, &raw, &m.digest, m.size, "the index")?;
    let parsed: ImageManifest = parse_json(&raw, &what, "image manifest")?;
    if parsed.schema_version() != 2 {
        return Err(Error::bad_input(
            what,
            format!("has schemaVersion {}, expected 2", parsed.schema_version()),
        ));
    }
    Ok(Manifest {
        digest: m.digest.clone(),
        raw,
        parsed,
        media_type: m.media_type.clone(),
        synthesized: false,
    })
}

/// Read and verify the config a manifest names.
pub fn read_config(store: &dyn BlobStore, manifest: &Manifest) -> Result<Config> {
    let desc = manifest.parsed.config();
    let media_type = desc.media_type().to_string();
    let manifest_what = format!("manifest {}", manifest.digest);
    if !media::is_config(&media_type) {
        return Err(Error::bad_input(
            manifest_what,
            format!("is not a container image: its config has media type {media_type}"),
        ));
    }
    let blob = blob_path(desc.digest())?;
    let what = store.describe(&blob);
    let Some(raw) = read_small(store, &blob, METADATA_LIMIT)? else {
        return Err(Error::bad_input(
            manifest_what,
            format!("names config {}, which is missing ({what})", desc.digest()),
        ));
    };
    check_bytes(&what, &raw, desc.digest(), desc.size(), "the manifest")?;
    Ok(Config {
        digest: desc.digest().clone(),
        parsed: parse_json(&raw, &what, "image config")?,
        raw,
    })
}

/// The platform a config declares.
pub fn config_platform(config: &ImageConfiguration) -> Platform {
    Platform::new(
        &config.os().to_string(),
        &config.architecture().to_string(),
        config.variant().as_deref(),
    )
}

/// Check every layer the manifest lists against the config's `diff_ids` and the store: a
/// readable media type, a blob present with the declared size, a compression we can undo.
pub fn check_layers(
    store: &dyn BlobStore,
    manifest: &Manifest,
    config: &Config,
) -> Result<Vec<Layer>> {
    let layers = manifest.parsed.layers();
    let diff_ids = config.parsed.rootfs().diff_ids();
    let config_what = format!("config {}", config.digest);
    if diff_ids.len() != layers.len() {
        return Err(Error::bad_input(
            config_what,
            format!(
                "rootfs.diff_ids lists {}, but manifest {} has {}",
                count(diff_ids.len() as u64, "layer"),
                manifest.digest,
                layers.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(layers.len());
    for (index, (desc, diff_id)) in layers.iter().zip(diff_ids).enumerate() {
        let media_type = desc.media_type().to_string();
        let label = format!("manifest {}: layer {}", manifest.digest, index + 1);
        let Some((declared, foreign)) = media::layer(&media_type) else {
            return Err(Error::bad_input(
                label,
                format!("has media type {media_type}, which is not a layer this program can read"),
            ));
        };
        let diff_id: Digest = diff_id.parse().map_err(|e| {
            Error::bad_input(
                &config_what,
                format!("rootfs.diff_ids[{index}] {diff_id:?} is not a digest: {e}"),
            )
        })?;
        let blob = blob_path(desc.digest())?;
        let location = store.describe(&blob);
        let urls = desc.urls().clone().unwrap_or_default();
        let Some(member) = store.open(&blob)? else {
            if !urls.is_empty() {
                return Err(Error::bad_input(
                    label,
                    format!(
                        "is a {}layer {} that is only available from {}; the input does not \
                         hold its bytes, and this program never downloads",
                        if foreign {
                            "foreign (non-distributable) "
                        } else {
                            ""
                        },
                        desc.digest(),
                        urls.join(", ")
                    ),
                ));
            }
            return Err(Error::bad_input(
                label,
                format!(
                    "names blob {}, which is missing ({location})",
                    desc.digest()
                ),
            ));
        };
        if member.len != desc.size() {
            return Err(Error::bad_input(
                &location,
                format!(
                    "is {} bytes, but manifest {} says {} (truncated?)",
                    member.len,
                    manifest.digest,
                    desc.size()
                ),
            ));
        }
        let (stored, _) = compression::sniff_readable(member.reader, &location)?;
        out.push(Layer {
            index,
            media_type,
            digest: desc.digest().clone(),
            size: desc.size(),
            diff_id,
            declared,
            stored,
            extent: member.extent,
            location,
            blob,
        });
    }
    Ok(out)
}

/// Load one platform-specific image: manifest, config, and every layer checked present.
pub fn load(store: &dyn BlobStore, names: &[String], m: &ManifestEntry) -> Result<Image> {
    let manifest = read_manifest(store, m)?;
    let config = read_config(store, &manifest)?;
    let layers = check_layers(store, &manifest, &config)?;
    Ok(Image {
        names: names.to_vec(),
        platform: config_platform(&config.parsed),
        manifest,
        config,
        layers,
    })
}
