//! The shape of the library: its top-level modules import one way only, down the pipeline.
//!
//! `lib.rs` lists the modules from the bottom (`common`, which imports nothing of ours) to the
//! top (the commands and the command line). This test reads every `crate::<module>` path in
//! `src/` (unit-test modules included: they live in the same files) and fails when a module
//! names one listed above it, which also rules out every import cycle. It reads the source as
//! text, so it needs no build of the graph and no tool beyond the test itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules, bottom first: each may import only those before it.
const LAYERS: &[&str] = &[
    "common",
    "ondisk",
    "source",
    "blob",
    "layer",
    "tree",
    "prefetch",
    "rafs",
    "output",
    "report",
    "cache",
    "progress",
    "inspect",
    "check",
    "unpack",
    "convert",
    "chunkdict",
    "cli",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/blob/writer.rs` -> `blob`), `None` for the crate
/// root files.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(name) => Some(name.to_string()),
        None => Some(first),
    }
}

/// The top-level modules a file's text names through `crate::`: plain paths (`crate::blob::x`)
/// and the first names of a group (`use crate::{blob::x, tree}`).
fn names_used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            for item in top_level_items(group) {
                out.insert(leading_name(item));
            }
        } else {
            out.insert(leading_name(rest));
        }
    }
    out
}

/// The name at the start of `s` (after spaces).
fn leading_name(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The comma-separated items of a `{...}` group whose opening brace was just consumed, nested
/// groups (`blob::{a, b}`) kept whole.
fn top_level_items(group: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// module -> (imported module -> files that import it).
fn import_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let Some(from) = module_of(file) else {
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(src()).unwrap().display().to_string();
        for to in names_used(&text) {
            if to != from && modules.contains(&to) {
                let edges = graph.entry(from.clone()).or_default();
                edges.entry(to).or_default().insert(rel.clone());
            }
        }
    }
    graph
}

#[test]
fn every_top_level_module_is_in_the_layer_list() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let listed: BTreeSet<String> = LAYERS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        modules, listed,
        "src/ and LAYERS disagree: add the new module to LAYERS (and to lib.rs's map) where it sits"
    );
}

#[test]
fn modules_import_only_modules_below_them() {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut upward = Vec::new();
    for (from, edges) in import_graph() {
        for (to, files) in edges {
            if let (Some(a), Some(b)) = (rank(&from), rank(&to))
                && b >= a
            {
                let files: Vec<_> = files.into_iter().collect();
                upward.push(format!("{from} -> {to} ({})", files.join(", ")));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports up the pipeline (each module may import only those listed before it in LAYERS):\n  {}",
        upward.join("\n  ")
    );
}

#[test]
fn common_imports_nothing_of_ours() {
    let graph = import_graph();
    let edges = graph.get("common").cloned().unwrap_or_default();
    assert!(edges.is_empty(), "common imports {edges:?}");
}

#[test]
fn the_reader_of_crate_paths_sees_groups_and_plain_paths() {
    let names = names_used("use crate::{blob::{x, y}, tree};\nlet a = crate::rafs::v6::f();");
    let expected: BTreeSet<String> = ["blob", "tree", "rafs"].map(String::from).into();
    assert_eq!(names, expected);
}
