//! A Nydus image built by the reference tools (nydus-image 2.2.0), the way nydus-snapshotter's
//! converter does it: `nydus-image create --type tar-rafs` per layer, then `nydus-image merge`.
//!
//! It proves the harness before our writer exists, and later serves as a second opinion: the
//! same readers must show the same tree for ours and for the reference.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::{nydus_bin, run, sha256_hex};

/// The parts of an OCI image the harness needs: manifest, config, and layer blob paths.
pub struct OciImage {
    pub manifest: Value,
    pub config: Value,
    /// (media type, path of the blob file) per layer, bottom first.
    pub layers: Vec<(String, PathBuf)>,
}

/// Read the image tagged `tag` from the OCI layout `dir` (top-level index entries only).
pub fn read_oci(dir: &Path, tag: &str) -> OciImage {
    let blob = |digest: &str| -> PathBuf {
        let (alg, hex) = digest.split_once(':').expect("digest has an algorithm");
        dir.join("blobs").join(alg).join(hex)
    };
    let json = |path: &Path| -> Value {
        serde_json::from_slice(
            &fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap()
    };
    let index = json(&dir.join("index.json"));
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no image tagged {tag} in {}", dir.display()));
    let manifest = json(&blob(desc["digest"].as_str().unwrap()));
    let config = json(&blob(manifest["config"]["digest"].as_str().unwrap()));
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap().to_string(),
                blob(l["digest"].as_str().unwrap()),
            )
        })
        .collect();
    OciImage {
        manifest,
        config,
        layers,
    }
}

/// Write a layer blob's uncompressed tar to `out`.
pub fn uncompressed_tar(media_type: &str, blob: &Path, out: &Path) {
    let file = fs::File::open(blob).unwrap();
    let mut reader: Box<dyn Read> = if media_type.ends_with("gzip") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if media_type.ends_with("zstd") {
        Box::new(zstd::stream::read::Decoder::new(file).unwrap())
    } else {
        Box::new(file)
    };
    let mut w = fs::File::create(out).unwrap();
    io::copy(&mut reader, &mut w).unwrap();
}

/// A Nydus image on disk: the merged bootstrap and the blob files named by their ids.
pub struct NydusImage {
    pub bootstrap: PathBuf,
    pub blob_dir: PathBuf,
    /// Blob ids (sha256 hex of each blob file), bottom layer first.
    pub blob_ids: Vec<String>,
    /// Per-layer bootstraps, bottom first.
    pub layer_bootstraps: Vec<PathBuf>,
}

/// Build a RAFS v6 Nydus image of `image` with nydus-image 2.2.0 under `scratch/ref`.
///
/// Each layer becomes its own bootstrap and blob (`--whiteout-spec none`, as the snapshotter's
/// converter does), then `merge` applies OCI whiteouts across layers. The blob id is the sha256
/// of the blob file, which is what the registry path needs (the id is the layer digest).
pub fn build(image: &OciImage, scratch: &Path, extra_args: &[&str]) -> NydusImage {
    let work = scratch.join("ref");
    let blob_dir = work.join("blobs");
    let boot_dir = work.join("layer-bootstraps");
    fs::create_dir_all(&blob_dir).unwrap();
    fs::create_dir_all(&boot_dir).unwrap();
    let mut blob_ids = Vec::new();
    let mut layer_bootstraps = Vec::new();
    for (i, (media_type, blob)) in image.layers.iter().enumerate() {
        let tar = work.join(format!("layer{i}.tar"));
        uncompressed_tar(media_type, blob, &tar);
        let boot = work.join(format!("layer{i}.boot"));
        let data = work.join(format!("layer{i}.blob"));
        run(Command::new(nydus_bin("nydus-image"))
            .args([
                "create",
                "--log-level",
                "warn",
                "--type",
                "tar-rafs",
                "--fs-version",
                "6",
            ])
            .args(["--whiteout-spec", "none"])
            .args(extra_args)
            .arg("--bootstrap")
            .arg(&boot)
            .arg("--blob")
            .arg(&data)
            .arg(&tar));
        let id = sha256_hex(&data);
        fs::rename(&data, blob_dir.join(&id)).unwrap();
        // merge takes blob ids from the bootstrap files' names in some cases: name them by id.
        let named = boot_dir.join(&id);
        fs::rename(&boot, &named).unwrap();
        fs::remove_file(&tar).unwrap();
        blob_ids.push(id);
        layer_bootstraps.push(named);
    }
    let bootstrap = work.join("merged.boot");
    run(Command::new(nydus_bin("nydus-image"))
        .args(["merge", "--log-level", "warn", "--bootstrap"])
        .arg(&bootstrap)
        .args(&layer_bootstraps));
    NydusImage {
        bootstrap,
        blob_dir,
        blob_ids,
        layer_bootstraps,
    }
}

const MT_NYDUS_BLOB: &str = "application/vnd.oci.image.layer.nydus.blob.v1";
const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Package a Nydus image as an OCI layout at `out`, tagged `tag`, as nydus-snapshotter's converter
/// lays it out (oci-packaging.md): one blob layer per blob, then the bootstrap layer.
pub fn package_oci(nydus: &NydusImage, source: &OciImage, out: &Path, tag: &str) {
    let blobs = out.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, u64) {
        let tmp = out.join("blob.tmp");
        fs::write(&tmp, bytes).unwrap();
        let hex = sha256_hex(&tmp);
        fs::rename(&tmp, blobs.join(&hex)).unwrap();
        (format!("sha256:{hex}"), bytes.len() as u64)
    };

    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for id in &nydus.blob_ids {
        let size = fs::metadata(nydus.blob_dir.join(id)).unwrap().len();
        fs::copy(nydus.blob_dir.join(id), blobs.join(id)).unwrap();
        layers.push(json!({
            "mediaType": MT_NYDUS_BLOB,
            "digest": format!("sha256:{id}"),
            "size": size,
            "annotations": { "containerd.io/snapshot/nydus-blob": "true" }
        }));
        diff_ids.push(json!(format!("sha256:{id}")));
    }

    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    tar.append_data(&mut dir, "image", io::empty()).unwrap();
    let boot = fs::read(&nydus.bootstrap).unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o444);
    file.set_size(boot.len() as u64);
    tar.append_data(&mut file, "image/image.boot", &boot[..])
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let tar_path = out.join("bootstrap.tar.tmp");
    fs::write(&tar_path, &tar).unwrap();
    diff_ids.push(json!(format!("sha256:{}", sha256_hex(&tar_path))));
    fs::remove_file(&tar_path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let (digest, size) = put(&gz.finish().unwrap());
    layers.push(json!({
        "mediaType": MT_LAYER_GZIP,
        "digest": digest,
        "size": size,
        "annotations": {
            "containerd.io/snapshot/nydus-bootstrap": "true",
            "containerd.io/snapshot/nydus-fs-version": "6"
        }
    }));

    let mut config = source.config.clone();
    config["rootfs"]["diff_ids"] = Value::Array(diff_ids);
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size
        },
        "layers": layers
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": { "org.opencontainers.image.ref.name": tag }
        }]
    });
    fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// Extract `image/image.boot` from the last (bootstrap) layer of the image tagged `tag` in the
/// OCI layout `layout`, into `out`.
pub fn merged_bootstrap(layout: &Path, tag: &str, out: &Path) {
    let image = read_oci(layout, tag);
    let (media_type, blob) = image.layers.last().expect("a bootstrap layer");
    let tar_path = out.with_extension("tar");
    uncompressed_tar(media_type, blob, &tar_path);
    let mut archive = tar::Archive::new(fs::File::open(&tar_path).unwrap());
    let mut found = false;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().as_os_str() == "image/image.boot" {
            let mut w = fs::File::create(out).unwrap();
            io::copy(&mut entry, &mut w).unwrap();
            found = true;
        }
    }
    fs::remove_file(&tar_path).unwrap();
    assert!(
        found,
        "no image/image.boot in the bootstrap layer of {}",
        layout.display()
    );
}

/// Extract a blob's inlined bootstrap the way nydus-snapshotter does (`seekFileByTOC`): read the
/// TOC named by the last 512-byte tar header, find `image.boot`, and decompress it. A RAFS v5
/// blob has no TOC: its last header names `image.boot`, the raw bootstrap before it.
pub fn inlined_bootstrap(blob: &Path, out: &Path) {
    let bytes = fs::read(blob).unwrap();
    let header_at = bytes.len() - 512;
    let header = tar::Header::from_byte_slice(&bytes[header_at..]);
    if header.path_bytes().as_ref() == b"image.boot" {
        let size = header.size().unwrap() as usize;
        fs::write(out, &bytes[header_at - size..header_at]).unwrap();
        return;
    }
    assert_eq!(
        header.path_bytes().as_ref(),
        b"rafs.blob.toc",
        "{}: the last tar header names no TOC",
        blob.display()
    );
    let toc_size = header.size().unwrap() as usize;
    let toc = &bytes[header_at - toc_size..header_at];
    for entry in toc.chunks(128) {
        let name_end = entry[8..24].iter().position(|&b| b == 0).unwrap_or(16);
        if &entry[8..8 + name_end] != b"image.boot" {
            continue;
        }
        let flags = u32::from_le_bytes(entry[0..4].try_into().unwrap());
        let offset = u64::from_le_bytes(entry[56..64].try_into().unwrap()) as usize;
        let size = u64::from_le_bytes(entry[64..72].try_into().unwrap()) as usize;
        let data = &bytes[offset..offset + size];
        let boot = if flags & 0x2 != 0 {
            zstd::stream::decode_all(data).unwrap()
        } else {
            data.to_vec()
        };
        fs::write(out, boot).unwrap();
        return;
    }
    panic!("{}: no image.boot in the TOC", blob.display());
}

/// `nydus-image check` of a bootstrap whose blobs are in `blob_dir`; panics with its output if it
/// refuses.
pub fn check(bootstrap: &Path, blob_dir: &Path) -> String {
    let out = run(Command::new(nydus_bin("nydus-image"))
        .args(["check", "--log-level", "warn", "-D"])
        .arg(blob_dir)
        .arg(bootstrap));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// [`check`] with nydus-image `version` (one of [`super::mounts::NYDUSD`]): the newest reads
/// features 2.2.0 refuses.
pub fn check_with(version: &str, bootstrap: &Path, blob_dir: &Path) -> String {
    let bin = super::mounts::nydusd_bin(version).with_file_name("nydus-image");
    let bin = if version == super::mounts::NYDUSD[0] {
        nydus_bin("nydus-image")
    } else {
        bin
    };
    let out = run(Command::new(bin)
        .args(["check", "--log-level", "warn", "-D"])
        .arg(blob_dir)
        .arg("-B")
        .arg(bootstrap));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}
