//! The output image of issue 7, judged by the real readers: skopeo reads every output form; a
//! multi-platform and a merge-platform output pushed to a local registry with `skopeo copy --all`
//! mount through nydusd for each platform and show umoci's tree of that platform; a merge-platform
//! output is laid out as nydusify 2.4 lays it out (originals with the empty layer prepended, the
//! Nydus config media type), `check` accepts it and skopeo inspects what it pushed; layers shared
//! between platforms are converted once; `--with-referrer` names the source manifest; the same
//! input gives the same bytes; and a failing, interrupted or disk-starved run leaves nothing
//! behind.
//!
//! The multi-platform input is built here from the sample: its amd64 image as it is, and an arm64
//! image of the same two layers plus one more (a file, a copy of a lower layer's file, a
//! whiteout), under its own config.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::Duration;

use serde_json::{Value, json};

use common::tree::{self, ListOptions, Listing};
use common::{mounts, reference, registry, run, unpack};

const BIN: &str = env!("CARGO_BIN_EXE_nydus-offline");
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MT_NYDUS_BLOB: &str = "application/vnd.oci.image.layer.nydus.blob.v1";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const MT_DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `nydus-offline ARGS…`, whatever its outcome.
fn nydus_offline(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// `nydus-offline convert INPUT OUT ARGS…`, which must succeed.
fn convert(input: &Path, out: &Path, args: &[&str]) {
    run(Command::new(BIN)
        .arg("convert")
        .arg(input)
        .arg(out)
        .args(args));
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// The `index.json` entry tagged `tag`.
fn top_entry(layout: &Path, tag: &str) -> Value {
    let index = read_json(&layout.join("index.json"));
    let found: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"][REF_NAME] == tag)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "entries tagged {tag} in {}",
        layout.display()
    );
    found[0].clone()
}

/// Write `bytes` as a blob of the layout `dir`; its descriptor fields.
fn put(dir: &Path, bytes: &[u8]) -> (String, u64) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let tmp = blobs.join("tmp");
    fs::write(&tmp, bytes).unwrap();
    let hex = common::sha256_hex(&tmp);
    fs::rename(&tmp, blobs.join(&hex)).unwrap();
    (format!("sha256:{hex}"), bytes.len() as u64)
}

fn write_layout(dir: &Path, index: &Value) {
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(dir.join("index.json"), serde_json::to_vec(index).unwrap()).unwrap();
}

/// Copy the blobs of layout `from` into `to` (hard links: same filesystem).
fn link_blobs(from: &Path, to: &Path) {
    let blobs = to.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    for entry in fs::read_dir(from.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let target = blobs.join(entry.file_name());
        if !target.exists() {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A two-platform input made from the sample.
struct Multi {
    /// The OCI layout, tagged `latest` (an image index).
    layout: PathBuf,
    /// The source manifests' digests.
    amd64: String,
    arm64: String,
    /// One-platform layouts of each, tagged `latest`, for umoci.
    amd64_only: PathBuf,
    arm64_only: PathBuf,
}

/// The layer the arm64 image adds: a new file, a copy of the sample's `bin/tool` (its chunks are
/// in a shared lower layer already) and a whiteout of `etc/hostname`. Returns (gzip, diff id).
fn extra_layer(tool: &[u8]) -> (Vec<u8>, String) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        tar.append_data(&mut h, path, data).unwrap();
    };
    add("arm64", tar::EntryType::Directory, 0o755, b"");
    add(
        "arm64/hello",
        tar::EntryType::Regular,
        0o644,
        b"hello from arm64\n",
    );
    add("arm64/tool", tar::EntryType::Regular, 0o755, tool);
    add("etc/.wh.hostname", tar::EntryType::Regular, 0o644, b"");
    let tar = tar.into_inner().unwrap();
    let diff_id = {
        use sha2::{Digest, Sha256};
        format!("sha256:{}", common::hex(&Sha256::digest(&tar)))
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

fn build_multi(scratch: &Path) -> Multi {
    let sample = common::sample_image();
    let layout = scratch.join("multi.oci");
    link_blobs(&sample, &layout);
    let sample_index = read_json(&sample.join("index.json"));
    let amd64_desc = sample_index["manifests"][0].clone();
    let amd64 = amd64_desc["digest"].as_str().unwrap().to_string();
    let manifest = read_json(&blob_path(&sample, &amd64));
    let config = read_json(&blob_path(
        &sample,
        manifest["config"]["digest"].as_str().unwrap(),
    ));

    // bin/tool of the sample's first layer, to repeat in the extra layer.
    let first = blob_path(&sample, manifest["layers"][0]["digest"].as_str().unwrap());
    let mut archive =
        tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(first).unwrap()));
    let mut tool = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().as_os_str() == "bin/tool" {
            std::io::Read::read_to_end(&mut entry, &mut tool).unwrap();
        }
    }
    assert!(!tool.is_empty(), "the sample has bin/tool");

    let (layer, diff_id) = extra_layer(&tool);
    let (layer_digest, layer_size) = put(&layout, &layer);
    let mut arm_config = config.clone();
    arm_config["architecture"] = json!("arm64");
    arm_config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(json!(diff_id));
    arm_config["history"]
        .as_array_mut()
        .unwrap()
        .push(json!({"created_by": "the arm64 layer"}));
    let (config_digest, config_size) = put(&layout, &serde_json::to_vec(&arm_config).unwrap());
    let mut arm_manifest = manifest.clone();
    arm_manifest["config"]["digest"] = json!(config_digest);
    arm_manifest["config"]["size"] = json!(config_size);
    arm_manifest["layers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"mediaType": MT_GZIP, "digest": layer_digest, "size": layer_size}));
    let (arm64, arm64_size) = put(&layout, &serde_json::to_vec(&arm_manifest).unwrap());

    let amd64_entry = json!({"mediaType": MT_MANIFEST, "digest": amd64,
        "size": amd64_desc["size"], "platform": {"os": "linux", "architecture": "amd64"}});
    let arm64_entry = json!({"mediaType": MT_MANIFEST, "digest": arm64, "size": arm64_size,
        "platform": {"os": "linux", "architecture": "arm64"}});
    let (index_digest, index_size) = put(
        &layout,
        &serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MT_INDEX,
            "manifests": [amd64_entry, arm64_entry]}))
        .unwrap(),
    );
    write_layout(
        &layout,
        &json!({"schemaVersion": 2, "manifests": [{"mediaType": MT_INDEX,
            "digest": index_digest, "size": index_size,
            "annotations": {REF_NAME: "latest"}}]}),
    );

    let one = |name: &str, entry: &Value| {
        let dir = scratch.join(name);
        link_blobs(&layout, &dir);
        let mut entry = entry.clone();
        entry["annotations"] = json!({REF_NAME: "latest"});
        write_layout(&dir, &json!({"schemaVersion": 2, "manifests": [entry]}));
        dir
    };
    Multi {
        amd64_only: one("amd64-only.oci", &amd64_entry),
        arm64_only: one("arm64-only.oci", &arm64_entry),
        layout,
        amd64,
        arm64,
    }
}

/// umoci's tree of the one-platform layout `layout`, as nydusd should show it.
fn expected_tree(layout: &Path, scratch: &Path, name: &str) -> Listing {
    let rootfs = unpack::umoci(
        &format!("oci:{}:latest", layout.display()),
        scratch,
        name,
        false,
    );
    tree::list(&rootfs, ListOptions::NYDUSD)
}

/// Pull the manifest `digest` of `repo` from the registry into a layout, extract its merged
/// bootstrap, and mount it with nydusd's registry backend.
fn registry_tree(
    registry: &registry::Registry,
    repo: &str,
    digest: &str,
    scratch: &Path,
    name: &str,
) -> Listing {
    let pulled = scratch.join(format!("{name}.pulled"));
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}/{repo}@{digest}", registry.host))
        .arg(format!("oci:{}:latest", pulled.display())));
    let boot = scratch.join(format!("{name}.boot"));
    reference::merged_bootstrap(&pulled, "latest", &boot);
    // The newest nydusd here; tests/convert.rs reads a pushed image with both.
    let mnt = mounts::nydusd_registry(
        mounts::NYDUSD[1],
        &boot,
        &registry.host,
        repo,
        scratch,
        name,
    );
    tree::list(&mnt.dir, ListOptions::NYDUSD)
}

/// `skopeo copy [--all] SRC oci:scratch/name:latest`; the digest the copy's `latest` names.
fn skopeo_copy(src: &str, all: bool, scratch: &Path, name: &str) -> String {
    let dest = scratch.join(name);
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet"]);
    if all {
        cmd.arg("--all");
    }
    run(cmd.arg(src).arg(format!("oci:{}:latest", dest.display())));
    top_entry(&dest, "latest")["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `skopeo inspect --raw REF`, parsed.
fn skopeo_raw(reference: &str) -> Value {
    let out = run(Command::new("skopeo").args(["inspect", "--raw", reference]));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every file under `dir` (relative path → bytes), for byte-for-byte comparison.
fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            (rel, fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Names in `dir`, sorted (to prove nothing was left behind).
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn single_platform_packaging_as_the_snapshotter_lays_it_out() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    convert(&common::sample_image(), &out, &[]);
    let sample_index = read_json(&common::sample_image().join("index.json"));
    let source = &sample_index["manifests"][0];

    // index.json names the manifest directly, with the input's tag and the Nydus platform mark.
    let index = read_json(&out.join("index.json"));
    assert_eq!(index["mediaType"], MT_INDEX);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    let top = top_entry(&out, "latest");
    assert_eq!(top["mediaType"], MT_MANIFEST);
    assert_eq!(
        top["platform"],
        json!({"os": "linux", "architecture": "amd64", "os.features": ["nydus.remoteimage.v1"]})
    );

    let manifest = read_json(&blob_path(&out, top["digest"].as_str().unwrap()));
    assert_eq!(manifest["mediaType"], MT_MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let a = &manifest["annotations"];
    assert_eq!(
        a["containerd.io/snapshot/nydus-source-digest"],
        source["digest"]
    );
    assert_eq!(a["containerd.io/snapshot/nydus-source-reference"], "latest");
    assert_eq!(a["containerd.io/snapshot/nydus-fs-version"], "6");
    assert_eq!(
        a["containerd.io/snapshot/nydus-builder-version"],
        concat!("nydus-offline ", env!("CARGO_PKG_VERSION"))
    );
    assert!(manifest.get("subject").is_none(), "no subject unless asked");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    for blob in &layers[..2] {
        assert_eq!(blob["mediaType"], MT_NYDUS_BLOB);
        assert_eq!(
            blob["annotations"],
            json!({"containerd.io/snapshot/nydus-blob": "true"})
        );
        // The digest is the blob file's sha256: the blob id the registry backend fetches.
        let path = blob_path(&out, blob["digest"].as_str().unwrap());
        assert_eq!(fs::metadata(&path).unwrap().len(), blob["size"]);
    }
    assert_eq!(layers[2]["mediaType"], MT_GZIP);
    assert_eq!(
        layers[2]["annotations"],
        json!({"containerd.io/snapshot/nydus-bootstrap": "true",
               "containerd.io/snapshot/nydus-fs-version": "6"})
    );

    // The config: diff ids rewritten (blobs: their own digest; bootstrap: its uncompressed
    // tar), one history entry added, everything else as it was.
    let config = read_json(&blob_path(
        &out,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    let source_manifest = read_json(&blob_path(
        &common::sample_image(),
        source["digest"].as_str().unwrap(),
    ));
    let source_config = read_json(&blob_path(
        &common::sample_image(),
        source_manifest["config"]["digest"].as_str().unwrap(),
    ));
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids[0], layers[0]["digest"]);
    assert_eq!(diff_ids[1], layers[1]["digest"]);
    let boot_tar = scratch.path().join("boot.tar");
    reference::uncompressed_tar(
        MT_GZIP,
        &blob_path(&out, layers[2]["digest"].as_str().unwrap()),
        &boot_tar,
    );
    assert_eq!(
        diff_ids[2],
        format!("sha256:{}", common::sha256_hex(&boot_tar))
    );
    let history = config["history"].as_array().unwrap();
    assert_eq!(
        history.last().unwrap(),
        &json!({"created_by": "Nydus Converter", "comment": "Nydus Bootstrap Layer"})
    );
    assert_eq!(
        history[..2],
        source_config["history"].as_array().unwrap()[..]
    );
    for key in ["config", "created", "architecture", "os"] {
        assert_eq!(config[key], source_config[key], "{key} kept");
    }

    // --tag names it otherwise.
    let tagged = scratch.path().join("tagged");
    convert(&common::sample_image(), &tagged, &["--tag", "v1-nydus"]);
    top_entry(&tagged, "v1-nydus");
}

#[test]
fn skopeo_inspects_and_copies_every_output_form() {
    let scratch = common::scratch();
    let s = scratch.path();
    let sample = common::sample_image();
    let multi = build_multi(s);
    let forms: [(&str, &Path, &[&str], bool); 4] = [
        ("one.oci", &sample, &[], false),
        (
            "one.tar",
            &sample,
            &["--output-format", "oci-archive"],
            false,
        ),
        ("multi.oci", &multi.layout, &["--all-platforms"], true),
        (
            "multi.tar",
            &multi.layout,
            &["--all-platforms", "--output-format", "oci-archive"],
            true,
        ),
    ];
    let mut digests = Vec::new();
    for (name, input, args, all) in forms {
        let out = s.join(format!("out-{name}"));
        convert(input, &out, args);
        let transport = if name.ends_with(".tar") {
            "oci-archive"
        } else {
            "oci"
        };
        let reference = format!("{transport}:{}:latest", out.display());
        // skopeo reads the image (the host's platform of a multi-platform one) …
        let inspect = run(Command::new("skopeo").args(["inspect", &reference]));
        let inspected: Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(inspected["Os"], "linux", "{name}");
        assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3, "{name}");
        // … and copies it, every platform and blob, unchanged.
        let raw = skopeo_raw(&reference);
        let expected_type = if all { MT_INDEX } else { MT_MANIFEST };
        assert_eq!(raw["mediaType"], expected_type, "{name}");
        let copied = skopeo_copy(&reference, all, s, &format!("copy-{name}"));
        digests.push(copied);
    }
    // The archive holds exactly the layout.
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[2], digests[3]);
    let listing = run(Command::new("tar").arg("tf").arg(s.join("out-multi.tar")));
    let names = String::from_utf8(listing.stdout).unwrap();
    let mut expected: Vec<String> = vec![
        "oci-layout".into(),
        "index.json".into(),
        "blobs/".into(),
        "blobs/sha256/".into(),
    ];
    expected.extend(
        names_in(&s.join("out-multi.oci/blobs/sha256"))
            .into_iter()
            .map(|n| format!("blobs/sha256/{n}")),
    );
    assert_eq!(names.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn multi_platform_output_shares_layers_and_mounts_per_platform_from_a_registry() {
    let scratch = common::scratch();
    let s = scratch.path();
    let multi = build_multi(s);
    let out = s.join("out");
    convert(&multi.layout, &out, &["--all-platforms"]);

    // index.json → an image index with one Nydus manifest per platform, in the input's order.
    let top = top_entry(&out, "latest");
    assert_eq!(top["mediaType"], MT_INDEX);
    let index = read_json(&blob_path(&out, top["digest"].as_str().unwrap()));
    let entries = index["manifests"].as_array().unwrap();
    let arches: Vec<&str> = entries
        .iter()
        .map(|e| e["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    for e in entries {
        assert_eq!(
            e["platform"]["os.features"],
            json!(["nydus.remoteimage.v1"])
        );
        assert_eq!(e["mediaType"], MT_MANIFEST);
    }
    let manifest = |e: &Value| read_json(&blob_path(&out, e["digest"].as_str().unwrap()));
    let (amd, arm) = (manifest(&entries[0]), manifest(&entries[1]));
    assert_eq!(
        amd["annotations"]["containerd.io/snapshot/nydus-source-digest"],
        multi.amd64
    );
    assert_eq!(
        arm["annotations"]["containerd.io/snapshot/nydus-source-digest"],
        multi.arm64
    );
    let blobs = |m: &Value| -> Vec<String> {
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["mediaType"] == MT_NYDUS_BLOB)
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let (amd_blobs, arm_blobs) = (blobs(&amd), blobs(&arm));
    assert_eq!(amd_blobs.len(), 2);
    assert_eq!(arm_blobs.len(), 3);
    assert_eq!(amd_blobs[..], arm_blobs[..2], "shared layers, same blobs");
    // The arm64 layer's copy of bin/tool (48000 bytes) is stored in the shared lower blob only.
    let extra = fs::metadata(blob_path(&out, &arm_blobs[2])).unwrap().len();
    assert!(extra < 40_000, "the arm64 layer's blob is {extra} bytes");

    // Converting each platform alone gives the very same manifests: sharing changes nothing.
    for (platform, entry) in [("linux/amd64", &entries[0]), ("linux/arm64", &entries[1])] {
        let alone = s.join(format!("alone-{}", platform.replace('/', "-")));
        convert(&multi.layout, &alone, &["--platform", platform]);
        assert_eq!(
            top_entry(&alone, "latest")["digest"],
            entry["digest"],
            "{platform}"
        );
    }
    // A --platform list is --all-platforms here, byte for byte.
    let listed = s.join("listed");
    convert(
        &multi.layout,
        &listed,
        &["--platform", "linux/arm64,linux/amd64"],
    );
    assert_eq!(all_files(&listed), all_files(&out));

    // Pushed with skopeo copy --all, every platform mounts through nydusd's registry backend
    // and shows umoci's tree of that platform.
    let registry = registry::Registry::start();
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", out.display()))
        .arg(format!("docker://{}/multi:latest", registry.host)));
    for (entry, only, name) in [
        (&entries[0], &multi.amd64_only, "amd64"),
        (&entries[1], &multi.arm64_only, "arm64"),
    ] {
        let expected = expected_tree(only, s, &format!("expected-{name}"));
        let actual = registry_tree(
            &registry,
            "multi",
            entry["digest"].as_str().unwrap(),
            s,
            &format!("registry-{name}"),
        );
        tree::assert_same_nydusd(
            &expected,
            &actual,
            &format!("nydusd (registry) of the pushed {name} Nydus manifest"),
        );
    }
}

/// What acceld 0.2.24+ (nydusify 2.4) writes for `--merge-platform`.
const MT_NYDUS_CONFIG: &str = "application/vnd.nydus.image.config.v1+json";
const NYDUS_ARTIFACT_TYPE: &str = "application/vnd.nydus.image.manifest.v1+json";
const EMPTY_LAYER: &str = "containerd.io/snapshot/nydus-empty-layer";
const SOURCE_DIGEST: &str = "containerd.io/snapshot/nydus-source-digest";
const EMPTY_LAYER_DIGEST: &str =
    "sha256:4f4fb700ef54461cfa02571ae0db9a0dc1e0cdb5577484a6d75e68dc38e8acc1";
const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// The blob `desc` names in `layout`: present, of its size and digest.
fn described_blob(layout: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().unwrap();
    let path = blob_path(layout, digest);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        bytes.len() as u64,
        desc["size"].as_u64().unwrap(),
        "{digest}"
    );
    assert_eq!(format!("sha256:{}", common::sha256_hex(&path)), digest);
    bytes
}

/// An original manifest a merged index keeps, as acceld's `PrependEmptyLayer` leaves it: the
/// empty gzip layer first (annotated), its diff id and history entry first in a new config, the
/// config descriptor with the media type of the manifest's kind, `nydus-source-digest` on the
/// manifest and its index entry; everything else as in `source` (manifest and config JSON, when
/// the source has them: a legacy docker save tarball's manifest is made up). Every blob present.
fn assert_kept_original(
    out: &Path,
    entry: &Value,
    source: Option<(&str, &Value, &Value)>,
    docker: bool,
) {
    let (mt_manifest, mt_layer, mt_config) = if docker {
        (MT_DOCKER_MANIFEST, MT_DOCKER_GZIP, MT_DOCKER_CONFIG)
    } else {
        (
            MT_MANIFEST,
            MT_GZIP,
            "application/vnd.oci.image.config.v1+json",
        )
    };
    assert_eq!(entry["mediaType"], mt_manifest);
    assert!(entry["platform"].get("os.features").is_none());
    assert!(entry.get("artifactType").is_none());
    let m: Value = serde_json::from_slice(&described_blob(out, entry)).unwrap();
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(
        layers[0],
        json!({"mediaType": mt_layer, "digest": EMPTY_LAYER_DIGEST, "size": 32,
            "annotations": {EMPTY_LAYER: "true"}})
    );
    // An empty tar (two zero blocks), gzip-compressed.
    let mut tar = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&described_blob(out, &layers[0])[..]),
        &mut tar,
    )
    .unwrap();
    assert_eq!(tar, vec![0u8; 1024]);
    for layer in &layers[1..] {
        described_blob(out, layer);
    }
    let config_desc = &m["config"];
    assert_eq!(
        config_desc,
        &json!({"mediaType": mt_config, "digest": config_desc["digest"], "size": config_desc["size"]})
    );
    let config: Value = serde_json::from_slice(&described_blob(out, config_desc)).unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids[0], EMPTY_LAYER_DIFF_ID);
    assert_eq!(diff_ids.len(), layers.len());
    assert_eq!(
        config["history"][0],
        json!({"created_by": "Nydus Converter", "comment": "Nydus Empty Layer"})
    );
    let Some((digest, source_m, source_config)) = source else {
        assert!(
            entry.get("annotations").is_none(),
            "no source digest to record"
        );
        assert!(m["annotations"].get(SOURCE_DIGEST).is_none());
        return;
    };
    assert_ne!(entry["digest"], digest, "a new manifest");
    assert_eq!(entry["annotations"], json!({SOURCE_DIGEST: digest}));
    // The manifest: the source's, but for the empty layer, the config and the annotation.
    let mut expected = source_m.clone();
    expected["layers"]
        .as_array_mut()
        .unwrap()
        .insert(0, layers[0].clone());
    expected["config"] = config_desc.clone();
    expected["annotations"][SOURCE_DIGEST] = json!(digest);
    assert_eq!(m, expected);
    // The config: the source's, but for the empty layer's diff id and history entry.
    let mut expected = source_config.clone();
    expected["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!(EMPTY_LAYER_DIFF_ID));
    expected["history"]
        .as_array_mut()
        .unwrap()
        .insert(0, config["history"][0].clone());
    assert_eq!(config, expected);
}

/// `skopeo inspect` of a pushed manifest: the parsed form (with `--config`: the config's)
/// or, with `raw`, the bytes as JSON.
fn skopeo_inspect(reference: &str, config: bool, raw: bool) -> Value {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if config {
        cmd.arg("--config");
    }
    if raw {
        cmd.arg("--raw");
    }
    serde_json::from_slice(&run(cmd.arg(reference)).stdout).unwrap()
}

/// `nydus-offline check OUT --source SOURCE`, which must pass.
fn check_passes(out: &Path, source: &Path) {
    let result = nydus_offline(&[
        "check",
        out.to_str().unwrap(),
        "--source",
        source.to_str().unwrap(),
    ]);
    assert!(
        result.status.success(),
        "check: {}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}

/// The index skopeo pushed is `ours`, but that skopeo 1.9 re-encodes it without the entries'
/// `artifactType` (newer skopeo keeps it): `os.features` still marks the Nydus manifests.
fn assert_same_index_but_artifact_type(pushed: &Value, ours: &Value) {
    let mut ours = ours.clone();
    for (p, o) in pushed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .zip(ours["manifests"].as_array_mut().unwrap())
    {
        if p.get("artifactType").is_none() {
            o.as_object_mut().unwrap().remove("artifactType");
        }
    }
    assert_eq!(pushed, &ours, "the registry serves our index");
}

#[test]
fn merge_platform_keeps_the_originals_and_mounts_per_platform_from_a_registry() {
    let scratch = common::scratch();
    let s = scratch.path();
    let multi = build_multi(s);
    let out = s.join("out");
    convert(
        &multi.layout,
        &out,
        &["--all-platforms", "--merge-platform", "--with-referrer"],
    );
    let top = top_entry(&out, "latest");
    let index = read_json(&blob_path(&out, top["digest"].as_str().unwrap()));
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    // The originals first, each with the empty layer prepended, then the Nydus manifests,
    // marked by artifactType and a config media type containerd does not pull.
    for (e, source) in entries[..2].iter().zip([&multi.amd64, &multi.arm64]) {
        let source_m = read_json(&blob_path(&multi.layout, source));
        let source_config = read_json(&blob_path(
            &multi.layout,
            source_m["config"]["digest"].as_str().unwrap(),
        ));
        assert_kept_original(&out, e, Some((source, &source_m, &source_config)), false);
        // The source's layer blobs, byte for byte.
        for l in source_m["layers"].as_array().unwrap() {
            let d = l["digest"].as_str().unwrap();
            assert_eq!(
                fs::read(blob_path(&out, d)).unwrap(),
                fs::read(blob_path(&multi.layout, d)).unwrap(),
                "{d}"
            );
        }
    }
    let source_sizes = [
        fs::metadata(blob_path(&multi.layout, &multi.amd64))
            .unwrap()
            .len(),
        fs::metadata(blob_path(&multi.layout, &multi.arm64))
            .unwrap()
            .len(),
    ];
    for ((e, original), (source, size)) in entries[2..]
        .iter()
        .zip(&entries[..2])
        .zip([&multi.amd64, &multi.arm64].into_iter().zip(source_sizes))
    {
        assert_eq!(
            e["platform"]["os.features"],
            json!(["nydus.remoteimage.v1"])
        );
        assert_eq!(e["artifactType"], NYDUS_ARTIFACT_TYPE);
        assert!(e.get("annotations").is_none());
        assert_eq!(
            e["platform"]["architecture"],
            original["platform"]["architecture"]
        );
        let m = read_json(&blob_path(&out, e["digest"].as_str().unwrap()));
        assert_eq!(m["config"]["mediaType"], MT_NYDUS_CONFIG);
        described_blob(&out, &m["config"]);
        // As acceld: the Nydus manifest names the source manifest, not the kept copy.
        assert_eq!(m["annotations"][SOURCE_DIGEST], json!(source));
        assert_eq!(
            m["subject"],
            json!({"mediaType": MT_MANIFEST, "digest": source, "size": size})
        );
    }
    check_passes(&out, &multi.layout);

    // umoci unpacks the kept arm64 image, empty layer and all, straight from our output.
    let original_arm = s.join("original-arm64.oci");
    link_blobs(&out, &original_arm);
    let mut arm_entry = entries[1].clone();
    arm_entry["annotations"] = json!({REF_NAME: "latest"});
    write_layout(
        &original_arm,
        &json!({"schemaVersion": 2, "manifests": [arm_entry]}),
    );
    let expected_arm = expected_tree(&multi.arm64_only, s, "expected-arm64");
    assert_eq!(
        expected_tree(&original_arm, s, "original-arm64")
            .without_dir_mtimes()
            .lines(),
        expected_arm.clone().without_dir_mtimes().lines()
    );

    let registry = registry::Registry::start();
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", out.display()))
        .arg(format!("docker://{}/merged:latest", registry.host)));
    let pushed = |digest: &Value| {
        format!(
            "docker://{}/merged@{}",
            registry.host,
            digest.as_str().unwrap()
        )
    };
    assert_same_index_but_artifact_type(
        &skopeo_inspect(
            &format!("docker://{}/merged:latest", registry.host),
            false,
            true,
        ),
        &index,
    );
    for (original, nydus) in entries[..2].iter().zip(&entries[2..]) {
        // An original is an ordinary image to skopeo, the empty layer its first.
        let inspected = skopeo_inspect(&pushed(&original["digest"]), false, false);
        assert_eq!(inspected["Digest"], original["digest"]);
        assert_eq!(inspected["Layers"][0], EMPTY_LAYER_DIGEST);
        assert_eq!(
            inspected["Architecture"],
            original["platform"]["architecture"]
        );
        // A Nydus manifest is an artifact to skopeo (its config media type is not an image's):
        // it is read raw, config included, as nydusify 2.4's is.
        let raw = skopeo_inspect(&pushed(&nydus["digest"]), false, true);
        assert_eq!(
            raw,
            read_json(&blob_path(&out, nydus["digest"].as_str().unwrap()))
        );
        let config = skopeo_inspect(&pushed(&nydus["digest"]), true, true);
        assert_eq!(
            config,
            read_json(&blob_path(&out, raw["config"]["digest"].as_str().unwrap()))
        );
    }
    let expected_amd = expected_tree(&multi.amd64_only, s, "expected-amd64");
    for (entry, expected, name) in [
        (&entries[2], &expected_amd, "amd64"),
        (&entries[3], &expected_arm, "arm64"),
    ] {
        let actual = registry_tree(
            &registry,
            "merged",
            entry["digest"].as_str().unwrap(),
            s,
            &format!("registry-{name}"),
        );
        tree::assert_same_nydusd(
            expected,
            &actual,
            &format!("nydusd (registry) of the pushed merge-platform {name} Nydus manifest"),
        );
    }
}

#[test]
fn merge_platform_keeps_docker_media_types_and_leaves_a_made_up_manifest_unnamed() {
    let scratch = common::scratch();
    let s = scratch.path();
    // The sample as a Docker schema 2 image in an OCI layout (same blobs).
    let sample = common::sample_image();
    let layout = s.join("docker.oci");
    link_blobs(&sample, &layout);
    let desc = &read_json(&sample.join("index.json"))["manifests"][0];
    let mut m = read_json(&blob_path(&sample, desc["digest"].as_str().unwrap()));
    let config = read_json(&blob_path(&sample, m["config"]["digest"].as_str().unwrap()));
    m["mediaType"] = json!(MT_DOCKER_MANIFEST);
    m["config"]["mediaType"] = json!(MT_DOCKER_CONFIG);
    for l in m["layers"].as_array_mut().unwrap() {
        l["mediaType"] = json!(MT_DOCKER_GZIP);
    }
    let (digest, size) = put(&layout, &serde_json::to_vec(&m).unwrap());
    write_layout(
        &layout,
        &json!({"schemaVersion": 2, "manifests": [{"mediaType": MT_DOCKER_MANIFEST,
            "digest": digest, "size": size, "annotations": {REF_NAME: "latest"}}]}),
    );
    let out = s.join("out");
    convert(&layout, &out, &["--merge-platform"]);
    let index = read_json(&blob_path(
        &out,
        top_entry(&out, "latest")["digest"].as_str().unwrap(),
    ));
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_kept_original(&out, &entries[0], Some((&digest, &m, &config)), true);
    let nydus = read_json(&blob_path(&out, entries[1]["digest"].as_str().unwrap()));
    assert_eq!(
        nydus["mediaType"], MT_MANIFEST,
        "the Nydus manifest is OCI either way"
    );
    assert_eq!(nydus["config"]["mediaType"], MT_NYDUS_CONFIG);
    check_passes(&out, &layout);
    // skopeo pushes the index; the kept original is still a Docker image to it.
    let registry = registry::Registry::start();
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", out.display()))
        .arg(format!("docker://{}/docker:latest", registry.host)));
    let pushed = format!(
        "docker://{}/docker@{}",
        registry.host,
        entries[0]["digest"].as_str().unwrap()
    );
    assert_eq!(
        skopeo_inspect(&pushed, false, true),
        read_json(&blob_path(&out, entries[0]["digest"].as_str().unwrap()))
    );
    let inspected = skopeo_inspect(&pushed, false, false);
    assert_eq!(inspected["Layers"][0], EMPTY_LAYER_DIGEST);
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3);

    // A legacy docker save tarball: the manifest is made up, so nothing records its digest.
    let legacy = s.join("sample.docker.tar");
    run(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:latest", sample.display()))
        .arg(format!("docker-archive:{}:sample:latest", legacy.display())));
    let out = s.join("out-legacy");
    convert(&legacy, &out, &["--merge-platform", "--tag", "latest"]);
    let index = read_json(&blob_path(
        &out,
        top_entry(&out, "latest")["digest"].as_str().unwrap(),
    ));
    assert_kept_original(&out, &index["manifests"][0], None, false);
    check_passes(&out, &legacy);
    // …and --with-referrer has no subject to name.
    let refused = nydus_offline(&[
        "convert",
        legacy.to_str().unwrap(),
        s.join("out-referrer").to_str().unwrap(),
        "--merge-platform",
        "--with-referrer",
    ]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the subject would name nothing"));
}

#[test]
fn with_referrer_names_the_source_manifest_as_subject() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    convert(&common::sample_image(), &out, &["--with-referrer"]);
    let source = &read_json(&common::sample_image().join("index.json"))["manifests"][0];
    let reference = format!("oci:{}:latest", out.display());
    let manifest = skopeo_raw(&reference);
    assert_eq!(
        manifest["subject"],
        json!({"mediaType": MT_MANIFEST, "digest": source["digest"], "size": source["size"]})
    );
    skopeo_copy(&reference, false, scratch.path(), "copy");
}

#[test]
fn an_existing_layout_gets_the_image_added() {
    let scratch = common::scratch();
    let s = scratch.path();
    let multi = build_multi(s);
    let out = s.join("out");
    convert(&common::sample_image(), &out, &[]);
    let before = top_entry(&out, "latest");
    let blob = blob_path(
        &out,
        read_json(&blob_path(&out, before["digest"].as_str().unwrap()))["layers"][0]["digest"]
            .as_str()
            .unwrap(),
    );
    let inode = fs::metadata(&blob).unwrap().ino();

    convert(&multi.layout, &out, &["--all-platforms", "--tag", "multi"]);
    assert_eq!(top_entry(&out, "latest"), before, "the old image stays");
    let multi_top = top_entry(&out, "multi");
    assert_eq!(
        fs::metadata(&blob).unwrap().ino(),
        inode,
        "a shared blob is not rewritten"
    );
    // The sample is the multi image's amd64 platform: the same Nydus manifest.
    let index = read_json(&blob_path(&out, multi_top["digest"].as_str().unwrap()));
    assert_eq!(index["manifests"][0]["digest"], before["digest"]);
    for tag in ["latest", "multi"] {
        skopeo_raw(&format!("oci:{}:{tag}", out.display()));
    }
    skopeo_copy(&format!("oci:{}:multi", out.display()), true, s, "copy");

    // The same tag again is refused (tests/safety.rs); with --force it replaces its entry.
    convert(
        &multi.layout,
        &out,
        &["--platform", "linux/arm64", "--tag", "multi", "--force"],
    );
    let index = read_json(&out.join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(
        top_entry(&out, "multi")["platform"]["architecture"],
        "arm64"
    );
    assert_eq!(names_in(s).iter().filter(|n| n.starts_with('.')).count(), 0);

    // Anything else that exists is refused without --force, and replaced with it.
    let file = s.join("file");
    fs::write(&file, b"not a layout").unwrap();
    let refused = nydus_offline(&[
        "convert",
        common::sample_image().to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert_eq!(fs::read(&file).unwrap(), b"not a layout");
    convert(&common::sample_image(), &file, &["--force"]);
    top_entry(&file, "latest");
}

/// Runs adding to one layout at the same time take turns at commit and read the index again
/// under the lock: every image stays named (without it, the last commit would keep only its
/// own tag, as all of them read the index when they started).
#[test]
fn runs_adding_to_one_layout_at_once_keep_every_image() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    convert(&common::sample_image(), &out, &[]);
    let tags: Vec<String> = (0..4).map(|i| format!("t{i}")).collect();
    let runs: Vec<_> = tags
        .iter()
        .map(|tag| {
            Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
                .args(["convert", "--quiet", "--tag", tag])
                .arg(common::sample_image())
                .arg(&out)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut run in runs {
        assert!(run.wait().unwrap().success());
    }
    let index = read_json(&out.join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 5, "{index}");
    for tag in tags.iter().map(String::as_str).chain(["latest"]) {
        top_entry(&out, tag);
    }
    assert_eq!(
        names_in(scratch.path())
            .iter()
            .filter(|n| n.starts_with('.'))
            .count(),
        0,
        "no staging directory left"
    );
}

#[test]
fn the_same_input_gives_the_same_bytes_in_both_forms() {
    let scratch = common::scratch();
    let s = scratch.path();
    let multi = build_multi(s);
    for (form, extra) in [
        ("oci", &[][..]),
        ("tar", &["--output-format", "oci-archive"][..]),
    ] {
        let mut outputs = Vec::new();
        // Runs 1 and 3 differ only in the number of worker threads.
        for (run_no, more) in [
            (1, &["--jobs", "1"][..]),
            (2, &["--merge-platform"][..]),
            (3, &["--jobs", "2"][..]),
        ] {
            let out = s.join(format!("out{run_no}.{form}"));
            let mut args = vec!["--all-platforms", "--with-referrer"];
            args.extend_from_slice(extra);
            args.extend_from_slice(more);
            convert(&multi.layout, &out, &args);
            // Different mtimes on the way in change nothing.
            sleep(Duration::from_millis(1100));
            outputs.push(out);
        }
        let bytes = |p: &Path| {
            if form == "oci" {
                all_files(p)
            } else {
                vec![(String::new(), fs::read(p).unwrap())]
            }
        };
        assert!(
            bytes(&outputs[0]) == bytes(&outputs[2]),
            "{form}: two runs differ"
        );
        assert!(
            bytes(&outputs[0]) != bytes(&outputs[1]),
            "{form}: options matter"
        );
    }
}

#[test]
fn a_debian_image_gives_the_same_archive_with_one_or_two_threads() {
    let scratch = common::scratch();
    let input = common::corpus("debian-minbase.oci");
    let mut archives = Vec::new();
    for jobs in ["1", "2"] {
        let out = scratch.path().join(format!("jobs{jobs}.tar"));
        convert(
            &input,
            &out,
            &["--output-format", "oci-archive", "--jobs", jobs],
        );
        archives.push(fs::read(&out).unwrap());
    }
    assert!(archives[0] == archives[1], "--jobs 1 and --jobs 2 differ");
}

/// The bootstrap layer is gzipped in 1 MiB members side by side (src/output/gzip.rs): GNU gzip,
/// which reads every member as Go's reader does, gives back the tar the diff id names.
#[test]
fn a_multi_member_bootstrap_layer_reads_back_with_gzip() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    convert(&common::corpus("debian-minbase.oci"), &out, &[]);
    let manifest = read_json(&blob_path(
        &out,
        top_entry(&out, "latest")["digest"].as_str().unwrap(),
    ));
    let config = read_json(&blob_path(
        &out,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    let layer = blob_path(&out, manifest["layers"][1]["digest"].as_str().unwrap());
    let tar = scratch.path().join("boot.tar");
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"gzip -dc "$1" > "$2""#)
        .args(["sh", layer.to_str().unwrap(), tar.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "gzip -dc failed on the bootstrap layer");
    assert!(
        fs::metadata(&tar).unwrap().len() > 1 << 20,
        "the bootstrap should span more than one 1 MiB member"
    );
    assert_eq!(
        config["rootfs"]["diff_ids"][1],
        format!("sha256:{}", common::sha256_hex(&tar))
    );
}

#[test]
fn a_failing_last_layer_leaves_nothing_behind() {
    let scratch = common::scratch();
    let s = scratch.path();
    // The sample with one byte of its last layer changed: the layer fails verification once it
    // has been read, after the first layer's blob was written.
    let broken = s.join("broken.oci");
    link_blobs(&common::sample_image(), &broken);
    fs::copy(
        common::sample_image().join("index.json"),
        broken.join("index.json"),
    )
    .unwrap();
    fs::copy(
        common::sample_image().join("oci-layout"),
        broken.join("oci-layout"),
    )
    .unwrap();
    let index = read_json(&broken.join("index.json"));
    let manifest = read_json(&blob_path(
        &broken,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let last = blob_path(&broken, manifest["layers"][1]["digest"].as_str().unwrap());
    let last_hex = last.file_name().unwrap().to_str().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let at = bytes.len() - 12;
    bytes[at] ^= 0x55;
    fs::remove_file(&last).unwrap();
    fs::write(&last, bytes).unwrap();

    let outputs = s.join("outputs");
    fs::create_dir(&outputs).unwrap();
    for (name, args) in [
        ("new.oci", &[][..]),
        ("new.tar", &["--output-format", "oci-archive"][..]),
    ] {
        let out = outputs.join(name);
        let mut cmd = vec!["convert", broken.to_str().unwrap(), out.to_str().unwrap()];
        cmd.extend_from_slice(args);
        let failed = nydus_offline(&cmd);
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert_eq!(failed.status.code(), Some(3), "{name}: {stderr}");
        assert!(stderr.contains(last_hex), "{name}: {stderr}");
        assert!(
            names_in(&outputs).is_empty(),
            "{name}: left {:?}",
            names_in(&outputs)
        );
    }

    // Adding to an existing layout: it stays exactly as it was.
    let existing = outputs.join("existing");
    convert(&common::sample_image(), &existing, &[]);
    let before = all_files(&existing);
    let failed = nydus_offline(&[
        "convert",
        broken.to_str().unwrap(),
        existing.to_str().unwrap(),
        "--tag",
        "broken",
    ]);
    assert_eq!(failed.status.code(), Some(3));
    assert!(
        all_files(&existing) == before,
        "the existing layout changed"
    );
    assert_eq!(names_in(&outputs), ["existing"]);
}

/// Start converting the sample into `out`, hold the run where it waits for its turn to commit
/// (everything written into its staging directory), send `signal`, and return the exit code
/// and stderr.
fn interrupt_mid_run(out: &Path, args: &[&str], signal: i32) -> (Option<i32>, String) {
    let parent = out.parent().unwrap();
    common::holding_the_commit_lock(parent, || {
        let mut child = Command::new(BIN)
            .arg("convert")
            .arg(common::sample_image())
            .arg(out)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        common::until_waiting_for_a_lock(&mut child);
        assert!(
            names_in(parent)
                .iter()
                .any(|n| n.contains("nydus-offline-tmp")),
            "no staging directory while the run waits"
        );
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        child
    })
    .wait_with_output()
    .map(|output| {
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .unwrap()
}

#[test]
fn sigterm_and_ctrl_c_mid_run_leave_nothing_behind() {
    let scratch = common::scratch();
    let outputs = scratch.path().join("outputs");
    fs::create_dir(&outputs).unwrap();
    let (code, stderr) = interrupt_mid_run(&outputs.join("out"), &[], libc::SIGTERM);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        names_in(&outputs).is_empty(),
        "left {:?}",
        names_in(&outputs)
    );

    let (code, stderr) = interrupt_mid_run(
        &outputs.join("out.tar"),
        &["--output-format", "oci-archive"],
        libc::SIGINT,
    );
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        names_in(&outputs).is_empty(),
        "left {:?}",
        names_in(&outputs)
    );
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_nothing_behind() {
    let scratch = common::scratch();
    // The sample's layout takes about 470 KB: 256 KiB cannot hold it; 720 KiB holds the layout
    // but not the archive packed beside it.
    for (size, name, args) in [
        ("256k", "out", &[][..]),
        ("720k", "out.tar", &["--output-format", "oci-archive"][..]),
    ] {
        let disk = Tmpfs::mount(&scratch.path().join(format!("disk-{size}")), size);
        let out = disk.0.join(name);
        let sample = common::sample_image();
        let mut cmd = vec!["convert", sample.to_str().unwrap(), out.to_str().unwrap()];
        cmd.extend_from_slice(args);
        let failed = nydus_offline(&cmd);
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert_eq!(failed.status.code(), Some(4), "{name}: {stderr}");
        assert!(stderr.contains("No space left on device"), "{stderr}");
        assert!(
            stderr.contains(out.to_str().unwrap()),
            "names the output: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(names_in(&disk.0).is_empty(), "left {:?}", names_in(&disk.0));
    }
}
