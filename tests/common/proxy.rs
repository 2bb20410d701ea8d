//! A small HTTP/1.1 forwarding proxy in front of the local registry: it adds a fixed delay to
//! every request, so that round trips show as they would over a network, and records each request
//! (path kind, `Range`, status, response body bytes, when it came and when its body was done), so
//! a test can count what nydusd fetched.
//!
//! It speaks just enough HTTP/1.1 for nydusd's registry backend and the registry: keep-alive
//! connections (one upstream connection per client connection, reopened when the registry closes
//! it), request bodies with `Content-Length`, response bodies with `Content-Length`, chunked, or
//! up to the end of the connection. A redirect to another host (a registry whose storage serves
//! blobs from elsewhere) is followed by the proxy itself, so the client sees the final answer.
//! Stops accepting and closes every connection when dropped.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What a request asked for, by its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `/v2/REPO/blobs/DIGEST`: layer data (nydusd's chunk reads) and configs.
    Blob,
    /// `/v2/REPO/manifests/REF`.
    Manifest,
    /// Anything else (`/v2/`, token endpoints, uploads).
    Other,
}

impl Kind {
    fn of(path: &str) -> Kind {
        let path = path.split('?').next().unwrap_or(path);
        if path.starts_with("/v2/") && path.contains("/blobs/") && !path.contains("/blobs/uploads")
        {
            Kind::Blob
        } else if path.starts_with("/v2/") && path.contains("/manifests/") {
            Kind::Manifest
        } else {
            Kind::Other
        }
    }
}

/// One request the proxy forwarded.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub kind: Kind,
    /// The `Range` header, if any (`bytes=START-END`).
    pub range: Option<String>,
    /// The final status (after any redirect the proxy followed).
    pub status: u16,
    /// Response body bytes relayed to the client.
    pub body_bytes: u64,
    /// When the request's head arrived at the proxy.
    pub arrived: Instant,
    /// When its response was fully relayed.
    pub done: Instant,
}

/// Totals over some requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub bytes: u64,
}

/// The requests seen: those done, and those whose head has come but whose response is not fully
/// relayed yet (by arrival number), so that a reader can wait for the ones under way.
#[derive(Default)]
struct Log {
    done: Vec<Request>,
    next: u64,
    open: BTreeSet<u64>,
}

/// [`Log`] and the signal that one of its open requests finished.
#[derive(Default)]
struct Shared {
    log: Mutex<Log>,
    finished: Condvar,
}

impl Shared {
    /// A request's head arrived: its number.
    fn open(&self) -> u64 {
        let mut log = self.log.lock().unwrap();
        let n = log.next;
        log.next += 1;
        log.open.insert(n);
        n
    }

    /// Request `n` is over: recorded if it completed, dropped if the connection failed.
    fn close(&self, n: u64, request: Option<Request>) {
        let mut log = self.log.lock().unwrap();
        log.open.remove(&n);
        log.done.extend(request);
        self.finished.notify_all();
    }
}

/// Closes its request in [`Shared`] when dropped, whatever way `serve` leaves.
struct Open<'a> {
    shared: &'a Shared,
    n: u64,
    request: Option<Request>,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.shared.close(self.n, self.request.take());
    }
}

/// A running proxy; listens on `host` until dropped.
pub struct Proxy {
    /// `127.0.0.1:PORT`, to give clients instead of the registry's address.
    pub host: String,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listen on a free loopback port and forward to `upstream` (`HOST:PORT`), holding every
    /// request back by `delay` before forwarding it.
    pub fn start(upstream: &str, delay: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let host = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (shared, stop, conns) = (shared.clone(), stop.clone(), conns.clone());
            let upstream = upstream.to_string();
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    if let Ok(clone) = conn.try_clone() {
                        conns.lock().unwrap().push(clone);
                    }
                    let (shared, upstream) = (shared.clone(), upstream.clone());
                    thread::spawn(move || {
                        let _ = serve(conn, &upstream, delay, &shared);
                    });
                }
            })
        };
        Proxy {
            host,
            shared,
            stop,
            conns,
            acceptor: Some(acceptor),
        }
    }

    /// Every request that has arrived so far, in the order their responses completed: a client
    /// can have its response before the proxy has recorded it, so this first waits (up to 30 s)
    /// for the requests under way now to finish; requests that arrive meanwhile are not waited
    /// for.
    pub fn requests(&self) -> Vec<Request> {
        let mut log = self.shared.log.lock().unwrap();
        let upto = log.next;
        let deadline = Instant::now() + Duration::from_secs(30);
        while log.open.first().is_some_and(|&n| n < upto) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "proxy: requests still under way after 30 s"
            );
            log = self.shared.finished.wait_timeout(log, left).unwrap().0;
        }
        log.done.clone()
    }

    /// Forget the requests recorded so far (to count one run at a time).
    pub fn reset(&self) {
        self.shared.log.lock().unwrap().done.clear();
    }

    /// Blob GETs answered with data (2xx) so far: requests and body bytes.
    pub fn blob_gets(&self) -> Totals {
        blob_gets(&self.requests())
    }

    /// A one-line summary per request so far, for failure messages.
    pub fn describe(&self) -> String {
        describe(&self.requests())
    }
}

/// A one-line summary per request, for failure messages.
pub fn describe(requests: &[Request]) -> String {
    requests
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} range={} -> {} ({} bytes)\n",
                r.method,
                r.path,
                r.kind,
                r.range.as_deref().unwrap_or("-"),
                r.status,
                r.body_bytes
            )
        })
        .collect()
}

/// Whether `r` is a blob GET answered with data (2xx).
pub fn is_blob_get(r: &Request) -> bool {
    r.kind == Kind::Blob && r.method == "GET" && (200..300).contains(&r.status)
}

/// Blob GETs answered with data among `requests`: requests and body bytes.
pub fn blob_gets(requests: &[Request]) -> Totals {
    totals(requests, is_blob_get)
}

/// Blob GETs among `requests` that arrived before `t` (the critical path of a start measured up
/// to `t`).
pub fn blob_gets_before(requests: &[Request], t: Instant) -> Totals {
    totals(requests, |r| is_blob_get(r) && r.arrived < t)
}

fn totals(requests: &[Request], keep: impl Fn(&Request) -> bool) -> Totals {
    requests
        .iter()
        .filter(|r| keep(r))
        .fold(Totals::default(), |t, r| Totals {
            requests: t.requests + 1,
            bytes: t.bytes + r.body_bytes,
        })
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect(&self.host);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Close every client connection: their threads see the end and return.
        for conn in self.conns.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

/// A request or response head: the first line and the header lines, as read.
struct Head {
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.first);
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// Read one head; `None` at a clean end of the stream before any byte of it.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut first = String::new();
    // Tolerate empty lines between messages (RFC 9112 2.2).
    loop {
        first.clear();
        if r.read_line(&mut first)? == 0 {
            return Ok(None);
        }
        if !first.trim_end().is_empty() {
            break;
        }
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "end of stream inside a head",
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "header without ':'"))?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    Ok(Some(Head {
        first: first.trim_end().to_string(),
        headers,
    }))
}

/// How a response body is framed.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

fn response_framing(method: &str, status: u16, head: &Head) -> Framing {
    if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if head.has_token("Transfer-Encoding", "chunked") {
        Framing::Chunked
    } else if let Some(n) = head.header("Content-Length").and_then(|v| v.parse().ok()) {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    }
}

/// Copy a body of `framing` from `from` to `to` as it is framed; returns the payload bytes.
fn relay_body(from: &mut impl BufRead, to: &mut impl Write, framing: &Framing) -> io::Result<u64> {
    match framing {
        Framing::None => Ok(0),
        Framing::Length(n) => {
            let copied = io::copy(&mut from.take(*n), to)?;
            if copied != *n {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body shorter than its Content-Length",
                ));
            }
            Ok(copied)
        }
        Framing::UntilClose => io::copy(from, to),
        Framing::Chunked => {
            let mut payload = 0;
            loop {
                let mut size_line = String::new();
                if from.read_line(&mut size_line)? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                to.write_all(size_line.as_bytes())?;
                let hex = size_line.trim().split(';').next().unwrap_or("");
                let size = u64::from_str_radix(hex.trim(), 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        let mut line = String::new();
                        if from.read_line(&mut line)? == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        to.write_all(line.as_bytes())?;
                        if line.trim_end().is_empty() {
                            return Ok(payload);
                        }
                    }
                }
                // The chunk's data and its CRLF.
                let copied = io::copy(&mut from.take(size + 2), to)?;
                if copied != size + 2 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                payload += size;
            }
        }
    }
}

/// A connection to a server, buffered for reading.
struct Upstream {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Upstream {
    fn connect(host: &str) -> io::Result<Upstream> {
        let conn = TcpStream::connect(host)?;
        conn.set_nodelay(true)?;
        Ok(Upstream {
            reader: BufReader::new(conn.try_clone()?),
            writer: conn,
        })
    }

    /// Send a request (head and body bytes) and read the response head.
    fn exchange(&mut self, head: &[u8], body: &[u8]) -> io::Result<Head> {
        self.writer.write_all(head)?;
        self.writer.write_all(body)?;
        self.writer.flush()?;
        read_head(&mut self.reader)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed before answering",
            )
        })
    }
}

fn status_of(head: &Head) -> u16 {
    head.first
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Serve one client connection: request after request until it closes.
fn serve(
    client: TcpStream,
    upstream_host: &str,
    delay: Duration,
    shared: &Shared,
) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    let mut upstream: Option<Upstream> = None;
    loop {
        let Some(req) = read_head(&mut reader)? else {
            return Ok(());
        };
        let arrived = Instant::now();
        let mut open = Open {
            shared,
            n: shared.open(),
            request: None,
        };
        let mut parts = req.first.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        if req.has_token("Transfer-Encoding", "chunked") {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "chunked request bodies are not supported",
            ));
        }
        let mut body = Vec::new();
        if let Some(n) = req
            .header("Content-Length")
            .and_then(|v| v.parse::<u64>().ok())
        {
            (&mut reader).take(n).read_to_end(&mut body)?;
        }
        let client_closes = req.has_token("Connection", "close");
        // The simulated network: every request waits out one round trip before it goes on.
        thread::sleep(delay);

        // Forward; a kept-alive connection the server has closed meanwhile is reopened once
        // (the requests nydusd sends, GET and HEAD, are safe to send again).
        let head_bytes = req.bytes();
        let reused = match upstream.as_mut() {
            Some(up) => up.exchange(&head_bytes, &body).ok(),
            None => None,
        };
        let resp = match reused {
            Some(resp) => resp,
            None => upstream
                .insert(Upstream::connect(upstream_host)?)
                .exchange(&head_bytes, &body)?,
        };
        let mut status = status_of(&resp);
        let framing = response_framing(&method, status, &resp);
        let up = upstream.as_mut().unwrap();

        let redirect_to = match status {
            301 | 302 | 303 | 307 | 308 => resp
                .header("Location")
                .and_then(|l| l.strip_prefix("http://"))
                .map(|l| {
                    let (host, rest) = l.split_once('/').unwrap_or((l, ""));
                    (host.to_string(), format!("/{rest}"))
                })
                .filter(|(host, _)| host != upstream_host && !host.is_empty()),
            _ => None,
        };
        let (body_bytes, must_close) = if let Some((host, location)) = redirect_to {
            // Drain the redirect's own body, then fetch the target and relay that instead.
            relay_body(&mut up.reader, &mut io::sink(), &framing)?;
            if matches!(framing, Framing::UntilClose) || resp.has_token("Connection", "close") {
                upstream = None;
            }
            let (s, n, close) =
                follow(&host, &location, &method, req.header("Range"), &mut writer)?;
            status = s;
            (n, close)
        } else {
            writer.write_all(&resp.bytes())?;
            let n = relay_body(&mut up.reader, &mut writer, &framing)?;
            let until_close = matches!(framing, Framing::UntilClose);
            if until_close || resp.has_token("Connection", "close") {
                upstream = None;
            }
            (n, until_close)
        };
        writer.flush()?;
        open.request = Some(Request {
            kind: Kind::of(&path),
            method,
            path,
            range: req.header("Range").map(str::to_string),
            status,
            body_bytes,
            arrived,
            done: Instant::now(),
        });
        drop(open);
        if must_close || client_closes {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// Fetch `path` from `host` (one request, `Connection: close`) and relay the response to the
/// client: (status, body bytes, whether the client connection must close after it).
fn follow(
    host: &str,
    path: &str,
    method: &str,
    range: Option<&str>,
    client: &mut TcpStream,
) -> io::Result<(u16, u64, bool)> {
    let mut up = Upstream::connect(host)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(range) = range {
        head.push_str(&format!("Range: {range}\r\n"));
    }
    head.push_str("\r\n");
    let mut resp = up.exchange(head.as_bytes(), &[])?;
    let status = status_of(&resp);
    let framing = response_framing(method, status, &resp);
    // The client keeps its connection: our reply must not say close.
    resp.headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("Connection"));
    client.write_all(&resp.bytes())?;
    let n = relay_body(&mut up.reader, client, &framing)?;
    Ok((status, n, matches!(framing, Framing::UntilClose)))
}
