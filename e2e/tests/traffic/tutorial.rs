//! The seed tutorial ([`iter8_e2e::seed`], the flow `just tutorial` runs) through Envoy, with
//! the tutorial's own `curl` at every stage, under the open-loop load from step 1's route to the
//! end of cleanup, dwelling [`DWELL`] requests in each state. Prints
//! `traffic during the tutorial: N requests at R/s, F non-2xx, U answered by a version not yet available, V non-2xx during version removal`
//! for the requests sent before cleanup began, then what users got between `helm delete` and
//! the route's removal.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use iter8_e2e::gateway::dataplane::Dataplane;
use iter8_e2e::gateway::traffic::{Answer, Load};
use iter8_e2e::prelude::*;
use iter8_e2e::seed::{ROUTEMAP, collect_garbage, dataplane_ready, dataplane_removed};
use iter8_e2e::traffic::{
    causes, curl_expect, is_2xx, load, phase_report, show_causes, tally, wait_gateway,
};

const NS: &str = "test";
const HOST: &str = "httpbin.test";
/// Requests scheduled in each of the four states before cleanup (about 10 s each at 250/s): more
/// than 10,000 in all.
const DWELL: usize = 2_600;

/// The tutorial's platform here: real httpbins behind Envoy, and the load.
struct Loaded<'d, 'c> {
    dp: &'d mut Dataplane<'c>,
    load: Option<Load>,
    /// The promotion's upgrade began (the candidate's removal).
    removal_started: Option<Instant>,
    /// The route without the candidate was programmed into Envoy.
    removal_ended: Option<Instant>,
    /// The flow moved on to cleanup (`helm delete` is its next call).
    cleanup_started: Option<Instant>,
    /// The harness, as the garbage collector, deleted the route.
    collected: Option<Instant>,
}

impl Loaded<'_, '_> {
    async fn dwell(&self) {
        if let Some(load) = &self.load {
            load.wait_scheduled(load.scheduled() + DWELL).await;
        }
    }

    fn curls(&self, plain: &str, test: &str) -> Result<()> {
        curl_expect(self.dp, HOST, false, "HTTP/1.1 200 OK", Some(plain))?;
        curl_expect(self.dp, HOST, true, "HTTP/1.1 200 OK", Some(test))
    }
}

impl Platform for Loaded<'_, '_> {
    async fn set_ready(&mut self, seed: &Seed<'_>, version: &str, ready: bool) -> Result<()> {
        dataplane_ready(self.dp, &seed.ns, version, ready).await
    }

    async fn version_removed(&mut self, seed: &Seed<'_>, version: &str) -> Result<()> {
        dataplane_removed(self.dp, &seed.ns, version).await
    }

    async fn before_upgrade(&mut self, _seed: &Seed<'_>, values_file: &str) -> Result<()> {
        if values_file == "seed-3-promote.yaml" {
            self.removal_started = Some(Instant::now());
        }
        Ok(())
    }

    async fn at(&mut self, seed: &mut Seed<'_>, stage: Stage, _live: Option<&Live>) -> Result<()> {
        let cluster = seed.cluster;
        let route = seed.route.clone();
        match stage {
            Stage::Initial => {
                self.dp.wait_programmed(NS, &route).await?;
                self.curls("httpbin-0", "httpbin-0")?;
                let gateway = wait_gateway(cluster, NS, ROUTEMAP, "accepted").await?;
                ok(format!(
                    "the routemap's status annotation: gateway {gateway}"
                ));
                let accepted = wait_for("a RouteAccepted Event", timeout(), || async {
                    let n = cluster.event_count(NS, ROUTEMAP, "RouteAccepted").await?;
                    Ok(if n >= 1 { Ok(n) } else { Err("none".into()) })
                })
                .await?;
                ensure!(
                    accepted == 1,
                    "{accepted} RouteAccepted Events for one accepted generation; want exactly 1"
                );
                ok(format!("{accepted} RouteAccepted Event on {ROUTEMAP}"));
                self.load = Some(load(self.dp, HOST, Duration::from_secs(150)));
                self.dwell().await;
            }
            Stage::CandidateNotReady => {
                self.dp.wait_programmed(NS, &route).await?;
                curl_expect(self.dp, HOST, true, "HTTP/1.1 200 OK", Some("httpbin-0"))?;
                ok("while httpbin-1 is not ready, traffic: test still reaches httpbin-0");
                self.dwell().await;
            }
            Stage::CandidateReady => {
                self.dp.wait_programmed(NS, &route).await?;
                self.curls("httpbin-0", "httpbin-1")?;
                self.dwell().await;
            }
            Stage::PrimaryRollingOut => {
                self.dp.wait_programmed(NS, &route).await?;
                let ended = Instant::now();
                self.removal_ended = Some(ended);
                if let Some(started) = self.removal_started {
                    note(format!(
                        "version removal window (promotion's upgrade began -> route without httpbin-1 programmed): {} ms",
                        (ended - started).as_millis()
                    ));
                }
                // httpbin-1's pod goes; the old httpbin-0 pod serves while the new one rolls out.
                self.dp.stop_backend(NS, "httpbin-1");
                self.curls("httpbin-0", "httpbin-0")?;
            }
            Stage::Promoted => {
                self.dp.wait_programmed(NS, &route).await?;
                self.curls("httpbin-0", "httpbin-0")?;
                self.dwell().await;
                self.cleanup_started = Some(Instant::now());
            }
            Stage::Deleted => {
                // As soon as the harness can (a garbage collector takes its own time).
                if collect_garbage(cluster, NS, &route).await? {
                    self.collected = Some(Instant::now());
                    note(format!(
                        "(harness, as Kubernetes' garbage collector) HTTPRoute {route} deleted: its owner {ROUTEMAP} is gone"
                    ));
                }
            }
        }
        Ok(())
    }
}

pub async fn tutorial(cluster: &Cluster, dp: &mut Dataplane<'_>) -> Result<()> {
    cluster.create_namespace(NS).await?;
    let mut controller = Controller::start(cluster, NS, "iter8-controller-0")?;
    controller.wait_ready().await?;
    let mut seed = Seed::new(cluster, NS);
    let mut platform = Loaded {
        dp,
        load: None,
        removal_started: None,
        removal_ended: None,
        cleanup_started: None,
        collected: None,
    };
    let flow = seed.run(&mut platform).await;
    let Loaded {
        dp,
        load,
        removal_started,
        removal_ended,
        cleanup_started,
        collected,
    } = platform;
    if let Err(e) = flow {
        if let Some(load) = load {
            drop(load.stop());
        }
        return Err(e);
    }
    let load = load.ok_or_else(|| anyhow!("the load never started"))?;
    dp.wait_not_served(HOST).await?;
    // A second of 404s under load, then the load stops.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answers = load.stop();
    curl_expect(dp, HOST, false, "HTTP/1.1 404 Not Found", None)?;
    ok("no route for httpbin.test any more: Envoy answers 404");
    dp.stop_backend(NS, "httpbin-0");
    controller.stop()?;

    let (removal_started, removal_ended, cleanup_started) =
        match (removal_started, removal_ended, cleanup_started) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            other => return Err(anyhow!("the flow skipped a stage: {other:?}")),
        };
    let (during, cleanup): (Vec<Answer>, Vec<Answer>) =
        answers.into_iter().partition(|a| a.sent < cleanup_started);
    let bad = phase_report(dp, NS, "tutorial (steps 1-3)", &during).await?;
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
                    .get(&format!("{NS}/{v}"))
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
    cleanup_report(&cleanup, cleanup_started, collected);
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
/// and when, in ms after the flow moved on to cleanup (its next call is `helm delete`, after
/// `helm get manifest`), and how long the failures lasted.
fn cleanup_report(answers: &[Answer], started: Instant, collected: Option<Instant>) {
    let ms = |t: Instant| t.saturating_duration_since(started).as_millis();
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
    // From the first answer that is neither served nor 404 to the last one.
    let failing: Vec<Instant> = answers
        .iter()
        .filter(|a| !is_2xx(a) && a.status != 404)
        .map(|a| a.sent)
        .collect();
    let lasted = match (failing.iter().min(), failing.iter().max()) {
        (Some(a), Some(b)) => (*b - *a).as_millis(),
        _ => 0,
    };
    println!(
        "cleanup: between helm delete and the route's removal (by the harness, {} ms after cleanup began), {} requests failed over {lasted} ms, then 404 (no route)",
        collected.map_or("-".into(), |c| ms(c).to_string()),
        failing.len()
    );
    for (what, (n, first, last)) in by {
        note(format!(
            "  {what}: {n} requests sent {first}-{last} ms after cleanup began"
        ));
    }
}
