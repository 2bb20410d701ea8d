//! `convert --prefetch-patterns` (issue 17, the table): the bootstraps' prefetch table names the
//! listed paths, in order, as nydus-image 2.2.0 and 2.4.4 read it back (`inspect -R prefetch`);
//! `none` writes none; the default is the root (byte for byte the output of a `/` list); nydusd
//! with prefetch enabled mounts the image and shows umoci's tree.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::tree::{self, ListOptions};
use common::{mounts, reference, run, unpack};
use nydus_offline::ondisk::rafs_v6::reader::{BootstrapReader, Kind};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nydus-offline");

/// Convert the sample into `out` with `args`; the merged bootstrap's path.
fn convert(scratch: &Path, name: &str, args: &[&str]) -> std::path::PathBuf {
    let out = scratch.join(name);
    run(Command::new(BIN)
        .args(["convert", "-q"])
        .args(args)
        .arg(common::sample_image())
        .arg(&out));
    let boot = scratch.join(format!("{name}.boot"));
    reference::merged_bootstrap(&out, "latest", &boot);
    boot
}

/// The paths nydus-image `version` reads from a bootstrap's prefetch table.
fn nydus_image_prefetch(version: &str, boot: &Path) -> Vec<String> {
    let bin = mounts::nydusd_bin(version).with_file_name("nydus-image");
    let out = run(Command::new(bin)
        .args(["inspect", "-R", "prefetch"])
        .arg(boot));
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text.lines().last().unwrap_or("[]");
    let entries: Vec<Value> = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"));
    entries
        .iter()
        .map(|e| {
            e["path"][0]
                .as_str()
                .unwrap()
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

#[test]
fn the_listed_paths_are_what_nydus_image_reads_back() {
    let scratch = common::scratch();
    let list = scratch.path().join("startup.txt");
    fs::write(
        &list,
        "# startup\n/app/main.sh\n\n/usr\n/not/in/the/image\n/app/main.sh\n",
    )
    .unwrap();
    let boot = convert(
        scratch.path(),
        "listed",
        &["--prefetch-patterns", list.to_str().unwrap()],
    );
    for version in mounts::NYDUSD {
        assert_eq!(
            nydus_image_prefetch(version, &boot),
            ["/app/main.sh", "/usr"],
            "nydus-image {version}"
        );
    }
    let out = scratch.path().join("listed");
    run(Command::new(BIN).arg("check").arg(&out));
    let report = run(Command::new(BIN).args(["inspect", "--json"]).arg(&out));
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(
        report["images"][0]["manifests"][0]["nydus"]["prefetch"],
        serde_json::json!(["/app/main.sh", "/usr"])
    );

    // nydusd with prefetch on (as the snapshotter runs it) shows the whole tree.
    let expected = tree::list(&unpack::umoci_sample(scratch.path()), ListOptions::NYDUSD);
    for version in mounts::NYDUSD {
        let mnt = mounts::nydusd_localfs_prefetching(
            version,
            &boot,
            &out.join("blobs/sha256"),
            scratch.path(),
            "listed",
        );
        let shown = tree::list(&mnt.dir, ListOptions::NYDUSD);
        tree::assert_same_nydusd(&expected, &shown, &format!("nydusd {version} prefetching"));
    }
}

#[test]
fn none_writes_no_table_and_the_default_is_the_root() {
    let scratch = common::scratch();
    let none = convert(scratch.path(), "none", &["--prefetch-patterns", "none"]);
    assert!(nydus_image_prefetch("2.2.0", &none).is_empty());
    let default = convert(scratch.path(), "default", &[]);
    assert_eq!(nydus_image_prefetch("2.2.0", &default), [""]);
    let root = scratch.path().join("root.txt");
    fs::write(&root, "/\n").unwrap();
    convert(
        scratch.path(),
        "root",
        &["--prefetch-patterns", root.to_str().unwrap()],
    );
    common::assert_same_files(
        &scratch.path().join("default"),
        &scratch.path().join("root"),
    );
}

#[test]
fn a_relative_pattern_is_refused_naming_its_line() {
    let scratch = common::scratch();
    let list = scratch.path().join("bad.txt");
    fs::write(&list, "/ok\nusr/bin\n").unwrap();
    let out = scratch.path().join("out");
    let r = Command::new(BIN)
        .args(["convert", "--prefetch-patterns"])
        .arg(&list)
        .arg(common::sample_image())
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("line 2: usr/bin is not an absolute path"),
        "{stderr}"
    );
    assert!(!out.exists());
}

/// Each chunk a file of `boot` uses: path -> (blob index, block address in the blob).
fn chunk_places(boot: &Path) -> Vec<(String, Vec<(u16, u32)>)> {
    let reader = BootstrapReader::open(fs::read(boot).unwrap()).unwrap();
    let tree = reader.tree().unwrap();
    tree.iter()
        .filter(|(_, inode)| inode.kind == Kind::File && !inode.chunks.is_empty())
        .map(|(path, inode)| {
            let places = inode
                .chunks
                .iter()
                .map(|c| ((c.c_blob_addr_hi & 0xff) - 1, c.c_blk_addr))
                .collect();
            (String::from_utf8_lossy(path).into_owned(), places)
        })
        .collect()
}

#[test]
fn listed_files_come_first_in_their_layers_blob_in_list_order() {
    let scratch = common::scratch();
    let list = scratch.path().join("startup.txt");
    // In tar order the bottom layer holds bin/tool, bin/su-tool, ..., usr/share/data/words.txt,
    // usr/share/data/random.bin; the top layer app/main.sh, app/tool-copy (bin/tool's bytes,
    // stored once, in the bottom blob), opt/new.
    fs::write(
        &list,
        "/usr/share/data/random.bin\n/opt/new\n/bin/su-tool\n/usr/share/data/words.txt\n",
    )
    .unwrap();
    let arg = ["--prefetch-patterns", list.to_str().unwrap()];
    let boot = convert(scratch.path(), "first", &arg);
    let places = chunk_places(&boot);
    let chunks_of = |path: &str| {
        let (_, p) = places.iter().find(|(n, _)| n == path).unwrap();
        p.clone()
    };
    // List order within each blob: the bottom blob is blob 0, the top one blob 1.
    let bottom = [
        "/usr/share/data/random.bin",
        "/bin/su-tool",
        "/usr/share/data/words.txt",
    ];
    let blocks: Vec<(u16, u32)> = bottom.iter().map(|p| chunks_of(p)[0]).collect();
    assert!(blocks.iter().all(|b| b.0 == 0), "{blocks:?}");
    assert!(blocks.windows(2).all(|w| w[0].1 < w[1].1), "{blocks:?}");
    assert_eq!(blocks[0].1, 0, "the first listed file starts the blob");
    // Every other file's own chunks lie after the listed ones.
    let listed: Vec<(u16, u32)> = bottom.iter().flat_map(|p| chunks_of(p)).collect();
    let listed_end = listed.iter().map(|c| c.1).max().unwrap();
    for (path, p) in &places {
        for c in p {
            if c.0 == 0 && !listed.contains(c) {
                assert!(c.1 > listed_end, "{path}: block {} of blob 0", c.1);
            }
        }
    }
    assert_eq!(chunks_of("/opt/new"), [(1, 0)]);
    assert!(chunks_of("/app/main.sh")[0] > (1, 0));

    // The same list again gives the same bytes; the real readers show umoci's tree.
    // ... for any --jobs.
    convert(scratch.path(), "again", &[arg[0], arg[1], "--jobs", "1"]);
    common::assert_same_files(&scratch.path().join("first"), &scratch.path().join("again"));
    let out = scratch.path().join("first");
    run(Command::new(BIN).arg("check").arg(&out));
    let rootfs = unpack::umoci_sample(scratch.path());
    let expected = tree::list(&rootfs, ListOptions::NYDUSD);
    for version in mounts::NYDUSD {
        let mnt = mounts::nydusd_localfs(
            version,
            &boot,
            &out.join("blobs/sha256"),
            scratch.path(),
            "first",
        );
        let shown = tree::list(&mnt.dir, ListOptions::NYDUSD);
        tree::assert_same_nydusd(&expected, &shown, &format!("nydusd {version}"));
    }
    let mnt = mounts::erofs(&boot, scratch.path(), "kernel");
    tree::assert_same(
        &tree::list(&rootfs, ListOptions::KERNEL),
        &tree::list(&mnt.dir, ListOptions::KERNEL),
        "kernel EROFS mount",
    );
}

#[test]
fn the_entrypoint_list_is_printed_read_back_and_given_again_byte_for_byte() {
    let scratch = common::scratch();
    let input = common::corpus("debian-minbase.oci");
    let printed = run(Command::new(BIN)
        .args(["convert", "--print-prefetch-list"])
        .arg(&input));
    let printed = String::from_utf8(printed.stdout).unwrap();
    let paths: Vec<&str> = printed.lines().filter(|l| !l.starts_with('#')).collect();
    // Cmd is /bin/bash: bash (through the /bin symlink), the ELF interpreter (its symlink, then
    // the file) and bash's libraries, as found in this Debian image. Links to directories on
    // the way (/bin, /lib64) are not listed: nydusd would prefetch everything below them.
    for wanted in [
        "/usr/bin/bash",
        "/usr/lib64/ld-linux-x86-64.so.2",
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "/usr/lib/x86_64-linux-gnu/libtinfo.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ] {
        assert!(paths.contains(&wanted), "{wanted} not in {printed}");
    }
    for unwanted in ["/bin", "/lib", "/lib64"] {
        assert!(!paths.contains(&unwanted), "{unwanted} in {printed}");
    }
    assert_eq!(printed.lines().next(), Some("# latest linux/amd64"));
    let list = scratch.path().join("startup.txt");
    fs::write(&list, &printed).unwrap();

    let from_entrypoint = scratch.path().join("entrypoint");
    run(Command::new(BIN)
        .args(["convert", "-q", "--prefetch-entrypoint"])
        .arg(&input)
        .arg(&from_entrypoint));
    let from_list = scratch.path().join("list");
    run(Command::new(BIN)
        .args(["convert", "-q", "--prefetch-patterns"])
        .arg(&list)
        .arg(&input)
        .arg(&from_list));
    common::assert_same_files(&from_entrypoint, &from_list);
    let boot = scratch.path().join("entrypoint.boot");
    reference::merged_bootstrap(&from_entrypoint, "latest", &boot);
    for version in mounts::NYDUSD {
        assert_eq!(
            nydus_image_prefetch(version, &boot),
            paths,
            "nydus-image {version}"
        );
    }
}

#[test]
fn entrypoint_and_patterns_are_refused_together() {
    let r = Command::new(BIN)
        .args([
            "convert",
            "--prefetch-entrypoint",
            "--prefetch-patterns",
            "none",
        ])
        .arg(common::sample_image())
        .arg("/nonexistent-out")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--prefetch-entrypoint") && stderr.contains("--prefetch-patterns"),
        "{stderr}"
    );
}
