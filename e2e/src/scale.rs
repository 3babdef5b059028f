//! The scale measurements on a [`Fleet`]: a cold start (time until every route is correct, and
//! every write it took), no-op churn (writes to watched objects that change no routing), and the
//! reaction latency of one readiness flip against the floor of one bare apply.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_adapter::kube_types::to_gateway;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, Patch, PatchParams};
use routing_core::HttpRoute;
use serde_json::{Value, json};

use crate::builders::{app, deployment_status};
use crate::cluster::Cluster;
use crate::controller::{Controller, Launch};
use crate::fleet::{CONCURRENCY, Fleet};
use crate::metrics::{APPLIED, sum_series};
use crate::out::say;
use crate::status_probe::StatusProbe;
use crate::tracker::{Tracker, drain, probe, wait_rules};
use crate::wait::wait_every;

/// Limit of a wait for the controller to catch up after churn (thousands of writes to judge).
const CATCH_UP: Duration = Duration::from_secs(300);

/// Poll interval while timing a cold start.
const TICK: Duration = Duration::from_millis(20);

/// The controller as the bench runs it: leader election on, as deployed; `info` logs (debug logs
/// would cost time at scale); under `ITER8_SCALE_WRAP` if set (e.g. `heaptrack -o /tmp/ctl`).
pub fn launch(cluster: &Cluster, ns: &str, kubeconfig: Option<&Path>) -> Result<Controller> {
    launch_with(cluster, ns, kubeconfig, &[])
}

/// [`launch`] with extra flags (e.g. `--guard-prometheus URL`).
pub fn launch_with(
    cluster: &Cluster,
    ns: &str,
    kubeconfig: Option<&Path>,
    extra: &[&str],
) -> Result<Controller> {
    let in_flight = in_flight().to_string();
    let mut launch = Launch::new(cluster, ns, "scale-0")
        .log_level("info")
        .args(&["--max-writes-in-flight", &in_flight])
        .args(extra)
        .wrap(&std::env::var("ITER8_SCALE_WRAP").unwrap_or_default());
    if let Some(kubeconfig) = kubeconfig {
        launch = launch.kubeconfig(kubeconfig);
    }
    launch.start()
}

/// Writes in flight, of the controller and of the floor: `ITER8_SCALE_IN_FLIGHT`, else the
/// controller's default.
pub fn in_flight() -> usize {
    std::env::var("ITER8_SCALE_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(routemap_index::config::DEFAULT_MAX_WRITES_IN_FLIGHT)
        .max(1)
}

/// How a cold start runs the controller.
#[derive(Debug, Clone, Default)]
pub struct ColdStartAs {
    /// Its kubeconfig, when not the administrator's (whom the API server never throttles).
    pub kubeconfig: Option<PathBuf>,
}

/// A fleet as a cold start finds it: `n` releases in namespace `ns` (created here), the even
/// ones with their route and status already as the controller would leave them, the odd ones
/// without, and a tracker watching the routes.
#[derive(Debug)]
pub struct HalfCorrect {
    /// The releases.
    pub fleet: Fleet,
    /// Releases whose route is in place.
    pub correct: Vec<usize>,
    /// Releases whose route must be written.
    pub needing: Vec<usize>,
    /// The routes as a bare watch sees them.
    pub tracker: Tracker,
    /// How long seeding took.
    pub seed_secs: f64,
}

impl HalfCorrect {
    /// [`cold_start`] on this fleet, its summary logged after `label`.
    pub async fn cold_start(
        &self,
        cluster: &Cluster,
        limit: Duration,
        how: &ColdStartAs,
        label: &str,
    ) -> Result<(ColdStart, Controller)> {
        let (cold, ctl) = cold_start(
            cluster,
            &self.fleet,
            &self.tracker,
            &self.needing,
            limit,
            how,
        )
        .await?;
        say(format!("{label}: {}", cold.summary(self.needing.len())));
        Ok((cold, ctl))
    }
}

/// Seeds a [`HalfCorrect`] fleet, saying how long each part took.
pub async fn half_correct(cluster: &Cluster, ns: &str, n: usize) -> Result<HalfCorrect> {
    cluster.create_namespace(ns).await?;
    let t = Instant::now();
    let fleet = crate::fleet::seed(cluster, ns, n).await?;
    let seed_secs = t.elapsed().as_secs_f64();
    say(format!(
        "seeded {n} releases ({} objects, {} API calls) in {seed_secs:.1}s",
        n * 5,
        n * 7
    ));
    let correct: Vec<usize> = (0..n).filter(|i| i % 2 == 0).collect();
    let needing: Vec<usize> = (0..n).filter(|i| i % 2 == 1).collect();
    let t = Instant::now();
    fleet.preapply(cluster, &correct).await?;
    say(format!(
        "pre-applied {} routes + status annotations as the controller would, in {:.1}s; {} missing",
        correct.len(),
        t.elapsed().as_secs_f64(),
        needing.len()
    ));
    let tracker = Tracker::start(cluster, ns, &fleet.want).await?;
    Ok(HalfCorrect {
        fleet,
        correct,
        needing,
        tracker,
        seed_secs,
    })
}

/// What a cold start did.
#[derive(Debug, Clone, Default)]
pub struct ColdStart {
    /// Process start -> every route correct.
    pub to_correct: Duration,
    /// Process start -> idle (no more writes of any kind), as dated by `/metrics` polling.
    pub to_idle: Duration,
    /// Process start -> the last status annotation written, as a watch sees it: every write of
    /// the cold start done (a routemap's status is its last write).
    pub to_written: Duration,
    /// Warning Events published.
    pub warnings: u64,
    /// Calls the API server throttled, retried after its delay (`iter8_api_throttled_total`).
    pub throttled: u64,
    /// `iter8_applies_total{result="applied"}`.
    pub applied: u64,
    /// `iter8_applies_total{result="unchanged"}`.
    pub unchanged: u64,
    /// Routes that changed (watch), among those that needed a write.
    pub needing_written: usize,
    /// Most changes seen on one route that needed a write.
    pub max_writes_per_route: u32,
    /// Changes seen on routes that were already correct.
    pub correct_written: u32,
    /// Events published (`iter8_events_total`).
    pub events: u64,
    /// Routemaps whose status annotation changed.
    pub status_writes: usize,
    /// Peak RSS of the controller, bytes.
    pub peak_rss: u64,
}

impl ColdStart {
    /// One line for the log.
    pub fn summary(&self, needing: usize) -> String {
        format!(
            "all routes correct {:.2}s after process start, last status written at {:.2}s (idle at {:.2}s); applied {} (unchanged {}); routes changed {}/{needing} needing, max {} per route, {} on correct routes; {} Events ({} Warning), {} status writes; {} calls throttled (429) and retried; peak RSS {:.1} MiB",
            self.to_correct.as_secs_f64(),
            self.to_written.as_secs_f64(),
            self.to_idle.as_secs_f64(),
            self.applied,
            self.unchanged,
            self.needing_written,
            self.max_writes_per_route,
            self.correct_written,
            self.events,
            self.warnings,
            self.status_writes,
            self.throttled,
            mib(self.peak_rss)
        )
    }
}

/// Starts a controller on a fleet whose `correct` releases have their routes and the rest
/// none, and measures until it is idle. Returns the still-running controller.
pub async fn cold_start(
    cluster: &Cluster,
    fleet: &Fleet,
    tracker: &Tracker,
    needing: &[usize],
    limit: Duration,
    how: &ColdStartAs,
) -> Result<(ColdStart, Controller)> {
    let status_before = cluster.status_annotations(&fleet.ns).await?;
    let probe = StatusProbe::start(cluster, &fleet.ns).await?;
    tracker.start_counting();
    let mut ctl = launch(cluster, &fleet.ns, how.kubeconfig.as_deref())?;
    let done = wait_every(
        "every route correct after the controller started",
        limit,
        TICK,
        || {
            let alive = ctl.check_alive();
            let state = tracker.all_correct_at().ok_or(format!(
                "{} of {} routes correct",
                tracker.correct(),
                fleet.want.len()
            ));
            async move {
                alive?;
                Ok(state)
            }
        },
    )
    .await?;
    // The evidence the counts below are final; the quiet period only dates "idle".
    ctl.wait_caught_up_within(cluster, &fleet.ns, limit).await?;
    let idle = ctl.wait_idle(Duration::from_secs(3), limit).await?;
    let metrics = ctl.metrics()?;
    let (last_status, _) = probe.last_change()?;
    let writes = tracker.writes();
    let needing_names: std::collections::HashSet<String> =
        Fleet::names(needing).into_iter().collect();
    let status_after = cluster.status_annotations(&fleet.ns).await?;
    let result = ColdStart {
        to_correct: done.duration_since(ctl.started),
        to_idle: idle.saturating_duration_since(ctl.started),
        to_written: last_status
            .unwrap_or(done)
            .max(done)
            .saturating_duration_since(ctl.started),
        warnings: sum_series(&metrics, "iter8_events_total{type=\"Warning\"") as u64,
        throttled: sum_series(&metrics, "iter8_api_throttled_total") as u64,
        applied: sum_series(&metrics, APPLIED) as u64,
        unchanged: sum_series(&metrics, "iter8_applies_total{result=\"unchanged\"}") as u64,
        needing_written: writes.keys().filter(|n| needing_names.contains(*n)).count(),
        max_writes_per_route: writes
            .iter()
            .filter(|(n, _)| needing_names.contains(*n))
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(0),
        correct_written: writes
            .iter()
            .filter(|(n, _)| !needing_names.contains(*n))
            .map(|(_, c)| *c)
            .sum(),
        events: sum_series(&metrics, "iter8_events_total") as u64,
        status_writes: status_after
            .iter()
            .filter(|(k, v)| status_before.get(*k) != Some(v))
            .count(),
        peak_rss: ctl.peak_rss().unwrap_or(0),
    };
    Ok((result, ctl))
}

/// What no-op churn did.
#[derive(Debug, Clone, Default)]
pub struct Churn {
    /// How long the churn ran.
    pub duration: Duration,
    /// Writes the bench made to watched objects.
    pub churn_writes: u64,
    /// Route applies by the controller meanwhile (`applied`).
    pub applied: u64,
    /// Route changes seen by the watch.
    pub route_changes: u32,
    /// Events published meanwhile.
    pub events: u64,
    /// Status annotations changed.
    pub status_writes: usize,
}

/// Writes that change no routing, for `duration`, `CONCURRENCY / 4` in flight: annotate
/// Services, relabel Deployments with an unrelated label, rewrite Deployment status with the
/// same `Available=True`, annotate routemaps (not their status).
pub async fn churn(
    cluster: &Cluster,
    fleet: &Fleet,
    tracker: &Tracker,
    ctl: &mut Controller,
    duration: Duration,
) -> Result<Churn> {
    ctl.wait_caught_up_within(cluster, &fleet.ns, CATCH_UP)
        .await?;
    let status_before = cluster.status_annotations(&fleet.ns).await?;
    let m0 = ctl.metrics()?;
    tracker.start_counting();
    let started = Instant::now();
    let n = fleet.releases.len();
    let client = cluster.client.clone();
    let ns = fleet.ns.clone();
    let ops = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers = (CONCURRENCY / 4).max(1);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let client = client.clone();
        let ns = ns.clone();
        let ops = ops.clone();
        tasks.push(tokio::spawn(async move {
            let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
            let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (w as u64 + 1);
            let pp = PatchParams::default();
            while started.elapsed() < duration {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let k = ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let i = (rng % n as u64) as usize;
                let v = (rng >> 32) % 2;
                let name = format!("{}-{v}", app(i));
                let tag = format!("{k}");
                let r = match k % 4 {
                    0 => svcs
                        .patch(
                            &name,
                            &pp,
                            &Patch::Merge(
                                json!({"metadata": {"annotations": {"bench/churn": tag}}}),
                            ),
                        )
                        .await
                        .map(|_| ()),
                    1 => deps
                        .patch(
                            &name,
                            &pp,
                            &Patch::Merge(json!({"metadata": {"labels": {"bench-churn": tag}}})),
                        )
                        .await
                        .map(|_| ()),
                    2 => deps
                        .patch_status(
                            &name,
                            &pp,
                            &Patch::Merge(deployment_status(true, 1, &format!("churn {tag}"))),
                        )
                        .await
                        .map(|_| ()),
                    _ => cms
                        .patch(
                            &format!("{}-routemap", app(i)),
                            &pp,
                            &Patch::Merge(
                                json!({"metadata": {"annotations": {"bench/churn": tag}}}),
                            ),
                        )
                        .await
                        .map(|_| ()),
                };
                r.with_context(|| format!("churn write {k}"))?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    // Positive evidence that the controller has judged every churn write before counting.
    ctl.wait_caught_up_within(cluster, &fleet.ns, CATCH_UP)
        .await?;
    let m1 = ctl.metrics()?;
    let applied = |m: &str| sum_series(m, APPLIED) as u64;
    let events = |m: &str| sum_series(m, "iter8_events_total") as u64;
    let status_after = cluster.status_annotations(&fleet.ns).await?;
    Ok(Churn {
        duration: elapsed,
        churn_writes: ops.load(std::sync::atomic::Ordering::Relaxed),
        applied: applied(&m1) - applied(&m0),
        route_changes: tracker.writes().values().sum(),
        events: events(&m1) - events(&m0),
        status_writes: status_after
            .iter()
            .filter(|(k, v)| status_before.get(*k) != Some(v))
            .count(),
    })
}

/// Percentile (nearest rank) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of unsorted values.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Reaction latency figures.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Flips measured.
    pub flips: usize,
    /// Status write sent -> route change seen.
    pub controller: Vec<Duration>,
    /// Status write answered -> route change seen.
    pub controller_from_commit: Vec<Duration>,
    /// Bare apply sent -> route change seen (the floor).
    pub floor: Vec<Duration>,
    /// Bare status write alone (request -> response).
    pub status_write: Vec<Duration>,
}

/// Flips the candidate of release 0 `flips` times (unavailable, available, ...), each time
/// timing the status write -> route change seen through a watch; interleaved with the floor:
/// a bare client's server-side apply of the same route (in namespace `floor_ns`, which the
/// controller does not watch) -> its change seen through a watch.
pub async fn latency(
    cluster: &Cluster,
    fleet: &mut Fleet,
    floor_ns: &str,
    flips: usize,
    warmup: usize,
) -> Result<Latency> {
    let a = app(0);
    let with_candidate = fleet.route(&a)?.clone();
    fleet.plan(false)?;
    let without_candidate = fleet.route(&a)?.clone();
    fleet.plan(true)?;
    let rules_with = with_candidate.spec.rules.len();
    let rules_without = without_candidate.spec.rules.len();
    ensure!(
        rules_with != rules_without,
        "the two route forms must differ in rules"
    );
    let floor_body = |r: &HttpRoute| -> Result<Value> {
        let mut j = serde_json::to_value(to_gateway(r)?)?;
        j["metadata"]["namespace"] = json!(floor_ns);
        j["metadata"]["name"] = json!("floor");
        Ok(j)
    };
    let floor_routes = cluster.routes(floor_ns);
    floor_routes
        .patch(
            "floor",
            &PatchParams::apply("bench-floor").force(),
            &Patch::Apply(&floor_body(&with_candidate)?),
        )
        .await?;
    let deps: Api<Deployment> = Api::namespaced(cluster.client.clone(), &fleet.ns);
    let candidate = format!("{a}-1");
    let mut ctl_rx = probe(cluster.routes(&fleet.ns), &a);
    let mut floor_rx = probe(floor_routes.clone(), "floor");
    wait_rules(&mut ctl_rx, rules_with, Duration::from_secs(10)).await?;
    wait_rules(&mut floor_rx, rules_with, Duration::from_secs(10)).await?;
    let mut out = Latency {
        flips,
        ..Default::default()
    };
    let limit = Duration::from_secs(10);
    for k in 0..(flips + warmup) {
        let available = k % 2 == 1;
        let rules = if available { rules_with } else { rules_without };
        // The controller's path: status write -> watch -> decide -> apply -> watch.
        tokio::time::sleep(Duration::from_millis(40)).await;
        drain(&mut ctl_rx);
        let t0 = Instant::now();
        deps.patch_status(
            &candidate,
            &PatchParams::default(),
            &Patch::Merge(deployment_status(available, 1, &format!("flip {k}"))),
        )
        .await?;
        let t1 = Instant::now();
        let seen = wait_rules(&mut ctl_rx, rules, limit)
            .await
            .with_context(|| format!("flip {k}: the controller did not update the route"))?;
        // The floor: one bare apply of the same route -> watch.
        tokio::time::sleep(Duration::from_millis(40)).await;
        drain(&mut floor_rx);
        let body = floor_body(if available {
            &with_candidate
        } else {
            &without_candidate
        })?;
        let f0 = Instant::now();
        floor_routes
            .patch(
                "floor",
                &PatchParams::apply("bench-floor").force(),
                &Patch::Apply(&body),
            )
            .await?;
        let floor_seen = wait_rules(&mut floor_rx, rules, limit)
            .await
            .with_context(|| format!("flip {k}: the floor route was not seen"))?;
        if k >= warmup {
            out.controller.push(seen.saturating_duration_since(t0));
            out.controller_from_commit
                .push(seen.saturating_duration_since(t1));
            out.status_write.push(t1 - t0);
            out.floor.push(floor_seen.saturating_duration_since(f0));
        }
    }
    for v in [
        &mut out.controller,
        &mut out.controller_from_commit,
        &mut out.floor,
        &mut out.status_write,
    ] {
        v.sort();
    }
    Ok(out)
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
