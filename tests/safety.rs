//! The user's files are safe (issue 13): the input is never the output, whatever the flags; a
//! tag a layout has already is not repointed without `--force`; `--jobs` is bounded; a reader
//! that closes stdout early does not turn the verdict into an I/O error.

mod common;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_nydus-offline");

fn nydus(args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).args(paths);
    cmd.output().unwrap()
}

/// sha256 of every file under `dir` (or of the file itself), by relative path.
fn snapshot(path: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = walkdir::WalkDir::new(path)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(path).unwrap().display().to_string();
            (
                rel,
                common::hex(&Sha256::digest(fs::read(e.path()).unwrap())),
            )
        })
        .collect();
    out.sort();
    out
}

fn refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
}

#[test]
fn the_input_is_never_the_output_whatever_the_flags() {
    let s = common::scratch();
    let layout = s.path().join("in");
    common::run(
        Command::new("cp")
            .arg("-a")
            .arg(common::sample_image())
            .arg(&layout),
    );
    let archive = s.path().join("in.tar");
    common::run(
        Command::new(BIN)
            .args(["convert", "-q", "--output-format", "oci-archive"])
            .arg(common::sample_image())
            .arg(&archive),
    );
    let link = s.path().join("link");
    std::os::unix::fs::symlink(&layout, &link).unwrap();
    let hardlink = s.path().join("hard.tar");
    fs::hard_link(&archive, &hardlink).unwrap();
    let before = (snapshot(&layout), snapshot(&archive));
    let dotted = layout.join("..").join("in");
    let inside = layout.join("blobs/out");
    let cases: &[(&[&str], &Path, &Path)] = &[
        (&["convert"], &layout, &layout),
        (&["convert", "--force"], &layout, &dotted),
        (&["convert", "--force"], &link, &layout),
        (&["convert"], &layout, &inside),
        (&["convert", "--force"], &layout, s.path()),
        (
            &["convert", "--force", "--output-format", "oci-archive"],
            &archive,
            &archive,
        ),
        (
            &["convert", "--force", "--output-format", "oci-archive"],
            &archive,
            &hardlink,
        ),
        (&["convert", "--force"], &archive, &archive),
    ];
    for (args, input, output) in cases {
        let out = nydus(args, &[input, output]);
        refused(&out, "would be, lie inside or hold the input");
    }
    // Nor is any other file a run writes: the report or the digest file may not be (or lie
    // inside) an input, nor be the output (it would overwrite the image just written).
    let out_tar = s.path().join("out.tar");
    let side: &[(&str, &Path, &str)] = &[
        (
            "--report",
            &archive,
            "the --report file would be, lie inside or hold the input",
        ),
        (
            "--digestfile",
            &archive,
            "the --digestfile file would be, lie inside or hold the input",
        ),
        (
            "--report",
            &layout.join("index.json"),
            "the --report file would be",
        ),
        ("--digestfile", &hardlink, "the --digestfile file would be"),
        (
            "--report",
            &out_tar,
            "the --report file would overwrite the output",
        ),
    ];
    for (flag, file, needle) in side {
        let input = if file.starts_with(&layout) {
            &layout
        } else {
            &archive
        };
        let out = Command::new(BIN)
            .arg("convert")
            .arg(flag)
            .arg(file)
            .arg(input)
            .arg(&out_tar)
            .output()
            .unwrap();
        refused(&out, needle);
        assert!(!out_tar.exists());
    }
    assert_eq!(
        (snapshot(&layout), snapshot(&archive)),
        before,
        "the input changed"
    );
    assert!(!inside.exists());
}

#[test]
fn a_tag_the_layout_has_is_repointed_only_with_force() {
    let s = common::scratch();
    let out = s.path().join("out");
    let sample = common::sample_image();
    assert!(nydus(&["convert", "-q"], &[&sample, &out]).status.success());
    let before = snapshot(&out);
    let index = fs::read_to_string(out.join("index.json")).unwrap();
    let digest = index.split("sha256:").nth(1).unwrap()[..64].to_string();
    let again = nydus(&["convert", "-q"], &[&sample, &out]);
    refused(
        &again,
        &format!("tag \"latest\" already names sha256:{digest}"),
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(snapshot(&out), before, "a refused run changed the layout");
    // Another tag is added beside it; --force repoints the existing one.
    let tagged = nydus(&["convert", "-q", "--tag", "v2"], &[&sample, &out]);
    assert!(tagged.status.success(), "{tagged:?}");
    let forced = nydus(
        &["convert", "-q", "--force", "--chunk-size", "64KiB"],
        &[&sample, &out],
    );
    assert!(forced.status.success(), "{forced:?}");
    let index = fs::read_to_string(out.join("index.json")).unwrap();
    assert_eq!(index.matches("\"latest\"").count(), 1, "{index}");
    assert_eq!(index.matches("\"v2\"").count(), 1, "{index}");
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    let latest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "latest")
        .unwrap();
    assert_ne!(
        latest["digest"],
        format!("sha256:{digest}"),
        "latest still names the old image"
    );
    // The help text wraps to the terminal: compared with its words joined by single spaces.
    let help = String::from_utf8_lossy(&nydus(&["convert", "--help"], &[]).stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for needle in [
        "on an OCI layout",
        "not a layout",
        "or on a file",
        "Never the input",
    ] {
        assert!(
            help.contains(needle),
            "--help does not say {needle:?}:\n{help}"
        );
    }
}

#[test]
fn jobs_are_bounded_with_a_clear_message() {
    let s = common::scratch();
    let out = nydus(
        &["convert", "-j", "100000"],
        &[&common::sample_image(), &s.path().join("out")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("more than the 1024 allowed"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!s.path().join("out").exists());
    let most = nydus(
        &["convert", "-q", "-j", "1024"],
        &[&common::sample_image(), &s.path().join("out")],
    );
    assert!(most.status.success(), "{most:?}");
}

/// Run the binary with stdout a pipe whose reading end is closed before it writes: the exit code
/// is the command's own, and nothing is said about the pipe.
fn with_stdout_closed(args: &[&str], paths: &[&Path]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = Command::new(BIN)
        .args(args)
        .args(paths)
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_commands_own_exit_code() {
    let s = common::scratch();
    let out = s.path().join("out");
    let sample = common::sample_image();
    assert!(nydus(&["convert", "-q"], &[&sample, &out]).status.success());
    // A good image: 0; damaged (a blob removed): 5, "problems found", as with a reader.
    let good = with_stdout_closed(&["check"], &[&out]);
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    let blob = fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    fs::remove_file(&blob).unwrap();
    let bad = with_stdout_closed(&["check"], &[&out]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("problem"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("pipe"), "{stderr}");
    for args in [
        &["inspect", "--quick"][..],
        &["inspect", "--quick", "--json"],
    ] {
        let o = with_stdout_closed(args, &[&sample]);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {o:?}");
        assert!(o.stderr.is_empty(), "{args:?}: {o:?}");
    }
    let json = with_stdout_closed(&["convert", "--json"], &[&sample, &s.path().join("j")]);
    assert_eq!(json.status.code(), Some(0), "{json:?}");
    let man = with_stdout_closed(&["man"], &[]);
    assert_eq!(man.status.code(), Some(0), "{man:?}");
    // The image written by convert --json is whole although no one read the report.
    let mut index = String::new();
    fs::File::open(s.path().join("j/index.json"))
        .unwrap()
        .read_to_string(&mut index)
        .unwrap();
    assert!(index.contains("\"latest\""));
}

#[test]
fn what_a_killed_run_left_is_cleared_by_the_next() {
    let s = common::scratch();
    let parent = s.path().join("outputs");
    fs::create_dir(&parent).unwrap();
    let out = parent.join("out");
    let names = || -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    common::holding_the_commit_lock(&parent, || {
        let mut child = Command::new(BIN)
            .args(["convert", "-q"])
            .arg(common::sample_image())
            .arg(&out)
            .spawn()
            .unwrap();
        // The run has written everything and waits for its turn to commit: kill it there.
        common::until_waiting_for_a_lock(&mut child);
        child.kill().unwrap();
        child.wait().unwrap();
    });
    let left = names();
    assert!(
        left.iter().any(|n| n.ends_with(".lock"))
            && left
                .iter()
                .any(|n| n.contains("nydus-offline-tmp.") && !n.ends_with(".lock")),
        "a killed run leaves its staging directory and lock file: {left:?}"
    );
    let again = nydus(&["convert", "-q"], &[&common::sample_image(), &out]);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(names(), ["out"], "the dead run's files stay");
    common::run(Command::new(BIN).arg("check").arg(&out));
}

#[test]
fn runs_creating_one_new_output_at_once_take_turns_and_keep_every_image() {
    let s = common::scratch();
    let out = s.path().join("out");
    let tags = ["a", "b", "c"];
    let children: Vec<_> = common::holding_the_commit_lock(s.path(), || {
        let mut children: Vec<_> = tags
            .iter()
            .map(|tag| {
                Command::new(BIN)
                    .args(["convert", "-q", "--tag", tag])
                    .arg(common::sample_image())
                    .arg(&out)
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // Every run found no output and waits to commit one: released, they race for it.
        for child in &mut children {
            common::until_waiting_for_a_lock(child);
        }
        children
    });
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let index = fs::read_to_string(out.join("index.json")).unwrap();
    for tag in tags {
        assert!(
            index.contains(&format!("\"{tag}\"")),
            "tag {tag} lost: {index}"
        );
    }
    common::run(Command::new(BIN).arg("check").arg(&out));
    let left: Vec<_> = fs::read_dir(s.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["out"], "temporaries left: {left:?}");
}

/// A closed stderr (`2>&1 | head` once head has its lines) loses what would have been printed
/// there, nothing more: the conversion goes on and the exit code is the command's own.
#[test]
fn a_closed_stderr_loses_the_messages_not_the_run() {
    let s = common::scratch();
    let run = |args: &[&str], paths: &[&Path]| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        Command::new(BIN)
            .args(args)
            .args(paths)
            .stdout(Stdio::null())
            .stderr(writer)
            .status()
            .unwrap()
    };
    let out = s.path().join("out");
    let sample = common::sample_image();
    let converted = run(&["convert", "-v", "--progress", "plain"], &[&sample, &out]);
    assert_eq!(converted.code(), Some(0), "{converted:?}");
    common::run(Command::new(BIN).arg("check").arg(&out));
    let failed = run(
        &["convert"],
        &[Path::new("/nonexistent/image"), &s.path().join("x")],
    );
    assert_eq!(failed.code(), Some(3), "{failed:?}");
}
