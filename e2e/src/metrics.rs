//! The controller's `/metrics`, and the waits built on them.
//!
//! The tests never sleep to show that nothing else happened. They wait for positive evidence
//! that the controller has seen and judged a change: `iter8_observed_resource_version{watch}`
//! (the highest resourceVersion of the watch's events it has indexed, decided and written for)
//! reaching the resourceVersion of the objects as they are now ([`Controller::wait_caught_up`]);
//! only then do they check that it wrote nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};

use crate::cluster::Cluster;
use crate::controller::Controller;
use crate::tools::http_get;
use crate::wait::{timeout, wait_every, wait_for};

/// The write counter checked everywhere.
pub const APPLIED: &str = "iter8_applies_total{result=\"applied\"}";

/// Sum of the values of the series whose line starts with `prefix` (a family name, or one
/// series with its labels). Absent: 0.
pub fn sum_series(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}

impl Controller {
    /// `/metrics` as text.
    pub fn metrics(&self) -> Result<String> {
        let (code, body) = http_get(self.admin, "/metrics")?;
        ensure!(code == 200, "/metrics answered {code}");
        Ok(body)
    }

    /// Value of one series (or the sum of a family), e.g. `iter8_leader` (0 when absent).
    pub fn metric(&self, series: &str) -> Result<f64> {
        Ok(sum_series(&self.metrics()?, series))
    }

    /// `iter8_applies_total{result="applied"}`: route writes.
    pub fn applied(&self) -> Result<u64> {
        Ok(self.metric(APPLIED)? as u64)
    }

    /// `iter8_observed_resource_version{watch}` (0 before the watch's first event).
    pub fn observed(&self, watch: &str) -> Result<i64> {
        let series = format!("iter8_observed_resource_version{{watch=\"{watch}\"}}");
        Ok(self.metric(&series)? as i64)
    }

    /// Waits until the controller has handled every event of each watch up to the given
    /// resourceVersion.
    pub async fn wait_observed(
        &self,
        wanted: &BTreeMap<String, i64>,
        limit: Duration,
    ) -> Result<()> {
        wait_for(
            &format!("{} to handle resourceVersions {wanted:?}", self.pod_name),
            limit,
            || async {
                let mut behind = Vec::new();
                for (watch, rv) in wanted {
                    let seen = self.observed(watch)?;
                    if seen < *rv {
                        behind.push(format!("{watch} at {seen} < {rv}"));
                    }
                }
                Ok(behind.is_empty().then_some(()).ok_or(behind.join(", ")))
            },
        )
        .await
    }

    /// Waits until the controller has caught up with everything it watches in `ns`: it has
    /// handled the current resourceVersion of every routemap, version resource and owned route,
    /// and what it wrote in doing so (status annotations, routes) changed nothing it still has
    /// to handle. Once this returns, a controller that would write has written.
    pub async fn wait_caught_up(&self, cluster: &Cluster, ns: &str) -> Result<()> {
        self.wait_caught_up_within(cluster, ns, timeout()).await
    }

    /// [`Self::wait_caught_up`] with its own time limit.
    pub async fn wait_caught_up_within(
        &self,
        cluster: &Cluster,
        ns: &str,
        limit: Duration,
    ) -> Result<()> {
        let started = Instant::now();
        let mut wanted = cluster.watched_resource_versions(ns).await?;
        loop {
            self.wait_observed(&wanted, limit).await?;
            let now = cluster.watched_resource_versions(ns).await?;
            if now == wanted {
                return Ok(());
            }
            // Its own writes are new events: handle those too.
            ensure!(
                started.elapsed() < limit,
                "{} kept writing for {limit:?} (now {now:?})",
                self.pod_name
            );
            wanted = now;
        }
    }

    /// Waits until it has made at least `n` route writes (the route may be visible before the
    /// controller has counted its write) and has caught up with `ns`, then checks that it made
    /// exactly `n`.
    pub async fn expect_applied(&self, cluster: &Cluster, ns: &str, n: u64) -> Result<()> {
        wait_for(
            &format!("{} to count {n} writes", self.pod_name),
            timeout(),
            || async {
                let got = self.applied()?;
                Ok((got >= n).then_some(()).ok_or(format!("{got} writes")))
            },
        )
        .await?;
        self.wait_caught_up(cluster, ns).await?;
        let got = self.applied()?;
        ensure!(
            got == n,
            "{} made {got} writes, expected {n}",
            self.pod_name
        );
        Ok(())
    }

    /// Waits until `/metrics` has not changed for `quiet`: how the bench dates the moment the
    /// controller went idle (a figure, not a check: checks use [`Self::wait_caught_up`]).
    pub async fn wait_idle(&mut self, quiet: Duration, limit: Duration) -> Result<Instant> {
        let mut last = String::new();
        let mut since = Instant::now();
        wait_every(
            "the controller's metrics to stop changing",
            limit,
            Duration::from_millis(200),
            || {
                let alive = self.check_alive();
                let now = self.metrics().unwrap_or_default();
                let idle = if now != last || now.is_empty() {
                    last = now;
                    since = Instant::now();
                    None
                } else {
                    (since.elapsed() >= quiet).then_some(since)
                };
                async move {
                    alive?;
                    Ok(idle.ok_or("changing".to_string()))
                }
            },
        )
        .await
    }
}

/// Waits until the `RouteApplied` Events on the routemap, the controller's writes and the
/// route's generation agree (one Event per write, one generation per write: every write here
/// changes the spec). The three are read separately, so they may briefly disagree while a
/// write is being reported. Returns the count.
pub async fn writes_agree(
    cluster: &Cluster,
    controller: &Controller,
    ns: &str,
    routemap: &str,
    route: &str,
) -> Result<u64> {
    wait_for(
        "RouteApplied Events = applies = route generation",
        timeout(),
        || async {
            let applied = controller.applied()?;
            let events = cluster.event_count(ns, routemap, "RouteApplied").await? as u64;
            let generation = cluster
                .route(ns, route)
                .await?
                .map(|r| r.generation())
                .unwrap_or(0) as u64;
            Ok(if applied == events && events == generation {
                Ok(applied)
            } else {
                Err(format!(
                    "RouteApplied Events {events}, applies {applied}, route generation {generation}"
                ))
            })
        },
    )
    .await
}
