//! Compressing one piece of blob data (a chunk, the ci table, the inlined bootstrap) the way
//! nydus-image 2.2.0 does it (`utils/src/compress/mod.rs`, `compress`):
//!
//! * zstd: one standard frame at level 3 (`zstd::bulk::compress(data, 3)`);
//! * lz4_block: one raw LZ4 block from liblz4's `LZ4_compress_default`, no frame, no size prefix
//!   (a reader needs the uncompressed size from elsewhere);
//! * none: the bytes as they are.
//!
//! The compressed form is kept only when it is **strictly smaller** than the input; otherwise
//! the raw bytes are stored and the piece counts as not compressed. Readers of V1 ci tables tell
//! the two apart by comparing sizes, so an equal-size "compressed" chunk must never be written.

use crate::blob::chunk::Compressor;
use crate::common::error::{Error, Result};

/// zstd level nydus uses for chunks, ci tables and bootstraps.
const ZSTD_LEVEL: i32 = 3;

/// Compresses pieces one after another, reusing its zstd context and output buffer, so memory
/// stays at one output buffer of the largest piece seen.
pub(crate) struct PieceCompressor {
    compressor: Compressor,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    out: Vec<u8>,
}

impl PieceCompressor {
    /// A compressor for `compressor`. Fails only if zstd cannot allocate its context.
    pub(crate) fn new(compressor: Compressor) -> Result<PieceCompressor> {
        let zstd = match compressor {
            Compressor::Zstd => Some(
                zstd::bulk::Compressor::new(ZSTD_LEVEL)
                    .map_err(|e| Error::internal(format!("creating a zstd compressor: {e}")))?,
            ),
            Compressor::None | Compressor::Lz4Block => None,
        };
        Ok(PieceCompressor {
            compressor,
            zstd,
            out: Vec::new(),
        })
    }

    /// Compresses `data` alone. Returns the compressed bytes if they are strictly shorter than
    /// `data`, and `None` when the raw bytes must be stored instead (also for the `None`
    /// compressor and for empty input). The returned slice is valid until the next call.
    pub(crate) fn compress(&mut self, data: &[u8]) -> Result<Option<&[u8]>> {
        if data.is_empty() {
            return Ok(None);
        }
        let len = match self.compressor {
            Compressor::None => return Ok(None),
            Compressor::Zstd => {
                let zstd = self.zstd.as_mut().expect("zstd context made in new");
                // `compress_to_buffer` writes into the Vec's spare capacity and sets its length.
                self.out.clear();
                self.out
                    .reserve(zstd::zstd_safe::compress_bound(data.len()));
                zstd.compress_to_buffer(data, &mut self.out)
                    .map_err(|e| Error::internal(format!("zstd compression failed: {e}")))?
            }
            Compressor::Lz4Block => {
                let bound = lz4::block::compress_bound(data.len())
                    .map_err(|e| Error::internal(format!("lz4 compression: {e}")))?;
                if self.out.len() < bound {
                    self.out.resize(bound, 0);
                }
                lz4::block::compress_to_buffer(data, None, false, &mut self.out[..bound])
                    .map_err(|e| Error::internal(format!("lz4 compression failed: {e}")))?
            }
        };
        if len >= data.len() {
            return Ok(None);
        }
        Ok(Some(&self.out[..len]))
    }
}

/// Decompresses one piece stored with nydus compressor id `algo` (`COMPRESSOR_*`: what blob
/// tables, ci headers and TOC entries record) into exactly `size` bytes, which must be known
/// (LZ4 blocks do not record it). Used by `check` to read blobs back, and by tests.
pub(crate) fn decompress(
    algo: u32,
    data: &[u8],
    size: usize,
) -> std::result::Result<Vec<u8>, String> {
    use crate::ondisk::blob::{
        COMPRESSOR_GZIP, COMPRESSOR_LZ4_BLOCK, COMPRESSOR_NONE, COMPRESSOR_ZSTD,
    };
    // `size` comes from the blob being read: never allocate it up front. LZ4 blocks expand at
    // most 255-fold, so a larger claim is damage; gzip and zstd are streamed, so memory follows
    // the bytes really produced (at most `size` + 1).
    let out = match algo {
        COMPRESSOR_NONE => data.to_vec(),
        COMPRESSOR_LZ4_BLOCK => {
            if size > data.len().saturating_mul(255).saturating_add(16) {
                return Err(format!(
                    "lz4: {} bytes cannot decompress to {size}",
                    data.len()
                ));
            }
            let n = i32::try_from(size).map_err(|_| "too large for lz4".to_string())?;
            lz4::block::decompress(data, Some(n)).map_err(|e| format!("lz4: {e}"))?
        }
        COMPRESSOR_GZIP => read_bounded(flate2::read::GzDecoder::new(data), size, "gzip")?,
        COMPRESSOR_ZSTD => {
            let decoder =
                zstd::stream::read::Decoder::new(data).map_err(|e| format!("zstd: {e}"))?;
            read_bounded(decoder, size, "zstd")?
        }
        other => return Err(format!("unknown compressor {other}")),
    };
    if out.len() != size {
        return Err(format!("{} bytes decompressed, {size} expected", out.len()));
    }
    Ok(out)
}

/// Read `reader` to its end, but no more than `size + 1` bytes (one more shows it is too long).
fn read_bounded(
    reader: impl std::io::Read,
    size: usize,
    what: &str,
) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::with_capacity(size.min(1 << 20));
    reader
        .take(size as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{what}: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_strictly_smaller_output_and_round_trips() {
        let repetitive = vec![b'x'; 5000];
        let mut random = vec![0u8; 4096];
        let mut state = 0x1234_5678_u32;
        for b in &mut random {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *b = state as u8;
        }
        for c in [Compressor::Zstd, Compressor::Lz4Block] {
            let mut pc = PieceCompressor::new(c).unwrap();
            let small = pc.compress(&repetitive).unwrap().unwrap().to_vec();
            assert!(small.len() < 100, "{c:?}: {}", small.len());
            assert_eq!(decompress(c.ondisk_id(), &small, 5000).unwrap(), repetitive);
            assert_eq!(pc.compress(&random).unwrap(), None, "{c:?}");
            assert_eq!(pc.compress(b"").unwrap(), None);
            // A 12-byte text does not shrink (nydus stores such files raw).
            assert_eq!(pc.compress(b"hello nydus\n").unwrap(), None);
        }
        let mut none = PieceCompressor::new(Compressor::None).unwrap();
        assert_eq!(none.compress(&repetitive).unwrap(), None);
    }

    #[test]
    fn a_claimed_size_is_never_allocated_up_front() {
        let data = vec![b'x'; 5000];
        let mut pc = PieceCompressor::new(Compressor::Zstd).unwrap();
        let zstd = pc.compress(&data).unwrap().unwrap().to_vec();
        let mut pc = PieceCompressor::new(Compressor::Lz4Block).unwrap();
        let lz4 = pc.compress(&data).unwrap().unwrap().to_vec();
        let huge = 1usize << 46;
        for (algo, bytes) in [
            (Compressor::Zstd.ondisk_id(), &zstd),
            (Compressor::Lz4Block.ondisk_id(), &lz4),
        ] {
            assert!(decompress(algo, bytes, huge).is_err());
            assert!(decompress(algo, bytes, 4999).is_err());
            assert_eq!(decompress(algo, bytes, 5000).unwrap(), data);
        }
        // A frame longer than its claim is cut at one byte more, and refused.
        assert!(decompress(Compressor::Zstd.ondisk_id(), &zstd, 10).is_err());
    }

    #[test]
    fn zstd_output_is_what_nydus_image_wrote() {
        // 4096 × 'a' became these 19 bytes in testdata/ondisk/toc.blob (chunk 1, offset 12).
        let blob = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/ondisk/toc.blob"
        ));
        let mut pc = PieceCompressor::new(Compressor::Zstd).unwrap();
        let ours = pc.compress(&[b'a'; 4096]).unwrap().unwrap();
        assert_eq!(ours, &blob[12..31]);
    }
}
