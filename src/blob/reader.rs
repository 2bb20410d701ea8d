//! The one Nydus data blob reader, reading from the blob's end as nydus-snapshotter does: the
//! TOC and its tar header, each TOC section decompressed and held to its digest, the ci header
//! and ci table a blob table entry points at, and each chunk decompressed. `check` judges what
//! it returns; `inspect` and `unpack` use it to show and rebuild an image.
//!
//! A blob is untrusted: every offset and size it or its bootstrap records is held to the
//! file's length (and a section to [`SECTION_LIMIT`]) before anything is read or allocated.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::cipher::BlobCipher;
use super::compress::decompress;
use crate::common::error::Error;
use crate::common::hex::hex;
use crate::ondisk::blob::*;
use crate::ondisk::rafs_v6::{CIPHER_AES128_XTS, RAFS_V6_MAX_CI_INDEX, RafsV6Blob};

/// A blob's TOC and its tar header must fit the last 4096 bytes, where readers look for them.
pub const TOC_LIMIT: u64 = 4096;
/// Largest section read whole (ci table, digests, bootstrap, one chunk): readers refuse more.
pub const SECTION_LIMIT: u64 = 1 << 30;

/// Most chunks one blob can hold: ci indexes have 24 bits.
pub const MAX_CHUNKS: u64 = RAFS_V6_MAX_CI_INDEX as u64 + 1;

/// The most bytes the TOC section `name` can hold decompressed: the ci header is 4096 bytes,
/// the ci table and the chunk digests hold at most [`MAX_CHUNKS`] entries, anything else
/// (the inlined bootstrap) [`SECTION_LIMIT`]. Held before anything is decompressed.
pub fn section_limit(name: &str) -> u64 {
    match name {
        TOC_ENTRY_BLOB_META_HEADER => BlobCompressionContextHeader::SIZE as u64,
        TOC_ENTRY_BLOB_META => MAX_CHUNKS * BlobChunkInfoV2Ondisk::SIZE as u64 + BATCHES_LIMIT,
        TOC_ENTRY_BLOB_DIGEST => MAX_CHUNKS * 32,
        _ => SECTION_LIMIT,
    }
}

/// Most bytes of batch contexts a ci table may end with: one batch per chunk.
const BATCHES_LIMIT: u64 = MAX_CHUNKS * BatchInflateContext::SIZE as u64;

/// A blob's ci table as readers use it: what each chunk's entry says, whatever the format, and
/// for a batch blob, every batch's context.
#[derive(Clone, Debug, Default)]
pub struct CiTable {
    pub entries: Vec<ChunkCi>,
    pub batches: Vec<BatchInflateContext>,
}

/// The last batch a reader decompressed, kept for its next members (a batch holds many).
#[derive(Debug, Default)]
pub struct BatchCache {
    batch: Option<u32>,
    bytes: Vec<u8>,
}

/// Why something could not be read: the file failed (`Io`), or the blob is not what it claims
/// (`Bad`, a sentence for the caller to name the blob in).
#[derive(Debug)]
pub enum BlobError {
    Io(Error),
    Bad(String),
}

impl From<String> for BlobError {
    fn from(problem: String) -> Self {
        BlobError::Bad(problem)
    }
}

impl From<&str> for BlobError {
    fn from(problem: &str) -> Self {
        BlobError::Bad(problem.to_string())
    }
}

/// What the reader returns.
pub type Read<T> = std::result::Result<T, BlobError>;

/// The TOC at a blob's end.
#[derive(Debug)]
pub struct Toc {
    /// Where the TOC starts: every section lies before it.
    pub at: u64,
    /// The TOC's raw bytes and its tar header's (their sha256 is the blob table's
    /// `blob_toc_digest`).
    pub bytes: Vec<u8>,
    pub header_bytes: Vec<u8>,
    /// Each 128-byte entry, decoded, or why not.
    pub entries: Vec<std::result::Result<TocEntry, String>>,
}

impl Toc {
    /// The entry named `name`.
    pub fn entry(&self, name: &str) -> Option<&TocEntry> {
        self.entries
            .iter()
            .flatten()
            .find(|e| e.name().ok() == Some(name))
    }
}

/// A blob file opened for positional reads.
pub struct BlobReader {
    path: PathBuf,
    file: File,
    /// Where the blob starts in the file (an archive member is a range of the archive).
    base: u64,
    len: u64,
}

impl BlobReader {
    /// Open the blob at `path`.
    pub fn open(path: &Path) -> crate::common::error::Result<BlobReader> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        Ok(BlobReader {
            path: path.to_path_buf(),
            file,
            base: 0,
            len,
        })
    }

    /// Open the blob that is the `len` bytes at `offset` of the file at `path` (a member of an
    /// uncompressed archive).
    pub fn open_range(
        path: &Path,
        offset: u64,
        len: u64,
    ) -> crate::common::error::Result<BlobReader> {
        let mut blob = BlobReader::open(path)?;
        if offset.checked_add(len).is_none_or(|end| end > blob.len) {
            return Err(Error::bad_input(
                path.display(),
                format!("holds no {len} bytes at {offset}"),
            ));
        }
        blob.base = offset;
        blob.len = len;
        Ok(blob)
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `offset..offset + len` lies inside the file and is small enough to read whole.
    pub fn holds(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len) && len <= SECTION_LIMIT
    }

    /// `len` bytes at `offset`.
    pub fn read(&self, offset: u64, len: u64) -> Read<Vec<u8>> {
        if !self.holds(offset, len) {
            return Err(format!("{offset}+{len} lies past the end ({} bytes)", self.len).into());
        }
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, self.base + offset)
            .map_err(|e| BlobError::Io(Error::io(&self.path, e)))?;
        Ok(buf)
    }

    /// The sha256 of `offset..offset + len`, streamed (chunk data may be gigabytes). The range
    /// is cut at the file's end.
    pub fn sha256(&self, offset: u64, len: u64) -> Read<[u8; 32]> {
        let mut h = Sha256::new();
        let mut pos = offset;
        let end = offset.saturating_add(len).min(self.len);
        while pos < end {
            let n = (1 << 20).min(end - pos);
            h.update(self.read(pos, n)?);
            pos += n;
        }
        Ok(h.finalize().into())
    }

    /// The tar header at `at`.
    pub fn tar_header(&self, at: u64) -> Read<BlobTarHeader> {
        let bytes = self.read(at, BlobTarHeader::SIZE as u64)?;
        BlobTarHeader::decode(&bytes).map_err(|e| BlobError::Bad(e.to_string()))
    }

    /// The TOC: the last tar header names it, its entries precede it.
    pub fn toc(&self) -> Read<Toc> {
        let header_size = BlobTarHeader::SIZE as u64;
        if self.len < header_size {
            return Err(format!("is {} bytes, too short for a TOC", self.len).into());
        }
        let header_at = self.len - header_size;
        let header_bytes = self.read(header_at, header_size)?;
        let header = BlobTarHeader::decode(&header_bytes).map_err(|e| e.to_string())?;
        if header.section_name().ok() != Some(TOC_ENTRY_BLOB_TOC) {
            return Err(format!("the last tar header is not {TOC_ENTRY_BLOB_TOC}").into());
        }
        let size = header.section_size().unwrap_or(u64::MAX);
        if !size.is_multiple_of(TocEntry::SIZE as u64)
            || size > header_at
            || size + header_size > TOC_LIMIT
        {
            return Err(format!(
                "TOC size {size} is not a multiple of 128 bytes that fits the last 4096 bytes"
            )
            .into());
        }
        let at = header_at - size;
        let bytes = self.read(at, size)?;
        let entries = bytes
            .chunks_exact(TocEntry::SIZE)
            .map(|raw| TocEntry::decode(raw).map_err(|e| e.to_string()))
            .collect();
        Ok(Toc {
            at,
            bytes,
            header_bytes,
            entries,
        })
    }

    /// The content of TOC entry `entry`, decompressed and held to its digest. `toc_at` is where
    /// the TOC starts (every section ends before it).
    pub fn section(&self, entry: &TocEntry, toc_at: u64) -> Read<Vec<u8>> {
        self.section_sealed(entry, toc_at, None)
    }

    /// [`section`](Self::section) of a section stored encrypted with `cipher` (an encrypted
    /// blob's ci table and header; the TOC's digest is of the plain bytes).
    pub fn section_sealed(
        &self,
        entry: &TocEntry,
        toc_at: u64,
        cipher: Option<&BlobCipher>,
    ) -> Read<Vec<u8>> {
        let (offset, csize, size) = (
            entry.compressed_offset,
            entry.compressed_size,
            entry.uncompressed_size,
        );
        if offset.checked_add(csize).is_none_or(|end| end > toc_at) {
            return Err(format!("range {offset}+{csize} runs past the TOC at {toc_at}").into());
        }
        let algo = toc_compressor(entry.flags)
            .ok_or_else(|| format!("flags {:#x} name no compressor", entry.flags))?;
        let limit = section_limit(entry.name().unwrap_or_default());
        if size > limit || !self.holds(offset, csize) {
            return Err(format!("is {size} bytes, more than a reader accepts ({limit})").into());
        }
        let stored = open_sealed(cipher, self.read(offset, csize)?)?;
        let content = decompress(algo, &stored, size as usize)
            .map_err(|e| format!("cannot be decompressed: {e}"))?;
        let actual: [u8; 32] = Sha256::digest(&content).into();
        if actual != entry.uncompressed_digest {
            return Err(format!(
                "content has sha256 {}, the TOC records {}",
                hex(&actual),
                hex(&entry.uncompressed_digest)
            )
            .into());
        }
        Ok(content)
    }

    /// The ci header a blob table entry points at (right after the ci table).
    pub fn ci_header(&self, entry: &RafsV6Blob) -> Read<BlobCompressionContextHeader> {
        let at = entry.ci_offset.saturating_add(entry.ci_compressed_size);
        let hsize = BlobCompressionContextHeader::SIZE as u64;
        if !self.holds(at, hsize) || !self.holds(entry.ci_offset, entry.ci_compressed_size) {
            return Err(format!(
                "the ci table and header the blob table points at ({} + {} + 4096) lie past the end",
                entry.ci_offset, entry.ci_compressed_size
            )
            .into());
        }
        let header = open_sealed(cipher_of(entry)?.as_ref(), self.read(at, hsize)?)?;
        BlobCompressionContextHeader::decode(&header)
            .map_err(|e| BlobError::Bad(format!("ci header: {e}")))
    }

    /// The raw (decompressed) ci data a blob table entry points at.
    pub fn ci_bytes(&self, entry: &RafsV6Blob) -> Read<Vec<u8>> {
        let batches = if entry.features & BLOB_FEATURE_BATCH != 0 {
            self.ci_header(entry)?.s_ci_zran_count
        } else {
            0
        };
        let expected = ci_size(entry, batches);
        if entry.ci_uncompressed_size != expected || expected > SECTION_LIMIT {
            return Err(format!(
                "ci_uncompressed_size {} is not what {} chunks and {batches} batches take ({expected})",
                entry.ci_uncompressed_size, entry.chunk_count
            )
            .into());
        }
        let stored = self.read(entry.ci_offset, entry.ci_compressed_size)?;
        let stored = open_sealed(cipher_of(entry)?.as_ref(), stored)?;
        decompress(entry.ci_compressor, &stored, expected as usize)
            .map_err(|e| format!("ci table cannot be decompressed: {e}").into())
    }

    /// The ci table a blob table entry points at, decoded.
    pub fn ci_table(&self, entry: &RafsV6Blob) -> Read<CiTable> {
        Ok(decode_ci(entry, &self.ci_bytes(entry)?)?)
    }

    /// The bytes of the chunk `ci` describes, decompressed with `compressor` (the blob table
    /// entry's) when the chunk is stored compressed. A batch member is cut out of its batch
    /// (`table`'s context), which `cache` keeps for the next members.
    pub fn chunk(
        &self,
        ci: &ChunkCi,
        table: &CiTable,
        entry: &RafsV6Blob,
        cache: &mut BatchCache,
    ) -> Read<Vec<u8>> {
        let compressor = entry.compression_algo;
        let cipher = if ci.encrypted {
            Some(cipher_of(entry)?.ok_or("is encrypted, but its blob has no key")?)
        } else {
            None
        };
        // The size is the blob's word: a chunk is never larger than the largest chunk size,
        // and nothing is allocated for more.
        if ci.uncompressed_size > BLOB_CHUNK_MAX_SIZE {
            return Err(
                format!("is {} bytes, more than a chunk holds", ci.uncompressed_size).into(),
            );
        }
        let Some(batch) = ci.batch else {
            let stored = self.read(ci.compressed_offset, u64::from(ci.compressed_size))?;
            let stored = open_sealed(cipher.as_ref(), stored)?;
            let algo = if ci.compressed {
                compressor
            } else {
                COMPRESSOR_NONE
            };
            return decompress(algo, &stored, ci.uncompressed_size as usize)
                .map_err(|e| format!("cannot be decompressed: {e}").into());
        };
        if cache.batch != Some(batch.index) {
            cache.batch = None;
            let sealed = cipher.as_ref();
            cache.bytes =
                self.batch(ci.compressed_offset, batch.index, table, compressor, sealed)?;
            cache.batch = Some(batch.index);
        }
        let start = batch.offset as usize;
        cache
            .bytes
            .get(start..start + ci.uncompressed_size as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                format!(
                    "lies at {start} (+{}) in batch {}, which holds {} bytes",
                    ci.uncompressed_size,
                    batch.index,
                    cache.bytes.len()
                )
                .into()
            })
    }

    /// The uncompressed bytes of batch `index`, stored at `offset`.
    fn batch(
        &self,
        offset: u64,
        index: u32,
        table: &CiTable,
        compressor: u32,
        cipher: Option<&BlobCipher>,
    ) -> Read<Vec<u8>> {
        let context = table
            .batches
            .get(index as usize)
            .ok_or_else(|| format!("names batch {index}, the blob has {}", table.batches.len()))?;
        let (csize, usize) = (context.compressed_size, context.uncompressed_batch_size);
        if usize > BLOB_CHUNK_MAX_SIZE || csize == 0 || csize > usize {
            return Err(
                format!("batch {index}: sizes {csize} and {usize} cannot be a batch").into(),
            );
        }
        let stored = open_sealed(cipher, self.read(offset, u64::from(csize))?)?;
        let algo = if csize == usize {
            COMPRESSOR_NONE
        } else {
            compressor
        };
        decompress(algo, &stored, usize as usize)
            .map_err(|e| format!("batch {index} cannot be decompressed: {e}").into())
    }
}

/// The cipher of an encrypted blob, from its blob table entry; `None` for a plain one.
pub fn cipher_of(entry: &RafsV6Blob) -> Result<Option<BlobCipher>, String> {
    if entry.features & BLOB_FEATURE_ENCRYPTED == 0 {
        return Ok(None);
    }
    if entry.cipher_algo != CIPHER_AES128_XTS {
        return Err(format!(
            "is encrypted with cipher {}, not AES-128-XTS (1)",
            entry.cipher_algo
        ));
    }
    let mut iv = [0; 16];
    iv[..8].copy_from_slice(&entry.blob_meta_size.to_le_bytes());
    iv[8..].copy_from_slice(&entry.cipher_iv);
    Ok(Some(BlobCipher::new(entry.blob_meta_digest, iv)))
}

/// `stored` decrypted with `cipher`, or as it is without one.
fn open_sealed(cipher: Option<&BlobCipher>, stored: Vec<u8>) -> Result<Vec<u8>, String> {
    match cipher {
        Some(c) => c
            .decrypt(&stored)
            .map_err(|e| format!("cannot be decrypted: {e}")),
        None => Ok(stored),
    }
}

/// Bytes of the ci data of a blob of this entry's chunks, with `batches` batch contexts: V1
/// entries, or V2 entries and the contexts.
pub fn ci_size(entry: &RafsV6Blob, batches: u32) -> u64 {
    let chunks = u64::from(entry.chunk_count);
    if entry.features & BLOB_FEATURE_CHUNK_INFO_V2 != 0 {
        chunks * BlobChunkInfoV2Ondisk::SIZE as u64
            + u64::from(batches) * BatchInflateContext::SIZE as u64
    } else {
        chunks * BlobChunkInfoV1Ondisk::SIZE as u64
    }
}

/// The ci data `bytes` (of [`ci_size`]) of a blob with `entry`'s features, decoded.
pub fn decode_ci(entry: &RafsV6Blob, bytes: &[u8]) -> Result<CiTable, String> {
    let chunks = entry.chunk_count as usize;
    if entry.features & BLOB_FEATURE_CHUNK_INFO_V2 == 0 {
        let entries = bytes
            .chunks_exact(BlobChunkInfoV1Ondisk::SIZE)
            .map(|c| {
                BlobChunkInfoV1Ondisk::decode(c)
                    .map(|v1| ChunkCi::from(&v1))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        return Ok(CiTable {
            entries,
            batches: Vec::new(),
        });
    }
    let split = (chunks * BlobChunkInfoV2Ondisk::SIZE).min(bytes.len());
    let (entries, contexts) = bytes.split_at(split);
    Ok(CiTable {
        entries: entries
            .chunks_exact(BlobChunkInfoV2Ondisk::SIZE)
            .map(|c| {
                BlobChunkInfoV2Ondisk::decode(c)
                    .and_then(|v2| v2.ci())
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?,
        batches: contexts
            .chunks_exact(BatchInflateContext::SIZE)
            .map(|c| BatchInflateContext::decode(c).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?,
    })
}

/// The compressor id a TOC entry's flags name.
pub fn toc_compressor(flags: u32) -> Option<u32> {
    match flags {
        TOC_FLAG_COMPRESSION_NONE => Some(COMPRESSOR_NONE),
        TOC_FLAG_COMPRESSION_ZSTD => Some(COMPRESSOR_ZSTD),
        TOC_FLAG_COMPRESSION_LZ4_BLOCK => Some(COMPRESSOR_LZ4_BLOCK),
        _ => None,
    }
}

/// The digest nydus keeps for a chunk: blake3 or sha256 of its uncompressed bytes.
pub fn chunk_digest(digester: u32, data: &[u8]) -> [u8; 32] {
    if digester == DIGESTER_SHA256 {
        Sha256::digest(data).into()
    } else {
        *blake3::hash(data).as_bytes()
    }
}
