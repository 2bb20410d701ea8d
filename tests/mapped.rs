//! Layers that lie as plain tars in plain files (the members of a docker save tarball, an
//! uncompressed layer blob) are mapped instead of read (issue 8). Converting them must give
//! exactly the bytes that streaming the same layers gives, and a damaged one must stop the
//! conversion with exit code 3, one line naming the file and the problem, and no output.

mod source_support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

use nydus_offline::source::{self, PlatformChoice, Selection};
use source_support::*;

/// `nydus-offline convert --quiet INPUT OUT`, with its exit code checked.
fn convert(input: &Path, out: &Path, code: i32) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
        .args(["convert", "--quiet"])
        .arg(input)
        .arg(out)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(code),
        "convert {}: {}",
        input.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            (rel, fs::read(e.path()).unwrap())
        })
        .collect()
}

/// Whether every layer of the input's image lies as a plain tar in a plain file, i.e. is mapped.
fn mapped(input: &Path) -> bool {
    let src = source::open(input).unwrap();
    let selection = Selection {
        image: None,
        platform: PlatformChoice::Host,
    };
    let images = source::select(&*src, &selection).unwrap();
    images[0]
        .layers
        .iter()
        .all(|l| l.uncompressed_extent().is_some())
}

/// The one error line of a failed run, checked to be exactly one line.
fn one_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn mapped_layers_convert_exactly_as_streamed_ones() {
    let scratch = scratch();
    let forms = sample_forms(scratch.path());
    // The same docker save tarball gzipped: unpacked into a temporary copy, its layers are
    // streamed.
    let streamed = scratch.path().join("sample.docker.tar.gz");
    fs::write(&streamed, gzip(&fs::read(&forms.docker_archive).unwrap())).unwrap();
    assert!(mapped(&forms.docker_archive));
    assert!(!mapped(&streamed));

    let out_mapped = scratch.path().join("mapped");
    let out_streamed = scratch.path().join("streamed");
    convert(&forms.docker_archive, &out_mapped, 0);
    convert(&streamed, &out_streamed, 0);
    let (a, b) = (files(&out_mapped), files(&out_streamed));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(*bytes == b[name], "{name} differs");
    }

    // From the OCI layout (gzip layers, streamed) every blob is the same but the manifest,
    // whose annotations name the source differently.
    let out_oci = scratch.path().join("oci");
    convert(&forms.layout, &out_oci, 0);
    let c = files(&out_oci);
    let only = |x: &BTreeMap<String, Vec<u8>>, y: &BTreeMap<String, Vec<u8>>| -> Vec<String> {
        x.keys().filter(|k| !y.contains_key(*k)).cloned().collect()
    };
    assert_eq!(only(&a, &c).len(), 1, "only the manifest is not shared");
    assert_eq!(only(&c, &a).len(), 1, "only the manifest is not shared");
    for (name, bytes) in &a {
        if let Some(other) = c.get(name) {
            assert!(name == "index.json" || bytes == other, "{name} differs");
        }
    }
}

/// Where a byte of the largest file's content lies in a docker save tarball: in the middle of
/// that file in the largest layer member.
fn content_byte(archive: &Path) -> u64 {
    let mut outer = tar::Archive::new(fs::File::open(archive).unwrap());
    let mut best = (0, 0);
    for member in outer.entries().unwrap() {
        let member = member.unwrap();
        if member.size() > best.1 {
            best = (member.raw_file_position(), member.size());
        }
    }
    let mut bytes = vec![0u8; best.1 as usize];
    let mut f = fs::File::open(archive).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(best.0)).unwrap();
    f.read_exact(&mut bytes).unwrap();
    let mut inner = tar::Archive::new(&bytes[..]);
    let (pos, size) = inner
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .map(|e| (e.raw_file_position(), e.size()))
        .max_by_key(|&(_, size)| size)
        .unwrap();
    best.0 + pos + size / 2
}

#[test]
fn a_damaged_docker_save_layer_is_exit_3_naming_it() {
    let scratch = scratch();
    let forms = sample_forms(scratch.path());
    let archive = forms.docker_archive;
    let mut bytes = fs::read(&archive).unwrap();
    let at = content_byte(&archive) as usize;
    bytes[at] ^= 0x20;
    fs::write(&archive, &bytes).unwrap();
    assert!(mapped(&archive));

    let out = scratch.path().join("out");
    let line = one_line(&convert(&archive, &out, 3));
    assert!(
        line.contains(&format!("{}:", archive.display())) && line.contains("content has digest"),
        "{line}"
    );
    assert!(!out.exists(), "no output is left behind");

    // Cut short inside that layer: the archive itself says so, before anything is mapped.
    bytes.truncate(at);
    fs::write(&archive, &bytes).unwrap();
    let line = one_line(&convert(&archive, &out, 3));
    assert!(
        line.contains(&archive.display().to_string()) && line.contains("cut short"),
        "{line}"
    );
    assert!(!out.exists(), "no output is left behind");
}

#[test]
fn a_damaged_plain_layer_blob_is_exit_3_naming_it() {
    let scratch = scratch();
    let input = scratch.path().join("in");
    let layout = Layout::new(&input);
    let content = vec![b'x'; 3 << 20];
    let layer = LayerBlob::new(&[("big", &content), ("small", b"hello")], LAYER_TAR);
    let desc = layout.image(std::slice::from_ref(&layer), "linux/amd64");
    layout.finish(vec![tagged(desc, "latest")]);
    assert!(mapped(&input));
    convert(&input, &scratch.path().join("good"), 0);

    // One byte of the big file's content flipped, the size kept.
    let (digest, _) = layout.blob(&layer.stored);
    let blob = layout.blob_path(&digest);
    let mut bytes = fs::read(&blob).unwrap();
    bytes[512 + (3 << 19)] ^= 1;
    fs::write(&blob, &bytes).unwrap();
    let out = scratch.path().join("out");
    let line = one_line(&convert(&input, &out, 3));
    assert!(
        line.contains(&blob.display().to_string())
            && line.contains(&format!("content has digest {}", sha256(&bytes))),
        "{line}"
    );
    assert!(!out.exists(), "no output is left behind");
}
