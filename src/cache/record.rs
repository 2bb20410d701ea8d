//! The record of a cache entry: everything a later layer needs of a converted layer, besides its
//! blob, in one small versioned binary file, and the checks that make reading one safe.
//!
//! ```text
//! magic "NYOFLCR\n" · version u32 · fields (little endian; strings and byte runs as u64 length
//! + bytes) · sha256 of everything before it (32 bytes)
//! ```
//!
//! A record is input like any other: the file may be cut short (a full disk, a crash of a
//! machine whose cache is on a network filesystem), flipped (bad media) or written by someone
//! else. The trailing digest catches damage; every length and count is then checked against the
//! bytes that are left before anything is allocated, and what the record says is checked
//! against what the conversion has when the entry is used ([`CachedLayer::fits`]).

use sha2::{Digest, Sha256};

use crate::blob::chunk::{BlobInfo, ChunkInfo, CipherKey};
use crate::tree::PackedEntries;

const MAGIC: &[u8; 8] = b"NYOFLCR\n";
/// Bumped whenever the fields change; a record of another version is a miss.
pub const VERSION: u32 = 2;
/// Bytes of one chunk description in a record.
const CHUNK_BYTES: usize = 32 + 4 + 4 + 8 + 4 + 8 + 4 + 1 + 8;
/// The fewest bytes a blob description takes in a record (an empty id, no key).
const BLOB_INFO_MIN_BYTES: usize = 8 + 4 + 8 + 8 + 4 + 4 + 8 + 8 + 8 + 4 + 32 + 1;
/// The longest string a record holds (digests, options): far beyond any real one.
const MAX_STRING: usize = 1 << 20;

/// One converted layer, as the cache keeps it.
#[derive(Clone, Debug)]
pub struct CachedLayer {
    /// The entry's key ([`super::CacheKey`]), repeated so that an entry filed under another name
    /// is caught.
    pub key: [u8; 32],
    /// The layer's place in its chain (0: the bottom layer), for `cache ls`.
    pub depth: u32,
    /// The source layer's diff id and digest (the digest for `cache ls` only: the blob depends
    /// on the uncompressed tar alone).
    pub diff_id: String,
    pub source_digest: String,
    pub source_uncompressed_size: u64,
    /// Length of the chunk table below this layer: its chunks are the entries that follow.
    pub table_base: u64,
    /// Blobs below this layer that hold chunks: this layer's blob index.
    pub blob_base: u32,
    /// The chunk table entries the layer added (stored chunks and aliases of lower ones).
    pub chunks: Vec<ChunkInfo>,
    /// Its entries, to rebuild the merged tree.
    pub entries: PackedEntries,
    /// Its blob as its own bootstrap describes it.
    pub info: BlobInfo,
    /// What it added to the image's blob table, in order, as the merged bootstrap describes
    /// them: its own blob if it stored a chunk, and the chunk dictionary blobs it used first.
    pub added: Vec<BlobInfo>,
    /// The blob file: `sha256:<hex>` and size.
    pub blob_digest: String,
    pub blob_size: u64,
    /// Report fields that only the conversion counted.
    pub chunk_data_size: u64,
    pub file_bytes: u64,
    pub dedup_hits: u64,
    /// Of `dedup_hits`, those found in the chunk dictionary.
    pub dict_hits: u64,
}

impl CachedLayer {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Out(Vec::with_capacity(
            256 + self.chunks.len() * CHUNK_BYTES + self.entries.as_bytes().len(),
        ));
        out.0.extend_from_slice(MAGIC);
        out.u32(VERSION);
        out.0.extend_from_slice(&self.key);
        out.u32(self.depth);
        out.str(&self.diff_id);
        out.str(&self.source_digest);
        out.u64(self.source_uncompressed_size);
        out.u64(self.table_base);
        out.u32(self.blob_base);
        out.blob_info(&self.info);
        out.str(&self.blob_digest);
        out.u64(self.blob_size);
        out.u64(self.chunk_data_size);
        out.u64(self.file_bytes);
        out.u64(self.dedup_hits);
        out.u64(self.dict_hits);
        out.u64(self.added.len() as u64);
        for blob in &self.added {
            out.blob_info(blob);
        }
        out.u64(self.chunks.len() as u64);
        for chunk in &self.chunks {
            out.chunk(chunk);
        }
        out.bytes(self.entries.as_bytes());
        let digest = Sha256::digest(&out.0);
        out.0.extend_from_slice(&digest);
        out.0
    }

    /// A record from its bytes; the problem if they are not a whole, undamaged record of this
    /// version.
    pub fn decode(bytes: &[u8]) -> Result<CachedLayer, String> {
        let body_len = bytes
            .len()
            .checked_sub(32)
            .filter(|&n| n >= MAGIC.len() + 4)
            .ok_or_else(|| format!("{} bytes: too short for a record", bytes.len()))?;
        let (body, digest) = bytes.split_at(body_len);
        if &body[..MAGIC.len()] != MAGIC {
            return Err("not a layer cache record (wrong magic)".into());
        }
        let mut r = In { bytes: body, at: 0 };
        r.at = MAGIC.len();
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!(
                "record version {version}, this program reads {VERSION}"
            ));
        }
        if Sha256::digest(body).as_slice() != digest {
            return Err("its digest does not match its content (damaged)".into());
        }
        let key = r.array()?;
        let depth = r.u32()?;
        let diff_id = r.str()?;
        let source_digest = r.str()?;
        let source_uncompressed_size = r.u64()?;
        let table_base = r.u64()?;
        let blob_base = r.u32()?;
        let info = r.blob_info()?;
        let blob_digest = r.str()?;
        let blob_size = r.u64()?;
        let chunk_data_size = r.u64()?;
        let file_bytes = r.u64()?;
        let dedup_hits = r.u64()?;
        let dict_hits = r.u64()?;
        let added_count = r.count(BLOB_INFO_MIN_BYTES)?;
        let added = (0..added_count)
            .map(|_| r.blob_info())
            .collect::<Result<Vec<_>, _>>()?;
        let count = r.count(CHUNK_BYTES)?;
        let chunks = (0..count)
            .map(|_| r.chunk())
            .collect::<Result<Vec<_>, _>>()?;
        let table_len = table_base
            .checked_add(count as u64)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n < u32::MAX as usize - 1)
            .ok_or("more chunks than a chunk table holds")?;
        let entries = PackedEntries::from_bytes(r.bytes()?.to_vec(), table_len)?;
        if r.at != body.len() {
            return Err(format!("{} bytes after the last field", body.len() - r.at));
        }
        let layer = CachedLayer {
            key,
            depth,
            diff_id,
            source_digest,
            source_uncompressed_size,
            table_base,
            blob_base,
            chunks,
            entries,
            info,
            blob_digest,
            blob_size,
            chunk_data_size,
            file_bytes,
            dedup_hits,
            dict_hits,
            added,
        };
        layer.consistent()?;
        Ok(layer)
    }

    /// What must hold within a record whatever the chain: a well-formed blob digest (which
    /// becomes the blob id), and chunks in this layer's blob or below it.
    fn consistent(&self) -> Result<(), String> {
        let hex = self.blob_digest.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(format!(
                "blob digest {:?} is not sha256:<hex>",
                self.blob_digest
            ));
        }
        // A layer with no chunk data has no blob of its own in the table; one with chunks has.
        if (self.info.chunk_count > 0) != self.added.iter().any(|b| b.id == hex) {
            return Err("its blob table entries do not match its chunk data".into());
        }
        // Its chunks lie in the blobs below it or in those it added.
        let above = u32::try_from(self.added.len())
            .ok()
            .and_then(|n| self.blob_base.checked_add(n))
            .ok_or("blob index out of range")?;
        if let Some(bad) = self.chunks.iter().position(|c| c.blob_index >= above) {
            return Err(format!(
                "chunk {bad} is in blob {}, beyond this layer's",
                self.chunks[bad].blob_index
            ));
        }
        Ok(())
    }

    /// Whether this layer continues a chain whose chunk table has `table_len` entries and whose
    /// blob table has `blobs` blobs, as it did when it was converted; the problem if not.
    pub fn fits(&self, table_len: usize, blobs: usize) -> Result<(), String> {
        if self.table_base != table_len as u64 || self.blob_base as usize != blobs {
            return Err(format!(
                "made over {} chunks and {} blobs, the layers below have {table_len} and {blobs}",
                self.table_base, self.blob_base
            ));
        }
        Ok(())
    }
}

/// A record being written.
struct Out(Vec<u8>);

impl Out {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn blob_info(&mut self, info: &BlobInfo) {
        self.str(&info.id);
        self.u32(info.chunk_count);
        self.u64(info.compressed_size);
        self.u64(info.uncompressed_size);
        self.u32(info.features);
        self.u32(info.ci_compressor);
        self.u64(info.ci_offset);
        self.u64(info.ci_compressed_size);
        self.u64(info.ci_uncompressed_size);
        self.u32(info.toc_size);
        self.0.extend_from_slice(&info.toc_digest);
        match &info.cipher {
            None => self.0.push(0),
            Some(c) => {
                self.0.push(1);
                self.0.extend_from_slice(&c.key);
                self.0.extend_from_slice(&c.iv);
            }
        }
    }

    fn chunk(&mut self, c: &ChunkInfo) {
        self.0.extend_from_slice(&c.digest);
        self.u32(c.blob_index);
        self.u32(c.ci_index);
        self.u64(c.compressed_offset);
        self.u32(c.compressed_size);
        self.u64(c.uncompressed_offset);
        self.u32(c.uncompressed_size);
        self.0.push(u8::from(c.compressed));
        self.u64(c.file_offset);
    }
}

/// A record being read: every read checked against the bytes left.
struct In<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> In<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("cut short at byte {} (needs {n} more)", self.at))?;
        let b = &self.bytes[self.at..end];
        self.at = end;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count of items of at least `each` bytes, which the bytes left must be able to hold.
    fn count(&mut self, each: usize) -> Result<usize, String> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.at) / each.max(1);
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= left)
            .ok_or_else(|| format!("a count of {n} at byte {} is beyond the record", self.at))
    }

    fn bytes(&mut self) -> Result<&'b [u8], String> {
        let n = self.count(1)?;
        self.take(n)
    }

    fn str(&mut self) -> Result<String, String> {
        let at = self.at;
        let b = self.bytes()?;
        if b.len() > MAX_STRING {
            return Err(format!("a string of {} bytes at byte {at}", b.len()));
        }
        String::from_utf8(b.to_vec()).map_err(|_| format!("the string at byte {at} is not UTF-8"))
    }

    fn blob_info(&mut self) -> Result<BlobInfo, String> {
        Ok(BlobInfo {
            id: self.str()?,
            chunk_count: self.u32()?,
            compressed_size: self.u64()?,
            uncompressed_size: self.u64()?,
            features: self.u32()?,
            ci_compressor: self.u32()?,
            ci_offset: self.u64()?,
            ci_compressed_size: self.u64()?,
            ci_uncompressed_size: self.u64()?,
            toc_size: self.u32()?,
            toc_digest: self.array()?,
            cipher: match self.u8()? {
                0 => None,
                1 => Some(CipherKey {
                    key: self.array()?,
                    iv: self.array()?,
                }),
                other => return Err(format!("cipher marker {other} is neither 0 nor 1")),
            },
        })
    }

    fn chunk(&mut self) -> Result<ChunkInfo, String> {
        Ok(ChunkInfo {
            digest: self.array()?,
            blob_index: self.u32()?,
            ci_index: self.u32()?,
            compressed_offset: self.u64()?,
            compressed_size: self.u32()?,
            uncompressed_offset: self.u64()?,
            uncompressed_size: self.u32()?,
            compressed: match self.u8()? {
                0 => false,
                1 => true,
                other => return Err(format!("a chunk's compressed flag is {other}")),
            },
            file_offset: self.u64()?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::blob::chunk::FileData;
    use crate::common::path::ImagePath;
    use crate::layer::entry::{EntryKind, InodeData, LayerEntry, Metadata};

    /// A small record, for the tests of the cache directory too.
    pub(crate) fn sample() -> CachedLayer {
        let mut entries = PackedEntries::new();
        for (path, chunks) in [
            (&b"etc"[..], None),
            (b"etc/a", Some(vec![3, 4])),
            (b"b", Some(vec![])),
        ] {
            entries.push(&LayerEntry {
                path: ImagePath::parse(path).unwrap(),
                kind: EntryKind::Inode(match chunks {
                    None => InodeData::Dir,
                    Some(chunks) => InodeData::File(FileData { size: 9, chunks }),
                }),
                meta: Metadata::default(),
            });
        }
        let chunk = |n: u8| ChunkInfo {
            digest: [n; 32],
            blob_index: 1,
            ci_index: u32::from(n),
            compressed_offset: 7,
            compressed_size: 8,
            uncompressed_offset: 4096,
            uncompressed_size: 10,
            compressed: n.is_multiple_of(2),
            file_offset: 0,
        };
        CachedLayer {
            key: [7; 32],
            depth: 1,
            diff_id: "sha256:aa".into(),
            source_digest: "sha256:bb".into(),
            source_uncompressed_size: 10240,
            table_base: 3,
            blob_base: 1,
            chunks: vec![chunk(1), chunk(2)],
            entries,
            info: BlobInfo {
                id: "x".repeat(64),
                chunk_count: 2,
                compressed_size: 1,
                uncompressed_size: 2,
                features: 3,
                ci_compressor: 4,
                ci_offset: 5,
                ci_compressed_size: 6,
                ci_uncompressed_size: 7,
                toc_size: 8,
                toc_digest: [9; 32],
                cipher: Some(CipherKey {
                    key: [10; 32],
                    iv: [11; 16],
                }),
            },
            blob_digest: format!("sha256:{}", "ab".repeat(32)),
            blob_size: 4242,
            chunk_data_size: 1,
            file_bytes: 2,
            dedup_hits: 3,
            dict_hits: 2,
            // A dictionary blob first used here, then its own blob.
            added: ["cd", "ab"]
                .iter()
                .map(|id| BlobInfo {
                    id: id.repeat(32),
                    chunk_count: 1,
                    compressed_size: 1,
                    uncompressed_size: 4096,
                    features: 1,
                    ci_compressor: 0,
                    ci_offset: 0,
                    ci_compressed_size: 16,
                    ci_uncompressed_size: 16,
                    toc_size: 0,
                    toc_digest: [0; 32],
                    cipher: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_record_comes_back_as_it_was() {
        let layer = sample();
        let back = CachedLayer::decode(&layer.encode()).unwrap();
        assert_eq!(
            back.entries.iter().collect::<Vec<_>>(),
            layer.entries.iter().collect::<Vec<_>>()
        );
        assert_eq!(back.encode(), layer.encode());
        assert!(back.fits(3, 1).is_ok());
        assert!(back.fits(4, 1).is_err());
    }

    #[test]
    fn every_damage_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(CachedLayer::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            assert!(CachedLayer::decode(&flipped).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn a_well_digested_record_is_still_checked() {
        // Bytes that someone digested properly but that lie: a chunk index beyond the table.
        let mut layer = sample();
        layer.table_base = 0;
        layer.chunks.truncate(1);
        let err = CachedLayer::decode(&layer.encode()).unwrap_err();
        assert!(err.contains("beyond the chunk table"), "{err}");
        // Blob 0 is below, 1 and 2 the two it added: 3 is beyond.
        let mut layer = sample();
        layer.chunks[0].blob_index = 3;
        assert!(CachedLayer::decode(&layer.encode()).is_err());
        // It says it stored chunks, but its own blob is not among those it added.
        let mut layer = sample();
        layer.added.pop();
        assert!(CachedLayer::decode(&layer.encode()).is_err());
        let mut layer = sample();
        layer.blob_digest = "sha256:zz".into();
        assert!(CachedLayer::decode(&layer.encode()).is_err());
    }
}
