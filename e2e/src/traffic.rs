//! What the traffic test checks of real requests through the data plane (`gateway`): the
//! tutorial's curl, routes programmed into Envoy, the gateway's answer on the routemap, the
//! shares of versions in answers, and what an open-loop load ([`Load`]) got: non-2xx by cause,
//! each answer checked against the access log of the process that served it.

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::gateway::dataplane::Dataplane;
use crate::gateway::traffic::{Answer, Load, LoadSpec, curl, request};
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

/// Both versions of the canary in `ns` ready (Deployment status and EndpointSlices), then
/// [`routed`] until `traffic: test` goes to `httpbin-1` and the rest to `httpbin-0`.
pub async fn canary_ready(
    cluster: &Cluster,
    dp: &mut Dataplane<'_>,
    ns: &str,
    route: &str,
) -> Result<Live> {
    for v in ["httpbin-0", "httpbin-1"] {
        dp.set_version(ns, v, true).await?;
    }
    routed(
        cluster,
        dp,
        ns,
        route,
        "httpbin-1 for traffic: test",
        crate::live::canary_split("httpbin-0", "httpbin-1"),
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

/// Non-2xx answers by cause (`503 no healthy upstream`, `500`, `no answer (connect: ...)`).
pub fn causes<'a>(answers: impl IntoIterator<Item = &'a Answer>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in answers {
        if let Some(c) = a.cause() {
            *out.entry(c).or_insert(0) += 1;
        }
    }
    out
}

/// `{}` when empty, else `cause: n, ...`.
pub fn show_causes(causes: &BTreeMap<String, usize>) -> String {
    if causes.is_empty() {
        return "none".into();
    }
    causes
        .iter()
        .map(|(c, n)| format!("{n} x {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks every 2xx answer against the access log of the httpbin whose `app-version` came back:
/// that process must have logged the request's id. Waits up to 5 s for gunicorn to write its
/// last lines. Returns the answers that do not match (a 2xx without `app-version` included).
pub async fn unmatched<'a>(
    dp: &Dataplane<'_>,
    ns: &str,
    answers: &'a [Answer],
) -> Result<Vec<&'a Answer>> {
    let started = std::time::Instant::now();
    loop {
        let mut logs: BTreeMap<String, std::collections::HashSet<u64>> = BTreeMap::new();
        let mut bad = Vec::new();
        for a in answers.iter().filter(|a| is_2xx(a)) {
            let Some(v) = &a.app_version else {
                bad.push(a);
                continue;
            };
            let ids = logs
                .entry(v.clone())
                .or_insert_with(|| dp.served_ids(ns, v));
            if !ids.contains(&a.id) {
                bad.push(a);
            }
        }
        if bad.is_empty() || started.elapsed() > std::time::Duration::from_secs(5) {
            return Ok(bad);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// What a phase of load printed: requests, rate, non-2xx by cause, schedule slip, served-by check.
pub async fn phase_report(
    dp: &Dataplane<'_>,
    ns: &str,
    phase: &str,
    answers: &[Answer],
) -> Result<usize> {
    let n = answers.len();
    let (first, last) = match (answers.first(), answers.last()) {
        (Some(f), Some(l)) => (f.scheduled, l.scheduled),
        _ => return Ok(0),
    };
    let secs = (last - first).as_secs_f64().max(1e-3);
    let keep_alive = answers.iter().filter(|a| a.keep_alive).count();
    let test = answers.iter().filter(|a| a.test).count();
    let mut slip: Vec<f64> = answers
        .iter()
        .map(|a| (a.sent - a.scheduled).as_secs_f64() * 1000.0)
        .collect();
    slip.sort_by(f64::total_cmp);
    let bad = unmatched(dp, ns, answers).await?;
    note(format!(
        "{phase}: {n} requests in {secs:.1} s ({:.0}/s; {test} with traffic: test, {keep_alive} on keep-alive connections), non-2xx: {}; sent after their scheduled time by p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms; answers not in the access log of the httpbin they name: {}",
        n as f64 / secs,
        show_causes(&causes(answers)),
        percentile(&slip, 0.50),
        percentile(&slip, 0.99),
        slip.last().copied().unwrap_or(0.0),
        bad.len()
    ));
    for a in bad.iter().take(5) {
        note(format!("  not served as it says: {a:?}"));
    }
    Ok(bad.len())
}

/// The `p` percentile (nearest rank) of sorted values; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `p50 X ms, p99 Y ms, max Z ms` of unsorted values.
pub fn p50_p99_max(values: &[f64]) -> String {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&v, 0.50),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(0.0)
    )
}

/// The load's rate, requests per second (both header variants, half on keep-alive connections).
pub const RATE: f64 = 250.0;

/// An open-loop load at [`RATE`] on `host` `/` through the data plane, bounded to `limit`.
pub fn load(dp: &Dataplane<'_>, host: &str, limit: std::time::Duration) -> Load {
    let load = Load::start(LoadSpec {
        addr: dp.listener(),
        host: host.into(),
        path: "/".into(),
        rate: RATE,
        max: (RATE * limit.as_secs_f64()) as usize,
        limit,
        clients: 8,
    });
    note(format!(
        "open-loop load on {host}: {RATE:.0} requests/s scheduled whatever the answers, with and without traffic: test, half on keep-alive connections, each with a unique x-load-id, no retries (at most {} s)",
        limit.as_secs()
    ));
    load
}
