//! The exit codes README.md documents, each produced through the binary (issue 9):
//! 0 success, 2 usage, 3 bad input, 4 I/O or output, 5 check found problems, 70 internal,
//! 130 interrupted. Also `--help` with examples for every subcommand, and the completion
//! scripts and man pages generated from the same definitions.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
}

/// Run and return the output, with the exit code checked.
fn expect(cmd: &mut Command, code: i32) -> Output {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn success_is_0() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    expect(
        bin().arg("convert").arg(common::sample_image()).arg(&out),
        0,
    );
    expect(bin().arg("check").arg(&out), 0);
    expect(bin().arg("inspect").arg(common::sample_image()), 0);
}

#[test]
fn usage_errors_are_2() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    expect(bin().arg("convert"), 2);
    expect(bin().arg("no-such-command"), 2);
    expect(
        bin()
            .args(["convert", "--chunk-size", "3KiB"])
            .arg(common::sample_image())
            .arg(&out),
        2,
    );
    expect(bin().args(["completions", "tcsh"]), 2);
    let e = expect(bin().args(["man", "no-such-command"]), 2);
    assert!(text(&e.stderr).contains("there are: convert, inspect, check"));
    assert!(!out.exists());
}

#[test]
fn bad_input_is_3() {
    let scratch = common::scratch();
    let not_an_image = scratch.path().join("notes.txt");
    fs::write(&not_an_image, "not an image").unwrap();
    for input in [Path::new("/nonexistent/image"), &not_an_image] {
        let e = expect(
            bin()
                .arg("convert")
                .arg(input)
                .arg(scratch.path().join("out")),
            3,
        );
        assert_eq!(text(&e.stderr).lines().count(), 1, "{}", text(&e.stderr));
    }
    // check of something that is no output at all (missing, or a file that is no archive),
    // and of a bad --source.
    expect(bin().arg("check").arg("/nonexistent/out"), 3);
    expect(bin().arg("check").arg(&not_an_image), 3);
    let out = scratch.path().join("good");
    expect(
        bin().arg("convert").arg(common::sample_image()).arg(&out),
        0,
    );
    expect(
        bin()
            .arg("check")
            .arg(&out)
            .arg("--source")
            .arg(&not_an_image),
        3,
    );
}

#[test]
fn io_and_output_errors_are_4() {
    let scratch = common::scratch();
    // The output's parent is a regular file.
    let file = scratch.path().join("file");
    fs::write(&file, "x").unwrap();
    expect(
        bin()
            .arg("convert")
            .arg(common::sample_image())
            .arg(file.join("out")),
        4,
    );
    // A full disk: a 128 KiB tmpfs cannot hold the sample's 400 KiB.
    let small = scratch.path().join("small");
    fs::create_dir(&small).unwrap();
    common::run(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=128k", "tmpfs"])
            .arg(&small),
    );
    let e = bin()
        .arg("convert")
        .arg(common::sample_image())
        .arg(small.join("out"))
        .output()
        .unwrap();
    let leftovers: Vec<_> = fs::read_dir(&small).unwrap().collect();
    common::run(Command::new("umount").arg(&small));
    assert_eq!(e.status.code(), Some(4), "{}", text(&e.stderr));
    assert!(
        text(&e.stderr).contains("No space left on device"),
        "{}",
        text(&e.stderr)
    );
    assert!(
        leftovers.is_empty(),
        "a failed convert leaves {leftovers:?}"
    );
}

/// `bin()` run as the unprivileged user `nobody`: the tests run as root, whom no permission bit
/// stops.
fn as_nobody() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_nydus-offline"));
    cmd
}

/// An input that is there but cannot be read is an I/O error (4) saying so, whether it is a
/// directory or a file; it is not a bad image (3), as a missing input is.
#[test]
fn unreadable_input_is_4() {
    let scratch = common::scratch();
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let layout = scratch.path().join("layout");
    common::run(
        Command::new("cp")
            .arg("-r")
            .arg(common::sample_image())
            .arg(&layout),
    );
    let archive = scratch.path().join("app.tar");
    fs::write(&archive, b"").unwrap();
    for input in [&layout, &archive] {
        fs::set_permissions(input, fs::Permissions::from_mode(0o000)).unwrap();
        let out = scratch.path().join("out");
        for args in [
            vec!["inspect".as_ref(), input.as_os_str()],
            vec!["convert".as_ref(), input.as_os_str(), out.as_os_str()],
        ] {
            let e = expect(as_nobody().args(args), 4);
            let stderr = text(&e.stderr);
            assert!(
                stderr.contains(&format!("{}: Permission denied", input.display())),
                "{stderr}"
            );
        }
        // The same as check's --source.
        expect(
            as_nobody()
                .arg("check")
                .arg(scratch.path())
                .arg("--source")
                .arg(input),
            4,
        );
    }
}

#[test]
fn check_found_problems_is_5() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    expect(
        bin().arg("convert").arg(common::sample_image()).arg(&out),
        0,
    );
    let config = fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&config).unwrap();
    bytes[0] ^= 1;
    fs::write(&config, bytes).unwrap();
    let e = expect(bin().arg("check").arg(&out), 5);
    assert!(text(&e.stdout).contains("problem: "), "{}", text(&e.stdout));
    assert!(
        text(&e.stderr).contains("check found"),
        "{}",
        text(&e.stderr)
    );
    // A directory that is not a layout is checked as one: what it lacks are problems.
    let empty = scratch.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let e = expect(bin().arg("check").arg(&empty), 5);
    assert!(
        text(&e.stdout).contains("oci-layout: is missing") || text(&e.stdout).contains("problem: "),
        "{}",
        text(&e.stdout)
    );
}

/// Exit codes and what they mean, as a document lists them.
type Rows = Vec<(i32, String)>;

/// The rows of the exit-code table under `## Exit codes` in README.md, and of the `Exit codes:`
/// list of `--help`: code and meaning.
fn documented_codes() -> (Rows, Rows) {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## Exit codes\n")
        .nth(1)
        .expect("README.md has an Exit codes section");
    let table = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Some((cells.get(1)?.parse().ok()?, cells.get(2)?.to_string()))
        })
        .collect();
    let help = text(&expect(bin().arg("--help"), 0).stdout);
    let list = help
        .split("Exit codes:\n")
        .nth(1)
        .expect("--help lists the exit codes")
        .lines()
        .filter_map(|l| {
            let (code, meaning) = l.trim().split_once(' ')?;
            Some((code.parse().ok()?, meaning.trim().to_string()))
        })
        .collect();
    (table, list)
}

/// README's table and `--help` list the codes the tests above produce, each case where the
/// binary puts it: a missing input is 3, an unreadable one 4, a directory `check` is given that
/// is not a layout 5 (README said 3), ...
#[test]
fn readme_and_help_say_what_the_binary_gives() {
    let (readme, help) = documented_codes();
    let codes = |rows: &[(i32, String)]| rows.iter().map(|r| r.0).collect::<Vec<_>>();
    let all = [0, 2, 3, 4, 5, 70, 130];
    assert_eq!(codes(&readme), all, "README's table: {readme:?}");
    assert_eq!(codes(&help), all, "--help: {help:?}");
    // Each case some test of this file runs, and where its code is: README and --help name it
    // in that code's row.
    let says = |rows: &[(i32, String)], code: i32, case: &str| {
        let row = &rows.iter().find(|r| r.0 == code).unwrap().1;
        assert!(
            row.to_lowercase().contains(&case.to_lowercase()),
            "the row of {code} does not say {case:?}: {row}"
        );
    };
    for (code, case) in [
        (0, "success"),
        (2, "usage error"),
        (3, "a missing input"),
        (3, "malformed"),
        (
            3,
            "an OUT that does not exist or a file that is not an oci-archive",
        ),
        (3, "a bad `--source`"),
        (4, "cannot be read (permission denied)"),
        (4, "full disk"),
        (5, "found problems"),
        (5, "a directory that is not a layout"),
        (70, "internal error"),
        (130, "SIGINT"),
    ] {
        says(&readme, code, case);
    }
    for (code, case) in [
        (3, "missing"),
        (3, "malformed"),
        (4, "permission denied"),
        (4, "full disk"),
        (5, "found problems"),
    ] {
        says(&help, code, case);
    }
    // And no case under a code the binary does not give for it.
    for (code, wrong) in [
        (3, "unreadable"),
        (3, "neither a layout directory"),
        (4, "missing"),
    ] {
        for rows in [&readme, &help] {
            let row = &rows.iter().find(|r| r.0 == code).unwrap().1;
            assert!(
                !row.contains(wrong),
                "the row of {code} says {wrong:?}: {row}"
            );
        }
    }
}

#[test]
fn internal_errors_are_70() {
    // A bug shows as a panic; it must not escape as Rust's 101.
    let e = expect(
        bin()
            .env("NYDUS_OFFLINE_INJECT_PANIC", "1")
            .args(["inspect"])
            .arg(common::sample_image()),
        70,
    );
    assert!(text(&e.stderr).contains("internal error"));
}

/// SIGINT to a running convert of a corpus image: exit code 130 and no output.
///
/// Without a signal handler the process dies of SIGINT, which a shell also reports as 130
/// (128 + 2); with the handler (`output::interrupt`) it exits with 130 itself and must leave no
/// temporary files. Either way no output appears.
#[test]
fn interrupted_is_130() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    // Held where it waits for its turn to commit, everything written: interrupted there.
    let child = common::holding_the_commit_lock(scratch.path(), || {
        let mut child = bin()
            .arg("convert")
            .arg(common::sample_image())
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        common::until_waiting_for_a_lock(&mut child);
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        child
    });
    let output = child.wait_with_output().unwrap();
    let status = output.status;
    match status.code() {
        Some(code) => {
            assert_eq!(code, 130, "{}", text(&output.stderr));
            let left: Vec<_> = fs::read_dir(scratch.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(left.is_empty(), "temporary files left behind: {left:?}");
        }
        None => assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}"),
    }
    assert!(
        !out.exists(),
        "an interrupted convert must not leave an output"
    );
}

#[test]
fn every_subcommand_has_help_with_examples() {
    let top = expect(bin().arg("--help"), 0);
    let top = text(&top.stdout);
    assert!(top.contains("Exit codes:") && top.contains("130"), "{top}");
    for sub in ["convert", "inspect", "check", "completions", "man"] {
        let help = expect(bin().args([sub, "--help"]), 0);
        let help = text(&help.stdout);
        assert!(
            help.contains("Examples:"),
            "{sub} --help has no examples:\n{help}"
        );
        assert!(help.contains(&format!("nydus-offline {sub}")), "{help}");
    }
    let convert = text(&expect(bin().args(["convert", "--help"]), 0).stdout);
    for example in [
        "docker save",
        "oci-archive",
        "--all-platforms",
        "skopeo copy",
    ] {
        assert!(
            convert.contains(example),
            "convert --help lacks {example}:\n{convert}"
        );
    }
}

#[test]
fn completions_and_man_pages_come_from_the_same_definitions() {
    for (shell, marker) in [
        ("bash", "complete -F _nydus__offline"),
        ("zsh", "#compdef nydus-offline"),
        ("fish", "complete -c nydus-offline"),
    ] {
        let out = expect(bin().args(["completions", shell]), 0);
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}:\n{script}");
        for word in ["convert", "check", "source", "chunk-size"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let bash = common::scratch();
    let script = bash.path().join("completion.bash");
    fs::write(
        &script,
        expect(bin().args(["completions", "bash"]), 0).stdout,
    )
    .unwrap();
    common::run(Command::new("bash").arg("-n").arg(&script));

    let page = text(&expect(bin().arg("man"), 0).stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH nydus-offline"),
        "{page}"
    );
    assert!(page.contains("check") && page.contains("convert"), "{page}");
    let check = text(&expect(bin().args(["man", "check"]), 0).stdout);
    assert!(check.contains(".TH nydus-offline-check"), "{check}");
    assert!(check.contains("\\-\\-source"), "{check}");
    // The synopsis names each option with its value, and the examples are under EXAMPLES (not
    // clap_mangen's EXTRA); the exit codes of the main page under EXIT STATUS.
    let synopsis = check
        .split(".SH SYNOPSIS\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_default();
    assert!(
        synopsis.contains("[\\fB\\-\\-source\\fR \\fIINPUT\\fR]"),
        "{synopsis}"
    );
    assert!(synopsis.ends_with("\\fIOUTPUT\\fR"), "{synopsis}");
    for page in [&page, &check] {
        assert!(!page.contains(".SH EXTRA"), "{page}");
        assert!(
            page.contains(".SH \"EXAMPLES\"\n.nf\n  nydus\\-offline")
                || page.contains(".SH \"EXIT STATUS\"\n.nf\n  0    success"),
            "{page}"
        );
    }
    let convert = text(&expect(bin().args(["man", "convert"]), 0).stdout);
    for option in [
        "chunk\\-size\\fR \\fISIZE",
        "\\-j\\fR|\\fB\\-\\-jobs\\fR \\fIN",
    ] {
        assert!(convert.contains(option), "{option}: {convert}");
    }
    assert!(convert.contains(".SH \"EXAMPLES\""), "{convert}");
    if Command::new("man").arg("--version").output().is_ok() {
        let path = bash.path().join("nydus-offline-check.1");
        fs::write(&path, &check).unwrap();
        let rendered = common::run(
            Command::new("man")
                .arg("-l")
                .arg(&path)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100"),
        );
        // Words as man shows them, whatever spaces justification puts between them.
        let rendered = text(&rendered.stdout)
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(rendered.contains("[--source INPUT]"), "{rendered}");
        assert!(rendered.contains("\nEXAMPLES\n"), "{rendered}");
    }
}
