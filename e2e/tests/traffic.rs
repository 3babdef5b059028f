//! Real requests through a real proxy: the seed tutorial with its own `curl` checks under an
//! open-loop load, the time readiness flips take to reach the data plane (and the 503s they
//! cost), weight churn, mirroring, and the gateway's answer on the routemap. Envoy is programmed
//! from the live HTTPRoutes by the test-only translator (`iter8_e2e::gateway`); each version is a
//! real httpbin; the harness writes Deployment status and EndpointSlices (no kubelet here) and
//! plays the garbage collector. Every answer of the load is checked against the access log of
//! the httpbin it names.

#[path = "traffic/churn.rs"]
mod churn;
#[path = "traffic/flips.rs"]
mod flips;

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use iter8_e2e::gateway::dataplane::{Dataplane, translator_answer};
use iter8_e2e::gateway::traffic::{Answer, request};
use iter8_e2e::prelude::*;
use iter8_e2e::traffic::{
    causes, curl_expect, is_2xx, load, phase_report, routed, show_causes, split, tally,
    wait_gateway, within,
};
use iter8_e2e::wait::wait_every;

pub(crate) const ROUTE: &str = "httpbin";
const ROUTEMAP: &str = "httpbin-routemap";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic() -> Result<()> {
    let cluster = Cluster::start("traffic").await?;
    let mut dp = Dataplane::start(&cluster, &["bluegreen/my-gateway"])?;
    let mut suite = Suite::new(&cluster)?;
    suite
        .run(
            "seed tutorial through Envoy, under an open-loop load",
            tutorial(&cluster, &mut dp),
        )
        .await;
    suite
        .run(
            "time to traffic: readiness flips under load",
            flips::flips(&cluster, &mut dp),
        )
        .await;
    suite
        .run(
            "blue-green weight churn under load",
            churn::churn(&cluster, &mut dp),
        )
        .await;
    suite.run("mirror", mirror(&cluster, &mut dp)).await;
    suite
        .run(
            "backend Service deleted",
            missing_backend(&cluster, &mut dp),
        )
        .await;
    if let Ok(s) = dp.translator.stats.lock() {
        note(format!(
            "translator: {} Envoy updates, {} status writes, last error: {}",
            s.envoy_updates,
            s.status_writes,
            s.last_error.as_deref().unwrap_or("none")
        ));
    }
    suite.finish()
}

/// Waits until the route sends everything to httpbin-0 and Envoy serves it so: the tutorial's
/// curl answers from httpbin-0, with and without `traffic: test`.
pub(crate) async fn all_to_primary(
    cluster: &Cluster,
    dp: &Dataplane<'_>,
    ns: &str,
    host: &str,
) -> Result<()> {
    routed(
        cluster,
        dp,
        ns,
        ROUTE,
        "one rule to httpbin-0",
        one_rule_to("httpbin-0"),
    )
    .await?;
    curl_expect(dp, host, false, "HTTP/1.1 200 OK", Some("httpbin-0"))?;
    curl_expect(dp, host, true, "HTTP/1.1 200 OK", Some("httpbin-0"))
}

/// Requests scheduled at each state of the tutorial (about 10 s each at 250/s): the four
/// states before cleanup then carry more than 10,000 requests.
const DWELL: usize = 2_600;

async fn tutorial(cluster: &Cluster, dp: &mut Dataplane<'_>) -> Result<()> {
    let ns = "test";
    let host = "httpbin.test";
    step(1, "deploy the initial version (seed-1-initial.yaml)");
    let (mut release, mut controller) =
        release_with_controller(cluster, ns, "seed-1-initial.yaml").await?;
    dp.set_version(ns, "httpbin-0", true).await?;
    note(
        "EndpointSlice httpbin-0-e2e ready (127.0.0.1, its httpbin), deploy/httpbin-0 Available=True",
    );
    all_to_primary(cluster, dp, ns, host).await?;
    let gateway = wait_gateway(cluster, ns, ROUTEMAP, "accepted").await?;
    ok(format!(
        "the routemap's status annotation: gateway {gateway}"
    ));
    let accepted = wait_for("a RouteAccepted Event", timeout(), || async {
        let n = cluster.event_count(ns, ROUTEMAP, "RouteAccepted").await?;
        Ok(if n >= 1 { Ok(n) } else { Err("none".into()) })
    })
    .await?;
    ok(format!("{accepted} RouteAccepted Event(s) on {ROUTEMAP}"));

    // From here to the end of cleanup: the open-loop load, dwelling DWELL requests per state.
    let load = load(dp, host, Duration::from_secs(150));
    let dwell = |load: &iter8_e2e::gateway::traffic::Load| load.scheduled() + DWELL;
    load.wait_scheduled(dwell(&load)).await;

    step(2, "deploy the candidate (seed-2-candidate.yaml)");
    release.upgrade(&[&values("seed-2-candidate.yaml")]).await?;
    dp.backend(ns, "httpbin-1")?;
    dp.set_version(ns, "httpbin-1", false).await?;
    note(
        "httpbin-1 deployed, not ready: EndpointSlice httpbin-1-e2e written with its endpoint not ready",
    );
    cluster
        .wait_status(ns, ROUTEMAP, &["httpbin-0"], &["httpbin-0", "httpbin-1"])
        .await?;
    controller.wait_caught_up(cluster, ns).await?;
    dp.wait_programmed(ns, ROUTE).await?;
    curl_expect(dp, host, true, "HTTP/1.1 200 OK", Some("httpbin-0"))?;
    ok("while httpbin-1 is not ready, traffic: test still reaches httpbin-0");
    load.wait_scheduled(dwell(&load)).await;
    dp.set_version(ns, "httpbin-1", true).await?;
    note("httpbin-1's endpoint ready, deploy/httpbin-1 Available=True");
    routed(
        cluster,
        dp,
        ns,
        ROUTE,
        "a traffic: test rule to httpbin-1",
        canary_split("httpbin-0", "httpbin-1"),
    )
    .await?;
    curl_expect(dp, host, true, "HTTP/1.1 200 OK", Some("httpbin-1"))?;
    curl_expect(dp, host, false, "HTTP/1.1 200 OK", Some("httpbin-0"))?;
    load.wait_scheduled(dwell(&load)).await;

    step(
        3,
        "promote: redefine version 0, remove version 1 (seed-3-promote.yaml, new image)",
    );
    let promote = promote_with_new_image(&cluster.dir, "traffic-promote-new-image")?;
    let removal_started = Instant::now();
    release
        .upgrade(&[&values("seed-3-promote.yaml"), &promote])
        .await?;
    // The Service httpbin-1 is gone: the EndpointSlice controller would delete its slice.
    dp.delete_slice(ns, "httpbin-1").await?;
    routed(cluster, dp, ns, ROUTE, "the candidate rule removed", |r| {
        (r.rules() == 1)
            .then_some(())
            .ok_or_else(|| "still a candidate rule".into())
    })
    .await?;
    let removal_ended = Instant::now();
    note(format!(
        "version removal window (upgrade sent -> route without httpbin-1 programmed): {} ms",
        (removal_ended - removal_started).as_millis()
    ));
    dp.stop_backend(ns, "httpbin-1");
    // The new httpbin-0 rolls out (same local process: the old pods serve until then).
    dp.set_version(ns, "httpbin-0", true).await?;
    cluster
        .wait_status(ns, ROUTEMAP, &["httpbin-0"], &["httpbin-0"])
        .await?;
    all_to_primary(cluster, dp, ns, host).await?;
    load.wait_scheduled(dwell(&load)).await;

    step(
        4,
        "cleanup: helm delete (the harness plays the garbage collector and EndpointSlice controller)",
    );
    let deleted_at = Instant::now();
    let deleted = release.delete().await?;
    note(format!("deleted {}", deleted.objects.join(" ")));
    dp.delete_slice(ns, "httpbin-0").await?;
    ensure!(
        dp.collect_garbage(ns, ROUTE).await?,
        "the route should have lost its owner"
    );
    let collected_at = Instant::now();
    note(format!(
        "HTTPRoute httpbin deleted {} ms after helm delete began: its owner, the routemap, is gone",
        (collected_at - deleted_at).as_millis()
    ));
    let listener = dp.listener();
    wait_every(
        "Envoy to stop serving httpbin.test",
        timeout(),
        Duration::from_millis(20),
        || async {
            let a = request(listener, host, "/", false);
            Ok(if a.status == 404 {
                Ok(())
            } else {
                Err(format!("status {}", a.status))
            })
        },
    )
    .await?;
    // A second of 404s under load, then the load stops.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answers = load.stop();
    curl_expect(dp, host, false, "HTTP/1.1 404 Not Found", None)?;
    ok("no route for httpbin.test any more: Envoy answers 404");
    dp.stop_backend(ns, "httpbin-0");
    controller.stop()?;

    let (during, cleanup): (Vec<Answer>, Vec<Answer>) =
        answers.into_iter().partition(|a| a.sent < deleted_at);
    let bad = phase_report(dp, ns, "tutorial (steps 1-3)", &during).await?;
    let in_removal = |a: &Answer| a.sent <= removal_ended && a.done >= removal_started;
    let failed: Vec<&Answer> = during
        .iter()
        .filter(|a| !is_2xx(a) && !in_removal(a))
        .collect();
    let removal_failed = during
        .iter()
        .filter(|a| !is_2xx(a) && in_removal(a))
        .count();
    let early = during
        .iter()
        .filter(|a| {
            a.app_version.as_ref().is_some_and(|v| {
                dp.first_available
                    .get(&format!("{ns}/{v}"))
                    .is_none_or(|t| a.done < *t)
            })
        })
        .count();
    let secs = match (during.first(), during.last()) {
        (Some(f), Some(l)) => (l.scheduled - f.scheduled).as_secs_f64().max(1e-3),
        _ => 1.0,
    };
    println!(
        "traffic during the tutorial: {} requests at {:.0}/s, {} non-2xx, {early} answered by a version not yet available, {removal_failed} non-2xx during version removal",
        during.len(),
        during.len() as f64 / secs,
        failed.len()
    );
    for (who, codes) in tally(&during) {
        note(format!("{who}: {codes:?}"));
    }
    cleanup_report(&cleanup, deleted_at, collected_at);
    ensure!(
        during.len() >= 10_000,
        "too few requests: {} (the load fell behind its schedule?)",
        during.len()
    );
    ensure!(
        failed.is_empty(),
        "{} non-2xx outside the version removal: {}",
        failed.len(),
        show_causes(&causes(failed.iter().copied()))
    );
    ensure!(
        early == 0,
        "{early} answers from a version before it was available"
    );
    ensure!(
        bad == 0,
        "{bad} answers not served by the version they name"
    );
    let t = tally(&during);
    ensure!(
        t.contains_key("traffic: test -> httpbin-1") && t.contains_key("plain -> httpbin-0"),
        "both versions must have answered: {t:?}"
    );
    Ok(())
}

/// What users got between `helm delete` and the route's removal: per cause (or 2xx), how many
/// and from when to when, in ms after helm delete began.
fn cleanup_report(answers: &[Answer], deleted_at: Instant, collected_at: Instant) {
    let ms = |t: Instant| t.saturating_duration_since(deleted_at).as_millis();
    let mut by: std::collections::BTreeMap<String, (usize, u128, u128)> = Default::default();
    for a in answers {
        let what = a
            .cause()
            .unwrap_or_else(|| format!("{} (served)", a.status));
        let e = by.entry(what).or_insert((0, u128::MAX, 0));
        e.0 += 1;
        e.1 = e.1.min(ms(a.sent));
        e.2 = e.2.max(ms(a.sent));
    }
    // The window: from helm delete to the first request after which every answer is a 404.
    let gone = answers
        .iter()
        .rposition(|a| a.status != 404)
        .and_then(|i| answers.get(i + 1))
        .map_or(0, |a| ms(a.sent));
    let non_404_failures: usize = answers
        .iter()
        .filter(|a| !is_2xx(a) && a.status != 404)
        .count();
    println!(
        "cleanup: helm delete -> route gone from Envoy (404) in {gone} ms (the harness deleted the route {} ms after helm delete began); {non_404_failures} non-2xx before the 404s",
        ms(collected_at)
    );
    for (what, (n, first, last)) in by {
        note(format!(
            "  {what}: {n} requests sent {first}-{last} ms after helm delete began"
        ));
    }
}

async fn mirror(cluster: &Cluster, dp: &mut Dataplane<'_>) -> Result<()> {
    const N: usize = 400;
    const TOL: f64 = 0.08;
    let ns = "mirror";
    let host = "httpbin.mirror";
    let (_release, mut controller) = release_with_controller(cluster, ns, "mirror.yaml").await?;
    for v in ["httpbin-0", "httpbin-1", "httpbin-2"] {
        dp.set_version(ns, v, true).await?;
    }
    routed(cluster, dp, ns, ROUTE, "a 25% mirror to httpbin-1", |r| {
        (r.mirrors() == [("httpbin-1".to_string(), 25)])
            .then_some(())
            .ok_or_else(|| "no mirror".into())
    })
    .await?;
    let marker = "probe=mirror";
    let got = split(dp, host, &format!("/get?{marker}"), N)?;
    ensure!(
        got.len() == 1 && got.get("httpbin-0") == Some(&N),
        "the client must only see httpbin-0: {got:?}"
    );
    ok(format!(
        "client: {N}/{N} answered by httpbin-0 (app-version httpbin-0)"
    ));
    let count = |v: &str, dp: &mut Dataplane| dp.backend(ns, v).map(|h| h.served(marker));
    // gunicorn writes its access log line after the answer: wait for the last ones.
    let started = Instant::now();
    while count("httpbin-0", dp)? < N && started.elapsed() < timeout() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        count("httpbin-0", dp)? == N,
        "httpbin-0's access log: {} of {N}",
        count("httpbin-0", dp)?
    );
    // Mirrored requests are sent alongside and not awaited by the client: wait until the
    // mirror's access log stops growing.
    let mut last = usize::MAX;
    let mut same = 0;
    let started = Instant::now();
    while same < 5 && started.elapsed() < timeout() {
        let now = count("httpbin-1", dp)?;
        same = if now == last { same + 1 } else { 0 };
        last = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    within("httpbin-1's access log (25% mirror)", last, N, 0.25, TOL)?;
    ensure!(
        count("httpbin-2", dp)? == 0,
        "weight-0 httpbin-2 must see nothing"
    );
    ok("httpbin-2 (weight 0): no mirrored request");
    controller.stop()?;
    Ok(())
}

async fn missing_backend(cluster: &Cluster, dp: &mut Dataplane<'_>) -> Result<()> {
    let ns = "missing";
    let host = "httpbin.missing";
    let (_release, mut controller) =
        release_with_controller(cluster, ns, "seed-1-initial.yaml").await?;
    dp.set_version(ns, "httpbin-0", true).await?;
    routed(
        cluster,
        dp,
        ns,
        ROUTE,
        "one rule to httpbin-0",
        one_rule_to("httpbin-0"),
    )
    .await?;
    wait_gateway(cluster, ns, ROUTEMAP, "accepted").await?;
    step(
        1,
        "kubectl delete svc httpbin-0 (the backend Service goes; the route still names it)",
    );
    cluster.kubectl(&["delete", "-n", ns, "svc", "httpbin-0"])?;
    dp.delete_slice(ns, "httpbin-0").await?;
    let answer = wait_for("ResolvedRefs=False on the route", timeout(), || async {
        let r = serde_json::to_value(cluster.routes(ns).get(ROUTE).await?)?;
        Ok(match translator_answer(&r) {
            Some((a, r, reason)) if r == "False" => {
                Ok(format!("Accepted={a}, ResolvedRefs=False ({reason})"))
            }
            other => Err(format!("{other:?}")),
        })
    })
    .await?;
    ok(format!("the translator's status: {answer}"));
    let gateway = wait_gateway(cluster, ns, ROUTEMAP, "backendNotResolved").await?;
    ok(format!(
        "the routemap's status annotation: gateway {gateway}"
    ));
    let n = wait_for("a BackendNotResolved Event", timeout(), || async {
        let n = cluster
            .event_count(ns, ROUTEMAP, "BackendNotResolved")
            .await?;
        Ok(if n >= 1 { Ok(n) } else { Err("none".into()) })
    })
    .await?;
    ok(format!("{n} Warning BackendNotResolved Event(s)"));
    show_events(&cluster.events(ns, ROUTEMAP).await?);
    curl_expect(dp, host, false, "HTTP/1.1 500 Internal Server Error", None)?;
    ok("Envoy answers 500 for the unresolvable backend, as Envoy Gateway does");
    dp.stop_backend(ns, "httpbin-0");
    if !controller.alive() {
        bail!("controller exited");
    }
    controller.stop()?;
    Ok(())
}
