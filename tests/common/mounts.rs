//! Mounting a bootstrap with the real readers: nydusd over FUSE (localfs or registry backend) and
//! the kernel's EROFS driver. Each mount is a guard that unmounts (and stops nydusd) when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::tree::{self, ListOptions, Listing};
use super::{nydus_bin, run};

/// nydusd of each of `versions` over the blobs in `blob_dir` must show `expected` (umoci's
/// listing of the input); `what` names the output in a failure.
pub fn assert_localfs_shows(
    versions: &[&str],
    bootstrap: &Path,
    blob_dir: &Path,
    scratch: &Path,
    expected: &Listing,
    what: &str,
) {
    for version in versions {
        let mnt = nydusd_localfs(version, bootstrap, blob_dir, scratch, "localfs");
        let actual = tree::list(&mnt.dir, ListOptions::NYDUSD);
        tree::assert_same_nydusd(expected, &actual, &format!("nydusd {version} of {what}"));
    }
}

/// A mounted filesystem; unmounted when dropped.
pub struct Mounted {
    /// Where the tree is visible.
    pub dir: PathBuf,
    nydusd: Option<Child>,
    log: Option<PathBuf>,
}

impl Mounted {
    /// nydusd's log so far (empty for kernel mounts), for failure messages.
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A busy mount (a reader still holding a file) gets a few tries, then a lazy unmount, so a
        // failing test never leaves a mount behind.
        let mut unmounted = false;
        for _ in 0..20 {
            if !is_mounted(&self.dir) {
                unmounted = true;
                break;
            }
            let _ = Command::new("umount")
                .arg(&self.dir)
                .stderr(Stdio::null())
                .status();
            if !is_mounted(&self.dir) {
                unmounted = true;
                break;
            }
            sleep(Duration::from_millis(100));
        }
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        if let Some(mut child) = self.nydusd.take() {
            // nydusd exits by itself once its mount is gone; make sure of it.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `dir` is a mount point right now.
pub fn is_mounted(dir: &Path) -> bool {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let want = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4).map(unescape_mount) == Some(want.clone()))
}

fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Mount a v6 bootstrap with the kernel (`mount -t erofs -o loop,ro`) at `scratch/name`. Only
/// metadata is meaningful there: the data sits in external blobs the kernel is not given.
pub fn erofs(bootstrap: &Path, scratch: &Path, name: &str) -> Mounted {
    let dir = scratch.join(name);
    fs::create_dir_all(&dir).unwrap();
    run(Command::new("mount")
        .args(["-t", "erofs", "-o", "loop,ro"])
        .arg(bootstrap)
        .arg(&dir));
    Mounted {
        dir,
        nydusd: None,
        log: None,
    }
}

/// The nydusd releases every comparison runs with: 2.2.0 (crates.io, `$NYDUS_BIN_DIR`) and the
/// newest, 2.4.4 (built from source by scripts/install-readers.sh, `$NYDUS_NEW_BIN_DIR`).
pub const NYDUSD: [&str; 2] = ["2.2.0", "2.4.4"];

/// Where nydusd of `version` (one of [`NYDUSD`]) is.
pub fn nydusd_bin(version: &str) -> PathBuf {
    if version == NYDUSD[0] {
        return nydus_bin("nydusd");
    }
    let dir = std::env::var_os("NYDUS_NEW_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| format!("/var/cache/nydus-offline/nydus-{version}/bin").into());
    let path = dir.join("nydusd");
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-readers.sh (or set NYDUS_NEW_BIN_DIR)",
        path.display()
    );
    path
}

/// Mount a bootstrap with nydusd `version`, reading blobs named by their id from `blob_dir`.
pub fn nydusd_localfs(
    version: &str,
    bootstrap: &Path,
    blob_dir: &Path,
    scratch: &Path,
    name: &str,
) -> Mounted {
    localfs(version, bootstrap, blob_dir, scratch, name, false)
}

/// [`nydusd_localfs`] with the bootstrap's prefetch table used (`fs_prefetch` enabled, as the
/// snapshotter configures nydusd by default).
pub fn nydusd_localfs_prefetching(
    version: &str,
    bootstrap: &Path,
    blob_dir: &Path,
    scratch: &Path,
    name: &str,
) -> Mounted {
    localfs(version, bootstrap, blob_dir, scratch, name, true)
}

/// nydusd `version` over the blobs in `blob_dir`, the bootstrap's prefetch table used or not.
fn localfs(
    version: &str,
    bootstrap: &Path,
    blob_dir: &Path,
    scratch: &Path,
    name: &str,
    prefetch: bool,
) -> Mounted {
    let backend = serde_json::json!({ "type": "localfs", "config": { "dir": blob_dir } });
    nydusd(
        version,
        bootstrap,
        backend,
        scratch,
        name,
        harness_tuning(prefetch),
    )
}

/// The read settings the other mounts use: `fs_prefetch` on or off, 4 threads, 128 KiB merging.
fn harness_tuning(prefetch: bool) -> serde_json::Value {
    serde_json::json!({
        "fs_prefetch": { "enable": prefetch, "threads_count": 4, "merging_size": 131072, "bandwidth_rate": 0 }
    })
}

/// The read settings of nydus-snapshotter's default nydusd configuration for FUSE
/// (misc/snapshotter/nydusd-config.fusedev.json): `amplify_io` 1 MiB and `fs_prefetch` enabled
/// with `prefetch_all`, 8 threads and 1 MiB merging; `prefetch: false` turns only prefetch off.
fn snapshotter_tuning(prefetch: bool) -> serde_json::Value {
    serde_json::json!({
        "amplify_io": 1048576,
        "fs_prefetch": {
            "enable": prefetch,
            "threads_count": 8,
            "merging_size": 1048576,
            "prefetch_all": true
        }
    })
}

/// Mount a bootstrap with nydusd `version`, fetching chunks lazily from a registry over plain
/// HTTP.
pub fn nydusd_registry(
    version: &str,
    bootstrap: &Path,
    host: &str,
    repo: &str,
    scratch: &Path,
    name: &str,
) -> Mounted {
    registry(
        version,
        bootstrap,
        host,
        repo,
        scratch,
        name,
        harness_tuning(false),
    )
}

/// [`nydusd_registry`] configured as nydus-snapshotter configures nydusd by default (see
/// [`snapshotter_tuning`]), with its prefetch (`fs_prefetch`, which reads the bootstrap's
/// prefetch table, or the whole image with `prefetch_all` and no table) on or off.
pub fn nydusd_registry_as_snapshotter(
    version: &str,
    bootstrap: &Path,
    host: &str,
    repo: &str,
    scratch: &Path,
    name: &str,
    prefetch: bool,
) -> Mounted {
    let tuning = snapshotter_tuning(prefetch);
    registry(version, bootstrap, host, repo, scratch, name, tuning)
}

/// nydusd `version` over a registry, with `tuning`'s top-level settings.
fn registry(
    version: &str,
    bootstrap: &Path,
    host: &str,
    repo: &str,
    scratch: &Path,
    name: &str,
    tuning: serde_json::Value,
) -> Mounted {
    let backend = serde_json::json!({
        "type": "registry",
        "config": {
            "scheme": "http",
            "host": host,
            "repo": repo,
            "skip_verify": true,
            "timeout": 10,
            "connect_timeout": 10,
            "retry_limit": 2
        }
    });
    nydusd(version, bootstrap, backend, scratch, name, tuning)
}

/// Start nydusd with a `blobcache` cache (v6 needs one) and `digest_validate: false` (v6 refuses
/// validation) and `tuning`'s settings (`fs_prefetch`, `amplify_io`) added, and wait until its
/// FUSE mount is there.
fn nydusd(
    version: &str,
    bootstrap: &Path,
    backend: serde_json::Value,
    scratch: &Path,
    name: &str,
    tuning: serde_json::Value,
) -> Mounted {
    try_nydusd(version, bootstrap, backend, scratch, name, tuning).unwrap_or_else(|e| panic!("{e}"))
}

/// nydusd `version` over the blobs in `blob_dir` must refuse `bootstrap`: it exits without
/// mounting. Returns its log, which says why.
pub fn nydusd_localfs_refuses(
    version: &str,
    bootstrap: &Path,
    blob_dir: &Path,
    scratch: &Path,
    name: &str,
) -> String {
    let backend = serde_json::json!({ "type": "localfs", "config": { "dir": blob_dir } });
    match try_nydusd(
        version,
        bootstrap,
        backend,
        scratch,
        name,
        harness_tuning(false),
    ) {
        Ok(mounted) => panic!(
            "nydusd {version} mounted {} at {}, expected a refusal",
            bootstrap.display(),
            mounted.dir.display()
        ),
        Err(log) => log,
    }
}

/// [`nydusd`], or why it did not mount (nydusd's exit status and log).
fn try_nydusd(
    version: &str,
    bootstrap: &Path,
    backend: serde_json::Value,
    scratch: &Path,
    name: &str,
    tuning: serde_json::Value,
) -> Result<Mounted, String> {
    let name = &format!("{name}-nydusd-{version}");
    let dir = scratch.join(name);
    let cache = scratch.join(format!("{name}.cache"));
    fs::create_dir_all(&dir).unwrap();
    fs::create_dir_all(&cache).unwrap();
    let mut config = serde_json::json!({
        "device": {
            "backend": backend,
            "cache": { "type": "blobcache", "config": { "work_dir": cache } }
        },
        "mode": "direct",
        "digest_validate": false,
        "enable_xattr": true,
        "iostats_files": false
    });
    for (key, value) in tuning.as_object().expect("tuning is an object") {
        config[key] = value.clone();
    }
    let config_path = scratch.join(format!("{name}.json"));
    fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let log = scratch.join(format!("{name}.log"));
    let child = Command::new(nydusd_bin(version))
        .arg("--config")
        .arg(&config_path)
        .arg("--bootstrap")
        .arg(bootstrap)
        .arg("--mountpoint")
        .arg(&dir)
        // The default asks for 1,000,000 open files, which these machines refuse.
        .args(["--rlimit-nofile", "0", "--log-level", "info", "--log-file"])
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nydusd");
    let mut mounted = Mounted {
        dir,
        nydusd: Some(child),
        log: Some(log),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if is_mounted(&mounted.dir) {
            return Ok(mounted);
        }
        if let Some(status) = mounted.nydusd.as_mut().unwrap().try_wait().unwrap() {
            return Err(format!(
                "nydusd exited ({status}) before mounting {}:\n{}",
                bootstrap.display(),
                mounted.log()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "nydusd did not mount {} within 30 s:\n{}",
                bootstrap.display(),
                mounted.log()
            ));
        }
        // Short: the startup measurements time from mount start to a program's output.
        sleep(Duration::from_millis(5));
    }
}
