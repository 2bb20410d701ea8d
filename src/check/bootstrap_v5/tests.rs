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
