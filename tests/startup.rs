//! A real program started from a converted image pulled lazily, the way nydus-snapshotter's FUSE
//! mode runs containers (issue 17): the image pushed to a local registry with skopeo, its merged
//! bootstrap mounted by nydusd's registry backend through a proxy that delays every request and
//! counts them, an overlayfs on top, and `runc run` of `python3 -c 'import json, sqlite3; …'`.
//!
//! The test asserts the program's output and that the start was lazy: blobs were read, but not
//! all of them. `startup_bench` (ignored; scripts/startup-bench.sh drives it) times the same
//! start for images converted in several ways and prints one JSON line per run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::proxy::{Proxy, Totals};
use common::registry::Registry;
use common::runc::{self, Process, Ran};
use common::{mounts, reference, run};

const NYDUS_BLOB: &str = "application/vnd.oci.image.layer.nydus.blob.v1";

/// A converted image: its layout, merged bootstrap, and what the program needs from it.
struct Converted {
    layout: PathBuf,
    bootstrap: PathBuf,
    /// Bytes of all the Nydus blob layers (what a full pull would fetch, bootstrap aside).
    blob_bytes: u64,
    /// The image config's `Env`.
    env: Vec<String>,
}

impl Converted {
    /// Read an already converted `layout` (tagged `latest`); the bootstrap goes to `bootstrap`.
    fn read(layout: &Path, bootstrap: &Path) -> Converted {
        reference::merged_bootstrap(layout, "latest", bootstrap);
        let image = reference::read_oci(layout, "latest");
        let blob_bytes = image.manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["mediaType"] == NYDUS_BLOB)
            .map(|l| l["size"].as_u64().unwrap())
            .sum();
        let env = image.config["config"]["Env"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_else(|| {
                vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]
            });
        Converted {
            layout: layout.to_path_buf(),
            bootstrap: bootstrap.to_path_buf(),
            blob_bytes,
            env,
        }
    }

    /// `nydus-offline convert INPUT scratch/NAME ARGS…`, read back.
    fn convert(input: &Path, scratch: &Path, name: &str, args: &[&str]) -> Converted {
        let layout = scratch.join(name);
        run(Command::new(env!("CARGO_BIN_EXE_nydus-offline"))
            .args(["convert", "--quiet"])
            .arg(input)
            .arg(&layout)
            .args(args));
        Converted::read(&layout, &scratch.join(format!("{name}.boot")))
    }

    fn process(&self, args: &[String]) -> Process {
        Process {
            args: args.to_vec(),
            env: self.env.clone(),
            cwd: "/".into(),
        }
    }
}

/// One container start and what it fetched.
struct Start {
    ran: Ran,
    /// From the start of nydusd's mount to the program's first output.
    to_output: Option<Duration>,
    /// Blob GETs that arrived before the first output (the critical path, prefetch included).
    blobs_to_output: Totals,
    /// Blob GETs until the program ended.
    blobs: Totals,
    /// Blob GETs with a `Range` header, until the program ended.
    ranged: u64,
    /// What nydusd logged, and every request, for failure messages.
    log: String,
}

/// Mount `image` (pushed as `repo`) with nydusd `version` through `proxy`, configured as the
/// snapshotter does with its prefetch on or off, put an overlay on it and run `process` there.
/// `name` must be new in `scratch`: nydusd's cache lives under it and would be warm otherwise.
#[allow(clippy::too_many_arguments)]
fn start(
    version: &str,
    image: &Converted,
    proxy: &Proxy,
    repo: &str,
    scratch: &Path,
    name: &str,
    prefetch: bool,
    process: &Process,
) -> Start {
    proxy.reset();
    let mount_started = Instant::now();
    let mnt = mounts::nydusd_registry_as_snapshotter(
        version,
        &image.bootstrap,
        &proxy.host,
        repo,
        scratch,
        name,
        prefetch,
    );
    let overlay = runc::Overlay::mount(&mnt.dir, scratch, name);
    let ran = runc::run_container(
        &overlay.dir,
        scratch,
        name,
        process,
        Duration::from_secs(300),
    );
    let requests = proxy.requests();
    let blobs = proxy.blob_gets();
    let ranged = requests
        .iter()
        .filter(|r| r.kind == common::proxy::Kind::Blob && r.method == "GET" && r.range.is_some())
        .count() as u64;
    let blobs_to_output = ran
        .first_output
        .map(|t| proxy.blob_gets_before(t))
        .unwrap_or(blobs);
    let log = format!(
        "nydusd {version} log:\n{}\nrequests:\n{}",
        mnt.log(),
        proxy.describe()
    );
    drop(overlay);
    drop(mnt);
    Start {
        to_output: ran.first_output.map(|t| t - mount_started),
        ran,
        blobs_to_output,
        blobs,
        ranged,
        log,
    }
}

fn python_import() -> Vec<String> {
    ["python3", "-c", "import json, sqlite3; print(\"ok\")"]
        .map(String::from)
        .to_vec()
}

#[test]
fn python_starts_from_a_lazily_pulled_image_with_both_nydusd() {
    let scratch = common::scratch();
    let scratch = scratch.path();
    let input = common::corpus("debian-python.oci");
    // The default prefetch table (`/`): with the snapshotter's prefetch on nydusd reads it all
    // in the background; with prefetch off only what the program reads is fetched.
    let image = Converted::convert(&input, scratch, "out", &[]);
    let registry = Registry::start();
    registry.push(&image.layout, "latest", "python");
    // Delay only adds latency; nothing here asserts time.
    let proxy = Proxy::start(&registry.host, Duration::from_millis(5));
    let process = image.process(&python_import());
    for version in mounts::NYDUSD {
        for prefetch in [false, true] {
            let name = format!("{version}-prefetch-{prefetch}");
            let s = start(
                version, &image, &proxy, "python", scratch, &name, prefetch, &process,
            );
            let what = format!("nydusd {version}, snapshotter prefetch {prefetch}");
            assert!(
                s.ran.status.success() && s.ran.stdout == "ok\n",
                "{what}: python did not print ok: {}\n{}",
                s.ran.describe(),
                s.log
            );
            eprintln!(
                "{what}: output after {:?}, blob GETs {} ({} bytes) by then, {} ({} bytes, {} ranged) in all, of {} blob bytes",
                s.to_output.unwrap(),
                s.blobs_to_output.requests,
                s.blobs_to_output.bytes,
                s.blobs.requests,
                s.blobs.bytes,
                s.ranged,
                image.blob_bytes
            );
            assert!(
                s.blobs.bytes > 0 && s.ranged > 0,
                "{what}: no ranged blob reads through the proxy: the files did not come lazily from the registry\n{}",
                s.log
            );
            if !prefetch {
                assert!(
                    s.blobs.bytes < image.blob_bytes,
                    "{what}: fetched {} of {} blob bytes: the start was not lazy\n{}",
                    s.blobs.bytes,
                    image.blob_bytes,
                    s.log
                );
            }
        }
    }
}

/// The startup measurement of issue 17, for scripts/startup-bench.sh. Environment:
/// - `STARTUP_BENCH_IMAGES`: `LABEL=LAYOUT` entries separated by `;`, converted layouts (tag
///   `latest`);
/// - `STARTUP_BENCH_ARGS`: the program, a JSON array (default the python import);
/// - `STARTUP_BENCH_EXPECT`: its expected standard output (default `ok\n`);
/// - `STARTUP_BENCH_DELAY_MS` (default 20), `STARTUP_BENCH_RUNS` (default 3),
///   `STARTUP_BENCH_NYDUSD` (versions, comma-separated; default both).
///
/// Prints one `STARTUP-BENCH {json}` line per run; asserts nothing about the figures.
#[test]
#[ignore = "a benchmark: run by scripts/startup-bench.sh"]
fn startup_bench() {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let images: Vec<(String, PathBuf)> = var("STARTUP_BENCH_IMAGES")
        .expect("set STARTUP_BENCH_IMAGES=LABEL=LAYOUT;…")
        .split(';')
        .map(|e| {
            let (label, path) = e.split_once('=').expect("LABEL=LAYOUT");
            (label.to_string(), PathBuf::from(path))
        })
        .collect();
    let args: Vec<String> = var("STARTUP_BENCH_ARGS")
        .map(|a| serde_json::from_str(&a).expect("STARTUP_BENCH_ARGS is a JSON array of strings"))
        .unwrap_or_else(python_import);
    let expect = var("STARTUP_BENCH_EXPECT").unwrap_or_else(|| "ok\n".into());
    let delay = var("STARTUP_BENCH_DELAY_MS").map_or(20, |v| v.parse().unwrap());
    let runs: usize = var("STARTUP_BENCH_RUNS").map_or(3, |v| v.parse().unwrap());
    let versions: Vec<String> = var("STARTUP_BENCH_NYDUSD")
        .map(|v| v.split(',').map(String::from).collect())
        .unwrap_or_else(|| mounts::NYDUSD.map(String::from).to_vec());

    let scratch = common::scratch();
    let scratch = scratch.path();
    let registry = Registry::start();
    let proxy = Proxy::start(&registry.host, Duration::from_millis(delay));
    let mut pushed = Vec::new();
    for (i, (label, layout)) in images.iter().enumerate() {
        let image = Converted::read(layout, &scratch.join(format!("image{i}.boot")));
        let repo = format!("image{i}");
        registry.push(&image.layout, "latest", &repo);
        pushed.push((label, repo, image));
    }
    // Rounds outermost and every configuration in turn within a round, so that drift in the
    // machine's load spreads over all of them.
    for round in 0..runs {
        for version in &versions {
            for (label, repo, image) in &pushed {
                for prefetch in [true, false] {
                    let name = format!("r{round}-{version}-{repo}-{prefetch}");
                    let s = start(
                        version,
                        image,
                        &proxy,
                        repo,
                        scratch,
                        &name,
                        prefetch,
                        &image.process(&args),
                    );
                    let line = serde_json::json!({
                        "image": label,
                        "nydusd": version,
                        "fs_prefetch": prefetch,
                        "round": round,
                        "delay_ms": delay,
                        "ok": s.ran.status.success() && s.ran.stdout == expect,
                        "to_output_ms": s.to_output.map(|d| d.as_secs_f64() * 1000.0),
                        "blob_requests_to_output": s.blobs_to_output.requests,
                        "blob_bytes_to_output": s.blobs_to_output.bytes,
                        "blob_requests": s.blobs.requests,
                        "blob_bytes": s.blobs.bytes,
                        "image_blob_bytes": image.blob_bytes,
                    });
                    println!("STARTUP-BENCH {line}");
                    if !(s.ran.status.success() && s.ran.stdout == expect) {
                        eprintln!("{label}: unexpected run: {}\n{}", s.ran.describe(), s.log);
                    }
                }
            }
        }
    }
}
