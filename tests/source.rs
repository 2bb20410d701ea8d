//! The image sources, through the library API: the sample image in every form skopeo writes,
//! the shapes built by hand (several images, several platforms, nested indexes, zstd layers,
//! mislabelled compression, the newer docker save form), and verification while streaming.

mod source_support;

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use nydus_offline::ErrorKind;
use nydus_offline::source::compression::Compression;
use nydus_offline::source::{self, Image, ImageSource, Platform, PlatformChoice, Selection};
use serde_json::json;
use source_support::*;

fn select(
    src: &dyn ImageSource,
    image: Option<&str>,
    platform: PlatformChoice,
) -> nydus_offline::Result<Vec<Image>> {
    source::select(
        src,
        &Selection {
            image: image.map(str::to_string),
            platform,
        },
    )
}

/// Read every layer of `image` to the end through a tar reader, and return the file paths seen.
fn read_all_layers(src: &dyn ImageSource, image: &Image) -> Vec<Vec<String>> {
    image
        .layers
        .iter()
        .map(|layer| {
            let mut reader = src.open_layer(layer).unwrap();
            let mut names = Vec::new();
            {
                let mut archive = tar::Archive::new(&mut reader);
                for entry in archive.entries().unwrap() {
                    let entry = entry.unwrap();
                    names.push(entry.path().unwrap().display().to_string());
                }
            }
            let summary = reader.finish().unwrap();
            assert_eq!(summary.diff_id, layer.diff_id);
            assert_eq!(summary.stored_size, layer.size);
            names
        })
        .collect()
}

#[test]
fn sample_reads_the_same_in_every_form() {
    let scratch = scratch();
    let forms = sample_forms(scratch.path());
    let reference = source::open(&sample()).unwrap();
    let want = select(&*reference, None, PlatformChoice::Host).unwrap();
    assert_eq!(want.len(), 1);
    assert!(want[0].layers.len() >= 2);
    assert!(want[0].names.contains(&"latest".to_string()));
    let want_files = read_all_layers(&*reference, &want[0]);

    let inputs: [(&Path, &str); 5] = [
        (&sample(), "OCI image layout"),
        (&forms.layout, "OCI image layout"),
        (&forms.oci_archive, "oci-archive"),
        (&forms.oci_archive_gz, "oci-archive"),
        (&forms.docker_archive, "docker save tarball"),
    ];
    for (path, form) in inputs {
        let src = source::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(src.form(), form, "{}", path.display());
        let images = select(&*src, None, PlatformChoice::Host).unwrap();
        assert_eq!(images.len(), 1);
        let image = &images[0];
        // The config is carried unchanged by every form: same bytes, same diff_ids.
        assert_eq!(
            image.config.digest,
            want[0].config.digest,
            "{}",
            path.display()
        );
        assert_eq!(image.config.raw, want[0].config.raw);
        assert_eq!(image.platform, Platform::new("linux", "amd64", None));
        assert_eq!(
            read_all_layers(&*src, image),
            want_files,
            "{}",
            path.display()
        );
    }

    // Docker archives store layers uncompressed, in place: the extent is the layer's tar.
    let docker = source::open(&forms.docker_archive).unwrap();
    let image = &select(&*docker, Some("sample:latest"), PlatformChoice::Host).unwrap()[0];
    assert!(image.manifest.synthesized);
    for layer in &image.layers {
        assert_eq!(layer.stored, Compression::None);
        let extent = layer
            .uncompressed_extent()
            .expect("a plain layer in a plain tar");
        assert_eq!(extent.path, forms.docker_archive);
        let mut f = fs::File::open(&extent.path).unwrap();
        f.seek(SeekFrom::Start(extent.offset)).unwrap();
        let mut bytes = vec![0u8; extent.len as usize];
        f.read_exact(&mut bytes).unwrap();
        assert_eq!(sha256(&bytes), layer.diff_id.to_string());
    }

    // gzip layers have no uncompressed extent; an oci-archive member still has a stored extent,
    // the unpacked copy of a gzip archive has none.
    let archive = source::open(&forms.oci_archive).unwrap();
    let layer = &select(&*archive, None, PlatformChoice::Host).unwrap()[0].layers[0];
    assert_eq!(layer.stored, Compression::Gzip);
    assert!(layer.uncompressed_extent().is_none());
    assert_eq!(layer.extent.as_ref().unwrap().path, forms.oci_archive);
    let gz = source::open(&forms.oci_archive_gz).unwrap();
    assert!(
        select(&*gz, None, PlatformChoice::Host).unwrap()[0].layers[0]
            .extent
            .is_none()
    );
}

#[test]
fn several_images_need_a_choice() {
    let scratch = scratch();
    let layout = Layout::new(scratch.path());
    let a = layout.image(&two_layers(), "linux/amd64");
    let b = layout.image(&[LayerBlob::new(&[("b", b"b")], LAYER_GZIP)], "linux/amd64");
    layout.finish(vec![tagged(a.clone(), "v1"), tagged(b.clone(), "v2")]);
    let src = source::open(scratch.path()).unwrap();
    assert_eq!(src.images().len(), 2);

    let err = select(&*src, None, PlatformChoice::Host).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    let msg = err.to_string();
    assert!(
        msg.contains("holds 2 images") && msg.contains("v1") && msg.contains("v2"),
        "{msg}"
    );

    let v2 = select(&*src, Some("v2"), PlatformChoice::Host).unwrap();
    assert_eq!(
        v2[0].manifest.digest.to_string(),
        b["digest"].as_str().unwrap()
    );
    let by_digest = select(
        &*src,
        Some(a["digest"].as_str().unwrap()),
        PlatformChoice::Host,
    )
    .unwrap();
    assert_eq!(by_digest[0].names, vec!["v1".to_string()]);
    let err = select(&*src, Some("v3"), PlatformChoice::Host).unwrap_err();
    assert!(
        err.to_string().contains("no image matches --image v3"),
        "{err}"
    );
}

/// index.json → index → (amd64, index → (arm64/v8, arm/v7)).
fn multi_platform(dir: &Path) -> Layout {
    let layout = Layout::new(dir);
    let amd = with_platform(layout.image(&two_layers(), "linux/amd64"), "linux/amd64");
    let arm64 = with_platform(
        layout.image(
            &[LayerBlob::new(&[("arch", b"arm64")], LAYER_GZIP)],
            "linux/arm64/v8",
        ),
        "linux/arm64/v8",
    );
    let arm = with_platform(
        layout.image(
            &[LayerBlob::new(&[("arch", b"arm")], LAYER_ZSTD)],
            "linux/arm/v7",
        ),
        "linux/arm/v7",
    );
    let inner = layout.index(vec![arm64, arm]);
    let outer = layout.index(vec![amd, inner]);
    layout.finish(vec![tagged(outer, "multi")]);
    layout
}

#[test]
fn nested_indexes_and_platforms() {
    let scratch = scratch();
    multi_platform(scratch.path());
    let src = source::open(scratch.path()).unwrap();
    assert_eq!(src.images().len(), 1);
    assert_eq!(src.images()[0].manifests.len(), 3);

    let arm64 = select(
        &*src,
        None,
        PlatformChoice::Only("linux/arm64".parse().unwrap()),
    )
    .unwrap();
    assert_eq!(arm64.len(), 1);
    assert_eq!(arm64[0].platform.to_string(), "linux/arm64/v8");
    assert_eq!(
        read_all_layers(&*src, &arm64[0]),
        vec![vec!["arch".to_string()]]
    );

    let arm = select(
        &*src,
        Some("multi"),
        PlatformChoice::Only("linux/arm".parse().unwrap()),
    )
    .unwrap();
    assert_eq!(arm[0].layers[0].stored, Compression::Zstd);

    let all = select(&*src, None, PlatformChoice::All).unwrap();
    assert_eq!(all.len(), 3);

    let host = Platform::host();
    if ["amd64", "arm64"].contains(&host.architecture.as_str()) {
        let picked = select(&*src, None, PlatformChoice::Host).unwrap();
        assert!(picked[0].platform.matches(&host));
    }

    let err = select(
        &*src,
        None,
        PlatformChoice::Only("linux/s390x".parse().unwrap()),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    assert!(
        msg.contains("no manifest for platform linux/s390x"),
        "{msg}"
    );
    assert!(
        msg.contains("linux/amd64")
            && msg.contains("linux/arm64/v8")
            && msg.contains("linux/arm/v7"),
        "{msg}"
    );
}

#[test]
fn partial_export_lists_absent_platforms() {
    let scratch = scratch();
    let layout = multi_platform(scratch.path());
    // Drop the arm64 manifest, as `ctr export` without --all-platforms would.
    let src = source::open(scratch.path()).unwrap();
    let arm64 = src.images()[0]
        .manifests
        .iter()
        .find(|m| m.platform.as_ref().unwrap().architecture == "arm64")
        .unwrap()
        .digest
        .to_string();
    drop(src);
    fs::remove_file(layout.blob_path(&arm64)).unwrap();
    let src = source::open(scratch.path()).unwrap();
    assert!(!src.images()[0].manifests.iter().all(|m| m.present));
    assert!(
        select(
            &*src,
            None,
            PlatformChoice::Only("linux/amd64".parse().unwrap())
        )
        .is_ok()
    );
    let err = select(
        &*src,
        None,
        PlatformChoice::Only("linux/arm64".parse().unwrap()),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("is missing from the input"),
        "{err}"
    );
}

#[test]
fn compression_is_read_from_the_bytes() {
    let scratch = scratch();
    let layout = Layout::new(scratch.path());
    let layers = vec![
        // Labelled gzip, stored plain.
        LayerBlob::new(&[("plain", b"p")], LAYER_TAR).relabeled(LAYER_GZIP),
        // Labelled plain, stored zstd.
        LayerBlob::new(&[("zstd", b"z")], LAYER_ZSTD).relabeled(LAYER_TAR),
        // Docker's gzip media type.
        LayerBlob::new(&[("docker", b"d")], DOCKER_LAYER_GZIP),
    ];
    let desc = layout.image(&layers, "linux/amd64");
    layout.finish(vec![desc]);
    let src = source::open(scratch.path()).unwrap();
    let image = &select(&*src, None, PlatformChoice::Host).unwrap()[0];
    let stored: Vec<Compression> = image.layers.iter().map(|l| l.stored).collect();
    assert_eq!(
        stored,
        [Compression::None, Compression::Zstd, Compression::Gzip]
    );
    assert_eq!(image.layers[0].declared, Compression::Gzip);
    // A plain layer in a layout directory is a whole file: mappable as is.
    let extent = image.layers[0].uncompressed_extent().unwrap();
    assert_eq!(extent.offset, 0);
    assert_eq!(
        read_all_layers(&*src, image),
        vec![
            vec!["plain".to_string()],
            vec!["zstd".to_string()],
            vec!["docker".to_string()]
        ]
    );
}

#[test]
fn newer_docker_save_form() {
    let scratch = scratch();
    let out = scratch.path().join("newer.tar");
    newer_docker_save(&scratch.path().join("tree"), &out);
    let src = source::open(&out).unwrap();
    assert_eq!(src.form(), "docker save tarball (with OCI layout)");
    let names = &src.images()[0].names;
    for n in ["1.0", "docker.io/library/tool:1.0", "tool:stable"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    let image = &select(&*src, Some("tool:stable"), PlatformChoice::Host).unwrap()[0];
    assert!(!image.manifest.synthesized);
    assert_eq!(
        read_all_layers(&*src, image),
        vec![
            vec!["etc/os-release".to_string()],
            vec!["usr/bin/tool".to_string()]
        ]
    );
}

#[test]
fn legacy_docker_save_with_symlinked_layers_and_gzip_layer() {
    let scratch = scratch();
    let plain = tar_of(&[("a", b"a")]);
    let second = tar_of(&[("b", b"b")]);
    let gz = gzip(&second);
    let config = serde_json::to_vec(&json!({
        "architecture": "arm64", "os": "linux", "variant": "v8",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&plain), sha256(&second), sha256(&plain)]},
    }))
    .unwrap();
    let config_name = format!("{}.json", sha256(&config).strip_prefix("sha256:").unwrap());
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": ["legacy:1"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
    }]))
    .unwrap();
    let out = scratch.path().join("legacy.tar");
    write_tar(
        &out,
        &[
            Member::File("aaa/layer.tar", plain.clone()),
            Member::File("bbb/layer.tar", gz.clone()),
            // Docker links a repeated layer to its first copy.
            Member::Symlink("ccc/layer.tar", "../aaa/layer.tar"),
            Member::File(&config_name, config.clone()),
            Member::File("manifest.json", manifest),
        ],
    );
    let src = source::open(&out).unwrap();
    assert_eq!(src.form(), "docker save tarball");
    // The only image is taken whatever the host is.
    let image = &select(&*src, Some("legacy:1"), PlatformChoice::Host).unwrap()[0];
    assert_eq!(image.platform.to_string(), "linux/arm64/v8");
    assert_eq!(image.layers[1].stored, Compression::Gzip);
    assert_eq!(image.layers[1].digest.to_string(), sha256(&gz));
    assert_eq!(
        image.layers[2].uncompressed_extent(),
        image.layers[0].uncompressed_extent()
    );
    assert_eq!(
        read_all_layers(&*src, image),
        vec![
            vec!["a".to_string()],
            vec!["b".to_string()],
            vec!["a".to_string()]
        ]
    );
}

#[test]
fn corruption_is_caught_while_streaming() {
    let scratch = scratch();
    let (layout, _) = simple_layout(scratch.path());
    let src = source::open(scratch.path()).unwrap();
    let image = select(&*src, None, PlatformChoice::Host).unwrap().remove(0);
    // Flip one byte in the middle of the gzip layer, keeping its size.
    let path = layout.blob_path(image.layers[0].digest.as_ref());
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let mut reader = src.open_layer(&image.layers[0]).unwrap();
    let mut sink = Vec::new();
    let err = reader.read_to_end(&mut sink).unwrap_err();
    let err = nydus_offline::common::digest::from_io(err, "layer");
    assert_eq!(err.kind(), ErrorKind::BadInput);
    assert!(err.to_string().contains("content has digest"), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    // The failure sticks: finishing does not pretend all is well.
    assert!(reader.finish().is_err());
}
