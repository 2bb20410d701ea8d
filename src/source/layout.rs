//! The OCI image layout, read from any [`BlobStore`]: `oci-layout`, `index.json`, nested indexes,
//! manifests, configs and the presence of every layer blob.
//!
//! This is the one reader of OCI layouts; the layout directory, the oci-archive and the newer
//! `docker save` form (which embeds a layout) all call it with their own store. The legacy docker
//! reader reuses the config and layer checks.
//!
//! `index.json` is the root of trust: it has no digest of its own. Everything it names is checked
//! against the digest and size it declares, and so on down.

use std::collections::{HashMap, HashSet};

use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest};
use serde::de::DeserializeOwned;

use super::compression;
use crate::common::digest::check_bytes;
use crate::common::error::{Error, Result, one_line};
use crate::common::text::count;
use crate::source::image::{Config, Image, ImageEntry, Layer, Manifest, ManifestEntry, media};
use crate::source::limits::{MAX_DESCRIPTORS, MAX_INDEX_DEPTH, MAX_LAYERS};
use crate::source::platform::Platform;
use crate::source::store::{BlobStore, METADATA_LIMIT, normalize, read_small};

/// The annotation holding a tag in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd (and Docker 25+) put the full image name in.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The annotation BuildKit puts on attestation manifests, which are not runnable images.
const DOCKER_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

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
///
/// An index may name one child many times, at every level: each image remembers the indexes it
/// walked and the manifests it found, so such a graph costs its size, not the number of its
/// paths; and depth and the descriptors examined are bounded ([`MAX_INDEX_DEPTH`],
/// [`MAX_DESCRIPTORS`]).
pub fn catalog(store: &dyn BlobStore) -> Result<Vec<ImageEntry>> {
    let what = store.describe("index.json");
    let Some(bytes) = read_small(store, "index.json", METADATA_LIMIT)? else {
        return Err(Error::bad_input(what, "is missing"));
    };
    let index: ImageIndex = parse_json(&bytes, &what, "image index")?;
    if index.manifests().is_empty() {
        return Err(Error::bad_input(what, "lists no images"));
    }
    let mut walker = Walker {
        store,
        root: what.clone(),
        examined: 0,
        platforms: HashMap::new(),
    };
    let mut images = Images::default();
    for desc in index.manifests() {
        let mut reach = Reach::default();
        walker.walk(desc, &what, 0, &mut reach)?;
        if reach.manifests.is_empty() {
            continue;
        }
        for m in reach.manifests.iter_mut() {
            walker.fill_platform(m)?;
        }
        images.add(desc, reach.manifests);
    }
    if images.list.is_empty() {
        return Err(Error::bad_input(
            what,
            "lists no container images (only artifacts or attestations)",
        ));
    }
    Ok(images.list)
}

/// The images found so far, with an index from digest and name to position, so that merging an
/// entry costs the same however many images came before.
#[derive(Default)]
struct Images {
    list: Vec<ImageEntry>,
    /// `d:<digest>` and `n:<name>` to a position in `list`.
    keys: HashMap<String, usize>,
}

impl Images {
    /// Add the top-level entry `desc` and the manifests reached from it: into the first image
    /// with its digest or one of its names, else as a new image.
    fn add(&mut self, desc: &Descriptor, manifests: Vec<ManifestEntry>) {
        let names = names_of(desc);
        let digest_key = format!("d:{}", desc.digest());
        let same = std::iter::once(digest_key.clone())
            .chain(names.iter().map(|n| format!("n:{n}")))
            .filter_map(|k| self.keys.get(&k).copied())
            .min();
        let Some(at) = same else {
            let at = self.list.len();
            self.keys.insert(digest_key, at);
            for n in &names {
                self.keys.entry(format!("n:{n}")).or_insert(at);
            }
            self.list.push(ImageEntry {
                names,
                digest: desc.digest().clone(),
                media_type: desc.media_type().to_string(),
                manifests,
            });
            return;
        };
        let image = &mut self.list[at];
        for n in names {
            if !image.names.contains(&n) {
                self.keys.entry(format!("n:{n}")).or_insert(at);
                image.names.push(n);
            }
        }
        let mut have: HashSet<Digest> = image.manifests.iter().map(|m| m.digest.clone()).collect();
        for m in manifests {
            if have.insert(m.digest.clone()) {
                image.manifests.push(m);
            }
        }
    }
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

/// Listing an input's images: what it may still cost, and what it already learnt.
struct Walker<'a> {
    store: &'a dyn BlobStore,
    /// `index.json`, named in the error when the input names too many descriptors.
    root: String,
    /// Descriptors examined so far, over every index and every image.
    examined: usize,
    /// The platform of each manifest the index gave none for, read from its config once.
    platforms: HashMap<Digest, Platform>,
}

/// What one top-level entry reaches: the indexes walked and the manifests found.
#[derive(Default)]
struct Reach {
    /// The indexes already walked: a hostile image may name one index many times at every
    /// level (k^depth walks without this); each is read once.
    walked: HashSet<Digest>,
    /// The manifests already in `manifests`.
    seen: HashSet<Digest>,
    manifests: Vec<ManifestEntry>,
}

impl Walker<'_> {
    /// Collect the image manifests reachable from `desc` (named by `parent`) into `reach`.
    fn walk(
        &mut self,
        desc: &Descriptor,
        parent: &str,
        depth: usize,
        reach: &mut Reach,
    ) -> Result<()> {
        self.examined += 1;
        if self.examined > MAX_DESCRIPTORS {
            return Err(Error::bad_input(
                &self.root,
                format!(
                    "and the indexes below it name more than {MAX_DESCRIPTORS} descriptors in \
                     all (counting an index each time it is named); refused"
                ),
            ));
        }
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
            // Walked already for this image: everything below it is in `reach`.
            if !reach.walked.insert(desc.digest().clone()) {
                return Ok(());
            }
            if depth >= MAX_INDEX_DEPTH {
                return Err(Error::bad_input(
                    parent,
                    format!("indexes nest deeper than {MAX_INDEX_DEPTH} levels"),
                ));
            }
            let index = self.read_index(desc, &blob, parent)?;
            let what = self.store.describe(&blob);
            for child in index.manifests() {
                self.walk(child, &what, depth + 1, reach)?;
            }
        } else if media::is_manifest(&media_type) && reach.seen.insert(desc.digest().clone()) {
            reach.manifests.push(ManifestEntry {
                digest: desc.digest().clone(),
                size: desc.size(),
                media_type,
                platform,
                present: self.store.contains(&blob),
                blob,
            });
        }
        // Anything else (signatures, SBOMs, other artifacts) is not an image; skip it.
        Ok(())
    }

    /// Read and verify the nested index `desc` names.
    fn read_index(&self, desc: &Descriptor, blob: &str, parent: &str) -> Result<ImageIndex> {
        let what = self.store.describe(blob);
        let Some(bytes) = read_verified(self.store, blob, desc.digest(), desc.size(), parent)?
        else {
            return Err(Error::bad_input(
                parent,
                format!(
                    "names index {}, but its blob is missing ({what})",
                    desc.digest()
                ),
            ));
        };
        parse_json(&bytes, &what, "image index")
    }

    /// Give `m` its platform from its config when the index did not say, reading each manifest
    /// and config once however many entries name it.
    fn fill_platform(&mut self, m: &mut ManifestEntry) -> Result<()> {
        if m.platform.is_some() || !m.present {
            return Ok(());
        }
        if let Some(p) = self.platforms.get(&m.digest) {
            m.platform = Some(p.clone());
            return Ok(());
        }
        let manifest = read_manifest(self.store, m)?;
        let config = read_config(self.store, &manifest)?;
        let platform = config_platform(&config.parsed);
        self.platforms.insert(m.digest.clone(), platform.clone());
        m.platform = Some(platform);
        Ok(())
    }
}

/// Read a metadata blob whose descriptor (from `declared_by`) gives its digest and size, and
/// verify both. A declared size above [`METADATA_LIMIT`] is refused before anything is read.
pub fn read_verified(
    store: &dyn BlobStore,
    blob: &str,
    digest: &Digest,
    size: u64,
    declared_by: &str,
) -> Result<Option<Vec<u8>>> {
    let what = store.describe(blob);
    if size > METADATA_LIMIT {
        return Err(Error::bad_input(
            what,
            format!(
                "{declared_by} says it is {size} bytes; metadata larger than {METADATA_LIMIT} \
                 bytes is refused"
            ),
        ));
    }
    let Some(bytes) = read_small(store, blob, METADATA_LIMIT)? else {
        return Ok(None);
    };
    check_bytes(&what, &bytes, digest, size, declared_by)?;
    Ok(Some(bytes))
}

/// Read and verify the manifest `m` names.
pub fn read_manifest(store: &dyn BlobStore, m: &ManifestEntry) -> Result<Manifest> {
    let what = store.describe(&m.blob);
    let Some(raw) = read_verified(store, &m.blob, &m.digest, m.size, "the index")? else {
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
            format!(
                "is not a container image: its config has media type {}",
                one_line(&media_type)
            ),
        ));
    }
    let blob = blob_path(desc.digest())?;
    let what = store.describe(&blob);
    let Some(raw) = read_verified(store, &blob, desc.digest(), desc.size(), "the manifest")? else {
        return Err(Error::bad_input(
            manifest_what,
            format!("names config {}, which is missing ({what})", desc.digest()),
        ));
    };
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
    if layers.len() > MAX_LAYERS {
        return Err(Error::bad_input(
            store.describe(&blob_path(&manifest.digest)?),
            format!(
                "manifest lists {} layers; images of more than {MAX_LAYERS} layers are refused",
                layers.len()
            ),
        ));
    }
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
            let nydus = if media_type.contains(".nydus.") {
                ": this is already a Nydus image (`nydus-offline inspect` shows it, `check` \
                 verifies it)"
            } else {
                ""
            };
            return Err(Error::bad_input(
                label,
                format!(
                    "has media type {}, which is not a layer this program can read{nydus}",
                    one_line(&media_type)
                ),
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
                        one_line(&urls.join(", "))
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
