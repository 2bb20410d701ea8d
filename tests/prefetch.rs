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
    let diff = Command::new("diff")
        .arg("-r")
        .arg(scratch.path().join("default"))
        .arg(scratch.path().join("root"))
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
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
