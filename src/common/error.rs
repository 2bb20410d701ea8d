//! The one error type of the program and the exit codes it maps to.
//!
//! Every failure a user can meet is an [`Error`] whose message names the file (or image, layer,
//! entry) and the problem. Its [`ErrorKind`] decides the process exit code, so that scripts can
//! tell "your image is bad" from "the disk is full" without parsing text.
//!
//! Warnings (an input accepted with a doubt the user should hear of) go through [`warn`], the
//! one place that prints them, so that a logging facade can take its place later.

use std::fmt;
use std::io;
use std::path::Path;

/// What class of failure this is; each class has its own exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The command line itself is wrong (bad option value, missing argument).
    Usage,
    /// The input image is malformed, unsupported or fails verification.
    BadInput,
    /// Reading the input or writing the output failed at the operating-system level.
    Io,
    /// The run was stopped by SIGINT or SIGTERM.
    Interrupted,
    /// A bug in this program: an invariant did not hold.
    Internal,
    /// `check` ran to the end and found problems in the image it checked.
    CheckFailed,
}

impl ErrorKind {
    /// The process exit code for this kind. Documented in README.md; keep them stable.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Usage => 2,
            ErrorKind::BadInput => 3,
            ErrorKind::Io => 4,
            ErrorKind::CheckFailed => 5,
            ErrorKind::Internal => 70,
            ErrorKind::Interrupted => 130,
        }
    }
}

/// A failure with a message meant for the user.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// The result type used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of the given kind with a complete, user-facing message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The input image is bad: `what` names the file or object, `problem` says what is wrong.
    pub fn bad_input(what: impl fmt::Display, problem: impl fmt::Display) -> Error {
        Error::new(ErrorKind::BadInput, format!("{what}: {problem}"))
    }

    /// An I/O failure on `path`.
    pub fn io(path: &Path, err: io::Error) -> Error {
        Error::new(ErrorKind::Io, format!("{}: {err}", path.display()))
    }

    /// A usage error (wrong option value and the like).
    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Usage, message)
    }

    /// A broken invariant inside this program.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }

    /// The class of this failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Prefix the message with more context, outermost first ("converting X: layer 2: ...").
    pub fn context(mut self, outer: impl fmt::Display) -> Error {
        self.message = format!("{outer}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Attach a path to an `io::Result`, turning it into our [`Error`].
pub trait IoContext<T> {
    /// Map an I/O error to [`ErrorKind::Io`] naming `path`.
    fn with_path(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn with_path(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// Print one line on stderr. A closed stderr (`2>&1 | head` once head is done) loses the line
/// and nothing else: `eprintln!` would panic and end the run.
pub fn say(line: impl fmt::Display) {
    use std::io::Write;
    let _ = writeln!(io::stderr(), "{line}");
}

/// Tell the user of something accepted with a doubt: one warning on stderr (through the `log`
/// facade, which `--quiet` silences).
pub fn warn(message: impl fmt::Display) {
    log::warn!("{message}");
}

/// Bytes from the input (a name, a path) as a message shows them: escaped, and cut in the middle
/// when long, so that a hostile name of megabytes cannot make a message of megabytes.
pub fn shown(bytes: &[u8]) -> String {
    /// Bytes kept from each end of a long name.
    const KEEP: usize = 256;
    if bytes.len() <= 3 * KEEP {
        return bytes.escape_ascii().to_string();
    }
    format!(
        "{}...({} bytes)...{}",
        bytes[..KEEP].escape_ascii(),
        bytes.len(),
        bytes[bytes.len() - KEEP..].escape_ascii()
    )
}

/// A string from the input (a media type, a tag, a platform) as a message shows it: control
/// characters escaped, so that a newline in it cannot split the message or forge another line,
/// and cut at 200 characters. Other characters, non-ASCII ones included, are shown as they are.
pub fn one_line(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == 200 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct() {
        let kinds = [
            ErrorKind::Usage,
            ErrorKind::BadInput,
            ErrorKind::Io,
            ErrorKind::Interrupted,
            ErrorKind::Internal,
            ErrorKind::CheckFailed,
        ];
        let mut codes: Vec<i32> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(!codes.contains(&0) && !codes.contains(&1));
    }

    #[test]
    fn context_prefixes_the_message() {
        let e = Error::bad_input("index.json", "not JSON").context("reading ./img");
        assert_eq!(e.to_string(), "reading ./img: index.json: not JSON");
        assert_eq!(e.kind(), ErrorKind::BadInput);
    }

    #[test]
    fn long_names_are_cut_in_messages() {
        assert_eq!(shown(b"a\xffb"), "a\\xffb");
        let long = [b'x'; 5000];
        let s = shown(&long);
        assert!(s.len() < 600 && s.contains("(5000 bytes)"), "{s}");
    }

    #[test]
    fn input_strings_stay_on_one_line() {
        assert_eq!(one_line("linux/amd64"), "linux/amd64");
        assert_eq!(one_line("a\nb\u{1b}[2J é"), "a\\nb\\u{1b}[2J é");
        let long = "x".repeat(500);
        assert_eq!(one_line(&long).chars().count(), 201);
    }
}
