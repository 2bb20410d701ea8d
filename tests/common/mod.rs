//! The test harness: helpers the integration tests share to judge our output with the real
//! readers (nydusd, the kernel's EROFS driver, nydus-image) against an independent unpacker
//! (umoci).
//!
//! Everything that mounts, starts a process or creates a directory returns a guard whose `Drop`
//! undoes it, so a failing test still unmounts, stops nydusd and the registry, and removes its
//! temporary files. Declare the scratch `TempDir` before the guards that live inside it: locals
//! drop in reverse order, so mounts go first.
#![allow(dead_code)]

pub mod layers;
pub mod mounts;
pub mod proxy;
pub mod reference;
pub mod registry;
pub mod runc;
pub mod tree;
pub mod unpack;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run `nydus-offline ARGS` to its end, whatever the outcome (the test judges it).
pub fn nydus_offline(args: &[&dyn AsRef<OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nydus-offline"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().expect("start nydus-offline")
}

/// `nydus-offline check OUT --source INPUT`, which must find no problem: our own reading of
/// every blob and chunk, and every path compared with the source.
pub fn check_with_source(out: &Path, input: &Path) {
    run(Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
        .arg("check")
        .arg(out)
        .arg("--source")
        .arg(input));
}

/// Where the nydus 2.2.0 binaries are: `$NYDUS_BIN_DIR`, else the cache `scripts/install-readers.sh`
/// fills.
pub fn nydus_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("NYDUS_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/nydus-offline/nydus-2.2.0/bin"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-readers.sh (or set NYDUS_BIN_DIR)",
        path.display()
    );
    path
}

/// The sample image every test starts from (`testdata/make-sample.py`).
pub fn sample_image() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sample")
}

/// A fresh scratch directory, removed when dropped. Kept on disk with `KEEP_SCRATCH=1`.
pub fn scratch() -> tempfile::TempDir {
    let keep = std::env::var_os("KEEP_SCRATCH").is_some();
    let dir = tempfile::Builder::new()
        .prefix("nydus-offline-test-")
        .disable_cleanup(keep)
        .tempdir()
        .expect("create a scratch directory");
    if keep {
        eprintln!("scratch directory kept: {}", dir.path().display());
    }
    dir
}

/// Run a command to completion; panic with its full output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Hex sha256 of a file's bytes.
pub fn sha256_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex(&hasher.finalize())
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    nydus_offline::common::hex::hex(bytes)
}

/// A benchmark-corpus image built by `scripts/build-corpus.sh` (`NAME.oci`, `NAME.oci.tar`,
/// `NAME.docker.tar`, `NAME-zstd.oci`), under `$NYDUS_OFFLINE_CACHE/corpus`.
pub fn corpus(file: &str) -> PathBuf {
    let cache = std::env::var_os("NYDUS_OFFLINE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/nydus-offline"));
    let path = cache.join("corpus").join(file);
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-corpus.sh debian-minbase debian-python",
        path.display()
    );
    path
}

/// Whether process `pid` waits for a lock (a `->` line of `/proc/locks`). A run of `convert`
/// waits for its turn to commit under a lock on the output's directory: a test holding that
/// lock holds every run there, with all its work done, whatever the machine's speed.
pub fn waits_for_a_lock(pid: u32) -> bool {
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| l.contains("->") && l.split_whitespace().nth(5) == Some(&pid.to_string()))
}

/// Hold `dir` locked (the lock runs take their turn to commit under) while `f` runs.
pub fn holding_the_commit_lock<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
    let lock = std::fs::File::open(dir).unwrap();
    lock.lock().unwrap();
    let out = f();
    drop(lock);
    out
}

/// Wait until `child` waits for a lock; panic if it ends first.
pub fn until_waiting_for_a_lock(child: &mut std::process::Child) {
    while !waits_for_a_lock(child.id()) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it waited to commit"
        );
        std::thread::yield_now();
    }
}

/// Fail unless the two trees hold the same files with the same bytes (`diff -r`).
pub fn assert_same_files(a: &Path, b: &Path) {
    let diff = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{} and {} differ:\n{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&diff.stdout)
    );
}
