//! `convert`: the selected images (one per platform) through the whole pipeline, into one output.
//!
//! For each layer, bottom first: its tar streams through [`crate::layer::entries`] into a
//! [`BlobWriter`], which chunks, deduplicates (against this layer and every lower one) and
//! compresses file data into the layer's Nydus blob, while its entries, one at a time, build the
//! layer's own tree (whiteouts kept, as nydus builds per-layer bootstraps) and its part of the
//! merged tree ([`LayerBuilder`]); the own bootstrap is inlined at the blob's tail. Then the
//! merged bootstrap, the bootstrap layer, config and manifest are written. Once every platform
//! is done, the index naming them, and the output is put in place ([`LayoutWriter::commit`]).
//!
//! ## Layers shared between platforms
//!
//! A layer's blob depends on more than the layer: chunks that lower layers already hold are not
//! stored again, and blob indexes count the lower blobs. So a layer's blob is a function of its
//! *chain*, the layer and every layer below it. Platforms are converted in the image's order;
//! each starts from the longest chain prefix an earlier platform already converted (the usual
//! shared base layers) and converts only the layers above it: the shared blobs are the same
//! blobs, written once, and the chunk table, merged tree and blob table are rebuilt from what
//! was recorded for them. A layer that two platforms share over *different* lower layers gets a
//! blob per chain: dedup against its own lower layers is what keeps each platform's image small,
//! and nydusd reads each platform's blobs only.
//!
//! ## Interruption
//!
//! With [`interrupt::install`] called (the CLI does), SIGINT and SIGTERM stop the run at the next
//! write or layer: the output writer removes its temporary files and the error is
//! [`ErrorKind::Interrupted`](crate::ErrorKind::Interrupted).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use serde_json::Value;

mod dict;
use dict::{DictSource, LoadedDict};

use crate::blob::chunk::ChunkIndex;
use crate::blob::chunk::{BlobInfo, BlobOptions, ChunkTable};
use crate::blob::cipher::BlobCipher;
use crate::blob::sink::ChunkSink;
use crate::blob::writer::{AddedBlob, BlobWriter, WriterCounts, merged_blob_info};
use crate::cache::{self, CacheKey, CachedLayer, LayerCache, Lookup};
use crate::common::error::{Error, Result};
use crate::common::path::ImagePath;
use crate::layer::entries;
use crate::layer::readahead::ReadAhead;
use crate::output::image::{self as oci, Descriptor, Marker};
use crate::output::interrupt;
use crate::output::layout::{LayoutWriter, OutputFormat, StoredBlob};
use crate::prefetch::files::{self, SpooledImage};
use crate::prefetch::order::{HotFiles, Order};
use crate::prefetch::resolve;
use crate::progress::{LayerStart, LayerWatch, NoProgress, Progress};
use crate::rafs::{self, BootstrapInput};
use crate::report::{
    BlobRef, BlobReport, CacheUse, ConvertSummary, ImageSummary, LayerReport, LayerTiming,
    PlatformSummary, RunTiming, SourceLayer, Totals, peak_rss_bytes, ratio,
};
use crate::source::select::choose;
use crate::source::{self, Image, ImageSource, Selection};
use crate::tree::{LayerBuilder, PackedEntries, Tree};

/// Everything `convert` can be told.
#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    pub selection: Selection,
    pub blob: BlobOptions,
    /// Replace an existing output that is not an OCI layout (an OCI layout gets the image added).
    pub force: bool,
    /// The tag of the output image; default: the input image's first name, else `latest`.
    pub tag: Option<String>,
    /// A layout directory or an oci-archive.
    pub format: OutputFormat,
    /// Also keep the source images (their layer blobs copied, an empty layer prepended, see
    /// [`oci::keep_original`]) and list them before the Nydus manifests in one index (nydusify
    /// 2.4 `--merge-platform`).
    pub merge_platform: bool,
    /// Name the source manifest as each Nydus manifest's `subject` (nydusify `--with-referrer`).
    pub with_referrer: bool,
    /// What each image's layers may declare beyond the bytes they store (`--max-sparse-holes`).
    pub limits: entries::Limits,
    /// Every image of the input, each under its own tags (`--all-images`); layers and chunks
    /// shared between images are converted and stored once. Implied by several inputs.
    pub all_images: bool,
    /// What each bootstrap's prefetch table names (`--prefetch-patterns`).
    pub prefetch: rafs::Prefetch,
    /// Each image's prefetch table and blob layout from the files its entrypoint needs
    /// (`--prefetch-entrypoint`), instead of `prefetch`.
    pub prefetch_entrypoint: bool,
    /// `--shard I/N`: only the images whose digest falls in share `I` of `N`, so that `N` runs
    /// convert a mirror together (each image in exactly one of them).
    pub shard: Option<(u64, u64)>,
    /// `--cache DIR`: take converted layers from this layer cache, and keep those converted.
    pub cache: Option<PathBuf>,
    /// `--cache-max-size`: once done, evict least recently used cache entries down to this.
    pub cache_max_size: Option<u64>,
    /// `--chunk-dict bootstrap=PATH`: chunks this bootstrap's (or Nydus image's) blobs hold are
    /// referred to, not stored ([`dict`]).
    pub chunk_dict: Option<PathBuf>,
}

/// Convert the images `options` selects from `input` into a Nydus image at `output`.
///
/// The output appears whole or not at all: on any error, and on interruption, nothing at
/// `output` changes and no temporary file remains.
pub fn convert(input: &Path, output: &Path, options: &ConvertOptions) -> Result<ConvertSummary> {
    convert_with_progress(input, output, options, &NoProgress)
}

/// [`convert`], telling `progress` how it goes.
pub fn convert_with_progress(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
    progress: &dyn Progress,
) -> Result<ConvertSummary> {
    convert_many(&[input.to_path_buf()], output, options, progress)
}

/// [`convert_with_progress`] of several inputs into one output: every image of each (as
/// `--all-images`), each under its names; two images of different inputs with the same name are
/// an error, as the second would hide the first.
pub fn convert_many(
    inputs: &[PathBuf],
    output: &Path,
    options: &ConvertOptions,
    progress: &dyn Progress,
) -> Result<ConvertSummary> {
    let start = Instant::now();
    let result = convert_all(inputs, output, options, progress, start);
    // Whatever failed after a signal arrived failed because of it.
    result.map_err(|e| {
        if interrupt::requested() {
            interrupt::error()
        } else {
            e
        }
    })
}

fn convert_all(
    inputs: &[PathBuf],
    output: &Path,
    options: &ConvertOptions,
    progress: &dyn Progress,
    start: Instant,
) -> Result<ConvertSummary> {
    for input in inputs {
        crate::output::layout::refuse_overlap(input, output)?;
    }
    let sources = inputs
        .iter()
        .map(|i| source::open(i))
        .collect::<Result<Vec<_>>>()?;
    let groups = chosen_groups(&sources, options)?;
    let images: Vec<&Image> = groups.iter().flat_map(|(_, g)| &g.images).collect();
    if images.is_empty() {
        return Ok(ConvertSummary::nothing(start));
    }
    progress.begin(
        images.iter().map(|i| i.layers.len()).sum(),
        images.iter().flat_map(|i| &i.layers).map(|l| l.size).sum(),
    );
    if options.with_referrer
        && let Some((s, _)) = groups
            .iter()
            .find(|(_, g)| g.images.iter().any(|i| i.manifest.synthesized))
    {
        return Err(Error::usage(format!(
            "--with-referrer: {} is a legacy docker save tarball without a manifest; the \
             subject would name nothing",
            sources[*s].path().display(),
        )));
    }
    interrupt::check()?;
    let mut layout = LayoutWriter::create(output, options.format, options.force)?;
    for (_, group) in &groups {
        for tag in &group.tags {
            layout.refuse_existing_tag(tag)?;
        }
    }
    let mut chains = Chains {
        keep: images.len() > 1,
        cache: open_cache(inputs, output, options)?,
        dict: open_dict(options, output)?,
        ..Chains::default()
    };
    let mut platforms = Vec::new();
    let mut tagged = Vec::new();
    let mut written = Vec::new();
    for (s, group) in &groups {
        let first = platforms.len();
        let (top, digest, digest_names) = convert_group(
            &*sources[*s],
            group,
            &mut chains,
            &mut layout,
            options,
            progress,
            &mut platforms,
            images.len() > 1,
        )?;
        tagged.extend(group.tags.iter().map(|t| oci::tagged(top.clone(), t)));
        written.push(ImageSummary {
            tags: group.tags.clone(),
            digest,
            digest_names,
            platforms: platforms[first..]
                .iter()
                .map(|p| p.platform.to_string())
                .collect(),
        });
    }
    interrupt::check()?;
    warn_missing_dict_blobs(&chains);
    progress.commit();
    layout.commit(tagged)?;
    progress.end();
    evict(chains.cache.as_ref(), options.cache_max_size);
    let mut totals = Totals::default();
    platforms
        .iter()
        .flat_map(|p| &p.layers)
        .filter(|l| !l.shared)
        .for_each(|l| totals.add(l));
    let first = written.remove(0);
    Ok(ConvertSummary {
        digest: first.digest.clone(),
        digest_names: first.digest_names,
        tag: first.tags[0].clone(),
        options: output_options(options),
        images: if options.all_images || inputs.len() > 1 {
            std::iter::once(first).chain(written).collect()
        } else {
            Vec::new()
        },
        platforms,
        totals,
        timing: RunTiming {
            seconds: start.elapsed().as_secs_f64(),
            peak_rss_bytes: peak_rss_bytes(),
        },
    })
}

/// The options of the run, for the report.
fn output_options(options: &ConvertOptions) -> crate::report::OutputOptions {
    let blob = options.blob;
    crate::report::OutputOptions {
        fs_version: blob.fs_version.number(),
        chunk_size: blob.chunk_size,
        compressor: blob.compressor.name(),
        digester: blob.digester.name(),
        batch_size: blob.batch_size,
        encrypt: blob.encrypt,
        chunk_dict: options.chunk_dict.as_ref().map(|p| p.display().to_string()),
    }
}

/// The images of one output tag (or several tags naming one image): its platforms, loaded.
struct ImageGroup {
    tags: Vec<String>,
    images: Vec<Image>,
    /// The digest of the image's top-level index or manifest (what `--shard` divides by).
    digest: String,
}

/// The images of every source (by index into `sources`), each image's tags its own across all
/// of them, and only the share `--shard` asks for.
fn chosen_groups(
    sources: &[Box<dyn ImageSource>],
    options: &ConvertOptions,
) -> Result<Vec<(usize, ImageGroup)>> {
    let all = options.all_images || sources.len() > 1;
    let mut groups = Vec::new();
    let mut owner: HashMap<String, String> = HashMap::new();
    for (s, source) in sources.iter().enumerate() {
        for group in chosen_images(&**source, options, all)? {
            for tag in &group.tags {
                let here = format!("{} ({})", source.path().display(), group.digest);
                if let Some(other) = owner.insert(tag.clone(), here.clone()) {
                    return Err(Error::bad_input(
                        source.path().display(),
                        format!(
                            "the images {other} and {here} are both named {tag}; convert them \
                             into different outputs, or one at a time with --image and --tag"
                        ),
                    ));
                }
            }
            groups.push((s, group));
        }
    }
    if let Some((i, n)) = options.shard {
        groups.retain(|(_, g)| shard_of(&g.digest, n) == i);
    }
    Ok(groups)
}

/// Which of `n` shards the image with `digest` falls in: its first 8 bytes as a number, mod `n`.
fn shard_of(digest: &str, n: u64) -> u64 {
    let hex = digest.rsplit(':').next().unwrap_or_default();
    u64::from_str_radix(hex.get(..16).unwrap_or("0"), 16).unwrap_or(0) % n.max(1)
}

/// What `options` selects: one image (its platforms) under `--tag` or its default tag, or with
/// `--all-images` every image under its names as they are (a layout's tags; a docker save
/// tarball's full names, `docker.io/library/app:latest`, so that two repositories' `latest`
/// stay apart). An image without a name is left out, with a warning.
fn chosen_images(
    source: &dyn ImageSource,
    options: &ConvertOptions,
    all: bool,
) -> Result<Vec<ImageGroup>> {
    if !all {
        let images = source::select(source, &options.selection)?;
        let tag = options
            .tag
            .clone()
            .unwrap_or_else(|| default_tag(images.first().map_or(&[][..], |i| i.names.as_slice())));
        let digest = images
            .first()
            .map(|i| i.manifest.digest.to_string())
            .unwrap_or_default();
        return Ok(vec![ImageGroup {
            tags: vec![tag],
            images,
            digest,
        }]);
    }
    let selection = Selection {
        image: None,
        platform: options.selection.platform.clone(),
    };
    let mut groups = Vec::new();
    for (entry, manifests) in choose(source, &selection, true)? {
        let mut tags = entry.names.clone();
        tags.dedup();
        if tags.is_empty() {
            log::warn!(
                "{}: image {} has no tag and is left out (convert it with --image and --tag)",
                source.path().display(),
                entry.label()
            );
            continue;
        }
        let images = manifests
            .into_iter()
            .map(|m| source.load(entry, m))
            .collect::<Result<Vec<_>>>()?;
        groups.push(ImageGroup {
            tags,
            images,
            digest: entry.digest.to_string(),
        });
    }
    if groups.is_empty() {
        return Err(Error::bad_input(
            source.path().display(),
            "--all-images: no image of the input has a tag",
        ));
    }
    Ok(groups)
}

/// Convert the platforms of one image into `layout` (chains shared with every image before),
/// adding each platform's summary to `platforms`; the descriptor its tags name, its digest and
/// what that digest names.
#[allow(clippy::too_many_arguments)]
fn convert_group(
    source: &dyn ImageSource,
    group: &ImageGroup,
    chains: &mut Chains,
    layout: &mut LayoutWriter,
    options: &ConvertOptions,
    progress: &dyn Progress,
    platforms: &mut Vec<PlatformSummary>,
    name_platforms: bool,
) -> Result<(Value, String, &'static str)> {
    let images = &group.images;
    let mut nydus = Vec::new();
    for image in images {
        let converted = chains
            .convert(source, image, layout, options, progress)
            .map_err(|e| {
                if name_platforms {
                    e.context(format!("platform {}", image.platform))
                } else {
                    e
                }
            })?;
        let mut totals = Totals::default();
        converted.layers.iter().for_each(|l| totals.add(l));
        platforms.push(PlatformSummary {
            platform: image.platform.clone(),
            manifest: blob_ref(&converted.manifest),
            config: blob_ref(&converted.config),
            bootstrap: converted.bootstrap,
            layers: converted.layers,
            shared_layers: converted.shared_layers,
            totals,
        });
        nydus.push(converted.manifest);
    }
    let nydus_marker = if options.merge_platform {
        Marker::NydusMerged
    } else {
        Marker::Nydus
    };
    let mut descriptors = Vec::new();
    if options.merge_platform {
        for image in images {
            let kept = keep_original(source, image, layout)?;
            descriptors.push(oci::manifest_descriptor(
                Descriptor {
                    media_type: &image.manifest.media_type,
                    digest: &kept.digest,
                    size: kept.size,
                },
                &image.platform,
                Marker::Original {
                    source_digest: real_source_digest(image),
                },
            ));
        }
    }
    for (image, manifest) in images.iter().zip(&nydus) {
        descriptors.push(oci::manifest_descriptor(
            Descriptor {
                media_type: oci::MEDIA_TYPE_MANIFEST,
                digest: &manifest.digest,
                size: manifest.size,
            },
            &image.platform,
            nydus_marker,
        ));
    }
    // One Nydus manifest alone is named directly, as the snapshotter's converter collapses a
    // one-entry index; anything more is an image index.
    Ok(match descriptors.as_slice() {
        [one] => (one.clone(), nydus[0].digest.clone(), "manifest"),
        _ => {
            let index = layout.put(&oci::image_index(descriptors)?)?;
            (oci::index_descriptor(&index), index.digest, "index")
        }
    })
}

/// The tag an output gets without `--tag`: the tag of the input image's first name, so that
/// `skopeo copy oci:OUT:latest` finds the image whatever form the input had: `latest` for an OCI
/// layout's `latest`, a docker save tarball's `app:latest` and `docker.io/library/app:latest`
/// alike. A name with neither `/` nor `:` is a tag already; a name without a tag (`app`,
/// `app@sha256:...`), or no name at all, gives `latest`.
fn default_tag(names: &[String]) -> String {
    let Some(name) = names.first() else {
        return "latest".to_string();
    };
    if !name.contains(['/', ':', '@']) {
        return name.clone();
    }
    let without_digest = name.split('@').next().unwrap_or_default();
    let last = without_digest.rsplit('/').next().unwrap_or_default();
    match last.split_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag.to_string(),
        _ => "latest".to_string(),
    }
}

fn blob_ref(stored: &StoredBlob) -> BlobRef {
    BlobRef {
        digest: stored.digest.clone(),
        size: stored.size,
    }
}

/// The source manifest's descriptor.
fn source_descriptor(image: &Image) -> Descriptor<'_> {
    Descriptor {
        media_type: &image.manifest.media_type,
        digest: image.manifest.digest.as_ref(),
        size: image.manifest.raw.len() as u64,
    }
}

/// The source manifest's digest, unless it was made up (a legacy `docker save` tarball).
fn real_source_digest(image: &Image) -> Option<&str> {
    (!image.manifest.synthesized).then(|| image.manifest.digest.as_ref())
}

/// Keep the source image `image` in a merged index (`--merge-platform`): its layer blobs copied
/// as they are, each verified against the digest the manifest gives, then its manifest and
/// config with the empty layer prepended ([`oci::keep_original`]). Returns the new manifest.
fn keep_original(
    source: &dyn ImageSource,
    image: &Image,
    layout: &mut LayoutWriter,
) -> Result<StoredBlob> {
    for layer in &image.layers {
        let mut verified = crate::source::layer_reader::open_stored(source.store(), layer)?;
        let stored = layout.copy(&mut verified)?;
        if stored.digest != layer.digest.as_ref() {
            return Err(Error::bad_input(
                layer.label(),
                format!(
                    "copied with digest {}, but the manifest says {} (--merge-platform \
                     copies sha256 blobs only)",
                    stored.digest, layer.digest
                ),
            ));
        }
    }
    oci::keep_original(
        layout,
        &oci::Original {
            manifest: &image.manifest.raw,
            media_type: &image.manifest.media_type,
            config: &image.config.raw,
            source_digest: real_source_digest(image),
        },
    )
}

/// One converted layer, as a later platform needs it to continue from it.
struct LayerRecord {
    /// The source layer's digest and diff id.
    digest: String,
    diff_id: String,
    /// Its entries, to rebuild the merged tree (only if later platforms may share the chain).
    entries: Arc<PackedEntries>,
    /// Its blob as the layer's own bootstrap describes it (`chunk_count` 0: no data).
    info: BlobInfo,
    stored: StoredBlob,
    /// What it added to the image's blob table, as the merged bootstrap describes them: its
    /// own blob if it stored a chunk, and chunk dictionary blobs it was the first to use.
    added: Vec<BlobInfo>,
    /// Length of the chunk table once this layer was done.
    table_len: usize,
    /// Its key in the layer cache (computed with or without one: the next layer's depends on it).
    key: CacheKey,
    report: LayerReport,
}

/// One platform's converted layers and its final chunk table.
struct Chain {
    layers: Vec<LayerRecord>,
    table: ChunkTable,
}

/// The chains converted so far, for later platforms to share.
#[derive(Default)]
struct Chains {
    done: Vec<Chain>,
    /// Whether later platforms may share chains: otherwise nothing is kept once converted, so
    /// that a layer's entries exist once, not three times, at the peak.
    keep: bool,
    /// `--cache`: where converted layers are taken from and kept.
    cache: Option<LayerCache>,
    /// `--chunk-dict`: the chunk dictionary.
    dict: Option<DictSource>,
    /// Chunk dictionary blobs the images refer to, by id: copied into the output (`Some`), or
    /// not available to copy (`None`, a bare bootstrap).
    dict_blobs: HashMap<String, Option<StoredBlob>>,
}

/// `--prefetch-entrypoint`: the prefetch list of `image` derived from its entrypoint (a reading
/// of every layer, [`SpooledImage`]); the root, as by default, when the config names no command.
fn entrypoint_prefetch(
    source: &dyn ImageSource,
    image: &Image,
    options: &ConvertOptions,
    tmp: &Path,
) -> Result<rafs::Prefetch> {
    let list = startup_list(source, image, options, tmp)?;
    if list.is_empty() {
        crate::common::error::warn(format!(
            "{}: the config names no Entrypoint or Cmd found in the image: the prefetch table \
             is the root, as without --prefetch-entrypoint",
            image.platform
        ));
        return Ok(rafs::Prefetch::Root);
    }
    Ok(rafs::Prefetch::Paths(list))
}

/// The startup list of `image`, each note of the resolver logged.
fn startup_list(
    source: &dyn ImageSource,
    image: &Image,
    options: &ConvertOptions,
    tmp: &Path,
) -> Result<Vec<ImagePath>> {
    let files = SpooledImage::read(source, image, options.limits, tmp)?;
    let list = resolve::startup_list(&files, &files::startup(image))?;
    for note in &list.notes {
        log::info!("--prefetch-entrypoint: {}: {note}", image.platform);
    }
    Ok(list
        .paths
        .iter()
        .filter_map(|p| ImagePath::parse(p).ok())
        .collect())
}

/// `--print-prefetch-list`: each selected image of `inputs` with the startup list
/// `--prefetch-entrypoint` would derive for it; nothing is written.
pub fn prefetch_lists(
    inputs: &[PathBuf],
    options: &ConvertOptions,
) -> Result<Vec<(String, Vec<ImagePath>)>> {
    let sources = inputs
        .iter()
        .map(|i| source::open(i))
        .collect::<Result<Vec<_>>>()?;
    let tmp = tempfile::tempdir().map_err(|e| Error::io(&std::env::temp_dir(), e))?;
    let mut lists = Vec::new();
    for (s, group) in chosen_groups(&sources, options)? {
        for image in &group.images {
            let name = format!("{} {}", group.tags.join(", "), image.platform);
            lists.push((
                name,
                startup_list(&*sources[s], image, options, tmp.path())?,
            ));
        }
    }
    Ok(lists)
}

/// The first reading of a layer for a startup list: its listed files, spooled, and the stream
/// verified (the spooled bytes go into the blob).
fn hot_files(
    source: &dyn ImageSource,
    layer: &source::Layer,
    order: &Order,
    limits: entries::Limits,
    tmp: &Path,
) -> Result<HotFiles> {
    let mut reader = ReadAhead::open(source.store(), layer, Arc::new(AtomicU64::new(0)))?;
    let hot = HotFiles::collect(&mut reader, order, limits, tmp)?;
    reader.finish()?;
    Ok(hot)
}

/// One converted platform.
struct Converted {
    manifest: StoredBlob,
    config: StoredBlob,
    bootstrap: BlobRef,
    layers: Vec<LayerReport>,
    shared_layers: usize,
}

impl Chains {
    /// Convert `image`, reusing the longest converted prefix of its layer chain.
    fn convert(
        &mut self,
        source: &dyn ImageSource,
        image: &Image,
        layout: &mut LayoutWriter,
        options: &ConvertOptions,
        progress: &dyn Progress,
    ) -> Result<Converted> {
        let (shared, from) = self.longest_prefix(image);
        progress.platform(
            &image.platform,
            image.layers.len(),
            shared,
            image.layers[..shared].iter().map(|l| l.size).sum(),
        );
        let mut table = ChunkTable::new();
        let mut merged = Tree::new();
        let mut records: Vec<LayerRecord> = Vec::new();
        if let Some(chain) = from {
            let chain = &self.done[chain];
            let len = chain.layers[shared - 1].table_len;
            // The table as it stood after the shared layers: the same entries, and the same
            // entries found by content (the first of each content is the stored one; later
            // ones are aliases).
            for i in 0..len {
                let chunk = chain.table.get(i as ChunkIndex).clone();
                let stored = table.find(&chunk.digest, chunk.uncompressed_size).is_none();
                let index = table.reserve();
                table.fill(index, chunk, stored);
            }
            for layer in &chain.layers[..shared] {
                merged
                    .apply_packed(&layer.entries)
                    .map_err(|e| e.context(&layer.digest))?;
                records.push(LayerRecord {
                    digest: layer.digest.clone(),
                    diff_id: layer.diff_id.clone(),
                    entries: Arc::clone(&layer.entries),
                    info: layer.info.clone(),
                    stored: layer.stored.clone(),
                    added: layer.added.clone(),
                    table_len: layer.table_len,
                    key: layer.key.clone(),
                    report: LayerReport {
                        shared: true,
                        ..layer.report.clone()
                    },
                });
            }
        }
        // The merged bootstrap's blob table: blobs that hold at least one chunk (and chunk
        // dictionary blobs), in the order of their first use.
        let mut blobs: Vec<BlobInfo> = records.iter().flat_map(|r| r.added.clone()).collect();
        let dict = match &mut self.dict {
            Some(source) => Some(source.for_image(image, options.blob)?),
            None => None,
        };

        // The merged bootstrap, once the last layer's tree is applied (see below).
        let mut merged_bootstrap: Option<rafs::Bootstrap> = None;
        // One budget for the image: many layers must not multiply what one may declare.
        let mut limits = options.limits;
        let derived;
        let prefetch = if options.prefetch_entrypoint {
            derived = entrypoint_prefetch(source, image, options, layout.tmp_dir())?;
            &derived
        } else {
            &options.prefetch
        };
        let order = match prefetch {
            rafs::Prefetch::Paths(paths) => Some(Order::new(
                &paths.iter().map(ImagePath::to_bytes).collect::<Vec<_>>(),
            )),
            // The root names every file: tar order is list order already.
            rafs::Prefetch::Root | rafs::Prefetch::None => None,
        };
        let mut options_key =
            cache::options_key(options.blob, prefetch, options.limits.max_sparse_holes);
        if let Some(dict) = &dict {
            // Which chunks a layer stores depends on the dictionary: its bootstrap's digest.
            options_key.push_str(&format!(" chunk-dict {}", dict.dict.digest()));
        }
        let cached = self.cached_layers(
            image,
            layout,
            &options_key,
            (&mut table, &mut merged, &mut records, &mut blobs),
        )?;
        progress.cache_hits(
            cached,
            image.layers[shared..shared + cached]
                .iter()
                .map(|l| l.size)
                .sum(),
        );
        for (n, layer) in image.layers.iter().enumerate().skip(shared + cached) {
            interrupt::check()?;
            let started = Instant::now();
            let what = layer.label();
            let read = Arc::new(AtomicU64::new(0));
            let key = CacheKey::of(
                records.last().map(|r| &r.key),
                layer.diff_id.as_ref(),
                &options_key,
            );
            let (table_base, blob_base) = (table.len(), blobs.len());
            // Reading (or mapping), verifying and decompressing run on a thread of their own.
            let mut reader = ReadAhead::open(source.store(), layer, Arc::clone(&read))?;
            let blob_index = u32::try_from(blobs.len()).expect("fewer than 2^32 blobs");
            let mut writer = BlobWriter::new(layout.blob()?, blob_index, options.blob, &mut table)?;
            if let Some(dict) = &dict {
                writer = writer.with_dict(&dict.dict, &blobs);
            }
            // A key per layer chain and options, the same on every run.
            writer = writer.with_cipher(BlobCipher::derive(key.hex().as_bytes()));
            let counts = writer.counts();
            progress.layer_start(
                &LayerStart {
                    number: layer.index + 1,
                    count: image.layers.len(),
                    digest: layer.digest.as_ref(),
                    size: layer.size,
                },
                LayerWatch {
                    read,
                    writer: Arc::clone(&counts),
                },
            );
            // The layer's trees grow as its entries stream out of the tar, so that the list of a
            // layer's entries (about 200 bytes a file) is never held whole. Above the bottom
            // layer, `merged` still holds the layers below: a hardlink to one of their files
            // becomes a copy of that file in this layer's own bootstrap, and the layer is applied
            // to `merged` from its packed entries once its own bootstrap is written.
            let bottom = records.is_empty();
            let mut builder = if bottom {
                LayerBuilder::bottom(self.keep || self.cache.is_some())
            } else {
                LayerBuilder::over(&merged)
            };
            // With a startup list, its files go first in the blob (a first reading of the
            // layer spools them); the bootstrap's prefetch table then names chunks that lie
            // together.
            let hot = match &order {
                Some(order) => Some(
                    hot_files(source, layer, order, limits, layout.tmp_dir())
                        .map_err(|e| e.context(&what))?,
                ),
                None => None,
            };
            let notes = {
                let mut laid_out;
                let sink: &mut dyn ChunkSink = match hot {
                    Some(hot) if !hot.is_empty() => {
                        laid_out = hot.write_first(&mut writer).map_err(|e| e.context(&what))?;
                        &mut laid_out
                    }
                    _ => &mut writer,
                };
                entries::for_each_entry(&mut reader, sink, &mut limits, &mut |e| builder.add(e))
                    .map_err(|e| e.context(&what))?
            };
            let built = builder.finish();
            // Verifies the rest of the stream and every digest of the layer.
            let read_summary = reader.finish().map_err(|e| e.context(&what))?;
            notes.warn(&what);
            let info = writer.finish_data()?;
            progress.layer_bootstrap();

            if let Some(tree) = built.merged {
                merged = tree;
            }
            let own_tree = built.own;
            let packed = built.packed;
            // A bottom layer is in `merged` already; a layer above still has to be applied.
            let mut pending = if bottom { None } else { packed.as_ref() };
            // A bottom layer without whiteouts is its own merged tree: one tree, not two.
            let layer_tree: &Tree = own_tree.as_ref().unwrap_or(&merged);
            let added = writer.added().to_vec();
            let added_as = |own: &BlobInfo| added_blobs(&added, own, dict.as_deref());
            let mut layer_blobs = blobs.clone();
            layer_blobs.extend(added_as(&info));
            // Bootstraps go to a temporary file, not memory: the one of 200,000 files is over
            // 40 MiB.
            let layer_bootstrap = rafs::write_temp(
                &BootstrapInput {
                    tree: layer_tree,
                    chunks: writer.table(),
                    blobs: &layer_blobs,
                    options: options.blob,
                    prefetch,
                },
                layout.tmp_dir(),
            )
            .map_err(|e| e.context(&what))?;
            drop(own_tree);
            // After the last layer, the merged tree only has its bootstrap to give: write that
            // now and free the tree before the layer's blob is finished (compressing the layer's
            // bootstrap is the other peak of memory). Its blob id, the digest of that blob, is
            // filled in once known.
            let last = n + 1 == image.layers.len();
            if last {
                if let Some(entries) = pending.take() {
                    merged.apply_packed(entries).map_err(|e| e.context(&what))?;
                }
                let mut final_blobs = blobs.clone();
                final_blobs.extend(added_as(&merged_blob_info(&info, &"0".repeat(64))));
                merged_bootstrap = Some(rafs::write_temp(
                    &BootstrapInput {
                        tree: &merged,
                        chunks: writer.table(),
                        blobs: &final_blobs,
                        options: options.blob,
                        prefetch,
                    },
                    layout.tmp_dir(),
                )?);
                merged = Tree::new();
            }
            let stored = writer.finish(&layer_bootstrap.map()?)?.finish()?;
            let hits = WriterCounts::get(&counts.dedup_hits);
            let report = LayerReport {
                source: SourceLayer {
                    digest: layer.digest.to_string(),
                    diff_id: layer.diff_id.to_string(),
                    size: read_summary.stored_size,
                    uncompressed_size: read_summary.uncompressed_size,
                },
                blob: BlobReport {
                    digest: stored.digest.clone(),
                    size: stored.size,
                    chunk_data_size: WriterCounts::get(&counts.stored_bytes),
                    uncompressed_size: info.uncompressed_size,
                    file_bytes: WriterCounts::get(&counts.file_bytes),
                    chunks: u64::from(info.chunk_count),
                    dedup_hits: hits,
                    dict_hits: WriterCounts::get(&counts.dict_hits),
                    dedup_ratio: ratio(hits, u64::from(info.chunk_count)),
                },
                shared: false,
                cache: self.cache.as_ref().map(|_| CacheUse::Miss),
                timing: LayerTiming {
                    seconds: started.elapsed().as_secs_f64(),
                },
            };
            progress.layer_done(&report);
            drop(layer_bootstrap);

            if let Some(entries) = pending.take() {
                merged.apply_packed(entries).map_err(|e| e.context(&what))?;
            }
            let added = added_as(&merged_blob_info(&info, stored.hex()));
            blobs.extend(added.iter().cloned());
            if let Some(bootstrap) = &merged_bootstrap {
                rafs::set_blob_ids(bootstrap, &blobs, options.blob)?;
            }
            let mut packed = packed;
            if let (Some(cache), Some(entries)) = (&self.cache, packed.as_mut()) {
                let kept = Kept {
                    key: &key,
                    depth: n,
                    layer,
                    uncompressed_size: read_summary.uncompressed_size,
                    table: &table,
                    table_base,
                    blob_base,
                    info: &info,
                    added: &added,
                    report: &report,
                };
                keep_in_cache(cache, kept, entries, layout);
            }
            records.push(LayerRecord {
                digest: layer.digest.to_string(),
                diff_id: layer.diff_id.to_string(),
                entries: match packed {
                    Some(packed) if self.keep => Arc::new(packed),
                    _ => Arc::default(),
                },
                info,
                stored,
                added,
                table_len: table.len(),
                key,
                report,
            });
        }

        if let Some(cache) = &self.cache {
            // Top first: a chain's lower entries stay the more recently used, so that eviction
            // takes a chain from its top and never leaves upper entries no run can reach.
            records.iter().rev().for_each(|r| cache.touch(&r.key));
        }
        progress.bootstrap(&image.platform);
        let mut layers: Vec<Value> = records.iter().map(|r| oci::blob_layer(&r.stored)).collect();
        let mut diff_ids: Vec<String> = records.iter().map(|r| r.stored.digest.clone()).collect();
        for stored in self.dict_blobs_of(&blobs, layout)? {
            layers.push(oci::dict_blob_layer(&stored));
            diff_ids.push(stored.digest);
        }
        let bootstrap = match merged_bootstrap {
            Some(bootstrap) => bootstrap,
            // Every layer was converted for an earlier platform.
            None => rafs::write_temp(
                &BootstrapInput {
                    tree: &merged,
                    chunks: &table,
                    blobs: &blobs,
                    options: options.blob,
                    prefetch,
                },
                layout.tmp_dir(),
            )?,
        };
        drop(merged);
        let (boot_layer, boot_diff_id) = oci::bootstrap_layer(
            layout,
            &bootstrap.map()?,
            options.blob.fs_version.number(),
            options.blob.jobs,
        )?;
        let bootstrap = BlobRef {
            digest: boot_layer["digest"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            size: boot_layer["size"].as_u64().unwrap_or_default(),
        };
        layers.push(boot_layer);
        diff_ids.push(boot_diff_id);
        let config = layout.put(&oci::config(&image.config.raw, &diff_ids)?)?;
        let manifest = oci::manifest(
            &config,
            layers,
            &oci::Source {
                manifest: source_descriptor(image),
                real: !image.manifest.synthesized,
                reference: image.names.first().map(String::as_str),
            },
            options.blob.fs_version.number(),
            options.with_referrer,
            options.merge_platform,
        )?;
        let manifest = layout.put(&manifest)?;
        let reports = records.iter().map(|r| r.report.clone()).collect();
        if self.keep {
            self.done.push(Chain {
                layers: records,
                table,
            });
        }
        Ok(Converted {
            manifest,
            config,
            bootstrap,
            layers: reports,
            shared_layers: shared,
        })
    }

    /// The longest prefix of `image`'s layer chain a converted chain starts with: its length
    /// and which chain (the first of the longest), or `(0, None)`.
    fn longest_prefix(&self, image: &Image) -> (usize, Option<usize>) {
        let mut best = (0, None);
        for (i, chain) in self.done.iter().enumerate() {
            let common = chain
                .layers
                .iter()
                .zip(&image.layers)
                .take_while(|(r, l)| {
                    r.digest == l.digest.as_ref() && r.diff_id == l.diff_id.as_ref()
                })
                .count();
            if common > best.0 {
                best = (common, Some(i));
            }
        }
        best
    }
}

/// `--cache DIR`, opened (created if need be); it may not be, hold or lie in an input or the
/// output.
fn open_cache(
    inputs: &[PathBuf],
    output: &Path,
    options: &ConvertOptions,
) -> Result<Option<LayerCache>> {
    let Some(dir) = &options.cache else {
        return Ok(None);
    };
    crate::output::layout::refuse_side_dir(inputs, output, dir, "the --cache directory")?;
    LayerCache::open(dir).map(Some)
}

/// `--cache-max-size`: least recently used entries evicted once the output is in place. The
/// output is complete by then: a failure is a warning.
fn evict(cache: Option<&LayerCache>, max_size: Option<u64>) {
    if let (Some(cache), Some(max)) = (cache, max_size)
        && let Err(e) = cache.prune(Some(max))
    {
        crate::common::error::warn(format!("evicting from the layer cache: {e}"));
    }
}

/// What the layer loop has built so far: the chunk table, the merged tree, the layers and the
/// merged bootstrap's blob table.
type Built<'a> = (
    &'a mut ChunkTable,
    &'a mut Tree,
    &'a mut Vec<LayerRecord>,
    &'a mut Vec<BlobInfo>,
);

impl Chains {
    /// Continue `built` with the layers of `image` the cache holds above it, bottom first, up to
    /// the first miss: each blob put into `layout` (verified), each layer's chunks, entries and
    /// blob added as for a shared chain. How many layers came from the cache.
    fn cached_layers(
        &self,
        image: &Image,
        layout: &mut LayoutWriter,
        options_key: &str,
        (table, merged, records, blobs): Built<'_>,
    ) -> Result<usize> {
        let Some(cache) = &self.cache else {
            return Ok(0);
        };
        let start = records.len();
        for layer in &image.layers[start..] {
            interrupt::check()?;
            let started = Instant::now();
            let key = CacheKey::of(
                records.last().map(|r| &r.key),
                layer.diff_id.as_ref(),
                options_key,
            );
            let damaged = |problem: &str| {
                crate::common::error::warn(format!(
                    "{}: the layer cache's entry {} is not usable, the layer is converted \
                     again: {problem}",
                    layer.label(),
                    key.hex()
                ));
                cache.discard(&key);
            };
            let hit = match cache.load(&key) {
                Lookup::Miss => break,
                Lookup::Damaged(problem) => {
                    damaged(&problem);
                    break;
                }
                Lookup::Hit(hit) => hit,
            };
            if let Err(problem) = hit.fits(table.len(), blobs.len()) {
                damaged(&problem);
                break;
            }
            let stored = StoredBlob {
                digest: hit.blob_digest.clone(),
                size: hit.blob_size,
            };
            if !layout.add_blob_file(&cache.blob_path(&key), &stored)? {
                damaged("its blob is not the one its record names");
                break;
            }
            let report = hit_report(layer, &hit, &stored, started);
            let CachedLayer {
                chunks,
                entries,
                info,
                added,
                ..
            } = *hit;
            // As for a shared chain: the first of each content is the stored chunk.
            for chunk in chunks {
                let first = table.find(&chunk.digest, chunk.uncompressed_size).is_none();
                let index = table.reserve();
                table.fill(index, chunk, first);
            }
            merged
                .apply_packed(&entries)
                .map_err(|e| e.context(layer.label()))?;
            blobs.extend(added.iter().cloned());
            records.push(LayerRecord {
                digest: layer.digest.to_string(),
                diff_id: layer.diff_id.to_string(),
                entries: Arc::new(if self.keep {
                    entries
                } else {
                    PackedEntries::new()
                }),
                report,
                info,
                stored,
                added,
                table_len: table.len(),
                key,
            });
        }
        Ok(records.len() - start)
    }
}

/// The blob table entries a layer adds, `added` in order: `own` for its own blob, the
/// dictionary's description for a dictionary blob.
fn added_blobs(added: &[AddedBlob], own: &BlobInfo, dict: Option<&LoadedDict>) -> Vec<BlobInfo> {
    added
        .iter()
        .map(|a| match (a, dict) {
            (AddedBlob::Own, _) => own.clone(),
            (AddedBlob::Dict(i), Some(dict)) => dict.dict.blobs()[*i as usize].clone(),
            (AddedBlob::Dict(_), None) => unreachable!("a dictionary blob without a dictionary"),
        })
        .collect()
}

/// `--chunk-dict`: the dictionary, opened (it is read at the first image that needs it).
fn open_dict(options: &ConvertOptions, output: &Path) -> Result<Option<DictSource>> {
    let Some(path) = &options.chunk_dict else {
        return Ok(None);
    };
    crate::output::layout::refuse_overlap(path, output)?;
    if options.blob.encrypt {
        return Err(Error::usage(
            "--chunk-dict and --encrypt cannot be used together yet: the dictionary's blobs \
             are not encrypted with the image's keys",
        ));
    }
    DictSource::open(path).map(Some)
}

/// Say which dictionary blobs the output refers to and does not hold (a bare bootstrap given
/// as the dictionary): nydusd needs them where it finds the image's blobs.
fn warn_missing_dict_blobs(chains: &Chains) {
    let mut missing: Vec<&str> = chains
        .dict_blobs
        .iter()
        .filter(|(_, stored)| stored.is_none())
        .map(|(id, _)| id.as_str())
        .collect();
    if missing.is_empty() {
        return;
    }
    missing.sort_unstable();
    crate::common::error::warn(format!(
        "the image refers to {} blob(s) of the chunk dictionary that are not in the output \
         (it is a bare bootstrap): {}; nydusd needs them beside the image's blobs (push the \
         dictionary's image to the same repository, or put them in the localfs blob directory)",
        missing.len(),
        missing.join(", ")
    ));
}

impl Chains {
    /// The chunk dictionary blobs in `blobs` (an image's blob table), copied into the output
    /// once each when the dictionary is an image; what a bare bootstrap's image needs is noted
    /// for [`warn_missing_dict_blobs`].
    fn dict_blobs_of(
        &mut self,
        blobs: &[BlobInfo],
        layout: &mut LayoutWriter,
    ) -> Result<Vec<StoredBlob>> {
        let Some(source) = &mut self.dict else {
            return Ok(Vec::new());
        };
        let loaded: Vec<Arc<LoadedDict>> = source.loaded().collect();
        let mut out = Vec::new();
        for blob in blobs {
            let Some(dict) = loaded
                .iter()
                .find(|d| d.dict.blobs().iter().any(|b| b.id == blob.id))
            else {
                continue;
            };
            let stored = match self.dict_blobs.get(&blob.id) {
                Some(done) => done.clone(),
                None => {
                    let stored = dict.copy_blob(source.image_source(), blob, layout)?;
                    self.dict_blobs.insert(blob.id.clone(), stored.clone());
                    stored
                }
            };
            out.extend(stored);
        }
        Ok(out)
    }
}

/// The report of a layer taken from the cache: what its conversion counted.
fn hit_report(
    layer: &source::Layer,
    hit: &CachedLayer,
    stored: &StoredBlob,
    started: Instant,
) -> LayerReport {
    let chunks = u64::from(hit.info.chunk_count);
    LayerReport {
        source: SourceLayer {
            digest: layer.digest.to_string(),
            diff_id: layer.diff_id.to_string(),
            size: layer.size,
            uncompressed_size: hit.source_uncompressed_size,
        },
        blob: BlobReport {
            digest: stored.digest.clone(),
            size: stored.size,
            chunk_data_size: hit.chunk_data_size,
            uncompressed_size: hit.info.uncompressed_size,
            file_bytes: hit.file_bytes,
            chunks,
            dedup_hits: hit.dedup_hits,
            dict_hits: hit.dict_hits,
            dedup_ratio: ratio(hit.dedup_hits, chunks),
        },
        shared: false,
        cache: Some(CacheUse::Hit),
        timing: LayerTiming {
            seconds: started.elapsed().as_secs_f64(),
        },
    }
}

/// A layer just converted, as [`keep_in_cache`] needs it.
struct Kept<'a> {
    key: &'a CacheKey,
    /// Its place in the chain.
    depth: usize,
    layer: &'a source::Layer,
    uncompressed_size: u64,
    /// The chunk table after it, and its length and the blob table's before it.
    table: &'a ChunkTable,
    table_base: usize,
    blob_base: usize,
    info: &'a BlobInfo,
    /// What it added to the blob table (its own blob, dictionary blobs).
    added: &'a [BlobInfo],
    report: &'a LayerReport,
}

/// Keep a converted layer in the cache (its `entries` lent for the record's writing). The
/// output does not depend on it: a failure is a warning.
fn keep_in_cache(
    cache: &LayerCache,
    kept: Kept<'_>,
    entries: &mut PackedEntries,
    layout: &LayoutWriter,
) {
    let blob = &kept.report.blob;
    let record = CachedLayer {
        key: kept.key.0,
        depth: u32::try_from(kept.depth).unwrap_or(u32::MAX),
        diff_id: kept.layer.diff_id.to_string(),
        source_digest: kept.layer.digest.to_string(),
        source_uncompressed_size: kept.uncompressed_size,
        table_base: kept.table_base as u64,
        blob_base: u32::try_from(kept.blob_base).unwrap_or(u32::MAX),
        chunks: (kept.table_base..kept.table.len())
            .map(|i| kept.table.get(i as ChunkIndex))
            .collect(),
        entries: std::mem::take(entries),
        info: kept.info.clone(),
        added: kept.added.to_vec(),
        blob_digest: blob.digest.clone(),
        blob_size: blob.size,
        chunk_data_size: blob.chunk_data_size,
        file_bytes: blob.file_bytes,
        dedup_hits: blob.dedup_hits,
        dict_hits: blob.dict_hits,
    };
    let stored = StoredBlob {
        digest: blob.digest.clone(),
        size: blob.size,
    };
    if let Err(e) = cache.store(&record, &layout.blob_path(&stored)) {
        crate::common::error::warn(format!(
            "{}: not kept in the layer cache: {e}",
            kept.layer.label()
        ));
    }
    *entries = record.entries;
}

#[cfg(test)]
mod tests {
    use super::default_tag;

    #[test]
    fn the_default_tag_is_the_tag_of_the_first_name() {
        let tag =
            |names: &[&str]| default_tag(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        assert_eq!(tag(&[]), "latest");
        assert_eq!(tag(&["latest"]), "latest");
        assert_eq!(tag(&["1.0", "docker.io/library/tool:1.0"]), "1.0");
        assert_eq!(tag(&["app:v2"]), "v2");
        assert_eq!(tag(&["docker.io/library/app:3.19"]), "3.19");
        assert_eq!(tag(&["localhost:5000/app:v1"]), "v1");
        assert_eq!(tag(&["localhost:5000/app"]), "latest");
        assert_eq!(tag(&["docker.io/library/app@sha256:abcd"]), "latest");
        assert_eq!(tag(&["app:v1@sha256:abcd"]), "v1");
    }
}
