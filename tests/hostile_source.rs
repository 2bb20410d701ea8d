//! Hostile input images on the JSON side (issue 13): whatever an index names, reading it ends at
//! once with a sane result or one clear error.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_nydus-offline");

/// Store `value` as a blob of the layout at `dir`; its descriptor as `media_type`.
fn put(dir: &Path, value: &Value, media_type: &str) -> Value {
    let bytes = serde_json::to_vec(value).unwrap();
    let hex = common::hex(&Sha256::digest(&bytes));
    fs::write(dir.join("blobs/sha256").join(&hex), &bytes).unwrap();
    json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
}

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A copy of the sample at `dir` whose index.json names the sample's manifest through `depth`
/// nested indexes, each naming the one below `fanout` times.
fn nested_sample(dir: &Path, depth: usize, fanout: usize) {
    common::run(
        Command::new("cp")
            .arg("-a")
            .arg(common::sample_image())
            .arg(dir),
    );
    let top: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut child = top["manifests"][0].clone();
    child.as_object_mut().unwrap().remove("annotations");
    for _ in 0..depth {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": vec![child.clone(); fanout],
        });
        child = put(dir, &index, INDEX);
    }
    child["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [child]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Indexes nested 7 deep, each naming the one below 50 times, the sample's manifest at the
/// bottom: walked naively, that is 50^7 walks (never ending).
#[test]
fn an_index_naming_one_child_many_times_at_every_level_is_read_once() {
    let s = common::scratch();
    let dir = s.path().join("in");
    nested_sample(&dir, 7, 50);
    let inspect = common::run(Command::new(BIN).args(["inspect", "--quick"]).arg(&dir));
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert_eq!(text.matches("linux/amd64: manifest").count(), 1, "{text}");
    let out = s.path().join("out");
    common::run(
        Command::new(BIN)
            .args(["convert", "-q"])
            .arg(&dir)
            .arg(&out),
    );
    common::run(
        Command::new(BIN)
            .arg("check")
            .arg(&out)
            .arg("--source")
            .arg(&dir),
    );
}

/// Deeper than the limit (8 levels) is one clear error naming it.
#[test]
fn indexes_nested_too_deep_are_one_clear_error() {
    let s = common::scratch();
    let dir = s.path().join("in");
    nested_sample(&dir, 10, 1);
    let out = Command::new(BIN)
        .args(["inspect", "--quick"])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("indexes nest deeper than 8 levels"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
