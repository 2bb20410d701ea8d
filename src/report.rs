//! The report of a conversion: what `convert --json` and `--report` print, and what progress
//! shows as each layer ends. Its schema lives here, apart from the conversion itself, so that
//! the progress display and the tests read it without depending on `convert`.

use serde::Serialize;

use crate::source::Platform;

/// What was written: the report `--json` and `--report` print.
///
/// Everything but the `timing` fields is determined by the input and the options: two runs give
/// the same report once `timing` is removed. Times are only ever reported here, never written
/// into the image.
#[derive(Clone, Debug, Serialize)]
pub struct ConvertSummary {
    /// The digest `index.json` names under the tag: the image index when there is one, else the
    /// manifest.
    pub digest: String,
    /// `index` or `manifest`: what [`digest`](Self::digest) names.
    pub digest_names: &'static str,
    pub tag: String,
    /// The output options every blob and bootstrap of the run was written with.
    pub options: OutputOptions,
    /// With `--all-images`, one entry per image written (its tags, what they name, its
    /// platforms), in the input's order; `digest` and `tag` above are the first's. Empty (and
    /// left out) otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageSummary>,
    /// One entry per platform, in the index's order (with `--all-images`, image after image).
    pub platforms: Vec<PlatformSummary>,
    /// Sums over every layer converted (a layer shared between platforms counted once).
    pub totals: Totals,
    pub timing: RunTiming,
}

/// What a run wrote its images with (`--fs-version`, `--chunk-size`, `--compressor`,
/// `--digester`, `--batch-size`, `--encrypt`, `--chunk-dict`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct OutputOptions {
    /// RAFS version: 5 or 6 (0 when nothing was written).
    pub fs_version: u32,
    pub chunk_size: u32,
    /// nydus-image's spelling: `none`, `lz4_block`, `zstd`.
    pub compressor: &'static str,
    /// `blake3` or `sha256`.
    pub digester: &'static str,
    /// 0: no batches.
    pub batch_size: u32,
    pub encrypt: bool,
    /// The chunk dictionary given, as given.
    pub chunk_dict: Option<String>,
}

impl ConvertSummary {
    /// The summary of a run with no image to convert (a `--shard` that holds none): nothing
    /// was written.
    pub fn nothing(start: std::time::Instant) -> ConvertSummary {
        ConvertSummary {
            digest: String::new(),
            digest_names: "nothing",
            tag: String::new(),
            options: OutputOptions::default(),
            images: Vec::new(),
            platforms: Vec::new(),
            totals: Totals::default(),
            timing: RunTiming {
                seconds: start.elapsed().as_secs_f64(),
                peak_rss_bytes: peak_rss_bytes(),
            },
        }
    }
}

/// One image written by `--all-images`.
#[derive(Clone, Debug, Serialize)]
pub struct ImageSummary {
    pub tags: Vec<String>,
    /// What the tags name: the image index when there is one, else the manifest.
    pub digest: String,
    /// `index` or `manifest`.
    pub digest_names: &'static str,
    /// Its platforms, as in `platforms`.
    pub platforms: Vec<String>,
}

/// Sums over layers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub layers: usize,
    /// Stored bytes of the source layers, and their uncompressed (tar) bytes.
    pub source_size: u64,
    pub source_uncompressed_size: u64,
    /// Bytes of the Nydus data blobs.
    pub blob_size: u64,
    /// Chunks stored, and chunks found already stored.
    pub chunks: u64,
    pub dedup_hits: u64,
    /// Of `dedup_hits`, chunks found in the chunk dictionary (`--chunk-dict`).
    pub dict_hits: u64,
    pub dedup_ratio: f64,
}

impl Totals {
    pub(crate) fn add(&mut self, layer: &LayerReport) {
        self.layers += 1;
        self.source_size += layer.source.size;
        self.source_uncompressed_size += layer.source.uncompressed_size;
        self.blob_size += layer.blob.size;
        self.chunks += layer.blob.chunks;
        self.dedup_hits += layer.blob.dedup_hits;
        self.dict_hits += layer.blob.dict_hits;
        self.dedup_ratio = ratio(self.dedup_hits, self.chunks);
    }
}

/// The share of chunk references that found their chunk already stored:
/// `hits / (stored + hits)`, 0 without chunks.
pub(crate) fn ratio(hits: u64, stored: u64) -> f64 {
    if hits + stored == 0 {
        0.0
    } else {
        hits as f64 / (hits + stored) as f64
    }
}

/// How long the run took and the most memory it held.
#[derive(Clone, Debug, Serialize)]
pub struct RunTiming {
    pub seconds: f64,
    /// Peak resident set size of the process (`getrusage` `ru_maxrss`).
    pub peak_rss_bytes: u64,
}

/// One converted platform.
#[derive(Clone, Debug, Serialize)]
pub struct PlatformSummary {
    #[serde(serialize_with = "display")]
    pub platform: Platform,
    pub manifest: BlobRef,
    pub config: BlobRef,
    /// The bootstrap layer (the merged RAFS v6 bootstrap, in a gzip tar).
    pub bootstrap: BlobRef,
    /// The platform's layers, bottom first.
    pub layers: Vec<LayerReport>,
    /// How many of its layers reused the blobs of an earlier platform.
    pub shared_layers: usize,
    /// Sums over `layers` (shared layers included).
    pub totals: Totals,
}

/// A blob of the output: digest and size.
#[derive(Clone, Debug, Serialize)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
}

/// One converted layer.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub source: SourceLayer,
    pub blob: BlobReport,
    /// Converted for an earlier platform (same layer over the same lower layers) and reused.
    pub shared: bool,
    /// With `--cache`: whether the layer was taken from the cache (`hit`) or converted (`miss`,
    /// and kept there); left out without a cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheUse>,
    pub timing: LayerTiming,
}

/// How a layer used the cache of converted layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheUse {
    Hit,
    Miss,
}

/// The source layer as read and verified.
#[derive(Clone, Debug, Serialize)]
pub struct SourceLayer {
    pub digest: String,
    pub diff_id: String,
    /// Stored (compressed) bytes, and bytes of the uncompressed tar.
    pub size: u64,
    pub uncompressed_size: u64,
}

/// The layer's Nydus data blob.
#[derive(Clone, Debug, Serialize)]
pub struct BlobReport {
    pub digest: String,
    /// Bytes of the whole blob: chunk data, chunk table, digests, the layer's bootstrap, TOC.
    pub size: u64,
    /// Bytes of the chunk data (the `image.blob` section), chunks compressed where that helped.
    pub chunk_data_size: u64,
    /// Size of the stored chunks uncompressed, each from a 4 KiB boundary (the blob table's
    /// uncompressed size).
    pub uncompressed_size: u64,
    /// Bytes of file content in the layer, stored or found already stored.
    pub file_bytes: u64,
    /// Chunks stored in this blob.
    pub chunks: u64,
    /// Chunks of the layer's files already stored (in this blob, a lower one or the chunk
    /// dictionary), not stored again.
    pub dedup_hits: u64,
    /// Of `dedup_hits`, chunks found in the chunk dictionary (`--chunk-dict`).
    pub dict_hits: u64,
    /// `dedup_hits / (chunks + dedup_hits)`.
    pub dedup_ratio: f64,
}

/// How long a layer took: read, chunk, compress, write its blob and its own bootstrap.
#[derive(Clone, Debug, Serialize)]
pub struct LayerTiming {
    pub seconds: f64,
}

/// Serialize with `Display`.
fn display<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Peak resident set size of this process so far, in bytes (0 if unknown).
pub fn peak_rss_bytes() -> u64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    // Linux reports KiB.
    (usage.ru_maxrss.max(0) as u64) * 1024
}
