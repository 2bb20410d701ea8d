//! `inspect` of a Nydus image (one this program or nydusify wrote): the manifest's bootstrap
//! layer is read back and its merged bootstrap decoded with the reader of its RAFS version (v5
//! or v6, told by its magic), to show the RAFS version, the blobs with their sizes and
//! features, the chunk and inode counts, the prefetch table and the manifest it was converted
//! from. Nothing is verified beyond what
//! reading needs: that is `check`'s job, and the listing says so.

use std::collections::HashMap;

use serde::Serialize;

use crate::common::error::{Error, Result};
use crate::ondisk::blob::*;
use crate::ondisk::bootstrap::RafsBootstrap;
use crate::ondisk::rafs_v6::{RAFS_SUPER_FLAG_HASH_SHA256, RafsV6Blob};
use crate::output::bootstrap_layer;
use crate::output::image::{ANNOTATION_NYDUS_FS_VERSION, ANNOTATION_NYDUS_SOURCE_DIGEST};
use crate::source::image::Manifest;
use crate::source::store::BlobStore;

/// What a Nydus manifest holds.
#[derive(Debug, Serialize)]
pub struct NydusReport {
    /// RAFS version of the bootstrap ("5" or "6"), as the bootstrap layer's annotation says.
    pub rafs_version: Option<String>,
    /// The manifest it was converted from (`containerd.io/snapshot/nydus-source-digest`).
    pub source_manifest: Option<String>,
    /// The bootstrap layer's digest and stored size.
    pub bootstrap_layer: String,
    pub bootstrap_layer_size: u64,
    /// Bytes of the merged bootstrap.
    pub bootstrap_size: u64,
    /// Files are cut into chunks of this many bytes.
    pub chunk_size: u32,
    /// Inodes in the tree.
    pub inodes: u64,
    /// The data blobs, in blob table order.
    pub blobs: Vec<BlobReport>,
    /// Chunks over all blobs.
    pub chunks: u64,
    /// Paths nydusd prefetches at mount, in table order (empty: no prefetch table).
    pub prefetch: Vec<String>,
}

/// One blob of the blob table.
#[derive(Debug, Serialize)]
pub struct BlobReport {
    /// The blob id: the hex of its layer digest.
    pub id: String,
    /// Bytes of the blob layer as the manifest lists it (`null` if it lists no such layer).
    pub size: Option<u64>,
    /// Bytes of its chunks once decompressed (4 KiB aligned).
    pub uncompressed_size: u64,
    pub chunk_count: u32,
    /// "zstd", "lz4_block", "gzip" or "none".
    pub compressor: String,
    /// "blake3" or "sha256".
    pub digester: String,
    /// The blob feature flags, by name.
    pub features: Vec<String>,
}

/// The Nydus view of `manifest` when it is a Nydus manifest (it has a layer annotated as the
/// bootstrap layer); `None` for any other manifest.
pub fn report(store: &dyn BlobStore, manifest: &Manifest) -> Result<Option<NydusReport>> {
    let layers = manifest.parsed.layers();
    let annotation = |d: &oci_spec::image::Descriptor, key: &str| {
        d.annotations().as_ref().and_then(|a| a.get(key)).cloned()
    };
    let Some(boot) = bootstrap_layer::find(&manifest.parsed) else {
        return Ok(None);
    };
    let what = format!(
        "manifest {}: bootstrap layer {}",
        manifest.digest,
        boot.digest()
    );
    let bootstrap = bootstrap_layer::read_from(store, boot, &what)?;
    let bootstrap_size = bootstrap.len() as u64;
    let reader = RafsBootstrap::open(bootstrap)
        .map_err(|p| Error::bad_input(&what, format!("image/image.boot: {p}")))?;
    let (chunk_size, inodes, blobs) = match &reader {
        RafsBootstrap::V6(r) => {
            let digester = if r.ext.s_flags & RAFS_SUPER_FLAG_HASH_SHA256 != 0 {
                "sha256"
            } else {
                "blake3"
            };
            let blobs = r
                .blob_table()
                .iter()
                .map(|b| blob_report(b, digester, layers))
                .collect();
            (r.ext.s_chunk_size, r.sb.s_inos, blobs)
        }
        RafsBootstrap::V5(r) => (r.sb.s_block_size, r.sb.s_inodes_count, v5_blobs(r, layers)),
    };
    Ok(Some(NydusReport {
        rafs_version: annotation(boot, ANNOTATION_NYDUS_FS_VERSION),
        source_manifest: manifest
            .parsed
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_NYDUS_SOURCE_DIGEST))
            .cloned(),
        bootstrap_layer: boot.digest().to_string(),
        bootstrap_layer_size: boot.size(),
        bootstrap_size,
        chunk_size,
        inodes,
        chunks: blobs
            .iter()
            .map(|b: &BlobReport| u64::from(b.chunk_count))
            .sum(),
        blobs,
        prefetch: prefetch_paths(&reader),
    }))
}

/// The blobs of a RAFS v5 bootstrap: the blob table with its extended entries (chunk count,
/// sizes, features); compressor and digester are the super block's, shared by every blob.
fn v5_blobs(
    r: &crate::ondisk::rafs_v5::reader::BootstrapReader,
    layers: &[oci_spec::image::Descriptor],
) -> Vec<BlobReport> {
    let ext = r.ext_blob_table();
    let digester = if r.sha256() { "sha256" } else { "blake3" };
    let compressor = r
        .compressor()
        .map_or_else(|| "unknown".to_string(), compressor_name);
    r.blob_table()
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let e = ext.get(i).copied().unwrap_or_default();
            BlobReport {
                size: layers
                    .iter()
                    .find(|l| l.digest().digest() == b.blob_id)
                    .map(|l| l.size()),
                id: b.blob_id,
                uncompressed_size: e.uncompressed_size,
                chunk_count: e.chunk_count,
                compressor: compressor.clone(),
                digester: digester.into(),
                features: feature_names(e.features),
            }
        })
        .collect()
}

fn blob_report(
    b: &RafsV6Blob,
    digester: &str,
    layers: &[oci_spec::image::Descriptor],
) -> BlobReport {
    let id = b.blob_id().unwrap_or("?").to_string();
    BlobReport {
        size: layers
            .iter()
            .find(|l| l.digest().digest() == id)
            .map(|l| l.size()),
        id,
        uncompressed_size: b.uncompressed_size,
        chunk_count: b.chunk_count,
        compressor: compressor_name(b.compression_algo),
        digester: if b.digest_algo == DIGESTER_SHA256 {
            "sha256".into()
        } else {
            digester.into()
        },
        features: feature_names(b.features),
    }
}

fn compressor_name(algo: u32) -> String {
    match algo {
        COMPRESSOR_NONE => "none".into(),
        COMPRESSOR_LZ4_BLOCK => "lz4_block".into(),
        COMPRESSOR_GZIP => "gzip".into(),
        COMPRESSOR_ZSTD => "zstd".into(),
        other => format!("unknown ({other})"),
    }
}

/// The blob feature bits by the names nydus gives them.
fn feature_names(features: u32) -> Vec<String> {
    const NAMES: &[(u32, &str)] = &[
        (BLOB_FEATURE_ALIGNED, "aligned"),
        (BLOB_FEATURE_INLINED_FS_META, "inlined_fs_meta"),
        (BLOB_FEATURE_CHUNK_INFO_V2, "chunk_info_v2"),
        (BLOB_FEATURE_ZRAN, "zran"),
        (BLOB_FEATURE_SEPARATE, "separate"),
        (BLOB_FEATURE_INLINED_CHUNK_DIGEST, "inlined_chunk_digest"),
        (BLOB_FEATURE_BATCH, "batch"),
        (BLOB_FEATURE_ENCRYPTED, "encrypted"),
        (BLOB_FEATURE_HAS_TAR_HEADER, "has_tar_header"),
        (BLOB_FEATURE_HAS_TOC, "has_toc"),
        (BLOB_FEATURE_CAP_TAR_TOC, "cap_tar_toc"),
        (BLOB_FEATURE_V5_NO_EXT_BLOB_TABLE, "v5_no_ext_blob_table"),
    ];
    let mut names: Vec<String> = NAMES
        .iter()
        .filter(|(bit, _)| features & bit != 0)
        .map(|(_, name)| name.to_string())
        .collect();
    let known = NAMES.iter().fold(0, |acc, (bit, _)| acc | bit);
    if features & !known != 0 {
        names.push(format!("unknown ({:#x})", features & !known));
    }
    names
}

/// The prefetch table's entries (v6 nids, v5 inode numbers) as paths. The table names inodes;
/// the tree walk finds their paths (an entry the tree does not hold is shown as `nid N`).
fn prefetch_paths(reader: &RafsBootstrap) -> Vec<String> {
    let nids = reader.prefetch();
    if nids.is_empty() {
        return Vec::new();
    }
    let paths: HashMap<u64, String> = reader
        .tree()
        .unwrap_or_default()
        .into_iter()
        .map(|(path, inode)| (inode.nid, path.escape_ascii().to_string()))
        .collect();
    nids.iter()
        .map(|nid| {
            paths
                .get(nid)
                .cloned()
                .unwrap_or_else(|| format!("nid {nid}"))
        })
        .collect()
}
