//! What an input holds, as the rest of the pipeline sees it: the images it lists
//! ([`ImageEntry`], [`ManifestEntry`]), and one platform-specific image loaded and verified
//! ([`Image`], with its [`Layer`]s).
//!
//! Also the media types we accept for manifests, indexes, configs and layers, in one place.

use oci_spec::image::{Digest, ImageConfiguration, ImageManifest};

use crate::source::compression::Compression;
use crate::source::platform::Platform;
use crate::source::store::FileExtent;

/// One image the input lists: a top-level entry of `index.json` (or of a docker
/// `manifest.json`), with its names and every platform-specific manifest reachable from it.
#[derive(Clone, Debug)]
pub struct ImageEntry {
    /// Tags and names given to it (`org.opencontainers.image.ref.name`, `io.containerd.image.name`,
    /// docker `RepoTags`); may be empty.
    pub names: Vec<String>,
    /// Digest of the top-level object: an index for multi-platform images, else the manifest.
    /// For a legacy docker save tarball, the config digest (the Docker image ID).
    pub digest: Digest,
    /// Media type of the top-level object.
    pub media_type: String,
    /// The platform-specific manifests, in the order the input lists them.
    pub manifests: Vec<ManifestEntry>,
}

/// One platform-specific image manifest an input refers to; it may be absent (a partial export
/// holds only some platforms of an index).
#[derive(Clone, Debug)]
pub struct ManifestEntry {
    /// Digest of the manifest.
    pub digest: Digest,
    /// Size of the manifest in bytes, as declared.
    pub size: u64,
    /// Media type of the manifest.
    pub media_type: String,
    /// The platform, from the index entry or, when the index does not say, the config.
    pub platform: Option<Platform>,
    /// Whether the manifest's bytes are in the input.
    pub present: bool,
    /// Member path of the manifest blob inside the input.
    pub(crate) blob: String,
}

impl ImageEntry {
    /// A short label for lists in messages: its names, or its digest when it has none.
    pub fn label(&self) -> String {
        if self.names.is_empty() {
            self.digest.to_string()
        } else {
            // Names come from the input; keep messages listing them on one line.
            format!(
                "{} ({})",
                crate::common::error::one_line(&self.names.join(", ")),
                self.digest
            )
        }
    }
}

/// A manifest, as stored (or, for legacy docker save tarballs, as synthesised from
/// `manifest.json`).
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Digest of `raw`.
    pub digest: Digest,
    /// The exact bytes.
    pub raw: Vec<u8>,
    /// Parsed.
    pub parsed: ImageManifest,
    /// Media type (OCI or Docker schema 2).
    pub media_type: String,
    /// True when the input had no manifest and this one was made up from a legacy docker save
    /// tarball; its digest then identifies nothing outside this run.
    pub synthesized: bool,
}

/// An image configuration, verified against its digest.
#[derive(Clone, Debug)]
pub struct Config {
    /// Digest of `raw`.
    pub digest: Digest,
    /// The exact bytes.
    pub raw: Vec<u8>,
    /// Parsed.
    pub parsed: ImageConfiguration,
}

/// One platform-specific image with its manifest and config read and verified, and every layer
/// blob found present with its declared size. Layer *contents* are verified as they stream, by
/// [`LayerReader`](crate::source::LayerReader).
#[derive(Clone, Debug)]
pub struct Image {
    /// Names of the image entry it came from.
    pub names: Vec<String>,
    /// Its platform (from the config).
    pub platform: Platform,
    /// The manifest.
    pub manifest: Manifest,
    /// The config.
    pub config: Config,
    /// The layers, base first.
    pub layers: Vec<Layer>,
}

/// One layer of an [`Image`].
#[derive(Clone, Debug)]
pub struct Layer {
    /// Position in the manifest, from 0 (the base layer).
    pub index: usize,
    /// Media type as the manifest declares it.
    pub media_type: String,
    /// Digest of the stored (compressed) bytes.
    pub digest: Digest,
    /// Size of the stored bytes.
    pub size: u64,
    /// Digest of the uncompressed tar (from the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// The compression the media type declares.
    pub declared: Compression,
    /// The compression the stored bytes actually have (by their magic number); this is what is
    /// undone when reading.
    pub stored: Compression,
    /// Where the stored bytes lie in a plain file, when they do.
    pub extent: Option<FileExtent>,
    /// The blob's location, for messages.
    pub location: String,
    /// Member path of the blob inside the input.
    pub(crate) blob: String,
}

impl Layer {
    /// Where the layer's *uncompressed tar* lies in a plain file, if it is stored uncompressed
    /// there: callers may map it instead of streaming it. The bytes are not verified by this;
    /// their digest is checked only when read through a `LayerReader`.
    pub fn uncompressed_extent(&self) -> Option<&FileExtent> {
        if self.stored == Compression::None {
            self.extent.as_ref()
        } else {
            None
        }
    }

    /// "layer 2 (sha256:…)" for messages; counted from 1 like humans do.
    pub fn label(&self) -> String {
        format!("layer {} ({})", self.index + 1, self.digest)
    }
}

/// Media types of the objects in an image.
pub mod media {
    use crate::source::compression::Compression;

    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    /// Whether `t` is an image index (OCI) or manifest list (Docker).
    pub fn is_index(t: &str) -> bool {
        t == OCI_INDEX || t == DOCKER_LIST
    }

    /// Whether `t` is an image manifest (OCI or Docker schema 2).
    pub fn is_manifest(t: &str) -> bool {
        t == OCI_MANIFEST || t == DOCKER_MANIFEST
    }

    /// Whether `t` is an image configuration.
    pub fn is_config(t: &str) -> bool {
        t == OCI_CONFIG || t == DOCKER_CONFIG
    }

    /// How a layer media type is compressed, and whether it is a foreign (non-distributable)
    /// layer, whose bytes registries do not carry. `None` for anything that is not a filesystem
    /// layer we can read.
    pub fn layer(t: &str) -> Option<(Compression, bool)> {
        Some(match t {
            OCI_LAYER | "application/vnd.docker.image.rootfs.diff.tar" => {
                (Compression::None, false)
            }
            OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => (Compression::Gzip, false),
            OCI_LAYER_ZSTD => (Compression::Zstd, false),
            "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar" => (Compression::None, true),
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                (Compression::Gzip, true)
            }
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                (Compression::Zstd, true)
            }
            _ => return None,
        })
    }

    /// The OCI layer media type for bytes stored with `c`.
    pub fn oci_layer_for(c: Compression) -> &'static str {
        match c {
            Compression::None => OCI_LAYER,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        }
    }
}
