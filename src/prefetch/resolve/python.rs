//! A Python program's imports, found offline: when the entrypoint's interpreter is CPython, the
//! modules it imports at startup (the `encodings` package, `sitecustomize`) and those its script
//! (or `-c` code, or `-m` module) imports, followed through each imported module's own imports
//! in the order they run, each found on the interpreter's default `sys.path` as CPython finds
//! it: a package's `__init__.py`, a module's `.py` (with its cached `.pyc`), an extension's `.so`
//! (whose shared libraries then join the ELF closure).
//!
//! Imports are read from the source text: statements at module level, and those inside
//! module-level `try`/`except`/`if`/`else` blocks (the usual optional imports); imports inside
//! functions and classes run later, if at all, and are left out. Bounded in modules, bytes read
//! and nesting: a hostile image gets a shorter list, never a loop.

use super::Resolver;
use crate::common::error::Result;
use crate::prefetch::Node;

/// Modules followed in one run.
const MAX_MODULES: usize = 2000;
/// Bytes of one source file read.
const MAX_SOURCE: u64 = 1 << 20;
/// Imports running inside imports, deepest.
const MAX_DEPTH: usize = 64;

/// Modules CPython imports before the program's own code (3.11+ freezes the rest).
const STARTUP_MODULES: [&str; 5] = [
    "encodings",
    "encodings.aliases",
    "encodings.utf_8",
    "sitecustomize",
    "usercustomize",
];

/// The interpreter's version (`3.11`) if `path` names a CPython interpreter (`python3.11`).
pub(super) fn python_version(path: &[u8]) -> Option<String> {
    let name = path.rsplit(|&b| b == b'/').next()?;
    let version = std::str::from_utf8(name.strip_prefix(b"python")?).ok()?;
    let (major, minor) = version.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then(|| version.to_string())
}

/// What the interpreter is asked to run.
pub(super) enum Main {
    Script(Vec<u8>),
    Code(Vec<u8>),
    Module(String),
    Nothing,
}

/// The interpreter's arguments: the first of `-c CODE`, `-m MODULE` or a script path.
pub(super) fn main_of(args: &[&String]) -> Main {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" => {
                return args
                    .next()
                    .map_or(Main::Nothing, |c| Main::Code(c.as_bytes().into()));
            }
            "-m" => {
                return args
                    .next()
                    .map_or(Main::Nothing, |m| Main::Module(m.to_string()));
            }
            a if a.starts_with("-c") => return Main::Code(a.as_bytes()[2..].into()),
            a if a.starts_with("-m") => return Main::Module(a[2..].to_string()),
            // Options taking a value.
            "-W" | "-X" => {
                args.next();
            }
            a if a.starts_with('-') => {}
            a => return Main::Script(a.as_bytes().into()),
        }
    }
    Main::Nothing
}

/// One module found: the files it is (listed in this order) and its source, if any.
struct Found {
    files: Vec<Vec<u8>>,
    source: Option<Vec<u8>>,
    /// The package relative imports in it start from.
    package: String,
}

/// A source file whose imports are being followed.
struct Frame {
    imports: Vec<String>,
    next: usize,
}

impl Resolver<'_> {
    /// The imports of a Python program run by `interpreter` (version `version`) with `main`.
    pub(super) fn python(&mut self, interpreter: &[u8], version: &str, main: Main) -> Result<()> {
        let prefix = interpreter_prefix(interpreter);
        let mut path = self.python_path(&prefix, version);
        let mut imports: Vec<String> = STARTUP_MODULES.iter().map(|m| m.to_string()).collect();
        match main {
            Main::Script(script) => {
                let cwd = self.cwd.clone();
                if let Some((file, _)) = self.regular(&cwd, &script) {
                    // The script's directory is sys.path[0].
                    let dir = parent(&file);
                    path.insert(0, dir);
                    imports.extend(imports_of(&self.source(&file)?, ""));
                }
            }
            Main::Code(code) => {
                path.insert(0, self.cwd.clone());
                imports.extend(imports_of(&code, ""));
            }
            Main::Module(module) => imports.push(module),
            Main::Nothing => {}
        }
        self.follow_imports(&path, imports)
    }

    /// Depth first, in the order imports run: a module's own imports before the next import of
    /// the module that imported it.
    fn follow_imports(&mut self, path: &[Vec<u8>], first: Vec<String>) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![Frame {
            imports: with_parents(first),
            next: 0,
        }];
        while let Some(frame) = stack.last_mut() {
            let Some(module) = frame.imports.get(frame.next).cloned() else {
                stack.pop();
                continue;
            };
            frame.next += 1;
            if !seen.insert(module.clone()) {
                continue;
            }
            if seen.len() > MAX_MODULES {
                self.stop(format!("stopped after {MAX_MODULES} Python modules"));
                return Ok(());
            }
            let Some(found) = self.find_module(path, &module) else {
                continue;
            };
            for file in found.files {
                self.push(file);
            }
            if let Some(source) = found.source
                && stack.len() < MAX_DEPTH
            {
                let text = self.source(&source)?;
                stack.push(Frame {
                    imports: with_parents(imports_of(&text, &found.package)),
                    next: 0,
                });
            }
        }
        Ok(())
    }

    /// sys.path as CPython builds it by default for an interpreter under `prefix`, with
    /// PYTHONPATH first; only the directories the image has.
    fn python_path(&mut self, prefix: &[u8], version: &str) -> Vec<Vec<u8>> {
        let mut dirs: Vec<Vec<u8>> = self.python_env_path.clone();
        let lib = [prefix, b"/lib/python", version.as_bytes()].concat();
        for dir in [
            lib.clone(),
            [lib.as_slice(), b"/lib-dynload"].concat(),
            [
                b"/usr/local/lib/python",
                version.as_bytes(),
                b"/dist-packages",
            ]
            .concat(),
            b"/usr/lib/python3/dist-packages".to_vec(),
            [lib.as_slice(), b"/site-packages"].concat(),
        ] {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        let files = self.files;
        dirs.into_iter()
            .filter_map(|d| self.resolve(b"/", &d).map(|(r, _)| r))
            .filter(|d| matches!(files.node(d), Some(Node::Dir)))
            .collect()
    }

    /// The module `name` (dotted), its parent packages already imported.
    fn find_module(&mut self, path: &[Vec<u8>], name: &str) -> Option<Found> {
        let mut parts = name.split('.');
        let top = parts.next()?;
        let mut found = path.iter().find_map(|dir| self.module_in(dir, top, ""))?;
        for part in parts {
            let dir = found
                .source
                .as_deref()
                .filter(|s| s.ends_with(b"/__init__.py"))?;
            let dir = parent(dir);
            let package = found.package.clone();
            found = self.module_in(&dir, part, &package)?;
        }
        Some(found)
    }

    /// The module `name` directly in `dir`: a package, a source file or an extension.
    fn module_in(&mut self, dir: &[u8], name: &str, package: &str) -> Option<Found> {
        let qualified = if package.is_empty() {
            name.to_string()
        } else {
            format!("{package}.{name}")
        };
        let name = name.as_bytes();
        let join = |parts: &[&[u8]]| parts.concat();
        let init = join(&[dir, b"/", name, b"/__init__.py"]);
        if self.is_file(&init) {
            let pkg = join(&[dir, b"/", name]);
            return Some(Found {
                files: self.with_cache(&pkg, b"__init__"),
                source: Some(init),
                package: qualified,
            });
        }
        let source = join(&[dir, b"/", name, b".py"]);
        if self.is_file(&source) {
            return Some(Found {
                files: self.with_cache(dir, name),
                source: Some(source),
                package: package.to_string(),
            });
        }
        let prefix = join(&[name, b"."]);
        let extension = self
            .files
            .children(dir)
            .into_iter()
            .find(|c| c.starts_with(&prefix) && c.ends_with(b".so"))?;
        let path = join(&[dir, b"/", &extension]);
        let (path, _) = self.regular(b"/", &path)?;
        if let Some(elf) = self.parse(&path) {
            self.enqueue(path.clone(), elf, Vec::new());
        }
        Some(Found {
            files: vec![path],
            source: None,
            package: package.to_string(),
        })
    }

    /// A module's cached bytecode (which CPython reads first) and its source, as they exist.
    fn with_cache(&mut self, dir: &[u8], stem: &[u8]) -> Vec<Vec<u8>> {
        let cache = [dir, b"/__pycache__"].concat();
        let prefix = [stem, b".cpython-"].concat();
        let mut files: Vec<Vec<u8>> = self
            .files
            .children(&cache)
            .into_iter()
            .filter(|c| c.starts_with(&prefix) && c.ends_with(b".pyc"))
            .map(|c| [cache.as_slice(), b"/", &c].concat())
            .collect();
        files.push([dir, b"/", stem, b".py"].concat());
        files
            .into_iter()
            .filter_map(|f| self.regular(b"/", &f).map(|(r, _)| r))
            .collect()
    }

    fn is_file(&mut self, path: &[u8]) -> bool {
        self.regular(b"/", path).is_some()
    }

    /// A source file's text, at most [`MAX_SOURCE`] bytes.
    fn source(&mut self, path: &[u8]) -> Result<Vec<u8>> {
        match self.regular(b"/", path) {
            Some((resolved, _)) => self.head(&resolved, MAX_SOURCE),
            None => Ok(Vec::new()),
        }
    }
}

/// Each import preceded by its parent packages, which run first: `a.b.c` is `a`, `a.b`, `a.b.c`.
fn with_parents(imports: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for name in imports {
        let mut at = 0;
        while let Some(dot) = name[at..].find('.') {
            out.push(name[..at + dot].to_string());
            at += dot + 1;
        }
        out.push(name);
    }
    out
}

/// The directory above an interpreter's `bin`: `/usr` for `/usr/bin/python3.11`.
fn interpreter_prefix(interpreter: &[u8]) -> Vec<u8> {
    parent(&parent(interpreter))
}

fn parent(path: &[u8]) -> Vec<u8> {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) | None => b"/".to_vec(),
        Some(i) => path[..i].to_vec(),
    }
}

/// The modules a source text imports where they run at import time (see the module doc);
/// relative imports are made absolute from `package`.
fn imports_of(text: &[u8], package: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    // Whether the current module-level block runs at import (try/except/if/else/...).
    let mut block_runs = true;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indented = trimmed.len() != line.len();
        if !indented {
            let word = trimmed.split([' ', ':', '(']).next().unwrap_or("");
            block_runs = !matches!(word, "def" | "class" | "async" | "@");
        }
        if indented && !block_runs {
            continue;
        }
        // `from x import (a,\n b)`: the parenthesised names may continue on later lines.
        let mut statement = trimmed.to_string();
        if statement.starts_with("from ") && statement.contains('(') {
            while !statement.contains(')') {
                match lines.next() {
                    Some(more) if statement.len() < 4096 => statement.push_str(more),
                    _ => break,
                }
            }
        }
        out.extend(statement_imports(&statement, package));
    }
    out
}

/// The modules one `import` or `from ... import` statement names.
fn statement_imports(statement: &str, package: &str) -> Vec<String> {
    let statement = statement.split('#').next().unwrap_or("");
    let statement = statement.split(';').next().unwrap_or("");
    if let Some(rest) = statement.strip_prefix("import ") {
        return rest
            .split(',')
            .filter_map(|m| m.split_whitespace().next())
            .filter(|m| is_dotted_name(m))
            .map(str::to_string)
            .collect();
    }
    let Some(rest) = statement.strip_prefix("from ") else {
        return Vec::new();
    };
    let Some((module, names)) = rest.split_once(" import ") else {
        return Vec::new();
    };
    let module = module.trim();
    let dots = module.len() - module.trim_start_matches('.').len();
    let base = if dots == 0 {
        module.to_string()
    } else {
        let mut parts: Vec<&str> = package.split('.').filter(|p| !p.is_empty()).collect();
        for _ in 1..dots {
            parts.pop();
        }
        let mut base = parts.join(".");
        let tail = &module[dots..];
        if !tail.is_empty() {
            if !base.is_empty() {
                base.push('.');
            }
            base.push_str(tail);
        }
        base
    };
    if !base.is_empty() && !is_dotted_name(&base) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if !base.is_empty() {
        out.push(base.clone());
    }
    // `from pkg import name`: name may be a submodule; tried, and dropped if it is not one.
    for name in names.trim().trim_matches(['(', ')']).split(',') {
        let Some(name) = name.split_whitespace().next() else {
            continue;
        };
        if is_dotted_name(name) && !name.contains('.') {
            out.push(if base.is_empty() {
                name.to_string()
            } else {
                format!("{base}.{name}")
            });
        }
    }
    out
}

fn is_dotted_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.split('.').all(|p| {
            p.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_that_run_at_import_time() {
        let text = b"import os, sys as system\nfrom . import util\nfrom .x import (a,\n  b)\ntry:\n    import fast\nexcept ImportError:\n    import slow\ndef f():\n    import lazy\nclass C:\n    import never\nif True:\n    from json import dumps  # note\n";
        assert_eq!(
            imports_of(text, "pkg.sub"),
            [
                "os",
                "sys",
                "pkg.sub",
                "pkg.sub.util",
                "pkg.sub.x",
                "pkg.sub.x.a",
                "pkg.sub.x.b",
                "fast",
                "slow",
                "json",
                "json.dumps"
            ]
        );
        assert_eq!(
            statement_imports("from .. import up", "a.b.c"),
            ["a.b", "a.b.up"]
        );
        assert!(statement_imports("import 9bad", "").is_empty());
    }

    #[test]
    fn interpreter_names_and_arguments() {
        assert_eq!(
            python_version(b"/usr/bin/python3.11").as_deref(),
            Some("3.11")
        );
        assert_eq!(python_version(b"/usr/bin/python3"), None);
        assert_eq!(python_version(b"/usr/bin/pythonx.y"), None);
        let args = [
            "-u".to_string(),
            "-c".to_string(),
            "import json".to_string(),
        ];
        let args: Vec<&String> = args.iter().collect();
        assert!(matches!(main_of(&args), Main::Code(c) if c == b"import json"));
        let args = ["-W".to_string(), "ignore".to_string(), "app.py".to_string()];
        let args: Vec<&String> = args.iter().collect();
        assert!(matches!(main_of(&args), Main::Script(s) if s == b"app.py"));
    }
}
