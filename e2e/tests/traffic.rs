//! Real requests through a real proxy: the seed tutorial with its own `curl` checks under an
//! open-loop load, the time readiness flips take to reach the data plane (and the 503s they
//! cost), weight churn, mirroring, and the gateway's answer on the routemap. Envoy is programmed
//! from the live HTTPRoutes by the test-only translator (`iter8_e2e::gateway`); each version is a
//! real httpbin; an invalid routemap and strategy `none` under load; the harness writes Deployment status and EndpointSlices (no kubelet here) and
//! plays the garbage collector. Every answer of the load is checked against the access log of
//! the httpbin it names.

#[path = "traffic/churn.rs"]
mod churn;
#[path = "traffic/flips.rs"]
mod flips;
#[path = "traffic/gating.rs"]
mod gating;
#[path = "traffic/tutorial.rs"]
mod tutorial;

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use iter8_e2e::gateway::dataplane::{Dataplane, translator_answer};
use iter8_e2e::prelude::*;
use iter8_e2e::traffic::{curl_expect, routed, split, wait_gateway, within};

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
            tutorial::tutorial(&cluster, &mut dp),
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
    suite
        .run(
            "gating goes on while the routemap is invalid, and strategy none",
            gating::gating(&cluster, &mut dp),
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
    wait_for("a BackendNotResolved Event", timeout(), || async {
        let n = cluster
            .event_count(ns, ROUTEMAP, "BackendNotResolved")
            .await?;
        Ok(if n >= 1 { Ok(n) } else { Err("none".into()) })
    })
    .await?;
    controller.wait_caught_up(cluster, ns).await?;
    let n = cluster
        .event_count(ns, ROUTEMAP, "BackendNotResolved")
        .await?;
    ensure!(
        n == 1,
        "{n} BackendNotResolved Events for one unresolved backend; want exactly 1"
    );
    ok(format!("{n} Warning BackendNotResolved Event"));
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
