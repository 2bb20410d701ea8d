//! Hostile input images (issue 13), through the real binary: indexes that name one child many
//! times at every level or nest too deep, sizes that lie, `docker save` manifests with absurd
//! counts, strings that would split an error line, hostile archive members. Each input is built
//! so that a naive reader would be catastrophic (a walk of 50^7 paths, an allocation of 2^62
//! bytes, an 8 GiB PAX header read whole), and each test asserts the outcome: a sane listing, or
//! one error line naming the file and the problem, exit code 3, and nothing written by `convert`.

mod common;
mod source_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use source_support::{
    LAYER_GZIP, LayerBlob, Layout, Member, OCI_MANIFEST, gzip, scratch, sha256, tagged, tar_of,
    two_layers, write_tar,
};

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

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::new(BIN)
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

/// `inspect INPUT`, `inspect --quick INPUT` and `convert INPUT OUT` must each fail with exit
/// code 3, nothing on stdout, and exactly one error line holding every one of `needles`;
/// `convert` must not create OUT.
fn assert_refused(input: &Path, needles: &[&str]) {
    let out = input.with_extension("converted");
    for args in [
        vec!["inspect", s(input)],
        vec!["inspect", "--quick", s(input)],
        vec!["convert", s(input), s(&out)],
    ] {
        let r = run(&args);
        assert_eq!(r.code, 3, "{args:?}: stderr {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: stdout {}", r.stdout);
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one error line: {}", r.stderr);
        assert!(
            lines[0].starts_with("nydus-offline: error: "),
            "{}",
            lines[0]
        );
        for needle in needles {
            assert!(
                lines[0].contains(needle),
                "{args:?}: {needle:?} not in: {}",
                lines[0]
            );
        }
    }
    assert!(
        !out.exists(),
        "convert wrote {} for a bad input",
        out.display()
    );
}

/// `inspect --quick --json INPUT` must succeed; returns the report.
fn inspect_json(input: &Path) -> Value {
    let r = run(&["inspect", "--quick", "--json", s(input)]);
    assert_eq!(r.code, 0, "inspect {}: {}", input.display(), r.stderr);
    serde_json::from_str(&r.stdout).expect("inspect prints JSON")
}

// ---- Descriptors examined while listing ---------------------------------------------------

#[test]
fn too_many_descriptors_are_refused() {
    // One index naming one manifest 20,001 times: past the limit on descriptors examined.
    let scratch = scratch();
    let layout = Layout::new(scratch.path());
    let leaf = layout.image(&two_layers(), "linux/amd64");
    let top = layout.index(vec![leaf; 20_001]);
    layout.finish(vec![tagged(top, "latest")]);
    assert_refused(
        scratch.path(),
        &[
            &format!("{}: ", scratch.path().join("index.json").display()),
            "more than 20000 descriptors",
        ],
    );
}

// ---- Sizes from JSON ------------------------------------------------------------------------

/// A layout whose one manifest is rewritten by `edit` (and stored again, with index.json
/// pointing at the new bytes); returns the manifest's new blob path.
fn layout_with_manifest(dir: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let layout = Layout::new(dir);
    let desc = layout.image(&two_layers(), "linux/amd64");
    let path = layout.blob_path(desc["digest"].as_str().unwrap());
    let mut manifest: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    let (digest, size) = layout.blob(&serde_json::to_vec(&manifest).unwrap());
    layout.finish(vec![tagged(
        json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": size}),
        "latest",
    )]);
    layout.blob_path(&digest)
}

#[test]
fn a_manifest_declared_as_huge_is_refused_before_reading() {
    let scratch = scratch();
    let layout = Layout::new(scratch.path());
    let mut desc = layout.image(&two_layers(), "linux/amd64");
    let blob = layout.blob_path(desc["digest"].as_str().unwrap());
    desc["size"] = json!(1u64 << 62);
    layout.finish(vec![tagged(desc, "latest")]);
    assert_refused(
        scratch.path(),
        &[
            s(&blob),
            "the index says it is 4611686018427387904 bytes",
            "metadata larger than 16777216 bytes is refused",
        ],
    );
}

#[test]
fn a_layer_declared_as_huge_is_a_size_mismatch() {
    for size in [1u64 << 62, u64::MAX] {
        let scratch = scratch();
        let layer = std::cell::RefCell::new(String::new());
        layout_with_manifest(scratch.path(), |m| {
            *layer.borrow_mut() = m["layers"][0]["digest"].as_str().unwrap().to_string();
            m["layers"][0]["size"] = json!(size);
        });
        let layer = layer.into_inner();
        assert_refused(
            scratch.path(),
            &[&layer[7..], &format!("says {size} (truncated?)")],
        );
    }
}

#[test]
fn a_config_size_off_by_one_is_refused() {
    let scratch = scratch();
    let config = std::cell::RefCell::new((String::new(), 0u64));
    layout_with_manifest(scratch.path(), |m| {
        let size = m["config"]["size"].as_u64().unwrap();
        *config.borrow_mut() = (m["config"]["digest"].as_str().unwrap().to_string(), size);
        m["config"]["size"] = json!(size - 1);
    });
    let (digest, size) = config.into_inner();
    assert_refused(
        scratch.path(),
        &[
            &digest[7..],
            &format!("is {size} bytes, but the manifest says {} bytes", size - 1),
        ],
    );
}

#[test]
fn an_index_json_larger_than_the_metadata_limit_is_refused_unread() {
    let scratch = scratch();
    Layout::new(scratch.path());
    // Sparse: 4 GiB of nothing, which must not be read, let alone held.
    let index = fs::File::create(scratch.path().join("index.json")).unwrap();
    index.set_len(4 << 30).unwrap();
    assert_refused(
        scratch.path(),
        &[
            s(&scratch.path().join("index.json")),
            "is 4294967296 bytes; metadata larger than 16777216 bytes is refused",
        ],
    );
}

// ---- docker save manifest.json --------------------------------------------------------------

/// A legacy `docker save` tarball at `out` whose manifest.json is `manifest` over one config
/// and one plain layer (`config.json`, `layer.tar`); returns the config's diff_ids count.
fn docker_tar(out: &Path, manifest: Value, diff_ids: usize) {
    let plain = tar_of(&[("a", b"a")]);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": vec![sha256(&plain); diff_ids]},
    }))
    .unwrap();
    write_tar(
        out,
        &[
            Member::File("config.json", config),
            Member::File("manifest.json", serde_json::to_vec(&manifest).unwrap()),
            Member::File("layer.tar", plain),
        ],
    );
}

#[test]
fn docker_manifest_with_too_many_images_is_refused() {
    let scratch = scratch();
    let tar = scratch.path().join("many-images.tar");
    let entry = json!({"Config": "config.json", "RepoTags": ["x:1"], "Layers": ["layer.tar"]});
    docker_tar(&tar, json!(vec![entry; 1001]), 1);
    assert_refused(
        &tar,
        &[
            &format!("{}:manifest.json: ", tar.display()),
            "lists 1001 images; more than 1000 in one archive are refused",
        ],
    );
}

#[test]
fn docker_manifest_with_too_many_layers_is_refused() {
    let scratch = scratch();
    let tar = scratch.path().join("many-layers.tar");
    // A million layers, all the one member: checked before a single one is looked at.
    let entry = json!({
        "Config": "config.json", "RepoTags": ["x:1"], "Layers": vec!["layer.tar"; 1_000_000],
    });
    docker_tar(&tar, json!([entry]), 1);
    assert_refused(
        &tar,
        &[
            &format!("{}:manifest.json: ", tar.display()),
            "image 1 lists 1000000 layers; images of more than 1000 layers are refused",
        ],
    );
}

#[test]
fn docker_manifest_naming_one_layer_many_times_is_read_once() {
    // 1000 layers (the limit), all one gzip member: listed, each with the one digest.
    let scratch = scratch();
    let tar = scratch.path().join("repeated.tar");
    let plain = tar_of(&[("a", b"a")]);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": vec![sha256(&plain); 1000]},
    }))
    .unwrap();
    let manifest = json!([{
        "Config": "config.json", "RepoTags": ["x:1"], "Layers": vec!["layer.tar.gz"; 1000],
    }]);
    let stored = gzip(&plain);
    let digest = sha256(&stored);
    write_tar(
        &tar,
        &[
            Member::File("config.json", config),
            Member::File("manifest.json", serde_json::to_vec(&manifest).unwrap()),
            Member::File("layer.tar.gz", stored),
        ],
    );
    let report = inspect_json(&tar);
    let layers = report["images"][0]["manifests"][0]["layers"]
        .as_array()
        .unwrap();
    assert_eq!(layers.len(), 1000);
    assert!(layers.iter().all(|l| l["digest"] == json!(digest)));
}

#[test]
fn docker_manifest_larger_than_the_metadata_limit_is_refused() {
    let scratch = scratch();
    let tar = scratch.path().join("big-manifest.tar");
    let mut manifest = b"[".to_vec();
    manifest.resize(17 << 20, b' ');
    manifest.push(b']');
    write_tar(&tar, &[Member::File("manifest.json", manifest)]);
    assert_refused(
        &tar,
        &[
            &format!("{}:manifest.json: ", tar.display()),
            "metadata larger than 16777216 bytes is refused",
        ],
    );
}

// ---- One line per error ---------------------------------------------------------------------

#[test]
fn strings_from_the_input_cannot_split_the_error_line() {
    // A layer media type with a newline in it: the message quotes it, escaped, on one line.
    let scratch = scratch();
    let layer = LayerBlob::new(&[("x", b"x")], LAYER_GZIP)
        .relabeled("application/evil\nnydus-offline: error: forged");
    let layout = Layout::new(scratch.path());
    let desc = layout.image(&[layer], "linux/amd64");
    layout.finish(vec![tagged(desc, "line\nbreak")]);
    assert_refused(
        scratch.path(),
        &["has media type application/evil\\nnydus-offline: error: forged, which is not"],
    );

    // A name with a newline, listed when --image matches nothing.
    let r = run(&["inspect", "--image", "nothing", s(scratch.path())]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("line\\nbreak"), "{}", r.stderr);
}

// ---- Archive members (tar_index, tar_store) ------------------------------------------------
//
// Hostile archive members, through the binary: every archive below is the sample image as an
// oci-archive (written header by header, so that any member can be bent), plus one hostile
// member. Sizes that would have made the old reader allocate or read gigabytes are given to
// sparse files, which cost no disk.

/// The sample image's layout files, as (member name, bytes), `oci-layout` and `index.json` first.
fn sample_members() -> Vec<(String, Vec<u8>)> {
    let root = source_support::sample();
    let mut members = vec![
        (
            "oci-layout".to_string(),
            fs::read(root.join("oci-layout")).unwrap(),
        ),
        (
            "index.json".to_string(),
            fs::read(root.join("index.json")).unwrap(),
        ),
    ];
    let mut blobs: Vec<_> = fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blobs.sort();
    for blob in blobs {
        let hex = blob.file_name().unwrap().to_str().unwrap().to_string();
        members.push((format!("blobs/sha256/{hex}"), fs::read(&blob).unwrap()));
    }
    members
}

/// The digest-named member path of the sample's base layer (its largest blob).
fn layer_member() -> String {
    sample_members()
        .into_iter()
        .max_by_key(|(_, data)| data.len())
        .unwrap()
        .0
}

/// One ustar header block. Sizes past what 11 octal digits hold are written in base-256.
fn header(name: &[u8], flag: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 0o77777777777 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = flag;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..265].copy_from_slice(b"ustar\x0000");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A tar being written by hand.
#[derive(Default)]
struct HandTar(Vec<u8>);

impl HandTar {
    fn entry(&mut self, name: &str, flag: u8, data: &[u8]) -> &mut HandTar {
        self.0
            .extend_from_slice(&header(name.as_bytes(), flag, data.len() as u64, b""));
        self.data(data)
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut HandTar {
        self.entry(name, b'0', data)
    }

    fn link(&mut self, name: &str, flag: u8, target: &str) -> &mut HandTar {
        self.0
            .extend_from_slice(&header(name.as_bytes(), flag, 0, target.as_bytes()));
        self
    }

    fn data(&mut self, data: &[u8]) -> &mut HandTar {
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(512), 0);
        self
    }

    /// The sample's members, except those named in `except`.
    fn sample(&mut self, except: &[&str]) -> &mut HandTar {
        for (name, data) in sample_members() {
            if !except.contains(&name.as_str()) {
                self.file(&name, &data);
            }
        }
        self
    }

    fn write(&mut self, path: &Path) {
        self.0.extend_from_slice(&[0u8; 1024]);
        fs::write(path, &self.0).unwrap();
    }
}

#[test]
fn archive_baseline_reads() {
    // The hand-written archive itself is fine: what the other tests break is only their member.
    let scratch = scratch();
    let archive = scratch.path().join("good.tar");
    HandTar::default().sample(&[]).write(&archive);
    let r = run(&["inspect", "--quick", s(&archive)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("oci-archive, 1 image"), "{}", r.stdout);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn archive_with_a_member_named_twice() {
    let scratch = scratch();
    // A second index.json after the first: extraction would keep the second, a streaming
    // reader the first. Refused, whichever is the real one.
    let archive = scratch.path().join("twice.tar");
    HandTar::default()
        .sample(&[])
        .file("index.json", br#"{"schemaVersion":2,"manifests":[]}"#)
        .write(&archive);
    assert_refused(
        &archive,
        &["twice.tar:index.json", "appears twice in the archive"],
    );

    // A file and a link of one name are one name too.
    let layer = layer_member();
    let archive = scratch.path().join("file-and-link.tar");
    HandTar::default()
        .sample(&[])
        .link(&layer, b'2', "oci-layout")
        .write(&archive);
    assert_refused(
        &archive,
        &[&format!("file-and-link.tar:{layer}"), "appears twice"],
    );
}

#[test]
fn archive_members_that_claim_absurd_sizes() {
    let scratch = scratch();
    // A regular member declaring 2^62 bytes in base-256: checked against the archive's length,
    // never allocated nor read.
    let archive = scratch.path().join("huge-member.tar");
    let mut tar = HandTar::default();
    tar.sample(&[]);
    tar.0
        .extend_from_slice(&header(b"blobs/sha256/big", b'0', 1 << 62, b""));
    tar.write(&archive);
    assert_refused(
        &archive,
        &[
            "huge-member.tar:blobs/sha256/big",
            "is cut short",
            "4611686018427387904",
        ],
    );

    // A size so large that data offset + size wraps around u64.
    let archive = scratch.path().join("wrapping-member.tar");
    let mut tar = HandTar::default();
    tar.sample(&[]);
    tar.0
        .extend_from_slice(&header(b"blobs/sha256/wrap", b'0', u64::MAX - 100, b""));
    tar.write(&archive);
    assert_refused(
        &archive,
        &["wrapping-member.tar:blobs/sha256/wrap", "is cut short"],
    );
}

/// An archive whose last header is an extension header of `flag` declaring `size` bytes, all
/// of them present as a hole: the old reader (the `tar` crate) read such a header whole into
/// memory, 8 GiB here.
fn huge_extension(path: &Path, flag: u8, size: u64) {
    let mut tar = HandTar::default();
    tar.sample(&[]);
    let name: &[u8] = if flag == b'x' {
        b"PaxHeaders/x"
    } else {
        b"././@LongLink"
    };
    tar.0.extend_from_slice(&header(name, flag, size, b""));
    fs::write(path, &tar.0).unwrap();
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(tar.0.len() as u64 + size + 1024).unwrap();
}

#[test]
fn archive_extension_headers_of_gigabytes() {
    let scratch = scratch();
    let pax = scratch.path().join("huge-pax.tar");
    huge_extension(&pax, b'x', 8 << 30);
    assert_refused(
        &pax,
        &[
            "huge-pax.tar",
            "a PAX header of 8589934592 bytes",
            "refused",
        ],
    );

    let long = scratch.path().join("huge-long-name.tar");
    huge_extension(&long, b'L', 8 << 30);
    assert_refused(
        &long,
        &["huge-long-name.tar", "a GNU long name of 8589934592 bytes"],
    );
}

#[test]
fn archive_member_names_longer_than_path_max() {
    let scratch = scratch();
    let archive = scratch.path().join("long-name.tar");
    let name = format!("blobs/sha256/{}", "a".repeat(5000));
    let record = |key: &str, value: &str| {
        // "<len> key=value\n", where <len> counts itself.
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}")
    };
    HandTar::default()
        .sample(&[])
        .entry("PaxHeaders/long", b'x', record("path", &name).as_bytes())
        .file("placeholder", b"x")
        .write(&archive);
    assert_refused(&archive, &["long-name.tar", "longer than 4096 bytes"]);
}

#[test]
fn archive_with_more_headers_than_the_limit() {
    let scratch = scratch();
    let archive = scratch.path().join("many.tar");
    let mut tar = HandTar::default();
    tar.sample(&[]);
    // Directory headers carry no data: 512 bytes each, 51 MB in all.
    for i in 0..100_001 {
        tar.0
            .extend_from_slice(&header(format!("d/{i}/").as_bytes(), b'5', 0, b""));
    }
    tar.write(&archive);
    assert_refused(&archive, &["many.tar", "more than 100000 tar headers"]);
}

#[test]
fn archive_members_that_leave_the_archive() {
    let scratch = scratch();
    let layer = layer_member();
    // `..` in a member name and a symlink out are in tests/inspect_cli.rs
    // (docker_save_paths_that_escape_the_archive); these are the other ways out.
    for (file, name, flag, target, needle) in [
        (
            "control-chars.tar",
            "../a\nb\x1b[2J",
            b'0',
            "",
            "../a\\nb\\x1b[2J: member path escapes the archive",
        ),
        (
            "absolute.tar",
            "/etc/passwd",
            b'0',
            "",
            "member path escapes the archive",
        ),
        (
            "hardlink-out.tar",
            layer.as_str(),
            b'1',
            "../etc/shadow",
            "escapes the archive",
        ),
        (
            "hardlink-abs.tar",
            layer.as_str(),
            b'1',
            "/etc/shadow",
            "escapes the archive",
        ),
    ] {
        let archive = scratch.path().join(file);
        let mut tar = HandTar::default();
        tar.sample(&[&layer]);
        if flag == b'0' {
            tar.file(name, b"x");
        } else {
            tar.link(name, flag, target);
        }
        tar.write(&archive);
        assert_refused(&archive, &[file, needle]);
    }
}

#[test]
fn archive_links_that_loop() {
    let scratch = scratch();
    let layer = layer_member();
    let archive = scratch.path().join("loop.tar");
    HandTar::default()
        .sample(&[&layer])
        .link(&layer, b'2', "other")
        .link(
            "blobs/sha256/other",
            b'2',
            layer.rsplit('/').next().unwrap(),
        )
        .write(&archive);
    assert_refused(&archive, &["loop.tar", "links form a loop"]);
}

/// Devices and fifos have no place in an image archive: they are skipped, silently by default,
/// and `-v` says so in one line however many there are.
#[test]
fn archive_device_members_are_skipped_in_one_line() {
    let scratch = scratch();
    let archive = scratch.path().join("devices.tar");
    let mut tar = HandTar::default();
    tar.sample(&[]);
    tar.link("dev/null", b'3', "");
    for i in 0..1000 {
        tar.link(&format!("dev/fifo{i}"), b'6', "");
    }
    tar.write(&archive);
    let out = scratch.path().join("out");
    let plain = run(&["inspect", "--quick", s(&archive)]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert_eq!(plain.stderr, "");
    for args in [
        vec!["inspect", "-v", "--quick", s(&archive)],
        vec!["convert", "-v", "--progress", "none", s(&archive), s(&out)],
    ] {
        let r = run(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let skipped: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.contains("devices.tar"))
            .collect();
        assert_eq!(skipped.len(), 1, "one line for all: {}", r.stderr);
        assert!(
            skipped[0].starts_with("nydus-offline: info: ")
                && skipped[0].contains("devices.tar: member dev/null skipped (a character device)")
                && skipped[0].contains("and 1000 more"),
            "{}",
            skipped[0]
        );
    }
    assert!(out.join("index.json").exists());
}

#[test]
fn archives_that_are_cut_or_malformed() {
    let scratch = scratch();
    let mut good = HandTar::default();
    good.sample(&[]).write(&scratch.path().join("whole.tar"));
    let whole = good.0.clone();
    let layer = layer_member();

    // Cut inside the base layer's data: that member is cut short.
    let cut = scratch.path().join("cut.tar");
    let at = whole.len() / 2;
    fs::write(&cut, &whole[..at]).unwrap();
    assert_refused(&cut, &[&format!("cut.tar:{layer}"), "is cut short"]);

    // Cut inside a header.
    let cut_header = scratch.path().join("cut-header.tar");
    fs::write(&cut_header, &whole[..1124]).unwrap();
    assert_refused(
        &cut_header,
        &["cut-header.tar", "not a readable tar archive"],
    );

    // A PAX header whose record lengths lie.
    let bad_pax = scratch.path().join("bad-pax.tar");
    HandTar::default()
        .entry("PaxHeaders/x", b'x', b"99 path=short\n")
        .file("oci-layout", b"{}")
        .write(&bad_pax);
    assert_refused(&bad_pax, &["bad-pax.tar", "malformed PAX header"]);

    // A PAX header and then the end: the extension header has no member.
    let dangling = scratch.path().join("dangling.tar");
    HandTar::default()
        .sample(&[])
        .entry("PaxHeaders/x", b'x', b"13 path=abcd\n")
        .write(&dangling);
    assert_refused(&dangling, &["dangling.tar", "before its member"]);
}

#[test]
fn archive_names_past_their_total_are_refused() {
    let scratch = scratch();
    let archive = scratch.path().join("names.tar");
    let mut tar = HandTar::default();
    tar.sample(&[]);
    // Symlinks whose names and targets are 4096 bytes each (GNU long name and long link
    // headers): 8 KiB of names a member, 32 MiB in all after 4096 of them.
    let target = "t".repeat(4096);
    for i in 0..4100 {
        let mut name = format!("n/{i:06}/");
        name.push_str(&"a".repeat(4096 - name.len()));
        tar.entry("././@LongLink", b'L', name.as_bytes())
            .entry("././@LongLink", b'K', target.as_bytes())
            .link("long", b'2', "long");
    }
    tar.write(&archive);
    assert_refused(&archive, &["names.tar", "exceed 33554432 bytes in all"]);
}
