//! `convert --chunk-dict bootstrap=PATH` (issue 16) with a dictionary nydus-image 2.2.0 wrote
//! (a bare bootstrap: its blob stays outside the output), judged by nydusd 2.2.0 and the newest
//! through a blob directory holding both, and by `nydus-image check`; `check --chunk-dict`;
//! and hostile or unfit dictionaries refused with one clear error and nothing written. Our own
//! dictionaries (a Nydus image given as PATH) are judged on the corpus in tests/convert.rs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::layers::{self, Entry, Tar, noise};
use common::tree::Listing;
use common::{mounts, nydus_bin, reference, run, unpack};
use nydus_offline::ondisk::rafs_v6::reader::BootstrapReader;

const MIB: usize = 1 << 20;

/// The base layer a dictionary is made of: a file of three chunks and a small one.
fn base_layer() -> Vec<u8> {
    Tar::new()
        .add(Entry::dir("usr"))
        .add(Entry::file("usr/a.bin", noise(5 * MIB / 2, 1)))
        .add(Entry::file("usr/b.txt", "the base\n"))
        .finish()
}

/// The image converted against it: the base, then a layer with a new file of two chunks and a
/// copy of the base's big file.
fn image(dir: &Path) -> PathBuf {
    let upper = Tar::new()
        .add(Entry::dir("opt"))
        .add(Entry::file("opt/c.bin", noise(3 * MIB / 2, 2)))
        .add(Entry::file("opt/a-copy", noise(5 * MIB / 2, 1)))
        .finish();
    layers::oci_layout(dir, &[base_layer(), upper])
}

/// The dictionary nydus-image `version` writes for the base layer: (bootstrap, blob directory).
fn nydus_image_dict(scratch: &Path, version: &str) -> (PathBuf, PathBuf) {
    let tar = scratch.join("base.tar");
    fs::write(&tar, base_layer()).unwrap();
    let (boot, blobs) = (scratch.join("dict.boot"), scratch.join("dict-blobs"));
    fs::create_dir_all(&blobs).unwrap();
    let bin = match version {
        "2.2.0" => nydus_bin("nydus-image"),
        newer => mounts::nydusd_bin(newer).with_file_name("nydus-image"),
    };
    run(Command::new(bin)
        .args(["create", "--log-level", "warn", "--type", "tar-rafs"])
        .args(["--fs-version", "6", "--chunk-size", "0x100000"])
        .args(["--compressor", "zstd", "--digester", "blake3"])
        .arg("--bootstrap")
        .arg(&boot)
        .arg("--blob-dir")
        .arg(&blobs)
        .arg(&tar));
    (boot, blobs)
}

/// One directory with every blob of `dirs`, as a localfs backend needs them.
fn blob_dir(scratch: &Path, dirs: &[&Path]) -> PathBuf {
    let all = scratch.join("all-blobs");
    fs::create_dir_all(&all).unwrap();
    for dir in dirs {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            fs::hard_link(e.path(), all.join(e.file_name())).unwrap();
        }
    }
    all
}

/// Dictionaries nydus-image 2.2.0 and 2.4.4 write (2.4 marks every chunk HAS_CRC32).
#[test]
fn nydus_image_dictionaries_are_referred_to_and_the_image_reads_right_with_their_blob() {
    let scratch = common::scratch();
    let input = image(&scratch.path().join("in"));
    let expected = unpack::expected_nydusd(&input, scratch.path());
    for version in mounts::NYDUSD {
        let s = &scratch.path().join(version);
        fs::create_dir_all(s).unwrap();
        over_a_nydus_image_dictionary(s, version, &input, &expected);
    }
}

/// Convert `input` against nydus-image `version`'s dictionary of its base layer, and judge it.
fn over_a_nydus_image_dictionary(s: &Path, version: &str, input: &Path, expected: &Listing) {
    let (dict_boot, dict_blobs) = nydus_image_dict(s, version);
    let out = s.join("out");
    let dict = format!("bootstrap={}", dict_boot.display());
    let result =
        common::nydus_offline(&[&"convert", &input, &out, &"--json", &"--chunk-dict", &dict]);
    assert!(result.status.success(), "{result:?}");
    let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    let layers = report["platforms"][0]["layers"].as_array().unwrap();
    let blob = |i: usize, key: &str| layers[i]["blob"][key].as_u64().unwrap();
    // The base layer: all four chunks in the dictionary, nothing stored.
    assert_eq!((blob(0, "chunks"), blob(0, "dict_hits")), (0, 4));
    // The upper layer: only the new file's two chunks; the copy is found in the image's table.
    assert_eq!((blob(1, "chunks"), blob(1, "dict_hits")), (2, 0));
    assert_eq!(blob(1, "dedup_hits"), 3);

    // The dictionary's blob is not in the output: the run says so and names it.
    let dict_blob = fs::read_dir(&dict_blobs).unwrap().next().unwrap().unwrap();
    let dict_id = dict_blob.file_name().into_string().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains(&dict_id), "{stderr}");
    assert!(!out.join("blobs/sha256").join(&dict_id).exists());

    // check refuses the foreign blob unless told it is the dictionary's.
    let plain = common::nydus_offline(&[&"check", &out]);
    assert_eq!(plain.status.code(), Some(5), "{plain:?}");
    assert!(String::from_utf8_lossy(&plain.stdout).contains("give check --chunk-dict"));
    let told = common::nydus_offline(&[&"check", &out, &"--chunk-dict", &dict]);
    assert!(told.status.success(), "{told:?}");

    // The readers, with the dictionary's blob beside the image's.
    let boot = s.join("merged.boot");
    reference::merged_bootstrap(&out, "latest", &boot);
    let blobs = blob_dir(s, &[&out.join("blobs/sha256"), &dict_blobs]);
    reference::check(&boot, &blobs);
    let what = format!("an image over nydus-image {version}'s dictionary");
    mounts::assert_localfs_shows(&mounts::NYDUSD, &boot, &blobs, s, expected, &what);
}

/// A dictionary of our own (the base converted, its merged bootstrap), for damaging.
fn our_dict(scratch: &Path) -> PathBuf {
    let base = layers::oci_layout(&scratch.join("base"), &[base_layer()]);
    let out = scratch.join("base-nydus");
    run(Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
        .arg("convert")
        .arg(&base)
        .arg(&out));
    let boot = scratch.join("ours.boot");
    reference::merged_bootstrap(&out, "latest", &boot);
    boot
}

/// Convert the test image against the dictionary `dict` with `args`: it must fail with exit
/// code `code`, an error naming `expected`, and no output.
fn refused(scratch: &Path, dict: &Path, args: &[&str], code: i32, expected: &str) {
    let input = image(&scratch.join("in"));
    let out = scratch.join("refused-out");
    let spec = format!("bootstrap={}", dict.display());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nydus-offline"));
    cmd.arg("convert")
        .arg(&input)
        .arg(&out)
        .args(["--chunk-dict", &spec])
        .args(args);
    let result = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    assert!(!out.exists(), "{args:?}: an output was written");
}

#[test]
fn unfit_and_damaged_dictionaries_are_refused_naming_the_dictionary_and_the_problem() {
    let scratch = common::scratch();
    let s = scratch.path();
    let dict = our_dict(s);
    let name = dict.display().to_string();

    // Built with other options: their digests never match ours.
    refused(
        s,
        &dict,
        &["--chunk-size", "64KiB"],
        3,
        "chunk size is 0x100000",
    );
    refused(
        s,
        &dict,
        &["--digester", "sha256"],
        3,
        "digested with Blake3",
    );
    refused(s, &dict, &["--compressor", "lz4_block"], 3, "--compressor");

    // Damaged chunk records: each field a reader would follow.
    let bytes = fs::read(&dict).unwrap();
    let reader = BootstrapReader::open(bytes.clone()).unwrap();
    let table = reader.ext.s_chunk_table_offset as usize;
    let damaged = |field: usize, value: &[u8], expected: &str| {
        let mut b = bytes.clone();
        b[table + field..table + field + value.len()].copy_from_slice(value);
        let path = s.join("damaged.boot");
        fs::write(&path, &b).unwrap();
        refused(s, &path, &[], 3, expected);
    };
    damaged(32, &9u32.to_le_bytes(), "chunk record 0: names blob 9");
    damaged(36, &8u32.to_le_bytes(), "chunk record 0: flags 0x8");
    damaged(
        44,
        &(2 * MIB as u32).to_le_bytes(),
        "chunk record 0: uncompressed size",
    );
    damaged(48, &u64::MAX.to_le_bytes(), "chunk record 0: bytes at");
    damaged(
        56,
        &4097u64.to_le_bytes(),
        "chunk record 0: uncompressed offset 4097",
    );
    damaged(72, &1000u32.to_le_bytes(), "chunk record 0: ci index 1000");

    // Not a bootstrap at all, or cut short.
    let path = s.join("short.boot");
    fs::write(&path, &bytes[..2000]).unwrap();
    refused(s, &path, &[], 3, "short.boot");
    let path = s.join("text.boot");
    fs::write(&path, "not a bootstrap").unwrap();
    refused(s, &path, &[], 3, "text.boot");
    assert!(name.ends_with("ours.boot"));
}

#[test]
fn a_dictionary_kind_other_than_bootstrap_is_a_usage_error() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    let result = common::nydus_offline(&[
        &"convert",
        &common::sample_image(),
        &out,
        &"--chunk-dict",
        &"boltdb=/x",
    ]);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("bootstrap=PATH"));
    assert!(!out.exists());
}
