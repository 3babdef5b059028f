//! The guard's metric presets (`envoy`, `istio`, `linkerd`) against a real Prometheus (issue 21):
//! the queries `iter8_guard::render_queries` writes, sent exactly as `iter8_guard::query_request`
//! gives them, answered by Debian's Prometheus 2.42 scraping every second, read with
//! `iter8_guard::parse_answer` and judged with `iter8_guard::judge`.
//!
//! - `envoy`, live: the seed candidate release (real helm, the real controller) on the test API
//!   server, the test translator programming a real Envoy, `httpbin-0` a real httpbin and the
//!   candidate `httpbin-1` the faulty backend (`e2e/apps/faulty.py`, 10 ms added latency).
//!   Prometheus scrapes Envoy's admin `/stats/prometheus`. Under an open-loop load (300
//!   requests/s, half with `traffic: test`): first the candidate without faults (both versions
//!   healthy, error rate 0 through the preset's `or vector(0)`: no 5xx series exists), then with
//!   20% 500s (the candidate failing on errorRate, the primary still healthy). The request
//!   counts are compared with what the client sent in each query's window, the error rate with
//!   the share of 500s the client got. The selector `envoy_cluster_name="<ns>/<svc>/<port>"`
//!   is thereby checked against a live scrape.
//! - `istio` and `linkerd`: no such data plane runs here, so each project's documented metrics
//!   (names and labels as in docs/guard.md's preset queries, millisecond histograms with `le`)
//!   are served as exposition text by the test and grow every second; besides the series the
//!   presets must select there are series they must not (Istio's `reporter="source"`, Linkerd's
//!   `direction="outbound"`, another namespace's workload of the same name), so a selector that
//!   misses a label shows as a wrong number. Expected values are computed from the served
//!   traffic: requests exactly, error rates within 0.02, p99 as `histogram_quantile`
//!   interpolates it.
//!
//! Prints one line per preset and the test's duration.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail, ensure};
use iter8_e2e::gateway::dataplane::Dataplane;
use iter8_e2e::gateway::envoy::envoy_path;
use iter8_e2e::gateway::faulty::FaultSpec;
use iter8_e2e::gateway::traffic::{Answer, Load, LoadSpec};
use iter8_e2e::prelude::*;
use iter8_e2e::prometheus::{self, Exposition, Prometheus, ScrapeTarget, http_get};
use iter8_e2e::traffic::{phase_report, routed};
use iter8_guard::{
    Answer as PromAnswer, Objective, QueryError, Target, Verdict, VerdictKind, judge, parse_answer,
    query_request, render_queries, request_timeout,
};
use routing_core::RouteMapSpec;
use routing_core::guard::GuardSpec;

const NS: &str = "guard";
const ROUTE: &str = "httpbin";
const ROUTEMAP: &str = "httpbin-routemap";
const HOST: &str = "httpbin.guard";
const PRIMARY: &str = "httpbin-0";
const CANDIDATE: &str = "httpbin-1";
/// Requests per second of each load phase, half of them with `traffic: test` (the candidate).
const RATE: f64 = 300.0;
/// The faulty candidate's share of 500s in the failing phase.
const ERROR_SHARE: f64 = 0.2;
/// Added to every answer of the faulty candidate.
const ADDED_LATENCY: Duration = Duration::from_millis(10);
/// The envoy guard: a 10 s window (its smallest), so that the failing phase fills it.
const ENVOY_GUARD: &str =
    "{metrics: envoy, interval: 5s, window: 10s, objectives: {errorRate: 0.01, latencyP99: 500ms}}";
/// Ticks (one a second) of the served Istio and Linkerd traffic.
const TICKS: u64 = 12;
/// Tolerance of a measured error rate.
const ERROR_TOLERANCE: f64 = 0.02;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_presets() -> Result<()> {
    let started = Instant::now();
    // Before minutes of setup: Prometheus must be installed.
    let version = prometheus::binary_version()?;
    note(format!(
        "{} is Prometheus {version}",
        prometheus::PROMETHEUS_BIN
    ));
    let cluster = Cluster::start("guard-presets").await?;
    let mut dp = Dataplane::start(&cluster, &[])?;
    let mut suite = Suite::new(&cluster)?;
    suite
        .run(
            "the guard's presets against a real Prometheus",
            presets(&cluster, &mut dp),
        )
        .await;
    println!(
        "guard presets: the test took {:.1} s (API server, controller, Envoy, httpbin, faulty backend, Prometheus, two load phases)",
        started.elapsed().as_secs_f64()
    );
    suite.finish()
}

async fn presets(cluster: &Cluster, dp: &mut Dataplane<'_>) -> Result<()> {
    let (_release, _controller) =
        release_with_controller(cluster, NS, "seed-2-candidate.yaml").await?;
    dp.faulty_backend(
        NS,
        CANDIDATE,
        FaultSpec {
            error_share: 0.0,
            latency: ADDED_LATENCY,
        },
    )?;
    dp.set_version(NS, PRIMARY, true).await?;
    dp.set_version(NS, CANDIDATE, true).await?;
    routed(
        cluster,
        dp,
        NS,
        ROUTE,
        "the canary split",
        canary_split(PRIMARY, CANDIDATE),
    )
    .await?;
    // The versions as the controller reads them: the live routemap, parsed by routing-core.
    let routemap = cluster
        .configmap(NS, ROUTEMAP)
        .await?
        .and_then(|cm| cm.data)
        .and_then(|d| d.get("routemap.yaml").cloned())
        .ok_or_else(|| anyhow!("no data[routemap.yaml] in {NS}/{ROUTEMAP}"))?;
    let spec = RouteMapSpec::from_yaml(&routemap).map_err(|e| anyhow!("routemap: {e}"))?;
    let target = |name: &str| -> Result<Target> {
        let v = spec
            .versions
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| anyhow!("no version {name} in the routemap"))?;
        Ok(Target::of_version(NS, v))
    };
    let (primary, candidate) = (target(PRIMARY)?, target(CANDIDATE)?);

    let mut mesh = Mesh::start(&primary, &candidate)?;
    let envoy_admin = dp.translator.envoy.admin;
    let prom = Prometheus::start(
        &cluster.dir.join("prometheus"),
        &[
            ScrapeTarget::new("envoy", envoy_admin, "/stats/prometheus"),
            mesh.istio.target("istio"),
            mesh.linkerd.target("linkerd"),
        ],
    )?;
    note(format!(
        "prometheus {} (pid {}) on {}, scraping every 1 s: envoy admin http://{envoy_admin}/stats/prometheus, istio http://{}/metrics, linkerd http://{}/metrics (served by the test); log {}",
        prom.version(),
        prom.pid().unwrap_or_default(),
        prom.url(),
        mesh.istio.addr(),
        mesh.linkerd.addr(),
        prom.log_path().display()
    ));
    mesh.run(&prom)?;
    let outcome = check(dp, &prom, &mut mesh, &routemap, &primary, &candidate).await;
    if outcome.is_err() {
        println!(
            "----- prometheus: last lines of {}\n{}\n-----",
            prom.log_path().display(),
            prom.log_tail(40)
        );
    }
    outcome
}

async fn check(
    dp: &mut Dataplane<'_>,
    prom: &Prometheus,
    mesh: &mut Mesh,
    routemap: &str,
    primary: &Target,
    candidate: &Target,
) -> Result<()> {
    let guard = guarded(routemap, ENVOY_GUARD)?;
    let window = guard.window.get();

    // Phase 1: the candidate without faults.
    step(
        1,
        format!(
            "load {RATE:.0}/s for 5 s; candidate {CANDIDATE} is the faulty backend with no faults yet ({} ms added latency)",
            ADDED_LATENCY.as_millis()
        ),
    );
    let one = Phase::run(dp, "phase 1", 5.0).await?;
    let at = tokio::task::block_in_place(|| prom.wait_scraped_after("envoy", one.ended))?;
    note(format!(
        "a scrape of Envoy began {} ms after the last answer: queries at that instant",
        ms_between(one.ended, at)
    ));
    let p1 = judge_envoy(prom, &guard, primary, at, &one, window)?;
    let c1 = judge_envoy(prom, &guard, candidate, at, &one, window)?;
    expect(&p1, VerdictKind::Healthy, Some(0.0))?;
    expect(&c1, VerdictKind::Healthy, Some(0.0))?;
    let cluster_name = format!(
        "{}/{}/{}",
        candidate.namespace, candidate.service, candidate.port
    );
    let fivexx = prom.value_at(
        &format!(
            "envoy_cluster_upstream_rq_xx{{envoy_cluster_name=\"{cluster_name}\",envoy_response_code_class=\"5\"}}"
        ),
        at,
    )?;
    ensure!(
        fivexx.is_none(),
        "a 5xx series of {cluster_name} exists before any 500: {fivexx:?}"
    );
    ok(format!(
        "no 5xx series of {cluster_name} yet: its error rate 0 comes from the preset's `or vector(0)`"
    ));
    ensure!(
        c1.p99.is_some_and(|p| p >= ADDED_LATENCY.as_secs_f64()),
        "{CANDIDATE}'s p99 {:?} s is under its added latency",
        c1.p99
    );

    // Phase 2: 20% 500s.
    dp.set_faults(
        NS,
        CANDIDATE,
        FaultSpec {
            error_share: ERROR_SHARE,
            latency: ADDED_LATENCY,
        },
    )?;
    step(
        2,
        format!(
            "load {RATE:.0}/s for 11 s; candidate {CANDIDATE} answers {:.0}% of its requests with 500 (every 5th)",
            ERROR_SHARE * 100.0
        ),
    );
    let two = Phase::run(dp, "phase 2", 11.0).await?;
    let at = tokio::task::block_in_place(|| prom.wait_scraped_after("envoy", two.ended))?;
    ensure!(
        at - window > two.started_wall + Duration::from_millis(500),
        "the 10 s window before {} reaches back before phase 2 began",
        prometheus::unix_seconds(at)
    );
    let p2 = judge_envoy(prom, &guard, primary, at, &two, window)?;
    let c2 = judge_envoy(prom, &guard, candidate, at, &two, window)?;
    expect(&p2, VerdictKind::Healthy, Some(0.0))?;
    expect(&c2, VerdictKind::Failing, None)?;
    ensure!(
        c2.verdict.decisive().map(|f| f.objective) == Some(Objective::ErrorRate),
        "{CANDIDATE} should fail on errorRate: {}",
        c2.verdict.summary()
    );
    let sent_share = c2.sent_errors as f64 / c2.sent.max(1) as f64;
    let rate = c2.error_rate.unwrap_or(f64::NAN);
    ensure!(
        (rate - ERROR_SHARE).abs() <= ERROR_TOLERANCE
            && (rate - sent_share).abs() <= ERROR_TOLERANCE,
        "{CANDIDATE}'s error rate {rate:.4} is not within {ERROR_TOLERANCE} of {ERROR_SHARE} and of the share of 500s the client got in the window ({sent_share:.4})"
    );
    ok(format!(
        "{CANDIDATE}'s error rate {rate:.4}: within {ERROR_TOLERANCE} of {ERROR_SHARE} and of the {sent_share:.4} of 500s the client got in the window"
    ));
    for j in [&p1, &c1, &p2, &c2] {
        ensure!(
            j.p99.is_some_and(|p| p.is_finite() && p > 0.0),
            "{}: latencyP99 {:?} is not a finite positive number of seconds",
            j.version,
            j.p99
        );
    }
    ensure!(
        c2.p99.is_some_and(|p| p >= ADDED_LATENCY.as_secs_f64()),
        "{CANDIDATE}'s p99 {:?} s is under its added latency",
        c2.p99
    );
    // Every 500 was the faulty backend's own answer (in its access log), none came from Envoy.
    let served = dp.served_ids(NS, CANDIDATE);
    let errors: Vec<&Answer> = two.answers.iter().filter(|a| a.status == 500).collect();
    ensure!(
        errors.iter().all(|a| a.test
            && a.app_version.as_deref() == Some(CANDIDATE)
            && served.contains(&a.id)),
        "some 500s were not answered by the faulty {CANDIDATE}"
    );
    ok(format!(
        "all {} 500s were answered by the faulty backend ({CANDIDATE}'s access log has their x-load-id), none by Envoy or {PRIMARY}",
        errors.len()
    ));

    // The label as Envoy writes it and Prometheus stores it.
    let labels = prom.query_at(
        "count by (envoy_cluster_name) (envoy_cluster_upstream_rq_total)",
        at,
    )?;
    let names: Vec<String> = labels["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            s["metric"]["envoy_cluster_name"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    note(format!(
        "envoy_cluster_name values Prometheus scraped: {}",
        names.join(", ")
    ));
    let (_, raw) = iter8_e2e::tools::http_get(
        dp.translator.envoy.admin,
        "/stats/prometheus?filter=upstream_rq_5xx",
    )?;
    let line = raw
        .lines()
        .find(|l| l.starts_with("envoy_cluster_upstream_rq_xx{") && l.contains(&cluster_name))
        .unwrap_or("(none)");
    note(format!("Envoy's /stats/prometheus line: {line}"));

    let envoy_version = envoy_version()?;
    println!(
        "guard preset envoy: verified against real Envoy {envoy_version} /stats/prometheus scraped by Prometheus {}: {}; {}; before the faults: {}",
        prom.version(),
        c2.line(Some(("sent", sent_share))),
        p2.line(None),
        c1.line(None),
    );

    // istio and linkerd: the served traffic has ended; judged at a scrape after its last tick.
    step(
        3,
        format!("istio and linkerd presets: {TICKS} s of served traffic"),
    );
    for preset in [MeshPreset::Istio, MeshPreset::Linkerd] {
        let ended = tokio::task::block_in_place(|| mesh.finish(preset))?;
        let at = tokio::task::block_in_place(|| prom.wait_scraped_after(preset.job(), ended))?;
        let guard = guarded(
            routemap,
            &format!(
                "{{metrics: {}, interval: 10s, window: 30s, objectives: {{errorRate: 0.01, latencyP99: 200ms}}}}",
                preset.job()
            ),
        )?;
        let mut lines = Vec::new();
        for (target, traffic, want_kind) in [
            (candidate, FAULTY, VerdictKind::Failing),
            (primary, HEALTHY, VerdictKind::Healthy),
        ] {
            let j = judge_at(prom, &guard, target, at)?;
            let want_requests = (TICKS * traffic.iter().map(|t| t.per_tick).sum::<u64>()) as f64;
            let want_error = traffic.error_share();
            let want_p99 = traffic.p99(preset.buckets()) / 1000.0;
            note(format!(
                "{} {}: {}",
                preset.job(),
                target.deployment,
                j.verdict.summary()
            ));
            ensure!(
                j.verdict.kind == want_kind,
                "{} {}: want {}, got {}",
                preset.job(),
                target.deployment,
                want_kind.as_str(),
                j.verdict.summary()
            );
            let requests = j.requests.unwrap_or(f64::NAN);
            ensure!(
                (requests - want_requests).abs() <= want_requests * 0.01,
                "{} {}: {requests} requests, want {want_requests}",
                preset.job(),
                target.deployment
            );
            let rate = j.error_rate.unwrap_or(f64::NAN);
            ensure!(
                (rate - want_error).abs() <= ERROR_TOLERANCE,
                "{} {}: error rate {rate}, want {want_error} ± {ERROR_TOLERANCE}",
                preset.job(),
                target.deployment
            );
            let p99 = j.p99.unwrap_or(f64::NAN);
            ensure!(
                (p99 - want_p99).abs() <= want_p99 * 0.05,
                "{} {}: p99 {p99} s, want {want_p99} s ± 5%",
                preset.job(),
                target.deployment
            );
            ok(format!(
                "{} {}: {} (want {}): {requests} requests (served {want_requests}), error rate {rate:.4} (served {want_error}), p99 {p99:.4} s (histogram_quantile of the served buckets: {want_p99:.4} s)",
                preset.job(),
                target.deployment,
                j.verdict.kind.as_str(),
                want_kind.as_str()
            ));
            lines.push(j.line(Some(("served", want_error))));
        }
        println!(
            "guard preset {}: verified against {} exposition text (served by the test, {TICKS} s growing counters and histograms) scraped by Prometheus {}: {}",
            preset.job(),
            preset.format(),
            prom.version(),
            lines.join("; ")
        );
    }
    Ok(())
}

/// The routemap with `guard` set to `guard_yaml`, parsed and validated by routing-core; its guard.
fn guarded(routemap: &str, guard_yaml: &str) -> Result<GuardSpec> {
    let mut spec: serde_json::Value = serde_saphyr::from_str(routemap)?;
    spec["guard"] = serde_saphyr::from_str(guard_yaml)?;
    let spec = RouteMapSpec::from_yaml(&serde_json::to_string(&spec)?)
        .map_err(|e| anyhow!("routemap with guard {guard_yaml}: {e}"))?;
    spec.guard
        .map(|g| *g)
        .ok_or_else(|| anyhow!("no guard after parsing"))
}

fn ms_between(a: SystemTime, b: SystemTime) -> u128 {
    b.duration_since(a).unwrap_or_default().as_millis()
}

/// The Envoy binary's version (`1.40.0`).
fn envoy_version() -> Result<String> {
    let out = std::process::Command::new(envoy_path()?)
        .arg("--version")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // ".../envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    text.split('/')
        .find(|p| p.split('.').count() == 3 && p.split('.').all(|n| n.parse::<u32>().is_ok()))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no version in {text}"))
}

/// One load phase through Envoy, and when each request left in wall-clock time.
struct Phase {
    answers: Vec<Answer>,
    started: Instant,
    started_wall: SystemTime,
    ended: SystemTime,
}

impl Phase {
    async fn run(dp: &Dataplane<'_>, name: &str, secs: f64) -> Result<Phase> {
        let n = (RATE * secs) as usize;
        let (started, started_wall) = (Instant::now(), SystemTime::now());
        let load = Load::start(LoadSpec {
            addr: dp.listener(),
            host: HOST.into(),
            path: "/get".into(),
            rate: RATE,
            max: n,
            limit: Duration::from_secs_f64(secs + 10.0),
            clients: 8,
        });
        load.wait_scheduled(n).await;
        let answers = tokio::task::block_in_place(|| load.stop());
        let ended = SystemTime::now();
        let unmatched = phase_report(dp, NS, name, &answers).await?;
        ensure!(
            unmatched == 0,
            "{unmatched} answers not in the access log of the version they name"
        );
        let lost = answers.iter().filter(|a| a.status == 0).count();
        ensure!(lost == 0, "{lost} requests got no answer");
        Ok(Phase {
            answers,
            started,
            started_wall,
            ended,
        })
    }

    fn wall(&self, t: Instant) -> SystemTime {
        self.started_wall + t.saturating_duration_since(self.started)
    }

    /// Requests answered by `version` that left within `(from, to]`.
    fn sent_in(&self, version: &str, from: SystemTime, to: SystemTime) -> Vec<&Answer> {
        self.answers
            .iter()
            .filter(|a| a.app_version.as_deref() == Some(version))
            .filter(|a| {
                let w = self.wall(a.sent);
                w > from && w <= to
            })
            .collect()
    }
}

/// A judgement with what it measured.
struct Judged {
    version: String,
    verdict: Verdict,
    requests: Option<f64>,
    error_rate: Option<f64>,
    p99: Option<f64>,
    /// Requests the client sent to it in the window, and how many got 500 (envoy only).
    sent: usize,
    sent_errors: usize,
}

impl Judged {
    /// One line: `share` is the share of 500s the client got (envoy) or that was served.
    fn line(&self, share: Option<(&str, f64)>) -> String {
        let sent = share.map_or_else(String::new, |(what, s)| {
            format!(" ({what} {:.1}%)", s * 100.0)
        });
        let requests = if self.sent > 0 {
            format!(
                "{:.0} requests (client sent {})",
                self.requests.unwrap_or(f64::NAN),
                self.sent
            )
        } else {
            format!("{:.0} requests", self.requests.unwrap_or(f64::NAN))
        };
        format!(
            "{} error rate {:.3}{sent}, p99 {:.3} s, {requests} -> {}",
            self.version,
            self.error_rate.unwrap_or(f64::NAN),
            self.p99.unwrap_or(f64::NAN),
            self.verdict.kind.as_str()
        )
    }
}

/// Renders the preset's queries for `target`, sends each exactly as `query_request` gives it
/// (at `at`), reads the answers with `parse_answer` and judges.
fn judge_at(
    prom: &Prometheus,
    guard: &GuardSpec,
    target: &Target,
    at: SystemTime,
) -> Result<Judged> {
    let queries = render_queries(guard, target)?;
    let at_unix = at.duration_since(UNIX_EPOCH)?;
    let timeout = request_timeout(guard.interval.get());
    let ask = |q: &str| -> Result<PromAnswer, QueryError> {
        let r = query_request(q, at_unix, timeout);
        match http_get(prom.addr(), &r.path_and_query, r.timeout) {
            Ok((status, body)) => parse_answer(status, &body),
            Err(e) => Err(QueryError::Unreachable(format!("{e:#}"))),
        }
    };
    let requests = ask(&queries.requests);
    let answers: Vec<_> = queries.objectives.iter().map(|o| ask(&o.query)).collect();
    let verdict = judge(guard, &queries, &requests, &answers);
    let value = |o: Objective| {
        verdict
            .findings
            .iter()
            .find(|f| f.objective == o)
            .and_then(|f| f.value())
    };
    Ok(Judged {
        version: target.version.clone(),
        requests: verdict.requests,
        error_rate: value(Objective::ErrorRate),
        p99: value(Objective::LatencyP99),
        verdict,
        sent: 0,
        sent_errors: 0,
    })
}

/// [`judge_at`] for the envoy preset, checking the request count against what the client sent
/// to the version in the window.
fn judge_envoy(
    prom: &Prometheus,
    guard: &GuardSpec,
    target: &Target,
    at: SystemTime,
    phase: &Phase,
    window: Duration,
) -> Result<Judged> {
    let mut j = judge_at(prom, guard, target, at)?;
    let sent = phase.sent_in(&target.version, at - window, at);
    j.sent = sent.len();
    j.sent_errors = sent.iter().filter(|a| a.status == 500).count();
    note(format!("envoy {}: {}", target.version, j.verdict.summary()));
    let counted = j.requests.unwrap_or(f64::NAN);
    // Prometheus' increase() extrapolates the first sample in the window to its start: within
    // a few percent of the count under a steady load.
    let tolerance = (j.sent as f64 * 0.05).max(10.0);
    ensure!(
        (counted - j.sent as f64).abs() <= tolerance,
        "envoy {}: Prometheus counts {counted} requests in the window, the client sent {} (± {tolerance:.0})",
        target.version,
        j.sent
    );
    ok(format!(
        "envoy {}: {counted:.0} requests counted in the {}s window, {} sent by the client (± {tolerance:.0})",
        target.version,
        window.as_secs(),
        j.sent
    ));
    Ok(j)
}

/// Fails unless the verdict is `kind` (and the error rate `error_rate`, if given).
fn expect(j: &Judged, kind: VerdictKind, error_rate: Option<f64>) -> Result<()> {
    ensure!(
        j.verdict.kind == kind,
        "{}: want {}, got {}",
        j.version,
        kind.as_str(),
        j.verdict.summary()
    );
    if let Some(want) = error_rate {
        ensure!(
            j.error_rate == Some(want),
            "{}: error rate {:?}, want {want}",
            j.version,
            j.error_rate
        );
    }
    ok(format!(
        "{}: {} ({})",
        j.version,
        kind.as_str(),
        j.verdict.summary()
    ));
    Ok(())
}

// --- Istio's and Linkerd's metrics, served ---------------------------------------------------

/// Requests of one kind, per tick.
#[derive(Debug, Clone, Copy)]
struct Requests {
    code: u16,
    latency_ms: f64,
    per_tick: u64,
}

/// A workload's traffic per tick.
trait Traffic {
    fn error_share(&self) -> f64;
    fn p99(&self, buckets: &[f64]) -> f64;
}

impl Traffic for [Requests] {
    fn error_share(&self) -> f64 {
        let all: u64 = self.iter().map(|r| r.per_tick).sum();
        let errors: u64 = self
            .iter()
            .filter(|r| r.code >= 500)
            .map(|r| r.per_tick)
            .sum();
        errors as f64 / all as f64
    }

    /// The 99th percentile as `histogram_quantile` computes it from these buckets: linear
    /// interpolation within the bucket holding rank 0.99 * count (the first bucket from 0).
    fn p99(&self, buckets: &[f64]) -> f64 {
        let total: u64 = self.iter().map(|r| r.per_tick).sum();
        let rank = 0.99 * total as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for &le in buckets {
            let cum: u64 = self
                .iter()
                .filter(|r| r.latency_ms <= le)
                .map(|r| r.per_tick)
                .sum();
            if cum as f64 >= rank {
                return lower + (le - lower) * (rank - below as f64) / (cum - below) as f64;
            }
            (lower, below) = (le, cum);
        }
        f64::INFINITY
    }
}

/// The primary: 50 requests a tick, all 200 in 3 ms.
const HEALTHY: &[Requests] = &[Requests {
    code: 200,
    latency_ms: 3.0,
    per_tick: 50,
}];
/// The candidate: 50 a tick, 10 of them 500 (20%); 5 of the 200s slow (180 ms).
const FAULTY: &[Requests] = &[
    Requests {
        code: 200,
        latency_ms: 7.0,
        per_tick: 35,
    },
    Requests {
        code: 200,
        latency_ms: 180.0,
        per_tick: 5,
    },
    Requests {
        code: 500,
        latency_ms: 7.0,
        per_tick: 10,
    },
];
/// What must not be selected: every request failing, slowly.
const NOISE: &[Requests] = &[Requests {
    code: 503,
    latency_ms: 900.0,
    per_tick: 40,
}];

/// Istio's `istio_request_duration_milliseconds` buckets (its default).
const ISTIO_BUCKETS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Linkerd's `response_latency_ms` buckets.
const LINKERD_BUCKETS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

#[derive(Debug, Clone, Copy)]
enum MeshPreset {
    Istio,
    Linkerd,
}

impl MeshPreset {
    fn job(self) -> &'static str {
        match self {
            MeshPreset::Istio => "istio",
            MeshPreset::Linkerd => "linkerd",
        }
    }
    fn format(self) -> &'static str {
        match self {
            MeshPreset::Istio => {
                "Istio-format (istio_requests_total, istio_request_duration_milliseconds_bucket; reporter destination and source)"
            }
            MeshPreset::Linkerd => {
                "Linkerd-proxy-format (response_total, response_latency_ms_bucket; direction inbound and outbound)"
            }
        }
    }
    fn buckets(self) -> &'static [f64] {
        match self {
            MeshPreset::Istio => ISTIO_BUCKETS,
            MeshPreset::Linkerd => LINKERD_BUCKETS,
        }
    }
}

/// Exposition text, grouped by metric family.
#[derive(Default)]
struct Text {
    families: Vec<(String, &'static str, Vec<String>)>,
}

impl Text {
    fn add(&mut self, family: &str, kind: &'static str, line: String) {
        match self.families.iter_mut().find(|(f, _, _)| f == family) {
            Some((_, _, lines)) => lines.push(line),
            None => self.families.push((family.into(), kind, vec![line])),
        }
    }

    /// A counter of `requests` per status code after `tick` ticks; a code's series appears with
    /// its first request (as Istio and Linkerd create them), the others from the start.
    fn counters(
        &mut self,
        name: &str,
        labels: &dyn Fn(u16) -> String,
        traffic: &[Requests],
        tick: u64,
    ) {
        let mut codes: Vec<u16> = traffic.iter().map(|r| r.code).collect();
        codes.dedup();
        for code in codes {
            let n: u64 = traffic
                .iter()
                .filter(|r| r.code == code)
                .map(|r| r.per_tick * tick)
                .sum();
            if code >= 500 && n == 0 {
                continue;
            }
            self.add(name, "counter", format!("{name}{{{}}} {n}", labels(code)));
        }
    }

    /// A histogram in milliseconds per status code after `tick` ticks (same appearance rule).
    fn histograms(
        &mut self,
        name: &str,
        labels: &dyn Fn(u16) -> String,
        buckets: &[f64],
        traffic: &[Requests],
        tick: u64,
    ) {
        let mut codes: Vec<u16> = traffic.iter().map(|r| r.code).collect();
        codes.dedup();
        for code in codes {
            let of_code: Vec<&Requests> = traffic.iter().filter(|r| r.code == code).collect();
            let count: u64 = of_code.iter().map(|r| r.per_tick * tick).sum();
            if code >= 500 && count == 0 {
                continue;
            }
            let l = labels(code);
            for le in buckets {
                let c: u64 = of_code
                    .iter()
                    .filter(|r| r.latency_ms <= *le)
                    .map(|r| r.per_tick * tick)
                    .sum();
                self.add(
                    name,
                    "histogram",
                    format!("{name}_bucket{{{l},le=\"{le}\"}} {c}"),
                );
            }
            let sum: f64 = of_code
                .iter()
                .map(|r| r.latency_ms * (r.per_tick * tick) as f64)
                .sum();
            self.add(
                name,
                "histogram",
                format!("{name}_bucket{{{l},le=\"+Inf\"}} {count}"),
            );
            self.add(name, "histogram", format!("{name}_sum{{{l}}} {sum}"));
            self.add(name, "histogram", format!("{name}_count{{{l}}} {count}"));
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (family, kind, lines) in &self.families {
            out.push_str(&format!("# TYPE {family} {kind}\n"));
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// A workload as the meshes label it.
#[derive(Debug, Clone)]
struct Workload {
    namespace: String,
    deployment: String,
    service: String,
}

impl Workload {
    fn of(t: &Target) -> Self {
        Workload {
            namespace: t.namespace.clone(),
            deployment: t.deployment.clone(),
            service: t.service.clone(),
        }
    }
}

/// Istio's standard metrics after `tick` ticks: for each workload, what its own sidecar reports
/// (`reporter="destination"`) and what the client's sidecar reports (`reporter="source"`, the
/// same requests again), plus a workload of the candidate's name in another namespace.
fn istio_text(primary: &Workload, candidate: &Workload, tick: u64) -> String {
    let mut t = Text::default();
    let other = Workload {
        namespace: "other".into(),
        ..candidate.clone()
    };
    for (w, traffic) in [(primary, HEALTHY), (candidate, FAULTY), (&other, NOISE)] {
        for reporter in ["destination", "source"] {
            let labels = |code: u16| {
                format!(
                    "reporter=\"{reporter}\",source_workload=\"istio-ingressgateway\",source_workload_namespace=\"istio-system\",source_app=\"istio-ingressgateway\",destination_workload=\"{d}\",destination_workload_namespace=\"{ns}\",destination_app=\"httpbin\",destination_version=\"{d}\",destination_service=\"{s}.{ns}.svc.cluster.local\",destination_service_name=\"{s}\",destination_service_namespace=\"{ns}\",destination_cluster=\"Kubernetes\",request_protocol=\"http\",response_code=\"{code}\",grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"{policy}\"",
                    d = w.deployment,
                    s = w.service,
                    ns = w.namespace,
                    policy = if reporter == "destination" {
                        "mutual_tls"
                    } else {
                        "unknown"
                    },
                )
            };
            t.counters("istio_requests_total", &labels, traffic, tick);
            t.histograms(
                "istio_request_duration_milliseconds",
                &labels,
                ISTIO_BUCKETS,
                traffic,
                tick,
            );
        }
    }
    t.render()
}

/// Linkerd's proxy metrics after `tick` ticks: each workload's inbound side, the primary's
/// outbound calls (failing ones), and a workload of the candidate's name in another namespace.
fn linkerd_text(primary: &Workload, candidate: &Workload, tick: u64) -> String {
    let mut t = Text::default();
    let other = Workload {
        namespace: "other".into(),
        ..candidate.clone()
    };
    for (w, direction, traffic) in [
        (primary, "inbound", HEALTHY),
        (candidate, "inbound", FAULTY),
        (primary, "outbound", NOISE),
        (&other, "inbound", NOISE),
    ] {
        let labels = |code: u16| {
            format!(
                "direction=\"{direction}\",authority=\"{s}.{ns}.svc.cluster.local:80\",target_addr=\"10.42.0.7:80\",tls=\"true\",namespace=\"{ns}\",deployment=\"{d}\",pod=\"{d}-5d9c8b7f6-x2x7q\",pod_template_hash=\"5d9c8b7f6\",status_code=\"{code}\",classification=\"{class}\"",
                s = w.service,
                ns = w.namespace,
                d = w.deployment,
                class = if code >= 500 { "failure" } else { "success" },
            )
        };
        // The latency histogram has no classification label.
        let latency_labels = |code: u16| {
            format!(
                "direction=\"{direction}\",authority=\"{s}.{ns}.svc.cluster.local:80\",target_addr=\"10.42.0.7:80\",tls=\"true\",namespace=\"{ns}\",deployment=\"{d}\",pod=\"{d}-5d9c8b7f6-x2x7q\",pod_template_hash=\"5d9c8b7f6\",status_code=\"{code}\"",
                s = w.service,
                ns = w.namespace,
                d = w.deployment,
            )
        };
        t.counters("response_total", &labels, traffic, tick);
        t.histograms(
            "response_latency_ms",
            &latency_labels,
            LINKERD_BUCKETS,
            traffic,
            tick,
        );
    }
    t.render()
}

/// Makes one served mesh's traffic grow: tick `k` (1 to [`TICKS`]) is served half a scrape
/// interval after the target's scrape, so that each scrape sees exactly one more tick (and
/// `increase` finds exactly what was served: a series that appears with its first tick is
/// extrapolated back by exactly one interval).
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<SystemTime>>,
}

impl Ticker {
    /// `text(k)` served by `to` from tick `k`'s time on; the first tick half an interval after
    /// the next scrape following `scrape` (a scrape's time: they come every interval from there).
    fn start(
        to: Arc<Exposition>,
        scrape: SystemTime,
        text: impl Fn(u64) -> String + Send + 'static,
    ) -> Ticker {
        let interval = prometheus::SCRAPE_INTERVAL;
        let mut first = scrape + interval / 2;
        while first < SystemTime::now() + interval / 4 {
            first += interval;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for k in 1..=TICKS {
                let at = first + interval * (k as u32 - 1);
                while SystemTime::now() < at {
                    if flag.load(Ordering::SeqCst) {
                        return SystemTime::now();
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                to.set(text(k));
            }
            SystemTime::now()
        });
        Ticker {
            stop,
            thread: Some(thread),
        }
    }

    /// Waits for the last tick; returns when it was served.
    fn finish(&mut self) -> Result<SystemTime> {
        let thread = self
            .thread
            .take()
            .ok_or_else(|| anyhow!("the served traffic already ended"))?;
        let ended = thread
            .join()
            .map_err(|_| anyhow!("the served traffic's thread panicked"))?;
        if self.stop.load(Ordering::SeqCst) {
            bail!("the served traffic was stopped early");
        }
        Ok(ended)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The two served meshes, and their traffic once started.
struct Mesh {
    istio: Arc<Exposition>,
    linkerd: Arc<Exposition>,
    primary: Workload,
    candidate: Workload,
    tickers: Vec<(MeshPreset, Ticker)>,
}

impl Mesh {
    /// Serves tick 0 (no requests yet).
    fn start(primary: &Target, candidate: &Target) -> Result<Mesh> {
        let (p, c) = (Workload::of(primary), Workload::of(candidate));
        Ok(Mesh {
            istio: Arc::new(Exposition::start(istio_text(&p, &c, 0))?),
            linkerd: Arc::new(Exposition::start(linkerd_text(&p, &c, 0))?),
            primary: p,
            candidate: c,
            tickers: Vec::new(),
        })
    }

    /// Starts the traffic of both, each in step with its scrapes.
    fn run(&mut self, prom: &Prometheus) -> Result<()> {
        for preset in [MeshPreset::Istio, MeshPreset::Linkerd] {
            let scrape = prom.last_scrape(preset.job())?;
            let (p, c) = (self.primary.clone(), self.candidate.clone());
            let ticker = match preset {
                MeshPreset::Istio => {
                    Ticker::start(self.istio.clone(), scrape, move |k| istio_text(&p, &c, k))
                }
                MeshPreset::Linkerd => Ticker::start(self.linkerd.clone(), scrape, move |k| {
                    linkerd_text(&p, &c, k)
                }),
            };
            self.tickers.push((preset, ticker));
        }
        Ok(())
    }

    /// Waits for the last tick of `preset`; returns when it was served.
    fn finish(&mut self, preset: MeshPreset) -> Result<SystemTime> {
        let (_, ticker) = self
            .tickers
            .iter_mut()
            .find(|(p, _)| p.job() == preset.job())
            .ok_or_else(|| anyhow!("the {} traffic never started", preset.job()))?;
        let ended = ticker.finish()?;
        let served = match preset {
            MeshPreset::Istio => self.istio.scrapes(),
            MeshPreset::Linkerd => self.linkerd.scrapes(),
        };
        note(format!(
            "{} traffic: {TICKS} ticks served, {served} scrapes answered",
            preset.job()
        ));
        Ok(ended)
    }
}

#[test]
fn the_expected_p99_is_histogram_quantile_s() {
    // All in (1, 5]: 1 + 4 * 0.99.
    assert!((HEALTHY.p99(ISTIO_BUCKETS) - 4.96).abs() < 1e-9);
    // 90% in (5, 10], 10% in (100, 250]: rank 49.5 of 50 is 4.5 into the last 5.
    assert!((FAULTY.p99(ISTIO_BUCKETS) - 235.0).abs() < 1e-9);
    assert!((FAULTY.p99(LINKERD_BUCKETS) - 190.0).abs() < 1e-9);
    assert!((FAULTY.error_share() - 0.2).abs() < 1e-12);
}
