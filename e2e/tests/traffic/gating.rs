//! Gating never stops, under load: while the routemap is invalid its last good spec stays in
//! force, so a candidate that becomes unavailable still leaves the route; switched to strategy
//! `none`, the routemap's route is deleted. Counted with real requests: none reaches the
//! unavailable candidate once its removal is programmed, and the Events are exact.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use iter8_e2e::gateway::dataplane::Dataplane;
use iter8_e2e::prelude::*;
use iter8_e2e::traffic::{canary_ready, causes, load, phase_report, routed, show_causes};
use iter8_e2e::wait::{timeout, wait_for};

use super::ROUTE;

const ROUTEMAP: &str = "httpbin-routemap";
/// Requests of load after each change (4 s at the load's rate).
const DWELL: usize = 1_000;

/// Waits until the routemap has exactly `n` Events of `reason` (summing their counts), and
/// fails if there are more.
async fn exactly(cluster: &Cluster, ns: &str, reason: &str, n: usize) -> Result<()> {
    let got = wait_for(&format!("{n} {reason} Events"), timeout(), || async {
        let got = cluster.event_count(ns, ROUTEMAP, reason).await?;
        Ok(if got >= n {
            Ok(got)
        } else {
            Err(format!("{got}"))
        })
    })
    .await?;
    ensure!(got == n, "{got} {reason} Events, want exactly {n}");
    Ok(())
}

pub async fn gating(cluster: &Cluster, dp: &mut Dataplane<'_>) -> Result<()> {
    let ns = "gating";
    let host = "httpbin.gating";
    let (mut release, mut controller) =
        release_with_controller(cluster, ns, "seed-2-candidate.yaml").await?;
    canary_ready(cluster, dp, ns, ROUTE).await?;
    let load = load(dp, host, Duration::from_secs(90));
    load.wait_scheduled(DWELL).await;

    step(
        1,
        "a user edits the routemap: its candidate loses its matches (invalid)",
    );
    remove_candidate_matches(cluster, ns, ROUTEMAP).await?;
    exactly(cluster, ns, "InvalidRouteMap", 1).await?;
    controller.wait_caught_up(cluster, ns).await?;
    let live = cluster.existing_route(ns, ROUTE).await?;
    canary_split("httpbin-0", "httpbin-1")(&live).map_err(|e| anyhow!(e))?;
    ok(format!(
        "1 Warning InvalidRouteMap; the last good spec stays in force: {}",
        live.describe()
    ));
    load.wait_scheduled(load.scheduled() + DWELL).await;

    step(
        2,
        "httpbin-1 becomes unavailable while the routemap is invalid",
    );
    let down = dp.set_version(ns, "httpbin-1", false).await?;
    routed(
        cluster,
        dp,
        ns,
        ROUTE,
        "one rule to httpbin-0",
        one_rule_to("httpbin-0"),
    )
    .await?;
    let gated = Instant::now();
    ok(format!(
        "the route dropped httpbin-1, and Envoy has it, {} ms after the first status write",
        (gated - down).as_millis()
    ));
    exactly(cluster, ns, "InvalidRouteMap", 2).await?;
    let last = cluster
        .events(ns, ROUTEMAP)
        .await?
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("InvalidRouteMap"))
        .filter_map(|e| e.message)
        .find(|m| m.contains("unavailable httpbin-1"))
        .ok_or_else(|| anyhow!("no InvalidRouteMap Event names httpbin-1 unavailable"))?;
    ok(format!("2 Warning InvalidRouteMap, the second: {last}"));
    load.wait_scheduled(load.scheduled() + DWELL).await;

    step(
        3,
        "helm upgrade with strategy none: the route this routemap wrote is deleted",
    );
    let before_none = Instant::now();
    let none = cluster.dir.join("gating-none.yaml");
    let seed = std::fs::read_to_string(values("seed-2-candidate.yaml"))?;
    let mut v: serde_json::Value = serde_saphyr::from_str(&seed)?;
    v["application"]["strategy"] = "none".into();
    if let Some(o) = v["application"]["versions"][1].as_object_mut() {
        o.remove("matches");
    }
    std::fs::write(&none, serde_json::to_string_pretty(&v)?)?;
    release.upgrade(&[&none]).await?;
    dp.wait_not_served(host).await?;
    let removed = Instant::now();
    exactly(cluster, ns, "RouteRemoved", 1).await?;
    ensure!(
        cluster.routes(ns).get_opt(ROUTE).await?.is_none(),
        "HTTPRoute {ns}/{ROUTE} still exists"
    );
    ok("1 RouteRemoved; HTTPRoute gone; Envoy answers 404 for the host");
    load.wait_scheduled(load.scheduled() + DWELL).await;
    let answers = load.stop();
    controller.stop()?;
    dp.stop_backend(ns, "httpbin-0");
    dp.stop_backend(ns, "httpbin-1");

    phase_report(dp, ns, "gating", &answers).await?;
    let after_gate: Vec<_> = answers.iter().filter(|a| a.sent >= gated).collect();
    let to_candidate = after_gate
        .iter()
        .filter(|a| a.app_version.as_deref() == Some("httpbin-1"))
        .count();
    let gated_window: Vec<_> = after_gate
        .iter()
        .filter(|a| a.done < before_none)
        .copied()
        .collect();
    let failed_gated = gated_window.iter().filter(|a| a.cause().is_some()).count();
    let test_gated = gated_window.iter().filter(|a| a.test).count();
    note(format!(
        "gating while invalid: {} requests after the unavailable candidate left the route ({test_gated} with traffic: test), {to_candidate} answered by httpbin-1, {failed_gated} non-2xx before strategy none",
        gated_window.len()
    ));
    let after_none: Vec<_> = answers.iter().filter(|a| a.sent >= removed).collect();
    note(format!(
        "strategy none: {} requests after the route was removed: {}",
        after_none.len(),
        show_causes(&causes(after_none.iter().copied()))
    ));
    ensure!(
        to_candidate == 0,
        "{to_candidate} answers from the unavailable httpbin-1"
    );
    ensure!(
        failed_gated == 0 && test_gated > 0,
        "{failed_gated} non-2xx while gated from the last good spec ({test_gated} test requests)"
    );
    ensure!(
        after_none.iter().all(|a| a.status == 404),
        "after strategy none, want only 404s (no route for the host)"
    );
    Ok(())
}
