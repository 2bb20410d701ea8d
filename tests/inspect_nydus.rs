//! `nydus-offline inspect` of Nydus images (issue 19): ours and one built by nydus-image 2.2.0
//! and packaged as nydus-snapshotter does, each shown from its bootstrap, with the blobs the
//! manifest lists, as many inodes as umoci unpacks paths, and the source it came from.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{reference, run, unpack};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nydus-offline");

/// `inspect --json LAYOUT`'s manifests (of its only image).
fn inspect_manifests(layout: &Path) -> Vec<Value> {
    let out = run(Command::new(BIN).arg("inspect").arg("--json").arg(layout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["images"].as_array().unwrap().len(), 1, "{report:#}");
    report["images"][0]["manifests"].as_array().unwrap().clone()
}

/// `inspect --json LAYOUT`'s only manifest.
fn inspect_json(layout: &Path) -> Value {
    let manifests = inspect_manifests(layout);
    assert_eq!(manifests.len(), 1, "{manifests:#?}");
    manifests[0].clone()
}

/// (digest hex, size) of the manifest's Nydus blob layers, bottom first.
fn blob_layers(layout: &Path, manifest_digest: &str) -> Vec<(String, u64)> {
    let hex = manifest_digest.strip_prefix("sha256:").unwrap();
    let manifest: Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["mediaType"] == "application/vnd.oci.image.layer.nydus.blob.v1")
        .map(|l| {
            let digest = l["digest"].as_str().unwrap();
            (digest[7..].to_string(), l["size"].as_u64().unwrap())
        })
        .collect()
}

/// Every path of a tree, the root included (what a bootstrap counts as inodes).
fn paths(root: &Path) -> u64 {
    walkdir::WalkDir::new(root).into_iter().count() as u64
}

/// What both images must show: the blob table is the manifest's blob layers with their sizes,
/// the inode count is umoci's path count, chunk counts add up.
fn assert_shows(manifest: &Value, layout: &Path, expected_paths: u64) {
    let nydus = &manifest["nydus"];
    assert!(nydus.is_object(), "not shown as Nydus: {manifest:#}");
    assert_eq!(nydus["rafs_version"], "6");
    let digest = manifest["digest"].as_str().unwrap();
    let listed: Vec<(String, u64)> = nydus["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, blob_layers(layout, digest));
    for (id, size) in &listed {
        assert_eq!(
            fs::metadata(layout.join("blobs/sha256").join(id))
                .unwrap()
                .len(),
            *size
        );
    }
    assert_eq!(nydus["inodes"], expected_paths);
    let chunks: u64 = nydus["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["chunk_count"].as_u64().unwrap())
        .sum();
    assert!(chunks > 0);
    assert_eq!(nydus["chunks"], chunks);
}

#[test]
fn inspect_shows_our_nydus_image_and_nydus_images_from_their_bootstraps() {
    let scratch = common::scratch();
    let expected = paths(&unpack::umoci_sample(scratch.path()));

    let ours = scratch.path().join("ours");
    run(Command::new(BIN)
        .arg("convert")
        .arg(common::sample_image())
        .arg(&ours));
    let manifest = inspect_json(&ours);
    assert_shows(&manifest, &ours, expected);
    let source_index: Value =
        serde_json::from_slice(&fs::read(common::sample_image().join("index.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["nydus"]["source_manifest"],
        source_index["manifests"][0]["digest"]
    );
    let text = run(Command::new(BIN).arg("inspect").arg(&ours));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains(": Nydus manifest sha256:"), "{text}");
    assert!(text.contains("    RAFS v6, "), "{text}");
    assert!(text.contains("nydus-offline check"), "{text}");

    // The same image built by nydus-image and packaged as the snapshotter's converter does.
    let image = reference::read_oci(&common::sample_image(), "latest");
    let built = reference::build(&image, scratch.path(), &[]);
    let theirs = scratch.path().join("theirs");
    reference::package_oci(&built, &image, &theirs, "latest");
    let manifest = inspect_json(&theirs);
    assert_shows(&manifest, &theirs, expected);
}

#[test]
fn inspect_shows_both_manifests_of_a_merged_index() {
    let scratch = common::scratch();
    let expected = paths(&unpack::umoci_sample(scratch.path()));
    let out = scratch.path().join("merged");
    run(Command::new(BIN)
        .args(["convert", "--merge-platform"])
        .arg(common::sample_image())
        .arg(&out));
    let manifests = inspect_manifests(&out);
    assert_eq!(manifests.len(), 2, "{manifests:#?}");
    // The original, kept as an ordinary image (its layers listed and measured)...
    let original = &manifests[0];
    assert!(original["nydus"].is_null(), "{original:#}");
    assert!(original["layers"].as_array().unwrap().len() >= 2);
    // ...and the Nydus one, shown from its bootstrap.
    assert_shows(&manifests[1], &out, expected);
}

#[test]
fn converting_a_nydus_image_again_says_what_it_is() {
    let scratch = common::scratch();
    let ours = scratch.path().join("ours");
    run(Command::new(BIN)
        .arg("convert")
        .arg(common::sample_image())
        .arg(&ours));
    let again = Command::new(BIN)
        .arg("convert")
        .arg(&ours)
        .arg(scratch.path().join("again"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already a Nydus image"), "{stderr}");
    assert!(!scratch.path().join("again").exists());
}
