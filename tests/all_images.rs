//! `convert --all-images` (issue 18): every image of an input in one run, each under its own
//! tags, a layer chain shared between images converted and stored once, and each image exactly
//! what converting it alone gives.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::layers::{self, Entry, Tar};
use common::run;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nydus-offline");

/// Copy the image tagged `latest` of the layout `from` into the layout `into` as `tag`.
fn add(from: &Path, into: &Path, tag: &str) {
    add_tagged(from, "latest", into, tag);
}

/// Copy the image tagged `from_tag` of the layout `from` into the layout `into` as `tag`.
fn add_tagged(from: &Path, from_tag: &str, into: &Path, tag: &str) {
    run(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:{from_tag}", from.display()))
        .arg(format!("oci:{}:{tag}", into.display())));
}

/// Tag → digest of `index.json`.
fn tags(layout: &Path) -> Vec<(String, String)> {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_image_under_its_tags_shared_layers_once_each_as_converted_alone() {
    let scratch = common::scratch();
    let base = Tar::new()
        .add(Entry::dir("etc"))
        .add(Entry::file("etc/base", layers::noise(300_000, 1)))
        .finish();
    let top = |n: u64| {
        Tar::new()
            .add(Entry::file(
                format!("app-{n}"),
                layers::noise(50_000, n + 10),
            ))
            .finish()
    };
    let one = layers::oci_layout(&scratch.path().join("one"), &[base.clone(), top(1)]);
    let two = layers::oci_layout(&scratch.path().join("two"), &[base, top(2)]);
    let input = scratch.path().join("mirror");
    add(&one, &input, "one");
    add(&two, &input, "two");
    add(&common::sample_image(), &input, "sample");
    add(&common::sample_image(), &input, "sample-again");

    let out = scratch.path().join("out");
    let report = run(Command::new(BIN)
        .args(["convert", "--all-images", "--json"])
        .arg(&input)
        .arg(&out));
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    let written = tags(&out);
    let names: Vec<&str> = written.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, ["one", "two", "sample", "sample-again"]);
    assert_eq!(written[2].1, written[3].1, "one image, two tags");
    assert_eq!(report["images"].as_array().unwrap().len(), 3, "{report:#}");
    // The second image's base layer is the first's: converted once, its blob listed by both.
    assert_eq!(report["platforms"][1]["shared_layers"], 1, "{report:#}");
    run(Command::new(BIN).arg("check").arg(&out));

    // Each image is what converting it alone gives, byte for byte.
    for (tag, digest) in &written {
        let alone = scratch.path().join(format!("alone-{tag}"));
        run(Command::new(BIN)
            .args(["convert", "--image", tag, "--tag", tag])
            .arg(&input)
            .arg(&alone));
        let (_, alone_digest) = &tags(&alone)[0];
        if tag == "sample-again" {
            // Its name is its second one: the source reference annotation says "sample".
            continue;
        }
        assert_eq!(alone_digest, digest, "{tag}");
    }
}

#[test]
fn all_images_refuses_what_names_one_image() {
    let scratch = common::scratch();
    for extra in [["--image", "latest"], ["--tag", "x"], ["--digestfile", "d"]] {
        let r = Command::new(BIN)
            .args(["convert", "--all-images"])
            .args(extra)
            .arg(common::sample_image())
            .arg(scratch.path().join("out"))
            .output()
            .unwrap();
        assert_eq!(r.status.code(), Some(2), "{extra:?}");
        assert!(!scratch.path().join("out").exists());
    }
}

/// Two layouts, one image each (tagged `one` and `two`), the first's base layer shared.
fn two_layouts(scratch: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let base = Tar::new()
        .add(Entry::file("base", layers::noise(200_000, 3)))
        .finish();
    let top = |n: u64| {
        Tar::new()
            .add(Entry::file(format!("top-{n}"), layers::noise(20_000, n)))
            .finish()
    };
    let built_one = layers::oci_layout(&scratch.join("b1"), &[base.clone(), top(1)]);
    let built_two = layers::oci_layout(&scratch.join("b2"), &[base, top(2)]);
    let (one, two) = (scratch.join("in-one"), scratch.join("in-two"));
    add(&built_one, &one, "one");
    add(&built_two, &two, "two");
    (one, two)
}

#[test]
fn several_inputs_and_a_list_of_them_give_one_output() {
    let scratch = common::scratch();
    let (one, two) = two_layouts(scratch.path());
    let out = scratch.path().join("out");
    run(Command::new(BIN)
        .args(["convert", "-q"])
        .arg(&one)
        .arg(&two)
        .arg(&out));
    let written = tags(&out);
    assert_eq!(
        written.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["one", "two"]
    );
    for (input, (tag, digest)) in [&one, &two].into_iter().zip(&written) {
        let alone = scratch.path().join(format!("alone-{tag}"));
        run(Command::new(BIN)
            .args(["convert", "-q"])
            .arg(input)
            .arg(&alone));
        assert_eq!(&tags(&alone)[0].1, digest, "{tag}");
    }
    run(Command::new(BIN).arg("check").arg(&out));

    let list = scratch.path().join("inputs.txt");
    fs::write(
        &list,
        format!("# the mirror\n{}\n\n{}\n", one.display(), two.display()),
    )
    .unwrap();
    let listed = scratch.path().join("listed");
    run(Command::new(BIN)
        .args(["convert", "-q", "--from-list"])
        .arg(&list)
        .arg(&listed));
    common::assert_same_files(&out, &listed);
}

#[test]
fn two_inputs_naming_images_alike_are_refused() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    let r = Command::new(BIN)
        .arg("convert")
        .arg(common::sample_image())
        .arg(common::sample_image())
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("are both named latest"), "{stderr}");
    assert!(!out.exists());
}

/// `--shard I/N` runs into one layout, one after another (or at once: they take turns to
/// commit), give every image exactly once, as one `--all-images` run does.
#[test]
fn shards_together_convert_every_image_once() {
    let scratch = common::scratch();
    let (one, two) = two_layouts(scratch.path());
    let mirror = scratch.path().join("mirror");
    add_tagged(&one, "one", &mirror, "one");
    add_tagged(&two, "two", &mirror, "two");
    add(&common::sample_image(), &mirror, "sample");
    let whole = scratch.path().join("whole");
    run(Command::new(BIN)
        .args(["convert", "-q", "--all-images"])
        .arg(&mirror)
        .arg(&whole));
    let sharded = scratch.path().join("sharded");
    let mut seen = Vec::new();
    for i in 0..3 {
        let before = if sharded.exists() {
            tags(&sharded).len()
        } else {
            0
        };
        run(Command::new(BIN)
            .args([
                "convert",
                "-q",
                "--all-images",
                "--shard",
                &format!("{i}/3"),
            ])
            .arg(&mirror)
            .arg(&sharded));
        let after = if sharded.exists() {
            tags(&sharded)
        } else {
            Vec::new()
        };
        seen.extend(after[before..].iter().cloned());
    }
    let mut expected = tags(&whole);
    expected.sort();
    seen.sort();
    assert_eq!(
        seen, expected,
        "each image in exactly one shard, converted as in one run"
    );

    let r = Command::new(BIN)
        .args(["convert", "--shard", "0/2"])
        .arg(common::sample_image())
        .arg(scratch.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    let r = Command::new(BIN)
        .args(["convert", "--all-images", "--shard", "2/2"])
        .arg(common::sample_image())
        .arg(scratch.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
}
