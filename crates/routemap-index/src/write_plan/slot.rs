//! What the planner keeps per routemap between its calls.

use std::time::Instant;

use routing_core::RouteMapRef;

use crate::error::RouteMapError;
use crate::gateway::GatewayStatus;
use crate::index::{Decision, Traffic};
use crate::live::KeptRoute;
use crate::report::RouteMapStatus;

use super::phase::Phase;

/// A decision without its route (the slot's `route`): a `Decision` is as large as a typed
/// route even when it holds none.
#[derive(Debug)]
pub(super) enum KeptDecision {
    Desired(Traffic),
    Invalid(RouteMapError),
}

impl KeptDecision {
    pub(super) fn decision(&self) -> Decision {
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
pub(super) struct Slot {
    pub(super) owner: RouteMapRef,
    pub(super) decision: KeptDecision,
    /// The route to have: the decided one, or the last good one while the routemap is invalid
    /// (drift repair goes on). Kept as text, shared with the live view.
    pub(super) route: Option<KeptRoute>,
    /// Hash of the owned view this process last applied (only compared for equality).
    pub(super) applied: Option<u64>,
    /// resourceVersion of our last write, until the watch shows it.
    pub(super) echo: Option<String>,
    /// When the route may be written again, and how many writes failed in a row.
    pub(super) retry: Option<(Instant, u32)>,
    /// When a throttled or conflicting report or delete may be tried again, and how many tries
    /// failed in a row.
    pub(super) call_retry: Option<(Instant, u32)>,
    pub(super) resource_version: Option<String>,
    /// The decision fingerprint last reported (see [`RouteMapStatus::fingerprint`]).
    pub(super) reported: Option<String>,
    /// The gateway's answer last reported.
    pub(super) reported_gateway: Option<GatewayStatus>,
    /// The candidates last reported withdrawn by the guard (each told once, by its Warning).
    pub(super) reported_withdrawn: Vec<String>,
    /// A decision not yet reported (follower, or the live view not yet synced).
    pub(super) unreported: bool,
    /// Where its round of writes stands, with the route step's result until it is told.
    pub(super) phase: Phase,
    /// A decision that came during a round, taken up once the round is over.
    pub(super) next: Option<Pending>,
    /// The routemap's `metadata.creationTimestamp` (RFC 3339, so text order is time order):
    /// of two routemaps claiming one route name, the older keeps it.
    pub(super) created: Option<String>,
    /// What a GET found under the route name while the owned-route watch did not show it.
    pub(super) look: Option<Look>,
    /// When a route held by someone else is looked at again (cleared when due)...
    pub(super) look_due: Option<Instant>,
    /// ... and how many looks in a row found it held.
    pub(super) looks: u32,
    /// This process reported since it last became leader: its memory of what was reported is
    /// newer than any annotation the route watch may still deliver.
    pub(super) reported_here: bool,
    /// Repairs of our fields after someone else changed them: when the last was made and how
    /// many came in a row; the next waits until `repair_wait`.
    pub(super) repairs: Option<(Instant, u32)>,
    pub(super) repair_wait: Option<Instant>,
    /// The Warning naming the other writer was published for this contest.
    pub(super) contest_warned: bool,
    /// A status whose Event is out but whose write failed: written again on its own, so the
    /// Event is never published twice.
    pub(super) status_only: Option<RouteMapStatus>,
}

/// What a GET of the route name found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Look {
    /// No route: this routemap may create it (once: the create consumes the look).
    Absent,
    /// A route this routemap did not write, and who holds it.
    Foreign(String),
}

/// A decision as the planner keeps it until its round starts.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) owner: RouteMapRef,
    pub(super) decision: KeptDecision,
    /// `None`: keep the route (an invalid routemap); `Some(None)`: no route (strategy `none`).
    pub(super) route: Option<Option<KeptRoute>>,
}

impl Slot {
    /// A round is under way: a call in flight, or a route step whose report is still to make.
    pub(super) fn in_round(&self) -> bool {
        self.phase.in_round()
    }

    /// Starts a new round for a decision.
    pub(super) fn adopt(&mut self, p: Pending) {
        self.owner = p.owner;
        self.decision = p.decision;
        if let Some(route) = p.route {
            // What a look found is about one route name: another name is looked at anew.
            if route.as_ref().map(|r| &r.id) != self.route.as_ref().map(|r| &r.id) {
                self.look = None;
                self.look_due = None;
                self.looks = 0;
            }
            self.route = route;
        }
        // A wait the server asked for (429) or a transient failure's backoff outlives the
        // decision: the API server is no less busy for it. The newest route is what the retry
        // writes.
        self.unreported = true;
        self.phase.round_over();
    }

    /// What a status annotation says was reported.
    pub(super) fn remember(&mut self, status: Option<RouteMapStatus>) {
        self.reported = status.as_ref().map(|s| s.fingerprint.clone());
        self.reported_withdrawn = status
            .as_ref()
            .map(|s| s.withdrawn.keys().cloned().collect())
            .unwrap_or_default();
        self.reported_gateway = status.and_then(|s| s.gateway);
    }

    /// When this routemap's next retry is due.
    pub(super) fn next_try(&self) -> Option<Instant> {
        let wait = if self.phase.result().is_none() {
            self.retry
        } else {
            self.call_retry
        };
        [wait.map(|(at, _)| at), self.look_due, self.repair_wait]
            .into_iter()
            .flatten()
            .min()
    }
}
