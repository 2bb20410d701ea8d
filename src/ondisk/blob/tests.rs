//! Blob structures checked against blobs written by nydus-image 2.2.0 (`testdata/ondisk/`, see
//! its README for how they were made; expected values are what `nydus-image check -v` printed).

use super::*;
use sha2::{Digest, Sha256};

const PLAIN_BLOB: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/ondisk/plain.blob"
));
const TOC_BLOB: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/ondisk/toc.blob"
));

/// (uncompressed offset, uncompressed size, compressed offset, compressed size) of the four
/// chunks of the layer1 fixture, in ci-index order, as `nydus-image check -v` lists them.
const LAYER1_CHUNKS: [(u64, u32, u64, u32); 4] = [
    (0, 12, 0, 12),
    (4096, 4096, 12, 19),
    (8192, 4096, 31, 4096),
    (12288, 1000, 4127, 1000),
];

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The ci entries stored at the header's offset, each re-encoded to its own bytes.
fn ci_entries(blob: &[u8], h: &BlobCompressionContextHeader) -> Vec<BlobChunkInfoV1Ondisk> {
    let start = h.s_ci_offset as usize;
    let stored = &blob[start..start + h.s_ci_compressed_size as usize];
    let table = match h.s_ci_compressor {
        COMPRESSOR_NONE => stored.to_vec(),
        COMPRESSOR_ZSTD => zstd::bulk::decompress(stored, h.s_ci_uncompressed_size as usize)
            .expect("ci table decompresses"),
        other => panic!("unexpected ci compressor {other}"),
    };
    assert_eq!(table.len() as u64, h.s_ci_uncompressed_size);
    table
        .chunks_exact(BlobChunkInfoV1Ondisk::SIZE)
        .map(|raw| {
            let ci = BlobChunkInfoV1Ondisk::decode(raw).unwrap();
            assert_eq!(ci.to_bytes(), raw);
            ci
        })
        .collect()
}

#[test]
fn plain_blob_ci_header_and_table_match_nydus() {
    // Default layout: chunks ‖ ci table ‖ 4096-byte header, nothing after.
    let tail = &PLAIN_BLOB[PLAIN_BLOB.len() - BlobCompressionContextHeader::SIZE..];
    let h = BlobCompressionContextHeader::decode(tail).unwrap();
    assert_eq!(h.to_bytes(), tail);
    assert_eq!(
        h.s_features,
        BLOB_FEATURE_CAP_TAR_TOC | BLOB_FEATURE_ALIGNED
    );
    assert_eq!(h.s_ci_entries, 4);
    assert_eq!(h.s_ci_offset, 0x1407); // "compressed data size 0x1407"
    assert_eq!(h.s_ci_uncompressed_size, 4 * 16);
    // 64 bytes did not shrink under zstd, so the table is stored raw.
    assert_eq!(h.s_ci_compressor, COMPRESSOR_NONE);
    assert_eq!(h.s_ci_compressed_size, 64);
    assert_eq!(
        (h.s_ci_zran_offset, h.s_ci_zran_size, h.s_ci_zran_count),
        (0, 0, 0)
    );
    assert_eq!(
        h.s_ci_offset + h.s_ci_compressed_size + 4096,
        PLAIN_BLOB.len() as u64
    );

    let entries = ci_entries(PLAIN_BLOB, &h);
    let got: Vec<_> = entries
        .iter()
        .map(|c| {
            (
                c.uncompressed_offset(),
                c.uncompressed_size(),
                c.compressed_offset(),
                c.compressed_size(),
            )
        })
        .collect();
    assert_eq!(got, LAYER1_CHUNKS);
    let compressed: Vec<_> = entries.iter().map(|c| c.is_compressed()).collect();
    assert_eq!(compressed, [false, true, false, false]);
    for (ci, &(uo, us, co, cs)) in entries.iter().zip(&LAYER1_CHUNKS) {
        assert_eq!(BlobChunkInfoV1Ondisk::new(uo, us, co, cs).unwrap(), *ci);
    }
    // The one compressed chunk really is a zstd frame of 4096 'a' bytes.
    let c = &entries[1];
    let start = c.compressed_offset() as usize;
    let data = zstd::bulk::decompress(
        &PLAIN_BLOB[start..start + c.compressed_size() as usize],
        4096,
    );
    assert_eq!(data.unwrap(), vec![b'a'; 4096]);
}

/// The sections of a blob with reverse tar headers, walked from the end as nydus's readers do:
/// (name, data offset, data), last section first. Every header re-encodes to its bytes and is
/// exactly what `BlobTarHeader::new` writes.
fn reverse_tar_sections(blob: &[u8]) -> Vec<(String, usize, &[u8])> {
    let mut out = Vec::new();
    let mut end = blob.len();
    while end >= BlobTarHeader::SIZE {
        let raw = &blob[end - BlobTarHeader::SIZE..end];
        let h = BlobTarHeader::decode(raw).unwrap();
        assert_eq!(h.to_bytes(), raw);
        let name = h.section_name().unwrap().to_string();
        let size = h.section_size().unwrap() as usize;
        assert_eq!(
            BlobTarHeader::new(&name, size as u64).unwrap().to_bytes(),
            raw
        );
        let start = end - BlobTarHeader::SIZE - size;
        out.push((name, start, &blob[start..start + size]));
        end = start;
        if end == 0 {
            break;
        }
    }
    assert_eq!(end, 0, "sections do not reach the start of the blob");
    out
}

#[test]
fn toc_blob_tar_headers_toc_and_sections_match_nydus() {
    let sections = reverse_tar_sections(TOC_BLOB);
    let names: Vec<_> = sections.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        [
            TOC_ENTRY_BLOB_TOC,
            TOC_ENTRY_BOOTSTRAP,
            TOC_ENTRY_BLOB_DIGEST,
            TOC_ENTRY_BLOB_META,
            TOC_ENTRY_BLOB_RAW
        ]
    );
    let section = |name: &str| sections.iter().find(|s| s.0 == name).unwrap();

    // The chunk data and the ci table + header, located through the header.
    let (_, raw_off, raw) = section(TOC_ENTRY_BLOB_RAW);
    assert_eq!((*raw_off, raw.len()), (0, 0x1407));
    let (_, meta_off, meta) = section(TOC_ENTRY_BLOB_META);
    let h = BlobCompressionContextHeader::decode(&meta[meta.len() - 4096..]).unwrap();
    assert_eq!(
        h.s_features,
        BLOB_FEATURE_CAP_TAR_TOC
            | BLOB_FEATURE_HAS_TOC
            | BLOB_FEATURE_HAS_TAR_HEADER
            | BLOB_FEATURE_INLINED_CHUNK_DIGEST
            | BLOB_FEATURE_INLINED_FS_META
            | BLOB_FEATURE_ALIGNED
    );
    // ci table right after the chunk data and its 512-byte tar header.
    assert_eq!(h.s_ci_offset, 0x1407 + 512);
    assert_eq!(*meta_off as u64, h.s_ci_offset);
    assert_eq!(meta.len() as u64, h.s_ci_compressed_size + 4096);
    let entries = ci_entries(TOC_BLOB, &h);
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[3].compressed_offset(), 4127);

    // The TOC: 5 entries, each pointing at a section whose sha256 it records.
    let (_, toc_off, toc) = section(TOC_ENTRY_BLOB_TOC);
    assert_eq!(toc.len(), 5 * TocEntry::SIZE);
    let entries: Vec<TocEntry> = toc
        .chunks_exact(TocEntry::SIZE)
        .map(|raw| {
            let e = TocEntry::decode(raw).unwrap();
            assert_eq!(e.to_bytes(), raw);
            e
        })
        .collect();
    let names: Vec<_> = entries.iter().map(|e| e.name().unwrap()).collect();
    assert_eq!(
        names,
        [
            TOC_ENTRY_BLOB_RAW,
            TOC_ENTRY_BLOB_META,
            TOC_ENTRY_BLOB_META_HEADER,
            TOC_ENTRY_BLOB_DIGEST,
            TOC_ENTRY_BOOTSTRAP
        ]
    );
    for e in &entries {
        assert_eq!((e.reserved1, e.reserved2), (0, [0; 48]));
        let stored = &TOC_BLOB[e.compressed_offset as usize..][..e.compressed_size as usize];
        let content = match e.flags {
            TOC_FLAG_COMPRESSION_NONE => stored.to_vec(),
            TOC_FLAG_COMPRESSION_ZSTD => {
                zstd::bulk::decompress(stored, e.uncompressed_size as usize).unwrap()
            }
            f => panic!("unexpected TOC flags {f:#x}"),
        };
        if e.name().unwrap() == TOC_ENTRY_BLOB_RAW {
            // Quirks of 2.2.0: the digest also covers the `image.blob` tar header, and the
            // "uncompressed size" of this NONE entry is the blob's 4 KiB-aligned size.
            let with_header = &TOC_BLOB[..e.compressed_size as usize + 512];
            assert_eq!(e.uncompressed_digest, sha256(with_header));
            assert_eq!((e.compressed_size, e.uncompressed_size), (0x1407, 0x4000));
        } else {
            assert_eq!(content.len() as u64, e.uncompressed_size, "{:?}", e.name());
            assert_eq!(e.uncompressed_digest, sha256(&content), "{:?}", e.name());
        }
    }
    let by_name = |n: &str| entries.iter().find(|e| e.name().unwrap() == n).unwrap();
    let ci = by_name(TOC_ENTRY_BLOB_META);
    assert_eq!(ci.compressed_offset, h.s_ci_offset);
    assert_eq!(ci.compressed_size, h.s_ci_compressed_size);
    let hdr = by_name(TOC_ENTRY_BLOB_META_HEADER);
    assert_eq!(
        hdr.compressed_offset,
        h.s_ci_offset + h.s_ci_compressed_size
    );
    assert_eq!(hdr.compressed_size, 4096);
    let digests = by_name(TOC_ENTRY_BLOB_DIGEST);
    assert_eq!(digests.compressed_size, 4 * 32);
    let boot = by_name(TOC_ENTRY_BOOTSTRAP);
    assert_eq!(boot.flags, TOC_FLAG_COMPRESSION_ZSTD);
    assert_eq!(boot.uncompressed_size, 20480);
    assert_eq!(
        boot.compressed_offset as usize,
        section(TOC_ENTRY_BOOTSTRAP).1
    );
    assert_eq!(*toc_off + toc.len() + 512, TOC_BLOB.len());
}

#[test]
fn tar_header_matches_the_tar_crate_for_all_size_forms() {
    // nydus writes these headers with the `tar` crate; our encoder must agree with it, also for
    // sizes that need the GNU base-256 form.
    for (name, size) in [
        ("image.blob", 0u64),
        ("blob.meta", 4160),
        ("image.boot", 0o77_777_777_777),
        ("image.blob", 1 << 33),
        ("rafs.blob.toc", (1 << 40) + 12345),
        (
            "a-name-of-exactly-one-hundred-bytes-is-fine".repeat(3)[..100].as_ref(),
            7,
        ),
    ] {
        let mut t = tar::Header::new_gnu();
        t.set_path(name).unwrap();
        t.set_entry_type(tar::EntryType::Regular);
        t.set_size(size);
        t.set_cksum();
        let ours = BlobTarHeader::new(name, size).unwrap();
        assert_eq!(ours.to_bytes(), *t.as_bytes(), "{name} {size}");
        let back = BlobTarHeader::decode(t.as_bytes()).unwrap();
        assert_eq!(back.section_size().unwrap(), size);
        assert_eq!(back.section_name().unwrap(), name);
    }
}

#[test]
fn tar_header_rejects_garbage() {
    let good = BlobTarHeader::new("blob.meta", 4160).unwrap().to_bytes();
    assert!(BlobTarHeader::decode(&good[..511]).is_err());
    let mut bad_sum = good;
    bad_sum[0] ^= 1;
    let err = BlobTarHeader::decode(&bad_sum).unwrap_err().to_string();
    assert!(err.contains("checksum"), "{err}");
    let mut ustar = good;
    ustar[257..265].copy_from_slice(b"ustar\x0000");
    assert!(BlobTarHeader::decode(&ustar).is_err());
    let mut dir = tar::Header::new_gnu();
    dir.set_path("x").unwrap();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_cksum();
    let err = BlobTarHeader::decode(dir.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("regular"), "{err}");
    assert!(BlobTarHeader::decode(&[0u8; 512]).is_err());
    assert!(BlobTarHeader::new("", 1).is_err());
    assert!(BlobTarHeader::new(&"x".repeat(101), 1).is_err());
}

#[test]
fn ci_v1_packs_the_extremes() {
    let max_uoff = (1u64 << 44) - 4096;
    let max_coff = (1u64 << 40) - 1;
    for (uo, us, co, cs) in [
        (0, 1, 0, 1),
        (max_uoff, BLOB_CHUNK_MAX_SIZE, max_coff, BLOB_CHUNK_MAX_SIZE),
        (0x1234_5000, 0x00AB_CDEF, 0x12_3456_789A, 0x0012_3457),
    ] {
        let ci = BlobChunkInfoV1Ondisk::new(uo, us, co, cs).unwrap();
        assert_eq!(
            (
                ci.uncompressed_offset(),
                ci.uncompressed_size(),
                ci.compressed_offset(),
                ci.compressed_size()
            ),
            (uo, us, co, cs)
        );
        assert_eq!(BlobChunkInfoV1Ondisk::decode(&ci.to_bytes()).unwrap(), ci);
    }
    // The examples in blob.md §3.1.
    let ci = BlobChunkInfoV1Ondisk::new(0x205000, 0x100000, 0x203045, 112).unwrap();
    assert_eq!(
        ci.to_bytes(),
        [
            0x00, 0x50, 0x20, 0x00, 0x00, 0xf0, 0xff, 0xff, 0x45, 0x30, 0x20, 0x00, 0x00, 0xf0,
            0x06, 0x00
        ]
    );
    assert!(BlobChunkInfoV1Ondisk::new(4095, 1, 0, 1).is_err());
    assert!(BlobChunkInfoV1Ondisk::new(1 << 44, 1, 0, 1).is_err());
    assert!(BlobChunkInfoV1Ondisk::new(0, 1, 1 << 40, 1).is_err());
    assert!(BlobChunkInfoV1Ondisk::new(0, 0, 0, 1).is_err());
    assert!(BlobChunkInfoV1Ondisk::new(0, 1, 0, BLOB_CHUNK_MAX_SIZE + 1).is_err());
    let mut reserved = ci.to_bytes();
    reserved[0] = 1;
    assert!(BlobChunkInfoV1Ondisk::decode(&reserved).is_err());
    assert!(BlobChunkInfoV1Ondisk::decode(&reserved[..15]).is_err());
}

#[test]
fn header_and_toc_entry_reject_garbage() {
    let h = BlobCompressionContextHeader::default();
    let bytes = h.to_bytes();
    assert_eq!(BlobCompressionContextHeader::decode(&bytes).unwrap(), h);
    assert!(BlobCompressionContextHeader::decode(&bytes[..4095]).is_err());
    let mut bad = bytes;
    bad[4095] = 0;
    let err = BlobCompressionContextHeader::decode(&bad).unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");

    let e = TocEntry::new("blob.digest", TOC_FLAG_COMPRESSION_NONE, [7; 32], 1, 2, 3).unwrap();
    assert_eq!(TocEntry::decode(&e.to_bytes()).unwrap(), e);
    assert!(TocEntry::decode(&e.to_bytes()[..127]).is_err());
    assert!(TocEntry::new("seventeen-bytes!!", 0, [0; 32], 0, 0, 0).is_err());
    let mut bad = e.to_bytes();
    bad[8] = 0xff;
    assert!(TocEntry::decode(&bad).is_err());
}
