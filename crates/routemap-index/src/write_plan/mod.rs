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

use crate::error::WriteError;
use crate::index::{Change, Decision};
use crate::live::{KeptRoute, LiveRoute, RouteId, share_equal};
use crate::report::{EventNote, Report, RouteMapStatus};
use crate::routemap::RouteMapKey;

mod slot;
mod steps;

use slot::{KeptDecision, Pending, Slot};

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
}
