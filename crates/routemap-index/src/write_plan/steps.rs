//! The planner's steps: which call a routemap needs next, and what its answer changes.

use std::time::{Duration, Instant};

use crate::error::WriteError;
use crate::gateway::acceptance_event;
use crate::live::{LiveRoute, RouteId, share_equal};
use crate::report::{EventNote, Report, RouteMapStatus, RouteResult, fnv1a, report_route};
use crate::routemap::RouteMapKey;

use super::slot::{KeptDecision, Look, Slot};
use super::{Idle, Next, Step, WritePlanner, retry_delay};

impl WritePlanner {
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
                Next::Write(_) => slot.phase.started(),
                // The round just ended: a decision that waited for it starts its own.
                Next::Idle(Idle::Settled) if slot.next.is_some() && !slot.in_round() => continue,
                Next::Idle(_) => {}
            }
            return next;
        }
    }

    fn next_step(&mut self, key: &RouteMapKey, now: Instant) -> Next {
        let stale = self.stale_route(key);
        // Who else wants or holds the route name, looked up before the slot is borrowed.
        let (winner, holder, others) = match self.slots.get(key) {
            Some(slot) => match &slot.route {
                Some(route) => {
                    let winner = self
                        .claim_winner(&route.id)
                        .filter(|w| *w != key)
                        .map(|w| format!("{}/{}", w.namespace, w.name));
                    let live = self.live.get(&route.id);
                    let holder = live
                        .filter(|l| !l.owned_by(&slot.owner.uid))
                        .map(LiveRoute::describe_owner);
                    (
                        winner,
                        holder,
                        live.map(|l| self.others(l)).unwrap_or_default(),
                    )
                }
                None => (None, None, Vec::new()),
            },
            None => return Next::Idle(Idle::Gone),
        };
        let Some(slot) = self.slots.get_mut(key) else {
            return Next::Idle(Idle::Gone);
        };
        // A route write waits out its retry delay; a report or delete, its own.
        let wait = if slot.phase.result().is_none() {
            slot.retry
        } else {
            slot.call_retry
        };
        if let Some((at, _)) = wait
            && at > now
        {
            return Next::Idle(Idle::Waiting(at));
        }
        if slot.phase.result().is_none() {
            match &slot.route {
                None => slot.phase.route_done(RouteResult::NoRoute),
                Some(_) if let Some(winner) = winner => {
                    slot.phase.route_done(RouteResult::Claimed { winner });
                }
                Some(_) if let Some(holder) = holder => {
                    slot.phase.route_done(RouteResult::NotOwned { holder });
                }
                Some(route) => {
                    let want_hash = fnv1a(route.owned.as_bytes());
                    let live = self.live.get(&route.id);
                    if live.is_none() {
                        match &slot.look {
                            // Not in the owned-route watch: look before a first create.
                            None => {
                                return Next::Write(Step::Look {
                                    id: route.id.clone(),
                                });
                            }
                            Some(Look::Foreign(holder)) => {
                                slot.phase.route_done(RouteResult::NotOwned {
                                    holder: holder.clone(),
                                });
                            }
                            Some(Look::Absent) => {}
                        }
                    }
                    let waiting_for_echo = slot.echo.is_some() && slot.applied == Some(want_hash);
                    if slot.phase.result().is_none()
                        && !(waiting_for_echo || live.is_some_and(|l| l.carries(route)))
                    {
                        // Someone else changed fields we had in place: a contest, repaired at
                        // once the first time, then with a doubling delay.
                        if live.is_some() && slot.applied == Some(want_hash) {
                            let n = match slot.repairs {
                                Some((last, n))
                                    if now.saturating_duration_since(last) < CONTEST_QUIET =>
                                {
                                    n
                                }
                                _ => {
                                    slot.contest_warned = false;
                                    0
                                }
                            };
                            if n >= 1 {
                                if let Some((last, _)) = slot.repairs {
                                    let at = last + repair_delay(n);
                                    if at > now {
                                        slot.repair_wait = Some(at);
                                        self.retrying.insert(key.clone());
                                        return Next::Idle(Idle::Waiting(at));
                                    }
                                }
                                if !slot.contest_warned {
                                    slot.contest_warned = true;
                                    let who = if others.is_empty() {
                                        "another writer".to_string()
                                    } else {
                                        format!("field manager {}", others.join(", "))
                                    };
                                    return Next::Write(Step::Event {
                                        owner: slot.owner.clone(),
                                        event: EventNote {
                                            warning: true,
                                            reason: "RouteContested",
                                            note: format!(
                                                "HTTPRoute {}: {who} keeps changing fields this controller owns; repaired with a delay doubling from 1 s to 5 min while it goes on",
                                                route.id.name
                                            ),
                                        },
                                    });
                                }
                            }
                            slot.repairs = Some((now, n + 1));
                        }
                        // The look allowed one create; the next needs a new one.
                        slot.look = None;
                        return Next::Write(Step::Apply {
                            id: route.id.clone(),
                            route: route.clone(),
                        });
                    }
                    if slot.phase.result().is_none() {
                        slot.applied = Some(want_hash);
                        slot.retry = None;
                        self.tally.unchanged += 1;
                        slot.phase.route_done(RouteResult::Unchanged {
                            generation: live.and_then(|l| l.generation),
                        });
                    }
                }
            }
        }
        // A route of ours under another name goes once the new one is in place; with no route
        // to write (strategy `none`), at once: the routemap no longer routes, and a route left
        // behind would no longer follow readiness.
        let in_place = matches!(
            slot.phase.result(),
            Some(
                RouteResult::Applied { .. } | RouteResult::Unchanged { .. } | RouteResult::NoRoute
            )
        );
        if in_place
            && matches!(slot.decision, KeptDecision::Desired(_))
            && let Some((old, resource_version)) = stale
        {
            let note = match &slot.route {
                Some(route) => format!(
                    "HTTPRoute {} removed: this routemap now writes HTTPRoute {}",
                    old.name, route.id.name
                ),
                None => format!(
                    "HTTPRoute {} removed: strategy none writes no route, and a route left in place would no longer follow readiness",
                    old.name
                ),
            };
            return Next::Write(Step::Delete {
                event: EventNote {
                    warning: false,
                    reason: "RouteRemoved",
                    note,
                },
                id: old,
                resource_version,
                owner: slot.owner.clone(),
            });
        }
        // Our own route: the only one whose status this routemap may write.
        let live = slot
            .route
            .as_ref()
            .and_then(|r| self.live.get(&r.id))
            .filter(|l| l.owned_by(&slot.owner.uid));
        let Some(result) = slot.phase.result().cloned() else {
            return status_only(slot, live).unwrap_or_else(|| gateway_report(slot, live));
        };
        let applied = matches!(result, RouteResult::Applied { .. });
        if !slot.unreported && !applied && !matches!(result, RouteResult::Failed { .. }) {
            slot.phase.round_over();
            return status_only(slot, live).unwrap_or_else(|| gateway_report(slot, live));
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
            &slot.reported_withdrawn,
        ) {
            Some(mut report) => {
                // Every status written carries the gateway's answer too, so it is never lost.
                report.status.gateway = live.map(|l| l.gateway.clone());
                let held = matches!(
                    result,
                    RouteResult::NotOwned { .. } | RouteResult::Claimed { .. }
                );
                Next::Write(Step::Report {
                    owner: slot.owner.clone(),
                    report: Box::new(report),
                    route: live.filter(|_| !held).and_then(target),
                })
            }
            None => {
                slot.unreported = false;
                slot.phase.round_over();
                status_only(slot, live).unwrap_or_else(|| gateway_report(slot, live))
            }
        }
    }

    /// The live route a routemap writes.
    fn live_of(&self, key: &RouteMapKey) -> Option<&LiveRoute> {
        let id = &self.slots.get(key)?.route.as_ref()?.id;
        self.live.get(id)
    }

    /// A route this routemap owns under a name it no longer writes (any, when it writes none),
    /// with its resourceVersion.
    fn stale_route(&self, key: &RouteMapKey) -> Option<(RouteId, String)> {
        let slot = self.slots.get(key)?;
        let want = slot.route.as_ref().map(|r| &r.id);
        self.labelled.get(key)?.iter().find_map(|id| {
            let live = self.live.get(id)?;
            (Some(id) != want && live.owner_uid.as_deref() == Some(slot.owner.uid.as_str()))
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
        slot.phase.returned();
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
                slot.phase.route_done(RouteResult::Applied {
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
            slot.phase.route_done(RouteResult::Failed {
                category: e.category(),
                message: e.to_string(),
            });
        }
        route
    }

    /// A call of this routemap has returned.
    fn returned(&mut self, key: &RouteMapKey) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.phase.returned();
        }
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
        self.returned(key);
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
                    slot.reported_here = true;
                    slot.unreported = false;
                    slot.phase.round_over();
                    slot.call_retry = None;
                    slot.status_only = None;
                }
                // A decision may have come, or the gateway answered, while it was in flight.
                self.slots.get(key).is_some_and(|s| s.next.is_some())
                    || (live.is_some() && live.as_ref() != status.gateway.as_ref())
            }
            Err(e @ WriteError::Throttled { .. }) => self.failed(key, &e, now, jitter, false),
            Err(_) => {
                // Retried at the next change or resync, as before any throttling.
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.phase.round_over();
                }
                false
            }
        }
    }

    /// The Event of a report went out but writing its status did not (the executor calls
    /// this before [`Self::reported`] with the failure): the decision counts as told, and the
    /// status alone is written again (after the server's delay, when it throttled; at the next
    /// settle otherwise), so a failed status write never publishes its Event twice.
    pub fn event_out(&mut self, key: &RouteMapKey, status: &RouteMapStatus) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.reported = Some(status.fingerprint.clone());
            slot.reported_gateway = status.gateway.clone();
            slot.reported_withdrawn = status.withdrawn.keys().cloned().collect();
            slot.reported_here = true;
            slot.unreported = false;
            slot.status_only = Some(status.clone());
        }
    }

    /// What a GET of a route name found (`None`: no such route). Returns whether the routemap
    /// has a next step now.
    pub fn looked(
        &mut self,
        key: &RouteMapKey,
        answer: Result<Option<LiveRoute>, WriteError>,
        now: Instant,
        jitter: f64,
    ) -> bool {
        self.returned(key);
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        match answer {
            Ok(None) => {
                slot.look = Some(Look::Absent);
                slot.looks = 0;
                true
            }
            Ok(Some(live)) if live.owned_by(&slot.owner.uid) => {
                // Ours, though the owned-route watch does not show it (its label was removed):
                // known now, and repaired by the apply that follows.
                slot.look = None;
                slot.looks = 0;
                let id = live.id.clone();
                self.forget_live(&id);
                if let Some(name) = &live.routemap {
                    self.labelled
                        .entry(RouteMapKey::new(&id.namespace, name))
                        .or_default()
                        .push(id.clone());
                }
                self.live.insert(id, live);
                true
            }
            Ok(Some(live)) => {
                slot.look = Some(Look::Foreign(live.describe_owner()));
                slot.looks += 1;
                slot.look_due = Some(now + look_delay(slot.looks));
                self.retrying.insert(key.clone());
                true
            }
            Err(e) => self.failed(key, &e, now, jitter, true),
        }
    }

    /// An Event published on its own has returned (a failure was logged and counted).
    pub fn evented(&mut self, key: &RouteMapKey) -> bool {
        self.returned(key);
        true
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
        self.returned(key);
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

/// The write of a status whose Event is already out (its first write failed), on our live
/// route, without the Event. Dropped when the route is gone: a new one is reported afresh.
fn status_only(slot: &mut Slot, live: Option<&LiveRoute>) -> Option<Next> {
    let status = slot.status_only.clone()?;
    let Some(route) = live.and_then(target) else {
        slot.status_only = None;
        return None;
    };
    Some(Next::Write(Step::Report {
        owner: slot.owner.clone(),
        report: Box::new(Report {
            event: None,
            status,
        }),
        route: Some(route),
    }))
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
        &slot.reported_withdrawn,
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
        report: Box::new(report),
        route: target(live),
    })
}

/// Where a status annotation goes: the route, with its uid as a precondition.
fn target(live: &LiveRoute) -> Option<(RouteId, String)> {
    Some((live.id.clone(), live.uid.clone()?))
}

/// Ten quiet minutes end a contest: the next repair is made at once again.
const CONTEST_QUIET: Duration = Duration::from_secs(600);

/// Delay before repair `n + 1` of a contest (`n` >= 1 made): 1 s doubling to 5 min.
fn repair_delay(n: u32) -> Duration {
    Duration::from_secs(1)
        .saturating_mul(1 << (n - 1).min(9))
        .min(Duration::from_secs(300))
}

/// Delay before look `n` (from 1) at a route name someone else holds: 5 s doubling to 5 min.
fn look_delay(n: u32) -> Duration {
    Duration::from_secs(5)
        .saturating_mul(1 << n.saturating_sub(1).min(6))
        .min(Duration::from_secs(300))
}
