//! `nydus-offline inspect`: what an input holds, as text or JSON, so users can pick `--image`
//! and `--platform`.
//!
//! Inspecting reads everything it lists: indexes, manifests and configs are verified, and, unless
//! `quick` is asked for, every listed layer is streamed through its decompressor to measure its
//! uncompressed size, which verifies its digest and diff_id as a side effect. That costs one
//! read of each layer but makes `inspect` also a full check of the input. With `quick`, the
//! uncompressed size is reported only for layers stored uncompressed.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

mod nydus;

pub use nydus::{BlobReport, NydusReport};

use crate::common::error::Result;
use crate::source::compression::Compression;
use crate::source::layout::read_manifest;
use crate::source::select::{Selection, choose};
use crate::source::{self, ImageSource};

/// Everything `inspect` reports about one input.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The input path.
    pub input: String,
    /// Its form ("OCI image layout", "oci-archive", "docker save tarball", …).
    pub form: String,
    /// The images listed.
    pub images: Vec<ImageReport>,
}

/// One image of the input.
#[derive(Debug, Serialize)]
pub struct ImageReport {
    /// Tags and names.
    pub names: Vec<String>,
    /// Digest of the top-level index or manifest (for legacy docker tarballs, of the config).
    pub digest: String,
    /// Media type of the top-level object.
    pub media_type: String,
    /// One entry per platform.
    pub manifests: Vec<ManifestReport>,
}

/// One platform-specific manifest.
#[derive(Debug, Serialize)]
pub struct ManifestReport {
    /// Its digest.
    pub digest: String,
    /// `os/arch[/variant]`, when known.
    pub platform: Option<String>,
    /// Whether its bytes are in the input (partial exports hold some platforms only).
    pub present: bool,
    /// True when the input had no manifest (legacy docker save) and this one was synthesised.
    pub synthesized: bool,
    /// Digest of the config, when present.
    pub config: Option<String>,
    /// The layers, base first; empty when the manifest is absent or a Nydus manifest.
    pub layers: Vec<LayerReport>,
    /// What a Nydus manifest holds; `null` for any other manifest.
    pub nydus: Option<NydusReport>,
}

/// One layer.
#[derive(Debug, Serialize)]
pub struct LayerReport {
    /// Media type as declared.
    pub media_type: String,
    /// Digest of the stored bytes.
    pub digest: String,
    /// Size of the stored bytes.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Compression of the stored bytes, from their magic number: none, gzip or zstd.
    pub compression: String,
    /// Size of the uncompressed tar; `null` when not measured (`quick`).
    pub uncompressed_size: Option<u64>,
}

/// Inspect the input at `path`. Every image is listed unless `selection.image` narrows it; the
/// platforms are those `selection.platform` chooses (the caller passes `All` by default).
pub fn inspect(path: &Path, selection: &Selection, quick: bool) -> Result<Report> {
    let source = source::open(path)?;
    report(&*source, selection, quick)
}

/// Inspect an already opened source.
pub fn report(source: &dyn ImageSource, selection: &Selection, quick: bool) -> Result<Report> {
    let mut measured: HashMap<String, u64> = HashMap::new();
    let mut images = Vec::new();
    for (entry, manifests) in choose(source, selection, true)? {
        let mut reports = Vec::new();
        for m in manifests {
            let mut report = ManifestReport {
                digest: m.digest.to_string(),
                platform: m.platform.as_ref().map(ToString::to_string),
                present: m.present,
                synthesized: false,
                config: None,
                layers: Vec::new(),
                nydus: None,
            };
            // A Nydus manifest is shown from its bootstrap; any other manifest (or one that
            // cannot be read: `load` says why) is loaded as a source image.
            if m.present
                && let Ok(manifest) = read_manifest(source.store(), m)
                && let Some(nydus) = nydus::report(source.store(), &manifest)?
            {
                report.config = Some(manifest.parsed.config().digest().to_string());
                report.nydus = Some(nydus);
            } else if m.present {
                let image = source.load(entry, m)?;
                report.platform = Some(image.platform.to_string());
                report.synthesized = image.manifest.synthesized;
                report.config = Some(image.config.digest.to_string());
                for layer in &image.layers {
                    let key = format!("{} {}", layer.digest, layer.diff_id);
                    let uncompressed_size = if let Some(size) = measured.get(&key) {
                        Some(*size)
                    } else if quick {
                        (layer.stored == Compression::None).then_some(layer.size)
                    } else {
                        let summary = source
                            .open_layer(layer)?
                            .finish()
                            .map_err(|e| e.context(layer.label()))?;
                        measured.insert(key, summary.uncompressed_size);
                        Some(summary.uncompressed_size)
                    };
                    report.layers.push(LayerReport {
                        media_type: layer.media_type.clone(),
                        digest: layer.digest.to_string(),
                        size: layer.size,
                        diff_id: layer.diff_id.to_string(),
                        compression: layer.stored.to_string(),
                        uncompressed_size,
                    });
                }
            }
            reports.push(report);
        }
        images.push(ImageReport {
            names: entry.names.clone(),
            digest: entry.digest.to_string(),
            media_type: entry.media_type.clone(),
            manifests: reports,
        });
    }
    Ok(Report {
        input: source.path().display().to_string(),
        form: source.form().to_string(),
        images,
    })
}

impl Report {
    /// The human-readable listing.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let count = self.images.len();
        writeln!(
            out,
            "{}: {}, {count} image{}",
            self.input,
            self.form,
            if count == 1 { "" } else { "s" }
        )?;
        for image in &self.images {
            writeln!(out)?;
            let names = if image.names.is_empty() {
                "(untagged)".to_string()
            } else {
                image.names.join(", ")
            };
            writeln!(out, "image {names}")?;
            writeln!(out, "  digest {} ({})", image.digest, image.media_type)?;
            for m in &image.manifests {
                let platform = m.platform.as_deref().unwrap_or("unknown platform");
                if !m.present {
                    writeln!(
                        out,
                        "  {platform}: manifest {} (not in the input)",
                        m.digest
                    )?;
                    continue;
                }
                if let Some(n) = &m.nydus {
                    write_nydus(out, platform, m, n)?;
                    continue;
                }
                writeln!(
                    out,
                    "  {platform}: manifest {}{}, config {}",
                    m.digest,
                    if m.synthesized { " (synthesised)" } else { "" },
                    m.config.as_deref().unwrap_or("-")
                )?;
                for (i, l) in m.layers.iter().enumerate() {
                    let uncompressed = l
                        .uncompressed_size
                        .map_or_else(|| "?".to_string(), |s| s.to_string());
                    writeln!(
                        out,
                        "    layer {}: {} ({}), {} bytes stored, {} bytes uncompressed, {}",
                        i + 1,
                        l.media_type,
                        l.compression,
                        l.size,
                        uncompressed,
                        l.digest
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// The listing of one Nydus manifest.
fn write_nydus(
    out: &mut dyn Write,
    platform: &str,
    m: &ManifestReport,
    n: &NydusReport,
) -> io::Result<()> {
    let from = n
        .source_manifest
        .as_deref()
        .map(|d| format!(", converted from {d}"))
        .unwrap_or_default();
    writeln!(
        out,
        "  {platform}: Nydus manifest {}, config {}{from}",
        m.digest,
        m.config.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "    RAFS v{}, {} inode{}, {} chunk{} of up to {} bytes, bootstrap {} bytes (layer {}, {} bytes)",
        n.rafs_version.as_deref().unwrap_or("?"),
        n.inodes,
        plural(n.inodes),
        n.chunks,
        plural(n.chunks),
        n.chunk_size,
        n.bootstrap_size,
        n.bootstrap_layer,
        n.bootstrap_layer_size
    )?;
    for (i, b) in n.blobs.iter().enumerate() {
        let stored = b.size.map_or_else(
            || "? (not a layer of the manifest)".to_string(),
            |s| s.to_string(),
        );
        writeln!(
            out,
            "    blob {}: {}, {stored} bytes stored, {} bytes uncompressed, {} chunk{}, {}/{}, features {}",
            i + 1,
            b.id,
            b.uncompressed_size,
            b.chunk_count,
            plural(u64::from(b.chunk_count)),
            b.compressor,
            b.digester,
            b.features.join(",")
        )?;
    }
    if n.prefetch.is_empty() {
        writeln!(out, "    prefetch: none")?;
    } else {
        writeln!(out, "    prefetch: {}", n.prefetch.join(" "))?;
    }
    writeln!(
        out,
        "    (read, not verified: `nydus-offline check` verifies every blob and chunk)"
    )
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
