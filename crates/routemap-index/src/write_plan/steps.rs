//! The planner's steps: which call a routemap needs next, and what its answer changes.

use std::time::Instant;

use crate::error::WriteError;
use crate::gateway::acceptance_event;
use crate::live::{LiveRoute, RouteId, share_equal};
use crate::report::{EventNote, RouteMapStatus, RouteResult, fnv1a, report_route};
use crate::routemap::RouteMapKey;

use super::slot::{KeptDecision, Slot};
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

    /// A call of this routemap has returned.
    fn returned(&mut self, key: &RouteMapKey) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.in_flight = false;
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
