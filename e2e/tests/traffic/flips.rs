//! Readiness flips under load: the candidate made unavailable and available again, many times,
//! two ways: "Deployment-and-slice" (its EndpointSlice endpoint not ready, then its Deployment
//! `Available=False`, as a pod going unready shows) and "Deployment-only" (only the Deployment's
//! status flips, the endpoint stays ready). For each flip: the time from the status write to the
//! last request the candidate served (to unavailable) and to the first one it served (back to
//! available), and the non-2xx while it was going away.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use iter8_e2e::gateway::dataplane::Dataplane;
use iter8_e2e::gateway::traffic::{Answer, request};
use iter8_e2e::prelude::*;
use iter8_e2e::traffic::{causes, is_2xx, load, p50_p99_max, phase_report, routed, show_causes};
use iter8_e2e::wait::wait_every;

use super::ROUTE;

/// Flips of each kind.
const PER_KIND: usize = 30;
const CANDIDATE: &str = "httpbin-1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    DeploymentAndSlice,
    DeploymentOnly,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::DeploymentAndSlice => "Deployment-and-slice",
            Kind::DeploymentOnly => "Deployment-only",
        }
    }
}

struct Flip {
    kind: Kind,
    /// The first status write making the candidate unavailable.
    down: Instant,
    /// The first status write making it available again.
    up: Instant,
}

/// What one flip measured.
struct Measured {
    kind: Kind,
    down: Instant,
    to_unavailable_ms: f64,
    to_available_ms: Option<f64>,
    failed: Vec<Answer>,
}

async fn set(dp: &mut Dataplane<'_>, ns: &str, kind: Kind, available: bool) -> Result<Instant> {
    match kind {
        Kind::DeploymentAndSlice => dp.set_version(ns, CANDIDATE, available).await,
        Kind::DeploymentOnly => dp.set_deployment_only(ns, CANDIDATE, available).await,
    }
}

pub async fn flips(cluster: &Cluster, dp: &mut Dataplane<'_>) -> Result<()> {
    let ns = "flips";
    let host = "httpbin.flips";
    let (_release, mut controller) =
        release_with_controller(cluster, ns, "seed-2-candidate.yaml").await?;
    dp.set_version(ns, "httpbin-0", true).await?;
    dp.set_version(ns, CANDIDATE, true).await?;
    routed(
        cluster,
        dp,
        ns,
        ROUTE,
        "the canary split",
        canary_split("httpbin-0", CANDIDATE),
    )
    .await?;
    let listener = dp.listener();
    // A probe outside the load (not counted): the candidate answers again.
    let serves_candidate = || async {
        let a = request(listener, host, "/", true);
        Ok(if a.app_version.as_deref() == Some(CANDIDATE) {
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
    let load = load(dp, host, Duration::from_secs(150));
    // Some load before the first flip.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut flips = Vec::new();
    for i in 0..2 * PER_KIND {
        let kind = if i % 2 == 0 {
            Kind::DeploymentAndSlice
        } else {
            Kind::DeploymentOnly
        };
        let down = set(dp, ns, kind, false).await?;
        cluster
            .wait_route(ns, ROUTE, "no candidate rule", |r| {
                (r.rules() == 1)
                    .then_some(())
                    .ok_or_else(|| "2 rules".into())
            })
            .await?;
        dp.wait_programmed(ns, ROUTE).await?;
        // Long enough for the requests in flight to the candidate to finish.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let up = set(dp, ns, kind, true).await?;
        cluster
            .wait_route(
                ns,
                ROUTE,
                "the canary split",
                canary_split("httpbin-0", CANDIDATE),
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
        tokio::time::sleep(Duration::from_millis(200)).await;
        flips.push(Flip { kind, down, up });
    }
    let answers = load.stop();
    controller.stop()?;
    let bad = phase_report(dp, ns, "readiness flips", &answers).await?;

    let measured: Vec<Measured> = flips
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let next = flips.get(i + 1).map(|n| n.down);
            let from_candidate = |a: &Answer| a.app_version.as_deref() == Some(CANDIDATE);
            let going: Vec<&Answer> = answers
                .iter()
                .filter(|a| a.sent >= f.down && a.sent < f.up)
                .collect();
            let last = going
                .iter()
                .filter(|a| from_candidate(a))
                .map(|a| a.sent)
                .max();
            let first_back = answers
                .iter()
                .filter(|a| a.sent >= f.up && next.is_none_or(|n| a.sent < n))
                .filter(|a| from_candidate(a))
                .map(|a| a.sent)
                .min();
            Measured {
                kind: f.kind,
                down: f.down,
                // No request reached the candidate after the write: 0.
                to_unavailable_ms: last.map_or(0.0, |t| ms(t - f.down)),
                to_available_ms: first_back.map(|t| ms(t - f.up)),
                failed: going
                    .iter()
                    .filter(|a| !is_2xx(a))
                    .map(|a| (*a).clone())
                    .collect(),
            }
        })
        .collect();
    let all: Vec<&Measured> = measured.iter().collect();
    println!("{}", line(&all));
    for kind in [Kind::DeploymentAndSlice, Kind::DeploymentOnly] {
        let of_kind: Vec<&Measured> = measured.iter().filter(|m| m.kind == kind).collect();
        note(format!("{}: {}", kind.name(), line(&of_kind)));
        let back: Vec<f64> = of_kind.iter().filter_map(|m| m.to_available_ms).collect();
        note(format!(
            "{}: back to available, status write -> first request the candidate served: {} over {} flips",
            kind.name(),
            p50_p99_max(&back),
            back.len()
        ));
        let failed: Vec<&Answer> = of_kind.iter().flat_map(|m| &m.failed).collect();
        note(format!(
            "{}: non-2xx while the candidate went away: {}; per flip: {:?}",
            kind.name(),
            show_causes(&causes(failed.iter().copied())),
            of_kind.iter().map(|m| m.failed.len()).collect::<Vec<_>>()
        ));
        // When the failures began after the write, and how long they lasted (first to last
        // failed request sent), over the flips that had any.
        let (began, lasted): (Vec<f64>, Vec<f64>) = of_kind
            .iter()
            .filter_map(|m| {
                let first = m.failed.iter().map(|a| a.sent).min()?;
                let last = m.failed.iter().map(|a| a.sent).max()?;
                Some((ms(first - m.down), ms(last - first)))
            })
            .unzip();
        if !began.is_empty() {
            note(format!(
                "{}: failures began after the status write: {}; lasted (first to last failed request sent): {}; over {} flips",
                kind.name(),
                p50_p99_max(&began),
                p50_p99_max(&lasted),
                began.len()
            ));
        }
    }
    let outside = answers
        .iter()
        .filter(|a| !is_2xx(a) && !flips.iter().any(|f| a.sent >= f.down && a.sent < f.up))
        .count();
    let plain_failed = answers.iter().filter(|a| !a.test && !is_2xx(a)).count();
    ensure!(measured.len() == 2 * PER_KIND, "flips");
    ensure!(
        bad == 0,
        "{bad} answers not served by the version they name"
    );
    ensure!(
        plain_failed == 0,
        "{plain_failed} non-2xx without traffic: test (those go to httpbin-0, never flipped)"
    );
    ensure!(
        outside == 0,
        "{outside} non-2xx outside the flips to unavailable"
    );
    let deployment_only_failed: usize = measured
        .iter()
        .filter(|m| m.kind == Kind::DeploymentOnly)
        .map(|m| m.failed.len())
        .sum();
    ensure!(
        deployment_only_failed == 0,
        "{deployment_only_failed} non-2xx in Deployment-only flips (the endpoint stayed ready)"
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `time to traffic: p50 X ms, p99 Y ms, max Z ms over K flips; 503s per flip to unavailable:
/// mean M, max Q` (other non-2xx, if any, show in the causes printed beside).
fn line(flips: &[&Measured]) -> String {
    let times: Vec<f64> = flips.iter().map(|m| m.to_unavailable_ms).collect();
    let failed: Vec<usize> = flips
        .iter()
        .map(|m| m.failed.iter().filter(|a| a.status == 503).count())
        .collect();
    let mean = failed.iter().sum::<usize>() as f64 / failed.len().max(1) as f64;
    format!(
        "time to traffic: {} over {} flips; 503s per flip to unavailable: mean {mean:.2}, max {}",
        p50_p99_max(&times),
        flips.len(),
        failed.iter().max().copied().unwrap_or(0)
    )
}
