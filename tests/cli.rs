//! What a new user meets on the command line (issue 19), each run through the binary: the tag
//! the output gets, the form an OUTPUT ending in `.tar` takes, `--digestfile`, `--json` and
//! `--quiet` on `check` and `inspect`, and `--platform` in any case.

mod common;

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
