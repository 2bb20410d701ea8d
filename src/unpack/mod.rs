//! `nydus-offline unpack`: a Nydus image back to an ordinary OCI image. Each Nydus data blob
//! becomes one `tar+gzip` layer, rebuilt from the layer's own bootstrap (inlined in the blob)
//! and the chunks it names; the config gets the new layers' diff_ids and loses the bootstrap
//! layer's history entry. Whiteouts come back as the `.wh.` entries the layer had, so that
//! unpacking the layers in order gives the tree the Nydus image mounts to.
//!
//! The input is untrusted like any other: manifests and configs are verified against their
//! digests, TOC sections against theirs, and every chunk against the digest its blob records.

pub mod layer;
pub mod links;

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use crate::blob::reader::BlobReader;
use crate::blob::writer::{BlobOut, Hashed};
use crate::common::digest::check_bytes;
use crate::common::error::{Error, Result};
use crate::common::hex::hex;
use crate::ondisk::blob::TOC_ENTRY_BOOTSTRAP;
use crate::ondisk::bootstrap::RafsBootstrap;
use crate::output::bootstrap_layer;
use crate::output::gzip::ParallelGzip;
use crate::output::image::{
    self as oci, Descriptor, MEDIA_TYPE_CONFIG, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_NYDUS_BLOB, Marker,
};
use crate::output::layout::{LayoutWriter, OutputFormat, StoredBlob};
use crate::source::image::{Manifest, ManifestEntry};
use crate::source::layout::{blob_path, read_manifest};
use crate::source::platform::Platform;
use crate::source::select::{PlatformChoice, Selection, choose};
use crate::source::store::{BlobStore, METADATA_LIMIT, read_small};
use crate::source::{self, ImageSource};
use layer::blob_error;
use links::LayerTree;

/// The history entry a Nydus config gains for its bootstrap layer (ours and nydusify's).
const BOOTSTRAP_HISTORY_COMMENT: &str = "Nydus Bootstrap Layer";

/// What to unpack and where.
#[derive(Clone, Debug, Default)]
pub struct UnpackOptions {
    /// `--image`: which image of the input (a tag, name or digest).
    pub image: Option<String>,
    /// `--platform`: only these platforms' Nydus manifests (empty: all of them).
    pub platforms: Vec<Platform>,
    /// `--tag`: the tag in the output's index (default: the input image's).
    pub tag: Option<String>,
    pub format: OutputFormat,
    pub force: bool,
    /// Threads compressing each layer (the output is the same for any number).
    pub threads: usize,
}

/// What an unpack wrote.
#[derive(Debug, Serialize)]
pub struct UnpackSummary {
    /// What the tag names: the manifest (one platform) or the index.
    pub digest: String,
    pub tag: String,
    pub images: Vec<UnpackedImage>,
}

/// One Nydus manifest unpacked.
#[derive(Debug, Serialize)]
pub struct UnpackedImage {
    pub platform: String,
    /// The Nydus manifest it came from.
    pub from: String,
    /// The OCI manifest written.
    pub manifest: String,
    pub layers: usize,
    /// Sockets left out (a tar cannot hold one; Docker leaves them out too).
    pub sockets_skipped: u64,
}

/// Unpack the Nydus image(s) of `input` into an OCI image at `output`.
pub fn unpack(input: &Path, output: &Path, options: &UnpackOptions) -> Result<UnpackSummary> {
    crate::output::layout::refuse_overlap(input, output)?;
    let source = source::open(input)?;
    let store = source.store();
    let (names, nydus) = nydus_manifests(&*source, options)?;
    let mut layout = LayoutWriter::create(output, options.format, options.force)?;
    let tag = options
        .tag
        .clone()
        .or_else(|| names.first().cloned())
        .unwrap_or_else(|| "latest".to_string());
    layout.refuse_existing_tag(&tag)?;
    let mut images = Vec::new();
    let mut descriptors = Vec::new();
    for (entry, manifest) in &nydus {
        let (written, platform, layers, sockets) =
            unpack_manifest(store, entry, manifest, &mut layout, options.threads)
                .map_err(|e| e.context(format!("Nydus manifest {}", manifest.digest)))?;
        descriptors.push(oci::manifest_descriptor(
            Descriptor {
                media_type: MEDIA_TYPE_MANIFEST,
                digest: &written.digest,
                size: written.size,
            },
            &platform,
            Marker::Original {
                source_digest: None,
            },
        ));
        images.push(UnpackedImage {
            platform: platform.to_string(),
            from: manifest.digest.to_string(),
            manifest: written.digest,
            layers,
            sockets_skipped: sockets,
        });
    }
    let (top, digest) = match descriptors.as_slice() {
        [one] => (one.clone(), images[0].manifest.clone()),
        _ => {
            let index = layout.put(&oci::image_index(descriptors)?)?;
            (oci::index_descriptor(&index), index.digest)
        }
    };
    layout.commit(vec![oci::tagged(top, &tag)])?;
    Ok(UnpackSummary {
        digest,
        tag,
        images,
    })
}

/// Nydus manifests of the input, each with its index entry.
type NydusManifests<'a> = Vec<(&'a ManifestEntry, Manifest)>;

/// The input image's names and the Nydus manifests chosen from it (a merged index's originals
/// are left out: they are ordinary images already).
fn nydus_manifests<'a>(
    source: &'a dyn ImageSource,
    options: &UnpackOptions,
) -> Result<(Vec<String>, NydusManifests<'a>)> {
    let selection = Selection {
        image: options.image.clone(),
        platform: PlatformChoice::All,
    };
    let chosen = choose(source, &selection, false)?;
    let mut names = Vec::new();
    let mut found = Vec::new();
    for (image, manifests) in chosen {
        names.extend(image.names.iter().cloned());
        for m in manifests {
            if !m.present {
                continue;
            }
            let wanted = options.platforms.is_empty()
                || m.platform
                    .as_ref()
                    .is_some_and(|p| options.platforms.contains(p));
            let manifest = read_manifest(source.store(), m)?;
            if wanted && is_nydus(&manifest) {
                found.push((m, manifest));
            }
        }
    }
    if found.is_empty() {
        return Err(Error::bad_input(
            source.path().display(),
            "holds no Nydus manifest to unpack (of the platforms asked for); \
             `nydus-offline inspect` lists what it holds",
        ));
    }
    Ok((names, found))
}

/// A Nydus manifest has a layer annotated as the bootstrap layer.
fn is_nydus(manifest: &Manifest) -> bool {
    bootstrap_layer::find(&manifest.parsed).is_some()
}

/// Opens blobs of the input by id.
struct StoreBlobs<'a>(&'a dyn BlobStore);

impl layer::BlobOpener for StoreBlobs<'_> {
    fn open(&self, id: &str) -> Result<BlobReader> {
        let name = blob_path(&format!("sha256:{id}").parse().map_err(|e| {
            Error::bad_input(format!("blob {id}"), format!("is not a sha256 digest: {e}"))
        })?)?;
        let Some(member) = self.0.open(&name)? else {
            return Err(Error::bad_input(
                self.0.describe(&name),
                "is missing (a chunk of the image is stored there)",
            ));
        };
        let Some(extent) = member.extent else {
            return Err(Error::bad_input(
                self.0.describe(&name),
                "is inside a compressed archive; unpack reads blobs in place: give it the \
                 uncompressed oci-archive or an OCI layout",
            ));
        };
        BlobReader::open_range(&extent.path, extent.offset, extent.len)
    }
}

/// Unpack one Nydus manifest: its layers, config and manifest. Returns the manifest written,
/// its platform, its layer count and the sockets left out.
fn unpack_manifest(
    store: &dyn BlobStore,
    entry: &ManifestEntry,
    manifest: &Manifest,
    layout: &mut LayoutWriter,
    threads: usize,
) -> Result<(StoredBlob, Platform, usize, u64)> {
    let config_desc = manifest.parsed.config();
    let config_name = blob_path(config_desc.digest())?;
    let what = store.describe(&config_name);
    let config_raw = read_small(store, &config_name, METADATA_LIMIT)?
        .ok_or_else(|| Error::bad_input(&what, "is missing"))?;
    check_bytes(
        &what,
        &config_raw,
        config_desc.digest(),
        config_desc.size(),
        "the manifest",
    )?;
    let opener = StoreBlobs(store);
    let mut bootstraps = Vec::new();
    for desc in manifest.parsed.layers() {
        if desc.media_type().to_string() == MEDIA_TYPE_NYDUS_BLOB {
            let id = desc.digest().digest().to_string();
            let layer =
                LayerBootstrap::read(&opener, &id).map_err(|e| e.context(format!("blob {id}")))?;
            bootstraps.push(layer);
        }
    }
    let trees: Vec<&LayerTree> = bootstraps.iter().map(|b| &b.tree).collect();
    let lower_links = links::find(&trees, &merged_tree(store, manifest)?);
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut sockets = 0;
    for (layer, links) in bootstraps.iter().zip(&lower_links) {
        let (stored, diff_id, skipped) = layer
            .unpack(&opener, links, layout, threads)
            .map_err(|e| e.context(format!("blob {}", layer.id)))?;
        layers.push(json!({
            "mediaType": MEDIA_TYPE_LAYER_GZIP,
            "digest": stored.digest,
            "size": stored.size,
        }));
        diff_ids.push(diff_id);
        sockets += skipped;
    }
    let config = restored_config(&config_raw, &diff_ids).map_err(|p| Error::bad_input(&what, p))?;
    let platform = entry
        .platform
        .clone()
        .unwrap_or_else(|| config_platform(&config));
    let config = layout.put(&serde_json::to_vec(&config).map_err(json_error)?)?;
    let mut out = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": { "mediaType": MEDIA_TYPE_CONFIG, "digest": config.digest, "size": config.size },
        "layers": layers,
    });
    if let Some(kept) = kept_annotations(manifest) {
        out["annotations"] = kept;
    }
    let written = layout.put(&serde_json::to_vec(&out).map_err(json_error)?)?;
    Ok((written, platform, diff_ids.len(), sockets))
}

fn json_error(e: serde_json::Error) -> Error {
    Error::internal(format!("encoding JSON: {e}"))
}

/// One Nydus layer's own bootstrap (inlined in its blob) and the tree it holds.
struct LayerBootstrap {
    id: String,
    boot: RafsBootstrap,
    tree: LayerTree,
}

impl LayerBootstrap {
    /// Read the bootstrap inlined in blob `id`: TOC entry `image.boot`, held to its digest; or,
    /// in a RAFS v5 blob (no TOC), the section its last tar header names.
    fn read(opener: &StoreBlobs, id: &str) -> Result<LayerBootstrap> {
        use layer::BlobOpener as _;
        let blob = opener.open(id)?;
        let bad = |p| blob_error(p, &format!("blob {id}"));
        let bootstrap = if crate::blob::reader_v5::is_v5_blob(&blob) {
            crate::blob::reader_v5::sections(&blob)
                .map_err(bad)?
                .bootstrap
        } else {
            let toc = blob.toc().map_err(bad)?;
            let entry = toc.entry(TOC_ENTRY_BOOTSTRAP).ok_or_else(|| {
                Error::bad_input(
                    format!("blob {id}"),
                    format!(
                        "has no {TOC_ENTRY_BOOTSTRAP} in its TOC: no layer bootstrap to unpack"
                    ),
                )
            })?;
            blob.section(entry, toc.at).map_err(bad)?
        };
        let what = format!("blob {id}: {TOC_ENTRY_BOOTSTRAP}");
        let boot = RafsBootstrap::open(bootstrap).map_err(|p| Error::bad_input(&what, p))?;
        let tree = boot.tree().map_err(|p| Error::bad_input(&what, p))?;
        Ok(LayerBootstrap {
            id: id.to_string(),
            boot,
            tree,
        })
    }

    /// The layer as a gzip tar: the stored layer, its diff_id and how many sockets it left out.
    fn unpack(
        &self,
        opener: &StoreBlobs,
        lower_links: &HashMap<u64, Vec<u8>>,
        layout: &mut LayoutWriter,
        threads: usize,
    ) -> Result<(StoredBlob, String, u64)> {
        let mut blobs = layer::Blobs::new(opener, &self.id, &self.boot)?;
        let out = layout.blob()?;
        let gz = ParallelGzip::new(out, flate2::Compression::default(), threads.max(1));
        let (hashed, sockets) = layer::write_tar(
            self.boot.chunk_size(),
            &self.tree,
            lower_links,
            &mut blobs,
            Hashed::new(gz),
        )?;
        let diff_id = format!("sha256:{}", hex(&hashed.sha256_so_far()));
        let out = hashed
            .into_inner()
            .finish()
            .map_err(|e| crate::common::digest::from_io(e, "writing a layer"))?;
        Ok((out.finish()?, diff_id, sockets))
    }
}

/// The merged bootstrap's tree (from the manifest's bootstrap layer): which names share an
/// inode across layers.
fn merged_tree(store: &dyn BlobStore, manifest: &Manifest) -> Result<LayerTree> {
    let Some(desc) = bootstrap_layer::find(&manifest.parsed) else {
        return Ok(LayerTree::new());
    };
    let what = format!(
        "manifest {}: bootstrap layer {}",
        manifest.digest,
        desc.digest()
    );
    RafsBootstrap::open(bootstrap_layer::read_from(store, desc, &what)?)
        .and_then(|b| b.tree())
        .map_err(|p| Error::bad_input(format!("{what}: image/image.boot"), p))
}

/// The Nydus config with `rootfs.diff_ids` naming the new layers and the bootstrap layer's
/// history entry gone; every other field kept.
fn restored_config(raw: &[u8], diff_ids: &[String]) -> std::result::Result<Value, String> {
    let mut config: Value = serde_json::from_slice(raw).map_err(|e| format!("is not JSON: {e}"))?;
    let object = config.as_object_mut().ok_or("is not a JSON object")?;
    object.insert(
        "rootfs".to_string(),
        json!({ "type": "layers", "diff_ids": diff_ids }),
    );
    if let Some(Value::Array(history)) = object.get_mut("history")
        && history
            .last()
            .is_some_and(|h| h["comment"] == BOOTSTRAP_HISTORY_COMMENT)
    {
        history.pop();
    }
    Ok(config)
}

/// The platform a config declares (`os`, `architecture`, `variant`).
fn config_platform(config: &Value) -> Platform {
    Platform::new(
        config["os"].as_str().unwrap_or("linux"),
        config["architecture"].as_str().unwrap_or("amd64"),
        config["variant"].as_str(),
    )
}

/// The manifest's annotations without the Nydus ones.
fn kept_annotations(manifest: &Manifest) -> Option<Value> {
    let kept: serde_json::Map<String, Value> = manifest
        .parsed
        .annotations()
        .as_ref()?
        .iter()
        .filter(|(k, _)| !k.starts_with("containerd.io/snapshot/nydus"))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    (!kept.is_empty()).then_some(Value::Object(kept))
}
