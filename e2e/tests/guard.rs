//! The guard end to end (issue 21): the seed candidate release with a guard
//! (`fixtures/charts/values/seed-2-guarded.yaml`: errorRate 5%, every 2 s over 10 s, failAfter 2)
//! installed with real helm, the real controller judging its candidate from Debian's Prometheus,
//! which scrapes the test Envoy's `/stats/prometheus` every second; the candidate `httpbin-1` is
//! the faulty backend (`e2e/apps/faulty.py`), the primary a real httpbin, under the open-loop
//! load of the traffic tests (250 requests/s, half with `traffic: test`).
//!
//! 1. A failing candidate (20% 500s), K runs: the time from the first failing answer until Envoy
//!    serves the route without it, the failed answers before, and none after; exactly one
//!    Warning `CandidateWithdrawn` naming the objective, value, limit, window and query; the
//!    status annotation names it. In the first run the controller restarts while the candidate
//!    is withdrawn: it stays out (no failed answer, no second Warning).
//! 2. A healthy candidate under the same load for 2 minutes, in its own namespace, while the
//!    failing runs take place: judged (healthy verdicts counted by the controller's metrics),
//!    never withdrawn.
//! 3. Prometheus stopped, the candidate failing: no withdrawal, one Warning
//!    `GuardPrometheusUnreachable`.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use iter8_e2e::gateway::dataplane::Dataplane;
use iter8_e2e::gateway::faulty::FaultSpec;
use iter8_e2e::gateway::traffic::Answer;
use iter8_e2e::prelude::*;
use iter8_e2e::prometheus::Prometheus;
use iter8_e2e::traffic::{canary_ready, load, phase_report, routed};
use iter8_e2e::wait::{timeout, wait_for};

const ROUTE: &str = "httpbin";
const ROUTEMAP: &str = "httpbin-routemap";
/// Runs of the failing candidate.
const RUNS: usize = 5;
/// The guard's bound, as the README states it: interval x failAfter + window, plus the scrape
/// interval (1 s) and the route's way to Envoy.
const BOUND: Duration = Duration::from_secs(2 * 2 + 10 + 1 + 2);
/// Share of 500s of the failing candidate.
const FAILING: FaultSpec = FaultSpec {
    error_share: 0.2,
    latency: Duration::ZERO,
};
/// How long the healthy candidate is watched.
const HEALTHY_FOR: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard() -> Result<()> {
    let cluster = Cluster::start("guard").await?;
    let mut dp = Dataplane::start(&cluster, &[])?;
    let mut prometheus = Prometheus::scraping_envoy(&cluster, &dp)?;
    let url = prometheus.url();
    let mut suite = Suite::new(&cluster)?;
    // The healthy candidate's two minutes under load go on while the failing runs take place
    // (each release in its own namespace, with its own controller and load).
    let mut watched = None;
    suite
        .run("a healthy candidate under load", async {
            watched = Some(healthy_start(&cluster, &mut dp, &url).await?);
            Ok(())
        })
        .await;
    suite
        .run(
            "a failing candidate is withdrawn",
            failing(&cluster, &mut dp, &url),
        )
        .await;
    if let Some(watched) = watched {
        suite
            .run(
                "a healthy candidate is never withdrawn",
                healthy_finish(watched, &cluster, &mut dp),
            )
            .await;
    }
    prometheus.stop();
    suite
        .run(
            "Prometheus stopped: no withdrawal, one Warning",
            prometheus_down(&cluster, &mut dp, &url),
        )
        .await;
    suite.finish()
}

/// The guarded release in `ns`, its candidate the faulty backend, routed; and its controller.
async fn guarded_release<'a>(
    cluster: &'a Cluster,
    dp: &mut Dataplane<'_>,
    ns: &str,
    faults: FaultSpec,
    prometheus: &str,
) -> Result<(Release<'a>, Controller)> {
    cluster.create_namespace(ns).await?;
    let mut release = Release::new(cluster, "httpbin", ns);
    release.upgrade(&[&values("seed-2-guarded.yaml")]).await?;
    let mut controller = Controller::start_with(
        cluster,
        ns,
        "iter8-controller-0",
        &["--guard-prometheus", prometheus],
    )?;
    controller.wait_ready().await?;
    dp.faulty_backend(ns, "httpbin-1", faults)?;
    canary_ready(cluster, dp, ns, ROUTE).await?;
    Ok((release, controller))
}

fn failed(answers: &[&Answer]) -> usize {
    answers.iter().filter(|a| a.cause().is_some()).count()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn failing(cluster: &Cluster, dp: &mut Dataplane<'_>, prometheus: &str) -> Result<()> {
    let mut times = Vec::new();
    let (mut before, mut after_total) = (0, 0);
    for run in 0..RUNS {
        let ns = format!("guard-fail-{run}");
        let host = format!("httpbin.{ns}");
        step(
            run + 1,
            format!("run {}: candidate answering 20% 500s under load", run + 1),
        );
        let (_release, mut controller) =
            guarded_release(cluster, dp, &ns, FAILING, prometheus).await?;
        let load = load(dp, &host, Duration::from_secs(60));
        let started = load.started;
        routed(
            cluster,
            dp,
            &ns,
            ROUTE,
            "the candidate withdrawn: one rule to httpbin-0",
            one_rule_to("httpbin-0"),
        )
        .await?;
        let gone = Instant::now();
        let took = gone - started;
        // 2 s of load after the withdrawal reached Envoy.
        load.wait_scheduled(load.scheduled() + 500).await;
        if run == 0 {
            // The controller restarts while the candidate is withdrawn: the new process reads
            // the withdrawal back from the route's status and keeps the candidate out (no
            // answer from it, no second Warning).
            controller.stop()?;
            controller = Controller::start_with(
                cluster,
                &ns,
                "iter8-controller-1",
                &["--guard-prometheus", prometheus],
            )?;
            controller.wait_ready().await?;
            controller.wait_caught_up(cluster, &ns).await?;
            load.wait_scheduled(load.scheduled() + 500).await;
            let live = cluster.existing_route(&ns, ROUTE).await?;
            one_rule_to("httpbin-0")(&live).map_err(|e| anyhow!(e))?;
            ok(format!(
                "controller restarted while httpbin-1 was withdrawn: still withdrawn ({})",
                live.describe()
            ));
        }
        let answers = load.stop();
        let events: Vec<String> = cluster
            .events(&ns, ROUTEMAP)
            .await?
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("CandidateWithdrawn"))
            .filter_map(|e| e.message)
            .collect();
        let status = cluster
            .routemap_status(&ns, ROUTEMAP)
            .await?
            .ok_or_else(|| anyhow!("no status on the route"))?;
        controller.stop()?;
        dp.stop_backend(&ns, "httpbin-0");
        dp.stop_backend(&ns, "httpbin-1");
        phase_report(dp, &ns, "guard", &answers).await?;

        let (pre, post): (Vec<&Answer>, Vec<&Answer>) = answers.iter().partition(|a| a.sent < gone);
        let (f_pre, f_post) = (failed(&pre), failed(&post));
        ensure!(
            events.len() == 1,
            "{} CandidateWithdrawn Events: {events:#?}",
            events.len()
        );
        let event = &events[0];
        for part in [
            "candidate httpbin-1 withdrawn by the guard: errorRate ",
            "is over the limit 0.05 over 10s (",
            "2 failing verdicts in a row; query: ",
            "envoy_cluster_name=\"",
        ] {
            ensure!(event.contains(part), "the Event lacks {part:?}: {event}");
        }
        ensure!(
            status["withdrawn"]["httpbin-1"]["why"]
                .as_str()
                .is_some_and(|w| w.starts_with("errorRate "))
                && status["withdrawn"]["httpbin-1"]["identity"].is_string(),
            "the status does not name the withdrawn candidate with why and identity: {status}"
        );
        ok(format!(
            "withdrawn {} ms after the first failing answer; {f_pre} failed answers before, {f_post} after ({} requests after); Event: {event}",
            took.as_millis(),
            post.len()
        ));
        ensure!(f_post == 0, "{f_post} failed answers after the withdrawal");
        ensure!(!post.is_empty(), "no requests after the withdrawal");
        ensure!(
            took <= BOUND,
            "withdrawn after {took:?}, more than the bound {BOUND:?}"
        );
        times.push(took);
        before += f_pre;
        after_total += f_post;
    }
    times.sort();
    note(format!(
        "guard: failing candidate withdrawn after p50 {:.1} s, p99 {:.1} s over {RUNS} runs; {before} failed answers before withdrawal; {after_total} failed answers after",
        percentile(&times, 0.5).as_secs_f64(),
        percentile(&times, 0.99).as_secs_f64()
    ));
    Ok(())
}

/// The healthy release, its controller and its load, watched for [`HEALTHY_FOR`].
struct Watched<'a> {
    _release: Release<'a>,
    controller: Controller,
    load: iter8_e2e::gateway::traffic::Load,
    started: Instant,
}

async fn healthy_start<'a>(
    cluster: &'a Cluster,
    dp: &mut Dataplane<'_>,
    prometheus: &str,
) -> Result<Watched<'a>> {
    step(1, "a healthy candidate under load for 2 minutes");
    let ns = "guard-healthy";
    let (release, controller) =
        guarded_release(cluster, dp, ns, FaultSpec::HEALTHY, prometheus).await?;
    let load = load(
        dp,
        &format!("httpbin.{ns}"),
        HEALTHY_FOR + Duration::from_secs(60),
    );
    Ok(Watched {
        _release: release,
        controller,
        started: load.started,
        load,
    })
}

async fn healthy_finish(
    watched: Watched<'_>,
    cluster: &Cluster,
    dp: &mut Dataplane<'_>,
) -> Result<()> {
    let ns = "guard-healthy";
    let Watched {
        mut controller,
        load,
        started,
        ..
    } = watched;
    tokio::time::sleep_until((started + HEALTHY_FOR).into()).await;
    let answers = load.stop();
    let healthy_verdicts = controller.metric("iter8_guard_verdicts_total{verdict=\"healthy\"}")?;
    let withdrawals = controller.metric("iter8_guard_withdrawals_total")?;
    let events = cluster
        .event_count(ns, ROUTEMAP, "CandidateWithdrawn")
        .await?;
    let live = cluster.existing_route(ns, ROUTE).await?;
    controller.stop()?;
    dp.stop_backend(ns, "httpbin-0");
    dp.stop_backend(ns, "httpbin-1");
    phase_report(dp, ns, "guard healthy", &answers).await?;
    let to_candidate = answers
        .iter()
        .filter(|a| a.app_version.as_deref() == Some("httpbin-1"))
        .count();
    note(format!(
        "guard: healthy candidate, {} requests, {withdrawals} withdrawals ({to_candidate} answered by the candidate, {healthy_verdicts} healthy verdicts, {} failed answers)",
        answers.len(),
        failed(&answers.iter().collect::<Vec<_>>())
    ));
    ensure!(
        withdrawals == 0.0 && events == 0,
        "a healthy candidate was withdrawn"
    );
    canary_split("httpbin-0", "httpbin-1")(&live).map_err(|e| anyhow!(e))?;
    // Judged all along: a verdict every 2 s once the window holds enough requests.
    ensure!(
        healthy_verdicts >= (HEALTHY_FOR.as_secs() / 2 - 10) as f64,
        "only {healthy_verdicts} healthy verdicts in {HEALTHY_FOR:?}"
    );
    ensure!(to_candidate > 0, "the candidate got no traffic");
    Ok(())
}

async fn prometheus_down(
    cluster: &Cluster,
    dp: &mut Dataplane<'_>,
    prometheus: &str,
) -> Result<()> {
    let ns = "guard-down";
    let host = format!("httpbin.{ns}");
    step(1, "Prometheus is stopped; the candidate fails under load");
    let (_release, mut controller) = guarded_release(cluster, dp, ns, FAILING, prometheus).await?;
    let load = load(dp, &host, Duration::from_secs(40));
    wait_for(
        "one GuardPrometheusUnreachable Event",
        timeout(),
        || async {
            let n = cluster
                .event_count(ns, ROUTEMAP, "GuardPrometheusUnreachable")
                .await?;
            Ok(if n >= 1 { Ok(n) } else { Err(format!("{n}")) })
        },
    )
    .await?;
    // Five times the guard's bound of judgements with Prometheus away.
    tokio::time::sleep(BOUND).await;
    let answers = load.stop();
    let unreachable = cluster
        .event_count(ns, ROUTEMAP, "GuardPrometheusUnreachable")
        .await?;
    let withdrawn = cluster
        .event_count(ns, ROUTEMAP, "CandidateWithdrawn")
        .await?;
    let live = cluster.existing_route(ns, ROUTE).await?;
    let queries = controller.metric("iter8_guard_queries_total{result=\"unreachable\"}")?;
    controller.stop()?;
    dp.stop_backend(ns, "httpbin-0");
    dp.stop_backend(ns, "httpbin-1");
    note(format!(
        "guard: Prometheus stopped, {} requests, {withdrawn} withdrawals, {unreachable} GuardPrometheusUnreachable Warning ({queries} queries found it unreachable)",
        answers.len()
    ));
    ensure!(withdrawn == 0, "withdrawn while Prometheus was down");
    ensure!(unreachable == 1, "{unreachable} Warnings, want exactly 1");
    ensure!(queries > 10.0, "the guard kept asking: {queries} queries");
    canary_split("httpbin-0", "httpbin-1")(&live).map_err(|e| anyhow!(e))?;
    Ok(())
}
