//! The writer: the one task that writes to the API server.
//!
//! Inputs ([`WriterMsg`]): the index's [`Change`]s, what the routemap watch saw of each
//! routemap's status annotation, and the HTTPRoute watch's view of the routes we own
//! ([`LiveEvent`]); plus leadership flips, a periodic resync and retry timers.
//! Outputs: server-side applies of HTTPRoutes (`fieldManager` from the config, `force=true`,
//! a timeout per call), and through [`crate::status`] Events and the status annotation.
//!
//! Write only on real change. For every routemap the writer keeps the last good desired route
//! (as the text of the fields we own, shared with the live view while they are equal) and a
//! hash of what it last applied; the HTTPRoute watch (and each apply's response) keeps the live
//! route. A route is written when the live route does not carry the fields we own (our labels,
//! our owner reference, the spec) as desired, so an event that changes nothing, a resync, or a
//! restart with everything in place makes no write, while someone else's edit of our fields is
//! repaired. While the watch has not yet delivered the echo of our own last write, a stale live
//! view of an unchanged desired route does not trigger a second write.
//! Fields someone else adds that we never set (say `spec.hostnames` on a route planned without
//! hostnames) are theirs under server-side apply: re-applying would not remove them, so they are
//! not drift; edits and removals of what we set are.
//!
//! What is never done: writing as a follower (only the Lease holder writes; followers keep their
//! view warm and catch up when elected); touching a route while its routemap is invalid (the last
//! good route stays); deleting routes. Strategy `none` writes nothing, and a deleted routemap
//! needs nothing: the route's owner reference makes Kubernetes garbage-collect it.
//!
//! Transient failures (5xx, 429, timeouts, connection errors, conflicts) retry with exponential
//! backoff and jitter; a rejected route (other 4xx) waits for a new decision or the next resync.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use routing_core::RouteMapRef;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::index::{Change, Outcome, Summary};
use crate::kube_types::{DynamicObject, GatewayHttpRoute, httproute_resource};
use crate::live::share_equal;
pub use crate::live::{KeptRoute, LiveRoute, RouteId, covers};
use crate::metrics::Metrics;
use crate::routemap::RouteMapKey;
use crate::status::{RouteMapStatus, RouteResult, StatusWriter, fnv1a, report_route};

/// A failed API write.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// No answer within the per-call timeout.
    #[error("no answer from the API server within {0:?}")]
    Timeout(Duration),
    /// The API server is overloaded or failing (5xx, 429) or the write conflicted (409).
    #[error("API server answered {code}: {message}")]
    Unavailable {
        /// HTTP status.
        code: u16,
        /// Server message.
        message: String,
    },
    /// The API server refused the object (4xx other than 409/429).
    #[error("API server rejected it ({code}): {message}")]
    Rejected {
        /// HTTP status.
        code: u16,
        /// Server message.
        message: String,
    },
    /// The request did not reach the server or the answer was unreadable.
    #[error("cannot reach the API server: {0}")]
    Connection(String),
    /// The planned route does not fit the Gateway API model (a bug: tested against).
    #[error("route does not fit the gateway-api model: {0}")]
    Encode(String),
}

impl WriteError {
    /// Maps a kube client error.
    pub fn from_kube(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => {
                let code = status.code;
                let message = status.message.clone();
                if code >= 500 || code == 429 || code == 409 {
                    WriteError::Unavailable { code, message }
                } else {
                    WriteError::Rejected { code, message }
                }
            }
            other => WriteError::Connection(other.to_string()),
        }
    }

    /// Worth retrying soon.
    pub fn transient(&self) -> bool {
        !matches!(self, WriteError::Rejected { .. } | WriteError::Encode(_))
    }

    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            WriteError::Timeout(_) => "timeout",
            WriteError::Unavailable { .. } | WriteError::Connection(_) => "api_transient",
            WriteError::Rejected { .. } => "api_rejected",
            WriteError::Encode(_) => "internal",
        }
    }
}

/// A change of the HTTPRoute watch.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// A route was listed, added or changed.
    Upsert(LiveRoute),
    /// A route was deleted (or lost our label).
    Delete(RouteId),
    /// The watch restarted; a full list follows.
    Relisting,
    /// The list is complete: the live view is trustworthy.
    Synced,
}

/// Messages to the writer task.
#[derive(Debug, Clone)]
pub enum WriterMsg {
    /// A decision of the index (boxed: a route is large next to the other messages).
    Change(Box<Change>),
    /// A routemap was seen by the watch, with its status annotation (what was last reported).
    Seen {
        /// Which routemap.
        key: RouteMapKey,
        /// Its resourceVersion.
        resource_version: Option<String>,
        /// Its `iter8.tools/status` annotation.
        status: Option<String>,
    },
    /// The HTTPRoute watch.
    Live(LiveEvent),
    /// Every event of a watch up to this resourceVersion was sent before: once handled, it is
    /// `iter8_observed_resource_version{watch}`.
    Observed {
        /// The watch's name.
        watch: String,
        /// The resourceVersion, as an integer.
        resource_version: i64,
    },
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Field manager of the route applies.
    pub field_manager: String,
    /// Timeout of each API call.
    pub timeout: Duration,
    /// Period of the resync that repairs missed writes.
    pub resync: Duration,
}

/// A decision without its route (the slot's `route`): an `Outcome` is as large as a typed
/// route even when it holds none.
#[derive(Debug)]
enum Verdict {
    Desired(Summary),
    Invalid(String),
}

impl Verdict {
    fn outcome(&self) -> Outcome {
        match self {
            Verdict::Desired(summary) => Outcome::Desired {
                route: None,
                summary: summary.clone(),
            },
            Verdict::Invalid(error) => Outcome::Invalid {
                error: error.clone(),
            },
        }
    }
}

#[derive(Debug)]
struct Slot {
    owner: RouteMapRef,
    /// The last decision.
    outcome: Option<Verdict>,
    /// The route to have: the decided one, or the last good one while the routemap is invalid
    /// (drift repair goes on). Kept as text, shared with the live view: at 10,000 routemaps
    /// typed routes were the largest part of the writer's memory.
    route: Option<KeptRoute>,
    /// Hash of the owned view of what this process last applied (compact JSON text, see
    /// [`LiveRoute::owned`]): only ever compared for equality, so the text is not kept.
    applied: Option<u64>,
    /// resourceVersion of our last write, until the watch shows it.
    echo: Option<String>,
    retry: Option<(Instant, ExponentialBackoff)>,
    resource_version: Option<String>,
    /// The decision fingerprint last reported (see [`RouteMapStatus::decision`]).
    reported: Option<String>,
    /// A decision not yet reported (follower, or the live view not yet synced).
    unreported: bool,
}

impl Slot {
    /// The route to have: the decided one, or the last good one while the routemap is invalid.
    fn good_route(&self) -> Option<&KeptRoute> {
        self.route.as_ref()
    }
}

/// The writer. See the module doc.
pub struct Writer {
    client: Client,
    config: WriterConfig,
    status: StatusWriter,
    metrics: Metrics,
    /// Boxed: a B-tree node holds 11 values inline, most of them unused space.
    slots: BTreeMap<RouteMapKey, Box<Slot>>,
    seen: HashMap<RouteMapKey, (Option<String>, Option<String>)>,
    live: HashMap<RouteId, LiveRoute>,
    live_synced: bool,
    leader: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("routemaps", &self.slots.len())
            .field("live", &self.live.len())
            .field("leader", &self.leader)
            .finish()
    }
}

fn backoff() -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(60))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

impl Writer {
    /// A writer; it starts as a follower (no writes until [`Self::set_leader`]).
    pub fn new(
        client: Client,
        config: WriterConfig,
        status: StatusWriter,
        metrics: Metrics,
    ) -> Self {
        Writer {
            client,
            config,
            status,
            metrics,
            slots: BTreeMap::new(),
            seen: HashMap::new(),
            live: HashMap::new(),
            live_synced: false,
            leader: false,
        }
    }

    /// Handles one message.
    pub async fn handle(&mut self, msg: WriterMsg) {
        match msg {
            WriterMsg::Seen {
                key,
                resource_version,
                status,
            } => {
                let status = status
                    .as_deref()
                    .and_then(RouteMapStatus::parse)
                    .map(|s| s.decision);
                // Kept once: in the slot, or here until the routemap's first decision.
                if let Some(slot) = self.slots.get_mut(&key) {
                    slot.resource_version = resource_version;
                    slot.reported = status;
                } else {
                    self.seen.insert(key, (resource_version, status));
                }
            }
            WriterMsg::Change(change) => self.change(*change).await,
            WriterMsg::Live(event) => self.live_event(event).await,
            WriterMsg::Observed {
                watch,
                resource_version,
            } => self.metrics.observed(&watch, resource_version),
        }
    }

    async fn change(&mut self, change: Change) {
        match change {
            Change::Removed { key } => {
                // The owner reference garbage-collects the route; nothing to write.
                self.slots.remove(&key);
                self.seen.remove(&key);
            }
            Change::Decided {
                key,
                owner,
                outcome,
            } => {
                self.metrics.reconcile();
                let (rv, reported) = self.seen.remove(&key).unwrap_or_default();
                let slot = self.slots.entry(key.clone()).or_insert_with(|| {
                    Box::new(Slot {
                        owner: owner.clone(),
                        outcome: None,
                        route: None,
                        applied: None,
                        echo: None,
                        retry: None,
                        resource_version: rv,
                        reported,
                        unreported: false,
                    })
                });
                slot.owner = owner;
                let verdict = match outcome {
                    Outcome::Desired { route, summary } => {
                        slot.route = route.as_ref().map(|r| {
                            let mut kept = KeptRoute::new(r);
                            if let Some(live) = self.live.get(&kept.id) {
                                share_equal(&mut kept.owned, &live.owned);
                            }
                            kept
                        });
                        slot.retry = None;
                        Verdict::Desired(summary)
                    }
                    // The live route stays as last decided: `slot.route` keeps it for drift repair.
                    Outcome::Invalid { error } => Verdict::Invalid(error),
                };
                slot.outcome = Some(verdict);
                slot.unreported = true;
                self.settle(&key).await;
            }
        }
    }

    async fn live_event(&mut self, event: LiveEvent) {
        let touched = match event {
            LiveEvent::Relisting => {
                self.live_synced = false;
                self.live.clear();
                return;
            }
            LiveEvent::Synced => {
                self.live_synced = true;
                for slot in self.slots.values_mut() {
                    slot.echo = None;
                }
                self.settle_all().await;
                return;
            }
            LiveEvent::Upsert(mut route) => {
                let id = route.id.clone();
                let key = self.key_of(&id, route.routemap.as_deref());
                if let Some(slot) = key.as_ref().and_then(|k| self.slots.get_mut(k)) {
                    if slot.echo.as_deref() == Some(route.resource_version.as_str()) {
                        slot.echo = None;
                    }
                    if let Some(kept) = &slot.route {
                        share_equal(&mut route.owned, &kept.owned);
                    }
                }
                self.live.insert(id, route);
                key
            }
            LiveEvent::Delete(id) => {
                let key = self.key_of(&id, None);
                self.live.remove(&id);
                key
            }
        };
        if self.live_synced
            && let Some(key) = touched
        {
            self.settle(&key).await;
        }
    }

    fn key_of(&self, id: &RouteId, routemap: Option<&str>) -> Option<RouteMapKey> {
        if let Some(name) = routemap {
            let key = RouteMapKey::new(&id.namespace, name);
            if self.slots.contains_key(&key) {
                return Some(key);
            }
        }
        self.slots
            .iter()
            .find(|(_, s)| s.good_route().is_some_and(|r| r.id == *id))
            .map(|(k, _)| k.clone())
    }

    /// Leadership changed; a new leader catches up on everything at once.
    pub async fn set_leader(&mut self, leader: bool) {
        if leader == self.leader {
            return;
        }
        self.leader = leader;
        self.metrics.set_leader(leader);
        tracing::info!(leader, "leadership changed");
        if leader {
            self.settle_all().await;
        }
    }

    /// Re-checks every routemap (the periodic resync): repairs missed writes, retries reports.
    pub async fn resync(&mut self) {
        for slot in self.slots.values_mut() {
            slot.echo = None;
        }
        self.settle_all().await;
    }

    /// Retries whose time has come.
    pub async fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<RouteMapKey> = self
            .slots
            .iter()
            .filter(|(_, s)| s.retry.as_ref().is_some_and(|(at, _)| *at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.settle(&key).await;
        }
    }

    /// When the next retry is due.
    pub fn next_retry(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|s| s.retry.as_ref().map(|(at, _)| *at))
            .min()
    }

    async fn settle_all(&mut self) {
        let keys: Vec<RouteMapKey> = self.slots.keys().cloned().collect();
        for key in keys {
            self.settle(&key).await;
        }
    }

    /// Brings one routemap's route and status in line with its decision (leader only).
    async fn settle(&mut self, key: &RouteMapKey) {
        if !self.leader || !self.live_synced {
            if !self.leader {
                self.metrics.apply("skipped_follower");
            }
            return;
        }
        let Some(result) = self.ensure_route(key).await else {
            // Waiting out a backoff: the failure was reported when it happened.
            return;
        };
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let Some(verdict) = slot.outcome.as_ref() else {
            return;
        };
        let applied = matches!(result, RouteResult::Applied { .. });
        if !slot.unreported && !applied && !matches!(result, RouteResult::Failed { .. }) {
            return;
        }
        let route = slot.good_route();
        let route_json = route.and_then(|r| r.to_json().ok()).map(|j| j.to_string());
        let Some(report) = report_route(
            route.map(|r| r.id.name.as_str()),
            route_json.as_deref(),
            &verdict.outcome(),
            &result,
            slot.resource_version.as_deref(),
            slot.reported.as_deref(),
        ) else {
            slot.unreported = false;
            return;
        };
        let owner = slot.owner.clone();
        match self.status.publish(&owner, &report).await {
            Ok(()) => {
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.reported = Some(report.status.decision);
                    slot.unreported = false;
                }
            }
            Err(e) => {
                tracing::warn!(routemap = %key, error = %e, "cannot write routemap status; retried at the next change or resync")
            }
        }
    }

    /// Writes the route if the live one lacks what we own. `None` while waiting to retry.
    async fn ensure_route(&mut self, key: &RouteMapKey) -> Option<RouteResult> {
        let slot = self.slots.get(key)?;
        let Some(route) = slot.good_route().cloned() else {
            return Some(RouteResult::NoRoute);
        };
        // An invalid routemap keeps `route` (the last good one), so drift repair goes on.
        let id = route.id.clone();
        let want_hash = fnv1a(route.owned.as_bytes());
        let live = self.live.get(&id);
        let waiting_for_echo = slot.echo.is_some() && slot.applied == Some(want_hash);
        let matches = live.is_some_and(|l| l.carries(&route));
        if matches || waiting_for_echo {
            let generation = live.and_then(|l| l.generation);
            if let Some(slot) = self.slots.get_mut(key) {
                slot.applied = Some(want_hash);
                slot.retry = None;
            }
            self.metrics.apply("unchanged");
            return Some(RouteResult::Unchanged { generation });
        }
        if let Some((at, _)) = &slot.retry
            && *at > Instant::now()
        {
            // Waiting out the backoff of an earlier failure.
            return None;
        }
        let previous_rv = live.map(|l| l.resource_version.clone());
        match self.apply(&id, &route).await {
            Ok(response) => {
                self.metrics.apply("applied");
                tracing::info!(routemap = %key, route = %format!("{}/{}", id.namespace, id.name), "applied HTTPRoute");
                let live = LiveRoute::from_json(&response).map(|mut l| {
                    share_equal(&mut l.owned, &route.owned);
                    l
                });
                let generation = live.as_ref().and_then(|l| l.generation);
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.applied = Some(want_hash);
                    slot.retry = None;
                    slot.echo = live
                        .as_ref()
                        .map(|l| l.resource_version.clone())
                        .filter(|rv| Some(rv) != previous_rv.as_ref());
                }
                if let Some(live) = live {
                    self.live.insert(id, live);
                }
                Some(RouteResult::Applied { generation })
            }
            Err(e) => {
                self.metrics.apply("failed");
                self.metrics.error(e.category());
                tracing::warn!(routemap = %key, route = %format!("{}/{}", id.namespace, id.name), error = %e, transient = e.transient(), "cannot apply HTTPRoute");
                if let Some(slot) = self.slots.get_mut(key) {
                    if e.transient() {
                        let (_, mut b) = slot
                            .retry
                            .take()
                            .unwrap_or_else(|| (Instant::now(), backoff()));
                        let delay = b.next().unwrap_or(Duration::from_secs(60));
                        slot.retry = Some((Instant::now() + delay, b));
                    } else {
                        slot.retry = None;
                    }
                }
                Some(RouteResult::Failed {
                    category: e.category(),
                    message: e.to_string(),
                })
            }
        }
    }

    /// One server-side apply, timed and bounded by the per-call timeout.
    async fn apply(&self, id: &RouteId, route: &KeptRoute) -> Result<Value, WriteError> {
        let body: GatewayHttpRoute = route
            .to_json()
            .and_then(serde_json::from_value)
            .map_err(|e| WriteError::Encode(e.to_string()))?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &id.namespace, &httproute_resource());
        let params = PatchParams::apply(&self.config.field_manager).force();
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(
            self.config.timeout,
            api.patch(&id.name, &params, &Patch::Apply(&body)),
        )
        .await;
        self.metrics.apply_latency(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(obj)) => {
                serde_json::to_value(obj).map_err(|e| WriteError::Connection(e.to_string()))
            }
            Ok(Err(e)) => Err(WriteError::from_kube(e)),
            Err(_) => Err(WriteError::Timeout(self.config.timeout)),
        }
    }

    /// Runs the task until the channel closes or `shutdown` flips.
    pub async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<WriterMsg>,
        mut leader: watch::Receiver<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut resync = tokio::time::interval(self.config.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        let is_leader = *leader.borrow_and_update();
        self.set_leader(is_leader).await;
        loop {
            let next_retry = self.next_retry();
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                changed = leader.changed() => {
                    if changed.is_err() {
                        // The elector stopped: act as a follower from now on.
                        self.set_leader(false).await;
                        break;
                    }
                    let is_leader = *leader.borrow_and_update();
                    self.set_leader(is_leader).await;
                }
                _ = resync.tick() => self.resync().await,
                _ = sleep_until(next_retry) => self.retry_due().await,
                _ = shutdown.changed() => break,
            }
        }
        tracing::info!("writer stopped");
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_for_retry() {
        let api = |code: u16| {
            WriteError::from_kube(kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: "m".into(),
                ..Default::default()
            })))
        };
        assert!(api(503).transient() && api(429).transient() && api(409).transient());
        assert!(!api(422).transient() && !api(403).transient());
        assert_eq!(api(422).category(), "api_rejected");
        assert!(WriteError::Timeout(Duration::from_secs(1)).transient());
    }
}
