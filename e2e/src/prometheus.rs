//! A real Prometheus for the guard's tests: Debian's `/usr/bin/prometheus` (2.42 on bookworm,
//! `bash scripts/install-tools.sh --prometheus`) as a child process of the test, with its own
//! configuration, TSDB and log in a directory of the test, on a free port of 127.0.0.1, stopped
//! by its pid (SIGTERM, SIGKILL after 10 s) and on drop, so none outlives a test.
//!
//! - [`Prometheus::start`] scrapes each [`ScrapeTarget`] every second (`scrape_interval`,
//!   `scrape_timeout` and `evaluation_interval` 1 s; no rules, no alerting, no remote write) and
//!   returns once `/-/ready` answers and every target's first scrape gave `up == 1`;
//! - [`Prometheus::query`] / [`Prometheus::query_at`]: instant queries (`GET /api/v1/query`,
//!   the request text made by `iter8_guard::query_request`), [`Prometheus::get`] for any path;
//! - [`Prometheus::wait_scraped_after`]: positive evidence that a scrape began after a given
//!   moment (its `up` sample's timestamp), instead of sleeping for "a scrape or two";
//! - [`Exposition`]: a tiny HTTP server in the test process on 127.0.0.1 serving a given text
//!   (the Prometheus text exposition format) at `/metrics`, replaceable while it runs: a scrape
//!   target for data planes that do not run here (Istio's, Linkerd's metrics).
//!
//! Plain HTTP/1.0 over `std::net::TcpStream` (no HTTP client crate), so answers are never
//! chunked and end with the connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};

use crate::tools::free_port;
use crate::wait::timeout;

/// Debian's Prometheus.
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// Every scrape and rule evaluation interval.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// One scrape job: one target.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    /// `job_name` (the `job` label of its series).
    pub job: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The path scraped, e.g. Envoy's admin `/stats/prometheus`.
    pub metrics_path: String,
}

impl ScrapeTarget {
    /// A job scraping `http://addr{metrics_path}`.
    pub fn new(job: &str, addr: SocketAddr, metrics_path: &str) -> Self {
        ScrapeTarget {
            job: job.into(),
            addr,
            metrics_path: metrics_path.into(),
        }
    }
}

/// A running Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    /// Its directory: `prometheus.yml`, `data/` (the TSDB), `prometheus.log`.
    pub dir: PathBuf,
    addr: SocketAddr,
    version: String,
    targets: Vec<ScrapeTarget>,
    child: Option<Child>,
}

/// Seconds since the Unix epoch (Prometheus' timestamps).
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The version of `/usr/bin/prometheus` (`2.42.0+ds`), or what to run when it is missing.
pub fn binary_version() -> Result<String> {
    ensure!(
        Path::new(PROMETHEUS_BIN).is_file(),
        "{PROMETHEUS_BIN} is missing: run: bash scripts/install-tools.sh --prometheus (Debian's prometheus package, as root)"
    );
    let out = Command::new(PROMETHEUS_BIN)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {PROMETHEUS_BIN} --version"))?;
    // "prometheus, version 2.42.0+ds (branch: ..., revision: ...)", on stdout or stderr.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("cannot read the version from {PROMETHEUS_BIN} --version: {text}"))
}

/// `GET path` over HTTP/1.0 (one connection per request): status and body.
pub fn http_get(addr: SocketAddr, path: &str, limit: Duration) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: iter8-e2e\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .with_context(|| format!("reading the answer of {addr}{path}"))?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP head in the answer of {addr}{path}"))?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP answer: {head:.80}"))?;
    Ok((code, buf[head_end + 4..].to_vec()))
}

impl Prometheus {
    /// A Prometheus in `<cluster dir>/prometheus` scraping the data plane's Envoy
    /// (`/stats/prometheus` on its admin port), as the guard's tests and `just tutorial guard`
    /// run it; says so.
    pub fn scraping_envoy(
        cluster: &crate::cluster::Cluster,
        dp: &crate::gateway::dataplane::Dataplane<'_>,
    ) -> Result<Prometheus> {
        let prometheus = Prometheus::start(
            &cluster.dir.join("prometheus"),
            &[ScrapeTarget::new(
                "envoy",
                dp.translator.envoy.admin,
                "/stats/prometheus",
            )],
        )?;
        crate::out::note(format!(
            "Prometheus {} at {} (Debian's package, a child process), scraping Envoy's /stats/prometheus every second",
            prometheus.version(),
            prometheus.url()
        ));
        Ok(prometheus)
    }

    /// Starts Prometheus in `dir` (created) scraping `targets` every second; returns once it is
    /// ready and every target has been scraped with `up == 1`.
    pub fn start(dir: &Path, targets: &[ScrapeTarget]) -> Result<Prometheus> {
        let version = binary_version()?;
        std::fs::create_dir_all(dir)?;
        let config = dir.join("prometheus.yml");
        let interval = format!("{}s", SCRAPE_INTERVAL.as_secs());
        // JSON is YAML.
        std::fs::write(
            &config,
            serde_json::to_vec_pretty(&json!({
                "global": {
                    "scrape_interval": interval,
                    "scrape_timeout": interval,
                    "evaluation_interval": interval,
                },
                "scrape_configs": targets.iter().map(|t| json!({
                    "job_name": t.job,
                    "metrics_path": t.metrics_path,
                    "static_configs": [{"targets": [t.addr.to_string()]}],
                })).collect::<Vec<_>>(),
            }))?,
        )?;
        // `--web.listen-address=127.0.0.1:0` is not supported (Prometheus does not say which
        // port it got): a free port, taken again if another process took it first.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            let mut me = Prometheus {
                dir: dir.to_path_buf(),
                addr,
                version: version.clone(),
                targets: targets.to_vec(),
                child: None,
            };
            let log = std::fs::File::create(me.log_path())?;
            let child = Command::new(PROMETHEUS_BIN)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {PROMETHEUS_BIN}"))?;
            me.child = Some(child);
            match me.wait_ready() {
                Ok(()) => {
                    for t in targets {
                        me.wait_up(&t.job)?;
                    }
                    return Ok(me);
                }
                Err(e) if attempt < 3 && me.log().contains("address already in use") => {
                    me.stop();
                    crate::out::note(format!(
                        "prometheus: port {} was taken ({e}); another one",
                        addr.port()
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if matches!(
                http_get(self.addr, "/-/ready", Duration::from_secs(2)),
                Ok((200, _))
            ) {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "prometheus exited at start ({status}):\n{}",
                    self.log_tail(30)
                );
            }
            if started.elapsed() > timeout() {
                bail!(
                    "prometheus not ready on {} within {:.0} s:\n{}",
                    self.addr,
                    timeout().as_secs_f64(),
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `up{job}` is 1 (its last scrape succeeded).
    fn wait_up(&self, job: &str) -> Result<()> {
        let started = Instant::now();
        loop {
            let seen = match self.value(&format!("up{{job=\"{job}\"}}")) {
                Ok(Some(1.0)) => return Ok(()),
                Ok(v) => format!("up = {v:?}"),
                Err(e) => format!("{e:#}"),
            };
            if started.elapsed() > timeout() {
                let targets = self.get("/api/v1/targets").map(|(_, b)| b);
                bail!(
                    "prometheus: job {job} not scraped with up == 1 within {:.0} s (last: {seen}); targets: {}",
                    timeout().as_secs_f64(),
                    targets.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where it listens (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its version (`2.42.0+ds`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// What it scrapes.
    pub fn targets(&self) -> &[ScrapeTarget] {
        &self.targets
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its log (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("prometheus.log")
    }

    /// Its whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `GET path_and_query` (e.g. what `iter8_guard::query_request` gives): status and body, as
    /// a text (a 5 s limit).
    pub fn get(&self, path_and_query: &str) -> Result<(u16, String)> {
        let (code, body) = http_get(self.addr, path_and_query, Duration::from_secs(5))?;
        Ok((code, String::from_utf8_lossy(&body).into_owned()))
    }

    /// An instant query now: the answer's `data` (`{resultType, result}`); an error answer
    /// (`status: error`) is an error.
    pub fn query(&self, promql: &str) -> Result<Value> {
        self.query_at(promql, SystemTime::now())
    }

    /// An instant query at `at`.
    pub fn query_at(&self, promql: &str, at: SystemTime) -> Result<Value> {
        let request = iter8_guard::query_request(
            promql,
            at.duration_since(UNIX_EPOCH)?,
            Duration::from_secs(5),
        );
        let (code, body) = self.get(&request.path_and_query)?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("prometheus answered {code}: {body:.200}"))?;
        ensure!(
            v["status"] == "success",
            "prometheus answered {code} to {promql}: {} {}",
            v["errorType"],
            v["error"]
        );
        Ok(v["data"].clone())
    }

    /// The value of a query that returns at most one series, now (`None`: no series).
    pub fn value(&self, promql: &str) -> Result<Option<f64>> {
        one_value(&self.query(promql)?, promql)
    }

    /// The value of a query that returns at most one series, at `at`.
    pub fn value_at(&self, promql: &str, at: SystemTime) -> Result<Option<f64>> {
        one_value(&self.query_at(promql, at)?, promql)
    }

    /// Waits until a scrape of `job` that began after `after` is stored with `up == 1`, and
    /// returns the time of the first such scrape (its samples' timestamp, whole milliseconds):
    /// queries at that time see what the target had counted by `after`, and nothing later than
    /// one scrape interval. Positive evidence instead of sleeping for "a scrape or two".
    pub fn wait_scraped_after(&self, job: &str, after: SystemTime) -> Result<SystemTime> {
        let started = Instant::now();
        let after_s = unix_seconds(after);
        loop {
            let seen = match self.first_scrape_after(job, after_s) {
                Ok(Some(at)) => return Ok(at),
                Ok(None) => "none yet".to_string(),
                Err(e) => format!("{e:#}"),
            };
            if started.elapsed() > timeout() {
                bail!(
                    "prometheus: no scrape of {job} after {after_s:.3} within {:.0} s ({seen})",
                    timeout().as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first scrape of `job` after `after_s` (Unix seconds) with `up == 1`, if any yet.
    fn first_scrape_after(&self, job: &str, after_s: f64) -> Result<Option<SystemTime>> {
        let now = unix_seconds(SystemTime::now());
        let lookback = ((now - after_s).max(0.0) as u64 + 5).min(3600);
        let data = self.query(&format!("up{{job=\"{job}\"}}[{lookback}s]"))?;
        ensure!(data["resultType"] == "matrix", "not a matrix: {data}");
        let samples = data["result"][0]["values"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for s in samples {
            let t = s[0].as_f64().ok_or_else(|| anyhow!("bad sample {s}"))?;
            if t > after_s && s[1] == "1" {
                // Whole milliseconds, as Prometheus stores them (a float could land just
                // before the sample, and a query there would not see it).
                return Ok(Some(
                    UNIX_EPOCH + Duration::from_millis((t * 1000.0).round() as u64),
                ));
            }
        }
        Ok(None)
    }

    /// The time of the last scrape of `job` (whatever its outcome): scrapes of a target come
    /// every [`SCRAPE_INTERVAL`] from there, at a fixed phase.
    pub fn last_scrape(&self, job: &str) -> Result<SystemTime> {
        // `timestamp` of a plain selector is the sample's own time: the scrape's start.
        let t = self
            .value(&format!("timestamp(up{{job=\"{job}\"}})"))?
            .ok_or_else(|| anyhow!("no scrape of {job} yet"))?;
        Ok(UNIX_EPOCH + Duration::from_millis((t * 1000.0).round() as u64))
    }

    /// Stops it by its pid: SIGTERM, SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::tools::stop_child(child, Duration::from_secs(10));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The one number of an instant query's `data`: a scalar, or a vector of at most one series.
fn one_value(data: &Value, what: &str) -> Result<Option<f64>> {
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([]) => return Ok(None),
            Some([one]) => &one["value"],
            _ => bail!("{what}: more than one series: {}", data["result"]),
        },
        _ => bail!("{what}: not a vector or scalar: {data}"),
    };
    let text = sample[1]
        .as_str()
        .ok_or_else(|| anyhow!("{what}: no sample value in {sample}"))?;
    Ok(Some(match text {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        t => t.parse()?,
    }))
}

/// A scrape target in the test process: serves a text at `/metrics` (404 elsewhere) on
/// 127.0.0.1, one connection at a time; [`Exposition::set`] replaces the text while it runs.
/// Stopped (its thread joined) on drop.
#[derive(Debug)]
pub struct Exposition {
    addr: SocketAddr,
    text: Arc<Mutex<String>>,
    scrapes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exposition {
    /// Serves `text` on a free port of 127.0.0.1.
    pub fn start(text: impl Into<String>) -> Result<Exposition> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let text = Arc::new(Mutex::new(text.into()));
        let scrapes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, n, flag) = (text.clone(), scrapes.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("exposition-{}", addr.port()))
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if serve(stream, &t).unwrap_or(false) {
                                n.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })?;
        Ok(Exposition {
            addr,
            text,
            scrapes,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the text served from the next request on.
    pub fn set(&self, text: impl Into<String>) {
        if let Ok(mut t) = self.text.lock() {
            *t = text.into();
        }
    }

    /// `/metrics` requests answered so far.
    pub fn scrapes(&self) -> usize {
        self.scrapes.load(Ordering::SeqCst)
    }

    /// A scrape job for it.
    pub fn target(&self, job: &str) -> ScrapeTarget {
        ScrapeTarget::new(job, self.addr, "/metrics")
    }
}

impl Drop for Exposition {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request on `stream`; `Ok(true)` when it served `/metrics`.
fn serve(mut stream: TcpStream, text: &Mutex<String>) -> Result<bool> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        ensure!(n > 0 && buf.len() < 65536, "no request head");
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split(' ').nth(1).unwrap_or("");
    let (status, body, metrics) = if path == "/metrics" || path.starts_with("/metrics?") {
        let body = text.lock().map(|t| t.clone()).unwrap_or_default();
        ("200 OK", body, true)
    } else {
        ("404 Not Found", "not found\n".to_string(), false)
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    Ok(metrics)
}
