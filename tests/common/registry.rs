//! A throw-away local registry (Debian's `docker-registry`) on 127.0.0.1, the path users take:
//! `skopeo copy oci:OUT docker://…` and nydusd's `registry` backend pulling chunks lazily.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::run;

/// A running registry; stopped and its storage removed when dropped.
pub struct Registry {
    /// `127.0.0.1:PORT`
    pub host: String,
    child: Child,
    _storage: tempfile::TempDir,
}

impl Registry {
    /// Start a registry on a free loopback port and wait until it answers `/v2/`.
    pub fn start() -> Registry {
        let storage = super::scratch();
        // Ask the kernel for a free port, then hand it to the registry. Another process could take
        // it in between; on a test machine that race is not worth more machinery.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            storage.path().join("data").display()
        );
        let config_path = storage.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(storage.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry (scripts/install-readers.sh installs it)");
        let mut registry = Registry {
            host,
            child,
            _storage: storage,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !registry.answers() {
            if let Some(status) = registry.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}): {}", registry.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                registry.log()
            );
            sleep(Duration::from_millis(100));
        }
        registry
    }

    fn log(&self) -> String {
        fs::read_to_string(self._storage.path().join("registry.log")).unwrap_or_default()
    }

    fn answers(&self) -> bool {
        let Ok(mut conn) = TcpStream::connect(&self.host) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host);
        if conn.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut reply = String::new();
        let _ = conn.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.") && reply.contains(" 200 ")
    }

    /// Push the image tagged `tag` in the OCI layout `layout` as `repo:tag`, with skopeo.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str) {
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.host)));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
