//! README's examples are real runs: the sample's report and its progress lines, as README shows
//! them, are compared with what `convert` prints today, and so is every `$ nydus-offline ...`
//! session README shows (what `convert` and `check` print on stdout); the options table of
//! "Converting" is compared with `convert --help`. README fails a test the moment its examples
//! drift from the program. (`tests/exit_codes.rs` does the same for the exit-code table.)

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_nydus-offline");

fn readme() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The text of the first fenced block after `marker`, with the fence's language `lang`
/// (```json), or the indented block (four spaces) when `lang` is empty.
fn block_after(text: &str, marker: &str, lang: &str) -> String {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("README.md no longer says {marker:?}"));
    let rest = &text[at..];
    if lang.is_empty() {
        let lines: Vec<&str> = rest
            .lines()
            .skip(1)
            .skip_while(|l| l.trim().is_empty())
            .take_while(|l| l.starts_with("    "))
            .map(|l| &l[4..])
            .collect();
        return lines.join("\n");
    }
    let fence = format!("```{lang}\n");
    let start = rest.find(&fence).expect("no fenced block after the marker") + fence.len();
    let end = rest[start..].find("```").expect("unclosed fence") + start;
    rest[start..end].to_string()
}

/// Whether `shown` (README's, trimmed) agrees with `real`: every key README shows has the real
/// value, except `timing`; a string with `...` stands for one with that start and end; an array
/// README shows holds elements each found somewhere in the real array (README leaves some out).
fn agrees(shown: &Value, real: &Value, at: &str, problems: &mut Vec<String>) {
    match (shown, real) {
        (Value::Object(s), Value::Object(r)) => {
            for (key, value) in s {
                if key == "timing" {
                    continue;
                }
                match r.get(key) {
                    Some(real_value) => agrees(value, real_value, &format!("{at}.{key}"), problems),
                    None => problems.push(format!("{at}.{key}: not in the real report")),
                }
            }
        }
        (Value::Array(s), Value::Array(r)) => {
            for (i, value) in s.iter().enumerate() {
                let found = r.iter().any(|real_value| {
                    let mut inner = Vec::new();
                    agrees(value, real_value, "", &mut inner);
                    inner.is_empty()
                });
                if !found {
                    // Say what differs from the element in the same place, if there is one.
                    match r.get(i) {
                        Some(same_place) => {
                            agrees(value, same_place, &format!("{at}[{i}]"), problems)
                        }
                        None => problems.push(format!("{at}[{i}]: not in the real report")),
                    }
                }
            }
        }
        (Value::String(s), Value::String(r)) if s.contains("...") => {
            let (head, tail) = s.split_once("...").unwrap();
            if !(r.starts_with(head) && r.ends_with(tail)) {
                problems.push(format!("{at}: README shows {s}, the report says {r}"));
            }
        }
        _ if shown != real => problems.push(format!(
            "{at}: README shows {shown}, the report says {real}"
        )),
        _ => {}
    }
}

/// A progress line with its durations (`in 0.6s`) made uniform, which are the only part of it
/// that depends on the machine.
fn without_durations(line: &str) -> String {
    let mut out = Vec::new();
    let mut words = line.split(' ').peekable();
    while let Some(word) = words.next() {
        out.push(word.to_string());
        if word == "in"
            && let Some(next) = words.peek()
            && next.trim_end_matches([',', 's']).parse::<f64>().is_ok()
        {
            let next = words.next().unwrap();
            out.push(if next.ends_with(',') { "Ts," } else { "Ts" }.to_string());
        }
    }
    out.join(" ")
}

/// `convert ARGS` of the sample into a scratch directory: what it printed.
fn convert_sample(args: &[&str]) -> std::process::Output {
    let scratch = common::scratch();
    common::run(
        Command::new(BIN)
            .arg("convert")
            .args(args)
            .arg(common::sample_image())
            .arg(scratch.path().join("out")),
    )
}

#[test]
fn the_sample_report_in_readme_is_what_convert_prints() {
    let run = convert_sample(&["--json"]);
    let real: Value = serde_json::from_slice(&run.stdout).unwrap();
    let shown: Value =
        serde_json::from_str(&block_after(&readme(), "The sample's, trimmed:", "json"))
            .expect("README's report is JSON");
    let mut problems = Vec::new();
    agrees(&shown, &real, "report", &mut problems);
    assert!(
        problems.is_empty(),
        "README's sample report has drifted from what convert prints; update README.md:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_sample_progress_in_readme_is_what_convert_prints() {
    let run = convert_sample(&["--progress", "plain"]);
    let real: Vec<String> = String::from_utf8_lossy(&run.stderr)
        .lines()
        .map(without_durations)
        .collect();
    let shown: Vec<String> = block_after(&readme(), "`--progress plain 2>progress.log`:", "")
        .lines()
        .map(without_durations)
        .collect();
    assert_eq!(
        shown, real,
        "README's progress example has drifted; update README.md"
    );
}

#[test]
fn durations_are_the_only_part_of_a_progress_line_left_out() {
    assert_eq!(
        without_durations("layer 1/2 x: done in 0.6s, 13 chunks"),
        "layer 1/2 x: done in Ts, 13 chunks"
    );
    assert_eq!(
        without_durations("done: 2 layers in 12.0s"),
        "done: 2 layers in Ts"
    );
    assert_eq!(without_durations("layer in a tar"), "layer in a tar");
}

/// Every `--option` (and `-o`) a text names in code spans or option lists.
fn options_in(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| {
            (w.starts_with("--")
                && w.len() > 2
                && w[2..].starts_with(|c: char| c.is_ascii_lowercase()))
                || (w.len() == 2
                    && w.starts_with('-')
                    && w[1..].starts_with(|c: char| c.is_ascii_alphabetic()))
        })
        .map(str::to_string)
        .collect()
}

/// The options table of "Converting" names exactly the options `convert --help` lists.
#[test]
fn the_options_table_is_what_convert_takes() {
    let text = readme();
    let section = text
        .split("\n## Converting\n")
        .nth(1)
        .expect("README.md has a Converting section");
    let table: String = section
        .lines()
        .skip_while(|l| !l.starts_with("| option"))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.replace("\\|", "/").split('|').nth(1).map(str::to_string))
        .collect::<Vec<_>>()
        .join(" ");
    let help = common::run(Command::new(BIN).args(["convert", "--help"]));
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    // The option lines of the help: those that start with a dash.
    let listed: String = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .map(|l| l.split("  ").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ");
    let mut takes = options_in(&listed);
    takes.remove("-h");
    takes.remove("--help");
    let shown = options_in(&table);
    assert_eq!(
        shown, takes,
        "README's Converting table (left) and convert --help (right) name different options"
    );
}

/// The commands of every README session (`$ nydus-offline ARGS` and what it prints on stdout,
/// in indented blocks), in README's order, run from a directory holding the sample where README
/// says, `testdata/sample`.
#[test]
fn the_sessions_in_readme_are_what_the_commands_print() {
    let scratch = common::scratch();
    fs::create_dir(scratch.path().join("testdata")).unwrap();
    std::os::unix::fs::symlink(
        common::sample_image(),
        scratch.path().join("testdata/sample"),
    )
    .unwrap();
    let text = readme();
    let mut sessions = 0;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(args) = line.strip_prefix("    $ nydus-offline ") else {
            continue;
        };
        let mut shown = Vec::new();
        while let Some(next) = lines.peek() {
            if !next.starts_with("    ") || next.starts_with("    $ ") {
                break;
            }
            shown.push(next[4..].to_string());
            lines.next();
        }
        let run = Command::new(BIN)
            .args(args.split_whitespace())
            .current_dir(scratch.path())
            .output()
            .unwrap();
        let printed: Vec<String> = String::from_utf8_lossy(&run.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(
            shown,
            printed,
            "README's session `nydus-offline {args}` has drifted (exit {:?}, stderr {}); update README.md",
            run.status.code(),
            String::from_utf8_lossy(&run.stderr)
        );
        sessions += 1;
    }
    assert!(sessions >= 2, "README shows {sessions} sessions");
}
