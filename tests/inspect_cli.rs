//! `nydus-offline inspect` (and `convert`'s input checks) through the real binary: the listing in
//! text and JSON, selection errors, and every bad input of issue 4, each of which must give one
//! error line naming the file and the problem, exit code 3, and no output.

mod source_support;

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use source_support::*;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
        .args(args)
        .output()
        .expect("run nydus-offline");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `inspect INPUT` must fail with exit code 3, nothing on stdout, and exactly one error line
/// containing every one of `needles`. `convert INPUT OUT` must not create OUT.
fn assert_bad(input: &Path, needles: &[&str]) {
    let r = run(&["inspect", s(input)]);
    assert_eq!(
        r.code,
        3,
        "exit code for {}: stderr {}",
        input.display(),
        r.stderr
    );
    assert!(r.stdout.is_empty(), "stdout should be empty: {}", r.stdout);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {}", r.stderr);
    assert!(
        lines[0].starts_with("nydus-offline: error: "),
        "{}",
        lines[0]
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{:?} not in: {}",
            needle,
            lines[0]
        );
    }
    assert!(!lines[0].contains("panicked"), "{}", lines[0]);

    let out = input.with_extension("converted");
    let c = run(&["convert", s(input), s(&out)]);
    assert_ne!(c.code, 0);
    assert!(
        !out.exists(),
        "convert wrote {} for a bad input",
        out.display()
    );
}

#[test]
fn inspect_lists_the_sample_as_text_and_json() {
    let sample = sample();
    let r = run(&["inspect", s(&sample)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("OCI image layout, 1 image"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("image latest"), "{}", r.stdout);
    assert!(r.stdout.contains("linux/amd64"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("layer 2: application/vnd.oci.image.layer.v1.tar+gzip (gzip)")
    );

    let r = run(&["inspect", "--json", s(&sample)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let m = &v["images"][0]["manifests"][0];
    assert_eq!(v["images"][0]["names"], json!(["latest"]));
    assert_eq!(m["platform"], "linux/amd64");
    let layers = m["layers"].as_array().unwrap();
    assert!(layers.len() >= 2);
    for l in layers {
        // Measured by streaming: a gzip layer is larger uncompressed.
        assert!(l["uncompressed_size"].as_u64().unwrap() > l["size"].as_u64().unwrap());
        assert_eq!(l["compression"], "gzip");
    }

    let r = run(&["inspect", "--json", "--quick", s(&sample)]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["images"][0]["manifests"][0]["layers"][0]["uncompressed_size"].is_null());
}

#[test]
fn inspect_reads_every_skopeo_form() {
    let scratch = scratch();
    let forms = sample_forms(scratch.path());
    for (path, form) in [
        (&forms.layout, "OCI image layout"),
        (&forms.oci_archive, "oci-archive"),
        (&forms.oci_archive_gz, "oci-archive"),
        (&forms.docker_archive, "docker save tarball"),
    ] {
        let r = run(&["inspect", "--json", s(path)]);
        assert_eq!(r.code, 0, "{}: {}", path.display(), r.stderr);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["form"], form);
        assert_eq!(v["images"][0]["manifests"][0]["platform"], "linux/amd64");
    }
}

#[test]
fn inspect_lists_every_image_and_platform_and_narrows_on_request() {
    let scratch = scratch();
    let layout = Layout::new(scratch.path());
    let amd = with_platform(layout.image(&two_layers(), "linux/amd64"), "linux/amd64");
    let arm = with_platform(
        layout.image(&[LayerBlob::new(&[("x", b"x")], LAYER_ZSTD)], "linux/arm64"),
        "linux/arm64",
    );
    let multi = layout.index(vec![amd, arm]);
    let other = layout.image(&[LayerBlob::new(&[("y", b"y")], LAYER_TAR)], "linux/amd64");
    layout.finish(vec![tagged(multi, "multi"), tagged(other, "single")]);
    let dir = s(scratch.path());

    let r = run(&["inspect", "--json", dir]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 2);
    assert_eq!(v["images"][0]["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["images"][0]["manifests"][1]["layers"][0]["compression"],
        "zstd"
    );

    let r = run(&[
        "inspect",
        "--json",
        "--image",
        "multi",
        "--platform",
        "linux/arm64",
        dir,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    assert_eq!(v["images"][0]["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["images"][0]["manifests"][0]["platform"], "linux/arm64");

    // Missing platform: an error listing those present.
    let r = run(&[
        "inspect",
        "--image",
        "multi",
        "--platform",
        "linux/ppc64le",
        dir,
    ]);
    assert_eq!(r.code, 3);
    assert!(
        r.stderr
            .contains("platforms present: linux/amd64, linux/arm64"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());

    // convert needs one image: several and no --image is an error listing them. (The output
    // goes beside the input layout: inside it would be refused for that alone.)
    let elsewhere = source_support::scratch();
    let out = elsewhere.path().join("out");
    let r = run(&["convert", dir, s(&out)]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("holds 2 images; choose one with --image"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("multi") && r.stderr.contains("single"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());

    // A malformed --platform is a usage error.
    let r = run(&["inspect", "--platform", "linux", dir]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run(&[
        "inspect",
        "--platform",
        "linux/amd64",
        "--all-platforms",
        dir,
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

// ---- every bad input of the issue ----

#[test]
fn missing_index_json() {
    let scratch = scratch();
    let (layout, _) = simple_layout(scratch.path());
    fs::remove_file(layout.dir.join("index.json")).unwrap();
    assert_bad(scratch.path(), &["index.json", "is missing"]);
}

#[test]
fn empty_index_json() {
    let scratch = scratch();
    let (layout, _) = simple_layout(scratch.path());
    fs::write(layout.dir.join("index.json"), b"").unwrap();
    assert_bad(scratch.path(), &["index.json", "is empty"]);
    fs::write(
        layout.dir.join("index.json"),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    assert_bad(scratch.path(), &["index.json", "lists no images"]);
}

#[test]
fn index_json_that_does_not_parse() {
    let scratch = scratch();
    let (layout, _) = simple_layout(scratch.path());
    fs::write(layout.dir.join("index.json"), b"{\"manifests\": [").unwrap();
    assert_bad(
        scratch.path(),
        &["index.json", "is not a valid image index"],
    );
}

#[test]
fn manifest_that_does_not_parse() {
    let scratch = scratch();
    let layout = Layout::new(scratch.path());
    let (d, size) = layout.blob(b"not json at all");
    layout.finish(vec![
        json!({"mediaType": OCI_MANIFEST, "digest": d, "size": size}),
    ]);
    let hex = d.strip_prefix("sha256:").unwrap();
    assert_bad(scratch.path(), &[hex, "is not a valid image manifest"]);
}

#[test]
fn unknown_oci_layout_version() {
    let scratch = scratch();
    let (layout, _) = simple_layout(scratch.path());
    fs::write(
        layout.dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    assert_bad(
        scratch.path(),
        &["oci-layout", "imageLayoutVersion \"2.0.0\""],
    );
}

#[test]
fn layer_bytes_that_do_not_match_their_digest() {
    let scratch = scratch();
    let (layout, desc) = simple_layout(scratch.path());
    let manifest: Value = serde_json::from_slice(
        &fs::read(layout.blob_path(desc["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][1]["digest"].as_str().unwrap();
    let path = layout.blob_path(layer);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(&path, &bytes).unwrap();
    assert_bad(scratch.path(), &[s(&path), "content has digest", layer]);
}

#[test]
fn config_bytes_that_do_not_match_their_digest() {
    let scratch = scratch();
    let (layout, desc) = simple_layout(scratch.path());
    let manifest: Value = serde_json::from_slice(
        &fs::read(layout.blob_path(desc["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let config = layout.blob_path(manifest["config"]["digest"].as_str().unwrap());
    let mut bytes = fs::read(&config).unwrap();
    bytes[0] = b' ';
    fs::write(&config, &bytes).unwrap();
    assert_bad(
        scratch.path(),
        &[s(&config), "content has digest", "the manifest says"],
    );
}

#[test]
fn manifest_naming_a_missing_blob() {
    let scratch = scratch();
    let (layout, desc) = simple_layout(scratch.path());
    let manifest: Value = serde_json::from_slice(
        &fs::read(layout.blob_path(desc["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    fs::remove_file(layout.blob_path(layer)).unwrap();
    assert_bad(scratch.path(), &["layer 1", layer, "which is missing"]);
}

fn truncated_layer(media_type: &str) -> (tempfile::TempDir, String) {
    let scratch = scratch();
    let layout = Layout::new(scratch.path());
    let data: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let mut layer = LayerBlob::new(&[("big", &data)], media_type);
    // Cut the stream short, and declare the short bytes: the digest matches, the stream is broken.
    layer.stored.truncate(layer.stored.len() / 2);
    let digest = sha256(&layer.stored);
    let desc = layout.image(&[layer], "linux/amd64");
    layout.finish(vec![desc]);
    let path = layout.blob_path(&digest).display().to_string();
    (scratch, path)
}

#[test]
fn truncated_gzip_layer() {
    let (scratch, blob) = truncated_layer(LAYER_GZIP);
    assert_bad(
        scratch.path(),
        &[&blob, "gzip data is truncated or corrupt"],
    );
}

#[test]
fn truncated_zstd_layer() {
    let (scratch, blob) = truncated_layer(LAYER_ZSTD);
    assert_bad(
        scratch.path(),
        &[&blob, "zstd data is truncated or corrupt"],
    );
}

#[test]
fn blob_shorter_than_declared() {
    let scratch = scratch();
    let (layout, desc) = simple_layout(scratch.path());
    let manifest: Value = serde_json::from_slice(
        &fs::read(layout.blob_path(desc["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let path = layout.blob_path(manifest["layers"][0]["digest"].as_str().unwrap());
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    assert_bad(
        scratch.path(),
        &[s(&path), "bytes, but manifest", "(truncated?)"],
    );
}

#[test]
fn zero_byte_input_file() {
    let scratch = scratch();
    let empty = scratch.path().join("empty.tar");
    fs::write(&empty, b"").unwrap();
    assert_bad(&empty, &[s(&empty), "is empty (zero bytes)"]);
}

#[test]
fn file_that_is_no_archive() {
    let scratch = scratch();
    let junk = scratch.path().join("junk.tar");
    fs::write(
        &junk,
        b"hello, I am not a tar archive, just some text that goes on for a while\n".repeat(20),
    )
    .unwrap();
    assert_bad(&junk, &[s(&junk), "is not a readable tar archive"]);
    let other = scratch.path().join("other.tar");
    write_tar(&other, &[Member::File("readme.txt", b"hi".to_vec())]);
    assert_bad(
        &other,
        &[s(&other), "neither manifest.json", "nor index.json"],
    );
}

#[test]
fn foreign_layer_with_only_urls() {
    let scratch = scratch();
    let layout = Layout::new(scratch.path());
    let mut foreign = LayerBlob::new(&[("Files/x", b"w")], DOCKER_FOREIGN);
    foreign.urls = Some(vec![
        "https://example.invalid/windows-base.tar.gz".to_string(),
    ]);
    let digest = sha256(&foreign.stored);
    let desc = layout.image(&[foreign], "linux/amd64");
    layout.finish(vec![desc]);
    fs::remove_file(layout.blob_path(&digest)).unwrap();
    assert_bad(
        scratch.path(),
        &[
            "layer 1",
            "foreign (non-distributable) layer",
            "example.invalid",
            "does not hold its bytes",
        ],
    );
}

#[test]
fn layer_media_type_we_cannot_read() {
    let scratch = scratch();
    let layout = Layout::new(scratch.path());
    let odd =
        LayerBlob::new(&[("x", b"x")], LAYER_GZIP).relabeled("application/vnd.example.squashfs");
    let desc = layout.image(&[odd], "linux/amd64");
    layout.finish(vec![desc]);
    assert_bad(
        scratch.path(),
        &[
            "layer 1",
            "application/vnd.example.squashfs",
            "not a layer this program can read",
        ],
    );
}

#[test]
fn layer_in_a_compression_we_cannot_read() {
    let scratch = scratch();
    let layout = Layout::new(scratch.path());
    let mut xz = LayerBlob::new(&[("x", b"x")], LAYER_TAR);
    xz.stored = [&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00][..], &[0u8; 64][..]].concat();
    let digest = sha256(&xz.stored);
    let desc = layout.image(&[xz], "linux/amd64");
    layout.finish(vec![desc]);
    assert_bad(scratch.path(), &[&digest[7..], "is xz-compressed"]);
}

#[test]
fn diff_ids_that_do_not_match_the_layers() {
    let scratch = scratch();
    let layout = Layout::new(scratch.path());
    let layers = two_layers();
    let wrong = sha256(b"something else");
    let desc = layout.image_with(
        &layers,
        "linux/amd64",
        Some(vec![layers[0].diff_id.clone(), wrong.clone()]),
    );
    layout.finish(vec![desc]);
    assert_bad(
        scratch.path(),
        &[
            "layer 2",
            "uncompressed content has digest",
            "rootfs.diff_ids says",
            &wrong,
        ],
    );

    let scratch2 = source_support::scratch();
    let layout = Layout::new(scratch2.path());
    let desc = layout.image_with(
        &layers,
        "linux/amd64",
        Some(vec![layers[0].diff_id.clone()]),
    );
    layout.finish(vec![desc]);
    assert_bad(
        scratch2.path(),
        &["rootfs.diff_ids lists 1 layer,", "has 2"],
    );
}

fn legacy_tar(out: &Path, layer_path: &str, members: Vec<Member>) {
    let plain = tar_of(&[("a", b"a")]);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&plain)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!([{
        "Config": "config.json", "RepoTags": ["evil:1"], "Layers": [layer_path],
    }]))
    .unwrap();
    let mut all = vec![
        Member::File("config.json", config),
        Member::File("manifest.json", manifest),
        Member::File("good/layer.tar", plain),
    ];
    all.extend(members);
    write_tar(out, &all);
}

#[test]
fn docker_save_paths_that_escape_the_archive() {
    let scratch = scratch();
    let in_manifest = scratch.path().join("escape-manifest.tar");
    legacy_tar(&in_manifest, "../../etc/layer.tar", vec![]);
    assert_bad(
        &in_manifest,
        &[
            s(&in_manifest),
            "manifest.json",
            "\"../../etc/layer.tar\" escapes the archive",
        ],
    );

    let in_member = scratch.path().join("escape-member.tar");
    legacy_tar(
        &in_member,
        "good/layer.tar",
        vec![Member::File("../outside.tar", b"x".to_vec())],
    );
    assert_bad(
        &in_member,
        &[
            s(&in_member),
            "../outside.tar",
            "member path escapes the archive",
        ],
    );

    let in_link = scratch.path().join("escape-link.tar");
    legacy_tar(
        &in_link,
        "bad/layer.tar",
        vec![Member::Symlink("bad/layer.tar", "../../../etc/passwd")],
    );
    assert_bad(
        &in_link,
        &[
            s(&in_link),
            "bad/layer.tar",
            "link target ../../../etc/passwd escapes the archive",
        ],
    );
}

#[test]
fn directory_that_is_no_image() {
    let scratch = scratch();
    fs::write(scratch.path().join("README"), b"just a directory").unwrap();
    assert_bad(
        scratch.path(),
        &[s(scratch.path()), "not an OCI image layout"],
    );
}

#[test]
fn input_that_does_not_exist() {
    let scratch = scratch();
    let missing = scratch.path().join("nope");
    assert_bad(&missing, &[s(&missing), "does not exist"]);
}
