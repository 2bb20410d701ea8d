//! What a new user meets on the command line (issue 19), each run through the binary: the tag
//! the output gets, the form an OUTPUT ending in `.tar` takes, `--digestfile`, `--json` and
//! `--quiet` on `check` and `inspect`, and `--platform` in any case.

mod common;
mod source_support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run and return the output, with the exit code checked.
fn expect(cmd: &mut Command, code: i32) -> Output {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}:\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(&out.stdout)))
}

/// `--platform` is read in any case, as containerd reads it, and names the platform in the
/// spelling images use.
#[test]
fn platforms_are_case_insensitive() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    let run = expect(
        bin()
            .args(["convert", "--json", "--platform", "LINUX/AMD64"])
            .arg(common::sample_image())
            .arg(&out),
        0,
    );
    assert_eq!(json(&run)["platforms"][0]["platform"], "linux/amd64");
    let run = expect(
        bin()
            .args(["inspect", "--quick", "--json", "--platform", "Linux/Amd64"])
            .arg(common::sample_image()),
        0,
    );
    let listed = text(&run.stdout);
    assert!(listed.contains("\"linux/amd64\""), "{listed}");
    expect(
        bin()
            .args(["inspect", "--quick", "--platform", "Linux/ARM64"])
            .arg(common::sample_image()),
        3,
    );
}

/// The tags `index.json` of a layout names.
fn tags(layout: &Path) -> Vec<String> {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_string)
        .collect()
}

/// Every input form gets the tag of its name (`latest` for the sample, named
/// `docker.io/library/sample:latest` in the docker save tarball skopeo writes, `1.0` for Docker
/// 25's `tool:1.0`), so that the push example of `convert --help` finds the image:
/// `skopeo copy oci:./oci-out:latest ...`.
#[test]
fn every_input_form_gets_the_tag_the_push_example_names() {
    let scratch = common::scratch();
    let forms = source_support::sample_forms(scratch.path());
    let newer = scratch.path().join("newer.tar");
    source_support::newer_docker_save(&scratch.path().join("newer"), &newer);
    let help = text(&expect(bin().args(["convert", "--help"]), 0).stdout);
    assert!(help.contains("oci:./oci-out:latest"), "{help}");
    for (name, input, tag) in [
        ("layout", &forms.layout, "latest"),
        ("oci-archive", &forms.oci_archive, "latest"),
        ("docker-archive", &forms.docker_archive, "latest"),
        ("newer docker save", &newer, "1.0"),
    ] {
        let out = scratch.path().join(format!("out-{name}"));
        let run = expect(bin().arg("convert").arg(input).arg(&out), 0);
        assert_eq!(tags(&out), [tag], "{name}");
        assert!(
            text(&run.stdout).contains(&format!(": tag {tag}, sha256:")),
            "{name}: {}",
            text(&run.stdout)
        );
        // The example, with a local layout for the registry.
        source_support::skopeo(&[
            "copy",
            "-q",
            "--all",
            &format!("oci:{}:{tag}", out.display()),
            &format!(
                "oci:{}:nydus",
                scratch.path().join(format!("pushed-{name}")).display()
            ),
        ]);
    }
}

/// An OUTPUT ending in `.tar` is an oci-archive, as `check --help` calls `./app-nydus.tar`, unless
/// `--output-format` says otherwise or it is a directory already (a layout, which gets the image
/// added).
#[test]
fn an_output_ending_in_tar_is_an_oci_archive() {
    let scratch = common::scratch();
    let archive = scratch.path().join("app-nydus.tar");
    expect(
        bin()
            .arg("convert")
            .arg(common::sample_image())
            .arg(&archive),
        0,
    );
    assert!(archive.is_file(), "{} is not a file", archive.display());
    let members = text(&common::run(Command::new("tar").arg("tf").arg(&archive)).stdout);
    assert!(members.lines().any(|m| m == "index.json"), "{members}");
    expect(bin().arg("check").arg(&archive), 0);
    let help = text(&expect(bin().args(["check", "--help"]), 0).stdout);
    assert!(help.contains("./app-nydus.tar"), "{help}");

    // Asked for a directory, or a directory already: a layout.
    let dir = scratch.path().join("layout.tar");
    expect(
        bin()
            .args(["convert", "--output-format", "oci"])
            .arg(common::sample_image())
            .arg(&dir),
        0,
    );
    assert!(dir.join("index.json").is_file());
    expect(
        bin()
            .args(["convert", "--tag", "again"])
            .arg(common::sample_image())
            .arg(&dir),
        0,
    );
    assert_eq!(tags(&dir), ["latest", "again"]);
    // And --force replaces an archive with an archive.
    expect(
        bin()
            .args(["convert", "--force", "--compressor", "none"])
            .arg(common::sample_image())
            .arg(&archive),
        0,
    );
    assert!(archive.is_file());
    expect(bin().arg("check").arg(&archive), 0);
}

/// `--digestfile FILE` holds what `skopeo copy --digestfile` would write for the image: the
/// digest of the manifest (or index) the tag names, `sha256:` and 64 hex digits, no newline.
#[test]
fn digestfile_holds_the_digest_of_what_the_tag_names() {
    let scratch = common::scratch();
    for (name, args) in [("one", &[][..]), ("merged", &["--merge-platform"][..])] {
        let out = scratch.path().join(name);
        let file = scratch.path().join(format!("{name}.digest"));
        let run = expect(
            bin()
                .arg("convert")
                .args(args)
                .arg("--digestfile")
                .arg(&file)
                .arg(common::sample_image())
                .arg(&out),
            0,
        );
        let digest = fs::read_to_string(&file).unwrap();
        let index: Value =
            serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], digest.as_str(), "{name}");
        let hex = digest.strip_prefix("sha256:").unwrap();
        assert_eq!(hex.len(), 64, "{digest:?}");
        assert_eq!(common::sha256_hex(&out.join("blobs/sha256").join(hex)), hex);
        assert!(text(&run.stdout).contains(&digest), "{}", text(&run.stdout));
    }
}

/// `check --json` prints the result as JSON (and exits 5 when there are problems);
/// `check -q` and `inspect -q` print nothing on stdout, their exit code says how it went.
#[test]
fn check_and_inspect_speak_json_and_keep_quiet() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    expect(
        bin().arg("convert").arg(common::sample_image()).arg(&out),
        0,
    );
    let run = expect(
        bin()
            .args(["check", "--json"])
            .arg(&out)
            .arg("--source")
            .arg(common::sample_image()),
        0,
    );
    let result = json(&run);
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["problems"], serde_json::json!([]));
    assert_eq!(result["output"], out.display().to_string());
    assert_eq!(result["manifests"], 1);
    assert!(result["chunks"].as_u64().unwrap() > 0, "{result}");
    assert!(result["compared"].as_u64().unwrap() > 0, "{result}");
    for quiet in ["-q", "--quiet"] {
        let run = expect(bin().args(["check", quiet]).arg(&out), 0);
        assert!(run.stdout.is_empty(), "{}", text(&run.stdout));
        let run = expect(
            bin().args(["inspect", quiet]).arg(common::sample_image()),
            0,
        );
        assert!(run.stdout.is_empty(), "{}", text(&run.stdout));
    }
    // --json wins over -q, as on convert.
    let run = expect(
        bin()
            .args(["inspect", "-q", "--json", "--quick"])
            .arg(common::sample_image()),
        0,
    );
    assert!(json(&run)["images"].is_array());

    // A damaged output: the problems in the JSON, exit 5; quietly, the exit code alone.
    let config = fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&config).unwrap();
    bytes[0] ^= 1;
    fs::write(&config, bytes).unwrap();
    let run = expect(bin().args(["check", "--json"]).arg(&out), 5);
    let result = json(&run);
    assert_eq!(result["ok"], false, "{result}");
    assert!(
        !result["problems"].as_array().unwrap().is_empty(),
        "{result}"
    );
    let run = expect(bin().args(["check", "-q"]).arg(&out), 5);
    assert!(run.stdout.is_empty(), "{}", text(&run.stdout));
    assert!(
        text(&run.stderr).contains("check found"),
        "{}",
        text(&run.stderr)
    );
    // And an input that is no image: the error on stderr, exit 3.
    let run = expect(bin().args(["inspect", "-q"]).arg(scratch.path()), 3);
    assert!(run.stdout.is_empty());
    assert!(!run.stderr.is_empty());
}

/// One of a thing is singular in every line a run prints: progress, the summary, check's.
#[test]
fn one_is_singular_everywhere() {
    let scratch = common::scratch();
    // One layer, one file of one chunk.
    let tar = common::layers::Tar::new()
        .add(common::layers::Entry::file("hello", b"hello\n"))
        .finish();
    let input = common::layers::oci_layout(&scratch.path().join("in"), &[tar]);
    let out = scratch.path().join("out");
    let run = expect(
        bin()
            .args(["convert", "--progress", "plain"])
            .arg(&input)
            .arg(&out),
        0,
    );
    let stderr = text(&run.stderr);
    let stdout = text(&run.stdout);
    assert!(stderr.starts_with("linux/amd64: 1 layer\n"), "{stderr}");
    assert!(stderr.contains(" 1 chunk, 0 dedup hits (0.0%)"), "{stderr}");
    assert!(stderr.contains("\ndone: 1 layer in "), "{stderr}");
    assert!(
        stdout.starts_with("linux/amd64: 1 layer, 1 chunk, manifest "),
        "{stdout}"
    );
    let run = expect(bin().arg("check").arg(&out).arg("--source").arg(&input), 0);
    let checked = text(&run.stdout);
    assert!(
        checked.contains(": 1 Nydus manifest, 1 blob, 1 chunk checked, 2 bootstraps, "),
        "{checked}"
    );
    // One dedup hit: the sample's upper layer repeats one chunk.
    let run = expect(
        bin()
            .args(["convert", "--progress", "plain"])
            .arg(common::sample_image())
            .arg(scratch.path().join("sample")),
        0,
    );
    let stderr = text(&run.stderr);
    assert!(stderr.contains(", 1 dedup hit (25.0%)"), "{stderr}");
    assert!(!stderr.contains(" 1 dedup hits"), "{stderr}");
}
