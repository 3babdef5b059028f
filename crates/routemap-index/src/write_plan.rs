//! The write planner: which writes the controller makes, decided without IO.
//!
//! Inputs: the index's [`Change`]s, what the routemap watch saw of each routemap's status
//! annotation, the HTTPRoute watch's view of the routes we own ([`LiveEvent`]), leadership, and
//! the time, always passed in. Output: for one routemap at a time, the next [`Step`] to take (an
//! apply, a delete, a report) or why there is none ([`Idle`]); the executor (crate
//! `k8s-adapter`) makes the call and hands the result back ([`WritePlanner::applied`],
//! [`WritePlanner::reported`], [`WritePlanner::deleted`]). A routemap's steps come one at a time,
//! so its route, Event and status stay in order whatever runs in parallel for other routemaps.
//!
//! Write only on real change. For every routemap the planner keeps the last good desired route
//! (as the text of the fields we own, shared with the live view while they are equal) and a
//! hash of what it last applied; the HTTPRoute watch (and each apply's response) keeps the live
//! route. A route is written when the live route does not carry the fields we own (our labels,
//! our owner reference, the spec) as desired, so an event that changes nothing, a resync, or a
//! restart with everything in place makes no write, while someone else's edit of our fields is
//! repaired. While the watch has not yet delivered the echo of our own last write, a stale live
//! view of an unchanged desired route does not trigger a second write. Fields someone else adds
//! that we never set are theirs under server-side apply: not drift.
//!
//! Never: a write as a follower (followers keep their view warm and catch up when elected); a
//! route write while the routemap is invalid (the last good route stays); deleting a route we do
//! not own. A route is deleted only when its routemap now writes a route of another name, once
//! that new route is in place, and only if the old one carries this routemap's label and its uid
//! as controlling owner. A deleted routemap needs nothing: the owner reference makes Kubernetes
//! garbage-collect its route.
//!
//! Failures: a 429 (or a 5xx naming a delay) is retried after the delay the server asks for, with
//! jitter, and reported to nobody; other transient failures retry with exponential backoff and
//! an `ApplyFailed` report; a rejected route waits for a new decision or the next resync.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use routing_core::RouteMapRef;

use crate::error::{RouteMapError, WriteError};
use crate::gateway::{GatewayStatus, acceptance_event};
use crate::index::{Change, Decision, Traffic};
use crate::live::{KeptRoute, LiveRoute, RouteId, share_equal};
use crate::report::{EventNote, Report, RouteMapStatus, RouteResult, fnv1a, report_route};
use crate::routemap::RouteMapKey;

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

/// The next write for a routemap.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Server-side apply of the route.
    Apply {
        /// Which route.
        id: RouteId,
        /// What to write.
        route: KeptRoute,
    },
    /// Delete a route this routemap wrote under a name it no longer wants, then tell users.
    Delete {
        /// Which route.
        id: RouteId,
        /// Precondition: the route as last seen, so an edit meanwhile is not deleted blindly.
        resource_version: String,
        /// The routemap (the Event's object).
        owner: RouteMapRef,
        /// The Event to publish once it is gone.
        event: EventNote,
    },
    /// Publish the report's Event and write its status annotation.
    Report {
        /// The routemap.
        owner: RouteMapRef,
        /// What to tell.
        report: Report,
    },
}

/// Why a routemap has no write to make now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// This replica does not hold the Lease.
    Follower,
    /// The HTTPRoute watch has not listed yet: the live view cannot be trusted.
    NotSynced,
    /// Route and report are as decided.
    Settled,
    /// Waiting out a retry delay until then.
    Waiting(Instant),
    /// The routemap is gone.
    Gone,
}

/// What a step asks of the executor, or why nothing.
// A write is the common answer and is consumed at once; boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Make this call.
    Write(Step),
    /// Nothing now.
    Idle(Idle),
}

/// Counts since the last [`WritePlanner::take_tally`], for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Decisions received.
    pub decisions: u64,
    /// Route checks that found the live route as decided.
    pub unchanged: u64,
    /// Steps asked of a follower.
    pub skipped_follower: u64,
    /// Categories of the invalid routemaps decided.
    pub invalid: Vec<&'static str>,
    /// A new gateway acceptance reported, by its label.
    pub gateway: Vec<&'static str>,
}

/// A decision without its route (the slot's `route`): a `Decision` is as large as a typed
/// route even when it holds none.
#[derive(Debug)]
enum KeptDecision {
    Desired(Traffic),
    Invalid(RouteMapError),
}

impl KeptDecision {
    fn decision(&self) -> Decision {
        match self {
            KeptDecision::Desired(traffic) => Decision::Desired {
                route: None,
                traffic: traffic.clone(),
            },
            KeptDecision::Invalid(error) => Decision::Invalid {
                error: error.clone(),
            },
        }
    }
}

#[derive(Debug)]
struct Slot {
    owner: RouteMapRef,
    decision: KeptDecision,
    /// The route to have: the decided one, or the last good one while the routemap is invalid
    /// (drift repair goes on). Kept as text, shared with the live view.
    route: Option<KeptRoute>,
    /// Hash of the owned view this process last applied (only compared for equality).
    applied: Option<u64>,
    /// resourceVersion of our last write, until the watch shows it.
    echo: Option<String>,
    /// When the route may be written again, and how many writes failed in a row.
    retry: Option<(Instant, u32)>,
    /// When a throttled or conflicting report or delete may be tried again, and how many tries
    /// failed in a row.
    call_retry: Option<(Instant, u32)>,
    resource_version: Option<String>,
    /// The decision fingerprint last reported (see [`RouteMapStatus::fingerprint`]).
    reported: Option<String>,
    /// The gateway's answer last reported.
    reported_gateway: Option<GatewayStatus>,
    /// A decision not yet reported (follower, or the live view not yet synced).
    unreported: bool,
    /// How the route step of the current round went, until it is reported.
    result: Option<RouteResult>,
    /// A call of this routemap is in flight.
    in_flight: bool,
    /// A decision that came during a round, taken up once the round is over.
    next: Option<Pending>,
}

/// A decision as the planner keeps it until its round starts.
#[derive(Debug)]
struct Pending {
    owner: RouteMapRef,
    decision: KeptDecision,
    /// `None`: keep the route (an invalid routemap); `Some(None)`: no route (strategy `none`).
    route: Option<Option<KeptRoute>>,
}

impl Slot {
    /// A round is under way: a call in flight, or a route step whose report is still to make.
    fn in_round(&self) -> bool {
        self.in_flight || self.result.is_some()
    }

    /// Starts a new round for a decision.
    fn adopt(&mut self, p: Pending) {
        self.owner = p.owner;
        self.decision = p.decision;
        if let Some(route) = p.route {
            self.route = route;
            self.retry = None;
        }
        self.unreported = true;
        self.result = None;
        self.call_retry = None;
    }

    /// What a status annotation says was reported.
    fn remember(&mut self, status: Option<RouteMapStatus>) {
        self.reported = status.as_ref().map(|s| s.fingerprint.clone());
        self.reported_gateway = status.and_then(|s| s.gateway);
    }

    /// When this routemap's next retry is due.
    fn next_try(&self) -> Option<Instant> {
        let wait = if self.result.is_none() {
            self.retry
        } else {
            self.call_retry
        };
        wait.map(|(at, _)| at)
    }
}

/// The write planner. See the module doc.
#[derive(Debug, Default)]
pub struct WritePlanner {
    /// Boxed: a B-tree node holds 11 values inline, most of them unused space.
    slots: BTreeMap<RouteMapKey, Box<Slot>>,
    /// What the routemap watch saw of routemaps not decided yet: resourceVersion and status.
    seen: HashMap<RouteMapKey, (Option<String>, Option<RouteMapStatus>)>,
    live: HashMap<RouteId, LiveRoute>,
    /// The live routes whose label names each routemap (the candidates for deletion).
    labelled: HashMap<RouteMapKey, Vec<RouteId>>,
    live_synced: bool,
    leader: bool,
    tally: Tally,
    /// Routemaps given a retry (some may have none any more; `due` forgets those).
    retrying: HashSet<RouteMapKey>,
}

/// Delay before retry number `attempt` (from 1) of a failed write: 200 ms doubling to 60 s, or
/// what the server asked for; stretched by `jitter` (0 to 1, drawn by the caller) so that
/// writers do not come back all at once.
pub fn retry_delay(attempt: u32, error: &WriteError, jitter: f64) -> Duration {
    let base = match error {
        WriteError::Throttled { retry_after, .. } => *retry_after,
        _ => Duration::from_millis(200)
            .saturating_mul(1 << attempt.saturating_sub(1).min(9))
            .min(Duration::from_secs(60)),
    };
    base.mul_f64(1.0 + jitter.clamp(0.0, 1.0) / 2.0)
}

impl WritePlanner {
    /// An empty planner, as a follower with no live view.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts since the last call.
    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Routemaps known.
    pub fn routemap_count(&self) -> usize {
        self.slots.len()
    }

    /// Every routemap, for a catch-up (new leader, live view synced, resync).
    pub fn all_keys(&self) -> Vec<RouteMapKey> {
        self.slots.keys().cloned().collect()
    }

    /// The routemap watch saw a routemap with this status annotation: what was last reported,
    /// even by another replica or an earlier run.
    pub fn seen(
        &mut self,
        key: RouteMapKey,
        resource_version: Option<String>,
        status: Option<&str>,
    ) {
        let status = status.and_then(RouteMapStatus::parse);
        if let Some(slot) = self.slots.get_mut(&key) {
            slot.resource_version = resource_version;
            slot.remember(status);
        } else {
            self.seen.insert(key, (resource_version, status));
        }
    }

    /// A change of the index. Returns the routemap to settle, if any.
    pub fn change(&mut self, change: Change) -> Option<RouteMapKey> {
        match change {
            Change::Removed { key } => {
                // The owner reference garbage-collects the route; nothing to write.
                self.slots.remove(&key);
                self.seen.remove(&key);
                None
            }
            Change::Decided {
                key,
                owner,
                decision,
            } => {
                self.tally.decisions += 1;
                let kept = match decision {
                    Decision::Desired { route, traffic } => {
                        let route = route.as_ref().map(|r| {
                            let mut kept = KeptRoute::new(r);
                            if let Some(live) = self.live.get(&kept.id) {
                                share_equal(&mut kept.owned, &live.owned);
                            }
                            kept
                        });
                        (Some(route), KeptDecision::Desired(traffic))
                    }
                    Decision::Invalid { error } => {
                        self.tally.invalid.push(error.category());
                        (None, KeptDecision::Invalid(error))
                    }
                };
                let (route, decision) = kept;
                let pending = Pending {
                    owner,
                    decision,
                    route,
                };
                match self.slots.get_mut(&key) {
                    // A round under way (a call in flight, or its report still to make) ends as
                    // it began, so every write gets its own report; the newest decision waits,
                    // replacing any older one waiting.
                    Some(slot) if slot.in_round() => slot.next = Some(pending),
                    Some(slot) => slot.adopt(pending),
                    None => {
                        let Pending {
                            owner,
                            decision,
                            route,
                        } = pending;
                        let (resource_version, status) = self.seen.remove(&key).unwrap_or_default();
                        let mut slot = Box::new(Slot {
                            owner,
                            decision,
                            route: route.flatten(),
                            applied: None,
                            echo: None,
                            retry: None,
                            call_retry: None,
                            resource_version,
                            reported: None,
                            reported_gateway: None,
                            unreported: true,
                            result: None,
                            in_flight: false,
                            next: None,
                        });
                        slot.remember(status);
                        self.slots.insert(key.clone(), slot);
                    }
                }
                Some(key)
            }
        }
    }

    /// A change of the HTTPRoute watch. Returns the routemaps to settle.
    pub fn live_event(&mut self, event: LiveEvent) -> Vec<RouteMapKey> {
        match event {
            LiveEvent::Relisting => {
                self.live_synced = false;
                self.live.clear();
                self.labelled.clear();
                Vec::new()
            }
            LiveEvent::Synced => {
                self.live_synced = true;
                for slot in self.slots.values_mut() {
                    slot.echo = None;
                }
                self.all_keys()
            }
            LiveEvent::Upsert(mut route) => {
                let id = route.id.clone();
                self.forget_live(&id);
                let key = route
                    .routemap
                    .as_deref()
                    .map(|name| RouteMapKey::new(&id.namespace, name));
                if let Some(slot) = key.as_ref().and_then(|k| self.slots.get_mut(k)) {
                    if slot.echo.as_deref() == Some(route.resource_version.as_str()) {
                        slot.echo = None;
                    }
                    if let Some(kept) = &slot.route {
                        share_equal(&mut route.owned, &kept.owned);
                    }
                }
                if let Some(key) = &key {
                    self.labelled
                        .entry(key.clone())
                        .or_default()
                        .push(id.clone());
                }
                self.live.insert(id, route);
                self.settle_if_synced(key)
            }
            LiveEvent::Delete(id) => {
                let key = self.forget_live(&id);
                self.settle_if_synced(key)
            }
        }
    }

    fn settle_if_synced(&self, key: Option<RouteMapKey>) -> Vec<RouteMapKey> {
        match key {
            Some(key) if self.live_synced && self.slots.contains_key(&key) => vec![key],
            _ => Vec::new(),
        }
    }

    /// Drops a live route; returns the routemap its label named.
    fn forget_live(&mut self, id: &RouteId) -> Option<RouteMapKey> {
        let old = self.live.remove(id)?;
        let key = RouteMapKey::new(&id.namespace, old.routemap.as_deref()?);
        if let Some(ids) = self.labelled.get_mut(&key) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.labelled.remove(&key);
            }
        }
        Some(key)
    }

    /// Leadership changed. A new leader settles everything.
    pub fn set_leader(&mut self, leader: bool) -> Vec<RouteMapKey> {
        if leader == self.leader {
            return Vec::new();
        }
        self.leader = leader;
        if leader { self.all_keys() } else { Vec::new() }
    }

    /// Whether this replica writes.
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// The periodic resync: every routemap is checked again, stale echoes forgotten.
    pub fn resync(&mut self) -> Vec<RouteMapKey> {
        for slot in self.slots.values_mut() {
            slot.echo = None;
        }
        self.all_keys()
    }

    /// Routemaps whose retry is due at `now`.
    pub fn due(&mut self, now: Instant) -> Vec<RouteMapKey> {
        let slots = &self.slots;
        self.retrying
            .retain(|k| slots.get(k).is_some_and(|s| s.next_try().is_some()));
        self.retrying
            .iter()
            .filter(|k| {
                slots
                    .get(*k)
                    .and_then(|s| s.next_try())
                    .is_some_and(|at| at <= now)
            })
            .cloned()
            .collect()
    }

    /// When the next retry is due (asked after every event: only the routemaps that were ever
    /// given a retry are looked at).
    pub fn next_retry(&self) -> Option<Instant> {
        self.retrying
            .iter()
            .filter_map(|k| self.slots.get(k)?.next_try())
            .min()
    }

    /// The next write for a routemap (see the module doc).
    pub fn next(&mut self, key: &RouteMapKey, now: Instant) -> Next {
        if !self.slots.contains_key(key) {
            return Next::Idle(Idle::Gone);
        }
        if !self.leader {
            self.tally.skipped_follower += 1;
            return Next::Idle(Idle::Follower);
        }
        if !self.live_synced {
            return Next::Idle(Idle::NotSynced);
        }
        loop {
            if let Some(slot) = self.slots.get_mut(key)
                && !slot.in_round()
                && let Some(pending) = slot.next.take()
            {
                slot.adopt(pending);
            }
            let next = self.next_step(key, now);
            let Some(slot) = self.slots.get_mut(key) else {
                return next;
            };
            match next {
                Next::Write(_) => slot.in_flight = true,
                // The round just ended: a decision that waited for it starts its own.
                Next::Idle(Idle::Settled) if slot.next.is_some() && !slot.in_round() => continue,
                Next::Idle(_) => {}
            }
            return next;
        }
    }

    fn next_step(&mut self, key: &RouteMapKey, now: Instant) -> Next {
        let stale = self.stale_route(key);
        let Some(slot) = self.slots.get_mut(key) else {
            return Next::Idle(Idle::Gone);
        };
        // A route write waits out its retry delay; a report or delete, its own.
        let wait = if slot.result.is_none() {
            slot.retry
        } else {
            slot.call_retry
        };
        if let Some((at, _)) = wait
            && at > now
        {
            return Next::Idle(Idle::Waiting(at));
        }
        if slot.result.is_none() {
            match &slot.route {
                None => slot.result = Some(RouteResult::NoRoute),
                Some(route) => {
                    let want_hash = fnv1a(route.owned.as_bytes());
                    let live = self.live.get(&route.id);
                    let waiting_for_echo = slot.echo.is_some() && slot.applied == Some(want_hash);
                    if !(waiting_for_echo || live.is_some_and(|l| l.carries(route))) {
                        return Next::Write(Step::Apply {
                            id: route.id.clone(),
                            route: route.clone(),
                        });
                    }
                    slot.applied = Some(want_hash);
                    slot.retry = None;
                    self.tally.unchanged += 1;
                    slot.result = Some(RouteResult::Unchanged {
                        generation: live.and_then(|l| l.generation),
                    });
                }
            }
        }
        let in_place = matches!(
            slot.result,
            Some(RouteResult::Applied { .. } | RouteResult::Unchanged { .. })
        );
        if in_place
            && matches!(slot.decision, KeptDecision::Desired(_))
            && let Some((old, resource_version)) = stale
        {
            let now_writes = slot.route.as_ref().map_or("-", |r| r.id.name.as_str());
            return Next::Write(Step::Delete {
                event: EventNote {
                    warning: false,
                    reason: "RouteRemoved",
                    note: format!(
                        "HTTPRoute {} removed: this routemap now writes HTTPRoute {now_writes}",
                        old.name
                    ),
                },
                id: old,
                resource_version,
                owner: slot.owner.clone(),
            });
        }
        let live = slot.route.as_ref().and_then(|r| self.live.get(&r.id));
        let Some(result) = slot.result.clone() else {
            return gateway_report(slot, live);
        };
        let applied = matches!(result, RouteResult::Applied { .. });
        if !slot.unreported && !applied && !matches!(result, RouteResult::Failed { .. }) {
            slot.result = None;
            return gateway_report(slot, live);
        }
        let route_json = slot
            .route
            .as_ref()
            .and_then(|r| r.to_json().ok())
            .map(|j| j.to_string());
        match report_route(
            slot.route.as_ref().map(|r| r.id.name.as_str()),
            route_json.as_deref(),
            &slot.decision.decision(),
            &result,
            slot.resource_version.as_deref(),
            slot.reported.as_deref(),
        ) {
            Some(mut report) => {
                // Every status written carries the gateway's answer too, so it is never lost.
                report.status.gateway = live.map(|l| l.gateway.clone());
                Next::Write(Step::Report {
                    owner: slot.owner.clone(),
                    report,
                })
            }
            None => {
                slot.unreported = false;
                slot.result = None;
                gateway_report(slot, live)
            }
        }
    }

    /// The live route a routemap writes.
    fn live_of(&self, key: &RouteMapKey) -> Option<&LiveRoute> {
        let id = &self.slots.get(key)?.route.as_ref()?.id;
        self.live.get(id)
    }

    /// A route this routemap owns under a name it no longer writes, with its resourceVersion.
    fn stale_route(&self, key: &RouteMapKey) -> Option<(RouteId, String)> {
        let slot = self.slots.get(key)?;
        let want = &slot.route.as_ref()?.id;
        self.labelled.get(key)?.iter().find_map(|id| {
            let live = self.live.get(id)?;
            (id != want && live.owner_uid.as_deref() == Some(slot.owner.uid.as_str()))
                .then(|| (id.clone(), live.resource_version.clone()))
        })
    }

    /// How an apply went: the route as the API server answered it, or the error. `jitter`
    /// (0 to 1) stretches a retry delay. Returns whether the routemap has a next step now.
    pub fn applied(
        &mut self,
        key: &RouteMapKey,
        answer: Result<LiveRoute, WriteError>,
        now: Instant,
        jitter: f64,
    ) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        slot.in_flight = false;
        match answer {
            Ok(mut live) => {
                if let Some(route) = &slot.route {
                    share_equal(&mut live.owned, &route.owned);
                    slot.applied = Some(fnv1a(route.owned.as_bytes()));
                }
                let previous = self.live.get(&live.id).map(|l| l.resource_version.clone());
                slot.echo =
                    Some(live.resource_version.clone()).filter(|rv| Some(rv) != previous.as_ref());
                slot.retry = None;
                slot.result = Some(RouteResult::Applied {
                    generation: live.generation,
                });
                let id = live.id.clone();
                let labelled = live.routemap.clone();
                self.forget_live(&id);
                if let Some(name) = labelled {
                    self.labelled
                        .entry(RouteMapKey::new(&id.namespace, name))
                        .or_default()
                        .push(id.clone());
                }
                self.live.insert(id, live);
                true
            }
            Err(e) => self.failed(key, &e, now, jitter, true),
        }
    }

    /// Schedules the retry of a failed call: the route write (`route`: reported to users, as
    /// `ApplyFailed`, right away) or a report or delete (retried quietly). A throttled call is
    /// never reported. Returns whether the routemap has a next step now.
    fn failed(
        &mut self,
        key: &RouteMapKey,
        e: &WriteError,
        now: Instant,
        jitter: f64,
        route: bool,
    ) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        let retry = if route {
            &mut slot.retry
        } else {
            &mut slot.call_retry
        };
        let attempt = retry.map_or(0, |(_, n)| n) + 1;
        *retry = e
            .transient()
            .then(|| (now + retry_delay(attempt, e, jitter), attempt));
        if retry.is_some() {
            self.retrying.insert(key.clone());
        }
        if let WriteError::Throttled { .. } = e {
            return false;
        }
        if route {
            slot.result = Some(RouteResult::Failed {
                category: e.category(),
                message: e.to_string(),
            });
        }
        route
    }

    /// How writing `status` (and its Event) went. Returns whether the routemap has a next
    /// step now.
    pub fn reported(
        &mut self,
        key: &RouteMapKey,
        status: &RouteMapStatus,
        answer: Result<(), WriteError>,
        now: Instant,
        jitter: f64,
    ) -> bool {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.in_flight = false;
        }
        match answer {
            Ok(()) => {
                let live = self.live_of(key).map(|l| l.gateway.clone());
                if let Some(slot) = self.slots.get_mut(key) {
                    let before = slot.reported_gateway.as_ref().map(|g| g.acceptance);
                    // Counted once some implementation has answered.
                    if let Some(gateway) = &status.gateway
                        && !gateway.parents.is_empty()
                        && before != Some(gateway.acceptance)
                    {
                        self.tally.gateway.push(gateway.acceptance.as_str());
                    }
                    slot.remember(Some(status.clone()));
                    slot.unreported = false;
                    slot.result = None;
                    slot.call_retry = None;
                }
                // A decision may have come, or the gateway answered, while it was in flight.
                self.slots.get(key).is_some_and(|s| s.next.is_some())
                    || (live.is_some() && live.as_ref() != status.gateway.as_ref())
            }
            Err(e @ WriteError::Throttled { .. }) => self.failed(key, &e, now, jitter, false),
            Err(_) => {
                // Retried at the next change or resync, as before any throttling.
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.result = None;
                }
                false
            }
        }
    }

    /// How a delete went. Returns whether the routemap has a next step now.
    pub fn deleted(
        &mut self,
        key: &RouteMapKey,
        id: &RouteId,
        answer: Result<(), WriteError>,
        now: Instant,
        jitter: f64,
    ) -> bool {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.in_flight = false;
        }
        match answer {
            Ok(()) | Err(WriteError::Rejected { code: 404, .. }) => {
                self.forget_live(id);
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.call_retry = None;
                }
                true
            }
            // Someone changed it since we saw it: look again once the watch has caught up.
            Err(e) => self.failed(key, &e, now, jitter, false),
        }
    }
}

/// A report of the gateway's answer on the live route, when it differs from the one last
/// reported; its status carries the decision as last reported.
fn gateway_report(slot: &mut Slot, live: Option<&LiveRoute>) -> Next {
    let (Some(route), Some(live)) = (&slot.route, live) else {
        return Next::Idle(Idle::Settled);
    };
    // No answer from any implementation, and none reported: nothing new to tell (a restart
    // with an annotation written before gateways were reported writes nothing).
    let nothing_new = match &slot.reported_gateway {
        Some(reported) => *reported == live.gateway,
        None => live.gateway.parents.is_empty(),
    };
    if nothing_new {
        return Next::Idle(Idle::Settled);
    }
    let route_json = route.to_json().ok().map(|j| j.to_string());
    let Some(mut report) = report_route(
        Some(route.id.name.as_str()),
        route_json.as_deref(),
        &slot.decision.decision(),
        &RouteResult::Unchanged {
            generation: live.generation,
        },
        slot.resource_version.as_deref(),
        None,
    ) else {
        return Next::Idle(Idle::Settled);
    };
    report.event = acceptance_event(
        &route.id.name,
        &live.gateway,
        slot.reported_gateway.as_ref().map(|g| g.acceptance),
    );
    report.status.gateway = Some(live.gateway.clone());
    Next::Write(Step::Report {
        owner: slot.owner.clone(),
        report,
    })
}
