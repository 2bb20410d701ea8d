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
    use std::io::Read;
    let out = match algo {
        COMPRESSOR_NONE => data.to_vec(),
        COMPRESSOR_LZ4_BLOCK => {
            // An LZ4 block cannot be streamed and its output is sized up front: held to what
            // the data can expand to (a length byte adds at most 255 bytes; a margin on top).
            if size > data.len().saturating_mul(256).saturating_add(1024) {
                return Err(format!(
                    "lz4: {} bytes cannot decompress to {size}",
                    data.len()
                ));
            }
            let n = i32::try_from(size).map_err(|_| "too large for lz4".to_string())?;
            lz4::block::decompress(data, Some(n)).map_err(|e| format!("lz4: {e}"))?
        }
        COMPRESSOR_GZIP => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(data)
                .take(size as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("gzip: {e}"))?;
            out
        }
        COMPRESSOR_ZSTD => {
            // Streamed rather than `bulk::decompress(data, size)`, which reserves `size` bytes
            // up front: `size` is the image's word, and a damaged one must not cost a gigabyte
            // the data never fills.
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(data)
                .map_err(|e| format!("zstd: {e}"))?
                .take(size as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("zstd: {e}"))?;
            out
        }
        other => return Err(format!("unknown compressor {other}")),
    };
    if out.len() != size {
        return Err(format!("{} bytes decompressed, {size} expected", out.len()));
    }
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

#[cfg(test)]
mod bound_tests {
    use super::decompress;
    use crate::ondisk::blob::{COMPRESSOR_LZ4_BLOCK, COMPRESSOR_ZSTD};

    #[test]
    fn the_most_compressible_chunks_still_decompress_and_a_claimed_size_costs_nothing() {
        let zeros = vec![0u8; 16 << 20];
        let lz4 = lz4::block::compress(&zeros, None, false).unwrap();
        assert_eq!(
            decompress(COMPRESSOR_LZ4_BLOCK, &lz4, zeros.len()).unwrap(),
            zeros
        );
        let zstd = zstd::bulk::compress(&zeros, 3).unwrap();
        assert_eq!(
            decompress(COMPRESSOR_ZSTD, &zstd, zeros.len()).unwrap(),
            zeros
        );
        // A size no data can fill is refused (lz4) or costs only what the data holds (zstd).
        assert!(decompress(COMPRESSOR_LZ4_BLOCK, &lz4[..16], 1 << 30).is_err());
        assert!(decompress(COMPRESSOR_ZSTD, &zstd, 1 << 30).is_err());
    }
}
