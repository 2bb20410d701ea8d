//! The Nydus data blob of one layer, written the way nydus-snapshotter's converter has
//! nydus-image 2.2.0 write it (`create --type tar-rafs --blob-inline-meta --features blob-toc`,
//! `docs/format.md` §2.1):
//!
//! ```text
//! chunks | T(image.blob) | ci table | ci header | T(blob.meta) | chunk digests | T(blob.digest)
//!        | zstd(bootstrap) | T(image.boot) | TOC entries | T(rafs.blob.toc)
//! ```
//!
//! `T(x)` is the 512-byte reverse tar header that follows section `x`. The blob is written
//! front to back in three steps, because the layer's bootstrap can only be built once the
//! chunks are known and its blob table needs the ci table's place:
//!
//! 1. [`ChunkSink::file`] for every regular file of the layer, in tar order: cut into chunks,
//!    deduplicated against every chunk of the image so far, compressed and appended;
//! 2. [`BlobWriter::finish_data`]: the ci table, its header and the chunk digests; returns the
//!    [`BlobInfo`] the bootstrap writers put in their blob tables;
//! 3. [`BlobWriter::finish`]: the layer's own bootstrap and the TOC.
//!
//! With RAFS v5 (`FsVersion::V5`) the blob is what `nydus-image create --fs-version 5
//! --blob-inline-meta` writes: `chunks | T(image.blob) | bootstrap | T(image.boot)`, the
//! bootstrap raw; no ci table, chunk digests or TOC (v5 readers find chunks through the
//! bootstrap's chunk records), and uncompressed chunks laid end to end instead of 4 KiB-aligned.
//!
//! A layer that stores no new chunk (only directories, empty files, or content already stored
//! by a lower layer) gets only the last two sections, `zstd(bootstrap) | T(image.boot) | TOC |
//! T(rafs.blob.toc)`, as nydus-image 2.2.0 writes it (verified); its [`BlobInfo`] has
//! `chunk_count` 0 and such a blob must be left out of every blob table (nydus readers reject
//! blob table entries without chunks).

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::chunk::{
    BlobInfo, BlobOptions, ChunkInfo, ChunkTable, CipherKey, Compressor, FsVersion,
};
use super::cipher::BlobCipher;
use super::compress::PieceCompressor;
use super::dict::ChunkDict;
use super::pipeline::{BATCH_BYTES, Batch, Item, Workers};
use crate::blob::chunk::INLINED_BLOB_ID_PLACEHOLDER;
use crate::blob::chunk::{ChunkIndex, FileData};
use crate::blob::sink::ChunkSink;
use crate::common::digest::from_io;
use crate::common::error::{Error, ErrorKind, Result};
use crate::common::path::ImagePath;
use crate::ondisk::blob::{
    BLOB_CHUNK_MAX_SIZE, BLOB_FEATURE_ALIGNED, BLOB_FEATURE_CAP_TAR_TOC,
    BLOB_FEATURE_HAS_TAR_HEADER, BLOB_FEATURE_HAS_TOC, BLOB_FEATURE_INLINED_CHUNK_DIGEST,
    BLOB_FEATURE_INLINED_FS_META, BlobChunkInfoV1Ondisk, BlobCompressionContextHeader,
    BlobTarHeader, COMPRESSOR_NONE, COMPRESSOR_ZSTD, TOC_ENTRY_BLOB_DIGEST, TOC_ENTRY_BLOB_META,
    TOC_ENTRY_BLOB_META_HEADER, TOC_ENTRY_BLOB_RAW, TOC_ENTRY_BLOB_TOC, TOC_ENTRY_BOOTSTRAP,
    TOC_FLAG_COMPRESSION_NONE, TOC_FLAG_COMPRESSION_ZSTD, TocEntry,
};
use crate::ondisk::blob::{
    BLOB_FEATURE_BATCH, BLOB_FEATURE_CHUNK_INFO_V2, BLOB_FEATURE_ENCRYPTED, BatchInflateContext,
    BatchRef, BlobChunkInfoV2Ondisk, ChunkCi,
};

/// Features of every blob this writer produces, with or without chunks: 4 KiB-aligned
/// uncompressed chunks, bootstrap inlined, reverse tar headers, TOC, "built by ≥ 2.2".
const FEATURES_ALWAYS: u32 = BLOB_FEATURE_ALIGNED
    | BLOB_FEATURE_INLINED_FS_META
    | BLOB_FEATURE_HAS_TAR_HEADER
    | BLOB_FEATURE_HAS_TOC
    | BLOB_FEATURE_CAP_TAR_TOC;

/// Features of a blob with at least one chunk: the above plus the `blob.digest` section
/// (`0x7000_0023`, what nydus-image 2.2.0 writes into the ci header and the layer's bootstrap).
pub const LAYER_BLOB_FEATURES: u32 = FEATURES_ALWAYS | BLOB_FEATURE_INLINED_CHUNK_DIGEST;

/// Most chunks one blob may hold: RAFS v6 chunk ids are 24 bits and nydus-image 2.2.0 hands
/// out ci indexes up to `0xff_fffe` (`BlobContext::alloc_chunk_index`); a V1 ci table of that
/// many entries stays under nydusd's 256 MiB limit.
pub const MAX_CHUNKS_PER_BLOB: u32 = 0xff_ffff;

/// Bytes XTS encrypts without padding.
const XTS_UNIT: usize = 16;

/// Uncompressed chunks start on 4 KiB boundaries (RAFS v6, `ALIGNED`).
const UNCOMPRESSED_ALIGNMENT: u64 = 4096;

/// Features of a RAFS v5 layer blob with chunks, in its own bootstrap: bootstrap inlined after
/// reverse tar headers, "built by ≥ 2.2" (`0x5000_0002`, as nydus-image 2.2.0 writes it).
pub const V5_LAYER_BLOB_FEATURES: u32 =
    BLOB_FEATURE_INLINED_FS_META | BLOB_FEATURE_HAS_TAR_HEADER | BLOB_FEATURE_CAP_TAR_TOC;

/// The writer of one layer's data blob; see the module documentation for the order of calls.
///
/// It holds the image's [`ChunkTable`] for as long as it lives, so that no other writer can add
/// chunks meanwhile: the chunks of this blob are the table's entries from the moment it was
/// created on. Memory stays at one chunk buffer, one compression buffer and 4 bytes per chunk
/// of each file's chunk list; the ci table (16 bytes per new chunk) is built only in
/// [`finish_data`](BlobWriter::finish_data).
pub struct BlobWriter<'t, W: BlobOut> {
    out: Counted<W>,
    /// Where the blobs this layer adds to the image's blob table start (the lower blobs' count).
    base_index: u32,
    /// The blobs this layer adds, in the order of first use: its own once it stores a chunk,
    /// and each chunk dictionary blob it is the first to refer to.
    added: Vec<AddedBlob>,
    /// The chunk dictionary, with the place each of its blobs has in the image's blob table.
    dict: Option<DictPlaces<'t>>,
    options: BlobOptions,
    table: &'t mut ChunkTable,
    /// Threads digesting and compressing chunks; results come back in reading order.
    workers: Workers,
    /// The batch of chunks being filled by the reading thread.
    batch: Batch,
    /// The chunks this blob stores, in ci-index order (aliases of repeated chunks excluded).
    stored: Vec<ChunkIndex>,
    chunk_count: u32,
    /// End of the last chunk in the 4 KiB-aligned uncompressed space.
    uncompressed_size: u64,
    toc: Vec<TocEntry>,
    /// Set by `finish_data`.
    info: Option<BlobInfo>,
    /// Running counts for whoever watches (progress display); updated once per batch.
    counts: Arc<WriterCounts>,
    /// `--batch-size`: the batch being filled and those written.
    batching: Option<Batching>,
    /// `--encrypt`: the blob's cipher.
    cipher: Option<BlobCipher>,
}

/// Small chunks compressed together (`--batch-size`), as nydus-image 2.4 does it: a new chunk
/// that is its file's only one and smaller than half the batch size joins the current batch
/// (which is written first when the chunk would fill it); any other new chunk writes the
/// current batch before itself. Each member keeps its own 4 KiB-aligned place in the
/// uncompressed space; its ci entry (V2) names the batch and its offset in it.
struct Batching {
    size: u32,
    /// The members' bytes, back to back.
    buf: Vec<u8>,
    /// Where each written batch starts in the blob, and its context.
    written: Vec<(u64, BatchInflateContext)>,
    /// Per stored chunk (ci index): the batch it is in, if any.
    members: Vec<Option<BatchRef>>,
    compressor: PieceCompressor,
}

/// A blob a layer adds to the image's blob table (see [`BlobWriter::added`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddedBlob {
    /// The layer's own blob, once it stores a chunk.
    Own,
    /// The chunk dictionary's blob at this position of its blob table.
    Dict(u32),
}

/// A chunk dictionary and where its blobs are in the image's blob table (`None`: not yet).
#[derive(Debug)]
struct DictPlaces<'d> {
    dict: &'d ChunkDict,
    placed: Vec<Option<u32>>,
}

/// Most blobs one RAFS v6 blob table may hold: chunk indexes give the blob a byte.
pub const MAX_BLOBS: u32 = 256;

/// What a [`BlobWriter`] has done so far, readable from another thread while it works: a
/// progress display polls it. Updated once per batch of chunks (about
/// [`BATCH_BYTES`](super::pipeline::BATCH_BYTES)), with relaxed atomics: cheap, and exact once
/// [`BlobWriter::finish_data`] returned.
#[derive(Debug, Default)]
pub struct WriterCounts {
    /// Chunks stored in the blob.
    pub chunks: AtomicU64,
    /// Chunks found already stored (in this blob, a lower one or the chunk dictionary) and not
    /// stored again.
    pub dedup_hits: AtomicU64,
    /// Of `dedup_hits`, those found in the chunk dictionary.
    pub dict_hits: AtomicU64,
    /// File content bytes cut into chunks, stored or not.
    pub file_bytes: AtomicU64,
    /// Bytes of chunk data written to the blob (compressed where that helped).
    pub stored_bytes: AtomicU64,
}

impl WriterCounts {
    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl<'t, W: BlobOut> BlobWriter<'t, W> {
    /// Starts the blob of a layer whose lower layers' blob table holds `blob_index` blobs,
    /// writing it to `out` from its first byte on (nydus's blob offset 0).
    ///
    /// The blob takes the next place in the blob table when it stores its first chunk (without
    /// a chunk dictionary: place `blob_index`), and that place is recorded in every new
    /// [`ChunkInfo`]. Count only blobs that stored chunks: a blob without chunks is left out of
    /// the blob tables, so the next layer's writer may get the same index again.
    ///
    /// Fails if `options.chunk_size` is not a power of two from 4 KiB to 16 MiB (the CLI
    /// validates it first; here it would be a bug).
    pub fn new(
        out: W,
        blob_index: u32,
        options: BlobOptions,
        table: &'t mut ChunkTable,
    ) -> Result<BlobWriter<'t, W>> {
        let cs = options.chunk_size;
        if !cs.is_power_of_two() || !(0x1000..=BLOB_CHUNK_MAX_SIZE).contains(&cs) {
            return Err(Error::internal(format!(
                "blob writer: chunk size {cs:#x} is not a power of two from 4 KiB to 16 MiB"
            )));
        }
        let bs = options.batch_size;
        if bs != 0 && (!bs.is_power_of_two() || !(0x1000..=cs).contains(&bs)) {
            return Err(Error::internal(format!(
                "blob writer: batch size {bs:#x} is not a power of two from 4 KiB to the chunk size"
            )));
        }
        if options.fs_version == FsVersion::V5 && (bs != 0 || options.encrypt) {
            return Err(Error::internal(
                "blob writer: batch chunks and encryption need RAFS v6",
            ));
        }
        let batching = match bs {
            0 => None,
            size => Some(Batching {
                size,
                buf: Vec::with_capacity(size as usize),
                written: Vec::new(),
                members: Vec::new(),
                compressor: PieceCompressor::new(options.compressor)?,
            }),
        };
        let mut workers = Workers::new(options.jobs, options.digester, options.compressor)?;
        let batch = workers.empty_batch();
        Ok(BlobWriter {
            out: Counted { inner: out, pos: 0 },
            base_index: blob_index,
            added: Vec::new(),
            dict: None,
            options,
            table,
            workers,
            batch,
            stored: Vec::new(),
            chunk_count: 0,
            uncompressed_size: 0,
            toc: Vec::new(),
            info: None,
            counts: Arc::default(),
            batching,
            // Replaced by `with_cipher` with the layer's own; this one keeps a writer made
            // without it from writing plain chunks into a blob called encrypted.
            cipher: options.encrypt.then(|| BlobCipher::derive(&[])),
        })
    }

    /// Refer to the chunks of `dict` instead of storing them. `lower` is the blob table of the
    /// layers below (`blob_index` entries): a dictionary blob already in it keeps its place.
    pub fn with_dict(mut self, dict: &'t ChunkDict, lower: &[BlobInfo]) -> Self {
        let placed = dict
            .blobs()
            .iter()
            .map(|b| lower.iter().position(|l| l.id == b.id).map(|i| i as u32))
            .collect();
        self.dict = Some(DictPlaces { dict, placed });
        self
    }

    /// Encrypt the blob with `cipher` (with `BlobOptions::encrypt`).
    pub fn with_cipher(mut self, cipher: BlobCipher) -> Self {
        if self.options.encrypt {
            self.cipher = Some(cipher);
        }
        self
    }

    /// The blobs this layer adds to the image's blob table, in order, after the lower layers'
    /// (complete once [`finish_data`](Self::finish_data) returned).
    pub fn added(&self) -> &[AddedBlob] {
        &self.added
    }

    /// The place in the image's blob table of the next blob this layer adds.
    fn next_place(&mut self, blob: AddedBlob) -> Result<u32> {
        let place = self.base_index + self.added.len() as u32;
        if place >= MAX_BLOBS {
            return Err(Error::bad_input(
                "image",
                format!("needs more than {MAX_BLOBS} blobs, the most a RAFS v6 blob table holds"),
            ));
        }
        self.added.push(blob);
        Ok(place)
    }

    /// The place of this layer's own blob, taken at its first stored chunk.
    fn own_place(&mut self) -> Result<u32> {
        match self.added.iter().position(|&b| b == AddedBlob::Own) {
            Some(i) => Ok(self.base_index + i as u32),
            None => self.next_place(AddedBlob::Own),
        }
    }

    /// The chunk dictionary's chunk with this content, its blob placed in the image's table.
    fn dict_chunk(&mut self, digest: &[u8; 32], size: u32) -> Result<Option<ChunkInfo>> {
        let Some(found) = self.dict.as_ref().and_then(|d| d.dict.find(digest, size)) else {
            return Ok(None);
        };
        let inner = found.blob_index;
        let place = match self.dict.as_ref().and_then(|d| d.placed[inner as usize]) {
            Some(place) => place,
            None => {
                let place = self.next_place(AddedBlob::Dict(inner))?;
                if let Some(d) = self.dict.as_mut() {
                    d.placed[inner as usize] = Some(place);
                }
                place
            }
        };
        Ok(Some(ChunkInfo {
            blob_index: place,
            ..found
        }))
    }

    /// The image's chunk table as it stands, lower layers' chunks and this blob's so far: what
    /// the layer's own bootstrap, written between [`finish_data`](Self::finish_data) and
    /// [`finish`](Self::finish), resolves its files' chunks in.
    pub fn table(&self) -> &ChunkTable {
        self.table
    }

    /// Number of chunks stored in this blob so far (deduplicated chunks not counted).
    pub fn chunk_count(&self) -> u32 {
        self.chunk_count
    }

    /// The writer's running counts, to watch from another thread.
    pub fn counts(&self) -> Arc<WriterCounts> {
        Arc::clone(&self.counts)
    }

    /// Reads the `len` bytes of the file's chunk at `file_offset` onto the end of the batch.
    fn read_chunk(
        &mut self,
        data: &mut dyn Read,
        len: usize,
        file_offset: u64,
        size: u64,
    ) -> Result<()> {
        let start = self.batch.data.len();
        self.batch.data.resize(start + len, 0);
        let mut filled = 0;
        while filled < len {
            match data.read(&mut self.batch.data[start + filled..]) {
                Ok(0) => {
                    return Err(Error::bad_input(
                        "file content",
                        format!(
                            "truncated: {size} bytes declared, the layer ends after {}",
                            file_offset + filled as u64
                        ),
                    ));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Verification failures of the layer reader travel inside the io::Error.
                Err(e) => return Err(from_io(e, "reading file content")),
            }
        }
        Ok(())
    }

    /// Sends the batch being filled to the workers, then stores every batch that is back, in
    /// order; waits while the workers have as many batches as they may.
    fn submit_batch(&mut self) -> Result<()> {
        if !self.batch.is_empty() {
            let full = std::mem::replace(&mut self.batch, self.workers.empty_batch());
            self.workers.submit(full)?;
        }
        while let Some(done) = self.workers.next_done(false)? {
            self.store_batch(done)?;
        }
        while self.workers.in_flight() >= self.workers.capacity() {
            match self.workers.next_done(true)? {
                Some(done) => self.store_batch(done)?,
                None => break,
            }
        }
        Ok(())
    }

    /// Submits what is left and stores every batch still out.
    fn drain(&mut self) -> Result<()> {
        self.submit_batch()?;
        while let Some(done) = self.workers.next_done(true)? {
            self.store_batch(done)?;
        }
        Ok(())
    }

    /// Stores the chunks of a digested and compressed batch, in order: each one the image does
    /// not have yet is written and described; a repeat becomes an alias of the stored chunk.
    fn store_batch(&mut self, batch: Batch) -> Result<()> {
        let (chunks_before, pos_before) = (self.chunk_count, self.out.pos);
        let (mut hits, mut dict_hits) = (0, 0);
        for item in &batch.items {
            let size = item.len as u32;
            if let Some(existing) = self.table.find(&item.digest, size) {
                let alias = self.table.get(existing).clone();
                self.table.fill(item.index, alias, false);
                hits += 1;
                continue;
            }
            if let Some(chunk) = self.dict_chunk(&item.digest, size)? {
                // Found by content from now on, as if this layer had stored it.
                let chunk = ChunkInfo {
                    file_offset: item.file_offset,
                    ..chunk
                };
                self.table.fill(item.index, chunk, true);
                hits += 1;
                dict_hits += 1;
                continue;
            }
            if self.chunk_count >= MAX_CHUNKS_PER_BLOB {
                return Err(too_many_chunks());
            }
            let data = &batch.data[item.start..item.start + item.len];
            if item.batched {
                self.store_in_batch(item, data)?;
                continue;
            }
            self.write_pending_batch()?;
            if let Some(b) = &mut self.batching {
                b.members.push(None);
            }
            let (stored, compressed) = match item.compressed {
                Some((start, len)) => (&batch.compressed[start..start + len], true),
                None => (data, false),
            };
            let stored = sealed(&self.cipher, stored);
            let compressed_offset = self.out.pos;
            let compressed_size = stored.len() as u32;
            // Checks now, before writing, that the ci entry can describe this chunk (RAFS v5
            // blobs have no ci table: their bootstrap's chunk records hold full offsets).
            if self.options.fs_version == FsVersion::V6 {
                BlobChunkInfoV1Ondisk::new(
                    self.uncompressed_size,
                    size,
                    compressed_offset,
                    compressed_size,
                )?;
            }
            self.out.write(&stored)?;
            self.record_stored(item, (compressed_offset, compressed_size, compressed))?;
        }
        let counts = &self.counts;
        let file_bytes: usize = batch.items.iter().map(|i| i.len).sum();
        counts.chunks.fetch_add(
            u64::from(self.chunk_count - chunks_before),
            Ordering::Relaxed,
        );
        counts.dedup_hits.fetch_add(hits, Ordering::Relaxed);
        counts.dict_hits.fetch_add(dict_hits, Ordering::Relaxed);
        counts
            .file_bytes
            .fetch_add(file_bytes as u64, Ordering::Relaxed);
        counts
            .stored_bytes
            .fetch_add(self.out.pos - pos_before, Ordering::Relaxed);
        self.workers.recycle(batch);
        Ok(())
    }

    /// Whether a chunk of `len` bytes, its file's only one if `whole_file`, goes into a batch
    /// when it is stored (as nydus-image decides: a single-chunk file under half the batch size).
    fn joins_batch(&self, whole_file: bool, len: usize) -> bool {
        // Encrypted, a member must fill an XTS unit (16 bytes) so that a batch is never padded:
        // readers tell a raw batch by its stored size equal to its uncompressed size.
        self.batching.as_ref().is_some_and(|b| {
            whole_file
                && (len as u64) < u64::from(b.size / 2)
                && (self.cipher.is_none() || len >= XTS_UNIT)
        })
    }

    /// Add a new chunk to the current batch (writing that first if the chunk would fill it).
    fn store_in_batch(&mut self, item: &Item, data: &[u8]) -> Result<()> {
        let full = self
            .batching
            .as_ref()
            .is_some_and(|b| b.buf.len() + item.len >= b.size as usize);
        if full {
            self.write_pending_batch()?;
        }
        let b = self.batching.as_mut().expect("batching");
        b.members.push(Some(BatchRef {
            index: b.written.len() as u32,
            offset: b.buf.len() as u32,
        }));
        b.buf.extend_from_slice(data);
        // The bootstrap's chunk record of a batch member has no compressed place of its own:
        // readers find it through the ci table (nydus-image writes 0 and 0 there too).
        self.record_stored(item, (0, 0, false))
    }

    /// Record `item` as the blob's next stored chunk, its bytes at `(compressed offset, size,
    /// compressed)`: its uncompressed range (4 KiB-aligned in RAFS v6, right after the last
    /// one in v5), ci index and table entry.
    fn record_stored(&mut self, item: &Item, place: (u64, u32, bool)) -> Result<()> {
        let (compressed_offset, compressed_size, compressed) = place;
        let size = item.len as u32;
        let uncompressed_offset = self.uncompressed_size;
        self.uncompressed_size += match self.options.fs_version {
            FsVersion::V5 => u64::from(size),
            FsVersion::V6 => u64::from(size).next_multiple_of(UNCOMPRESSED_ALIGNMENT),
        };
        let ci_index = self.chunk_count;
        self.chunk_count += 1;
        let blob_index = self.own_place()?;
        self.table.fill(
            item.index,
            ChunkInfo {
                digest: item.digest,
                blob_index,
                ci_index,
                compressed_offset,
                compressed_size,
                uncompressed_offset,
                uncompressed_size: size,
                compressed,
                file_offset: item.file_offset,
            },
            true,
        );
        self.stored.push(item.index);
        Ok(())
    }

    /// Write the current batch, if it has members: compressed when that makes it smaller
    /// (readers tell by the context's two sizes), else as it is.
    fn write_pending_batch(&mut self) -> Result<()> {
        let Some(b) = self.batching.as_mut() else {
            return Ok(());
        };
        if b.buf.is_empty() {
            return Ok(());
        }
        let start = self.out.pos;
        let stored = match b.compressor.compress(&b.buf)? {
            // Encrypted, a compressed batch under 16 bytes would be padded and could then
            // seem raw (readers compare the stored size with the uncompressed one).
            Some(compressed) if self.cipher.is_none() || compressed.len() >= XTS_UNIT => compressed,
            _ => &b.buf[..],
        };
        let stored = sealed(&self.cipher, stored);
        let context = BatchInflateContext {
            compressed_size: stored.len() as u32,
            uncompressed_batch_size: b.buf.len() as u32,
            ..BatchInflateContext::default()
        };
        self.out.write(&stored)?;
        b.written.push((start, context));
        b.buf.clear();
        self.counts
            .stored_bytes
            .fetch_add(self.out.pos - start, Ordering::Relaxed);
        Ok(())
    }

    /// Ends the chunk data: writes `T(image.blob)`, the ci table (zstd, or raw if that is not
    /// smaller) with its 4096-byte header and `T(blob.meta)`, then the chunk digests and
    /// `T(blob.digest)` (RAFS v5: `T(image.blob)` alone). Returns the blob as the layer's own
    /// (inlined) bootstrap describes it:
    /// id [`INLINED_BLOB_ID_PLACEHOLDER`] (the caller sets the real one, the sha256 of the
    /// finished blob), features [`LAYER_BLOB_FEATURES`], `compressed_size` = the offset where
    /// the bootstrap will start, TOC size 0 (not known inside the bootstrap). For the merged
    /// bootstrap use [`merged_blob_info`].
    ///
    /// Without chunks nothing is written and the result has `chunk_count` 0, no
    /// `INLINED_CHUNK_DIGEST` feature and zero ci fields: leave such a blob out of blob tables.
    ///
    /// Calling it again returns the same value and writes nothing.
    pub fn finish_data(&mut self) -> Result<BlobInfo> {
        if let Some(info) = &self.info {
            return Ok(info.clone());
        }
        self.drain()?;
        let mut info = BlobInfo {
            id: INLINED_BLOB_ID_PLACEHOLDER.to_string(),
            chunk_count: self.chunk_count,
            compressed_size: 0,
            uncompressed_size: self.uncompressed_size,
            features: FEATURES_ALWAYS,
            ci_compressor: COMPRESSOR_NONE,
            ci_offset: 0,
            ci_compressed_size: 0,
            ci_uncompressed_size: 0,
            toc_size: 0,
            toc_digest: [0; 32],
            cipher: None,
        };
        self.write_pending_batch()?;
        if self.options.fs_version == FsVersion::V5 {
            if self.chunk_count > 0 {
                info.features = V5_LAYER_BLOB_FEATURES;
                self.write_chunk_data_header()?;
            }
        } else if self.chunk_count > 0 {
            info.features = LAYER_BLOB_FEATURES;
            if self.batching.is_some() {
                info.features |= BLOB_FEATURE_BATCH | BLOB_FEATURE_CHUNK_INFO_V2;
            }
            if let Some(cipher) = &self.cipher {
                info.features |= BLOB_FEATURE_ENCRYPTED | BLOB_FEATURE_CHUNK_INFO_V2;
                info.cipher = Some(CipherKey {
                    key: cipher.key(),
                    iv: cipher.iv(),
                });
            }
            self.write_chunk_data_header()?;
            self.write_ci(&mut info)?;
            self.write_chunk_digests()?;
        }
        info.compressed_size = self.out.pos;
        self.info = Some(info.clone());
        Ok(info)
    }

    /// `T(image.blob)` and its TOC entry.
    fn write_chunk_data_header(&mut self) -> Result<()> {
        let size = self.out.pos;
        let header = BlobTarHeader::new(TOC_ENTRY_BLOB_RAW, size)?.to_bytes();
        self.out.write(&header)?;
        // The `image.blob` digest of nydus-image 2.2.0: sha256 of the chunk data and this
        // header, i.e. of the blob so far (it starts at offset 0).
        let digest = self.out.inner.sha256_so_far();
        // The "uncompressed size" of this NONE entry is the aligned uncompressed size, as there.
        self.toc.push(TocEntry::new(
            TOC_ENTRY_BLOB_RAW,
            TOC_FLAG_COMPRESSION_NONE,
            digest,
            0,
            size,
            self.uncompressed_size,
        )?);
        Ok(())
    }

    /// The ci table, its header, `T(blob.meta)` and their two TOC entries; fills `info`'s ci
    /// fields.
    fn write_ci(&mut self, info: &mut BlobInfo) -> Result<()> {
        let v2 = info.features & BLOB_FEATURE_CHUNK_INFO_V2 != 0;
        let batches = self.batching.as_ref().map_or(0, |b| b.written.len() as u32);
        let table = if v2 { self.ci_v2()? } else { self.ci_v1()? };
        let batch_offset = match self.batching {
            Some(_) => u64::from(self.chunk_count) * BlobChunkInfoV2Ondisk::SIZE as u64,
            None => 0,
        };
        let mut zstd = PieceCompressor::new(Compressor::Zstd)?;
        let (stored, ci_compressor, toc_flag) = match zstd.compress(&table)? {
            Some(c) => (c, COMPRESSOR_ZSTD, TOC_FLAG_COMPRESSION_ZSTD),
            None => (&table[..], COMPRESSOR_NONE, TOC_FLAG_COMPRESSION_NONE),
        };
        // Encrypted after compression, the header too (readers decrypt both with the blob
        // table's key); the TOC keeps the digests of the plain bytes, as nydus-image's does.
        let stored = sealed(&self.cipher, stored);
        let ci_offset = self.out.pos;
        let ci_compressed_size = stored.len() as u64;
        let header = BlobCompressionContextHeader {
            s_features: info.features,
            s_ci_compressor: ci_compressor,
            s_ci_entries: self.chunk_count,
            s_ci_offset: ci_offset,
            s_ci_compressed_size: ci_compressed_size,
            s_ci_uncompressed_size: table.len() as u64,
            // Batch blobs keep their batch contexts where zran blobs keep theirs.
            s_ci_zran_offset: batch_offset,
            s_ci_zran_size: u64::from(batches) * BatchInflateContext::SIZE as u64,
            s_ci_zran_count: batches,
            ..BlobCompressionContextHeader::default()
        }
        .to_bytes();
        self.out.write(&stored)?;
        self.out.write(&sealed(&self.cipher, &header))?;
        let section = ci_compressed_size + header.len() as u64;
        self.out
            .write(&BlobTarHeader::new(TOC_ENTRY_BLOB_META, section)?.to_bytes())?;
        self.toc.push(TocEntry::new(
            TOC_ENTRY_BLOB_META,
            toc_flag,
            Sha256::digest(&table).into(),
            ci_offset,
            ci_compressed_size,
            table.len() as u64,
        )?);
        self.toc.push(TocEntry::new(
            TOC_ENTRY_BLOB_META_HEADER,
            TOC_FLAG_COMPRESSION_NONE,
            Sha256::digest(header).into(),
            ci_offset + ci_compressed_size,
            header.len() as u64,
            header.len() as u64,
        )?);
        info.ci_compressor = ci_compressor;
        info.ci_offset = ci_offset;
        info.ci_compressed_size = ci_compressed_size;
        info.ci_uncompressed_size = table.len() as u64;
        Ok(())
    }

    /// The V1 ci table: 16 bytes per chunk, in ci-index order.
    fn ci_v1(&self) -> Result<Vec<u8>> {
        let mut table = Vec::with_capacity(self.chunk_count as usize * BlobChunkInfoV1Ondisk::SIZE);
        for index in self.chunks() {
            let c = self.table.get(index);
            let ci = BlobChunkInfoV1Ondisk::new(
                c.uncompressed_offset,
                c.uncompressed_size,
                c.compressed_offset,
                c.compressed_size,
            )?;
            table.extend_from_slice(&ci.to_bytes());
        }
        Ok(table)
    }

    /// The V2 ci data of a batch or encrypted blob: 24 bytes per chunk, then every batch's
    /// context.
    fn ci_v2(&self) -> Result<Vec<u8>> {
        let (written, members): (&[(u64, BatchInflateContext)], &[Option<BatchRef>]) =
            match &self.batching {
                Some(b) => (&b.written, &b.members),
                None => (&[], &[]),
            };
        let encrypted = self.cipher.is_some();
        let mut table = Vec::with_capacity(
            self.chunk_count as usize * BlobChunkInfoV2Ondisk::SIZE
                + written.len() * BatchInflateContext::SIZE,
        );
        for (k, index) in self.chunks().enumerate() {
            let c = self.table.get(index);
            let member = members.get(k).copied().flatten();
            let ci = match member {
                Some(batch) => ChunkCi {
                    compressed_offset: written[batch.index as usize].0,
                    compressed_size: 0,
                    // Members count as compressed whatever their batch became: readers decide
                    // by the batch context's sizes (as for nydus-image's batches).
                    compressed: true,
                    encrypted,
                    batch: Some(batch),
                    uncompressed_offset: c.uncompressed_offset,
                    uncompressed_size: c.uncompressed_size,
                },
                None => ChunkCi {
                    compressed_offset: c.compressed_offset,
                    compressed_size: c.compressed_size,
                    compressed: c.compressed,
                    encrypted,
                    batch: None,
                    uncompressed_offset: c.uncompressed_offset,
                    uncompressed_size: c.uncompressed_size,
                },
            };
            table.extend_from_slice(&BlobChunkInfoV2Ondisk::new(&ci)?.to_bytes());
        }
        for (_, context) in written {
            table.extend_from_slice(&context.to_bytes());
        }
        Ok(table)
    }

    /// The 32-byte digest of every chunk in ci-index order, stored raw, `T(blob.digest)` and
    /// its TOC entry.
    fn write_chunk_digests(&mut self) -> Result<()> {
        let offset = self.out.pos;
        let mut hasher = Sha256::new();
        for i in 0..self.stored.len() {
            let digest = self.table.get(self.stored[i]).digest;
            hasher.update(digest);
            self.out.write(&digest)?;
        }
        let size = self.out.pos - offset;
        self.out
            .write(&BlobTarHeader::new(TOC_ENTRY_BLOB_DIGEST, size)?.to_bytes())?;
        self.toc.push(TocEntry::new(
            TOC_ENTRY_BLOB_DIGEST,
            TOC_FLAG_COMPRESSION_NONE,
            hasher.finalize().into(),
            offset,
            size,
            size,
        )?);
        Ok(())
    }

    /// The table indexes of this blob's chunks, in ci-index order.
    fn chunks(&self) -> impl Iterator<Item = ChunkIndex> + use<'_, 't, W> {
        self.stored.iter().copied()
    }

    /// Ends the blob: `bootstrap` (the layer's own RAFS bootstrap, built with the [`BlobInfo`]
    /// of [`finish_data`](BlobWriter::finish_data)) zstd-compressed (raw if that is not
    /// smaller), `T(image.boot)`, the TOC entries and `T(rafs.blob.toc)` (RAFS v5: the bootstrap
    /// raw and `T(image.boot)`). Flushes and returns the output.
    ///
    /// Fails if `finish_data` was not called: the bootstrap could not have described this blob.
    pub fn finish(mut self, bootstrap: &[u8]) -> Result<W> {
        let Some(info) = &self.info else {
            return Err(Error::internal(
                "blob writer: finish called before finish_data",
            ));
        };
        debug_assert_eq!(info.compressed_size, self.out.pos);
        if self.options.fs_version == FsVersion::V5 {
            self.out.write(bootstrap)?;
            let size = bootstrap.len() as u64;
            self.out
                .write(&BlobTarHeader::new(TOC_ENTRY_BOOTSTRAP, size)?.to_bytes())?;
            self.out.inner.flush().map_err(write_error)?;
            return Ok(self.out.inner);
        }
        let offset = self.out.pos;
        let mut zstd = PieceCompressor::new(Compressor::Zstd)?;
        let (stored, flag) = match zstd.compress(bootstrap)? {
            Some(c) => (c, TOC_FLAG_COMPRESSION_ZSTD),
            None => (bootstrap, TOC_FLAG_COMPRESSION_NONE),
        };
        self.out.write(stored)?;
        let stored_size = stored.len() as u64;
        self.out
            .write(&BlobTarHeader::new(TOC_ENTRY_BOOTSTRAP, stored_size)?.to_bytes())?;
        self.toc.push(TocEntry::new(
            TOC_ENTRY_BOOTSTRAP,
            flag,
            Sha256::digest(bootstrap).into(),
            offset,
            stored_size,
            bootstrap.len() as u64,
        )?);
        for entry in &self.toc {
            self.out.write(&entry.to_bytes())?;
        }
        let toc_size = (self.toc.len() * TocEntry::SIZE) as u64;
        self.out
            .write(&BlobTarHeader::new(TOC_ENTRY_BLOB_TOC, toc_size)?.to_bytes())?;
        self.out.inner.flush().map_err(write_error)?;
        Ok(self.out.inner)
    }
}

impl<W: BlobOut> ChunkSink for BlobWriter<'_, W> {
    /// Cuts the file into `chunk_size` pieces (the last one short), stores each piece the image
    /// does not have yet (same digest and size) and returns the file's chunk list.
    ///
    /// Reads exactly `size` bytes; if `data` ends sooner the error is `BadInput` ("truncated").
    /// Errors of `data` itself keep their message and kind (the layer reader reports failed
    /// digest checks that way).
    fn file(&mut self, _path: &ImagePath, data: &mut dyn Read, size: u64) -> Result<FileData> {
        if self.info.is_some() {
            return Err(Error::internal(
                "blob writer: file content after finish_data",
            ));
        }
        let chunk_size = u64::from(self.options.chunk_size);
        // Never trust `size` for an allocation: a bogus header must fail on reading, not here.
        let expected_chunks = size.div_ceil(chunk_size).min(1024) as usize;
        let mut chunks = Vec::with_capacity(expected_chunks);
        let mut file_offset = 0;
        while file_offset < size {
            let len = chunk_size.min(size - file_offset);
            let start = self.batch.data.len();
            self.read_chunk(data, len as usize, file_offset, size)?;
            // The chunk's place in the table is taken now, in reading order; the workers'
            // digest decides later whether it is stored or an alias of an earlier chunk.
            let index = self.table.reserve();
            self.batch.items.push(Item {
                index,
                file_offset,
                start,
                len: len as usize,
                batched: self.joins_batch(size <= chunk_size, len as usize),
                digest: [0; 32],
                compressed: None,
            });
            chunks.push(index);
            if self.batch.len() >= BATCH_BYTES {
                self.submit_batch()?;
            }
            file_offset += len;
        }
        Ok(FileData { size, chunks })
    }
}

/// `bytes` as stored: encrypted with `cipher` when the blob is encrypted.
fn sealed<'a>(cipher: &Option<BlobCipher>, bytes: &'a [u8]) -> Cow<'a, [u8]> {
    match cipher {
        Some(cipher) => Cow::Owned(cipher.encrypt(bytes)),
        None => Cow::Borrowed(bytes),
    }
}

fn too_many_chunks() -> Error {
    Error::bad_input(
        "layer",
        format!(
            "more than {MAX_CHUNKS_PER_BLOB} distinct chunks in one layer; choose a larger chunk \
             size"
        ),
    )
}

/// The blob table entry of a layer blob in the image's merged bootstrap, from the one
/// [`BlobWriter::finish_data`] returned for the layer's own bootstrap: the real blob id, and
/// `INLINED_FS_META` dropped (`0x7000_0023` becomes `0x7000_0021`), because the merged
/// bootstrap is not inlined in that blob — what `nydus-image merge` 2.2.0 writes
/// (`BlobContext::from`). Everything else stays, as there when merge runs without `--config`:
/// `compressed_size` is still the offset of the inlined bootstrap and the TOC size 0. (With a
/// backend `--config`, merge reads each blob and records its full size and TOC size/digest
/// instead; nydusd needs neither.)
///
/// The blob's ci header keeps `0x7000_0023`. nydusd 2.2.0 compares the two, finds them
/// different, fetches the ci data once more and goes on (it ignores the second result); v2.4
/// no longer compares features. This is exactly the case of nydus's own converter output.
pub fn merged_blob_info(layer: &BlobInfo, blob_id: &str) -> BlobInfo {
    BlobInfo {
        id: blob_id.to_string(),
        features: layer.features & !BLOB_FEATURE_INLINED_FS_META,
        ..layer.clone()
    }
}

/// A writer that knows how many bytes went through it: the current blob offset.
/// Where a blob is written: a writer that can tell the sha256 of every byte given to it so far.
///
/// The TOC's `image.blob` digest hashes a prefix of the blob file, whose sha256 (its OCI digest
/// and blob id) the output file computes anyway; reading the prefix's digest off that running
/// hash saves a second SHA-256 pass over all chunk data (5 % of all CPU on a 2 GiB layer).
pub trait BlobOut: Write {
    /// sha256 of the bytes written so far (the running hash is not disturbed).
    fn sha256_so_far(&self) -> [u8; 32];
}

/// An in-memory blob (tests): hashes what it holds.
impl BlobOut for Vec<u8> {
    fn sha256_so_far(&self) -> [u8; 32] {
        Sha256::digest(self).into()
    }
}

/// Any writer, hashed as it goes: the bootstrap layer's tar on its way into gzip (its diff
/// id), and benchmarks, which write blobs to a sink through this and so pay what the output
/// file pays.
pub struct Hashed<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Hashed<W> {
    pub fn new(inner: W) -> Hashed<W> {
        Hashed {
            inner,
            hasher: Sha256::new(),
        }
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> BlobOut for Hashed<W> {
    fn sha256_so_far(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }
}

struct Counted<W> {
    inner: W,
    pos: u64,
}

impl<W: Write> Counted<W> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner.write_all(bytes).map_err(write_error)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

/// A failed write of the blob; the caller adds which file it was.
fn write_error(err: io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("writing the data blob: {err}"))
}

#[cfg(test)]
mod tests;
