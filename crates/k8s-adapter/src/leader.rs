//! Leader election with a Kubernetes Lease, so that only one replica writes, fenced so that a
//! deposed leader stops writing before another may start.
//!
//! The algorithm is client-go's `leaderelection` (renew deadline inside the lease duration,
//! candidates judging expiry by when *they* saw the last renewal, not by the holder's clock),
//! with a watch on the Lease so that a released Lease is taken at once:
//!
//! - **Leader.** Renews every [`Timings::retry_period`] (GET, then a merge patch carrying the
//!   resourceVersion it read, so two replicas can never both succeed). Each success opens the
//!   [`Fence`] until *the moment that renewal was sent* plus [`Timings::renew_deadline`]. When
//!   no renewal succeeds by then, the fence has already closed on its own clock: the writer
//!   starts nothing more and cancels what is in flight, and this task reports the loss.
//! - **Candidate.** Takes the Lease when it is free (no holder: released), held by this same
//!   identity, or not renewed for a whole lease duration since this replica last saw it change
//!   (a local monotonic clock, so clock skew between nodes does not matter). It wakes when the
//!   Lease it watches changes (a release is taken within a round trip), when the hold it saw
//!   would expire, and every retry period in case the watch missed something.
//! - **Release.** On shutdown the leader closes its fence, then clears `holderIdentity` (lease
//!   duration 1 s, as client-go does) so a waiting candidate takes over at once.
//!
//! Why the fence holds: the candidate waits `lease_duration` from the moment it saw a renewal,
//! which is after the leader sent it; the leader writes only until `renew_deadline` after
//! sending it. The difference (5 s with the defaults) is the margin for a write already on the
//! wire and for clock rate differences. Timings and the measured handover: `docs/leadership.md`.

use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::fence::Fence;
use crate::kube_types::{Lease, now};
use crate::watch_retry::ApiHealth;

/// Default Lease name.
pub const DEFAULT_LEASE_NAME: &str = "iter8-controller-leader";
/// Lease duration, seconds (what candidates wait after the last renewal they saw).
pub const LEASE_DURATION_SECS: u64 = 15;
/// Renew deadline, seconds: how long after sending its last successful renewal a leader writes.
pub const RENEW_DEADLINE_SECS: u64 = 10;
/// Retry period, seconds: how often the leader renews and a candidate re-reads the Lease.
pub const RETRY_PERIOD_SECS: u64 = 2;

/// The election's timings (see the module doc for why they must nest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// What the Lease says a hold lasts.
    pub lease_duration: Duration,
    /// How long after sending its last successful renewal the leader may write.
    pub renew_deadline: Duration,
    /// Renewal period of the leader, re-read period of a candidate.
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            lease_duration: Duration::from_secs(LEASE_DURATION_SECS),
            renew_deadline: Duration::from_secs(RENEW_DEADLINE_SECS),
            retry_period: Duration::from_secs(RETRY_PERIOD_SECS),
        }
    }
}

impl Timings {
    /// `retry_period < renew_deadline < lease_duration`, as client-go requires.
    pub fn validate(&self) -> Result<(), LeaderError> {
        if self.retry_period.is_zero()
            || self.retry_period >= self.renew_deadline
            || self.renew_deadline >= self.lease_duration
        {
            return Err(LeaderError::Timings(*self));
        }
        Ok(())
    }
}

/// Where and as whom to hold the Lease.
#[derive(Debug, Clone)]
pub struct LeaderSettings {
    /// Namespace of the Lease (the controller's).
    pub namespace: String,
    /// Lease name.
    pub lease_name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
}

/// Leader election could not start.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The timings do not nest.
    #[error(
        "leader election timings must satisfy retry period < renew deadline < lease duration: {0:?}"
    )]
    Timings(Timings),
}

impl LeaderError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        "leader"
    }
}

/// A running election: the leadership flag, the write fence, and the task holding the Lease.
#[derive(Debug)]
pub struct Election {
    /// `true` while this replica leads (the writer follows it).
    pub is_leader: watch::Receiver<bool>,
    /// Until when this replica may write (the writer checks it before each call).
    pub fence: Fence,
    task: Option<JoinHandle<()>>,
    stop: Option<watch::Sender<bool>>,
    /// The flag's sender when there is no Lease (the flag then stays `true`).
    _fixed: Option<watch::Sender<bool>>,
}

impl Election {
    /// Always leader: for a single replica run without a Lease (`--leader-election=false`).
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        Election {
            is_leader: rx,
            fence: Fence::always(),
            task: None,
            stop: None,
            _fixed: Some(tx),
        }
    }

    /// Starts competing for the Lease (returns at once; the task does the calls).
    /// `health`: a candidate tries again the moment the API server answers after an outage
    /// (a leader that lost the Lease in it takes it back at once, instead of at its next retry).
    pub fn start(
        client: Client,
        settings: &LeaderSettings,
        timings: Timings,
        health: Option<&ApiHealth>,
    ) -> Result<Self, LeaderError> {
        timings.validate()?;
        let (tx, is_leader) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let fence = Fence::closed();
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let elector = Elector {
            api,
            name: settings.lease_name.clone(),
            identity: settings.identity.clone(),
            timings,
            fence: fence.clone(),
            leader: tx,
            seen: None,
            back: health.map(ApiHealth::subscribe),
            health: health.cloned(),
            troubled: false,
        };
        tracing::info!(
            lease.namespace = %settings.namespace,
            lease.name = %settings.lease_name,
            identity = %settings.identity,
            lease_duration = ?timings.lease_duration,
            renew_deadline = ?timings.renew_deadline,
            retry_period = ?timings.retry_period,
            "competing for leadership"
        );
        let task = tokio::spawn(elector.run(stopped));
        Ok(Election {
            is_leader,
            fence,
            task: Some(task),
            stop: Some(stop),
            _fixed: None,
        })
    }

    /// A check that the election task still runs (it owns the flag's sender), for `/livez`.
    pub fn liveness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let flag = self.is_leader.clone();
        move || flag.has_changed().is_ok()
    }

    /// Closes the fence and gives the Lease up (when this replica holds it) so another takes
    /// over at once.
    pub async fn release(self, timeout: Duration) {
        // The task closes the fence itself before releasing: closing it here first would look
        // like a lost Lease to the task, which would then not release it.
        if self.stop.is_none() {
            self.fence.close();
        }
        if let Some(stop) = &self.stop {
            stop.send_replace(true);
        }
        if let Some(task) = self.task {
            match tokio::time::timeout(timeout, task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "leader election task failed"),
                Err(_) => tracing::warn!("leader Lease not released in time; it expires by itself"),
            }
        }
    }
}

/// What a replica last saw of the Lease, and when it saw it change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `spec.holderIdentity` (`None`: released or never held).
    pub holder: Option<String>,
    /// `spec.leaseDurationSeconds`.
    pub duration: Duration,
    /// `spec.leaseTransitions`.
    pub transitions: i32,
    /// `metadata.resourceVersion` (the precondition of our next write).
    pub resource_version: String,
    /// When this replica first saw this resourceVersion (its own monotonic clock).
    pub since: Instant,
}

impl Seen {
    /// Reads a Lease seen at `now`; `before` keeps its `since` when nothing changed.
    pub fn read(lease: &Lease, before: Option<&Seen>, now: Instant) -> Seen {
        let spec = lease.spec.clone().unwrap_or_default();
        let resource_version = lease.metadata.resource_version.clone().unwrap_or_default();
        let since = match before {
            Some(b) if b.resource_version == resource_version => b.since,
            _ => now,
        };
        Seen {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            duration: Duration::from_secs(
                spec.lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(LEASE_DURATION_SECS),
            ),
            transitions: spec.lease_transitions.unwrap_or(0),
            resource_version,
            since,
        }
    }

    /// Whether `identity` may take (or renew) the Lease at `now`.
    pub fn may_take(&self, identity: &str, now: Instant) -> bool {
        match &self.holder {
            None => true,
            Some(h) if h == identity => true,
            Some(_) => now >= self.since + self.duration,
        }
    }

    /// When a candidate should look again: at the expiry of the hold it saw, or after `retry`,
    /// whichever is first.
    pub fn next_look(&self, now: Instant, retry: Duration) -> Instant {
        (self.since + self.duration).min(now + retry).max(now)
    }
}

/// An attempt's outcome.
enum Attempt {
    /// We hold the Lease (taken or renewed).
    Held,
    /// Someone else holds it.
    Taken,
}

struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
    fence: Fence,
    leader: watch::Sender<bool>,
    seen: Option<Seen>,
    back: Option<watch::Receiver<u64>>,
    /// Lease calls failing make the API probe run (its answer wakes a candidate at once).
    health: Option<ApiHealth>,
    troubled: bool,
}

impl Elector {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let (events_tx, mut events) = mpsc::channel(8);
        let watcher = tokio::spawn(watch_lease(self.api.clone(), self.name.clone(), events_tx));
        let mut next = Instant::now();
        let mut back = self.back.take();
        loop {
            let leading = *self.leader.borrow();
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                () = self.fence.closed_now(), if leading => {
                    self.lose("no renewal succeeded within the renew deadline");
                    next = Instant::now();
                    continue;
                }
                Some(event) = events.recv() => {
                    let now = Instant::now();
                    self.seen = event.map(|l| Seen::read(&l, self.seen.as_ref(), now));
                    let held_by_other = self.seen.as_ref().is_some_and(|s| {
                        s.holder.as_deref().is_some_and(|h| h != self.identity)
                    });
                    if leading && held_by_other {
                        self.lose("the Lease names another holder");
                    }
                    let free = self.seen.as_ref().is_none_or(|s| s.may_take(&self.identity, now));
                    if leading || !free {
                        continue;
                    }
                }
                () = api_back(&mut back), if !leading => {}
                () = tokio::time::sleep_until(next) => {}
            }
            let leading = *self.leader.borrow();
            next = tokio::select! {
                next = self.attempt() => next,
                // A candidate's call stuck in an outage is abandoned when the server answers
                // again (if it landed, the next attempt finds this replica the holder).
                () = api_back(&mut back), if !leading => Instant::now(),
            };
        }
        watcher.abort();
        self.release().await;
    }

    /// One try to take or renew; returns when to try next.
    async fn attempt(&mut self) -> Instant {
        let leading = *self.leader.borrow();
        let sent = Instant::now();
        let budget = if leading {
            match self.fence.grant() {
                crate::fence::Grant::Until(end) => end.saturating_duration_since(sent),
                _ => Duration::ZERO,
            }
        } else {
            self.timings.retry_period
        }
        .min(self.timings.renew_deadline / 2);
        let outcome = tokio::time::timeout(budget, self.try_take()).await;
        let now = Instant::now();
        self.trouble(!matches!(outcome, Ok(Ok(_))));
        match outcome {
            Ok(Ok(Attempt::Held)) => {
                self.fence.open_until(sent + self.timings.renew_deadline);
                if !leading {
                    self.leader.send_replace(true);
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                }
                now + self.timings.retry_period
            }
            Ok(Ok(Attempt::Taken)) => {
                if leading {
                    self.lose("the Lease names another holder");
                }
                self.seen
                    .as_ref()
                    .map_or(now + self.timings.retry_period, |s| {
                        s.next_look(now, self.timings.retry_period)
                    })
            }
            Ok(Err(e)) => {
                tracing::debug!(lease = %self.name, error = %e, leading, "Lease call failed");
                self.retry_after_failure(now)
            }
            Err(_) => {
                tracing::debug!(lease = %self.name, ?budget, leading, "Lease call timed out");
                self.retry_after_failure(now)
            }
        }
    }

    /// Tells the API probe whether the Lease calls fail (an etcd outage can leave every watch
    /// open while they do).
    fn trouble(&mut self, failing: bool) {
        let Some(health) = &self.health else {
            return;
        };
        if failing && !self.troubled {
            health.trouble_started();
        } else if !failing && self.troubled {
            health.trouble_ended();
        }
        self.troubled = failing;
    }

    /// After a failed call: a leader retries soon (its deadline runs), a candidate waits.
    fn retry_after_failure(&self, now: Instant) -> Instant {
        if *self.leader.borrow() {
            now + self.timings.retry_period / 2
        } else {
            now + self.timings.retry_period
        }
    }

    fn lose(&mut self, why: &str) {
        self.fence.close();
        if self.leader.send_replace(false) {
            tracing::warn!(lease = %self.name, identity = %self.identity, why, "stopped leading: writes are fenced off");
        }
    }

    async fn try_take(&mut self) -> Result<Attempt, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            return self.create().await;
        };
        let seen = Seen::read(&lease, self.seen.as_ref(), Instant::now());
        self.seen = Some(seen.clone());
        if !seen.may_take(&self.identity, Instant::now()) {
            return Ok(Attempt::Taken);
        }
        let stamp = serde_json::to_value(micro_now()).unwrap_or_default();
        let mut spec = json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.timings.lease_duration.as_secs(),
            "renewTime": stamp,
        });
        if seen.holder.as_deref() != Some(self.identity.as_str()) {
            spec["acquireTime"] = stamp.clone();
            spec["leaseTransitions"] = json!(seen.transitions + 1);
        }
        // The resourceVersion makes the patch conditional: of two candidates, one gets 409.
        let patch = json!({
            "metadata": {"resourceVersion": seen.resource_version},
            "spec": spec,
        });
        match self
            .api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(lease) => {
                self.seen = Some(Seen::read(&lease, self.seen.as_ref(), Instant::now()));
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Taken),
            Err(e) => Err(e),
        }
    }

    async fn create(&mut self) -> Result<Attempt, kube::Error> {
        let stamp = micro_now();
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": self.name},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.timings.lease_duration.as_secs(),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }))
        .map_err(kube::Error::SerdeError)?;
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(lease) => {
                self.seen = Some(Seen::read(&lease, None, Instant::now()));
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Taken),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if we lead: fence first, then the Lease.
    async fn release(&mut self) {
        let leading = *self.leader.borrow();
        self.fence.close();
        self.leader.send_replace(false);
        if !leading {
            return;
        }
        let Some(seen) = self.seen.clone() else {
            return;
        };
        let patch = json!({
            "metadata": {"resourceVersion": seen.resource_version},
            "spec": {
                "holderIdentity": null,
                "leaseDurationSeconds": 1,
                "renewTime": micro_now(),
            },
        });
        match self
            .api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "leader Lease released"),
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "releasing the leader Lease failed; it expires by itself")
            }
        }
    }
}

/// Resolves when the API server answers again after an outage; never without a health handle.
async fn api_back(back: &mut Option<watch::Receiver<u64>>) {
    let Some(rx) = back else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn micro_now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now())
}

/// Watches the one Lease and sends what it becomes (`None`: deleted). Restarts after a
/// failure with a jittered second's pause; from scratch after `410 Gone`.
async fn watch_lease(api: Api<Lease>, name: String, tx: mpsc::Sender<Option<Lease>>) {
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(290);
    let mut version = "0".to_string();
    loop {
        match api.watch(&params, &version).await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    let sent = match event {
                        Ok(WatchEvent::Added(l)) | Ok(WatchEvent::Modified(l)) => {
                            version = l.metadata.resource_version.clone().unwrap_or(version);
                            tx.send(Some(l)).await
                        }
                        Ok(WatchEvent::Deleted(l)) => {
                            version = l.metadata.resource_version.clone().unwrap_or(version);
                            tx.send(None).await
                        }
                        Ok(WatchEvent::Bookmark(b)) => {
                            version = b.metadata.resource_version;
                            Ok(())
                        }
                        Ok(WatchEvent::Error(e)) => {
                            if e.code == 410 {
                                version = "0".into();
                            }
                            tracing::debug!(lease = %name, error = %e.message, "Lease watch ended");
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(lease = %name, error = %e, "Lease watch failed");
                            break;
                        }
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::debug!(lease = %name, error = %e, "cannot watch the Lease"),
        }
        let pause = Duration::from_millis(500 + fastrand::u64(0..1000));
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
