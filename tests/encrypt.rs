//! `convert --encrypt` (issue 16): every blob's chunk data encrypted with AES-128-XTS, as
//! nydus-image --encrypt writes it. A blob alone must not hold the files' bytes; nydusd 2.4.4
//! (localfs and registry) must show umoci's tree with every file's content, alone and with
//! batch chunks; nydus-image 2.4.4 must accept the bootstrap; nydusd 2.2.0 must refuse the image
//! at mount; `check --source` must read every chunk back; a rerun gives the same bytes.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::layers::{self, Entry, Tar, noise};
use common::tree::{self, ListOptions};
use common::{mounts, reference, registry, run, unpack};

/// A line no compressor hides: it must show in a plain blob stored raw, and not in an
/// encrypted one.
const SECRET: &str = "the-secret-password-is-hunter2-and-nobody-may-read-it";

fn layers() -> Vec<Vec<u8>> {
    let mut lower = Tar::new();
    lower
        .add(Entry::dir("etc"))
        .add(Entry::file("etc/secret", SECRET.repeat(3)))
        .add(Entry::file("etc/tiny", "ab"))
        .add(Entry::file("etc/fifteen", "123456789012345"))
        .add(Entry::file("etc/sixteen", "1234567890123456"))
        .add(Entry::file("big.bin", noise(2_200_000, 3)));
    for i in 0..60usize {
        lower.add(Entry::file(
            format!("etc/f{i}"),
            format!("line {i}\n").repeat(i + 1),
        ));
    }
    let upper = Tar::new()
        .add(Entry::file("etc/secret", format!("{SECRET} changed")))
        .add(Entry::file("new", noise(5000, 4)))
        .finish();
    vec![lower.finish(), upper]
}

fn convert(input: &Path, out: &Path, args: &[&str]) {
    run(Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
        .arg("convert")
        .arg(input)
        .arg(out)
        .arg("-q")
        .args(args));
}

/// Whether any blob of the layout holds `needle`.
fn blobs_hold(layout: &Path, needle: &[u8]) -> bool {
    fs::read_dir(layout.join("blobs/sha256")).unwrap().any(|e| {
        let bytes = fs::read(e.unwrap().path()).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

#[test]
fn an_encrypted_image_hides_file_bytes_and_reads_right_through_nydus_2_4_only() {
    let scratch = common::scratch();
    let s = scratch.path();
    let input = layers::oci_layout(&s.join("in"), &layers());

    // Stored raw (--compressor none), the plain blobs show the secret; encrypted ones do not.
    let plain = s.join("plain");
    convert(&input, &plain, &["--compressor", "none"]);
    assert!(blobs_hold(&plain, SECRET.as_bytes()));
    let sealed = s.join("sealed");
    convert(&input, &sealed, &["--compressor", "none", "--encrypt"]);
    assert!(!blobs_hold(&sealed, SECRET.as_bytes()));

    let rootfs = unpack::umoci(
        &format!("oci:{}:latest", input.display()),
        s,
        "expected",
        false,
    );
    let expected = tree::list(&rootfs, ListOptions::NYDUSD);
    let newest = mounts::NYDUSD[1];
    for (name, args) in [
        ("enc", &["--encrypt"][..]),
        ("enc-raw", &["--encrypt", "--compressor", "none"][..]),
        ("enc-batch", &["--encrypt", "--batch-size", "16KiB"][..]),
    ] {
        let out = s.join(name);
        convert(&input, &out, args);
        let again = s.join(format!("{name}-again"));
        let mut rerun = args.to_vec();
        rerun.extend(["--jobs", "1"]);
        convert(&input, &again, &rerun);
        common::assert_same_files(&out, &again);

        common::check_with_source(&out, &input);
        let boot = s.join(format!("{name}.boot"));
        reference::merged_bootstrap(&out, "latest", &boot);
        let blobs = out.join("blobs/sha256");
        let checked = reference::check_with(newest, &boot, &blobs);
        assert!(checked.contains("encrypt"), "{name}: {checked}");
        mounts::assert_localfs_shows(&[newest], &boot, &blobs, s, &expected, name);
        let log = mounts::nydusd_localfs_refuses(mounts::NYDUSD[0], &boot, &blobs, s, name);
        assert!(log.contains("invalid blob features"), "{name}: {log}");
    }

    let out = s.join("enc");
    let boot = s.join("enc.boot");
    let registry = registry::Registry::start();
    registry.push(&out, "latest", "sealed");
    let mnt = mounts::nydusd_registry(newest, &boot, &registry.host, "sealed", s, "registry");
    let actual = tree::list(&mnt.dir, ListOptions::NYDUSD);
    tree::assert_same_nydusd(
        &expected,
        &actual,
        "nydusd 2.4.4 (registry) of an encrypted image",
    );
}

#[test]
fn encrypt_is_refused_with_a_chunk_dictionary() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    let result = common::nydus_offline(&[
        &"convert",
        &common::sample_image(),
        &out,
        &"--encrypt",
        &"--chunk-dict",
        &"bootstrap=x",
    ]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--chunk-dict"), "{stderr}");
    assert!(!out.exists());
}
