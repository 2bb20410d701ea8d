//! `convert`: one image through the whole pipeline.
//!
//! For each layer, bottom first: its tar streams through [`layer::entries`] into a
//! [`BlobWriter`], which chunks, deduplicates (against this layer and every lower one) and
//! compresses file data into the layer's Nydus blob; the layer's own bootstrap (its tree with
//! whiteouts kept, as nydus builds per-layer bootstraps) is inlined at the blob's tail, and the
//! layer's entries are applied to the merged tree. Then the merged bootstrap, the bootstrap layer,
//! config, manifest and index are written, and the layout is moved into place.

use std::path::Path;

use crate::blob::chunk::{BlobInfo, BlobOptions, ChunkTable};
use crate::blob::writer::{BlobWriter, merged_blob_info};
use crate::error::{Error, Result};
use crate::layer::entries;
use crate::output::image as oci;
use crate::output::layout::LayoutWriter;
use crate::rafs::v6::writer::{self as v6, BootstrapInput};
use crate::source::{self, Image, ImageSource, Selection};
use crate::tree::Tree;

/// Everything `convert` can be told.
#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    pub selection: Selection,
    pub blob: BlobOptions,
    /// Replace an existing output.
    pub force: bool,
    /// The tag of the output image; default: the input image's first name, else `latest`.
    pub tag: Option<String>,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct ConvertSummary {
    pub manifest_digest: String,
    pub layers: usize,
    pub chunks: usize,
    pub tag: String,
}

/// Convert the image `options` selects from `input` into a Nydus image at `output`.
pub fn convert(input: &Path, output: &Path, options: &ConvertOptions) -> Result<ConvertSummary> {
    let source = source::open(input)?;
    let images = source::select(&*source, &options.selection)?;
    let image = match images.as_slice() {
        [one] => one,
        many => {
            let platforms: Vec<String> = many.iter().map(|i| i.platform.to_string()).collect();
            return Err(Error::usage(format!(
                "{} platforms selected ({}); converting one at a time is supported for now: pick one with --platform",
                many.len(),
                platforms.join(", ")
            )));
        }
    };
    let mut layout = LayoutWriter::create(output, options.force)?;
    let converted = convert_image(&*source, image, &mut layout, options)?;
    let tag = options
        .tag
        .clone()
        .or_else(|| image.names.first().cloned())
        .unwrap_or_else(|| "latest".to_string());
    let index = oci::index(
        &converted.manifest,
        &image.platform.os,
        &image.platform.architecture,
        image.platform.variant.as_deref(),
        &tag,
    )?;
    layout.commit(&index)?;
    Ok(ConvertSummary {
        manifest_digest: converted.manifest.digest,
        layers: image.layers.len(),
        chunks: converted.chunks,
        tag,
    })
}

struct Converted {
    manifest: crate::output::layout::StoredBlob,
    chunks: usize,
}

fn convert_image(
    source: &dyn ImageSource,
    image: &Image,
    layout: &mut LayoutWriter,
    options: &ConvertOptions,
) -> Result<Converted> {
    let mut table = ChunkTable::new();
    let mut merged = Tree::new();
    // The merged bootstrap's blob table: blobs that hold at least one chunk, in layer order.
    let mut blobs: Vec<BlobInfo> = Vec::new();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in &image.layers {
        let what = format!("layer {} ({})", layer.index + 1, layer.digest);
        let mut reader = source.open_layer(layer)?;
        let blob_index = u32::try_from(blobs.len()).expect("fewer than 2^32 blobs");
        let mut writer = BlobWriter::new(layout.blob()?, blob_index, options.blob, &mut table)?;
        let layer_entries =
            entries::read_layer(&mut reader, &mut writer).map_err(|e| e.context(&what))?;
        // Verifies the rest of the stream and every digest of the layer.
        reader.finish()?;
        let info = writer.finish_data()?;

        let mut layer_tree = Tree::new();
        layer_tree
            .add_verbatim(layer_entries.clone())
            .map_err(|e| e.context(&what))?;
        let mut layer_blobs = blobs.clone();
        if info.chunk_count > 0 {
            layer_blobs.push(info.clone());
        }
        let layer_bootstrap = v6::write(&BootstrapInput {
            tree: &layer_tree,
            chunks: writer.table(),
            blobs: &layer_blobs,
            options: options.blob,
        })
        .map_err(|e| e.context(&what))?;
        let stored = writer.finish(&layer_bootstrap)?.finish()?;

        merged.apply(layer_entries).map_err(|e| e.context(&what))?;
        if info.chunk_count > 0 {
            blobs.push(merged_blob_info(&info, stored.hex()));
        }
        layers.push(oci::blob_layer(&stored));
        diff_ids.push(stored.digest.clone());
    }

    let bootstrap = v6::write(&BootstrapInput {
        tree: &merged,
        chunks: &table,
        blobs: &blobs,
        options: options.blob,
    })?;
    let (boot_layer, boot_diff_id) = oci::bootstrap_layer(layout, &bootstrap, 6)?;
    layers.push(boot_layer);
    diff_ids.push(boot_diff_id);
    let config = layout.put(&oci::config(&image.config.raw, &diff_ids)?)?;
    let manifest = oci::manifest(&config, layers, image.manifest.digest.as_ref())?;
    let manifest = layout.put(&manifest)?;
    Ok(Converted {
        manifest,
        chunks: table.len(),
    })
}
