//! Issue 13: hostile layer tars and the fidelity gaps found on real-world ones, through the
//! binary. Each hostile layer is built so that what the converter used to do with it would be
//! catastrophic (days of writing zeros, minutes of walking paths, GiB held in memory, an integer
//! wrapping): a regression shows as a hang, as a run over 512 MiB (every run here is measured,
//! from its own `wait4` usage), or as another answer than one clear error line with exit code 3
//! and nothing written.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::layers::{self, Blob, Entry, Tar};
use common::{mounts, reference};

const BIN: &str = env!("CARGO_BIN_EXE_nydus-offline");

/// The memory every run must stay under, hostile input or not (issue 13).
const MAX_RSS_KIB: i64 = 512 * 1024;

const MIB: u64 = 1 << 20;
const TIB: u64 = 1 << 40;

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Its peak resident memory, from its own resource usage.
    max_rss_kib: i64,
}

/// Run `cmd` to its end, its output captured and its peak memory measured.
#[allow(clippy::zombie_processes)] // Reaped by wait4 below, which Child::wait cannot replace.
fn run_measured(cmd: &mut Command) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).unwrap();
        bytes
    });
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let stdout = reader.join().unwrap();
    // wait4, not Child::wait: it reaps this very child and gives its own usage, peak RSS
    // included, whatever other tests run at the same time.
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid for writes; `pid` is our unreaped child.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    Run {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        max_rss_kib: usage.ru_maxrss,
    }
}

/// `nydus-offline convert INPUT OUT EXTRA...`, measured.
fn convert(input: &Path, out: &Path, extra: &[&str]) -> Run {
    let run = run_measured(
        Command::new(BIN)
            .arg("convert")
            .arg(input)
            .arg(out)
            .args(extra),
    );
    if std::env::var_os("SHOW_EXPECTED").is_some() {
        eprint!("{}", run.stderr);
    }
    assert!(
        run.max_rss_kib < MAX_RSS_KIB,
        "{}: peak RSS {} KiB (more than 512 MiB): {}",
        input.display(),
        run.max_rss_kib,
        run.stderr
    );
    run
}

/// `nydus-offline check OUT --source INPUT` passes.
fn check_passes(out: &Path, input: &Path) {
    let run = run_measured(
        Command::new(BIN)
            .arg("check")
            .arg(out)
            .arg("--source")
            .arg(input),
    );
    assert_eq!(run.code, Some(0), "check: {}{}", run.stdout, run.stderr);
    assert!(
        run.max_rss_kib < MAX_RSS_KIB,
        "check: {} KiB",
        run.max_rss_kib
    );
}

/// Convert `layers` (uncompressed, bottom first) as image `name` in `scratch` and expect one
/// error line with exit code 3 naming layer `layer` (from 1) once and every needle, nothing
/// written, and no `SECRET` (input bytes some layers hold, which no message may show).
fn refused(scratch: &Path, name: &str, layers: &[Vec<u8>], layer: usize, needles: &[&str]) {
    let input = layers::oci_layout(&scratch.join(name), layers);
    refused_layout(scratch, name, &input, layer, needles);
}

/// [`refused`], for a layout made already.
fn refused_layout(scratch: &Path, name: &str, input: &Path, layer: usize, needles: &[&str]) {
    let out = scratch.join(format!("{name}.out"));
    let run = convert(input, &out, &[]);
    let stderr = &run.stderr;
    assert_eq!(run.code, Some(3), "{name}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
    let label = format!("layer {layer} (sha256:");
    assert!(
        stderr.starts_with(&format!("nydus-offline: error: {label}")),
        "{name}: {stderr}"
    );
    assert_eq!(stderr.matches(&label).count(), 1, "{name}: once: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{name}: no '{needle}' in {stderr}");
    }
    assert!(stderr.len() < 2000, "{name}: a long message: {stderr}");
    assert!(
        !stderr.contains("SECRET"),
        "{name}: input bytes shown: {stderr}"
    );
    assert!(!out.exists(), "{name}: output written");
    let leftovers: Vec<_> = fs::read_dir(scratch)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&format!("{name}.out")))
        .collect();
    assert!(leftovers.is_empty(), "{name}: left behind {leftovers:?}");
}

/// A layer with one small file, so that an image has something besides the hostile layer.
fn fine_layer() -> Vec<u8> {
    Tar::new().add(Entry::file("fine", "ok")).finish()
}

/// A PAX sparse file (`--sparse-version` 0.1 or 1.0) of `real_size` bytes with one byte of data
/// at its end.
fn pax_sparse(name: &str, real_size: u64, version: &str) -> Entry {
    let last = (real_size - 1).to_string();
    let header_name = format!("GNUSparseFile.0/{name}");
    let e = match version {
        "0.1" => Entry::file(&header_name, "x")
            .pax("GNU.sparse.major", "0")
            .pax("GNU.sparse.minor", "1")
            .pax("GNU.sparse.size", real_size.to_string())
            .pax("GNU.sparse.map", format!("{last},1")),
        _ => {
            let mut data = format!("1\n{last}\n1\n").into_bytes();
            data.resize(512, 0);
            data.push(b'x');
            Entry::file(&header_name, data)
                .pax("GNU.sparse.major", "1")
                .pax("GNU.sparse.minor", "0")
                .pax("GNU.sparse.realsize", real_size.to_string())
        }
    };
    e.pax("GNU.sparse.name", name)
}

/// Writing a terabyte of zeros took days: the holes are refused before any is written.
#[test]
fn a_sparse_file_of_a_terabyte_is_refused_at_once() {
    let scratch = common::scratch();
    for (name, layer) in [
        (
            "pax-0.1",
            Tar::new().add(pax_sparse("huge", TIB, "0.1")).finish(),
        ),
        (
            "pax-1.0",
            Tar::new().add(pax_sparse("huge", TIB, "1.0")).finish(),
        ),
        (
            "old-gnu",
            Tar::new()
                .old_gnu_sparse(b"huge", TIB, &[(TIB - 1, 1)], b"x")
                .finish(),
        ),
    ] {
        refused(
            scratch.path(),
            name,
            &[fine_layer(), layer],
            2,
            &[
                "entry 'huge'",
                "1099511627775 bytes of holes",
                "--max-sparse-holes",
            ],
        );
    }
}

/// The holes of all an image's layers count together (many layers must not multiply the
/// limit), and `--max-sparse-holes` sets the limit both ways.
#[test]
fn holes_are_counted_per_image_and_the_limit_is_an_option() {
    let scratch = common::scratch();
    let dir = scratch.path();
    let layer = |name: &str| Tar::new().add(pax_sparse(name, 24 * MIB, "0.1")).finish();
    let input = layers::oci_layout(&dir.join("in"), &[layer("a"), layer("b")]);

    let run = convert(
        &input,
        &dir.join("limited"),
        &["--max-sparse-holes", "32MiB"],
    );
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("layer 2 (sha256:"), "{}", run.stderr);
    assert!(
        run.stderr.contains("entry 'b'") && run.stderr.contains("25165823 taken already"),
        "{}",
        run.stderr
    );
    assert!(!dir.join("limited").exists());

    let run = convert(&input, &dir.join("out"), &[]);
    assert_eq!(run.code, Some(0), "the default allows it: {}", run.stderr);
    check_passes(&dir.join("out"), &input);
}

/// A path of 100,000 components (`a/a/.../f`) made the converter walk its parents once per
/// missing directory: 10^10 steps. Paths deeper than 4096 components are refused; one of 4096
/// is converted and checked.
#[test]
fn a_path_of_100000_components_is_refused_and_4096_are_kept() {
    let scratch = common::scratch();
    let dir = scratch.path();
    let deep = "a/".repeat(99_999) + "f";
    refused(
        dir,
        "deep",
        &[
            fine_layer(),
            Tar::new()
                .add(Entry::file(&deep, "x").pax("path", &deep))
                .finish(),
        ],
        2,
        &[
            "entry 'a/a/a/",
            "(199999 bytes)",
            "more than 4096 components",
        ],
    );
    refused(
        dir,
        "deep-hardlink",
        &[Tar::new()
            .add(Entry::hardlink("h", "x").pax("linkpath", &deep))
            .finish()],
        1,
        &["entry 'h'", "hardlink target", "more than 4096 components"],
    );

    let deepest = "d/".repeat(4095) + "f";
    let input = layers::oci_layout(
        &dir.join("in"),
        &[Tar::new()
            .add(Entry::file(&deepest, "at the bottom").pax("path", &deepest))
            .finish()],
    );
    let run = convert(&input, &dir.join("out"), &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    check_passes(&dir.join("out"), &input);
}

/// Write a layer of `count` PAX headers of `size` bytes each (distinct keys, all held at once
/// by the reader of old) before one file, to `path`, streaming.
fn write_pax_run(path: &Path, count: usize, size: usize) {
    let mut file = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let value = vec![b'v'; size - 40];
    for i in 0..count {
        let record = layers::pax_record(format!("comment.{i}").as_bytes(), &value);
        let mut tar = Tar::new();
        tar.extension(b'x', &record);
        file.write_all(&tar.bytes).unwrap();
    }
    file.write_all(&Tar::new().add(Entry::file("after", "x")).finish())
        .unwrap();
    file.flush().unwrap();
}

/// Sixteen PAX headers of 24 MiB were all held (and copied) by the reader of old: about 800 MiB
/// for a layer of 384 MiB. Extension data is bounded per entry, all headers together.
#[test]
fn a_run_of_huge_pax_headers_is_refused_within_memory() {
    let scratch = common::scratch();
    let dir = scratch.path();
    let layout = dir.join("pax-run");
    let tar = dir.join("pax-run.tar");
    write_pax_run(&tar, 16, 24 * MIB as usize);
    let blob = layers::blob_file(&layout, &tar);
    let input = layers::oci_layout_of(&layout, &[blob]);
    refused_layout(
        dir,
        "pax-run",
        &input,
        1,
        &["tar header at byte 0", "more than the 4 MiB allowed"],
    );
}

/// Every kind of extension data counts against the one budget of an entry: GNU long names and
/// links (each replacing the one before), old GNU sparse map blocks, and a PAX global header on
/// its own.
#[test]
fn gnu_extensions_and_global_headers_are_bounded_too() {
    let scratch = common::scratch();
    let two_mib = vec![b'n'; 2 * MIB as usize];
    let mut long_names = Tar::new();
    for flag in [b'L', b'K', b'L'] {
        long_names.extension(flag, &two_mib);
    }
    long_names.add(Entry::file("f", "x"));
    // 200,000 extents of one byte: 9,500 extension blocks, about 4.6 MiB.
    let map: Vec<(u64, u64)> = (0..200_000u64).map(|i| (2 * i, 1)).collect();
    let sparse_blocks = Tar::new()
        .old_gnu_sparse(b"many-extents", 400_000, &map, &vec![b'x'; 200_000])
        .finish();
    let global = Tar::new()
        .global(&[(b"comment", &vec![b'g'; 5 * MIB as usize])])
        .add(Entry::file("f", "x"))
        .finish();
    for (name, layer) in [
        ("long-names", long_names.finish()),
        ("sparse-blocks", sparse_blocks),
        ("global", global),
    ] {
        refused(
            scratch.path(),
            name,
            &[layer],
            1,
            &["more than the 4 MiB allowed"],
        );
    }
}

/// Sizes and offsets read from headers are checked, never wrapped: a PAX `size` near 2^64 used
/// to wrap (and panic in a debug build), and so did sums over sparse maps.
#[test]
fn sizes_near_2_64_are_refused_not_wrapped() {
    let scratch = common::scratch();
    let max = u64::MAX.to_string();
    let sparse = |size: &str, map: &str| {
        Entry::file("s", "x")
            .pax("GNU.sparse.major", "0")
            .pax("GNU.sparse.minor", "1")
            .pax("GNU.sparse.size", size)
            .pax("GNU.sparse.map", map)
    };
    let mut map_1_0 = format!("{max}\n0\n1\n").into_bytes();
    map_1_0.resize(512, 0);
    let cases: Vec<(&str, Entry, &[&str])> = vec![
        (
            "pax-size",
            Entry::file("f", "x").pax("size", &max),
            &["a data size of 18446744073709551615 bytes overflows"],
        ),
        (
            "pax-size-block-below",
            Entry::file("f", "x").pax("size", (u64::MAX - 511).to_string()),
            &["entry 'f'", "truncated"],
        ),
        (
            "sparse-extent-end",
            sparse(&max, &format!("{max},1")),
            &["entry 's'", "a sparse extent overflows"],
        ),
        (
            "sparse-real-size",
            sparse(&max, &format!("{},1", u64::MAX - 1)),
            &["entry 's'", "18446744073709551614 bytes of holes"],
        ),
        (
            "sparse-numblocks",
            sparse("10", "0,1").pax("GNU.sparse.numblocks", &max),
            &["GNU.sparse.numblocks is 18446744073709551615"],
        ),
        (
            "sparse-1.0-count",
            Entry::file("GNUSparseFile.0/s", map_1_0)
                .pax("GNU.sparse.major", "1")
                .pax("GNU.sparse.minor", "0")
                .pax("GNU.sparse.realsize", "10"),
            &["18446744073709551615 extents, more than the 1048576"],
        ),
    ];
    for (name, entry, needles) in cases {
        refused(
            scratch.path(),
            name,
            &[Tar::new().add(entry).finish()],
            1,
            needles,
        );
    }
}

/// Convert `input` to `scratch/out`; the merged bootstrap.
fn convert_ok(scratch: &Path, input: &Path, extra: &[&str]) -> (PathBuf, Run) {
    let out = scratch.join("out");
    let run = convert(input, &out, extra);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let bootstrap = scratch.join("out.boot");
    reference::merged_bootstrap(&out, "latest", &bootstrap);
    (bootstrap, run)
}

/// Some tar writers give symlinks 0755; every Linux unpacker shows them 0777 (there is no
/// lchmod), and so must the image, or nydusify's check (which compares modes) fails.
#[test]
fn symlinks_are_0777_in_the_image() {
    let scratch = common::scratch();
    let dir = scratch.path();
    let input = layers::oci_layout(
        &dir.join("in"),
        &[Tar::new()
            .add(Entry::file("target", "t"))
            .add(Entry::symlink("link-0755", "target").mode(0o755))
            .add(Entry::symlink("link-0700", "target").mode(0o700))
            .add(Entry::symlink("link-0777", "target"))
            .finish()],
    );
    let (bootstrap, _) = convert_ok(dir, &input, &[]);
    let mnt = mounts::erofs(&bootstrap, dir, "kernel");
    for name in ["link-0755", "link-0700", "link-0777"] {
        let mode = fs::symlink_metadata(mnt.dir.join(name)).unwrap().mode();
        assert_eq!(mode, 0o120777, "{name}: {mode:o}");
    }
    drop(mnt);
    check_passes(&dir.join("out"), &input);
}

/// macOS tar writes xattrs of its own namespaces (`com.apple.*`), which no Linux filesystem
/// holds: they are skipped, as containerd and Docker skip them, with one warning per layer that
/// names the first entry and xattr and counts the others; `check --source` expects them gone.
#[test]
fn xattrs_linux_cannot_hold_are_skipped_with_one_warning_per_layer() {
    let scratch = common::scratch();
    let dir = scratch.path();
    let l1 = Tar::new()
        .add(
            Entry::file("a", "a")
                .xattr("com.apple.quarantine", "0081;5f000000;Safari;")
                .xattr("user.kept", "k"),
        )
        .add(Entry::file("b", "b").xattr("com.apple.quarantine", "q"))
        .add(Entry::dir("c").xattr("com.apple.FinderInfo", [0u8; 32]))
        .finish();
    let l2 = Tar::new()
        .add(Entry::file("d", "d").xattr("com.apple.metadata:kMDItemWhereFroms", "w"))
        .finish();
    let input = layers::oci_layout(&dir.join("in"), &[l1, l2]);
    let (bootstrap, run) = convert_ok(dir, &input, &[]);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one warning per layer: {}", run.stderr);
    for (line, needles) in lines.iter().zip([
        &[
            "nydus-offline: warning: layer 1 (sha256:",
            "entry 'a'",
            "xattr 'com.apple.quarantine' skipped (and 2 more in this layer)",
        ],
        &[
            "nydus-offline: warning: layer 2 (sha256:",
            "entry 'd'",
            "xattr 'com.apple.metadata:kMDItemWhereFroms' skipped:",
        ],
    ]) {
        for needle in needles {
            assert!(line.contains(needle), "no '{needle}' in {line}");
        }
    }
    let mnt = mounts::erofs(&bootstrap, dir, "kernel");
    let names: Vec<_> = xattr::list(mnt.dir.join("a")).unwrap().collect();
    assert_eq!(names, ["user.kept"]);
    assert!(xattr::list(mnt.dir.join("d")).unwrap().next().is_none());
    drop(mnt);
    check_passes(&dir.join("out"), &input);

    let run = convert(&input, &dir.join("quiet"), &["--quiet"]);
    assert_eq!((run.code, run.stderr.as_str()), (Some(0), ""), "--quiet");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// A layer whose media type names another compression than its bytes have is read as its
/// bytes are, with a warning naming the layer and what it really is.
#[test]
fn mislabelled_compression_is_read_as_it_is_with_a_warning() {
    let scratch = common::scratch();
    let dir = scratch.path();
    let layout = dir.join("in");
    let tar = |name: &str| Tar::new().add(Entry::file(name, name)).finish();
    let (t1, t2, t3, t4) = (tar("zstd"), tar("gzip"), tar("plain"), tar("right"));
    let blobs: Vec<Blob> = vec![
        layers::blob(&layout, &zstd(&t1), &t1, TAR_GZIP),
        layers::blob(&layout, &gzip(&t2), &t2, TAR_ZSTD),
        layers::blob(&layout, &t3, &t3, TAR_GZIP),
        layers::blob(&layout, &gzip(&t4), &t4, TAR_GZIP),
    ];
    let input = layers::oci_layout_of(&layout, &blobs);
    let (_, run) = convert_ok(dir, &input, &[]);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stderr);
    for (i, (line, really)) in lines
        .iter()
        .zip([
            "says gzip, but it is zstd-compressed (read as zstd)",
            "says zstd, but it is gzip-compressed (read as gzip)",
            "says gzip, but it is not compressed (read as a plain tar)",
        ])
        .enumerate()
    {
        let label = format!(
            "nydus-offline: warning: layer {} ({})",
            i + 1,
            blobs[i].digest
        );
        assert!(line.starts_with(&label), "{line}");
        assert!(line.contains(really), "{line}");
    }
    check_passes(&dir.join("out"), &input);
}

/// Errors name the layer once (a truncated gzip layer used to say it twice) and show no bytes
/// of an input that is not a tar.
#[test]
fn errors_name_the_layer_once_and_echo_no_input() {
    let scratch = common::scratch();
    let dir = scratch.path();
    let big = Tar::new()
        .add(Entry::file(
            "big",
            (0..100_000u32)
                .flat_map(u32::to_le_bytes)
                .collect::<Vec<_>>(),
        ))
        .finish();
    let gz = gzip(&big);
    let layout = dir.join("truncated-gzip");
    let blob = layers::blob(&layout, &gz[..gz.len() / 2], &big, TAR_GZIP);
    let input = layers::oci_layout_of(&layout, &[blob]);
    refused_layout(
        dir,
        "truncated-gzip",
        &input,
        1,
        &["gzip data is truncated or corrupt"],
    );

    let layout = dir.join("wrong-diff-id");
    let mut blob = layers::blob(&layout, &big, &big, TAR);
    blob.diff_id = format!("sha256:{}", "0".repeat(64));
    let input = layers::oci_layout_of(&layout, &[blob]);
    refused_layout(
        dir,
        "wrong-diff-id",
        &input,
        1,
        &["uncompressed content has digest", "rootfs.diff_ids says"],
    );

    let secret = b"SECRET-PAYLOAD ".repeat(100);
    refused(
        dir,
        "not-a-tar",
        &[secret],
        1,
        &["not a tar header at byte 0: its checksum does not match"],
    );
    let mut bad_record = Tar::new();
    bad_record.extension(b'x', b"99 SECRET-PAYLOAD=1\n");
    bad_record.add(Entry::file("f", "x"));
    refused(
        dir,
        "bad-pax-record",
        &[bad_record.finish()],
        1,
        &["PAX header: PAX record 1 (at byte 0) has a wrong length (99)"],
    );
}
