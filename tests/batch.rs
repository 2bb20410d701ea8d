//! `convert --batch-size` (issue 16): the chunks of small single-chunk files compressed
//! together. A batch image needs nydus 2.3 or newer: nydusd 2.4.4 (localfs and registry) must
//! show umoci's tree with every file's content, nydus-image 2.4.4 must accept the bootstrap,
//! and nydusd 2.2.0 must refuse it at mount, not serve wrong data. `check --source` reads every
//! batch back, and the same input gives the same bytes with any --jobs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::layers::{self, Entry, Tar, noise};
use common::tree::{self, ListOptions};
use common::{mounts, reference, registry, run, unpack};

/// A layer of many small files (text that compresses and noise that does not), a few larger
/// ones, repeats and a hardlink; and a second layer changing some of them.
fn layers() -> Vec<Vec<u8>> {
    let mut lower = Tar::new();
    lower.add(Entry::dir("lib"));
    for i in 0..400usize {
        let data = if i % 3 == 0 {
            noise(100 + i * 37 % 9000, i as u64)
        } else {
            format!("module {i}\n").repeat(1 + i % 300).into_bytes()
        };
        lower.add(Entry::file(format!("lib/m{i:03}.py"), data));
    }
    lower
        .add(Entry::file("lib/big.bin", noise(2_500_000, 7)))
        .add(Entry::file("lib/half.bin", noise(40_000, 8)))
        .add(Entry::file("lib/same-as-m001.py", "module 1\n".repeat(2)))
        .add(Entry::hardlink("lib/link-to-m002.py", "lib/m002.py"))
        .add(Entry::file("lib/empty", ""));
    let upper = Tar::new()
        .add(Entry::dir("app"))
        .add(Entry::file("app/new.txt", "new\n".repeat(1000)))
        .add(Entry::file("lib/m005.py", "changed\n"))
        .add(Entry::file("app/copy.py", "module 4\n".repeat(5)))
        .finish();
    vec![lower.finish(), upper]
}

/// Convert `input` into `scratch/name` with `args`; the `--json` report.
fn convert(input: &Path, out: &Path, args: &[&str]) -> serde_json::Value {
    let result = run(Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
        .arg("convert")
        .arg(input)
        .arg(out)
        .arg("--json")
        .args(args));
    serde_json::from_slice(&result.stdout).unwrap()
}

fn blob_size(report: &serde_json::Value) -> u64 {
    report["totals"]["blob_size"].as_u64().unwrap()
}

#[test]
fn a_batch_image_reads_as_umoci_shows_it_through_nydus_2_4_and_2_2_refuses_it() {
    let scratch = common::scratch();
    let s = scratch.path();
    let input = layers::oci_layout(&s.join("in"), &layers());
    let out = s.join("out");
    let args = ["--batch-size", "64KiB"];
    let batched = convert(&input, &out, &args);
    let plain = convert(&input, &s.join("plain"), &[]);
    assert!(
        blob_size(&batched) < blob_size(&plain),
        "batching made the blobs no smaller: {} vs {}",
        blob_size(&batched),
        blob_size(&plain)
    );
    // The same chunks are stored, whatever frames hold them.
    assert_eq!(batched["totals"]["chunks"], plain["totals"]["chunks"]);

    // The same bytes with one worker.
    let again = s.join("again");
    convert(&input, &again, &["--batch-size", "64KiB", "--jobs", "1"]);
    common::assert_same_files(&out, &again);

    // Our own reading: every batch decompressed, every file compared with the source.
    common::check_with_source(&out, &input);

    let boot = s.join("out.boot");
    reference::merged_bootstrap(&out, "latest", &boot);
    let blobs = out.join("blobs/sha256");
    let newest = mounts::NYDUSD[1];
    let checked = reference::check_with(newest, &boot, &blobs);
    assert!(checked.contains("batch"), "{checked}");

    let expected = unpack::expected_nydusd(&input, s);
    mounts::assert_localfs_shows(&[newest], &boot, &blobs, s, &expected, "a batch image");
    {
        let registry = registry::Registry::start();
        registry.push(&out, "latest", "batched");
        let mnt = mounts::nydusd_registry(newest, &boot, &registry.host, "batched", s, "registry");
        let actual = tree::list(&mnt.dir, ListOptions::NYDUSD);
        tree::assert_same_nydusd(
            &expected,
            &actual,
            "nydusd 2.4.4 (registry) of a batch image",
        );
    }
    // nydusd 2.2.0 predates batch chunks: it must refuse the blob table entry.
    let log = mounts::nydusd_localfs_refuses(mounts::NYDUSD[0], &boot, &blobs, s, "old");
    assert!(log.contains("invalid blob features"), "{log}");
}

#[test]
fn batch_size_is_held_to_nydus_image_rules() {
    let scratch = common::scratch();
    let sample = common::sample_image();
    for (args, expected) in [
        (&["--batch-size", "3000"][..], "power of two"),
        (&["--batch-size", "32MiB"][..], "power of two"),
        (&["--batch-size", "2MiB"][..], "larger than --chunk-size"),
        (
            &["--batch-size", "128KiB", "--chunk-size", "64KiB"][..],
            "larger than --chunk-size",
        ),
    ] {
        let out: PathBuf = scratch.path().join("out");
        let result = Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
            .arg("convert")
            .arg(&sample)
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!out.exists());
    }
    // 0 is off: the default output, byte for byte.
    let (zero, default) = (scratch.path().join("zero"), scratch.path().join("default"));
    convert(&sample, &zero, &["--batch-size", "0"]);
    convert(&sample, &default, &[]);
    common::assert_same_files(&zero, &default);
    assert!(fs::read_dir(&zero).is_ok());
}
