//! What the traffic test checks of real requests through the data plane (`gateway`): the
//! tutorial's curl, routes programmed into Envoy, the gateway's answer on the routemap, and the
//! shares of versions in answers.

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::gateway::dataplane::Dataplane;
use crate::gateway::traffic::{Answer, curl, request};
use crate::live::Live;
use crate::out::{note, ok};
use crate::wait::{timeout, wait_for};

/// The tutorial's curl, printed with its answer; fails unless it is `status` (and `version`).
pub fn curl_expect(
    dp: &Dataplane<'_>,
    host: &str,
    test: bool,
    status: &str,
    version: Option<&str>,
) -> Result<()> {
    let c = curl(dp.listener(), host, test)?;
    println!("    $ {}", c.command);
    for l in &c.shown {
        println!("      {l}");
    }
    ensure!(
        c.status_line == status && c.app_version.as_deref() == version,
        "want {status} app-version {version:?}, got {:?}",
        c.shown
    );
    Ok(())
}

/// Waits until routemap `ns/routemap`'s status annotation reports the gateway's answer `acceptance`.
pub async fn wait_gateway(
    cluster: &Cluster,
    ns: &str,
    routemap: &str,
    acceptance: &str,
) -> Result<Value> {
    wait_for(
        &format!("the routemap's gateway answer {acceptance}"),
        timeout(),
        || async {
            let status = cluster
                .routemap_status(ns, routemap)
                .await?
                .unwrap_or_default();
            Ok(if status["gateway"]["acceptance"] == acceptance {
                Ok(status["gateway"].clone())
            } else {
                Err(status["gateway"].to_string())
            })
        },
    )
    .await
}

/// Routed and programmed: the controller's route `ns/route` passes `check`, and the translator has
/// programmed that generation into Envoy.
pub async fn routed<F>(
    cluster: &Cluster,
    dp: &Dataplane<'_>,
    ns: &str,
    route: &str,
    what: &str,
    check: F,
) -> Result<Live>
where
    F: Fn(&Live) -> std::result::Result<(), String>,
{
    cluster.wait_route(ns, route, what, check).await?;
    let live = Live::from_json(dp.wait_programmed(ns, route).await?)?;
    note(format!("programmed into Envoy: {}", live.describe()));
    Ok(live)
}

/// `version -> status -> count` of a list of answers.
pub fn tally(answers: &[Answer]) -> BTreeMap<String, BTreeMap<u16, usize>> {
    let mut out: BTreeMap<String, BTreeMap<u16, usize>> = BTreeMap::new();
    for a in answers {
        let v = format!(
            "{}{}",
            if a.test {
                "traffic: test -> "
            } else {
                "plain -> "
            },
            a.app_version.as_deref().unwrap_or("(no app-version)")
        );
        *out.entry(v).or_default().entry(a.status).or_default() += 1;
    }
    out
}

pub fn is_2xx(a: &Answer) -> bool {
    (200..300).contains(&a.status)
}

/// `n` plain requests; the share each app-version answered (all must be 200).
pub fn split(
    dp: &Dataplane<'_>,
    host: &str,
    path: &str,
    n: usize,
) -> Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let a = request(dp.listener(), host, path, false);
        ensure!(a.status == 200, "{a:?}");
        *out.entry(a.app_version.unwrap_or_default()).or_insert(0) += 1;
    }
    Ok(out)
}

/// Fails unless `got`'s share of `n` is within `tol` of `want`.
pub fn within(who: &str, got: usize, n: usize, want: f64, tol: f64) -> Result<()> {
    let share = got as f64 / n as f64;
    ensure!(
        (share - want).abs() <= tol,
        "{who}: {got}/{n} = {share:.3}, want {want:.3} ± {tol}"
    );
    ok(format!(
        "{who}: {got}/{n} = {share:.3} (want {want:.3} ± {tol})"
    ));
    Ok(())
}
