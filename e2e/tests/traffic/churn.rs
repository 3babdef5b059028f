//! Blue-green under load while `iter8.tools/weight` changes many times: no failed request, and
//! in each stretch between two changes the candidate's share follows the weights.

use std::time::Instant;

use anyhow::{Result, ensure};
use iter8_e2e::gateway::dataplane::Dataplane;
use iter8_e2e::prelude::*;
use iter8_e2e::traffic::{causes, is_2xx, load, phase_report, routed, show_causes};

use super::ROUTE;

/// httpbin-1's weights in turn (httpbin-0 keeps 30); the release starts at 70.
const WEIGHTS: [u32; 10] = [10, 90, 30, 60, 20, 70, 50, 10, 80, 40];
/// Requests scheduled in each stretch: about 1.6 s at 250/s, so 400 answers per share.
const STRETCH: usize = 400;
/// About 4.5 standard deviations of a share at 400 answers.
const TOL: f64 = 0.10;

pub async fn churn(cluster: &Cluster, dp: &mut Dataplane<'_>) -> Result<()> {
    let ns = "bluegreen";
    let host = "httpbin.bluegreen";
    step(1, "blue-green-30-70.yaml, both versions ready");
    let (_release, mut controller) =
        release_with_controller(cluster, ns, "blue-green-30-70.yaml").await?;
    dp.set_version(ns, "httpbin-0", true).await?;
    dp.set_version(ns, "httpbin-1", true).await?;
    let live = routed(cluster, dp, ns, ROUTE, "30/70", weights_are(70)).await?;
    let parents = live.json["status"]["parents"]
        .as_array()
        .map_or(0, Vec::len);
    ensure!(
        parents == 2,
        "the mesh and my-gateway answer: {}",
        live.json["status"]
    );
    ok("status.parents: the Service parent (mesh) and Gateway my-gateway, both Accepted");

    step(
        2,
        format!(
            "under load, {} times: kubectl annotate --overwrite cm httpbin-1-weight-config iter8.tools/weight=W",
            WEIGHTS.len()
        ),
    );
    let load = load(dp, host, std::time::Duration::from_secs(120));
    // (httpbin-1's weight, from when the route with it was programmed, to the next change).
    let mut stretches: Vec<(u32, Instant, Instant)> = Vec::new();
    let mut from = Instant::now();
    let mut current = 70;
    for w in WEIGHTS.into_iter().chain([70]) {
        load.wait_scheduled(load.scheduled() + STRETCH).await;
        stretches.push((current, from, Instant::now()));
        if stretches.len() > WEIGHTS.len() {
            break;
        }
        cluster.kubectl(&[
            "annotate",
            "-n",
            ns,
            "--overwrite",
            "cm",
            "httpbin-1-weight-config",
            &format!("iter8.tools/weight={w}"),
        ])?;
        routed(cluster, dp, ns, ROUTE, &format!("30/{w}"), weights_are(w)).await?;
        from = Instant::now();
        current = w;
    }
    let answers = load.stop();
    controller.stop()?;
    let bad = phase_report(dp, ns, "weight churn", &answers).await?;
    let failed: Vec<_> = answers.iter().filter(|a| !is_2xx(a)).collect();
    let mut shares = Vec::new();
    let mut off = Vec::new();
    for (w, from, to) in &stretches {
        let stretch: Vec<_> = answers
            .iter()
            .filter(|a| a.sent >= *from && a.sent < *to && is_2xx(a))
            .collect();
        let n = stretch.len();
        let got = stretch
            .iter()
            .filter(|a| a.app_version.as_deref() == Some("httpbin-1"))
            .count();
        let want = f64::from(*w) / f64::from(30 + *w);
        let share = got as f64 / n.max(1) as f64;
        shares.push(format!("{w}: {share:.2}/{want:.2} ({n})"));
        if n < STRETCH / 2 || (share - want).abs() > TOL {
            off.push(format!(
                "weight {w}: {got}/{n} = {share:.3}, want {want:.3} ± {TOL}"
            ));
        }
    }
    println!(
        "weight churn: {} changes under load, {} requests, {} non-2xx; httpbin-1's share per stretch (weight: got/want (answers)): {}",
        WEIGHTS.len(),
        answers.len(),
        failed.len(),
        shares.join(", ")
    );
    ensure!(
        failed.is_empty(),
        "non-2xx during weight changes: {}",
        show_causes(&causes(failed.iter().copied()))
    );
    ensure!(
        bad == 0,
        "{bad} answers not served by the version they name"
    );
    ensure!(off.is_empty(), "shares off their weights: {off:?}");
    ok("every stretch within its tolerance");
    Ok(())
}

/// One rule, httpbin-0 at 30 and httpbin-1 at `w`.
fn weights_are(w: u32) -> impl Fn(&Live) -> std::result::Result<(), String> {
    let want = vec![("httpbin-0".to_string(), 30), ("httpbin-1".to_string(), w)];
    move |r: &Live| {
        (r.rules() == 1 && r.backends(0) == want)
            .then_some(())
            .ok_or_else(|| format!("not 30/{w}"))
    }
}
