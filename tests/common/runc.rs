//! Running a program from a mounted image the way nydus-snapshotter's FUSE mode has containerd
//! do it: an overlayfs whose lower dir is nydusd's mount and whose upper and work dirs are the
//! container's own, and `runc run` on a bundle whose root is that overlay.
//!
//! The container gets its own mount, PID, IPC, UTS and network namespaces (the network one only
//! has a loopback device that is down: nothing here needs a network, and no CNI is involved).
//! Every step is a guard: the container is deleted (`runc delete -f`) and the overlay unmounted
//! when they drop, even when the test fails.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use super::mounts::is_mounted;
use super::run;

/// An overlayfs mount; unmounted when dropped.
pub struct Overlay {
    /// The merged tree.
    pub dir: PathBuf,
}

impl Overlay {
    /// Mount `lower` (read-only, e.g. nydusd's mount) under fresh upper and work dirs in
    /// `scratch`, at `scratch/NAME.merged`, as the snapshotter does for a container's rootfs.
    pub fn mount(lower: &Path, scratch: &Path, name: &str) -> Overlay {
        let upper = scratch.join(format!("{name}.upper"));
        let work = scratch.join(format!("{name}.work"));
        let dir = scratch.join(format!("{name}.merged"));
        for d in [&upper, &work, &dir] {
            fs::create_dir_all(d).unwrap();
        }
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            ))
            .arg(&dir));
        Overlay { dir }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        // A container that is still going away may hold it for a moment: a few tries, then a
        // lazy unmount, so that nydusd's mount below can go too.
        for _ in 0..20 {
            if !is_mounted(&self.dir) {
                return;
            }
            let _ = Command::new("umount")
                .arg(&self.dir)
                .stderr(Stdio::null())
                .status();
            if !is_mounted(&self.dir) {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// The process to run in the container.
#[derive(Clone, Debug)]
pub struct Process {
    pub args: Vec<String>,
    /// `NAME=VALUE` entries (the image config's `Env`, typically).
    pub env: Vec<String>,
    pub cwd: String,
}

/// What a container run gave.
#[derive(Debug)]
pub struct Ran {
    /// `runc run`'s exit status: the program's own.
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// When `runc run` was started.
    pub started: Instant,
    /// When the first byte of the program's standard output arrived, if any did.
    pub first_output: Option<Instant>,
}

impl Ran {
    /// A description for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "status {}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A created container; deleted (`runc delete -f`, which also kills it) when dropped.
struct Container {
    state: PathBuf,
    id: String,
}

impl Container {
    fn runc(&self) -> Command {
        let mut cmd = Command::new("runc");
        cmd.arg("--root").arg(&self.state);
        cmd
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self
            .runc()
            .args(["delete", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `runc`, installed by scripts/install-readers.sh.
fn runc_installed() {
    let ok = Command::new("runc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "runc is missing: run scripts/install-readers.sh");
}

/// The OCI runtime configuration of a bundle whose root is `rootfs` (writable).
fn config(rootfs: &Path, process: &Process) -> serde_json::Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": process.args,
            "env": process.env,
            "cwd": process.cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": rootfs, "readonly": false },
        "hostname": "startup",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "nodev", "mode=1777"] }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" },
                { "type": "mount" }, { "type": "network" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// Run `process` in a container whose root is `rootfs` (an [`Overlay`]'s dir), with its bundle
/// and runc's state under `scratch`, and wait for it to end; a run longer than `timeout` is
/// killed and reported as a panic.
pub fn run_container(
    rootfs: &Path,
    scratch: &Path,
    name: &str,
    process: &Process,
    timeout: Duration,
) -> Ran {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    runc_installed();
    let bundle = scratch.join(format!("{name}.bundle"));
    let state = scratch.join(format!("{name}.runc"));
    fs::create_dir_all(&bundle).unwrap();
    fs::create_dir_all(&state).unwrap();
    let rootfs = fs::canonicalize(rootfs).unwrap();
    fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config(&rootfs, process)).unwrap(),
    )
    .unwrap();
    let id = format!(
        "nydus-offline-{}-{}-{name}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::SeqCst)
    );
    let container = Container { state, id };

    let started = Instant::now();
    let mut child = container
        .runc()
        .arg("run")
        .arg("--bundle")
        .arg(&bundle)
        .arg(&container.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start runc run");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = thread::spawn(move || {
        let mut out = Vec::new();
        let mut first = None;
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    first.get_or_insert_with(Instant::now);
                    out.extend_from_slice(&buf[..n]);
                }
            }
        }
        (out, first)
    });
    let err_reader = thread::spawn(move || {
        let mut err = Vec::new();
        let _ = stderr.read_to_end(&mut err);
        err
    });
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        status
    });
    if rx.recv_timeout(timeout).is_err() {
        let _ = container
            .runc()
            .args(["kill", &container.id, "KILL"])
            .status();
        let _ = waiter.join();
        let (out, _) = out_reader.join().unwrap();
        let err = err_reader.join().unwrap();
        panic!(
            "{process:?} did not end within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        );
    }
    let status = waiter.join().unwrap().expect("wait for runc run");
    let (out, first_output) = out_reader.join().unwrap();
    let err = err_reader.join().unwrap();
    drop(container);
    Ran {
        status,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        started,
        first_output,
    }
}
