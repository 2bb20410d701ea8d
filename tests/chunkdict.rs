//! `chunkdict generate` (issue 18): a chunk dictionary from local images, the chunks found in
//! at least `--min-images` of them; images converted against it store only what it lacks, and
//! read as umoci shows them through nydusd 2.2.0 and 2.4.4 with the blob it brings.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::layers::{self, Entry, Tar, noise};
use common::{mounts, reference, unpack};

const MIB: usize = 1 << 20;

/// Three images: `shared` (two chunks) and `small` in all three, `pair` in the first two, and
/// a file of its own in each.
fn images(dir: &Path) -> Vec<PathBuf> {
    (0..3u64)
        .map(|i| {
            let mut tar = Tar::new();
            tar.add(Entry::dir("data"))
                .add(Entry::file("data/shared", noise(MIB + MIB / 2, 1)))
                .add(Entry::file(
                    "data/small",
                    "the same in every image\n".repeat(50),
                ))
                .add(Entry::file(format!("data/own-{i}"), noise(300_000, 10 + i)));
            if i < 2 {
                tar.add(Entry::file("data/pair", noise(200_000, 2)));
            }
            layers::oci_layout(&dir.join(format!("image-{i}")), &[tar.finish()])
        })
        .collect()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_dictionary_of_repeated_chunks_makes_images_store_only_their_own() {
    let scratch = common::scratch();
    let s = scratch.path();
    let inputs = images(&s.join("in"));
    let dict = s.join("dict");
    let generate = |out: &Path, extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nydus-offline"));
        cmd.args(["chunkdict", "generate", "--json"])
            .args(&inputs)
            .arg("-o")
            .arg(out)
            .args(extra);
        json(&cmd.output().unwrap())
    };
    let summary = generate(&dict, &[]);
    assert_eq!(summary["images"], 3);
    // shared (2 chunks), small and pair.
    assert_eq!(summary["dict_chunks"], 4);
    assert_eq!(summary["distinct_chunks"], 7);
    // The same bytes again; with --min-images 3 only what all three hold.
    let again = s.join("dict-again");
    generate(&again, &[]);
    common::assert_same_files(&dict, &again);
    let strict = generate(&s.join("dict-3"), &["--min-images", "3"]);
    assert_eq!(strict["dict_chunks"], 3);

    // Each image stores only its own file's chunk; the rest is found in the dictionary.
    let spec = format!("bootstrap={}", dict.display());
    for (i, input) in inputs.iter().enumerate() {
        let out = s.join(format!("out-{i}"));
        let report = json(&common::nydus_offline(&[
            &"convert",
            input,
            &out,
            &"--json",
            &"--chunk-dict",
            &spec,
        ]));
        let blob = &report["platforms"][0]["layers"][0]["blob"];
        assert_eq!(blob["chunks"], 1, "image {i}: {blob}");
        assert_eq!(blob["dict_hits"], if i < 2 { 4 } else { 3 }, "image {i}");
    }

    // The readers, with the dictionary's blob the output now holds.
    let out = s.join("out-0");
    common::check_with_source(&out, &inputs[0]);
    let boot = s.join("out-0.boot");
    reference::merged_bootstrap(&out, "latest", &boot);
    let blobs = out.join("blobs/sha256");
    reference::check(&boot, &blobs);
    let expected = unpack::expected_nydusd(&inputs[0], s);
    mounts::assert_localfs_shows(&mounts::NYDUSD, &boot, &blobs, s, &expected, "a chunkdict");
}

#[test]
fn images_that_share_nothing_give_no_dictionary_and_no_output() {
    let scratch = common::scratch();
    let s = scratch.path();
    let a = layers::oci_layout(
        &s.join("a"),
        &[Tar::new().add(Entry::file("x", "one")).finish()],
    );
    let b = layers::oci_layout(
        &s.join("b"),
        &[Tar::new().add(Entry::file("y", "two")).finish()],
    );
    let out = s.join("dict");
    let result = common::nydus_offline(&[&"chunkdict", &"generate", &a, &b, &"-o", &out]);
    assert_eq!(result.status.code(), Some(3), "{result:?}");
    assert!(String::from_utf8_lossy(&result.stderr).contains("nothing to put in a dictionary"));
    assert!(!out.exists());
    // Nor is a dictionary written over an input.
    let result = common::nydus_offline(&[&"chunkdict", &"generate", &a, &b, &"-o", &a]);
    assert_ne!(result.status.code(), Some(0));
    let result = common::nydus_offline(&[
        &"chunkdict",
        &"generate",
        &a,
        &b,
        &"-o",
        &out,
        &"--min-images",
        &"1",
    ]);
    assert_eq!(result.status.code(), Some(2));
}
