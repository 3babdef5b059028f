//! Requests through Envoy: the tutorial's own `curl` command, and a bounded load from a thread
//! (a plain HTTP/1.1 client on a std `TcpStream`, one connection per request, no retries) that
//! records every answer: when it was sent and answered, its status and its `app-version`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::tools::run;

/// One answer (status 0: no HTTP answer at all, e.g. connection refused or a timeout).
#[derive(Debug, Clone)]
pub struct Answer {
    /// Sent with `traffic: test`.
    pub test: bool,
    /// When it was sent.
    pub sent: Instant,
    /// When the answer was complete.
    pub done: Instant,
    /// HTTP status.
    pub status: u16,
    /// The `app-version` header.
    pub app_version: Option<String>,
}

/// `GET path` with `Host: host` (and `traffic: test` if `test`) to `addr`.
pub fn request(addr: SocketAddr, host: &str, path: &str, test: bool) -> Answer {
    let sent = Instant::now();
    let (status, app_version) = exchange(addr, host, path, test).unwrap_or((0, None));
    Answer {
        test,
        sent,
        done: Instant::now(),
        status,
        app_version,
    }
}

fn exchange(addr: SocketAddr, host: &str, path: &str, test: bool) -> Result<(u16, Option<String>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    let extra = if test { "traffic: test\r\n" } else { "" };
    // One write: a request split over several small writes waits on delayed ACKs (Nagle).
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: iter8-e2e\r\n{extra}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())?;
    // Read the head, then exactly the body (Content-Length or chunked): Envoy may keep the
    // socket open for a while after the answer (its delayed close), so the end of the answer is
    // not the end of the connection.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "connection closed before the head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP answer"))?;
    let version = header("app-version");
    let length = header("content-length").and_then(|l| l.parse::<usize>().ok());
    let chunked = header("transfer-encoding").is_some_and(|t| t.contains("chunked"));
    loop {
        let body = &buf[head_end..];
        let complete = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, version))
}

/// A bounded load: one thread per variant (`true`: with `traffic: test`), each sending a
/// request every `interval` (or as soon as the previous one is answered, when slower), until
/// stopped, `max` requests in all or `limit` elapsed.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Answer>>>,
}

impl Load {
    /// Starts it.
    pub fn start(
        addr: SocketAddr,
        host: &str,
        path: &str,
        interval: Duration,
        variants: &[bool],
        max: usize,
        limit: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let per_thread = max / variants.len().max(1);
        let threads = variants
            .iter()
            .map(|&test| {
                let (host, path, flag) = (host.to_string(), path.to_string(), stop.clone());
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let mut out = Vec::new();
                    let mut next = Instant::now();
                    while !flag.load(Ordering::SeqCst)
                        && out.len() < per_thread
                        && started.elapsed() < limit
                    {
                        out.push(request(addr, &host, &path, test));
                        next += interval;
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else {
                            next = now;
                        }
                    }
                    out
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops it and returns every answer, in the order they were sent.
    pub fn stop(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all: Vec<Answer> = std::mem::take(&mut self.threads)
            .into_iter()
            .filter_map(|t| t.join().ok())
            .flatten()
            .collect();
        all.sort_by_key(|a| a.sent);
        all
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The tutorial's check, run as it is written:
/// `curl -s --connect-to HOST:80:127.0.0.1:PORT HOST [-H 'traffic: test'] -D -`.
#[derive(Debug, Clone)]
pub struct Curl {
    /// The command line as shown.
    pub command: String,
    /// The status line (`HTTP/1.1 200 OK`).
    pub status_line: String,
    /// The `app-version` header's value.
    pub app_version: Option<String>,
    /// What `| grep -e '^HTTP' -e app-version` shows.
    pub shown: Vec<String>,
}

/// Runs the tutorial's curl against the listener `addr`.
pub fn curl(addr: SocketAddr, host: &str, test: bool) -> Result<Curl> {
    let connect_to = format!("{host}:80:127.0.0.1:{}", addr.port());
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10", "--connect-to", &connect_to, host]);
    if test {
        cmd.args(["-H", "traffic: test"]);
    }
    cmd.args(["-D", "-"]);
    let out = run(&mut cmd, None)?;
    let shown: Vec<String> = out
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with("HTTP") || l.contains("app-version"))
        .map(str::to_string)
        .collect();
    let status_line = shown
        .iter()
        .find(|l| l.starts_with("HTTP"))
        .cloned()
        .unwrap_or_default();
    let app_version = shown
        .iter()
        .find_map(|l| l.strip_prefix("app-version: "))
        .map(str::to_string);
    Ok(Curl {
        command: format!(
            "curl -s --connect-to {connect_to} {host}{} -D - | grep -e '^HTTP' -e app-version",
            if test { " -H 'traffic: test'" } else { "" }
        ),
        status_line,
        app_version,
        shown,
    })
}
