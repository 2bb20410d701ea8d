//! RAFS v5 Nydus images on the read side: images nydus-image 2.2.0 and 2.4.4 build
//! (`create --fs-version 5 --blob-inline-meta` per layer, `merge` with the blob digests),
//! packaged as nydus-snapshotter lays them out, must `check` clean against their source image,
//! `inspect` as RAFS 5 with their blobs, and `unpack` to the tree the source unpacks to; damage
//! in a blob is a problem naming it. Tests skip (saying so) when a nydus-image is missing.

mod common;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::reference::{self, NydusImage, OciImage};
use common::tree::{self, ListOptions};
use common::{layers, run, sha256_hex, unpack};
use nydus_offline::check::{CheckOptions, check};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nydus-offline");

/// nydus-image `version`, if installed.
fn nydus_image(version: &str) -> Option<PathBuf> {
    let path = PathBuf::from(format!(
        "/var/cache/nydus-offline/nydus-{version}/bin/nydus-image"
    ));
    if !path.exists() {
        eprintln!("{} is missing: skipped", path.display());
    }
    path.exists().then_some(path)
}

/// The raw bootstrap a v5 blob ends with: the section its last tar header names.
fn inlined_bootstrap(blob: &[u8]) -> Vec<u8> {
    let header = &blob[blob.len() - 512..];
    assert_eq!(&header[..10], b"image.boot");
    let size = std::str::from_utf8(&header[124..136])
        .unwrap()
        .trim_matches(|c: char| c == '\0' || c == ' ');
    let size = usize::from_str_radix(size, 8).unwrap();
    blob[blob.len() - 512 - size..blob.len() - 512].to_vec()
}

/// A RAFS v5 Nydus image of `image` built by nydus-image `exe` under `scratch/ref`: one blob
/// per layer with its bootstrap inlined, merged with the blobs' sha256 as their ids.
fn build_v5(exe: &Path, image: &OciImage, scratch: &Path) -> NydusImage {
    let work = scratch.join("ref");
    let blob_dir = work.join("blobs");
    let boot_dir = work.join("layer-bootstraps");
    fs::create_dir_all(&blob_dir).unwrap();
    fs::create_dir_all(&boot_dir).unwrap();
    let (mut blob_ids, mut layer_bootstraps) = (Vec::new(), Vec::new());
    for (i, (media_type, blob)) in image.layers.iter().enumerate() {
        let tar = work.join(format!("layer{i}.tar"));
        reference::uncompressed_tar(media_type, blob, &tar);
        let data = work.join(format!("layer{i}.blob"));
        run(Command::new(exe)
            .args(["create", "--log-level", "warn", "--type", "tar-rafs"])
            .args(["--fs-version", "5", "--whiteout-spec", "none"])
            .args(["--chunk-size", "0x1000", "--blob-inline-meta", "--blob"])
            .arg(&data)
            .arg(&tar));
        let id = sha256_hex(&data);
        let bytes = fs::read(&data).unwrap();
        let named = boot_dir.join(&id);
        fs::write(&named, inlined_bootstrap(&bytes)).unwrap();
        fs::rename(&data, blob_dir.join(&id)).unwrap();
        blob_ids.push(id);
        layer_bootstraps.push(named);
    }
    let bootstrap = work.join("merged.boot");
    run(Command::new(exe)
        .args(["merge", "--log-level", "warn", "--bootstrap"])
        .arg(&bootstrap)
        .arg("--blob-digests")
        .arg(blob_ids.join(","))
        .args(&layer_bootstraps));
    NydusImage {
        bootstrap,
        blob_dir,
        blob_ids,
        layer_bootstraps,
    }
}

/// Store `bytes` in the layout `out` by digest: (digest, size).
fn put(out: &Path, bytes: &[u8]) -> (String, u64) {
    let tmp = out.join("blob.tmp");
    fs::write(&tmp, bytes).unwrap();
    let hex = sha256_hex(&tmp);
    fs::rename(&tmp, out.join("blobs/sha256").join(&hex)).unwrap();
    (format!("sha256:{hex}"), bytes.len() as u64)
}

/// Package `nydus` as an OCI layout tagged `latest` at `out`, as nydus-snapshotter lays a v5
/// image out: a blob layer per blob, then the bootstrap layer annotated fs-version 5.
fn package_v5(nydus: &NydusImage, source: &OciImage, out: &Path) {
    fs::create_dir_all(out.join("blobs/sha256")).unwrap();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for id in &nydus.blob_ids {
        let (digest, size) = put(out, &fs::read(nydus.blob_dir.join(id)).unwrap());
        layers.push(json!({
            "mediaType": "application/vnd.oci.image.layer.nydus.blob.v1",
            "digest": digest, "size": size,
            "annotations": { "containerd.io/snapshot/nydus-blob": "true" }
        }));
        diff_ids.push(json!(digest));
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    tar.append_data(&mut dir, "image", std::io::empty())
        .unwrap();
    let boot = fs::read(&nydus.bootstrap).unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o444);
    file.set_size(boot.len() as u64);
    tar.append_data(&mut file, "image/image.boot", &boot[..])
        .unwrap();
    let tar = tar.into_inner().unwrap();
    diff_ids.push(json!(format!("sha256:{}", common::hex(&sha256(&tar)))));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let (digest, size) = put(out, &gz.finish().unwrap());
    layers.push(json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": digest, "size": size,
        "annotations": {
            "containerd.io/snapshot/nydus-bootstrap": "true",
            "containerd.io/snapshot/nydus-fs-version": "5"
        }
    }));
    let mut config = source.config.clone();
    config["rootfs"]["diff_ids"] = Value::Array(diff_ids);
    let (config_digest, config_size) = put(out, &serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest, "size": config_size
        },
        "layers": layers,
        "annotations": { "containerd.io/snapshot/nydus-fs-version": "5" }
    });
    let (digest, size) = put(out, &serde_json::to_vec(&manifest).unwrap());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": { "org.opencontainers.image.ref.name": "latest" }
        }]
    });
    fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// Two layers: `testdata/ondisk/layer5.py`'s, then one that whites out `empty`, replaces
/// `sub/dup` with two chunks, adds a file and a hard-linked pair.
fn two_layer_source(dir: &Path) -> PathBuf {
    let tar1 = dir.join("layer5.tar");
    fs::create_dir_all(dir).unwrap();
    let script = format!("{}/testdata/ondisk/layer5.py", env!("CARGO_MANIFEST_DIR"));
    run(Command::new("python3").arg(script).arg(&tar1));
    let mut b = tar::Builder::new(Vec::new());
    // The parents it writes into, listed as the lower layer has them (as image builders list
    // them): nydus-image's merge gives a directory the metadata of the upper layer's entry,
    // made up (root, 0755, time 0) when the layer does not list it.
    let mut parent = |name: &str, mode: u32, owner: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_uid(owner);
        h.set_gid(if owner == 0 { 0 } else { owner + 1 });
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        h.set_device_major(0).unwrap();
        h.set_device_minor(0).unwrap();
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    };
    parent("dir", 0o755, 70000);
    parent("sub", 0o700, 0);
    let mut add = |name: &str, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_100);
        h.set_size(data.len() as u64);
        h.set_device_major(0).unwrap();
        h.set_device_minor(0).unwrap();
        match link {
            Some(target) => {
                h.set_entry_type(tar::EntryType::Link);
                b.append_link(&mut h, name, target).unwrap();
            }
            None => b.append_data(&mut h, name, data).unwrap(),
        }
    };
    add(".wh.empty", b"", None);
    let big: Vec<u8> = (0..6000u32).map(|i| (i * 13 % 256) as u8).collect();
    add("sub/dup", &big, None);
    add("dir/new.txt", b"new in layer two\n", None);
    add("pair-a", b"linked\n", None);
    add("pair-b", b"", Some("pair-a"));
    let tar2 = b.into_inner().unwrap();
    layers::oci_layout(&dir.join("oci"), &[fs::read(&tar1).unwrap(), tar2])
}

/// A v5 image of the source layout `input` (tag `latest`) built by nydus-image `version`, at
/// `scratch/nydus`; `None` when that nydus-image is missing.
fn v5_image(version: &str, input: &Path, scratch: &Path) -> Option<PathBuf> {
    let exe = nydus_image(version)?;
    let source = reference::read_oci(input, "latest");
    let built = build_v5(&exe, &source, scratch);
    let out = scratch.join("nydus");
    package_v5(&built, &source, &out);
    Some(out)
}

/// `check --source` through the library: the report must be clean.
fn check_clean(out: &Path, input: &Path, layers: usize) {
    let options = CheckOptions {
        source: Some(input.to_path_buf()),
        ..CheckOptions::default()
    };
    let report = check(out, &options).unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert_eq!((report.manifests, report.blobs), (1, layers));
    assert_eq!(report.bootstraps, layers + 1);
    assert!(report.chunks > 0 && report.compared > 0, "{report:?}");
}

#[test]
fn v5_images_of_nydus_image_2_2_and_2_4_check_clean_against_their_source() {
    for version in ["2.2.0", "2.4.4"] {
        let scratch = common::scratch();
        let input = two_layer_source(&scratch.path().join("src"));
        let Some(out) = v5_image(version, &input, scratch.path()) else {
            continue;
        };
        check_clean(&out, &input, 2);
    }
}

#[test]
fn a_v5_image_of_the_sample_checks_clean_and_unpacks_to_the_source_tree() {
    let scratch = common::scratch();
    let input = common::sample_image();
    let Some(out) = v5_image("2.4.4", &input, scratch.path()) else {
        return;
    };
    let layers = reference::read_oci(&input, "latest").layers.len();
    check_clean(&out, &input, layers);
    round_trip(&out, &input, scratch.path());
}

/// `unpack` of the v5 image `out`, unpacked by umoci: the tree umoci unpacks `input` to.
fn round_trip(out: &Path, input: &Path, scratch: &Path) {
    let plain = scratch.join("plain");
    run(Command::new(BIN).arg("unpack").arg(out).arg(&plain));
    // The unpacked image is what the v5 image came from, to `check --source` as well.
    common::check_with_source(out, &plain);
    let expected = unpack::umoci(
        &format!("oci:{}:latest", input.display()),
        scratch,
        "e",
        false,
    );
    let actual = unpack::umoci(
        &format!("oci:{}:latest", plain.display()),
        scratch,
        "a",
        false,
    );
    tree::assert_same(
        &tree::list(&expected, ListOptions::ALL).without_dir_mtimes(),
        &tree::list(&actual, ListOptions::ALL).without_dir_mtimes(),
        "umoci of the unpacked v5 image",
    );
}

#[test]
fn a_two_layer_v5_image_unpacks_to_the_source_tree() {
    let scratch = common::scratch();
    let input = two_layer_source(&scratch.path().join("src"));
    let Some(out) = v5_image("2.2.0", &input, scratch.path()) else {
        return;
    };
    round_trip(&out, &input, scratch.path());
}

#[test]
fn inspect_shows_rafs_5_with_its_blobs() {
    let scratch = common::scratch();
    let input = two_layer_source(&scratch.path().join("src"));
    let Some(out) = v5_image("2.4.4", &input, scratch.path()) else {
        return;
    };
    let shown = run(Command::new(BIN).arg("inspect").arg("--json").arg(&out));
    let report: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let nydus = &report["images"][0]["manifests"][0]["nydus"];
    assert_eq!(nydus["rafs_version"], "5", "{report:#}");
    assert_eq!(nydus["chunk_size"], 4096);
    let blobs = nydus["blobs"].as_array().unwrap();
    assert_eq!(blobs.len(), 2);
    for b in blobs {
        assert!(b["size"].as_u64().unwrap() > 0, "{b:#}");
        assert_eq!(b["compressor"], "zstd");
        assert_eq!(b["digester"], "blake3");
        assert!(
            b["features"]
                .as_array()
                .unwrap()
                .contains(&json!("has_tar_header"))
        );
    }
    // layer5.py's 4 chunks; layer two's 2 of `sub/dup`, 1 each of `new.txt` and the pair.
    assert_eq!(nydus["chunks"], 4 + 4);
    // The human listing says RAFS 5 too.
    let shown = run(Command::new(BIN).arg("inspect").arg(&out));
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("RAFS v5, "), "{text}");
    assert!(text.contains("8 chunks of up to 4096 bytes"), "{text}");
}

#[test]
fn a_damaged_chunk_in_a_v5_blob_is_a_problem_naming_the_blob_and_chunk() {
    let scratch = common::scratch();
    let input = two_layer_source(&scratch.path().join("src"));
    let Some(out) = v5_image("2.4.4", &input, scratch.path()) else {
        return;
    };
    let manifest = reference::read_oci(&out, "latest");
    let (_, blob) = &manifest.layers[0];
    let mut bytes = fs::read(blob).unwrap();
    bytes[3] ^= 0xff;
    fs::write(blob, &bytes).unwrap();
    let report = check(&out, &CheckOptions::default()).unwrap();
    let hex = blob.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("blob {hex}: chunk"))
                && (p.contains("digest") || p.contains("decompressed"))),
        "{:#?}",
        report.problems
    );
    // unpack refuses it.
    let plain = scratch.path().join("plain");
    let refused = Command::new(BIN)
        .arg("unpack")
        .arg(&out)
        .arg(&plain)
        .output()
        .unwrap();
    assert!(!refused.status.success());
}

#[test]
fn a_merged_bootstrap_disagreeing_with_its_blobs_is_a_problem() {
    let scratch = common::scratch();
    let input = two_layer_source(&scratch.path().join("src"));
    let Some(exe) = nydus_image("2.4.4") else {
        return;
    };
    let source = reference::read_oci(&input, "latest");
    let built = build_v5(&exe, &source, scratch.path());
    // The merged bootstrap's extended entry of the first blob claims one chunk more, and the
    // root's digest is off by a bit.
    let mut boot = fs::read(&built.bootstrap).unwrap();
    let at = u64::from_le_bytes(boot[72..80].try_into().unwrap()) as usize;
    let count = u32::from_le_bytes(boot[at..at + 4].try_into().unwrap());
    boot[at..at + 4].copy_from_slice(&(count + 1).to_le_bytes());
    let table = u64::from_le_bytes(boot[32..40].try_into().unwrap()) as usize;
    let root = u32::from_le_bytes(boot[table..table + 4].try_into().unwrap()) as usize * 8;
    boot[root] ^= 1;
    fs::write(&built.bootstrap, &boot).unwrap();
    let out = scratch.path().join("nydus");
    package_v5(&built, &source, &out);
    let report = check(&out, &CheckOptions::default()).unwrap();
    let has = |words: &[&str]| {
        report
            .problems
            .iter()
            .any(|p| words.iter().all(|w| p.contains(w)))
    };
    assert!(
        has(&[
            "bootstrap inlined in blob",
            "differs from the merged bootstrap's entry"
        ]),
        "{:#?}",
        report.problems
    );
    assert!(
        has(&["merged bootstrap: inode 1 '/'", "children's digests"]),
        "{:#?}",
        report.problems
    );
}
