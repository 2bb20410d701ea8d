//! Issue 6: every tar feature and every layer-merge case, judged by the real readers. Each test
//! writes its layer tars byte by byte (`common::layers`), assembles an OCI layout, converts it
//! with our binary, and compares what nydusd (content included) and the kernel (metadata and
//! hardlinks) show with what umoci unpacks from the same layout. GNU sparse files, which umoci
//! 0.4.7 refuses, are judged against bsdtar (libarchive) instead.
//!
//! Many cases share one image so the suite stays fast; the harness diff names the path, and
//! every path below names its case.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::layers::{self, Entry, Tar};
use common::tree::{self, ListOptions, Listing};
use common::{mounts, reference, run, unpack};

/// Convert the layout at `input` into `scratch/out`; the merged bootstrap and blob directory.
fn convert(input: &Path, scratch: &Path) -> (PathBuf, PathBuf) {
    convert_as(input, scratch, "out", &[])
}

/// Convert the layout at `input` into `scratch/name` with `args`; the merged bootstrap and blob
/// directory, the bootstrap checked by nydus-image.
fn convert_as(input: &Path, scratch: &Path, name: &str, args: &[&str]) -> (PathBuf, PathBuf) {
    let out = scratch.join(name);
    run(Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
        .arg("convert")
        .arg(input)
        .arg(&out)
        .args(args));
    let bootstrap = scratch.join(format!("{name}.boot"));
    reference::merged_bootstrap(&out, "latest", &bootstrap);
    let blob_dir = out.join("blobs/sha256");
    reference::check(&bootstrap, &blob_dir);
    (bootstrap, blob_dir)
}

/// Judge our conversion of `layers` against the tree at `expected` (listed here), through
/// nydusd and the kernel, and its RAFS v5 conversion through nydusd. `implied` are directories no layer lists: the unpacker stamps them
/// with the time it ran, so their mtimes are not compared.
fn judge_against(
    scratch: &Path,
    input: &Path,
    expected: &Path,
    implied: &[&str],
    adjust: &dyn Fn(&mut Listing),
) {
    let (bootstrap, blob_dir) = convert(input, scratch);
    let forget = |mut l: Listing| {
        for path in implied {
            if let Some(e) = l.entries.get_mut(path.as_bytes()) {
                e.mtime = None;
            }
        }
        l
    };
    let mut expected_nydusd = forget(tree::list(expected, ListOptions::NYDUSD));
    let mut expected_kernel = forget(tree::list(expected, ListOptions::KERNEL));
    adjust(&mut expected_nydusd);
    adjust(&mut expected_kernel);
    if std::env::var_os("SHOW_EXPECTED").is_some() {
        eprintln!("{}", expected_kernel.lines().join("\n"));
    }
    for version in mounts::NYDUSD {
        let mnt = mounts::nydusd_localfs(version, &bootstrap, &blob_dir, scratch, "out");
        let actual = forget(tree::list(&mnt.dir, ListOptions::NYDUSD));
        tree::assert_same(
            &expected_nydusd,
            &actual,
            &format!("nydusd {version} (localfs) of our output"),
        );
    }
    {
        let mnt = mounts::erofs(&bootstrap, scratch, "kernel");
        let actual = forget(tree::list(&mnt.dir, ListOptions::KERNEL));
        tree::assert_same(
            &expected_kernel,
            &actual,
            "kernel EROFS mount of our output",
        );
    }
    let (bootstrap, blob_dir) = convert_as(input, scratch, "v5", &["--fs-version", "5"]);
    for version in mounts::NYDUSD {
        let mnt = mounts::nydusd_localfs(version, &bootstrap, &blob_dir, scratch, "v5");
        let actual = forget(tree::list(&mnt.dir, ListOptions::NYDUSD));
        tree::assert_same(
            &expected_nydusd,
            &actual,
            &format!("nydusd {version} (localfs) of our RAFS v5 output"),
        );
    }
}

/// Build the image, unpack it with umoci, and judge our conversion against that.
fn judge(scratch: &Path, layers: &[Vec<u8>], implied: &[&str]) {
    judge_pair(scratch, layers, layers, implied, &|_| {})
}

/// Convert `ours`, and judge it against umoci's unpacking of `expected` (the same layers, less
/// what umoci cannot read or reads unlike container runtimes), its listing corrected by
/// `adjust` where the runtimes show something umoci does not.
fn judge_pair(
    scratch: &Path,
    ours: &[Vec<u8>],
    expected: &[Vec<u8>],
    implied: &[&str],
    adjust: &dyn Fn(&mut Listing),
) {
    let input = layers::oci_layout(&scratch.join("in"), ours);
    let reference = layers::oci_layout(&scratch.join("reference"), expected);
    let rootfs = unpack::umoci(
        &format!("oci:{}:latest", reference.display()),
        scratch,
        "expected",
        false,
    );
    judge_against(scratch, &input, &rootfs, implied, adjust);
}

const MIB: usize = 1 << 20;

#[test]
fn tar_features_match_umoci() {
    let scratch = common::scratch();
    // Layer 2: PAX global headers. POSIX applies their records to every later entry, but no
    // container runtime does: Go's archive/tar returns them as entries of their own, containerd
    // and Docker skip them ("PAX Global Extended Headers found and ignored") and libarchive
    // ignores them too, while umoci 0.4.7 refuses them ("unknown typeflag"). We follow the
    // runtimes, so the expected tree is umoci's of the same layer without its global headers.
    //
    // An xattr with an empty value: containerd sets it (it reads hdr.PAXRecords), umoci drops it
    // (Go's hdr.Xattrs skips empty records as "keep the header's value"). We follow containerd:
    // umoci's layer lacks the record and the expected tree gets the empty xattr added.
    let layer2 = |ours: bool| {
        let mut l2 = Tar::new();
        if ours {
            l2.global(&[
                (b"uid", b"4242"),
                (b"gid", b"4343"),
                (b"mtime", b"1234567890.5"),
            ]);
        }
        l2.add(Entry::dir("global"))
            .add(Entry::file("global/plain", "g"))
            .add(Entry::file("global/local-pax", "g").pax("uid", "7"));
        if ours {
            l2.global(&[(b"comment", b"a global header in the middle")]);
        }
        l2.add(Entry::file("global/after-second", "g").owner(12, 13));
        let mut empty = Entry::file("xattrs/empty-value", "x").xattr("user.other", "o");
        if ours {
            empty = empty.xattr("user.empty", "");
        }
        l2.add(empty);
        l2.finish()
    };
    // Layer 3: empty.
    let l3 = Tar::new().finish();
    let l1 = layers::feature_layer();
    judge_pair(
        scratch.path(),
        &[l1.clone(), layer2(true), l3.clone()],
        &[l1, layer2(false), l3],
        &["/implied", "/implied/a", "/implied/a/b"],
        &|expected| {
            let e = expected
                .entries
                .get_mut(&b"/xattrs/empty-value"[..])
                .unwrap();
            e.xattrs.insert(0, (b"user.empty".to_vec(), Vec::new()));
        },
    );
}

#[test]
fn layer_merge_matches_umoci() {
    let scratch = common::scratch();
    judge(scratch.path(), &layers::merge_cases(), &[]);
}

/// Whiteouts in the bottom layer hide nothing (there is nothing below), but the layer's own
/// bootstrap keeps them while the merged tree drops them: the converter then builds the two
/// trees apart from the first whiteout on (src/tree/stream.rs). Entries after it, hardlinks to
/// files before it among them, must land in the merged tree as umoci unpacks them.
#[test]
fn bottom_layer_whiteouts_match_umoci() {
    let scratch = common::scratch();
    judge(scratch.path(), &layers::bottom_whiteout_cases(), &[]);
}

/// GNU tar writes a sparse file `name` of `size` bytes with `pieces` of data at their offsets,
/// in `format` (`gnu`, or PAX with `--sparse-version`), into `dir/name.tar`.
fn gnu_tar_sparse(
    dir: &Path,
    name: &str,
    size: u64,
    pieces: &[(u64, &[u8])],
    args: &[&str],
) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let src = dir.join(format!("{name}.src"));
    fs::create_dir_all(&src).unwrap();
    let file = fs::File::create(src.join(name)).unwrap();
    file.set_len(size).unwrap();
    for (offset, data) in pieces {
        file.write_all_at(data, *offset).unwrap();
    }
    drop(file);
    let tar = dir.join(format!("{name}.tar"));
    run(Command::new("tar")
        .args(args)
        .args(["--sparse", "--numeric-owner", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg(name));
    fs::read(&tar).unwrap()
}

/// GNU sparse files in every format (old GNU `S`, PAX 0.0, 0.1 and 1.0) and contiguous files. umoci 0.4.7 refuses both (GNU sparse entries, and "unknown typeflag '7'"),
/// so the expected tree is bsdtar's (libarchive) extraction of the layers in order; libarchive,
/// GNU tar and POSIX read `7` as a regular file, as we do.
#[test]
fn sparse_and_contiguous_files_match_bsdtar() {
    let scratch = common::scratch();
    let dir = scratch.path();
    const SMALL: u64 = 3 * MIB as u64 + 5;
    let pieces: &[(u64, &[u8])] = &[(MIB as u64 + 3, b"hello"), (SMALL - 3, b"end")];
    let layers = vec![
        gnu_tar_sparse(dir, "old-gnu", SMALL, pieces, &["--format=gnu"]),
        gnu_tar_sparse(
            dir,
            "pax-0.0",
            SMALL,
            pieces,
            &["--format=pax", "--sparse-version=0.0"],
        ),
        gnu_tar_sparse(
            dir,
            "pax-0.1",
            SMALL,
            pieces,
            &["--format=pax", "--sparse-version=0.1"],
        ),
        gnu_tar_sparse(
            dir,
            "pax-1.0",
            SMALL,
            pieces,
            &["--format=pax", "--sparse-version=1.0"],
        ),
        gnu_tar_sparse(dir, "all-hole", SMALL, &[], &["--format=gnu"]),
        Tar::new()
            .add(Entry::file("contiguous", "typeflag 7").typeflag(b'7'))
            .add(Entry::file("contiguous-empty", "").typeflag(b'7'))
            // libarchive's own xattr records: percent-encoded name, base64 value (no padding).
            // Alone here, as no writer leaves them alone (bsdtar writes SCHILY records too, which
            // is what containerd and umoci read); bsdtar applies them.
            .add(
                Entry::file("libarchive-xattrs", "x")
                    .pax("LIBARCHIVE.xattr.user.lib", "dmFsdWUKAA")
                    .pax("LIBARCHIVE.xattr.user.a%3Db", "aGk="),
            )
            .finish(),
    ];
    let expected = dir.join("expected");
    for (i, layer) in layers.iter().enumerate() {
        let tar = dir.join(format!("layer-{i}.tar"));
        fs::write(&tar, layer).unwrap();
        layers::bsdtar_unpack(&tar, &expected);
    }
    let input = layers::oci_layout(&dir.join("in"), &layers);
    judge_against(dir, &input, &expected, &[], &|_| {});
}

/// A file above 4 GiB (sparse, so the layer is 10 KiB), judged against bsdtar. Hashing 4 GiB
/// twice in a debug build takes minutes, so its content is compared byte for byte instead (the
/// listing still compares everything else).
#[test]
fn file_above_4gib_matches_bsdtar() {
    use std::io::Read;
    let scratch = common::scratch();
    let dir = scratch.path();
    let big = (4u64 << 30) + MIB as u64 + 4;
    let layer = gnu_tar_sparse(
        dir,
        "above-4GiB",
        big,
        &[(0, b"head"), (4 << 30, b"past 4 GiB"), (big - 4, b"tail")],
        &["--format=pax", "--sparse-version=1.0"],
    );
    let expected = dir.join("expected");
    let tar = dir.join("layer.tar");
    fs::write(&tar, &layer).unwrap();
    layers::bsdtar_unpack(&tar, &expected);
    let input = layers::oci_layout(&dir.join("in"), &[layer]);
    let (bootstrap, blob_dir) = convert(&input, dir);
    let metadata = ListOptions {
        content: false,
        hardlinks: false,
    };
    let mnt = mounts::nydusd_localfs(mounts::NYDUSD[1], &bootstrap, &blob_dir, dir, "out");
    tree::assert_same(
        &tree::list(&expected, metadata),
        &tree::list(&mnt.dir, metadata),
        "nydusd (localfs) of our output",
    );
    let mut want = fs::File::open(expected.join("above-4GiB")).unwrap();
    let mut got = fs::File::open(mnt.dir.join("above-4GiB")).unwrap();
    let (mut a, mut b) = (vec![0u8; 4 * MIB], vec![0u8; 4 * MIB]);
    let mut offset = 0u64;
    loop {
        let n = want.read(&mut a).unwrap();
        if n == 0 {
            assert_eq!(
                got.read(&mut b).unwrap(),
                0,
                "nydusd shows more than {offset} bytes"
            );
            break;
        }
        got.read_exact(&mut b[..n]).unwrap();
        assert!(
            a[..n] == b[..n],
            "content differs within {n} bytes at {offset}"
        );
        offset += n as u64;
    }
    assert_eq!(offset, big);
}

/// Bad layers: one error line naming the layer, the entry and the problem; exit code 3; no
/// output; no panic.
#[test]
fn bad_tars_fail_with_one_clear_error() {
    let scratch = common::scratch();
    let good = Tar::new().add(Entry::file("fine", "ok")).finish();
    let truncated = {
        let mut t = Tar::new()
            .add(Entry::file("cut", layers::noise(4000, 3)))
            .finish();
        t.truncate(1500);
        t
    };
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "hardlink-to-nothing",
            Tar::new().add(Entry::hardlink("x", "nowhere")).finish(),
            &["entry '/x'", "hardlink to '/nowhere'"],
        ),
        (
            "escaping-path",
            Tar::new().add(Entry::file("a/../../evil", "x")).finish(),
            &["entry 'a/../../evil'", "escapes the image root"],
        ),
        (
            "escaping-hardlink",
            Tar::new()
                .add(Entry::hardlink("h", "../../etc/passwd"))
                .finish(),
            &["entry 'h'", "hardlink target", "escapes the image root"],
        ),
        (
            "symlink-loop",
            Tar::new()
                .add(Entry::symlink("loop1", "loop2"))
                .add(Entry::symlink("loop2", "/loop1"))
                .add(Entry::file("loop1/f", "x"))
                .finish(),
            &["entry '/loop1/f'", "symlink loop"],
        ),
        ("truncated", truncated, &["entry 'cut'", "truncated"]),
        (
            "bad-pax-record",
            Tar::new()
                .add(Entry::file("p", "x").pax("uid", "1"))
                .finish()
                .into_iter()
                .enumerate()
                // "8 uid=1\n" becomes "9 uid=1\n": the length no longer matches.
                .map(|(i, b)| if i == 512 { b'9' } else { b })
                .collect(),
            &["PAX header", "wrong length"],
        ),
    ];
    for (name, layer, needles) in cases {
        let input = layers::oci_layout(&scratch.path().join(name), &[good.clone(), layer]);
        let out = scratch.path().join(format!("{name}.out"));
        let result = Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
            .arg("convert")
            .arg(&input)
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        if std::env::var_os("SHOW_EXPECTED").is_some() {
            eprint!("{stderr}");
        }
        assert_eq!(result.status.code(), Some(3), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        assert!(stderr.contains("layer 2 (sha256:"), "{name}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{name}: no '{needle}' in {stderr}");
        }
        assert!(!out.exists(), "{name}: output written");
        let leftovers: Vec<_> = fs::read_dir(scratch.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.starts_with(&format!("{name}.out")) || n.starts_with(&format!(".{name}.out"))
            })
            .collect();
        assert!(leftovers.is_empty(), "{name}: left behind {leftovers:?}");
    }
}

/// A listing of a tree whose paths exceed PATH_MAX (4096 bytes): every lookup goes through
/// `/proc/self/fd/N/NAME` of the directory's open descriptor, so no path handed to the kernel
/// is longer than one name. One line per path: type, mode, owner, size, sha256, link target.
fn deep_listing(root: &Path, content: bool) -> Vec<String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &fs::File, rel: &[u8], content: bool, out: &mut Vec<String>) {
        let base = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let mut names: Vec<_> = fs::read_dir(&base)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let full = base.join(&name);
            let md = fs::symlink_metadata(&full).unwrap();
            let mut path = rel.to_vec();
            path.push(b'/');
            path.extend_from_slice(name.as_bytes());
            let mut line = format!(
                "{} mode={:o} uid={} gid={}",
                tree::escape(&path),
                md.mode(),
                md.uid(),
                md.gid()
            );
            if md.is_file() {
                line += &format!(" size={}", md.len());
                if content {
                    line += &format!(" sha256={}", common::sha256_hex(&full));
                }
            } else if md.is_symlink() {
                line += &format!(
                    " link={}",
                    tree::escape(fs::read_link(&full).unwrap().as_os_str().as_bytes())
                );
            }
            out.push(line);
            if md.is_dir() {
                walk(&fs::File::open(&full).unwrap(), &path, content, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&fs::File::open(root).unwrap(), b"", content, &mut out);
    out
}

/// Paths longer than 4096 bytes (PATH_MAX): 24 nested directories of 200-byte names, a file and
/// a symlink at the bottom. No unpacker can create them: umoci 0.4.7 ("mkdirall: file name too
/// long"), containerd's applier, GNU tar and bsdtar all hand whole paths to the kernel, which
/// refuses them. A Nydus image has no such limit, so we keep them, and the expected tree is
/// spelled out here. The common lister uses whole paths too, so these trees are listed through
/// directory descriptors ([`deep_listing`]).
#[test]
fn paths_longer_than_4096_bytes_are_kept() {
    let scratch = common::scratch();
    let dir = scratch.path();
    let mut tar = Tar::new();
    let mut path = String::new();
    let mut want = Vec::new();
    for i in 0..24 {
        if !path.is_empty() {
            path.push('/');
        }
        path += &format!("{i:02}{}", "d".repeat(198));
        tar.add(Entry::dir(&path).pax("path", &path));
        want.push(format!("/{path} mode=40755 uid=0 gid=0"));
    }
    assert!(path.len() > 4096);
    let file = format!("{path}/bottom");
    tar.add(Entry::file(&file, "at the bottom").pax("path", &file));
    // sha256 of "at the bottom".
    let content_sha = "69d5a75e68a2a7c188e72ce1f0b3775f6f23d4988aa362fec7986e065474ff78";
    let link = format!("{path}/link");
    tar.add(Entry::symlink(&link, "bottom").pax("path", &link));
    want.push(format!(
        "/{file} mode=100644 uid=0 gid=0 size=13 sha256={content_sha}"
    ));
    want.push(format!("/{link} mode=120777 uid=0 gid=0 link=bottom"));
    let input = layers::oci_layout(&dir.join("in"), &[tar.finish()]);
    let (bootstrap, blob_dir) = convert(&input, dir);
    {
        let mnt = mounts::nydusd_localfs(mounts::NYDUSD[1], &bootstrap, &blob_dir, dir, "out");
        assert_eq!(deep_listing(&mnt.dir, true), want, "nydusd");
    }
    {
        let without_content: Vec<String> = want
            .iter()
            .map(|l| l.split(" sha256=").next().unwrap().to_string())
            .collect();
        let mnt = mounts::erofs(&bootstrap, dir, "kernel");
        assert_eq!(deep_listing(&mnt.dir, false), without_content, "kernel");
    }
}
