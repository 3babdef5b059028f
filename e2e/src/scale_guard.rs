//! The guard at scale, the scale bench's guard phase (`ITER8_SCALE_GUARDED`): many guarded
//! releases judged from a real Prometheus by the real controller.
//!
//! Setup: N two-version canary releases (as the other phases build them) whose routemaps carry
//! the guard [`guard_spec`] (every 10 s over 1 m, `minRequests` 20, `failAfter` 2, the `envoy`
//! preset, errorRate 5%, no URL: the controller's `--guard-prometheus`), both versions
//! Available. Debian's Prometheus scrapes, every second, an [`Exposition`] of Envoy cluster
//! counters for every version (`envoy_cluster_name="<ns>/<service>/80"`, the preset's selector)
//! that a thread moves on every second ([`EnvoyCounters`]): each primary 50 requests/s, each
//! candidate 10/s, all 2xx except the `failing` candidates (spread over the fleet), which answer
//! 20% 5xx from the start; as Envoy does, a 5xx series exists only once a 5xx was counted.
//!
//! Run: once Prometheus holds 5 s of the counters, the controller starts; a bare route watch
//! dates the moment every route is written (each exists: a failing candidate may be withdrawn
//! before the last of the others is first written); the window starts one interval later
//! (every candidate has had its first turn) and lasts `window`. Every second the bench reads the
//! controller's `/metrics` and Prometheus' own `/metrics`: the queries answered in the window
//! come from the controller's `iter8_guard_queries_total`, cross-checked with Prometheus'
//! `prometheus_http_requests_total` for `/api/v1/query` (which also gives the busiest and
//! quietest second); CPU over the window is user + system time from `/proc/<pid>/stat` (the
//! controller's and Prometheus'; under `ITER8_SCALE_WRAP`, the wrapper's); RSS is VmRSS at the
//! window's start and end, and VmHWM. Over the whole run: verdicts by kind, query results, the
//! withdrawals (the controller's counter, sampled every second, dates the first and the last),
//! and the routes as the watch sees them: every failing candidate out of its route, every
//! healthy one in it and its route written once, and the status annotations naming withdrawn
//! candidates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::builders::{app, guarded_routemap};
use crate::cluster::Cluster;
use crate::controller::{Controller, proc_cpu_seconds, proc_status_kib};
use crate::fleet;
use crate::out::say;
use crate::prometheus::{Exposition, Prometheus};
use crate::scale::{launch_with, mib};
use crate::tracker::Tracker;

/// The guard's `interval`.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Requests per second of each primary.
const PRIMARY_RPS: u64 = 50;
/// Requests per second of each candidate.
const CANDIDATE_RPS: u64 = 10;
/// 5xx per second of a failing candidate: 20% of its requests.
const FAILING_5XX_PER_SECOND: u64 = 2;
/// Limit for every route to be written after the controller starts.
const WRITTEN_LIMIT: Duration = Duration::from_secs(300);
/// Counters stored before the controller starts.
const DATA_BEFORE: Duration = Duration::from_secs(5);
/// The namespace of the releases.
const NS: &str = "scale";

/// The guard block of every release's routemap spec.
pub fn guard_spec() -> Value {
    json!({
        "interval": "10s",
        "window": "1m",
        "minRequests": 20,
        "failAfter": 2,
        "metrics": "envoy",
        "objectives": {"errorRate": 0.05},
    })
}

/// One Envoy cluster's traffic, as counters that grow every second.
#[derive(Debug, Clone)]
pub struct ClusterLoad {
    /// `envoy_cluster_name`.
    pub name: String,
    /// Requests per second.
    pub per_second: u64,
    /// Of which 5xx.
    pub errors_per_second: u64,
}

/// The exposition text of Envoy's cluster counters after `seconds` of `clusters`' traffic:
/// `envoy_cluster_upstream_rq_total` and `envoy_cluster_upstream_rq_xx` by response code
/// class, the 5xx series only once there is a 5xx (as Envoy creates it).
pub fn envoy_text(clusters: &[ClusterLoad], seconds: u64) -> String {
    let mut t = String::with_capacity(clusters.len() * 220);
    t.push_str("# TYPE envoy_cluster_upstream_rq_total counter\n");
    for c in clusters {
        let _ = writeln!(
            t,
            "envoy_cluster_upstream_rq_total{{envoy_cluster_name=\"{}\"}} {}",
            c.name,
            c.per_second * seconds
        );
    }
    t.push_str("# TYPE envoy_cluster_upstream_rq_xx counter\n");
    for c in clusters {
        let _ = writeln!(
            t,
            "envoy_cluster_upstream_rq_xx{{envoy_response_code_class=\"2\",envoy_cluster_name=\"{}\"}} {}",
            c.name,
            (c.per_second - c.errors_per_second) * seconds
        );
        if c.errors_per_second * seconds > 0 {
            let _ = writeln!(
                t,
                "envoy_cluster_upstream_rq_xx{{envoy_response_code_class=\"5\",envoy_cluster_name=\"{}\"}} {}",
                c.name,
                c.errors_per_second * seconds
            );
        }
    }
    t
}

/// A thread that serves [`envoy_text`] through an [`Exposition`], moved on every second from
/// its start. Stopped (joined) on drop.
#[derive(Debug)]
pub struct EnvoyCounters {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EnvoyCounters {
    /// Starts counting from 0 now.
    pub fn start(expo: Arc<Exposition>, clusters: Vec<ClusterLoad>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("envoy-counters".into())
            .spawn(move || {
                let started = Instant::now();
                let mut seconds = 0;
                while !flag.load(Ordering::SeqCst) {
                    expo.set(envoy_text(&clusters, seconds));
                    seconds += 1;
                    let next = started + Duration::from_secs(seconds);
                    while !flag.load(Ordering::SeqCst) {
                        let now = Instant::now();
                        if now >= next {
                            break;
                        }
                        std::thread::sleep((next - now).min(Duration::from_millis(50)));
                    }
                }
            })?;
        Ok(EnvoyCounters {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EnvoyCounters {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the guard phase measured.
#[derive(Debug, Clone, Default)]
pub struct GuardScale {
    /// Guarded releases.
    pub n: usize,
    /// Of which with a failing candidate.
    pub failing: usize,
    /// Prometheus' version.
    pub prometheus: String,
    /// Seeding the releases.
    pub seed_secs: f64,
    /// Controller start -> every route written (bare watch).
    pub to_written: Duration,
    /// The window's length (first to last sample).
    pub window: Duration,
    /// `iter8_guard_queries_total` over the window.
    pub queries: u64,
    /// `prometheus_http_requests_total{handler="/api/v1/query"}` over the window.
    pub prometheus_queries: u64,
    /// Queries Prometheus answered in the busiest and in the quietest second of the window
    /// (its own counter, sampled every second, per second of sampling interval).
    pub busiest: f64,
    /// See [`Self::busiest`].
    pub quietest: f64,
    /// The same by the schedule alone ([`schedule_spread`]): busiest and quietest 1 s window.
    pub schedule_busiest: u64,
    /// See [`Self::schedule_busiest`].
    pub schedule_quietest: u64,
    /// Controller CPU over the window, % of one core.
    pub cpu: f64,
    /// Prometheus' CPU over the window, % of one core.
    pub prometheus_cpu: f64,
    /// Controller CPU from its start to the window's end, seconds.
    pub cpu_total_secs: f64,
    /// Controller VmRSS at the window's start and end, bytes.
    pub rss_start: u64,
    /// See [`Self::rss_start`].
    pub rss_end: u64,
    /// Controller VmHWM at the end, bytes.
    pub peak_rss: u64,
    /// `iter8_guard_verdicts_total` by verdict, whole run.
    pub verdicts: BTreeMap<String, u64>,
    /// `iter8_guard_queries_total` by result, whole run.
    pub results: BTreeMap<String, u64>,
    /// `iter8_guard_withdrawals_total` at the end.
    pub withdrawals: u64,
    /// `iter8_guard_withdrawn_candidates` at the end.
    pub withdrawn_gauge: u64,
    /// `iter8_guard_candidates` at the end.
    pub candidates_gauge: u64,
    /// Controller start -> the first sample that counted a withdrawal.
    pub first_withdrawal: Option<Duration>,
    /// Controller start -> the first sample that counted `failing` withdrawals.
    pub last_withdrawal: Option<Duration>,
    /// Controller start -> every route as it should end (the failing candidates out), as the
    /// watch saw it.
    pub all_out: Option<Duration>,
    /// Failing candidates out of their route at the end (watch).
    pub failing_out: usize,
    /// Healthy candidates out of their route, or named withdrawn by their status, at the end.
    pub healthy_withdrawn: usize,
    /// Healthy releases whose route changed more than once (its first write).
    pub healthy_rewritten: usize,
    /// Routes whose status annotation names a withdrawn candidate.
    pub status_withdrawn: usize,
}

impl GuardScale {
    /// Queries per second over the window, by the controller's counter.
    pub fn qps(&self) -> f64 {
        self.queries as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Queries per second over the window, by Prometheus' counter.
    pub fn prometheus_qps(&self) -> f64 {
        self.prometheus_queries as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn verdict(&self, kind: &str) -> u64 {
        self.verdicts.get(kind).copied().unwrap_or(0)
    }

    /// Query results other than `value`, as `result count` pairs (`none`: every query had a
    /// value).
    pub fn other_results(&self) -> String {
        let other: Vec<String> = self
            .results
            .iter()
            .filter(|(k, _)| k.as_str() != "value")
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if other.is_empty() {
            "none".into()
        } else {
            other.join(", ")
        }
    }

    /// Whether the guard did what it must: every failing candidate withdrawn and out of its
    /// route, no healthy one.
    pub fn correct(&self) -> bool {
        self.withdrawals == self.failing as u64
            && self.withdrawn_gauge == self.failing as u64
            && self.failing_out == self.failing
            && self.status_withdrawn == self.failing
            && self.healthy_withdrawn == 0
            && self.healthy_rewritten == 0
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let secs =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64()));
        format!(
            "{} guarded releases ({} failing at 20% 5xx), every {} s over 1m, Prometheus {}: {:.1} queries/s over {:.0} s (Prometheus answered {:.1}/s; busiest second {:.0}, quietest {:.0}; the schedule's own busiest 1 s window {}, quietest {}); controller CPU {:.1}% of a core ({:.1} s since its start), RSS {:.1} MiB at the end ({:.1} MiB at the window's start, peak {:.1} MiB); Prometheus CPU {:.1}%; verdicts {} healthy, {} failing, {} unknown; queries without a value: {}; withdrawn {} of {} failing (gauge {}, candidates {}), first counted {} s and all {} s after the controller started, all out of their routes at {} s (watch); healthy candidates withdrawn {}, healthy routes rewritten {}; status annotations naming a withdrawal {}; every route written {:.2} s after start",
            self.n,
            self.failing,
            INTERVAL.as_secs(),
            self.prometheus,
            self.qps(),
            self.window.as_secs_f64(),
            self.prometheus_qps(),
            self.busiest,
            self.quietest,
            self.schedule_busiest,
            self.schedule_quietest,
            self.cpu,
            self.cpu_total_secs,
            mib(self.rss_end),
            mib(self.rss_start),
            mib(self.peak_rss),
            self.prometheus_cpu,
            self.verdict("healthy"),
            self.verdict("failing"),
            self.verdict("unknown"),
            self.other_results(),
            self.withdrawals,
            self.failing,
            self.withdrawn_gauge,
            self.candidates_gauge,
            secs(self.first_withdrawal),
            secs(self.last_withdrawal),
            secs(self.all_out),
            self.healthy_withdrawn,
            self.healthy_rewritten,
            self.status_withdrawn,
            self.to_written.as_secs_f64(),
        )
    }
}

/// Which of `n` releases have a failing candidate: `failing` of them, spread evenly.
pub fn failing_releases(n: usize, failing: usize) -> BTreeSet<usize> {
    let failing = failing.min(n);
    (0..failing).map(|k| k * n / failing).collect()
}

/// Queries the schedule itself puts in the busiest and in the quietest second: each judged
/// candidate (the `n` releases' but the withdrawn `failing`) makes 2 queries at its offset
/// (`iter8_guard::offset` of its key, as the controller computes it) in every interval; the
/// counts are over every 1 s window of the interval, at any phase (millisecond steps). What a
/// perfectly punctual controller would send, to compare with what Prometheus answered.
pub fn schedule_spread(n: usize, failing: &BTreeSet<usize>) -> (u64, u64) {
    let interval_ms = INTERVAL.as_millis() as usize;
    let mut per_ms = vec![0u64; interval_ms];
    for i in (0..n).filter(|i| !failing.contains(i)) {
        let a = app(i);
        let key = iter8_guard::candidate_key(NS, &format!("{a}-routemap"), &format!("{a}-1"));
        let at = iter8_guard::offset(&key, INTERVAL).as_millis() as usize;
        per_ms[at % interval_ms] += 2;
    }
    // A window of 1 s starting at each millisecond, around the end of the interval.
    let mut window: u64 = per_ms[..1000.min(interval_ms)].iter().sum();
    let (mut most, mut least) = (window, window);
    for start in 1..interval_ms {
        window -= per_ms[start - 1];
        window += per_ms[(start + 999) % interval_ms];
        most = most.max(window);
        least = least.min(window);
    }
    (most, least)
}

/// One reading, every second.
#[derive(Debug, Clone)]
struct Sample {
    /// When Prometheus' counter was read.
    at: Instant,
    prometheus_queries: f64,
    controller_queries: f64,
    withdrawals: f64,
    cpu: f64,
    prometheus_cpu: f64,
    rss: u64,
}

/// `prometheus_http_requests_total` of the instant query endpoint, every status code.
fn prometheus_query_count(text: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with("prometheus_http_requests_total{")
                && l.contains("handler=\"/api/v1/query\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The values of `family{label="..."}` by that label (its only one).
fn by_label(text: &str, family: &str, label: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{family}{{{label}=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (value_of_label, tail) = rest.split_once('"')?;
            let v: f64 = tail.rsplit(' ').next()?.parse().ok()?;
            Some((value_of_label.to_string(), v as u64))
        })
        .collect()
}

fn sample(ctl: &Controller, prom: &Prometheus, pid: u32, prom_pid: u32) -> Result<Sample> {
    let (code, text) = prom.get("/metrics")?;
    anyhow::ensure!(code == 200, "Prometheus /metrics answered {code}");
    let at = Instant::now();
    let metrics = ctl.metrics()?;
    let sum = |series: &str| crate::metrics::sum_series(&metrics, series);
    Ok(Sample {
        at,
        prometheus_queries: prometheus_query_count(&text),
        controller_queries: sum("iter8_guard_queries_total"),
        withdrawals: sum("iter8_guard_withdrawals_total"),
        cpu: proc_cpu_seconds(pid).ok_or_else(|| anyhow!("no /proc/{pid}/stat"))?,
        prometheus_cpu: proc_cpu_seconds(prom_pid)
            .ok_or_else(|| anyhow!("no /proc/{prom_pid}/stat"))?,
        rss: proc_status_kib(pid, "VmRSS:").unwrap_or(0) * 1024,
    })
}

/// The guard phase on a fresh `cluster`: see the module doc. Everything it starts is stopped
/// when it returns (the controller and Prometheus by their pids).
pub async fn guard_at_scale(
    cluster: &Cluster,
    n: usize,
    failing: usize,
    window: Duration,
) -> Result<GuardScale> {
    let failing_set = failing_releases(n, failing);
    cluster.create_namespace(NS).await?;
    // The counters first, then Prometheus scraping them: data before the first judgement.
    let mut clusters = Vec::with_capacity(2 * n);
    for i in 0..n {
        let a = app(i);
        clusters.push(ClusterLoad {
            name: format!("{NS}/{a}-0/80"),
            per_second: PRIMARY_RPS,
            errors_per_second: 0,
        });
        clusters.push(ClusterLoad {
            name: format!("{NS}/{a}-1/80"),
            per_second: CANDIDATE_RPS,
            errors_per_second: if failing_set.contains(&i) {
                FAILING_5XX_PER_SECOND
            } else {
                0
            },
        });
    }
    let expo = Arc::new(Exposition::start(envoy_text(&clusters, 0))?);
    let counting_since = std::time::SystemTime::now();
    let counters = EnvoyCounters::start(expo.clone(), clusters)?;
    let mut prom = Prometheus::start(&cluster.dir.join("prometheus"), &[expo.target("envoy")])?;
    say(format!(
        "Prometheus {} at {} scraping the counters of {} Envoy clusters every second",
        prom.version(),
        prom.url(),
        2 * n
    ));
    let t = Instant::now();
    let guard = guard_spec();
    let mut fleet =
        fleet::seed_with(cluster, NS, n, |ns, i| guarded_routemap(ns, i, &guard)).await?;
    let seed_secs = t.elapsed().as_secs_f64();
    say(format!(
        "seeded {n} guarded releases ({} objects) in {seed_secs:.1}s",
        n * 5
    ));
    // The routes as they must end: the failing candidates out (planned as unavailable, as a
    // withdrawal is), the healthy ones in.
    let mut final_want = fleet.want.clone();
    fleet.plan(false)?;
    for &i in &failing_set {
        let a = app(i);
        let without = fleet
            .want
            .get(&a)
            .ok_or_else(|| anyhow!("{a}: no route planned"))?;
        final_want.insert(a, without.clone());
    }
    fleet.plan(true)?;
    // A few seconds of counters stored before the first judgement (`increase` needs two
    // samples in the window; a candidate needs `minRequests`), else the first verdicts are
    // "unknown" for want of data, which is the bench's start, not the guard's doing.
    prom.wait_scraped_after("envoy", counting_since + DATA_BEFORE)?;
    let routes = Tracker::start(cluster, NS, &final_want).await?;
    routes.start_counting();
    let url = prom.url();
    let mut ctl = launch_with(cluster, NS, None, &["--guard-prometheus", &url])?;
    let result = measure(cluster, &mut ctl, &prom, &routes, &failing_set, n, window).await;
    if let Err(e) = ctl.stop() {
        say(format!("{e:#}"));
    }
    prom.stop();
    drop(counters);
    let mut out = result?;
    out.prometheus = prom.version().to_string();
    out.seed_secs = seed_secs;
    Ok(out)
}

async fn measure(
    cluster: &Cluster,
    ctl: &mut Controller,
    prom: &Prometheus,
    routes: &Tracker,
    failing_set: &BTreeSet<usize>,
    n: usize,
    window: Duration,
) -> Result<GuardScale> {
    let pid = ctl.pid().context("the controller is not running")?;
    let prom_pid = prom.pid().context("Prometheus is not running")?;
    let failing = failing_set.len();
    let (schedule_busiest, schedule_quietest) = schedule_spread(n, failing_set);
    let mut samples: Vec<Sample> = Vec::new();
    let mut window_from: Option<Instant> = None;
    let mut first: Option<usize> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        ctl.check_alive()?;
        let s = match sample(ctl, prom, pid, prom_pid) {
            Ok(s) => s,
            // Its admin server is not listening yet.
            Err(_) if samples.is_empty() && ctl.started.elapsed() < WRITTEN_LIMIT => continue,
            Err(e) => return Err(e),
        };
        if window_from.is_none() {
            match routes.all_present_at() {
                // Every candidate has had its first turn one interval after its view.
                Some(at) => window_from = Some(at + INTERVAL),
                None if ctl.started.elapsed() > WRITTEN_LIMIT => bail!(
                    "{} of {n} routes written {WRITTEN_LIMIT:?} after the controller started",
                    routes.writes().len()
                ),
                None => {}
            }
        }
        samples.push(s);
        let last = samples.len() - 1;
        if first.is_none() && window_from.is_some_and(|w| samples[last].at >= w) {
            first = Some(last);
        }
        // Ticks are a second apart: a window of `window` seconds is that many ticks.
        if let Some(f) = first
            && samples[last].at.duration_since(samples[f].at) + Duration::from_millis(500) >= window
        {
            break;
        }
    }
    let (a, b) = match (first, samples.last()) {
        (Some(f), Some(b)) => (&samples[f], b),
        _ => bail!("no window"),
    };
    let span = b.at.duration_since(a.at).as_secs_f64();
    let rates: Vec<f64> = samples[first.unwrap_or(0)..]
        .windows(2)
        .map(|w| {
            (w[1].prometheus_queries - w[0].prometheus_queries)
                / w[1].at.duration_since(w[0].at).as_secs_f64()
        })
        .collect();
    let metrics = ctl.metrics()?;
    let sum = |series: &str| crate::metrics::sum_series(&metrics, series) as u64;
    // Positive evidence instead of a sleep: the routes as they must end, seen by the watch.
    let _ = routes.wait_correct(n, Duration::from_secs(10)).await;
    let since_start = |k: f64| {
        samples
            .iter()
            .find(|s| s.withdrawals >= k)
            .map(|s| s.at.duration_since(ctl.started))
    };
    let failing_names: BTreeSet<String> = failing_set.iter().map(|&i| app(i)).collect();
    let changes = routes.writes();
    let statuses = cluster.status_annotations(NS).await?;
    let withdrawn_in_status: HashMap<String, bool> = statuses
        .iter()
        .map(|(routemap, status)| {
            let named = serde_json::from_str::<Value>(status)
                .ok()
                .and_then(|v| v["withdrawn"].as_object().map(|w| !w.is_empty()))
                .unwrap_or(false);
            (routemap.trim_end_matches("-routemap").to_string(), named)
        })
        .collect();
    let mut failing_out = 0;
    let mut healthy_withdrawn = 0;
    let mut healthy_rewritten = 0;
    for i in 0..n {
        let a = app(i);
        let named = withdrawn_in_status.get(&a).copied().unwrap_or(false);
        // The route as it must end: for a failing release without its candidate, for a
        // healthy one with it.
        let as_it_must_end = routes.is_correct(&a);
        if failing_names.contains(&a) {
            failing_out += usize::from(as_it_must_end);
        } else {
            healthy_withdrawn += usize::from(named || !as_it_must_end);
            healthy_rewritten += usize::from(changes.get(&a).copied().unwrap_or(0) > 1);
        }
    }
    Ok(GuardScale {
        n,
        failing,
        to_written: routes
            .all_present_at()
            .map(|t| t.duration_since(ctl.started))
            .unwrap_or_default(),
        window: Duration::from_secs_f64(span),
        queries: (b.controller_queries - a.controller_queries) as u64,
        prometheus_queries: (b.prometheus_queries - a.prometheus_queries) as u64,
        busiest: rates.iter().copied().fold(0.0, f64::max),
        quietest: rates.iter().copied().fold(f64::INFINITY, f64::min),
        schedule_busiest,
        schedule_quietest,
        cpu: 100.0 * (b.cpu - a.cpu) / span,
        prometheus_cpu: 100.0 * (b.prometheus_cpu - a.prometheus_cpu) / span,
        cpu_total_secs: b.cpu,
        rss_start: a.rss,
        rss_end: b.rss,
        peak_rss: ctl.peak_rss().unwrap_or(0),
        verdicts: by_label(&metrics, "iter8_guard_verdicts_total", "verdict"),
        results: by_label(&metrics, "iter8_guard_queries_total", "result"),
        withdrawals: sum("iter8_guard_withdrawals_total"),
        withdrawn_gauge: sum("iter8_guard_withdrawn_candidates"),
        candidates_gauge: sum("iter8_guard_candidates"),
        first_withdrawal: since_start(1.0),
        last_withdrawal: if failing > 0 {
            since_start(failing as f64)
        } else {
            None
        },
        all_out: routes
            .all_correct_at()
            .map(|t| t.duration_since(ctl.started)),
        failing_out,
        healthy_withdrawn,
        healthy_rewritten,
        status_withdrawn: withdrawn_in_status.values().filter(|w| **w).count(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_text_has_a_5xx_series_only_after_a_5xx() {
        let clusters = [
            ClusterLoad {
                name: "scale/app0-1/80".into(),
                per_second: 10,
                errors_per_second: 2,
            },
            ClusterLoad {
                name: "scale/app1-1/80".into(),
                per_second: 10,
                errors_per_second: 0,
            },
        ];
        let start = envoy_text(&clusters, 0);
        assert!(!start.contains("envoy_response_code_class=\"5\""));
        let later = envoy_text(&clusters, 3);
        assert!(later.contains(
            "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"scale/app0-1/80\"} 30\n"
        ));
        assert!(later.contains("envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"2\",envoy_cluster_name=\"scale/app0-1/80\"} 24\n"));
        assert!(later.contains("envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"5\",envoy_cluster_name=\"scale/app0-1/80\"} 6\n"));
        assert!(!later.contains("class=\"5\",envoy_cluster_name=\"scale/app1-1/80\""));
    }

    #[test]
    fn failing_releases_are_spread_and_bounded() {
        let f = failing_releases(1000, 10);
        assert_eq!(f.len(), 10);
        assert_eq!(f.iter().copied().collect::<Vec<_>>()[..3], [0, 100, 200]);
        assert_eq!(failing_releases(3, 10).len(), 3);
        assert!(failing_releases(10, 0).is_empty());
    }

    #[test]
    fn the_schedule_spreads_queries_around_their_mean() {
        let failing = failing_releases(1000, 10);
        let (most, least) = schedule_spread(1000, &failing);
        // 990 candidates, 2 queries each per 10 s: 198 per second on average.
        assert!(least < 198 && 198 < most, "{least}..{most}");
        assert_eq!(schedule_spread(0, &BTreeSet::new()), (0, 0));
    }
}
