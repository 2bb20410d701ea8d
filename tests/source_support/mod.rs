//! Fixture builders for the source tests: real OCI layouts, archives and docker save tarballs,
//! written byte by byte with the tar, flate2 and zstd crates into scratch directories, for the
//! shapes skopeo cannot produce (several images, several platforms, nested indexes, zstd layers,
//! the newer docker save form) and for the broken inputs.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// The sample image (another engineer's `testdata/make-sample.py`).
pub fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sample")
}

/// A scratch directory removed on drop.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nydus-offline-source-")
        .tempdir()
        .expect("scratch dir")
}

pub fn sha256(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    format!("sha256:{}", nydus_offline::common::hex::hex(&d))
}

/// A tar holding `files` (path, content) as regular files, with parent directories.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(0);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// A layer to put in a manifest: stored bytes, media type, and the uncompressed tar's digest.
#[derive(Clone)]
pub struct LayerBlob {
    pub stored: Vec<u8>,
    pub media_type: String,
    pub diff_id: String,
    pub urls: Option<Vec<String>>,
}

impl LayerBlob {
    /// A layer with `files`, compressed as `media_type` says.
    pub fn new(files: &[(&str, &[u8])], media_type: &str) -> LayerBlob {
        let tar = tar_of(files);
        let stored = match media_type {
            LAYER_GZIP | DOCKER_LAYER_GZIP | DOCKER_FOREIGN => gzip(&tar),
            LAYER_ZSTD => zstd(&tar),
            _ => tar.clone(),
        };
        LayerBlob {
            stored,
            media_type: media_type.to_string(),
            diff_id: sha256(&tar),
            urls: None,
        }
    }

    /// A layer whose stored bytes and media type disagree on purpose.
    pub fn relabeled(mut self, media_type: &str) -> LayerBlob {
        self.media_type = media_type.to_string();
        self
    }
}

/// An OCI image layout being written into a directory.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// Store a blob; returns its descriptor (without media type).
    pub fn blob(&self, bytes: &[u8]) -> (String, usize) {
        let digest = sha256(bytes);
        let hex = digest.strip_prefix("sha256:").unwrap();
        fs::write(self.dir.join("blobs/sha256").join(hex), bytes).unwrap();
        (digest, bytes.len())
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap())
    }

    /// Write config and manifest for an image of `layers` on `platform` (os/arch[/variant]);
    /// returns the manifest descriptor. `diff_ids` overrides the config's list when given.
    pub fn image_with(
        &self,
        layers: &[LayerBlob],
        platform: &str,
        diff_ids: Option<Vec<String>>,
    ) -> Value {
        let parts: Vec<&str> = platform.split('/').collect();
        let mut config = json!({
            "architecture": parts[1],
            "os": parts[0],
            "config": {"Env": ["PATH=/usr/bin"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": diff_ids.unwrap_or_else(|| layers.iter().map(|l| l.diff_id.clone()).collect()),
            },
        });
        if let Some(v) = parts.get(2) {
            config["variant"] = json!(v);
        }
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let (cd, cs) = self.blob(&config_bytes);
        let layer_descs: Vec<Value> = layers
            .iter()
            .map(|l| {
                let (d, s) = self.blob(&l.stored);
                let mut v = json!({"mediaType": l.media_type, "digest": d, "size": s});
                if let Some(urls) = &l.urls {
                    v["urls"] = json!(urls);
                }
                v
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": cs},
            "layers": layer_descs,
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let (d, s) = self.blob(&bytes);
        json!({"mediaType": OCI_MANIFEST, "digest": d, "size": s})
    }

    pub fn image(&self, layers: &[LayerBlob], platform: &str) -> Value {
        self.image_with(layers, platform, None)
    }

    /// Store an index over `entries`; returns its descriptor.
    pub fn index(&self, entries: Vec<Value>) -> Value {
        let bytes = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        }))
        .unwrap();
        let (d, s) = self.blob(&bytes);
        json!({"mediaType": OCI_INDEX, "digest": d, "size": s})
    }

    /// Write `index.json` over `entries`.
    pub fn finish(&self, entries: Vec<Value>) {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// A descriptor with a platform field.
pub fn with_platform(mut desc: Value, platform: &str) -> Value {
    let parts: Vec<&str> = platform.split('/').collect();
    let mut p = json!({"os": parts[0], "architecture": parts[1]});
    if let Some(v) = parts.get(2) {
        p["variant"] = json!(v);
    }
    desc["platform"] = p;
    desc
}

/// A descriptor with a tag.
pub fn tagged(mut desc: Value, tag: &str) -> Value {
    desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    desc
}

/// Two small layers: gzip and zstd.
pub fn two_layers() -> Vec<LayerBlob> {
    vec![
        LayerBlob::new(
            &[("etc/hostname", b"box\n"), ("bin/sh", b"#!fake\n")],
            LAYER_GZIP,
        ),
        LayerBlob::new(&[("app/data.txt", &b"zstd data ".repeat(500))], LAYER_ZSTD),
    ]
}

/// A one-image layout in `dir`, tagged `latest`, for the bad-input tests to break.
pub fn simple_layout(dir: &Path) -> (Layout, Value) {
    let layout = Layout::new(dir);
    let desc = layout.image(&two_layers(), "linux/amd64");
    layout.finish(vec![tagged(desc.clone(), "latest")]);
    (layout, desc)
}

/// Tar the directory `dir` (its contents at the archive root) into `out`.
pub fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// A tar built from explicit members: files and symlinks, in order.
pub enum Member<'a> {
    File(&'a str, Vec<u8>),
    Symlink(&'a str, &'a str),
}

pub fn write_tar(out: &Path, members: &[Member]) {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    for m in members {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(0);
        match m {
            Member::File(path, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                // Write the name into the header by hand: `append_data` refuses `..`, and the
                // tests need such names.
                set_raw_name(&mut h, path);
                h.set_cksum();
                b.append(&h, &data[..]).unwrap();
            }
            Member::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                set_raw_name(&mut h, path);
                h.set_link_name(target).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.finish().unwrap();
}

fn set_raw_name(h: &mut tar::Header, path: &str) {
    let name = &mut h.as_old_mut().name;
    assert!(path.len() < name.len());
    name.fill(0);
    name[..path.len()].copy_from_slice(path.as_bytes());
}

/// Run skopeo (installed in CI) with the given arguments; panics with its stderr on failure.
pub fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("skopeo is installed");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sample image in every form skopeo writes, plus a gzip-compressed oci-archive, under `dir`.
pub struct SampleForms {
    pub layout: PathBuf,
    pub oci_archive: PathBuf,
    pub oci_archive_gz: PathBuf,
    pub docker_archive: PathBuf,
}

pub fn sample_forms(dir: &Path) -> SampleForms {
    let src = format!("oci:{}:latest", sample().display());
    let layout = dir.join("layout");
    let oci_archive = dir.join("sample.oci.tar");
    let docker_archive = dir.join("sample.docker.tar");
    skopeo(&[
        "copy",
        "-q",
        &src,
        &format!("oci:{}:latest", layout.display()),
    ]);
    skopeo(&[
        "copy",
        "-q",
        &src,
        &format!("oci-archive:{}:latest", oci_archive.display()),
    ]);
    skopeo(&[
        "copy",
        "-q",
        &src,
        &format!("docker-archive:{}:sample:latest", docker_archive.display()),
    ]);
    let oci_archive_gz = dir.join("sample.oci.tar.gz");
    fs::write(&oci_archive_gz, gzip(&fs::read(&oci_archive).unwrap())).unwrap();
    SampleForms {
        layout,
        oci_archive,
        oci_archive_gz,
        docker_archive,
    }
}

/// The newer `docker save` form: an OCI layout with `manifest.json` (paths into `blobs/`) and
/// the image name annotations Docker 25 writes, tarred into `out`.
pub fn newer_docker_save(dir: &Path, out: &Path) {
    let layout = Layout::new(dir);
    let layers = vec![
        LayerBlob::new(&[("etc/os-release", b"ID=test\n")], LAYER_TAR),
        LayerBlob::new(&[("usr/bin/tool", b"\x7fELFfake")], LAYER_GZIP),
    ];
    let desc = layout.image(&layers, "linux/amd64");
    let manifest: Value = serde_json::from_slice(
        &fs::read(layout.blob_path(desc["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let mut top = desc.clone();
    top["annotations"] = json!({
        "io.containerd.image.name": "docker.io/library/tool:1.0",
        "org.opencontainers.image.ref.name": "1.0",
    });
    layout.finish(vec![top]);
    let blob = |d: &Value| {
        format!(
            "blobs/sha256/{}",
            d["digest"]
                .as_str()
                .unwrap()
                .strip_prefix("sha256:")
                .unwrap()
        )
    };
    let docker_manifest = json!([{
        "Config": blob(&manifest["config"]),
        "RepoTags": ["tool:1.0", "tool:stable"],
        "Layers": manifest["layers"].as_array().unwrap().iter().map(blob).collect::<Vec<_>>(),
    }]);
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&docker_manifest).unwrap(),
    )
    .unwrap();
    fs::write(dir.join("repositories"), br#"{"tool":{"1.0":"x"}}"#).unwrap();
    tar_dir(dir, out);
}
