//! The Nydus image's OCI objects, laid out as nydus-snapshotter's converter lays them out
//! (`docs/format.md` §1): one blob layer per source layer, then a gzip
//! bootstrap layer holding `image/image.boot`; the source config with `rootfs.diff_ids` and
//! `history` rewritten; a manifest with the annotations the snapshotter reads; the descriptors
//! and image index that name manifests, with Nydus manifests marked as nydusify marks them; and
//! the source images a merged index (`--merge-platform`) keeps, an empty layer prepended.
//!
//! JSON is written with sorted keys and no whitespace, so the same input gives the same bytes.

use std::io::Write;

use flate2::Compression;
use serde_json::{Map, Value, json};

use super::gzip::ParallelGzip;
use super::layout::{LayoutWriter, StoredBlob};
use crate::blob::writer::{BlobOut, Hashed};
use crate::common::error::{Error, Result};
use crate::common::hex::hex;
use crate::source::Platform;

/// Media type of a Nydus data blob layer.
pub const MEDIA_TYPE_NYDUS_BLOB: &str = "application/vnd.oci.image.layer.nydus.blob.v1";
/// Media type of the bootstrap layer (an OCI gzip layer).
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Marks a data layer: the snapshotter does not download it, nydusd fetches its chunks lazily.
pub const ANNOTATION_NYDUS_BLOB: &str = "containerd.io/snapshot/nydus-blob";
/// Ours: marks a blob layer that is a chunk dictionary's blob the image refers to (`convert
/// --chunk-dict` with a Nydus image); its inlined bootstrap is the dictionary image's, not one
/// of this image's layers. Readers ignore unknown annotations.
pub const ANNOTATION_CHUNK_DICT_BLOB: &str = "io.nydus-offline.chunk-dict-blob";
/// Marks the bootstrap layer: the snapshotter downloads and unpacks it.
pub const ANNOTATION_NYDUS_BOOTSTRAP: &str = "containerd.io/snapshot/nydus-bootstrap";
/// RAFS version of the bootstrap ("5" or "6").
pub const ANNOTATION_NYDUS_FS_VERSION: &str = "containerd.io/snapshot/nydus-fs-version";
/// Digest of the manifest this image was converted from.
pub const ANNOTATION_NYDUS_SOURCE_DIGEST: &str = "containerd.io/snapshot/nydus-source-digest";
/// The name of the image this image was converted from.
pub const ANNOTATION_NYDUS_SOURCE_REFERENCE: &str = "containerd.io/snapshot/nydus-source-reference";
/// What built the image.
pub const ANNOTATION_NYDUS_BUILDER_VERSION: &str = "containerd.io/snapshot/nydus-builder-version";
/// The tag of an image in an OCI layout's index.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// `platform.os.features` entry that marks a Nydus manifest in an index.
pub const OS_FEATURE_NYDUS: &str = "nydus.remoteimage.v1";
/// `artifactType` that marks a Nydus manifest in an index (newer nydusify).
pub const ARTIFACT_TYPE_NYDUS_MANIFEST: &str = "application/vnd.nydus.image.manifest.v1+json";

/// The Nydus manifest's config media type in a merged index (the snapshotter's
/// `ManifestConfigNydus`): containerd does not know it, so it never pulls the Nydus manifest
/// and takes the original one; a Nydus-aware snapshotter picks the Nydus one.
pub const MEDIA_TYPE_NYDUS_CONFIG: &str = "application/vnd.nydus.image.config.v1+json";
/// Marks the empty layer prepended to an original manifest kept in a merged index.
pub const ANNOTATION_NYDUS_EMPTY_LAYER: &str = "containerd.io/snapshot/nydus-empty-layer";
/// The empty layer acceld prepends: an empty tar (1024 zero bytes) gzip-compressed as Go's
/// `compress/gzip` does at the default level, no name, mtime 0 (32 bytes; also the well-known
/// empty layer of buildkit and moby).
pub const EMPTY_LAYER_GZIP: [u8; 32] = [
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x62, 0x18, 0x05, 0xa3, 0x60, 0x14,
    0x8c, 0x58, 0x00, 0x08, 0x00, 0x00, 0xff, 0xff, 0x2e, 0xaf, 0xb5, 0xef, 0x00, 0x04, 0x00, 0x00,
];
/// The digest of [`EMPTY_LAYER_GZIP`].
pub const EMPTY_LAYER_DIGEST: &str =
    "sha256:4f4fb700ef54461cfa02571ae0db9a0dc1e0cdb5577484a6d75e68dc38e8acc1";
/// The diff id of [`EMPTY_LAYER_GZIP`]: the sha256 of 1024 zero bytes.
pub const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// Where the bootstrap sits inside the bootstrap layer.
pub const BOOTSTRAP_PATH_IN_LAYER: &str = "image/image.boot";

/// The descriptor of a Nydus data blob layer.
pub fn blob_layer(blob: &StoredBlob) -> Value {
    json!({
        "mediaType": MEDIA_TYPE_NYDUS_BLOB,
        "digest": blob.digest,
        "size": blob.size,
        "annotations": { ANNOTATION_NYDUS_BLOB: "true" },
    })
}

/// The descriptor of a chunk dictionary's blob copied into the output: a blob layer marked
/// with [`ANNOTATION_CHUNK_DICT_BLOB`].
pub fn dict_blob_layer(blob: &StoredBlob) -> Value {
    let mut layer = blob_layer(blob);
    layer["annotations"][ANNOTATION_CHUNK_DICT_BLOB] = json!("true");
    layer
}

/// Write the bootstrap layer (`image/` and `image/image.boot` in a gzip tar) and return its
/// descriptor and diff id (sha256 of the uncompressed tar).
pub fn bootstrap_layer(
    writer: &mut LayoutWriter,
    bootstrap: &[u8],
    fs_version: u32,
    threads: usize,
) -> Result<(Value, String)> {
    let blob = writer.blob()?;
    // gzip level 6, as nydusify's: the layer is downloaded whole at pull time, so its size
    // counts; the members are compressed on every core (see `gzip`).
    let gz = ParallelGzip::new(blob, Compression::default(), threads);
    // The tar streams into gzip and into the diff_id hash at once: a bootstrap of 200,000 files
    // is tens of MiB, not worth a copy.
    let io_error = |e: std::io::Error| {
        Error::new(
            crate::ErrorKind::Io,
            format!("writing the bootstrap layer: {e}"),
        )
    };
    let hashed = write_bootstrap_tar(Hashed::new(gz), bootstrap).map_err(io_error)?;
    let diff_id = format!("sha256:{}", hex(&hashed.sha256_so_far()));
    let blob = hashed.into_inner().finish().map_err(io_error)?;
    let stored = blob.finish()?;
    let descriptor = json!({
        "mediaType": MEDIA_TYPE_LAYER_GZIP,
        "digest": stored.digest,
        "size": stored.size,
        "annotations": {
            ANNOTATION_NYDUS_BOOTSTRAP: "true",
            ANNOTATION_NYDUS_FS_VERSION: fs_version.to_string(),
        },
    });
    Ok((descriptor, diff_id))
}

/// Write the bootstrap layer's tar to `out`: directory `image` (0755) and `image/image.boot`
/// (0444), owned by root, time 0, as the snapshotter's `packToTar` writes them.
fn write_bootstrap_tar<W: Write>(out: W, bootstrap: &[u8]) -> std::io::Result<W> {
    let mut tar = tar::Builder::new(out);
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(0);
    dir.set_uid(0);
    dir.set_gid(0);
    tar.append_data(&mut dir, "image", std::io::empty())?;
    let mut file = tar::Header::new_ustar();
    file.set_entry_type(tar::EntryType::Regular);
    file.set_mode(0o444);
    file.set_size(bootstrap.len() as u64);
    file.set_mtime(0);
    file.set_uid(0);
    file.set_gid(0);
    tar.append_data(&mut file, BOOTSTRAP_PATH_IN_LAYER, bootstrap)?;
    tar.into_inner()
}

/// The Nydus image's config: the source config with `rootfs.diff_ids` replaced and one history
/// entry appended for the bootstrap layer; every other field is kept as it was.
pub fn config(source_raw: &[u8], diff_ids: &[String]) -> Result<Vec<u8>> {
    let mut config: Value = serde_json::from_slice(source_raw)
        .map_err(|e| Error::internal(format!("re-reading the verified source config: {e}")))?;
    let object = config
        .as_object_mut()
        .ok_or_else(|| Error::internal("the source config is not a JSON object"))?;
    let rootfs = object
        .entry("rootfs")
        .or_insert_with(|| Value::Object(Map::new()));
    rootfs["type"] = json!("layers");
    rootfs["diff_ids"] = json!(diff_ids);
    let history = object
        .entry("history")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(entries) = history {
        entries.push(json!({
            "created_by": "Nydus Converter",
            "comment": "Nydus Bootstrap Layer",
        }));
    }
    to_bytes(&config)
}

/// A source image as a merged index keeps it beside the Nydus manifests.
#[derive(Clone, Copy, Debug)]
pub struct Original<'a> {
    /// The source manifest's bytes, as verified.
    pub manifest: &'a [u8],
    /// Its media type (OCI or Docker schema 2).
    pub media_type: &'a str,
    /// The source config's bytes, as verified.
    pub config: &'a [u8],
    /// The source manifest's digest, recorded as `nydus-source-digest`; `None` when the
    /// manifest was made up from a legacy `docker save` tarball.
    pub source_digest: Option<&'a str>,
}

/// Write `original` as acceld 0.2.24+ keeps a source manifest in a merged index
/// (`PrependEmptyLayer`), so that no runtime can ever share its layers' snapshots with the
/// Nydus image's: the empty layer [`EMPTY_LAYER_GZIP`] first among its layers, annotated
/// `nydus-empty-layer: "true"`; its diff id first in the config's `rootfs.diff_ids` and a
/// history entry `{"created_by": "Nydus Converter", "comment": "Nydus Empty Layer"}` (no
/// timestamp) first in `history`; the config descriptor then names the new config (media type by
/// the manifest's kind, no other fields); the manifest's annotations get `nydus-source-digest`.
/// Every other field of both is kept. Writes the empty layer, the config and the manifest;
/// returns the manifest.
pub fn keep_original(writer: &mut LayoutWriter, original: &Original) -> Result<StoredBlob> {
    use crate::source::image::media;
    let (layer_type, config_type) = if original.media_type == media::DOCKER_MANIFEST {
        (media::DOCKER_LAYER_GZIP, media::DOCKER_CONFIG)
    } else {
        (media::OCI_LAYER_GZIP, media::OCI_CONFIG)
    };
    let mut config = json_object(original.config, "config")?;
    let rootfs = config
        .as_object_mut()
        .map(|c| {
            c.entry("rootfs")
                .or_insert_with(|| json!({ "type": "layers" }))
        })
        .ok_or_else(|| Error::internal("the source config is not a JSON object"))?;
    prepend(rootfs, "diff_ids", json!(EMPTY_LAYER_DIFF_ID))?;
    prepend(
        &mut config,
        "history",
        json!({ "created_by": "Nydus Converter", "comment": "Nydus Empty Layer" }),
    )?;
    let empty = writer.put(&EMPTY_LAYER_GZIP)?;
    let config = writer.put(&to_bytes(&config)?)?;
    let mut manifest = json_object(original.manifest, "manifest")?;
    prepend(
        &mut manifest,
        "layers",
        json!({
            "mediaType": layer_type,
            "digest": empty.digest,
            "size": empty.size,
            "annotations": { ANNOTATION_NYDUS_EMPTY_LAYER: "true" },
        }),
    )?;
    manifest["config"] =
        json!({ "mediaType": config_type, "digest": config.digest, "size": config.size });
    if let Some(digest) = original.source_digest {
        add_annotation(&mut manifest, ANNOTATION_NYDUS_SOURCE_DIGEST, digest)?;
    }
    writer.put(&to_bytes(&manifest)?)
}

/// The verified source `what`, parsed again: a JSON object.
fn json_object(raw: &[u8], what: &str) -> Result<Value> {
    match serde_json::from_slice(raw) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Error::internal(format!(
            "the source {what} is not a JSON object"
        ))),
        Err(e) => Err(Error::internal(format!(
            "re-reading the verified source {what}: {e}"
        ))),
    }
}

/// Put `item` first in the list `object[key]` (a missing or null list becomes `[item]`).
fn prepend(object: &mut Value, key: &str, item: Value) -> Result<()> {
    let object = object
        .as_object_mut()
        .ok_or_else(|| Error::internal(format!("not a JSON object where {key} goes")))?;
    match object.get_mut(key) {
        Some(Value::Array(list)) => list.insert(0, item),
        Some(Value::Null) | None => {
            object.insert(key.to_string(), json!([item]));
        }
        Some(_) => return Err(Error::internal(format!("{key} is not a list"))),
    }
    Ok(())
}

/// Set `annotations[key]` of a manifest or descriptor, keeping its other annotations.
fn add_annotation(object: &mut Value, key: &str, value: &str) -> Result<()> {
    let object = object
        .as_object_mut()
        .ok_or_else(|| Error::internal("annotations of something not a JSON object"))?;
    let slot = object.entry("annotations").or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(a) => {
            a.insert(key.to_string(), json!(value));
            Ok(())
        }
        _ => Err(Error::internal("annotations is not a JSON object")),
    }
}

/// Where a Nydus image came from, for its manifest's annotations and `subject`.
#[derive(Clone, Debug)]
pub struct Source<'a> {
    /// The source manifest's descriptor: media type, digest, size.
    pub manifest: Descriptor<'a>,
    /// False when the source manifest was made up from a legacy `docker save` tarball: its
    /// digest then names nothing outside this run, and is not recorded.
    pub real: bool,
    /// The source image's name or tag, when it has one.
    pub reference: Option<&'a str>,
}

/// The three fields that identify a blob.
#[derive(Clone, Copy, Debug)]
pub struct Descriptor<'a> {
    pub media_type: &'a str,
    pub digest: &'a str,
    pub size: u64,
}

impl Descriptor<'_> {
    fn to_json(self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// What this program calls itself in `nydus-builder-version`.
pub const BUILDER_VERSION: &str = concat!("nydus-offline ", env!("CARGO_PKG_VERSION"));

/// The Nydus manifest: always an OCI manifest with an OCI config, whatever the source was.
///
/// Why not keep a Docker source's media types, as the snapshotter's converter does without
/// `docker2oci`: the output is an OCI image layout; the Nydus blob media type is an OCI one
/// either way; `subject` (`--with-referrer`) exists only in OCI manifests; and a legacy
/// `docker save` source has no manifest of its own to follow. Docker's config JSON is a valid
/// OCI config, so it is kept byte for byte apart from the rewritten fields.
///
/// Annotations: `nydus-source-digest` (the source manifest, unless it was made up),
/// `nydus-source-reference` (the source image's name, when it has one), `nydus-fs-version` and
/// `nydus-builder-version` (this program and its version), as acceld/nydusify write them. With
/// `referrer`, `subject` names the source manifest. With `merged` (the manifest goes into a
/// merged index beside the originals), the config descriptor has the media type
/// [`MEDIA_TYPE_NYDUS_CONFIG`], as the snapshotter's converter gives it with `MergeManifest`.
pub fn manifest(
    config: &StoredBlob,
    layers: Vec<Value>,
    source: &Source,
    fs_version: u32,
    referrer: bool,
    merged: bool,
) -> Result<Vec<u8>> {
    let mut annotations = Map::new();
    if source.real {
        annotations.insert(
            ANNOTATION_NYDUS_SOURCE_DIGEST.into(),
            json!(source.manifest.digest),
        );
    }
    if let Some(reference) = source.reference {
        annotations.insert(ANNOTATION_NYDUS_SOURCE_REFERENCE.into(), json!(reference));
    }
    annotations.insert(
        ANNOTATION_NYDUS_FS_VERSION.into(),
        json!(fs_version.to_string()),
    );
    annotations.insert(
        ANNOTATION_NYDUS_BUILDER_VERSION.into(),
        json!(BUILDER_VERSION),
    );
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {
            "mediaType": if merged { MEDIA_TYPE_NYDUS_CONFIG } else { MEDIA_TYPE_CONFIG },
            "digest": config.digest,
            "size": config.size,
        },
        "layers": layers,
        "annotations": annotations,
    });
    if referrer {
        manifest["subject"] = source.manifest.to_json();
    }
    to_bytes(&manifest)
}

/// How a manifest is marked in an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker<'a> {
    /// A source image manifest kept in a merged index (`--merge-platform`), as
    /// [`keep_original`] rewrote it: no marker; annotated `nydus-source-digest` with the source
    /// manifest's digest (when it has a real one), as acceld annotates it.
    Original { source_digest: Option<&'a str> },
    /// A Nydus manifest: `platform.os.features: ["nydus.remoteimage.v1"]`, what nydusify 2.2
    /// and the snapshotter look for.
    Nydus,
    /// A Nydus manifest beside the originals in a merged index: also `artifactType`, the only
    /// marker acceld 0.2.24+ (nydusify 2.4) writes there (it dropped `os.features`, which ECR
    /// refuses). We keep `os.features` too: skopeo 1.9 drops `artifactType` from the index
    /// entries it copies, and a merged index without either marker hides the Nydus manifests
    /// from the snapshotter's detector (which accepts either).
    NydusMerged,
}

/// The index descriptor of a manifest for `platform`.
pub fn manifest_descriptor(manifest: Descriptor, platform: &Platform, marker: Marker) -> Value {
    let mut p = json!({ "os": platform.os, "architecture": platform.architecture });
    if let Some(v) = &platform.variant {
        p["variant"] = json!(v);
    }
    let mut descriptor = manifest.to_json();
    match marker {
        Marker::Original { source_digest } => {
            if let Some(digest) = source_digest {
                descriptor["annotations"] = json!({ ANNOTATION_NYDUS_SOURCE_DIGEST: digest });
            }
        }
        Marker::Nydus => p["os.features"] = json!([OS_FEATURE_NYDUS]),
        Marker::NydusMerged => {
            p["os.features"] = json!([OS_FEATURE_NYDUS]);
            descriptor["artifactType"] = json!(ARTIFACT_TYPE_NYDUS_MANIFEST);
        }
    }
    descriptor["platform"] = p;
    descriptor
}

/// An image index (the multi-platform image itself, stored as a blob) listing `manifests`.
pub fn image_index(manifests: Vec<Value>) -> Result<Vec<u8>> {
    to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": manifests,
    }))
}

/// The descriptor of an image index, for `index.json`.
pub fn index_descriptor(index: &StoredBlob) -> Value {
    json!({ "mediaType": MEDIA_TYPE_INDEX, "digest": index.digest, "size": index.size })
}

/// `descriptor` with the tag `org.opencontainers.image.ref.name`, for `index.json`.
pub fn tagged(mut descriptor: Value, tag: &str) -> Value {
    descriptor["annotations"] = json!({ ANNOTATION_REF_NAME: tag });
    descriptor
}

fn to_bytes(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::internal(format!("encoding JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_fields_and_rewrites_rootfs_and_history() {
        let source = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["/x"]},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"history":[{"created_by":"a"}]}"#;
        let out = config(source, &["sha256:b1".into(), "sha256:boot".into()]).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["config"]["Cmd"][0], "/x");
        assert_eq!(v["rootfs"]["diff_ids"], json!(["sha256:b1", "sha256:boot"]));
        assert_eq!(v["history"].as_array().unwrap().len(), 2);
        assert_eq!(v["history"][1]["comment"], "Nydus Bootstrap Layer");
    }

    #[test]
    fn manifest_annotations_and_subject() {
        let config = StoredBlob {
            digest: "sha256:c".into(),
            size: 2,
        };
        let source = Source {
            manifest: Descriptor {
                media_type: "application/vnd.docker.distribution.manifest.v2+json",
                digest: "sha256:s",
                size: 7,
            },
            real: true,
            reference: Some("app:1.0"),
        };
        let v: Value =
            serde_json::from_slice(&manifest(&config, vec![], &source, 6, true, false).unwrap())
                .unwrap();
        assert_eq!(v["mediaType"], MEDIA_TYPE_MANIFEST, "always OCI");
        assert_eq!(v["config"]["mediaType"], MEDIA_TYPE_CONFIG);
        assert_eq!(v["annotations"][ANNOTATION_NYDUS_SOURCE_DIGEST], "sha256:s");
        assert_eq!(
            v["annotations"][ANNOTATION_NYDUS_SOURCE_REFERENCE],
            "app:1.0"
        );
        assert_eq!(v["annotations"][ANNOTATION_NYDUS_FS_VERSION], "6");
        assert_eq!(
            v["subject"],
            json!({"mediaType": source.manifest.media_type, "digest": "sha256:s", "size": 7})
        );
        let made_up = Source {
            real: false,
            reference: None,
            ..source
        };
        let v: Value =
            serde_json::from_slice(&manifest(&config, vec![], &made_up, 6, false, true).unwrap())
                .unwrap();
        assert_eq!(v["config"]["mediaType"], MEDIA_TYPE_NYDUS_CONFIG, "merged");
        let keys: Vec<&String> = v["annotations"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                ANNOTATION_NYDUS_BUILDER_VERSION,
                ANNOTATION_NYDUS_FS_VERSION
            ]
        );
        assert!(v.get("subject").is_none());
    }

    #[test]
    fn descriptors_are_marked_as_nydusify_marks_them() {
        let m = Descriptor {
            media_type: MEDIA_TYPE_MANIFEST,
            digest: "sha256:m",
            size: 1,
        };
        let arm = Platform::new("linux", "arm64", Some("v8"));
        let original = manifest_descriptor(
            m,
            &arm,
            Marker::Original {
                source_digest: Some("sha256:s"),
            },
        );
        assert_eq!(
            original["platform"],
            json!({"os": "linux", "architecture": "arm64", "variant": "v8"})
        );
        assert_eq!(
            original["annotations"],
            json!({ ANNOTATION_NYDUS_SOURCE_DIGEST: "sha256:s" })
        );
        assert!(original.get("artifactType").is_none());
        let made_up = manifest_descriptor(
            m,
            &arm,
            Marker::Original {
                source_digest: None,
            },
        );
        assert!(made_up.get("annotations").is_none());
        let nydus = manifest_descriptor(m, &arm, Marker::Nydus);
        assert_eq!(nydus["platform"]["os.features"], json!([OS_FEATURE_NYDUS]));
        assert!(nydus.get("artifactType").is_none());
        let merged = manifest_descriptor(m, &arm, Marker::NydusMerged);
        assert_eq!(merged["artifactType"], ARTIFACT_TYPE_NYDUS_MANIFEST);
        assert_eq!(merged["platform"]["os.features"], json!([OS_FEATURE_NYDUS]));
    }

    #[test]
    fn the_empty_layer_is_an_empty_tar_in_gzip() {
        use std::io::Read;
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&EMPTY_LAYER_GZIP[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(tar, vec![0u8; 1024]);
        assert_eq!(
            crate::common::digest::sha256_of(&EMPTY_LAYER_GZIP).to_string(),
            EMPTY_LAYER_DIGEST
        );
        assert_eq!(
            crate::common::digest::sha256_of(&tar).to_string(),
            EMPTY_LAYER_DIFF_ID
        );
        assert_eq!(tar::Archive::new(&tar[..]).entries().unwrap().count(), 0);
    }

    #[test]
    fn prepend_and_annotate() {
        let mut v = json!({"layers": [1], "history": null});
        prepend(&mut v, "layers", json!(0)).unwrap();
        prepend(&mut v, "history", json!("h")).unwrap();
        prepend(&mut v, "new", json!("n")).unwrap();
        assert_eq!(v, json!({"layers": [0, 1], "history": ["h"], "new": ["n"]}));
        add_annotation(&mut v, "k", "v").unwrap();
        add_annotation(&mut v, "k2", "v2").unwrap();
        assert_eq!(v["annotations"], json!({"k": "v", "k2": "v2"}));
        assert!(prepend(&mut json!({"layers": {}}), "layers", json!(0)).is_err());
    }

    #[test]
    fn bootstrap_tar_holds_the_bootstrap_where_the_snapshotter_looks() {
        let tar_bytes = write_bootstrap_tar(Vec::new(), b"RAFS").unwrap();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let entries: Vec<(String, u32, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                    data,
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("image".to_string(), 0o755, vec![]),
                ("image/image.boot".to_string(), 0o444, b"RAFS".to_vec()),
            ]
        );
        assert_eq!(
            write_bootstrap_tar(Vec::new(), b"RAFS").unwrap(),
            tar_bytes,
            "deterministic"
        );
    }
}
