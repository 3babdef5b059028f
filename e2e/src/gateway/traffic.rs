//! Requests through Envoy: the tutorial's own `curl` command, and an open-loop load generator.
//!
//! The load ([`Load`]) sends requests at a fixed rate whatever the answers do: a scheduler thread
//! hands request `n` to a pool of client threads at `start + n / rate`, so a slow or failing
//! answer never delays the next request (a closed loop would send less exactly when the proxy
//! struggles, and hide it). Requests alternate both header variants (with and without
//! `traffic: test`) and, in pairs, a keep-alive connection per client thread or a new connection
//! per request. There are no client retries: a request that gets no answer is recorded as such.
//! Each request carries a unique `x-load-id: <n>` header, which every httpbin writes in its
//! access log (`super::httpbin`), so an answer can be checked against the process that served it.
//! Only 127.0.0.1; bounded in count and time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};

use crate::tools::run;

/// The header carrying each request's unique id (logged by every httpbin).
pub const ID_HEADER: &str = "x-load-id";

/// One answer (status 0: no HTTP answer at all, e.g. connection refused or a timeout).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The request's id (`x-load-id`); 0 for a request outside a [`Load`].
    pub id: u64,
    /// Sent with `traffic: test`.
    pub test: bool,
    /// Sent on a kept-alive connection (opened for an earlier request when possible).
    pub keep_alive: bool,
    /// When the schedule said to send it.
    pub scheduled: Instant,
    /// When it was sent (the connection, if a new one, was opened from here).
    pub sent: Instant,
    /// When the answer was complete.
    pub done: Instant,
    /// HTTP status.
    pub status: u16,
    /// The `app-version` header.
    pub app_version: Option<String>,
    /// For a non-2xx answer, the start of its body (Envoy's local replies say why, e.g.
    /// `no healthy upstream`); with status 0, the client's error.
    pub detail: String,
}

impl Answer {
    /// Why it failed, as counted per phase (`None` for a 2xx).
    pub fn cause(&self) -> Option<String> {
        if (200..300).contains(&self.status) {
            return None;
        }
        Some(match self.status {
            0 => format!("no answer ({})", self.detail),
            s if self.detail.is_empty() => format!("{s}"),
            s => format!("{s} {}", self.detail),
        })
    }
}

/// A client connection: kept between requests when `keep_alive`.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Conn { addr, stream: None }
    }

    /// Sends one request and reads its answer; on any error the connection is dropped (the next
    /// request opens a new one), and the request is not sent again.
    fn exchange(&mut self, head: &str, keep_alive: bool) -> Result<Reply> {
        let stream = match self.stream.take() {
            Some(s) if keep_alive => s,
            _ => {
                let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
                    .map_err(|e| anyhow!("connect: {}", e.kind()))?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.set_nodelay(true)?;
                s
            }
        };
        let mut stream = stream;
        let reply = read_reply(&mut stream, head)?;
        if keep_alive && !reply.close {
            self.stream = Some(stream);
        }
        Ok(reply)
    }
}

struct Reply {
    status: u16,
    app_version: Option<String>,
    body_start: String,
    close: bool,
}

fn read_reply(s: &mut TcpStream, head_out: &str) -> Result<Reply> {
    // One write: a request split over several small writes waits on delayed ACKs (Nagle).
    s.write_all(head_out.as_bytes())
        .map_err(|e| anyhow!("write: {}", e.kind()))?;
    // Read the head, then exactly the body (Content-Length or chunked): Envoy may keep the
    // socket open after the answer, so the end of the answer is not the end of the connection.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s
            .read(&mut chunk)
            .map_err(|e| anyhow!("read: {}", e.kind()))?;
        ensure!(n > 0, "closed before the answer");
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
    let length = header("content-length").and_then(|l| l.parse::<usize>().ok());
    let chunked = header("transfer-encoding").is_some_and(|t| t.contains("chunked"));
    let mut complete_read = true;
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
        let n = s
            .read(&mut chunk)
            .map_err(|e| anyhow!("read body: {}", e.kind()))?;
        if n == 0 {
            complete_read = false;
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body_start = if (200..300).contains(&status) {
        String::new()
    } else {
        let body = String::from_utf8_lossy(&buf[head_end..]);
        body.chars().take(40).collect::<String>().trim().to_string()
    };
    Ok(Reply {
        status,
        app_version: header("app-version"),
        body_start,
        close: !complete_read
            || header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")),
    })
}

fn request_head(host: &str, path: &str, test: bool, id: u64, keep_alive: bool) -> String {
    let extra = if test { "traffic: test\r\n" } else { "" };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: iter8-e2e\r\n{extra}{ID_HEADER}: {id}\r\nConnection: {connection}\r\n\r\n"
    )
}

fn send(conn: &mut Conn, host: &str, path: &str, job: Job) -> Answer {
    let sent = Instant::now();
    let head = request_head(host, path, job.test, job.id, job.keep_alive);
    let (status, app_version, detail) = match conn.exchange(&head, job.keep_alive) {
        Ok(r) => (r.status, r.app_version, r.body_start),
        Err(e) => (0, None, e.to_string()),
    };
    Answer {
        id: job.id,
        test: job.test,
        keep_alive: job.keep_alive,
        scheduled: job.scheduled,
        sent,
        done: Instant::now(),
        status,
        app_version,
        detail,
    }
}

/// `GET path` with `Host: host` (and `traffic: test` if `test`) to `addr`, on a new connection.
pub fn request(addr: SocketAddr, host: &str, path: &str, test: bool) -> Answer {
    let now = Instant::now();
    let job = Job {
        id: 0,
        test,
        keep_alive: false,
        scheduled: now,
    };
    send(&mut Conn::new(addr), host, path, job)
}

#[derive(Debug, Clone, Copy)]
struct Job {
    id: u64,
    test: bool,
    keep_alive: bool,
    scheduled: Instant,
}

/// How a [`Load`] runs.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Envoy's listener (127.0.0.1).
    pub addr: SocketAddr,
    /// `Host` header.
    pub host: String,
    /// Request path.
    pub path: String,
    /// Requests per second, all variants together.
    pub rate: f64,
    /// At most this many requests.
    pub max: usize,
    /// At most this long.
    pub limit: Duration,
    /// Client threads per connection kind (keep-alive, one per request).
    pub clients: usize,
}

/// The open-loop load: see the module doc.
#[derive(Debug)]
pub struct Load {
    /// What it runs.
    pub spec: LoadSpec,
    /// When the first request was scheduled.
    pub started: Instant,
    stop: Arc<AtomicBool>,
    scheduled: Arc<AtomicUsize>,
    scheduler: Option<JoinHandle<()>>,
    clients: Vec<JoinHandle<Vec<Answer>>>,
}

impl Load {
    /// Starts it. Request `n` (from 1) has id `n`, `traffic: test` when `n` is even, and goes
    /// on a keep-alive connection when `n % 4` is 0 or 1: a quarter of each combination.
    pub fn start(spec: LoadSpec) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let scheduled = Arc::new(AtomicUsize::new(0));
        let mut clients = Vec::new();
        let mut queues = Vec::new();
        for keep_alive in [true, false] {
            let (tx, rx) = channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..spec.clients.max(1) {
                let (rx, host, path, addr) =
                    (rx.clone(), spec.host.clone(), spec.path.clone(), spec.addr);
                clients.push(std::thread::spawn(move || {
                    client(&rx, addr, &host, &path, keep_alive)
                }));
            }
            queues.push(tx);
        }
        let started = Instant::now();
        let (flag, count, s) = (stop.clone(), scheduled.clone(), spec.clone());
        let scheduler = std::thread::spawn(move || {
            let period = Duration::from_secs_f64(1.0 / s.rate);
            let mut n: u64 = 0;
            while !flag.load(Ordering::SeqCst) && (n as usize) < s.max {
                let at = started + period.mul_f64(n as f64);
                if started.elapsed() >= s.limit {
                    break;
                }
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                n += 1;
                let job = Job {
                    id: n,
                    test: n.is_multiple_of(2),
                    keep_alive: n % 4 < 2,
                    scheduled: at,
                };
                let queue = &queues[usize::from(!job.keep_alive)];
                if queue.send(job).is_err() {
                    break;
                }
                count.store(n as usize, Ordering::SeqCst);
            }
            // Dropping the queues ends the clients once they have sent what was scheduled.
        });
        Load {
            spec,
            started,
            stop,
            scheduled,
            scheduler: Some(scheduler),
            clients,
        }
    }

    /// Requests scheduled so far.
    pub fn scheduled(&self) -> usize {
        self.scheduled.load(Ordering::SeqCst)
    }

    /// Waits (asynchronously) until `n` requests in all have been scheduled, or the load ended.
    pub async fn wait_scheduled(&self, n: usize) {
        while self.scheduled() < n && !self.finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn finished(&self) -> bool {
        self.scheduler.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops scheduling, waits for the answers in flight and returns every answer by id.
    pub fn stop(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.scheduler.take() {
            let _ = s.join();
        }
        let mut all: Vec<Answer> = std::mem::take(&mut self.clients)
            .into_iter()
            .filter_map(|t| t.join().ok())
            .flatten()
            .collect();
        all.sort_by_key(|a| a.id);
        all
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn client(
    rx: &Mutex<Receiver<Job>>,
    addr: SocketAddr,
    host: &str,
    path: &str,
    keep_alive: bool,
) -> Vec<Answer> {
    let mut conn = Conn::new(addr);
    let mut out = Vec::new();
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => break,
        };
        let Ok(job) = job else { break };
        debug_assert_eq!(job.keep_alive, keep_alive);
        out.push(send(&mut conn, host, path, job));
    }
    out
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
