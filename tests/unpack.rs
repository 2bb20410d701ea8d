//! `nydus-offline unpack` (issue 19) judged by the real readers: a Nydus image unpacked to an
//! OCI image must unpack with umoci to exactly the tree the input image unpacks to, and to what
//! nydusd (2.2.0 and 2.4.4) shows of the Nydus image; converting the result again and unpacking
//! that gives the same tree (OCI -> Nydus -> OCI -> Nydus -> OCI). Damaged blobs are refused
//! with one error and no output.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::tree::{self, ListOptions, Listing};
use common::{layers, mounts, reference, run, unpack};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nydus-offline");

fn convert(input: &Path, out: &Path) {
    run(Command::new(BIN).arg("convert").arg(input).arg(out));
}

fn unpack_image(input: &Path, out: &Path) {
    run(Command::new(BIN).arg("unpack").arg(input).arg(out));
}

/// Directories an unpacker made up (no layer lists them) carry the time it ran: their mtimes
/// are not compared. A directory listed with an mtime keeps it on both sides.
fn forget_stamped(mut listing: Listing, since: i64) -> Listing {
    for entry in listing.entries.values_mut() {
        if entry.kind == "dir" && entry.mtime.is_some_and(|(s, _)| s >= since) {
            entry.mtime = None;
        }
    }
    listing
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 1
}

/// Convert the image tagged `latest` in `input` (an OCI layout), unpack the Nydus image, and
/// judge the result: umoci's tree of it equals umoci's tree of `input` and nydusd's of the
/// Nydus image; once more through convert and unpack, the same tree again.
fn round_trip(scratch: &Path, input: &Path) {
    let since = now();
    let expected = unpack::umoci(
        &format!("oci:{}:latest", input.display()),
        scratch,
        "expected",
        false,
    );
    let expected = forget_stamped(tree::list(&expected, ListOptions::ALL), since);

    let nydus = scratch.join("nydus");
    convert(input, &nydus);
    let plain = scratch.join("plain");
    unpack_image(&nydus, &plain);
    run(Command::new(BIN)
        .arg("check")
        .arg(&nydus)
        .arg("--source")
        .arg(&plain));
    let actual = unpack::umoci(
        &format!("oci:{}:latest", plain.display()),
        scratch,
        "actual",
        false,
    );
    let actual_all = forget_stamped(tree::list(&actual, ListOptions::ALL), since);
    tree::assert_same(&expected, &actual_all, "umoci of the unpacked image");

    let bootstrap = scratch.join("nydus.boot");
    reference::merged_bootstrap(&nydus, "latest", &bootstrap);
    let from_umoci = forget_stamped(tree::list(&actual, ListOptions::NYDUSD), since);
    for version in mounts::NYDUSD {
        let mnt = mounts::nydusd_localfs(
            version,
            &bootstrap,
            &nydus.join("blobs/sha256"),
            scratch,
            "n",
        );
        let shown = forget_stamped(tree::list(&mnt.dir, ListOptions::NYDUSD), since);
        tree::assert_same_nydusd(
            &shown,
            &from_umoci,
            &format!("umoci of the unpacked image against nydusd {version}"),
        );
    }

    let nydus2 = scratch.join("nydus2");
    convert(&plain, &nydus2);
    let plain2 = scratch.join("plain2");
    unpack_image(&nydus2, &plain2);
    let again = unpack::umoci(
        &format!("oci:{}:latest", plain2.display()),
        scratch,
        "again",
        false,
    );
    let again = forget_stamped(tree::list(&again, ListOptions::ALL), since);
    tree::assert_same(&expected, &again, "umoci after a second round trip");
}

#[test]
fn the_sample_round_trips() {
    let scratch = common::scratch();
    round_trip(scratch.path(), &common::sample_image());
}

#[test]
fn every_layer_merge_case_round_trips() {
    let scratch = common::scratch();
    let input = layers::oci_layout(&scratch.path().join("in"), &layers::merge_cases());
    // Layer 2 links hl/to-lower to layer 1's hl/src, and hl/to-lower-sym to its symlink hl/sym:
    // the layer's own bootstrap holds copies, the unpacked layer links them again.
    round_trip(scratch.path(), &input);
}

#[test]
fn bottom_layer_whiteouts_round_trip() {
    let scratch = common::scratch();
    let input = layers::oci_layout(&scratch.path().join("in"), &layers::bottom_whiteout_cases());
    round_trip(scratch.path(), &input);
}

#[test]
fn every_tar_feature_round_trips() {
    let scratch = common::scratch();
    let input = layers::oci_layout(&scratch.path().join("in"), &[layers::feature_layer()]);
    round_trip(scratch.path(), &input);
}

#[test]
fn debian_minbase_round_trips() {
    let scratch = common::scratch();
    round_trip(scratch.path(), &common::corpus("debian-minbase.oci"));
}

#[test]
fn debian_python_round_trips() {
    let scratch = common::scratch();
    round_trip(scratch.path(), &common::corpus("debian-python.oci"));
}

/// The unpacked image's config: diff_ids of the new layers, the bootstrap layer's history
/// entry gone, everything else as the source had it; the same bytes on a second run and with
/// one thread or several.
#[test]
fn the_config_is_restored_and_unpacking_is_deterministic() {
    let scratch = common::scratch();
    let nydus = scratch.path().join("nydus");
    convert(&common::sample_image(), &nydus);
    let out = |name: &str, jobs: &str| -> PathBuf {
        let out = scratch.path().join(name);
        run(Command::new(BIN)
            .args(["unpack", "-j", jobs])
            .arg(&nydus)
            .arg(&out));
        out
    };
    let (a, b, c) = (out("a", "1"), out("b", "2"), out("c", "1"));
    for other in [&b, &c] {
        common::assert_same_files(&a, other);
    }
    let json = |dir: &Path, digest: &str| -> Value {
        serde_json::from_slice(&fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap())
            .unwrap()
    };
    let index: Value = serde_json::from_slice(&fs::read(a.join("index.json")).unwrap()).unwrap();
    let manifest = json(&a, index["manifests"][0]["digest"].as_str().unwrap());
    let config = json(&a, manifest["config"]["digest"].as_str().unwrap());
    let source_index: Value =
        serde_json::from_slice(&fs::read(common::sample_image().join("index.json")).unwrap())
            .unwrap();
    let source_manifest = json(
        &common::sample_image(),
        source_index["manifests"][0]["digest"].as_str().unwrap(),
    );
    let source_config = json(
        &common::sample_image(),
        source_manifest["config"]["digest"].as_str().unwrap(),
    );
    assert_eq!(config["history"], source_config["history"]);
    assert_eq!(config["config"], source_config["config"]);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for (layer, diff_id) in layers
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
    {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let blob = a
            .join("blobs/sha256")
            .join(&layer["digest"].as_str().unwrap()[7..]);
        let tar = Command::new("gzip").arg("-dc").arg(&blob).output().unwrap();
        assert_eq!(
            format!("sha256:{}", common::hex(&sha2_digest(&tar.stdout))),
            *diff_id
        );
    }
}

fn sha2_digest(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

/// A merged index (`--merge-platform`) holds the original beside the Nydus manifest: only the
/// Nydus one is unpacked.
#[test]
fn a_merged_index_unpacks_its_nydus_manifest_only() {
    let scratch = common::scratch();
    let nydus = scratch.path().join("merged");
    run(Command::new(BIN)
        .args(["convert", "--merge-platform"])
        .arg(common::sample_image())
        .arg(&nydus));
    let plain = scratch.path().join("plain");
    let out = run(Command::new(BIN)
        .args(["unpack", "--json"])
        .arg(&nydus)
        .arg(&plain));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["images"].as_array().unwrap().len(),
        1,
        "{summary:#}"
    );
    assert_eq!(summary["images"][0]["layers"], 2);
}

/// A chunk whose bytes do not match the digest its blob records, and an input with no Nydus
/// manifest: one error naming the problem, exit code 3, no output.
#[test]
fn damaged_and_wrong_inputs_are_refused_with_nothing_written() {
    let scratch = common::scratch();
    let refused = |input: &Path, needle: &str| {
        let out = scratch.path().join("refused");
        let r = Command::new(BIN)
            .arg("unpack")
            .arg(input)
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!out.exists());
    };
    refused(&common::sample_image(), "holds no Nydus manifest");

    let nydus = scratch.path().join("nydus");
    convert(&common::sample_image(), &nydus);
    // Flip a byte of the first blob's first chunk (stored uncompressed or not, its digest no
    // longer matches what blob.digest records, or it no longer decompresses).
    let index: Value =
        serde_json::from_slice(&fs::read(nydus.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value =
        serde_json::from_slice(&fs::read(nydus.join("blobs/sha256").join(&digest[7..])).unwrap())
            .unwrap();
    let blob = nydus
        .join("blobs/sha256")
        .join(&manifest["layers"][0]["digest"].as_str().unwrap()[7..]);
    let mut bytes = fs::read(&blob).unwrap();
    bytes[100] ^= 0x55;
    fs::write(&blob, bytes).unwrap();
    refused(&nydus, "chunk");
}
