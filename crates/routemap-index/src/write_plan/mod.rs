//! The write planner: which writes the controller makes, decided without IO.
//!
//! Inputs: the index's [`Change`]s, what the routemap watch saw of each routemap (its
//! resourceVersion and creation time), the HTTPRoute watch's view of the routes we own
//! ([`LiveEvent`], with the status annotation we wrote on each: what was last reported),
//! leadership, and the time, always passed in. Output: for one routemap at a time, the next [`Step`] to take (an
//! apply, a delete, a report) or why there is none ([`Idle`]); the executor (crate
//! `k8s-adapter`) makes the call and hands the result back ([`WritePlanner::applied`],
//! [`WritePlanner::reported`], [`WritePlanner::deleted`]). A routemap's steps come one at a time,
//! so its route, Event and status stay in order whatever runs in parallel for other routemaps;
//! where its round stands is one explicit `Phase` (idle, a call before the route step has a
//! result, the result to tell, a call after it), moved only by its tested transitions.
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
//! Only what is ours. A route is written only when it is absent or provably this routemap's
//! (its controlling owner is the routemap's uid). A route name the owned-route watch does not
//! show is looked at first ([`Step::Look`], a GET): a route found there that is not ours is never
//! touched; the routemap gets a Warning `RouteNotOwned` naming who holds it (Events only: its
//! status cannot be written on a route that is not ours), and the name is looked at again, 5 s
//! doubling to 5 min, until it is gone. Two routemaps claiming one route name: the older
//! (creation time, then namespace/name) writes it; the other writes nothing and gets a Warning
//! `RouteClaimed` naming the winner, and is settled again when the winner lets the name go.
//! Someone else changing fields we own is repaired at once the first time, then with a delay
//! doubling from 1 s to 5 min while it goes on (a Warning `RouteContested` names the other
//! field managers, once per contest); ten quiet minutes end the contest.
//!
//! Never: a write as a follower (followers keep their view warm and catch up when elected); a
//! write from an invalid spec (an invalid routemap's last good spec, when the index keeps one,
//! stays in force and gated on readiness; without one the live route is left as it is); deleting
//! a route we do not own. A route is deleted only when its routemap now writes a route of another
//! name, once that new route is in place, or writes none (strategy `none`), and only if the old
//! one carries this routemap's label and its uid as controlling owner. A deleted routemap needs nothing: the owner reference makes Kubernetes
//! garbage-collect its route.
//!
//! Failures: a 429 (or a 5xx naming a delay) is retried after the delay the server asks for, with
//! jitter, and reported to nobody; other transient failures retry with exponential backoff and
//! an `ApplyFailed` report; a rejected route waits for a new decision or the next resync. A new
//! decision keeps a pending retry's time (the server is no less busy for it); the retry writes
//! the newest route. How many calls run at once follows the server's 429s ([`InFlightLimit`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use routing_core::RouteMapRef;
use routing_core::keys::{MANAGED_BY_VALUE, STATUS_FIELD_MANAGER};

use crate::error::WriteError;
use crate::index::{Change, Decision};
use crate::live::{KeptRoute, LiveRoute, RouteId, share_equal};
use crate::report::{EventNote, Report, RouteMapStatus};
use crate::routemap::RouteMapKey;

mod limit;
mod phase;
mod slot;
mod steps;

pub use limit::InFlightLimit;

use phase::Phase;
use slot::{KeptDecision, Pending, Slot};

/// A change of the HTTPRoute watch.
// An upsert is the common event and is consumed at once; boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
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
    /// Publish the report's Event and write its status annotation on the route.
    Report {
        /// The routemap.
        owner: RouteMapRef,
        /// What to tell (boxed: a status is most of the step's size).
        report: Box<Report>,
        /// The route the status annotation goes on, with its uid (a precondition); `None`:
        /// Events only (the routemap has no route of its own).
        route: Option<(RouteId, String)>,
    },
    /// GET the route under this name: the owned-route watch does not show it, and it must be
    /// absent or ours before it is written.
    Look {
        /// Which route.
        id: RouteId,
    },
    /// Publish an Event on its own.
    Event {
        /// The routemap.
        owner: RouteMapRef,
        /// The Event.
        event: EventNote,
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

/// The write planner. See the module doc.
#[derive(Debug, Default)]
pub struct WritePlanner {
    /// Boxed: a B-tree node holds 11 values inline, most of them unused space.
    slots: BTreeMap<RouteMapKey, Box<Slot>>,
    /// What the routemap watch saw of routemaps not decided yet: resourceVersion and creation.
    seen: HashMap<RouteMapKey, (Option<String>, Option<String>)>,
    /// The routemaps that want each route name (more than one: a claim to settle).
    claims: HashMap<RouteId, Vec<RouteMapKey>>,
    /// Routemaps to settle because something they wait on changed (see [`Self::take_woken`]).
    woken: Vec<RouteMapKey>,
    /// Our field manager, told apart from other writers of a route.
    field_manager: String,
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

    /// Our field manager (default `iter8-controller`), told apart from other writers.
    pub fn set_field_manager(&mut self, name: &str) {
        self.field_manager = name.to_string();
    }

    /// The field managers of a route other than ours (route and status).
    fn others(&self, live: &LiveRoute) -> Vec<String> {
        let ours = if self.field_manager.is_empty() {
            MANAGED_BY_VALUE
        } else {
            self.field_manager.as_str()
        };
        live.managers
            .iter()
            .filter(|m| m.as_str() != ours && m.as_str() != STATUS_FIELD_MANAGER)
            .cloned()
            .collect()
    }

    /// Routemaps to settle because a route they wait on, or a claim they lost, changed.
    pub fn take_woken(&mut self) -> Vec<RouteMapKey> {
        std::mem::take(&mut self.woken)
    }

    /// The routemap watch saw a routemap: its resourceVersion and `creationTimestamp`.
    pub fn seen(
        &mut self,
        key: RouteMapKey,
        resource_version: Option<String>,
        created: Option<String>,
    ) {
        if let Some(slot) = self.slots.get_mut(&key) {
            slot.resource_version = resource_version;
            slot.created = created;
        } else {
            self.seen.insert(key, (resource_version, created));
        }
    }

    /// Records which route name a routemap wants; the other claimants of the old and new
    /// names are settled again (a winner may have let a name go).
    fn claim(&mut self, key: &RouteMapKey, old: Option<RouteId>, new: Option<RouteId>) {
        if old == new {
            return;
        }
        if let Some(old) = old
            && let Some(keys) = self.claims.get_mut(&old)
        {
            keys.retain(|k| k != key);
            self.woken.extend(keys.iter().cloned());
            if keys.is_empty() {
                self.claims.remove(&old);
            }
        }
        if let Some(new) = new {
            let keys = self.claims.entry(new).or_default();
            self.woken.extend(keys.iter().cloned());
            keys.push(key.clone());
        }
    }

    /// Of the routemaps claiming `id`, the one that writes it: the oldest, then by
    /// namespace/name.
    fn claim_winner(&self, id: &RouteId) -> Option<&RouteMapKey> {
        self.claims.get(id)?.iter().min_by(|a, b| {
            let created = |k: &RouteMapKey| self.slots.get(k).and_then(|s| s.created.clone());
            // A routemap without a creation time sorts last.
            let (ca, cb) = (created(a), created(b));
            (ca.is_none(), ca, *a).cmp(&(cb.is_none(), cb, *b))
        })
    }

    /// A change of the index. Returns the routemap to settle, if any.
    pub fn change(&mut self, change: Change) -> Option<RouteMapKey> {
        match change {
            Change::Removed { key } => {
                // The owner reference garbage-collects the route; nothing to write.
                if let Some(slot) = self.slots.remove(&key) {
                    let old = slot.route.map(|r| r.id);
                    self.claim(&key, old, None);
                }
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
                        if let Some(error) = &traffic.invalid {
                            self.tally.invalid.push(error.category());
                        }
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
                let old = self
                    .slots
                    .get(&key)
                    .and_then(|s| s.route.as_ref())
                    .map(|r| r.id.clone());
                let new = match &pending.route {
                    Some(route) => route.as_ref().map(|r| r.id.clone()),
                    None => old.clone(),
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
                        let (resource_version, created) =
                            self.seen.remove(&key).unwrap_or_default();
                        // What was last reported: the status annotation on its route.
                        let status = route
                            .as_ref()
                            .and_then(|r| r.as_ref())
                            .and_then(|r| self.live.get(&r.id))
                            .filter(|l| l.owned_by(&owner.uid))
                            .and_then(|l| l.status.as_deref())
                            .and_then(RouteMapStatus::parse);
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
                            reported_withdrawn: Vec::new(),
                            unreported: true,
                            phase: Phase::Idle,
                            next: None,
                            created,
                            look: None,
                            look_due: None,
                            looks: 0,
                            reported_here: false,
                            repairs: None,
                            repair_wait: None,
                            contest_warned: false,
                            status_only: None,
                        });
                        slot.remember(status);
                        self.slots.insert(key.clone(), slot);
                    }
                }
                // A new decision in a round keeps the old name until the round ends; claiming
                // the new one early only makes the claim settle sooner.
                self.claim(&key, old, new);
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
                let before = self.forget_live(&id);
                let key = route
                    .routemap
                    .as_deref()
                    .map(|name| RouteMapKey::new(&id.namespace, name));
                for claimant in self.claims.get(&id).into_iter().flatten() {
                    let Some(slot) = self.slots.get_mut(claimant) else {
                        continue;
                    };
                    if !route.owned_by(&slot.owner.uid) {
                        continue;
                    }
                    if slot.echo.as_deref() == Some(route.resource_version.as_str()) {
                        slot.echo = None;
                    }
                    if let Some(kept) = &slot.route {
                        share_equal(&mut route.owned, &kept.owned);
                    }
                    // What was last reported, unless this process reported since: the watch
                    // may still deliver an annotation older than its own last report.
                    if !slot.reported_here {
                        slot.remember(route.status.as_deref().and_then(RouteMapStatus::parse));
                    }
                }
                if let Some(key) = &key {
                    self.labelled
                        .entry(key.clone())
                        .or_default()
                        .push(id.clone());
                }
                self.live.insert(id.clone(), route);
                // The routemap its label names now and before (a label edited by hand is
                // repaired at once), and every routemap that wants the name.
                self.settle_route(&id, [key, before])
            }
            LiveEvent::Delete(id) => {
                let key = self.forget_live(&id);
                for claimant in self.claims.get(&id).into_iter().flatten() {
                    if let Some(slot) = self.slots.get_mut(claimant) {
                        slot.look = None;
                    }
                }
                self.settle_route(&id, [key, None])
            }
        }
    }

    fn settle_route(&self, id: &RouteId, keys: [Option<RouteMapKey>; 2]) -> Vec<RouteMapKey> {
        if !self.live_synced {
            return Vec::new();
        }
        let mut out: Vec<RouteMapKey> = Vec::new();
        let claimants = self.claims.get(id).into_iter().flatten().cloned();
        for key in keys.into_iter().flatten().chain(claimants) {
            if self.slots.contains_key(&key) && !out.contains(&key) {
                out.push(key);
            }
        }
        out
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
        if !leader {
            // Another leader reports meanwhile: learn from the annotations again.
            for slot in self.slots.values_mut() {
                slot.reported_here = false;
            }
        }
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
        // A due look or repair is cleared here, so its time is not due again and again.
        let mut woke = Vec::new();
        for key in &self.retrying {
            if let Some(slot) = self.slots.get_mut(key) {
                if slot.look_due.is_some_and(|at| at <= now) {
                    slot.look_due = None;
                    slot.look = None;
                    woke.push(key.clone());
                }
                if slot.repair_wait.is_some_and(|at| at <= now) {
                    slot.repair_wait = None;
                    woke.push(key.clone());
                }
            }
        }
        let slots = &self.slots;
        self.retrying
            .retain(|k| slots.get(k).is_some_and(|s| s.next_try().is_some()));
        for key in self.retrying.iter().filter(|k| {
            slots
                .get(*k)
                .and_then(|s| s.next_try())
                .is_some_and(|at| at <= now)
        }) {
            woke.push(key.clone());
        }
        woke.sort();
        woke.dedup();
        woke
    }

    /// When the next retry is due (asked after every event: only the routemaps that were ever
    /// given a retry are looked at).
    pub fn next_retry(&self) -> Option<Instant> {
        self.retrying
            .iter()
            .filter_map(|k| self.slots.get(k)?.next_try())
            .min()
    }
}
