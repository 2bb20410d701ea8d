//! A real program started from a converted image pulled lazily, the way nydus-snapshotter's FUSE
//! mode runs containers (issue 17): the image pushed to a local registry with skopeo, its merged
//! bootstrap mounted by nydusd's registry backend through a proxy that delays every request and
//! counts them, an overlayfs on top, and `runc run` of the image's command (`python3 /app/main.py`).
//!
//! The test asserts the program's output and that the start was lazy: blobs were read, but not
//! all of them. `startup_bench` (ignored; scripts/startup-bench.sh drives it) times the same
//! start for images converted in several ways and prints one JSON line per run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::proxy::{self, Proxy, Totals};
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
    /// From the start of nydusd's mount until it was mounted.
    mounted: Duration,
    /// From the start of nydusd's mount until `runc run` started (the overlay mounted).
    runc_started: Duration,
    /// Requests other than blob GETs (manifests, `/v2/`, HEADs).
    others: u64,
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
    let mounted = mount_started.elapsed();
    let overlay = runc::Overlay::mount(&mnt.dir, scratch, name);
    let ran = runc::run_container(
        &overlay.dir,
        scratch,
        name,
        process,
        Duration::from_secs(300),
    );
    let requests = proxy.requests();
    let blobs = proxy::blob_gets(&requests);
    let others = requests.len() as u64 - blobs.requests;
    let ranged = requests
        .iter()
        .filter(|r| proxy::is_blob_get(r) && r.range.is_some())
        .count() as u64;
    let blobs_to_output = ran
        .first_output
        .map(|t| proxy::blob_gets_before(&requests, t))
        .unwrap_or(blobs);
    let log = format!(
        "nydusd {version} log:\n{}\nrequests:\n{}",
        mnt.log(),
        proxy::describe(&requests)
    );
    drop(overlay);
    drop(mnt);
    Start {
        to_output: ran.first_output.map(|t| t - mount_started),
        mounted,
        runc_started: ran.started - mount_started,
        others,
        ran,
        blobs_to_output,
        blobs,
        ranged,
        log,
    }
}

/// The image's own command (its Cmd), and what it prints.
fn image_command() -> Vec<String> {
    ["/usr/bin/python3", "/app/main.py"]
        .map(String::from)
        .to_vec()
}
const IMAGE_OUTPUT: &str = "lines: 5000\npython: 3.11.2\n";

#[test]
fn python_starts_from_a_lazily_pulled_image_with_both_nydusd() {
    let scratch = common::scratch();
    let scratch = scratch.path();
    let input = common::corpus("debian-python.oci");
    // The default prefetch table (`/`): with the snapshotter's prefetch on nydusd reads it all
    // in the background; with prefetch off only what the program reads is fetched.
    let default = Converted::convert(&input, scratch, "out", &[]);
    // The hand-written startup list (strace of the command): its files first in the blobs, and
    // in the table.
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/startup/debian-python.list");
    let listed = Converted::convert(
        &input,
        scratch,
        "listed",
        &["--prefetch-patterns", list.to_str().unwrap()],
    );
    // The list derived from the entrypoint: python3, what it loads, /app/main.py and its imports.
    let derived = Converted::convert(&input, scratch, "derived", &["--prefetch-entrypoint"]);
    let registry = Registry::start();
    registry.push(&default.layout, "latest", "python");
    registry.push(&listed.layout, "latest", "python-listed");
    registry.push(&derived.layout, "latest", "python-derived");
    // Delay only adds latency; nothing here asserts time.
    let proxy = Proxy::start(&registry.host, Duration::from_millis(5));
    let process = default.process(&image_command());
    let runs = [
        ("python", &default, false),
        ("python", &default, true),
        ("python-listed", &listed, false),
        ("python-listed", &listed, true),
        ("python-derived", &derived, false),
        ("python-derived", &derived, true),
    ];
    let mut demand = Vec::new();
    for version in mounts::NYDUSD {
        for (repo, image, prefetch) in runs {
            let name = format!("{version}-{repo}-prefetch-{prefetch}");
            let s = start(
                version, image, &proxy, repo, scratch, &name, prefetch, &process,
            );
            let what = format!("{repo}: nydusd {version}, snapshotter prefetch {prefetch}");
            assert!(
                s.ran.status.success() && s.ran.stdout == IMAGE_OUTPUT,
                "{what}: python did not print {IMAGE_OUTPUT:?}: {}\n{}",
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
                demand.push((repo, s.blobs.requests));
            }
        }
        // Demand reads only (prefetch off): the startup files laid out together take fewer
        // requests than the same files scattered in tar order.
        let [(_, scattered), (_, listed), (_, derived)] = demand[..] else {
            unreachable!("three runs without prefetch")
        };
        assert!(
            listed < scattered && derived < scattered,
            "nydusd {version}: {listed} requests with the hand-written list's files first, \
             {derived} with the derived list's, {scattered} in tar order"
        );
        demand.clear();
    }
}

/// The same program from the image converted as RAFS v5 (issue 16): python runs over an
/// overlay on nydusd 2.2.0's and 2.4.4's registry mount, and only what it reads is fetched.
#[test]
fn python_starts_from_a_lazily_pulled_rafs_v5_image_with_both_nydusd() {
    let scratch = common::scratch();
    let scratch = scratch.path();
    let input = common::corpus("debian-python.oci");
    let v5 = Converted::convert(&input, scratch, "v5", &["--fs-version", "5"]);
    let registry = Registry::start();
    registry.push(&v5.layout, "latest", "python-v5");
    let proxy = Proxy::start(&registry.host, Duration::from_millis(5));
    let process = v5.process(&image_command());
    for version in mounts::NYDUSD {
        let name = format!("{version}-v5");
        let s = start(
            version,
            &v5,
            &proxy,
            "python-v5",
            scratch,
            &name,
            false,
            &process,
        );
        let what = format!("RAFS v5: nydusd {version}");
        assert!(
            s.ran.status.success() && s.ran.stdout == IMAGE_OUTPUT,
            "{what}: python did not print {IMAGE_OUTPUT:?}: {}\n{}",
            s.ran.describe(),
            s.log
        );
        assert!(
            s.ranged > 0 && s.blobs.bytes > 0 && s.blobs.bytes < v5.blob_bytes,
            "{what}: fetched {} of {} blob bytes in {} ranged reads: not a lazy start\n{}",
            s.blobs.bytes,
            v5.blob_bytes,
            s.ranged,
            s.log
        );
        eprintln!(
            "{what}: {} blob GETs, {} of {} blob bytes",
            s.blobs.requests, s.blobs.bytes, v5.blob_bytes
        );
    }
}

/// The startup measurement of issue 17, for scripts/startup-bench.sh. Environment:
/// - `STARTUP_BENCH_IMAGES`: `LABEL=LAYOUT` entries separated by `;`, converted layouts (tag
///   `latest`);
/// - `STARTUP_BENCH_ARGS`: the program, a JSON array (default the python import);
/// - `STARTUP_BENCH_EXPECT`: its expected standard output (default the image command's);
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
        .unwrap_or_else(image_command);
    let expect = var("STARTUP_BENCH_EXPECT").unwrap_or_else(|| IMAGE_OUTPUT.into());
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
                        "mounted_ms": s.mounted.as_secs_f64() * 1000.0,
                        "runc_started_ms": s.runc_started.as_secs_f64() * 1000.0,
                        "other_requests": s.others,
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

/// A minimal HTTP/1.1 client exchange on a kept-alive connection: send `request`, read the
/// status, headers and (Content-Length) body.
fn exchange(
    conn: &mut std::io::BufReader<std::net::TcpStream>,
    request: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{BufRead, Read, Write};
    conn.get_mut().write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (n, v) = line.split_once(':').unwrap();
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    if !request.starts_with("HEAD ") {
        conn.read_exact(&mut body).unwrap();
    }
    (status, headers, body)
}

#[test]
fn proxy_relays_kept_alive_range_requests_and_follows_redirects() {
    use common::proxy::Kind;
    let sample = common::sample_image();
    let registry = Registry::start();
    registry.push(&sample, "latest", "sample");
    let image = reference::read_oci(&sample, "latest");
    let digest = image.manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let layer = std::fs::read(&image.layers[0].1).unwrap();
    let blob = format!("/v2/sample/blobs/{digest}");

    // Three requests on one connection: a manifest, a byte range of a blob, a HEAD.
    let proxy = Proxy::start(&registry.host, Duration::ZERO);
    let mut conn = std::io::BufReader::new(std::net::TcpStream::connect(&proxy.host).unwrap());
    let host = &proxy.host;
    let (status, _, manifest) = exchange(
        &mut conn,
        &format!(
            "GET /v2/sample/manifests/latest HTTP/1.1\r\nHost: {host}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n"
        ),
    );
    assert_eq!(status, 200);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["layers"][0]["digest"], digest.as_str());
    let (status, _, part) = exchange(
        &mut conn,
        &format!("GET {blob} HTTP/1.1\r\nHost: {host}\r\nRange: bytes=0-99\r\n\r\n"),
    );
    assert_eq!((status, &part[..]), (206, &layer[..100]));
    let (status, headers, _) = exchange(
        &mut conn,
        &format!("HEAD {blob} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    );
    assert_eq!(status, 200);
    assert!(headers.contains(&("content-length".into(), layer.len().to_string())));
    let requests = proxy.requests();
    let seen: Vec<_> = requests
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.kind,
                r.range.as_deref(),
                r.status,
                r.body_bytes,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("GET", Kind::Manifest, None, 200, requests[0].body_bytes),
            ("GET", Kind::Blob, Some("bytes=0-99"), 206, 100),
            ("HEAD", Kind::Blob, None, 200, 0),
        ]
    );
    assert_eq!(
        proxy.blob_gets(),
        Totals {
            requests: 1,
            bytes: 100
        }
    );

    // An upstream that redirects every request to the registry: the proxy follows, the client
    // gets the data, and its connection stays usable.
    let redirector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redirector_host = redirector.local_addr().unwrap().to_string();
    let target = registry.host.clone();
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for conn in redirector.incoming() {
            let Ok(conn) = conn else { return };
            let target = target.clone();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut first = String::new();
                    if reader.read_line(&mut first).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line.trim_end().is_empty() {
                            break;
                        }
                    }
                    let path = first.split_whitespace().nth(1).unwrap().to_string();
                    let reply = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target}{path}\r\nContent-Length: 0\r\n\r\n"
                    );
                    if conn.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start(&redirector_host, Duration::ZERO);
    let mut conn = std::io::BufReader::new(std::net::TcpStream::connect(&proxy.host).unwrap());
    for (start, end) in [(10, 19), (1000, 1499)] {
        let (status, _, part) = exchange(
            &mut conn,
            &format!(
                "GET {blob} HTTP/1.1\r\nHost: {}\r\nRange: bytes={start}-{end}\r\n\r\n",
                proxy.host
            ),
        );
        assert_eq!((status, &part[..]), (206, &layer[start..=end]));
    }
    assert_eq!(
        proxy.blob_gets(),
        Totals {
            requests: 2,
            bytes: 510
        }
    );
}
