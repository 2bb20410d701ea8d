//! `check` on RAFS v5 bootstraps and blobs: the fixture nydus-image 2.2.0 wrote, bootstraps and
//! blobs nydus-image 2.2.0 and 2.4.4 write in the test (skipped when the binaries are
//! missing), and damaged copies, each damage a problem naming the file and the rule.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::check::{blob_problems, bootstrap_problems};
use crate::ondisk::rafs_v5::reader::BootstrapReader;

fn fixture() -> Vec<u8> {
    let path = format!("{}/testdata/ondisk/v5.boot", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The problems of a bootstrap read on its own, without those of its blob table (which names
/// blobs no manifest holds here).
fn problems(bytes: Vec<u8>) -> Vec<String> {
    bootstrap_problems(bytes)
        .into_iter()
        .filter(|p| !p.contains("blob table entry"))
        .collect()
}

/// Byte offset of the record of inode number `slot`.
fn record_at(bytes: &[u8], slot: u64) -> usize {
    BootstrapReader::open(bytes.to_vec())
        .unwrap()
        .record_offset(slot)
        .unwrap() as usize
}

/// The fixture with `f` applied to the record of `slot` (its offset given).
fn damaged(slot: u64, f: impl FnOnce(&mut [u8], usize)) -> Vec<u8> {
    let mut b = fixture();
    let at = record_at(&b, slot);
    f(&mut b, at);
    b
}

/// Whether some problem holds every one of `words`.
fn has(problems: &[String], words: &[&str]) -> bool {
    problems.iter().any(|p| words.iter().all(|w| p.contains(w)))
}

#[test]
fn the_fixture_breaks_no_rule() {
    assert_eq!(problems(fixture()), Vec::<String>::new());
    // Its blob was built without --blob-inline-meta: no INLINED/tar header features.
    assert!(has(
        &bootstrap_problems(fixture()),
        &["features 0x40000000"]
    ));
}

#[test]
fn each_damage_is_a_problem_naming_the_file_and_the_rule() {
    // Inode numbers in the fixture: 1 /, 2 dir, 3 empty, 4 link, 5 null, 6 sub, 7 dir/hard,
    // 8 dir/multi.bin, 9 dir/small.txt, 10 sub/dup.
    let u32_at = |slot, off: usize, v: u32| {
        damaged(slot, |b, at| {
            b[at + off..at + off + 4].copy_from_slice(&v.to_le_bytes())
        })
    };
    let u64_at = |slot, off: usize, v: u64| {
        damaged(slot, |b, at| {
            b[at + off..at + off + 8].copy_from_slice(&v.to_le_bytes())
        })
    };
    for (bytes, words) in [
        // A file's digest no longer its chunks': its own digest and its parent's are wrong.
        (damaged(8, |b, at| b[at] ^= 1), &["multi.bin", "digest"][..]),
        // A chunk digest changed: the file's digest no longer fits it.
        (
            damaged(10, |b, at| b[at + 128 + 8] ^= 1),
            &["'dup'", "its chunk digests give"],
        ),
        (
            u32_at(8, 96, 2),
            &["/dir/multi.bin", "2 chunk records for 9192 bytes"],
        ),
        (u32_at(3, 88, 0), &["/empty", "nlink is 0"]),
        (
            u32_at(2, 88, 5),
            &["/dir (inode 2)", "nlink 5 for a directory"],
        ),
        (u64_at(3, 32, 0), &["/empty", "parent 0"]),
        (u64_at(6, 32, 7), &["/sub", "parent 7 is not below"]),
        (
            u64_at(3, 40, 4),
            &["/empty", "inode number 4 read through entry 3"],
        ),
        (
            u32_at(4, 60, 0o100644),
            &["/link", "flags 0x1 do not fit a file"],
        ),
        // Two children out of name order: `mmpty` before `link`.
        (
            damaged(3, |b, at| b[at + 128] = b'm'),
            &["/link (inode 4)", "not sorted by name"],
        ),
        // The root's child range past the inode table.
        (
            u32_at(1, 96, 100),
            &["/ (inode 1)", "outside the inode table"],
        ),
        // A chunk naming a blob the table does not have.
        (
            damaged(9, |b, at| {
                let c = at + 128 + 16 + 32;
                b[c..c + 4].copy_from_slice(&3u32.to_le_bytes())
            }),
            &["'small.txt': chunk 0", "names blob 3"],
        ),
        // A chunk past its blob's uncompressed size.
        (
            damaged(9, |b, at| {
                let c = at + 128 + 16 + 56;
                b[c..c + 8].copy_from_slice(&(1u64 << 40).to_le_bytes())
            }),
            &["'small.txt': chunk 0", "lies outside blob"],
        ),
        // A prefetch table naming an inode the tree lacks.
        (
            {
                let mut b = fixture();
                b[60..64].copy_from_slice(&1u32.to_le_bytes());
                let at = 8192 + 40;
                b[at..at + 4].copy_from_slice(&77u32.to_le_bytes());
                b
            },
            &["prefetch table names inode 77"],
        ),
        // Super block rules.
        (
            {
                let mut b = fixture();
                b[12..16].copy_from_slice(&0x3000u32.to_le_bytes());
                b
            },
            &["super block", "chunk size 0x3000"],
        ),
        (
            {
                let mut b = fixture();
                b[48..56].copy_from_slice(&8192u64.to_le_bytes());
                b
            },
            &["super block", "blob table at 0x2000"],
        ),
    ] {
        let found = problems(bytes);
        assert!(has(&found, words), "{words:?}: {found:#?}");
    }
}

#[test]
fn truncated_and_random_damage_give_problems_never_panics() {
    let sound = fixture();
    for len in (0..sound.len()).step_by(97) {
        let found = bootstrap_problems(sound[..len].to_vec());
        assert!(!found.is_empty(), "cut at {len}");
    }
    // Every byte past the super block flipped in turn: problems or none, no panic.
    for at in (8192..sound.len()).step_by(3) {
        let mut b = sound.clone();
        b[at] ^= 0xa5;
        let _ = bootstrap_problems(b);
    }
}

/// nydus-image `version` at `/var/cache/nydus-offline`, if installed.
fn nydus_image(version: &str) -> Option<PathBuf> {
    let path = PathBuf::from(format!(
        "/var/cache/nydus-offline/nydus-{version}/bin/nydus-image"
    ));
    path.exists().then_some(path)
}

/// The tar `testdata/ondisk/layer5.py` writes, in `dir`.
fn layer5_tar(dir: &Path) -> PathBuf {
    let tar = dir.join("layer.tar");
    let script = format!("{}/testdata/ondisk/layer5.py", env!("CARGO_MANIFEST_DIR"));
    let ok = Command::new("python3")
        .arg(script)
        .arg(&tar)
        .status()
        .unwrap()
        .success();
    assert!(ok, "layer5.py failed");
    tar
}

/// A v5 blob with its bootstrap inlined, as nydus-image `exe` writes it for `tar`.
fn nydus_blob(exe: &Path, tar: &Path, digester: &str, compressor: &str) -> PathBuf {
    let blob = tar.with_file_name(format!("{digester}-{compressor}.blob"));
    let out = Command::new(exe)
        .args(["create", "--type", "tar-rafs", "--fs-version", "5"])
        .args(["--chunk-size", "0x1000", "--blob-inline-meta"])
        .args(["--digester", digester, "--compressor", compressor])
        .arg("--blob")
        .arg(&blob)
        .arg(tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    blob
}

#[test]
fn blobs_of_nydus_image_2_2_and_2_4_check_clean_and_damage_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let tar = layer5_tar(dir.path());
    let hex = "ab".repeat(32);
    let mut ran = 0;
    for version in ["2.2.0", "2.4.4"] {
        let Some(exe) = nydus_image(version) else {
            eprintln!("nydus-image {version} not installed: skipped");
            continue;
        };
        for (digester, compressor) in [
            ("blake3", "zstd"),
            ("sha256", "lz4_block"),
            ("blake3", "none"),
        ] {
            ran += 1;
            let path = nydus_blob(&exe, &tar, digester, compressor);
            // The inlined bootstrap names its blob by the placeholder, which no manifest holds
            // here: only those blob table problems are expected.
            let found: Vec<String> = blob_problems(&path, &hex)
                .unwrap()
                .into_iter()
                .filter(|p| !p.contains("blob table entry 0"))
                .collect();
            assert_eq!(
                found,
                Vec::<String>::new(),
                "{version} {digester} {compressor}"
            );
            // A byte of the first chunk flipped: that chunk fails its digest.
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[10] ^= 0xff;
            std::fs::write(&path, &bytes).unwrap();
            let found = blob_problems(&path, &hex).unwrap();
            assert!(
                found
                    .iter()
                    .any(|p| p.contains(&format!("blob {hex}: chunk"))
                        && (p.contains("digest") || p.contains("decompressed"))),
                "{version} {digester} {compressor}: {found:#?}"
            );
        }
    }
    eprintln!("{ran} nydus-image v5 blobs checked");
}

#[test]
fn a_cut_or_damaged_v5_blob_tail_is_a_problem_not_a_panic() {
    let Some(exe) = nydus_image("2.2.0").or_else(|| nydus_image("2.4.4")) else {
        eprintln!("no nydus-image installed: skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tar = layer5_tar(dir.path());
    let path = nydus_blob(&exe, &tar, "blake3", "zstd");
    let sound = std::fs::read(&path).unwrap();
    let hex = "cd".repeat(32);
    let judge = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        blob_problems(&path, &hex).unwrap()
    };
    for len in [0, 100, 511, 512, 1024, sound.len() / 2, sound.len() - 1] {
        let found = judge(&sound[..len]);
        assert!(!found.is_empty(), "cut at {len}");
    }
    // The `image.blob` header's size one byte off: it no longer covers the chunk data.
    let boot = BootstrapReader::open(inlined(&sound)).unwrap();
    let header_at = sound.len() - 512 - boot.bytes().len() - 512;
    let mut b = sound.clone();
    b[header_at..header_at + 10].copy_from_slice(b"image.blab");
    let found = judge(&b);
    assert!(
        has(
            &found,
            &["blob cdcd", "the tar header before the bootstrap"]
        ),
        "{found:#?}"
    );
    // Every byte of the tail flipped in turn: problems, never a panic.
    for at in (header_at..sound.len()).step_by(7) {
        let mut b = sound.clone();
        b[at] ^= 0x5a;
        let _ = judge(&b);
    }
}

/// The bootstrap a v5 blob ends with.
fn inlined(blob: &[u8]) -> Vec<u8> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), blob).unwrap();
    let reader = crate::blob::reader::BlobReader::open(file.path()).unwrap();
    crate::blob::reader_v5::sections(&reader).unwrap().bootstrap
}

#[test]
fn huge_counts_and_shared_broken_child_ranges_end_quickly() {
    use crate::ondisk::rafs_v5::*;
    let started = std::time::Instant::now();
    // An inode table claiming 2^32 entries, the root claiming almost as many children.
    let mut b = fixture();
    b[56..60].copy_from_slice(&u32::MAX.to_le_bytes());
    let root = record_at(&b, 1);
    b[root + 96..root + 100].copy_from_slice(&(u32::MAX - 2).to_le_bytes());
    let found = problems(b);
    assert!(
        has(&found, &["/ (inode 1)", "outside the inode table"]),
        "{found:#?}"
    );
    // 50k directories, each naming the same 50k broken entries as its children: 2.5·10^9
    // failed reads without the budget.
    let n = 100_000u32;
    let table_at = RafsV5SuperBlock::SIZE;
    let root_at = table_at + align8(4 * n as usize);
    let dir_at = root_at + RafsV5Inode::SIZE + 8;
    let sb = RafsV5SuperBlock {
        s_block_size: 4096,
        s_inode_table_entries: n,
        s_blob_table_offset: (dir_at + RafsV5Inode::SIZE + 8) as u64,
        ..RafsV5SuperBlock::default()
    };
    let mut out = sb.to_bytes().to_vec();
    let mut table = vec![u32::MAX; n as usize];
    table[0] = (root_at >> 3) as u32;
    table[1..n as usize / 2].fill((dir_at >> 3) as u32);
    out.extend(encode_u32_table(&table));
    let dir = |ino: u64, first: u32, count: u32, name: u8| {
        let inode = RafsV5Inode {
            i_ino: ino,
            i_parent: ino - 1,
            i_mode: libc::S_IFDIR | 0o755,
            i_nlink: 2,
            i_child_index: first,
            i_child_count: count,
            i_name_size: 1,
            ..RafsV5Inode::default()
        };
        let mut r = inode.to_bytes().to_vec();
        r.extend([name, 0, 0, 0, 0, 0, 0, 0]);
        r
    };
    out.extend(dir(1, 2, n / 2 - 1, b'/'));
    out.extend(dir(2, n / 2, n / 2, b'd'));
    // Every failed read is a problem: the list fills (the rest are counted), and the budget
    // ends the walk long before 2.5·10^9.
    let found = bootstrap_problems(out);
    assert_eq!(found.len(), crate::check::MAX_PROBLEMS);
    assert!(
        has(&found, &["/d (inode", "inode number 2 read through"]),
        "{:#?}",
        &found[..20]
    );
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
}
