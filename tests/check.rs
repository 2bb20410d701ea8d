//! `nydus-offline check` on good and damaged outputs (issue 9).
//!
//! The good output of the sample passes `check` (with and without `--source`), and the real
//! readers agree that it is good: `nydus-image check` accepts its bootstraps, nydusd and the
//! kernel show umoci's tree. Each damaged output is the sample converted and then edited:
//!
//! * a flipped byte in a blob: caught by its digest; and, once the blob is renamed to its new
//!   digest and every reference fixed (manifest, config, the merged bootstrap's blob table and
//!   device slot, the bootstrap layer, the index), caught again by the chunk digests;
//! * a missing blob;
//! * an altered bootstrap: caught by the bootstrap layer's digest; with digests fixed, a broken
//!   super block rule (nydus-image check refuses it too), and an altered owner that only the
//!   comparison with the source can see;
//! * a file missing from the tree (its dirent cut out of the directory), with digests fixed;
//! * a `--merge-platform` output whose kept original names another layer, or another diff id,
//!   as the empty layer.
//!
//! Every damaged case must exit with code 5 and name the damage. And damage at random (seeded),
//! in the merged bootstrap or in a data blob, with every digest above it fixed, never crashes
//! check or makes it allocate by a damaged size (issue 13).

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use nydus_offline::ondisk::blob::{
    BlobTarHeader, TOC_ENTRY_BLOB_TOC, TOC_ENTRY_BOOTSTRAP, TOC_FLAG_COMPRESSION_NONE,
    TOC_FLAG_COMPRESSION_ZSTD, TocEntry,
};
use nydus_offline::ondisk::rafs_v6::reader::{BootstrapReader, Inode};
use nydus_offline::ondisk::rafs_v6::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

use common::tree::{self, ListOptions};
use common::{mounts, reference, unpack};

/// "check found problems".
const CHECK_FAILED: i32 = 5;

fn sha256_hex(bytes: &[u8]) -> String {
    common::hex(&Sha256::digest(bytes))
}

/// Convert the sample into `scratch/name`.
fn convert_sample(scratch: &Path, name: &str) -> PathBuf {
    let out = scratch.join(name);
    common::run(
        Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
            .arg("convert")
            .arg(common::sample_image())
            .arg(&out),
    );
    out
}

/// Run `check OUT [--source SAMPLE]`: exit code and stdout.
fn check(out: &Path, with_source: bool) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nydus-offline"));
    cmd.arg("check").arg(out);
    if with_source {
        cmd.arg("--source").arg(common::sample_image());
    }
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    eprintln!(
        "check {} (source: {with_source}):\n{stdout}{stderr}",
        out.display()
    );
    (o.status.code().unwrap_or(-1), stdout + &stderr)
}

/// Assert that check fails with code 5 and that some problem line contains every `needles`.
fn assert_caught(out: &Path, with_source: bool, needles: &[&str]) -> String {
    let (code, text) = check(out, with_source);
    assert_eq!(code, CHECK_FAILED, "check must fail with 5:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("problem:") && needles.iter().all(|n| l.contains(n))),
        "no problem line contains all of {needles:?}:\n{text}"
    );
    text
}

/// The output layout, edited like a damaged copy would be, with digests fixed on request.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn blob(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex)
    }

    fn json(&self, digest: &str) -> Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&fs::read(self.blob(hex)).unwrap()).unwrap()
    }

    fn index(&self) -> Value {
        serde_json::from_slice(&fs::read(self.dir.join("index.json")).unwrap()).unwrap()
    }

    fn manifest(&self) -> Value {
        self.json(self.index()["manifests"][0]["digest"].as_str().unwrap())
    }

    /// The hex ids of the Nydus blob layers, bottom first.
    fn blob_layers(&self) -> Vec<String> {
        self.manifest()["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["mediaType"] == "application/vnd.oci.image.layer.nydus.blob.v1")
            .map(|l| l["digest"].as_str().unwrap()[7..].to_string())
            .collect()
    }

    /// Write `bytes` as a blob; its hex digest.
    fn put(&self, bytes: &[u8]) -> String {
        let hex = sha256_hex(bytes);
        fs::write(self.blob(&hex), bytes).unwrap();
        hex
    }

    /// The merged bootstrap.
    fn bootstrap(&self) -> Vec<u8> {
        let path = self.dir.with_extension("boot");
        reference::merged_bootstrap(&self.dir, "latest", &path);
        fs::read(path).unwrap()
    }

    /// Replace the merged bootstrap: a new bootstrap layer, and every digest above it fixed.
    fn replace_bootstrap(&self, boot: &[u8]) {
        let mut tar = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_ustar();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_size(0);
        tar.append_data(&mut dir, "image", std::io::empty())
            .unwrap();
        let mut file = tar::Header::new_ustar();
        file.set_mode(0o444);
        file.set_size(boot.len() as u64);
        tar.append_data(&mut file, "image/image.boot", boot)
            .unwrap();
        let tar = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let hex = self.put(&gz);
        let mut manifest = self.manifest();
        let layers = manifest["layers"].as_array_mut().unwrap();
        let last = layers.last_mut().unwrap();
        let old = last["digest"].as_str().unwrap()[7..].to_string();
        fs::remove_file(self.blob(&old)).unwrap();
        last["digest"] = format!("sha256:{hex}").into();
        last["size"] = gz.len().into();
        let mut config = self.json(manifest["config"]["digest"].as_str().unwrap());
        let ids = config["rootfs"]["diff_ids"].as_array_mut().unwrap();
        *ids.last_mut().unwrap() = format!("sha256:{}", sha256_hex(&tar)).into();
        self.write_config_and_manifest(manifest, &config);
    }

    /// Replace blob `old` by `bytes` under its new digest, and fix every reference to it: the
    /// manifest (digest and size), the config's diff_ids and the merged bootstrap's blob table
    /// and device slot.
    fn replace_blob(&self, old: &str, bytes: &[u8]) -> String {
        fs::remove_file(self.blob(old)).unwrap();
        let new = self.put(bytes);
        let mut boot = self.bootstrap();
        let mut replaced = 0;
        for at in 0..boot.len() - 64 {
            if &boot[at..at + 64] == old.as_bytes() {
                boot[at..at + 64].copy_from_slice(new.as_bytes());
                replaced += 1;
            }
        }
        assert_eq!(
            replaced, 2,
            "the blob id is in the blob table and the device slot"
        );
        let text = serde_json::to_string(&self.manifest())
            .unwrap()
            .replace(old, &new);
        let mut manifest: Value = serde_json::from_str(&text).unwrap();
        // The blob may have changed size too (cut short, a section stored raw).
        for layer in manifest["layers"].as_array_mut().unwrap() {
            if layer["digest"].as_str() == Some(&format!("sha256:{new}")) {
                layer["size"] = bytes.len().into();
            }
        }
        let config = self.json(manifest["config"]["digest"].as_str().unwrap());
        let config: Value =
            serde_json::from_str(&serde_json::to_string(&config).unwrap().replace(old, &new))
                .unwrap();
        // Put the manifest and config in place first, then the new bootstrap layer over them.
        self.write_config_and_manifest(manifest, &config);
        self.replace_bootstrap(&boot);
        new
    }

    /// Store `config`, point `manifest` at it, store the manifest and point index.json at it.
    fn write_config_and_manifest(&self, mut manifest: Value, config: &Value) {
        let config = serde_json::to_vec(config).unwrap();
        manifest["config"]["digest"] = format!("sha256:{}", self.put(&config)).into();
        manifest["config"]["size"] = config.len().into();
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let hex = self.put(&manifest);
        let mut index = self.index();
        index["manifests"][0]["digest"] = format!("sha256:{hex}").into();
        index["manifests"][0]["size"] = manifest.len().into();
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// `boot` read by the crate's one bootstrap reader.
fn reader(boot: &[u8]) -> BootstrapReader {
    BootstrapReader::open(boot.to_vec()).unwrap()
}

/// The inode of `path` ("bin/su-tool"; "" for the root).
fn lookup(boot: &[u8], path: &str) -> Inode {
    reader(boot).lookup(path.as_bytes()).unwrap()
}

/// Cut the dirent of `name` out of directory `dir` (a path; "" for the root), repacking its
/// block and shrinking the directory's size when it was the last block.
fn remove_dirent(boot: &mut [u8], dir: &str, name: &str) {
    let inode = lookup(boot, dir);
    let blocks = reader(boot).dirent_blocks(&inode).unwrap();
    let last = blocks.len() - 1;
    for (b, block) in blocks.into_iter().enumerate() {
        let (start, len) = (block.offset as usize, block.len as usize);
        let mut entries = block.dirents;
        let Some(pos) = entries.iter().position(|d| d.name == name.as_bytes()) else {
            continue;
        };
        entries.remove(pos);
        let mut block = vec![0u8; len];
        let mut nameoff = RafsV6Dirent::SIZE * entries.len();
        for (j, d) in entries.iter().enumerate() {
            let raw = RafsV6Dirent {
                e_nid: d.nid,
                e_nameoff: nameoff as u16,
                e_file_type: d.file_type,
                e_reserved: 0,
            };
            block[j * 12..j * 12 + 12].copy_from_slice(&raw.to_bytes());
            block[nameoff..nameoff + d.name.len()].copy_from_slice(&d.name);
            nameoff += d.name.len();
        }
        boot[start..start + len].copy_from_slice(&block);
        if b == last {
            let size = inode.size - 12 - name.len() as u64;
            let at = inode.offset as usize + 8;
            if inode.extended {
                boot[at..at + 8].copy_from_slice(&size.to_le_bytes());
            } else {
                boot[at..at + 4].copy_from_slice(&(size as u32).to_le_bytes());
            }
        }
        return;
    }
    panic!("{dir}/{name} not found");
}

#[test]
fn good_output_passes_and_the_real_readers_agree() {
    let scratch = common::scratch();
    let out = convert_sample(scratch.path(), "out");
    let (code, text) = check(&out, false);
    assert_eq!(code, 0, "{text}");
    let (code, text) = check(&out, true);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("2 blobs, 16 chunks checked, 3 bootstraps"),
        "{text}"
    );
    assert!(!text.contains("problem:"), "{text}");

    // The real readers agree it is good: nydus-image check accepts the merged bootstrap and
    // each inlined one, nydusd and the kernel show umoci's tree.
    let layout = Layout { dir: out.clone() };
    let boot = scratch.path().join("merged.boot");
    fs::write(&boot, layout.bootstrap()).unwrap();
    let blob_dir = out.join("blobs/sha256");
    reference::check(&boot, &blob_dir);
    for hex in layout.blob_layers() {
        let inlined = scratch.path().join(&hex);
        reference::inlined_bootstrap(&layout.blob(&hex), &inlined);
        reference::check(&inlined, &blob_dir);
    }
    let rootfs = unpack::umoci_sample(scratch.path());
    for version in mounts::NYDUSD {
        let mnt = mounts::nydusd_localfs(version, &boot, &blob_dir, scratch.path(), "out");
        tree::assert_same_nydusd(
            &tree::list(&rootfs, ListOptions::NYDUSD),
            &tree::list(&mnt.dir, ListOptions::NYDUSD),
            &format!("nydusd {version} of the output check passed"),
        );
    }
    {
        let mnt = mounts::erofs(&boot, scratch.path(), "kernel");
        tree::assert_same(
            &tree::list(&rootfs, ListOptions::KERNEL),
            &tree::list(&mnt.dir, ListOptions::KERNEL),
            "kernel mount of the output check passed",
        );
    }
}

#[test]
fn a_flipped_byte_in_a_blob_is_caught_by_its_digest_and_by_the_chunk_digests() {
    let scratch = common::scratch();
    let out = convert_sample(scratch.path(), "out");
    let layout = Layout { dir: out.clone() };
    let hex = layout.blob_layers()[0].clone();
    let mut bytes = fs::read(layout.blob(&hex)).unwrap();
    // Inside the first chunk's stored bytes (the chunk data starts at offset 0).
    bytes[100] ^= 0x40;
    fs::write(layout.blob(&hex), &bytes).unwrap();
    assert_caught(&out, false, &[&hex, "content has digest", "not its name"]);

    // Renamed to its new digest, every reference fixed: only the chunk digests can tell.
    let new = layout.replace_blob(&hex, &bytes);
    let text = assert_caught(&out, false, &[&format!("blob {new}: chunk ")]);
    assert!(
        !text.contains("not its name"),
        "digests were fixed:\n{text}"
    );
    // The comparison with the source names the file whose content is gone.
    assert_caught(&out, true, &["content differs from chunk"]);
}

#[test]
fn a_missing_blob_is_caught() {
    let scratch = common::scratch();
    let out = convert_sample(scratch.path(), "out");
    let layout = Layout { dir: out.clone() };
    let hex = layout.blob_layers()[1].clone();
    fs::remove_file(layout.blob(&hex)).unwrap();
    assert_caught(&out, false, &[&hex, "is missing"]);
}

#[test]
fn a_wrong_empty_layer_of_a_kept_original_is_caught() {
    let scratch = common::scratch();
    let out = scratch.path().join("merged");
    common::run(
        Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
            .arg("convert")
            .arg(common::sample_image())
            .arg(&out)
            .arg("--merge-platform"),
    );
    assert_eq!(check(&out, true).0, 0, "the merged output is good");
    // Edit the kept original (the index's first entry) with `edit`, fixing the digests above it.
    let damaged = |name: &str, edit: &dyn Fn(&mut Value, &mut Value)| {
        let dir = scratch.path().join(name);
        common::run(Command::new("cp").arg("-a").arg(&out).arg(&dir));
        let layout = Layout { dir: dir.clone() };
        let top = layout.index()["manifests"][0]["digest"].clone();
        let mut index = layout.json(top.as_str().unwrap());
        let entry = &mut index["manifests"][0];
        let mut manifest = layout.json(entry["digest"].as_str().unwrap());
        let mut config = layout.json(manifest["config"]["digest"].as_str().unwrap());
        edit(&mut manifest, &mut config);
        let config = serde_json::to_vec(&config).unwrap();
        manifest["config"]["digest"] = format!("sha256:{}", layout.put(&config)).into();
        manifest["config"]["size"] = config.len().into();
        let manifest = serde_json::to_vec(&manifest).unwrap();
        entry["digest"] = format!("sha256:{}", layout.put(&manifest)).into();
        entry["size"] = manifest.len().into();
        let index = serde_json::to_vec(&index).unwrap();
        let mut top = layout.index();
        top["manifests"][0]["digest"] = format!("sha256:{}", layout.put(&index)).into();
        top["manifests"][0]["size"] = index.len().into();
        fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
        dir
    };
    let empty = "containerd.io/snapshot/nydus-empty-layer";
    let dir = damaged("diff-id", &|_, config| {
        config["rootfs"]["diff_ids"][0] = config["rootfs"]["diff_ids"][1].clone();
    });
    assert_caught(&dir, false, &[empty, "diff_id is not the empty layer's"]);
    let dir = damaged("digest", &|manifest, _| {
        manifest["layers"][1]["annotations"] = manifest["layers"][0]["annotations"].clone();
    });
    assert_caught(&dir, false, &["layer 2", empty, "not the empty layer's"]);
}

#[test]
fn an_altered_bootstrap_is_caught() {
    let scratch = common::scratch();
    let out = convert_sample(scratch.path(), "out");
    let layout = Layout { dir: out.clone() };
    let good = layout.bootstrap();

    // Edited in place: the bootstrap layer's digest no longer matches.
    let manifest = layout.manifest();
    let boot_layer = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()[7..]
        .to_string();
    let mut gz = fs::read(layout.blob(&boot_layer)).unwrap();
    let n = gz.len();
    gz[n - 20] ^= 1;
    fs::write(layout.blob(&boot_layer), &gz).unwrap();
    assert_caught(&out, false, &[&boot_layer, "not its name"]);

    // Digests fixed, a super block rule broken: check and nydus-image check both refuse it.
    let mut boot = good.clone();
    boot[1024 + 4] = 1; // s_checksum
    layout.replace_bootstrap(&boot);
    assert_caught(&out, false, &["super block", "checksum"]);
    let path = scratch.path().join("altered.boot");
    fs::write(&path, &boot).unwrap();
    let refused = Command::new(common::nydus_bin("nydus-image"))
        .args(["check", "--log-level", "warn", "-D"])
        .arg(out.join("blobs/sha256"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "nydus-image check accepts a bootstrap with a checksum"
    );

    // Digests fixed, an owner changed: a valid bootstrap, only the source can tell.
    let mut boot = good.clone();
    let inode = lookup(&boot, "home/big-ids/owned");
    assert!(
        inode.extended,
        "an owner above 65535 needs an extended inode"
    );
    let uid_at = inode.offset as usize + 24;
    assert_eq!(&boot[uid_at..uid_at + 4], &100_000u32.to_le_bytes());
    boot[uid_at..uid_at + 4].copy_from_slice(&100_001u32.to_le_bytes());
    layout.replace_bootstrap(&boot);
    let (code, text) = check(&out, false);
    assert_eq!(code, 0, "the structure is still valid:\n{text}");
    assert_caught(
        &out,
        true,
        &[
            "/home/big-ids/owned",
            "uid is 100000 in the source, 100001 in the output",
        ],
    );
}

#[test]
fn a_file_missing_from_the_tree_is_caught() {
    let scratch = common::scratch();
    let out = convert_sample(scratch.path(), "out");
    let layout = Layout { dir: out.clone() };
    let mut boot = layout.bootstrap();
    remove_dirent(&mut boot, "bin", "su-tool");
    layout.replace_bootstrap(&boot);
    // Alone, the structure betrays it only through the inode count.
    assert_caught(&out, false, &["inodes", "paths"]);
    assert_caught(
        &out,
        true,
        &["/bin/su-tool", "in the source, missing from the output"],
    );
}

/// An oci-archive output is checked as its layout is: clean when good, its damage named by the
/// archive's path and member; a tar holding anything but a layout is refused (exit 3).
#[test]
fn an_oci_archive_output_is_checked_in_place() {
    let scratch = common::scratch();
    let archive = scratch.path().join("sample-nydus.tar");
    common::run(
        Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
            .args(["convert", "--output-format", "oci-archive"])
            .arg(common::sample_image())
            .arg(&archive),
    );
    let (code, text) = check(&archive, true);
    assert_eq!(code, 0, "a good archive must pass:\n{text}");
    assert!(text.contains("paths compared"), "{text}");

    // Flip the last byte of the largest member's data (a Nydus blob) inside the tar.
    let mut bytes = fs::read(&archive).unwrap();
    let mut tar = tar::Archive::new(&bytes[..]);
    let (name, end) = tar
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .map(|e| {
            let start = e.raw_file_position() as usize;
            (
                e.path().unwrap().display().to_string(),
                start + e.size() as usize,
                e.size(),
            )
        })
        .max_by_key(|(_, _, size)| *size)
        .map(|(name, end, _)| (name, end))
        .unwrap();
    bytes[end - 1] ^= 0xff;
    let damaged = scratch.path().join("damaged.tar");
    fs::write(&damaged, &bytes).unwrap();
    let hex = name.rsplit('/').next().unwrap();
    assert_caught(&damaged, false, &["damaged.tar:", hex]);

    // A tar that is not an OCI image layout.
    let stray = scratch.path().join("stray.tar");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(2);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "etc/passwd", &b"hi"[..])
        .unwrap();
    fs::write(&stray, builder.into_inner().unwrap()).unwrap();
    let (code, text) = check(&stray, false);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("stray.tar") && text.contains("is not part of an OCI image layout"),
        "{text}"
    );

    // A PAX header claiming 8 GiB: refused from its header, nothing read into memory. The
    // same archive with a small PAX header before each member (as some tar writers add) passes.
    let hostile = scratch.path().join("hostile.tar");
    let mut header = tar::Header::new_ustar();
    header.set_path("PaxHeaders/x").unwrap();
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_size(8 << 30);
    header.set_cksum();
    fs::write(&hostile, header.as_bytes()).unwrap();
    let (code, text) = check(&hostile, false);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("an extension header of 8589934592 bytes"),
        "{text}"
    );
    let with_pax = scratch.path().join("with-pax.tar");
    let mut builder = tar::Builder::new(Vec::new());
    for entry in tar::Archive::new(fs::File::open(&archive).unwrap())
        .entries()
        .unwrap()
    {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        builder
            .append_pax_extensions([("comment", &b"added by another writer"[..])])
            .unwrap();
        let path = entry.path().unwrap().into_owned();
        builder.append_data(&mut header, path, &mut entry).unwrap();
    }
    fs::write(&with_pax, builder.into_inner().unwrap()).unwrap();
    let (code, text) = check(&with_pax, false);
    assert_eq!(code, 0, "{text}");
}

/// xorshift64*: a small deterministic generator, so that every damaged copy can be made again
/// from its seed (printed when a case fails).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `bytes` damaged one of five ways: a few bits flipped, a run of bytes overwritten, an aligned
/// u32 or u64 field set to a huge or random value (what makes a reader allocate or loop by a
/// count), or cut short. Aimed at a non-zero byte: zeros are mostly padding (the 1 KiB before
/// the super block, the gaps between inodes, the ends of dirent blocks), which no reader reads.
fn damage(bytes: &[u8], rng: &mut Rng) -> (Vec<u8>, String) {
    let mut out = bytes.to_vec();
    let mut aim = rng.below(out.len());
    for _ in 0..64 {
        if out[aim] != 0 {
            break;
        }
        aim = rng.below(out.len());
    }
    let huge = |rng: &mut Rng| match rng.below(4) {
        0 => u64::MAX,
        1 => 1 << 40,
        2 => 0x8000_0000,
        _ => rng.next(),
    };
    let how = match rng.below(5) {
        0 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let at = (aim + rng.below(8)).min(out.len() - 1);
                out[at] ^= 1 << rng.below(8);
            }
            format!("{n} bits flipped at {aim}")
        }
        4 => {
            let n = (1 + rng.below(64)).min(out.len() - aim);
            for b in &mut out[aim..aim + n] {
                *b = rng.next() as u8;
            }
            format!("{n} bytes overwritten at {aim}")
        }
        1 => {
            let at = (aim & !3).min(out.len() / 4 * 4 - 4);
            let v = huge(rng) as u32;
            out[at..at + 4].copy_from_slice(&v.to_le_bytes());
            format!("u32 at {at} = {v:#x}")
        }
        2 => {
            let at = (aim & !7).min(out.len() / 8 * 8 - 8);
            let v = huge(rng);
            out[at..at + 8].copy_from_slice(&v.to_le_bytes());
            format!("u64 at {at} = {v:#x}")
        }
        _ => {
            let len = rng.below(out.len());
            out.truncate(len);
            format!("cut to {len} bytes")
        }
    };
    // A field set to the value it had is no damage at all.
    if out == bytes {
        let at = rng.below(out.len());
        out[at] ^= 0x80;
        return (out, format!("{how}, then byte {at} flipped"));
    }
    (out, how)
}

/// Run `check` on `out` with at most 1 GiB of data memory (so a size read from the damage and
/// allocated at once fails here rather than going unseen on a large machine): its exit code
/// or what went wrong: a crash (panic, abort, signal), or exit 5 without a problem line.
fn check_survives(out: &Path, what: &str) -> Result<i32, String> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nydus-offline"));
    cmd.arg("check").arg(out);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let code = o.status.code();
    if !matches!(code, Some(0 | CHECK_FAILED))
        || stderr.contains("panicked")
        || stderr.contains("memory allocation")
    {
        return Err(format!("{what}: check crashed ({}): {stderr}", o.status));
    }
    if code == Some(CHECK_FAILED) && !stdout.lines().any(|l| l.starts_with("problem:")) {
        return Err(format!(
            "{what}: exit 5 without a problem line: {stdout}{stderr}"
        ));
    }
    Ok(code.unwrap_or_default())
}

/// A copy of the converted sample at `scratch/name`.
fn copy_of(good: &Path, scratch: &Path, name: &str) -> Layout {
    let dir = scratch.join(name);
    common::run(Command::new("cp").arg("-a").arg(good).arg(&dir));
    Layout { dir }
}

/// Run `check` on `cases` damaged copies of `good`, each made by `edit` from its own seeded
/// generator (`seed_base + n`) and named by what it did: the exit code of each. Fails if any
/// run crashed.
fn damaged_runs(
    good: &Path,
    scratch: &Path,
    cases: u64,
    seed_base: u64,
    edit: impl Fn(&Layout, &mut Rng) -> String,
) -> Vec<(String, i32)> {
    let (mut codes, mut crashes) = (Vec::new(), Vec::new());
    for seed in seed_base..seed_base + cases {
        let mut rng = Rng::new(seed);
        let layout = copy_of(good, scratch, &format!("damaged-{seed}"));
        let how = format!("seed {seed}: {}", edit(&layout, &mut rng));
        match check_survives(&layout.dir, &how) {
            Ok(code) => codes.push((how, code)),
            Err(crash) => crashes.push(crash),
        }
        fs::remove_dir_all(&layout.dir).unwrap();
    }
    assert!(
        crashes.is_empty(),
        "{} crashes:\n{}",
        crashes.len(),
        crashes.join("\n")
    );
    codes
}

/// Damage the merged bootstrap at random, fix every digest above it (bootstrap layer, diff_id,
/// config, manifest, index), and `check` must find the damage in the bootstrap itself: never a
/// crash, never an allocation the damage sized, and most damaged copies reported as problems.
#[test]
fn randomly_damaged_bootstraps_give_problems_never_a_crash() {
    let scratch = common::scratch();
    let good = convert_sample(scratch.path(), "good");
    let boot = Layout { dir: good.clone() }.bootstrap();
    let cases = 150;
    let codes = damaged_runs(&good, scratch.path(), cases, 0, |layout, rng| {
        let (damaged, how) = damage(&boot, rng);
        layout.replace_bootstrap(&damaged);
        how
    });
    let unseen_cuts: Vec<_> = codes
        .iter()
        .filter(|(how, code)| *code != CHECK_FAILED && how.contains(": cut"))
        .collect();
    assert!(
        unseen_cuts.is_empty(),
        "truncated bootstraps passed: {unseen_cuts:?}"
    );
    let caught = codes.iter().filter(|(_, c)| *c == CHECK_FAILED).count();
    // Most damage lands on bytes no reader looks at: 93% of the sample's bootstrap (18,965 of
    // 20,480 bytes) is the zero padding of blocks that hold a few inodes or dirents, and a
    // changed mtime or owner is only seen against the source. 64 of these 150 are reported
    // today; a third is the floor below which check would have stopped reading something.
    assert!(
        caught * 3 >= cases as usize,
        "only {caught} of {cases} damaged bootstraps were reported"
    );
}

/// The same for a layer's data blob (its chunks, ci table, inlined bootstrap and TOC), renamed
/// to its new digest with every reference fixed, so that only reading the blob finds it.
#[test]
fn randomly_damaged_blobs_give_problems_never_a_crash() {
    let scratch = common::scratch();
    let good = convert_sample(scratch.path(), "good");
    let layers = Layout { dir: good.clone() }.blob_layers();
    let codes = damaged_runs(&good, scratch.path(), 80, 1000, |layout, rng| {
        let old = &layers[rng.below(layers.len())];
        let bytes = fs::read(layout.blob(old)).unwrap();
        let (damaged, how) = damage(&bytes, rng);
        layout.replace_blob(old, &damaged);
        format!("blob {old}: {how}")
    });
    // Every byte of a blob is covered by a digest (chunk data by its chunk's, the rest by the
    // TOC's), so all damage is seen.
    let passed: Vec<_> = codes.iter().filter(|(_, c)| *c != CHECK_FAILED).collect();
    assert!(passed.is_empty(), "damaged blobs passed check: {passed:?}");
}

/// A blob's TOC: the entries, and where the TOC starts.
fn read_toc(blob: &[u8]) -> (Vec<TocEntry>, usize) {
    let header_at = blob.len() - BlobTarHeader::SIZE;
    let header = BlobTarHeader::decode(&blob[header_at..]).unwrap();
    assert_eq!(header.section_name().unwrap(), TOC_ENTRY_BLOB_TOC);
    let toc_at = header_at - header.section_size().unwrap() as usize;
    let entries = blob[toc_at..header_at]
        .chunks_exact(TocEntry::SIZE)
        .map(|e| TocEntry::decode(e).unwrap())
        .collect();
    (entries, toc_at)
}

/// The bootstrap inlined in `blob`, decompressed, and where its section starts.
fn inlined_bootstrap(blob: &[u8]) -> (Vec<u8>, usize) {
    let (entries, _) = read_toc(blob);
    let e = entries
        .iter()
        .find(|e| e.name().unwrap() == TOC_ENTRY_BOOTSTRAP)
        .expect("the blob inlines its bootstrap");
    let (at, size) = (e.compressed_offset as usize, e.compressed_size as usize);
    assert_eq!(e.flags, TOC_FLAG_COMPRESSION_ZSTD);
    let boot = zstd::bulk::decompress(&blob[at..at + size], e.uncompressed_size as usize).unwrap();
    (boot, at)
}

/// `blob` with its inlined bootstrap (the last section, at `at`) replaced by `boot`, stored
/// uncompressed (a TOC flag nydus allows): section, tar header, TOC entry and TOC rewritten.
fn with_inlined_bootstrap(blob: &[u8], at: usize, boot: &[u8]) -> Vec<u8> {
    let (entries, _) = read_toc(blob);
    let mut out = blob[..at].to_vec();
    out.extend_from_slice(boot);
    let size = boot.len() as u64;
    out.extend_from_slice(
        &BlobTarHeader::new(TOC_ENTRY_BOOTSTRAP, size)
            .unwrap()
            .to_bytes(),
    );
    let mut toc = Vec::new();
    for e in entries {
        let e = if e.name().unwrap() == TOC_ENTRY_BOOTSTRAP {
            TocEntry::new(
                TOC_ENTRY_BOOTSTRAP,
                TOC_FLAG_COMPRESSION_NONE,
                Sha256::digest(boot).into(),
                at as u64,
                size,
                size,
            )
            .unwrap()
        } else {
            assert!(e.compressed_offset + e.compressed_size <= at as u64);
            e
        };
        toc.extend_from_slice(&e.to_bytes());
    }
    out.extend_from_slice(&toc);
    out.extend_from_slice(
        &BlobTarHeader::new(TOC_ENTRY_BLOB_TOC, toc.len() as u64)
            .unwrap()
            .to_bytes(),
    );
    out
}

/// The same for the bootstrap inlined in the top layer's blob (no other layer's inlined
/// bootstrap names that blob). The blob stores it zstd-compressed under a sha256, so random
/// damage there only meets the decompressor and the digest: to reach the bootstrap reader it
/// is decompressed, damaged like the merged one, and stored back raw with its tar header, TOC
/// entry and TOC rewritten, the blob renamed with every reference fixed.
#[test]
fn randomly_damaged_inlined_bootstraps_give_problems_never_a_crash() {
    let scratch = common::scratch();
    let good = convert_sample(scratch.path(), "good");
    // The rewrite alone, without damage, must pass: whatever fails below is the damage.
    let plain = copy_of(&good, scratch.path(), "plain");
    let top = plain.blob_layers().last().unwrap().clone();
    let blob = fs::read(plain.blob(&top)).unwrap();
    let (boot, at) = inlined_bootstrap(&blob);
    plain.replace_blob(&top, &with_inlined_bootstrap(&blob, at, &boot));
    let (code, text) = check(&plain.dir, false);
    assert_eq!(code, 0, "inlined bootstrap stored raw: {text}");

    let cases = 60;
    let codes = damaged_runs(&good, scratch.path(), cases, 2000, |layout, rng| {
        let (damaged, how) = damage(&boot, rng);
        layout.replace_blob(&top, &with_inlined_bootstrap(&blob, at, &damaged));
        how
    });
    let caught = codes.iter().filter(|(_, c)| *c == CHECK_FAILED).count();
    assert!(
        caught * 3 >= cases as usize,
        "only {caught} of {cases} damaged inlined bootstraps were reported"
    );
}
