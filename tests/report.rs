//! `convert --json` / `--report FILE` and the progress output (issue 9).
//!
//! The report is checked against the output layout it describes, file by file: every digest it
//! names is the sha256 of a file there, the manifest lists exactly its blobs, each blob's size
//! and chunk data size agree with the blob's own bytes (the `image.blob` tar header sits right
//! after the chunk data), and its chunk counts add up to what `check` counts reading the blobs.
//! Progress on a stderr that is not a terminal is plain lines; `--quiet` prints nothing. On a
//! terminal (a pty made by `script`, its output replayed on a [`Screen`]) the bars fit its
//! width, say what a full bar still waits for, and Ctrl-C leaves them as they were.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn convert(out: &Path, args: &[&str]) -> Output {
    common::run(
        bin()
            .arg("convert")
            .arg(common::sample_image())
            .arg(out)
            .args(args),
    )
}

fn blob_path(layout: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// The report without its `timing` fields: what must not change between runs.
fn without_timing(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("timing");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

#[test]
fn the_report_describes_the_output() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    let report_file = scratch.path().join("report.json");
    let run = convert(&out, &["--json", "--report", report_file.to_str().unwrap()]);
    let report: Value = serde_json::from_slice(&run.stdout).expect("stdout is the JSON report");
    assert_eq!(report, read_json(&report_file), "--json and --report agree");

    // The digest index.json names, and it is the single platform's manifest.
    let index = read_json(&out.join("index.json"));
    let top = &index["manifests"][0];
    assert_eq!(report["digest"], top["digest"]);
    assert_eq!(report["digest_names"], "manifest");
    assert_eq!(report["tag"], "latest");
    let platforms = report["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 1);
    let p = &platforms[0];
    assert_eq!(p["platform"], "linux/amd64");
    assert_eq!(p["manifest"]["digest"], report["digest"]);

    // Every digest the report names is the sha256 of that file, of the size it says.
    let check_blob = |r: &Value| {
        let digest = r["digest"].as_str().unwrap();
        let path = blob_path(&out, digest);
        assert_eq!(
            format!("sha256:{}", common::sha256_hex(&path)),
            digest,
            "{}",
            path.display()
        );
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            r["size"].as_u64().unwrap()
        );
    };
    check_blob(&p["manifest"]);
    check_blob(&p["config"]);
    check_blob(&p["bootstrap"]);

    // The manifest lists the report's blobs in order, the bootstrap layer last.
    let manifest = read_json(&blob_path(&out, p["manifest"]["digest"].as_str().unwrap()));
    assert_eq!(manifest["config"]["digest"], p["config"]["digest"]);
    let listed: Vec<&Value> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["digest"])
        .collect();
    let layers = p["layers"].as_array().unwrap();
    let mut expected: Vec<&Value> = layers.iter().map(|l| &l["blob"]["digest"]).collect();
    expected.push(&p["bootstrap"]["digest"]);
    assert_eq!(listed, expected);

    // The source side: the sample's own manifest and config.
    let source = common::sample_image();
    let source_index = read_json(&source.join("index.json"));
    let source_manifest = read_json(&blob_path(
        &source,
        source_index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let source_config = read_json(&blob_path(
        &source,
        source_manifest["config"]["digest"].as_str().unwrap(),
    ));
    assert_eq!(layers.len(), 2);
    let (mut chunks, mut hits) = (0, 0);
    for (i, layer) in layers.iter().enumerate() {
        let src = &layer["source"];
        assert_eq!(src["digest"], source_manifest["layers"][i]["digest"]);
        assert_eq!(src["size"], source_manifest["layers"][i]["size"]);
        assert_eq!(src["diff_id"], source_config["rootfs"]["diff_ids"][i]);
        let mut tar = system_gunzip(&blob_path(&source, src["digest"].as_str().unwrap()));
        assert_eq!(src["uncompressed_size"].as_u64().unwrap(), tar.len() as u64);
        tar.clear();

        let blob = &layer["blob"];
        check_blob(blob);
        let bytes = fs::read(blob_path(&out, blob["digest"].as_str().unwrap())).unwrap();
        // The chunk data ends where the `image.blob` reverse tar header begins, whose size
        // field is the chunk data's size.
        let data = blob["chunk_data_size"].as_u64().unwrap() as usize;
        let header = &bytes[data..data + 512];
        assert_eq!(&header[..10], b"image.blob", "layer {i}");
        let size_field = std::str::from_utf8(&header[124..136])
            .unwrap()
            .trim_matches(|c: char| c == '\0' || c == ' ');
        assert_eq!(u64::from_str_radix(size_field, 8).unwrap(), data as u64);
        let n = blob["chunks"].as_u64().unwrap();
        let h = blob["dedup_hits"].as_u64().unwrap();
        assert!(n > 0, "layer {i} stores chunks");
        let ratio = blob["dedup_ratio"].as_f64().unwrap();
        assert!((ratio - h as f64 / (n + h) as f64).abs() < 1e-9);
        let uncompressed = blob["uncompressed_size"].as_u64().unwrap();
        assert_eq!(uncompressed % 4096, 0);
        assert!(uncompressed >= n * 4096);
        assert!(blob["file_bytes"].as_u64().unwrap() <= src["uncompressed_size"].as_u64().unwrap());
        assert_eq!(layer["shared"], false);
        assert!(layer["timing"]["seconds"].as_f64().unwrap() > 0.0);
        chunks += n;
        hits += h;
    }
    // The sample's upper layer repeats content of the lower one.
    assert!(hits > 0, "the sample has dedup hits");
    for totals in [&p["totals"], &report["totals"]] {
        assert_eq!(totals["layers"], 2);
        assert_eq!(totals["chunks"], chunks);
        assert_eq!(totals["dedup_hits"], hits);
    }
    assert!(report["timing"]["seconds"].as_f64().unwrap() > 0.0);
    assert!(report["timing"]["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);

    // `check` reads every chunk of every blob: the same count.
    let checked = text(&common::run(bin().arg("check").arg(&out)).stdout);
    assert!(
        checked.contains(&format!(" {chunks} chunks checked")),
        "report says {chunks} chunks; check says: {checked}"
    );
}

/// Uncompress a gzip file with the system's gzip, so that the test does not share our decoder.
fn system_gunzip(path: &Path) -> Vec<u8> {
    common::run(Command::new("gzip").arg("-dc").arg(path)).stdout
}

#[test]
fn the_report_is_the_same_every_run_but_for_times() {
    let scratch = common::scratch();
    let first = convert(&scratch.path().join("a"), &["--json", "--quiet"]);
    let second = convert(&scratch.path().join("b"), &["--json", "--quiet", "-j", "1"]);
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    let second: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_ne!(first, without_timing(first.clone()), "times are reported");
    assert_eq!(without_timing(first), without_timing(second));
}

#[test]
fn plain_progress_when_stderr_is_not_a_terminal() {
    let scratch = common::scratch();
    let run = convert(&scratch.path().join("out"), &["--progress", "plain"]);
    let stderr = text(&run.stderr);
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "escape codes or carriage returns in: {stderr:?}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], "linux/amd64: 2 layers", "{stderr}");
    for (n, digest) in [(1, "sha256:7fca807546e8"), (2, "sha256:10c0f043acb8")] {
        let label = format!("layer {n}/2 {digest}: ");
        let started = lines
            .iter()
            .position(|l| l.starts_with(&label) && l.contains("started"));
        let done = lines
            .iter()
            .position(|l| l.starts_with(&label) && l.contains(": done in "));
        assert!(started.is_some() && started < done, "{label}: {stderr}");
        let done_line = lines[done.unwrap()];
        assert!(
            done_line.contains(" chunks, ")
                && (done_line.contains(" dedup hits (") || done_line.contains(" 1 dedup hit (")),
            "{done_line}"
        );
    }
    // The bootstrap layer is written after the last layer: a step of its own, not silence.
    assert_eq!(
        lines[lines.len() - 2],
        "linux/amd64: writing the bootstrap layer",
        "{stderr}"
    );
    assert!(
        lines.last().unwrap().starts_with("done: 2 layers in "),
        "{stderr}"
    );
    // The summary stays on stdout.
    assert!(text(&run.stdout).contains("tag latest, sha256:"));

    // Automatic progress on a pipe waits 2 seconds, so that a quick run (and its errors) stays
    // quiet. Which case this run is depends on the machine, so the test measures it and judges
    // each case by its own rule (a run near 2 s, where the two clocks may disagree, is not
    // judged): never an assertion that a run is fast.
    let started = std::time::Instant::now();
    let run = convert(&scratch.path().join("quick"), &[]);
    let seconds = started.elapsed().as_secs_f64();
    if seconds < 2.0 {
        assert_eq!(
            text(&run.stderr),
            "",
            "a run of {seconds} s printed progress"
        );
    } else if seconds > 3.0 {
        assert!(
            text(&run.stderr).contains("done: 2 layers in "),
            "a run of {seconds} s printed no progress"
        );
    }
}

#[test]
fn quiet_prints_nothing_on_success() {
    let scratch = common::scratch();
    let run = convert(
        &scratch.path().join("out"),
        &["--quiet", "--progress", "plain"],
    );
    assert_eq!(text(&run.stdout), "");
    assert_eq!(text(&run.stderr), "");
    assert!(scratch.path().join("out/index.json").exists());
    // With --json the report is still printed, and only it.
    let run = convert(&scratch.path().join("json"), &["-q", "--json"]);
    assert_eq!(text(&run.stderr), "");
    let _: Value = serde_json::from_slice(&run.stdout).unwrap();
    // Errors still show.
    let failed = bin()
        .args(["convert", "--quiet", "/nonexistent/image"])
        .arg(scratch.path().join("none"))
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(3));
    assert_eq!(text(&failed.stdout), "");
    assert_eq!(text(&failed.stderr).lines().count(), 1);
}

/// `-v` says which fallbacks a run took (the sample's gzip layers cannot be mapped, so they
/// are streamed); without it, and with `--quiet`, nothing is said.
#[test]
fn verbose_names_the_fallbacks_taken() {
    let scratch = common::scratch();
    let run = convert(&scratch.path().join("v"), &["-v", "--progress", "none"]);
    let stderr = text(&run.stderr);
    assert_eq!(
        stderr.matches("nydus-offline: info: layer ").count(),
        2,
        "{stderr}"
    );
    assert!(stderr.contains("streamed"), "{stderr}");
    let plain = convert(&scratch.path().join("plain"), &["--progress", "none"]);
    assert_eq!(text(&plain.stderr), "");
    let quiet = convert(&scratch.path().join("quiet"), &["-v", "--quiet"]);
    assert_eq!(text(&quiet.stderr), "");
}

/// A terminal `width` columns wide, as much of one as replaying indicatif's drawing needs:
/// printable characters with auto-wrap (a character written past the last column goes to the
/// next row), CR, LF, cursor up and down (`CSI n A`, `CSI n B`) and erasing a line (`CSI 2K`,
/// `CSI K`). `frames` holds the screen as it stood before each redraw began (a cursor-up).
struct Screen {
    width: usize,
    rows: Vec<Vec<char>>,
    frames: Vec<Vec<String>>,
}

impl Screen {
    fn replay(width: usize, bytes: &[u8]) -> Screen {
        let mut screen = Screen {
            width,
            rows: vec![Vec::new()],
            frames: Vec::new(),
        };
        let (mut row, mut col, mut pending_wrap) = (0usize, 0usize, false);
        let text = String::from_utf8_lossy(bytes);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\x1b' if chars.peek() == Some(&'[') => {
                    chars.next();
                    let mut params = String::new();
                    let mut command = ' ';
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            command = c;
                            break;
                        }
                        params.push(c);
                    }
                    let n = params.parse::<usize>().unwrap_or(1);
                    match command {
                        'A' => {
                            screen.frames.push(screen.lines());
                            row = row.saturating_sub(n);
                        }
                        'B' => row += n,
                        'K' if params == "2" => screen.rows[row].clear(),
                        'K' => screen.rows[row].truncate(col),
                        _ => {}
                    }
                    if matches!(command, 'A' | 'B') {
                        pending_wrap = false;
                    }
                }
                '\r' => {
                    col = 0;
                    pending_wrap = false;
                }
                '\n' => {
                    row += 1;
                    pending_wrap = false;
                }
                c if !c.is_control() => {
                    if pending_wrap {
                        row += 1;
                        col = 0;
                        pending_wrap = false;
                    }
                    while screen.rows.len() <= row {
                        screen.rows.push(Vec::new());
                    }
                    let line = &mut screen.rows[row];
                    while line.len() <= col {
                        line.push(' ');
                    }
                    line[col] = c;
                    if col + 1 == width {
                        pending_wrap = true;
                    } else {
                        col += 1;
                    }
                }
                _ => {}
            }
            while screen.rows.len() <= row {
                screen.rows.push(Vec::new());
            }
        }
        screen
    }

    /// The rows, without trailing blanks and without the empty rows at the end.
    fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .rows
            .iter()
            .map(|r| r.iter().collect::<String>().trim_end().to_string())
            .collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
    }
}

/// `convert ARGS` with stderr on a terminal of `width` columns (stdout to /dev/null), as a shell
/// command line for `script`.
fn on_a_terminal(width: usize, args: &[&Path]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| format!("'{}'", a.display().to_string().replace('\'', "'\\''")))
        .collect();
    format!(
        "stty cols {width} rows 50 echoctl; exec '{}' convert {} >/dev/null",
        env!("CARGO_BIN_EXE_nydus-offline"),
        quoted.join(" ")
    )
}

/// Run `convert` of `input` on a terminal of `width` columns: its exit code and what it drew.
fn convert_on_a_terminal(width: usize, input: &Path, out: &Path) -> (Option<i32>, Screen) {
    let run = Command::new("script")
        .args(["-qfec", &on_a_terminal(width, &[input, out]), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs a command on a pty");
    (run.status.code(), Screen::replay(width, &run.stdout))
}

/// Every row of the screen is one line the display drew, none the rest of a line too long for
/// the terminal.
fn assert_rows_are_whole_lines(screen: &Screen, what: &str) {
    for lines in screen.frames.iter().chain([&screen.lines()]) {
        for line in lines {
            assert!(
                ["linux/", "layer ", "total ", "^C", "nydus-offline: "]
                    .iter()
                    .any(|start| line.starts_with(start)),
                "{what}: a row that continues a line wider than {} columns: {line:?} in\n{}",
                screen.width,
                lines.join("\n")
            );
        }
    }
}

#[test]
fn the_bars_fit_the_terminal() {
    let scratch = common::scratch();
    for width in [80, 60] {
        let out = scratch.path().join(format!("out-{width}"));
        let (code, screen) = convert_on_a_terminal(width, &common::sample_image(), &out);
        assert_eq!(code, Some(0), "{}", screen.lines().join("\n"));
        assert_rows_are_whole_lines(&screen, &format!("{width} columns"));
        let lines = screen.lines();
        assert_eq!(lines.len(), 4, "{}", lines.join("\n"));
        assert!(lines[0] == "linux/amd64: 2 layers", "{lines:?}");
        assert!(
            lines[1].starts_with("layer 1/2 7fca807546e8 ["),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("layer 2/2 10c0f043acb8 ["),
            "{lines:?}"
        );
        assert!(
            lines[3].starts_with("total                  ["),
            "{lines:?}"
        );
        for line in &lines[1..] {
            assert!(line.contains("] 100% "), "{lines:?}");
        }
    }
}

/// A layer's bar is full once its bytes are read, but the layer is not done: its blob is
/// finished and its bootstrap written (and after the last layer the image's bootstrap, which
/// for 200,000 files takes a second). A full bar says which, until the layer is done; the
/// overall bar names the layer it is at (never `0/1 layers` beside a full bar).
#[test]
fn a_full_bar_says_what_it_still_waits_for() {
    let scratch = common::scratch();
    // One layer of many small files, whose bootstraps take a while to write.
    let mut tar = common::layers::Tar::new();
    for i in 0..3000 {
        tar.add(common::layers::Entry::file(
            format!("d{}/f{i}", i % 30),
            format!("{i}\n"),
        ));
    }
    let input = common::layers::oci_layout(&scratch.path().join("in"), &[tar.finish()]);
    let (code, screen) = convert_on_a_terminal(80, &input, &scratch.path().join("out"));
    assert_eq!(code, Some(0), "{}", screen.lines().join("\n"));
    assert_rows_are_whole_lines(&screen, "80 columns");
    for lines in screen.frames.iter().chain([&screen.lines()]) {
        let frame = lines.join("\n");
        assert!(!frame.contains("0/1 layer"), "{frame}");
        for line in lines.iter().filter(|l| l.starts_with("layer 1/1 ")) {
            let full = line.contains("[============]");
            let says = ["done in ", "finishing the blob", "writing its bootstrap"]
                .iter()
                .any(|s| line.contains(s));
            assert!(!full || says, "a full bar that says nothing more: {frame}");
        }
    }
    let last = screen.lines();
    assert!(last[1].contains("] 100% done in "), "{last:?}");
    assert!(last[2].contains("] 100% done: 1 layer in "), "{last:?}");
}

/// Ctrl-C makes the terminal echo `^C` below the bars; the bars are then left as they were,
/// not redrawn a line off (which left a copy of the first bar above them), and the error
/// follows.
#[test]
fn ctrl_c_leaves_the_bars_as_they_were() {
    let scratch = common::scratch();
    let out = scratch.path().join("out");
    let lock = fs::File::open(scratch.path()).unwrap();
    lock.lock().unwrap();
    let mut child = Command::new("script")
        .args([
            "-qfec",
            &on_a_terminal(80, &[&common::sample_image(), &out]),
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs a command on a pty");
    let drawn = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let drawn = Arc::clone(&drawn);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                drawn.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    // The run waits for its turn to commit, everything drawn: there it is interrupted.
    let until = |what: &str, done: &dyn Fn() -> bool, child: &mut std::process::Child| {
        let start = Instant::now();
        while !done() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before {what}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {what} in a minute"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let out_name = out.display().to_string();
    until(
        "it waited to commit",
        &|| {
            fs::read_to_string("/proc/locks")
                .unwrap()
                .lines()
                .filter(|l| l.contains("->"))
                .filter_map(|l| l.split_whitespace().nth(5))
                .any(|pid| {
                    fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&out_name))
                })
        },
        &mut child,
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    // The terminal echoes ^C as it sends SIGINT: once echoed, the signal is on its way.
    until(
        "^C was echoed",
        &|| String::from_utf8_lossy(&drawn.lock().unwrap()).contains("^C"),
        &mut child,
    );
    std::thread::sleep(Duration::from_millis(200));
    drop(lock);
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let screen = Screen::replay(80, &drawn.lock().unwrap());
    let lines = screen.lines();
    assert_eq!(status.code(), Some(130), "{}", lines.join("\n"));
    // The bars fit; the error line below them may wrap.
    assert_rows_are_whole_lines(
        &Screen {
            rows: Vec::new(),
            ..screen
        },
        "80 columns",
    );
    for start in ["linux/amd64: ", "layer 1/2 ", "layer 2/2 ", "total "] {
        assert_eq!(
            lines.iter().filter(|l| l.starts_with(start)).count(),
            1,
            "{start:?} drawn other than once:\n{}",
            lines.join("\n")
        );
    }
    assert!(
        lines[4].starts_with("^Cnydus-offline: error: interrupted"),
        "{}",
        lines.join("\n")
    );
    assert!(!out.exists());
}
