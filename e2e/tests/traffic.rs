//! Real requests through a real proxy: the seed tutorial with its own `curl` checks and
//! continuous traffic, the time a readiness flip takes to reach the data plane, blue-green
//! splits, mirroring, and the gateway's answer on the routemap. Envoy is programmed from the
//! live HTTPRoutes by the test-only translator (`iter8_e2e::gateway`); each version is a real
//! httpbin; the harness writes Deployment status and EndpointSlices (no kubelet here).

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use iter8_e2e::gateway::dataplane::{Dataplane, translator_answer};
use iter8_e2e::gateway::traffic::{Answer, Load, request};
use iter8_e2e::prelude::*;
use iter8_e2e::traffic::{curl_expect, is_2xx, routed, split, tally, wait_gateway, within};
use iter8_e2e::wait::wait_every;

const ROUTE: &str = "httpbin";
const ROUTEMAP: &str = "httpbin-routemap";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic() -> Result<()> {
    let cluster = Cluster::start("traffic").await?;
    let mut dp = Dataplane::start(&cluster, &["bluegreen/my-gateway"])?;
    let mut suite = Suite::new(&cluster)?;
    suite
        .run(
            "seed tutorial through Envoy, with continuous traffic",
            tutorial(&cluster, &mut dp),
        )
        .await;
    suite
        .run("time to traffic: readiness flips", flips(&cluster, &mut dp))
        .await;
    suite
        .run(
            "blue-green split, live weight change",
            blue_green(&cluster, &mut dp),
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
async fn all_to_primary(cluster: &Cluster, dp: &Dataplane<'_>, ns: &str, host: &str) -> Result<()> {
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

async fn tutorial(cluster: &Cluster, dp: &mut Dataplane<'_>) -> Result<()> {
    let ns = "test";
    let host = "httpbin.test";
    step(1, "deploy the initial version (seed-1-initial.yaml)");
    let (mut release, mut controller) =
        release_with_controller(cluster, ns, "seed-1-initial.yaml").await?;
    dp.set_version(ns, "httpbin-0", true).await?;
    note(
        "deploy/httpbin-0 Available=True, EndpointSlice httpbin-0-e2e ready (127.0.0.1, its httpbin)",
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

    // Continuous traffic from here to the end of the promotion: both header variants, every
    // 5 ms, at most 1,200 requests or 120 s.
    let load_started = Instant::now();
    let load = Load::start(
        dp.listener(),
        host,
        "/",
        Duration::from_millis(40),
        &[false, true],
        1200,
        Duration::from_secs(120),
    );
    note(
        "continuous traffic started: GET / with and without traffic: test, every 5 ms (at most 1,200)",
    );

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
    dp.set_version(ns, "httpbin-1", true).await?;
    note("deploy/httpbin-1 Available=True, its endpoint ready");
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

    let answers = load.stop();
    note(format!(
        "continuous traffic ran {:.1} s (steps 2 and 3)",
        load_started.elapsed().as_secs_f64()
    ));
    let in_removal = |a: &Answer| a.sent <= removal_ended && a.done >= removal_started;
    let failed = answers
        .iter()
        .filter(|a| !is_2xx(a) && !in_removal(a))
        .count();
    let removal_failed = answers
        .iter()
        .filter(|a| !is_2xx(a) && in_removal(a))
        .count();
    let early = answers
        .iter()
        .filter(|a| {
            a.app_version.as_ref().is_some_and(|v| {
                dp.first_available
                    .get(&format!("{ns}/{v}"))
                    .is_none_or(|t| a.done < *t)
            })
        })
        .count();
    println!(
        "traffic during the tutorial: {} requests, {failed} non-2xx, {early} answered by a version not yet available, {removal_failed} non-2xx during version removal",
        answers.len()
    );
    for (who, codes) in tally(&answers) {
        note(format!("{who}: {codes:?}"));
    }
    ensure!(answers.len() >= 40, "too few requests: {}", answers.len());
    ensure!(failed == 0, "{failed} non-2xx outside the version removal");
    ensure!(
        early == 0,
        "{early} answers from a version before it was available"
    );
    let t = tally(&answers);
    ensure!(
        t.contains_key("traffic: test -> httpbin-1") && t.contains_key("plain -> httpbin-0"),
        "both versions must have answered: {t:?}"
    );

    step(
        4,
        "cleanup: helm delete (the harness plays the garbage collector and EndpointSlice controller)",
    );
    let deleted = release.delete().await?;
    note(format!("deleted {}", deleted.objects.join(" ")));
    dp.delete_slice(ns, "httpbin-0").await?;
    ensure!(
        dp.collect_garbage(ns, ROUTE).await?,
        "the route should have lost its owner"
    );
    note("HTTPRoute httpbin deleted: its owner, the routemap, is gone");
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
    curl_expect(dp, host, false, "HTTP/1.1 404 Not Found", None)?;
    ok("no route for httpbin.test any more: Envoy answers 404");
    dp.stop_backend(ns, "httpbin-0");
    controller.stop()?;
    Ok(())
}

/// A candidate made unavailable mid-traffic (Deployment not available, EndpointSlice endpoint
/// not ready): the time from that status write to the last request it served; repeated.
async fn flips(cluster: &Cluster, dp: &mut Dataplane<'_>) -> Result<()> {
    const FLIPS: usize = 20;
    let ns = "flips";
    let host = "httpbin.flips";
    let (_release, mut controller) =
        release_with_controller(cluster, ns, "seed-2-candidate.yaml").await?;
    dp.set_version(ns, "httpbin-0", true).await?;
    dp.set_version(ns, "httpbin-1", true).await?;
    routed(
        cluster,
        dp,
        ns,
        ROUTE,
        "the canary split",
        canary_split("httpbin-0", "httpbin-1"),
    )
    .await?;
    let listener = dp.listener();
    let serves_candidate = || async {
        let a = request(listener, host, "/", true);
        Ok(if a.app_version.as_deref() == Some("httpbin-1") {
            Ok(())
        } else {
            Err(format!("{a:?}"))
        })
    };
    wait_every(
        "httpbin-1 to answer",
        timeout(),
        Duration::from_millis(10),
        serves_candidate,
    )
    .await?;
    // traffic: test only, every 10 ms, bounded.
    let probe = Load::start(
        listener,
        host,
        "/",
        Duration::from_millis(10),
        &[true],
        4000,
        Duration::from_secs(120),
    );
    let mut windows = Vec::new();
    for _ in 0..FLIPS {
        let down = dp.set_version(ns, "httpbin-1", false).await?;
        cluster
            .wait_route(ns, ROUTE, "no candidate rule", |r| {
                (r.rules() == 1)
                    .then_some(())
                    .ok_or_else(|| "2 rules".into())
            })
            .await?;
        dp.wait_programmed(ns, ROUTE).await?;
        let programmed = down.elapsed();
        let up = dp.set_version(ns, "httpbin-1", true).await?;
        cluster
            .wait_route(
                ns,
                ROUTE,
                "the canary split",
                canary_split("httpbin-0", "httpbin-1"),
            )
            .await?;
        dp.wait_programmed(ns, ROUTE).await?;
        wait_every(
            "httpbin-1 to answer again",
            timeout(),
            Duration::from_millis(10),
            serves_candidate,
        )
        .await?;
        windows.push((down, up, programmed));
    }
    let answers = probe.stop();
    let mut times: Vec<f64> = Vec::new();
    let mut failed = 0;
    let mut programmed_ms: Vec<u128> = Vec::new();
    for (down, up, programmed) in &windows {
        programmed_ms.push(programmed.as_millis());
        let window: Vec<&Answer> = answers
            .iter()
            .filter(|a| a.done >= *down && a.sent < *up)
            .collect();
        failed += window.iter().filter(|a| !is_2xx(a)).count();
        let last = window
            .iter()
            .filter(|a| a.app_version.as_deref() == Some("httpbin-1"))
            .map(|a| a.done)
            .max();
        times.push(last.map_or(0.0, |t| (t - *down).as_secs_f64() * 1000.0));
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "time to traffic: p50 {:.0} ms, p99 {:.0} ms over {} flips",
        pct(0.50),
        pct(0.99),
        times.len()
    );
    note(format!(
        "{} probe requests (traffic: test, every 10 ms); {failed} non-2xx between a flip's status write and its candidate's return (an endpoint no longer ready before the route drops it answers 503)",
        answers.len()
    ));
    note(format!(
        "per flip, sorted, ms: {:?}",
        times.iter().map(|t| t.round() as i64).collect::<Vec<_>>()
    ));
    note(format!(
        "per flip, status write -> route without the candidate seen programmed (polled every 20 ms), ms: {programmed_ms:?}"
    ));
    ensure!(times.len() == FLIPS, "flips");
    controller.stop()?;
    Ok(())
}

async fn blue_green(cluster: &Cluster, dp: &mut Dataplane<'_>) -> Result<()> {
    const N: usize = 400;
    const TOL: f64 = 0.08; // about 3.5 standard deviations at N = 400
    let ns = "bluegreen";
    let host = "httpbin.bluegreen";
    step(1, "blue-green-30-70.yaml, both versions ready");
    let (_release, mut controller) =
        release_with_controller(cluster, ns, "blue-green-30-70.yaml").await?;
    dp.set_version(ns, "httpbin-0", true).await?;
    dp.set_version(ns, "httpbin-1", true).await?;
    let want = vec![("httpbin-0".to_string(), 30), ("httpbin-1".to_string(), 70)];
    let live = routed(cluster, dp, ns, ROUTE, "30/70", move |r| {
        (r.rules() == 1 && r.backends(0) == want)
            .then_some(())
            .ok_or_else(|| "not 30/70".into())
    })
    .await?;
    let parents = live.json["status"]["parents"]
        .as_array()
        .map_or(0, Vec::len);
    ensure!(
        parents == 2,
        "the mesh and my-gateway answer: {}",
        live.json["status"]
    );
    ok("status.parents: the Service parent (mesh) and Gateway my-gateway, both Accepted");
    let got = split(dp, host, "/", N)?;
    within(
        "httpbin-1 share at 30/70",
        got.get("httpbin-1").copied().unwrap_or(0),
        N,
        0.7,
        TOL,
    )?;
    step(
        2,
        "kubectl annotate --overwrite cm httpbin-1-weight-config iter8.tools/weight=10",
    );
    cluster.kubectl(&[
        "annotate",
        "-n",
        ns,
        "--overwrite",
        "cm",
        "httpbin-1-weight-config",
        "iter8.tools/weight=10",
    ])?;
    let want = vec![("httpbin-0".to_string(), 30), ("httpbin-1".to_string(), 10)];
    routed(cluster, dp, ns, ROUTE, "30/10", move |r| {
        (r.rules() == 1 && r.backends(0) == want)
            .then_some(())
            .ok_or_else(|| "not 30/10".into())
    })
    .await?;
    let got = split(dp, host, "/", N)?;
    within(
        "httpbin-1 share at 30/10",
        got.get("httpbin-1").copied().unwrap_or(0),
        N,
        0.25,
        TOL,
    )?;
    controller.stop()?;
    Ok(())
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
