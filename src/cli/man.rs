//! The man pages, rendered from the clap definitions.
//!
//! clap_mangen renders the title, NAME, DESCRIPTION, OPTIONS, SUBCOMMANDS and VERSION sections;
//! two are written here instead. Its SYNOPSIS names options without their values
//! (`[--source]`), so the synopsis is built from the same definitions with each value
//! (`[--source INPUT]`). And it puts the text shown after `--help` under a section called EXTRA:
//! here its `Examples:` and the paragraphs holding command lines go under EXAMPLES, `Exit
//! codes:` under EXIT STATUS, and the prose paragraphs into DESCRIPTION, where man pages keep
//! them.

use std::io::{self, Write};

/// The after-help text of a command, sorted into man page sections.
#[derive(Default)]
struct AfterHelp {
    /// Prose paragraphs, for DESCRIPTION.
    prose: Vec<String>,
    /// Preformatted lines for EXAMPLES and EXIT STATUS (blank lines between paragraphs).
    examples: Vec<String>,
    exit_status: Vec<String>,
}

impl AfterHelp {
    fn of(cmd: &clap::Command) -> AfterHelp {
        let mut sorted = AfterHelp::default();
        let Some(text) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) else {
            return sorted;
        };
        let text = text.to_string();
        for paragraph in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
            let lines: Vec<&str> = paragraph.lines().collect();
            let (target, body) = match lines[0].trim() {
                "Examples:" => (&mut sorted.examples, &lines[1..]),
                "Exit codes:" => (&mut sorted.exit_status, &lines[1..]),
                _ if lines.iter().any(|l| l.starts_with("  ")) => {
                    (&mut sorted.examples, &lines[..])
                }
                _ => {
                    sorted.prose.push(lines.join(" "));
                    continue;
                }
            };
            if !target.is_empty() {
                target.push(String::new());
            }
            target.extend(body.iter().map(|l| l.to_string()));
        }
        sorted
    }
}

/// Render the man page of `cmd` (built, so that its help flags and global options are there).
pub fn render(cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let after = AfterHelp::of(&cmd);
    let man = clap_mangen::Man::new(cmd.clone());
    // Every section clap_mangen renders starts with roff's preamble; it is wanted once.
    let mut title = Vec::new();
    man.render_title(&mut title)?;
    let th = title
        .windows(4)
        .position(|w| w == b".TH ")
        .unwrap_or_default();
    let preamble = title[..th].to_vec();
    out.write_all(&title)?;
    let mut section = |render: &dyn Fn(&mut dyn Write) -> io::Result<()>| -> io::Result<()> {
        let mut buf = Vec::new();
        render(&mut buf)?;
        out.write_all(buf.strip_prefix(preamble.as_slice()).unwrap_or(&buf))
    };
    section(&|w| man.render_name_section(w))?;
    section(&|w| w.write_all(synopsis(&cmd).as_bytes()))?;
    section(&|w| man.render_description_section(w))?;
    section(&|w| {
        for paragraph in &after.prose {
            writeln!(w, ".PP\n{}", escape_line(paragraph))?;
        }
        Ok(())
    })?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        section(&|w| man.render_options_section(w))?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        section(&|w| man.render_subcommands_section(w))?;
    }
    for (name, lines) in [
        ("EXIT STATUS", &after.exit_status),
        ("EXAMPLES", &after.examples),
    ] {
        if !lines.is_empty() {
            section(&|w| preformatted(w, name, lines))?;
        }
    }
    if cmd.get_version().is_some() {
        section(&|w| man.render_version_section(w))?;
    }
    Ok(())
}

/// `.SH NAME` and `lines` as they are, without filling.
fn preformatted(w: &mut dyn Write, name: &str, lines: &[String]) -> io::Result<()> {
    writeln!(w, ".SH \"{name}\"\n.nf")?;
    for line in lines {
        writeln!(w, "{}", escape_line(line))?;
    }
    writeln!(w, ".fi")
}

/// The SYNOPSIS section: the command in bold, then every option with its value in italics
/// (`[--source INPUT]`, `[-j|--jobs N]`), then the positional arguments and the subcommand.
fn synopsis(cmd: &clap::Command) -> String {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let mut words = vec![bold(name)];
    for arg in cmd
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_hide_set())
    {
        let mut flag = match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => format!(
                "{}|{}",
                bold(&format!("-{short}")),
                bold(&format!("--{long}"))
            ),
            (Some(short), None) => bold(&format!("-{short}")),
            (None, Some(long)) => bold(&format!("--{long}")),
            (None, None) => continue,
        };
        if arg.get_action().takes_values() {
            flag = format!("{flag} {}", italic(&value_name(arg)));
        }
        let repeats = matches!(
            arg.get_action(),
            clap::ArgAction::Count | clap::ArgAction::Append
        );
        words.push(optional(arg.is_required_set(), flag, repeats));
    }
    for arg in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        words.push(optional(
            arg.is_required_set(),
            italic(&value_name(arg)),
            false,
        ));
    }
    if cmd.has_subcommands() {
        let value = cmd.get_subcommand_value_name().unwrap_or("COMMAND");
        words.push(optional(
            cmd.is_subcommand_required_set(),
            italic(value),
            false,
        ));
    }
    format!(".SH SYNOPSIS\n{}\n", words.join(" "))
}

/// An argument's value as the help shows it: its value name, else its id in capitals.
fn value_name(arg: &clap::Arg) -> String {
    match arg.get_value_names() {
        Some(names) if !names.is_empty() => names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => arg.get_id().as_str().to_uppercase(),
    }
}

/// `word` as required (alone) or optional (`[word]`), with `...` when it may be repeated.
fn optional(required: bool, word: String, repeats: bool) -> String {
    let dots = if repeats { "..." } else { "" };
    if required {
        format!("{word}{dots}")
    } else {
        format!("[{word}]{dots}")
    }
}

fn bold(text: &str) -> String {
    format!("\\fB{}\\fR", escape(text))
}

fn italic(text: &str) -> String {
    format!("\\fI{}\\fR", escape(text))
}

/// Text as roff shows it literally: backslashes, dashes and apostrophes escaped.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e")
        .replace('-', "\\-")
        .replace('\'', "\\*(Aq")
}

/// A text line that roff does not take for a request, whatever it starts with.
fn escape_line(text: &str) -> String {
    let escaped = escape(text);
    if escaped.starts_with(['.', '\\']) && !escaped.starts_with("\\-") || escaped.starts_with('\'')
    {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
