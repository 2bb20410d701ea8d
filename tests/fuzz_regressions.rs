//! Every input a fuzzer crashed the program with (`fuzz/regressions/TARGET/`), run again through
//! the same entry point as its fuzz target: each must now end in problems or an error, never a
//! panic. A crash found by `cargo fuzz run TARGET` is fixed, then its input copied here under a
//! name that says what it broke.

use std::fs;
use std::path::{Path, PathBuf};

use nydus_offline::source::{self, PlatformChoice, Selection};

/// The `source_json` target's roles beyond `index.json` (manifest, config, `manifest.json`).
#[path = "../fuzz/fuzz_targets/source_json_roles.rs"]
mod source_json_roles;

/// The `bootstrap` target's reads beyond `check` (inspect's and unpack's).
#[path = "../fuzz/fuzz_targets/bootstrap_reads.rs"]
mod bootstrap_reads;

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.file_name().is_some_and(|n| n != ".gitkeep"));
    out.sort();
    out
}

#[test]
fn bootstraps_that_crashed_check_are_problems_now() {
    for input in inputs("bootstrap") {
        let bytes = fs::read(&input).unwrap();
        bootstrap_reads::run(&bytes);
        let problems = nydus_offline::check::bootstrap_problems(bytes);
        assert!(
            !problems.is_empty(),
            "{}: no problem found",
            input.display()
        );
    }
}

#[test]
fn blobs_that_crashed_check_are_problems_now() {
    for input in inputs("blob") {
        let problems = nydus_offline::check::blob_problems(&input, &"0".repeat(64)).unwrap();
        assert!(
            !problems.is_empty(),
            "{}: no problem found",
            input.display()
        );
    }
}

#[test]
fn inputs_that_crashed_the_readers_are_errors_now() {
    let selection = Selection {
        image: None,
        platform: PlatformChoice::All,
    };
    let scratch = tempfile::tempdir().unwrap();
    for input in inputs("source_json") {
        let layout = scratch.path().join("layout");
        let _ = fs::remove_dir_all(&layout);
        fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        fs::write(
            layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        fs::copy(&input, layout.join("index.json")).unwrap();
        if let Ok(s) = source::open(&layout) {
            let _ = source::select(&*s, &selection);
        }
        source_json_roles::run(&fs::read(&input).unwrap());
    }
    for input in inputs("source_archive") {
        if let Ok(s) = source::open(&input) {
            let _ = source::select(&*s, &selection);
        }
    }
}
