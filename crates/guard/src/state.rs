//! Per-candidate state: how many failing verdicts in a row, and whether the candidate is
//! withdrawn.
//!
//! Phases and transitions:
//! - `Judging { failing }`: a failing verdict adds one; a healthy verdict sets 0; an unknown
//!   verdict changes nothing (it neither counts nor resets: a quiet minute says nothing either
//!   way, so it must not wipe out evidence of failure nor add to it. With `unknownFails` the
//!   verdict is already failing when it reaches here, see [`crate::verdict::judge`]). At
//!   `failAfter` the phase becomes `Withdrawn`.
//! - `Withdrawn(why)`: stays, whatever verdicts come (a withdrawn candidate gets no traffic, so
//!   its queries would only say "not enough traffic"), until the candidate's identity changes.
//! - Identity = the version fingerprint (e.g. Deployment generation + image: a new build is a
//!   new candidate) and the retry token (the value of the `iter8.tools/guard-retry` annotation:
//!   a user who fixed something outside the Deployment asks for another chance). Any change sends
//!   the candidate back to `Judging { failing: 0 }`, from any phase.
//!
//! A verdict measured for another identity than the current one is stale (the queries were
//! made before a new version rolled out) and is ignored, so a new image is never withdrawn on
//! its predecessor's numbers.

use std::fmt;
use std::time::Duration;

use routing_core::duration::format_duration;

use crate::query::Objective;
use crate::verdict::{Outcome, Verdict, VerdictKind, shown_value};

/// The user annotation whose value, when changed, gives a withdrawn candidate another chance.
pub const RETRY_ANNOTATION: &str = routing_core::keys::GUARD_RETRY_ANNOTATION;

/// What makes a candidate the same candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Identity {
    /// Opaque version fingerprint (the caller's choice, e.g. `"3:ghcr.io/app:1.2"`).
    pub fingerprint: String,
    /// The retry annotation's value, if any.
    pub retry: Option<String>,
}

impl Identity {
    /// The identity as one string, as the route's status keeps it for a restarted controller.
    pub fn key(&self) -> String {
        match &self.retry {
            Some(r) => format!("{} retry={r}", self.fingerprint),
            None => self.fingerprint.clone(),
        }
    }
}

/// Why a candidate was withdrawn: what its Warning Event names.
#[derive(Debug, Clone, PartialEq)]
pub struct Withdrawal {
    /// The objective that decided it.
    pub objective: Objective,
    /// The value measured (none when an unknown verdict counted as failing).
    pub value: Option<f64>,
    /// Why it could not be measured, when it could not.
    pub unknown: Option<String>,
    /// The objective's limit (a share, or seconds).
    pub limit: f64,
    /// The window of the queries.
    pub window: Duration,
    /// Requests counted in the window, when known.
    pub requests: Option<f64>,
    /// The PromQL that measured it.
    pub query: String,
    /// Failing verdicts in a row that led here (`failAfter`).
    pub failing_verdicts: u32,
}

impl fmt::Display for Withdrawal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = shown_value(self.objective, self.limit);
        match (self.value, &self.unknown) {
            (Some(v), _) => write!(
                f,
                "{} {} is over the limit {limit}",
                self.objective,
                shown_value(self.objective, v)
            )?,
            (None, why) => write!(
                f,
                "{} could not be judged ({}) and unknownFails is set (limit {limit})",
                self.objective,
                why.as_deref().unwrap_or("unknown")
            )?,
        }
        let requests = self
            .requests
            .map_or_else(|| "?".into(), |r| crate::verdict::Number(r).to_string());
        write!(
            f,
            " over {} ({requests} requests), {} in a row; query: {}",
            format_duration(self.window),
            match self.failing_verdicts {
                1 => "1 failing verdict".to_string(),
                n => format!("{n} failing verdicts"),
            },
            self.query
        )
    }
}

/// Where a candidate stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Being judged; `failing` failing verdicts in a row so far.
    Judging {
        /// Consecutive failing verdicts (unknown ones skipped).
        failing: u32,
    },
    /// Taken out of the route until its identity changes.
    Withdrawn(Box<Withdrawal>),
    /// Taken out of the route by an earlier process (the status of the route says why), and
    /// still the same candidate: stays out until its identity changes.
    WithdrawnEarlier,
}

/// What recording a verdict did.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Still judged, with this many failing verdicts in a row.
    Judging {
        /// Consecutive failing verdicts.
        failing: u32,
    },
    /// Withdrawn now: remove it from the route and emit a Warning Event with this.
    Withdraw(Box<Withdrawal>),
    /// Was already withdrawn; nothing to do.
    StaysWithdrawn,
    /// The verdict was for another identity; ignored.
    Stale,
}

/// What a new identity did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Same identity.
    Unchanged,
    /// New identity while judging: the count starts again.
    Restarted,
    /// New identity of a withdrawn candidate: back in the route, judged afresh.
    Reinstated,
}

/// One candidate's guard state.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateGuard {
    identity: Identity,
    phase: Phase,
}

impl CandidateGuard {
    /// A candidate seen for the first time: judging, nothing counted.
    pub fn new(identity: Identity) -> Self {
        CandidateGuard {
            identity,
            phase: Phase::Judging { failing: 0 },
        }
    }

    /// A candidate an earlier process withdrew with identity `identity` (read back from the
    /// route's status): still withdrawn, unless `identity` is not its current one, which
    /// [`Self::refresh`] then tells as [`Refresh::Reinstated`].
    pub fn withdrawn_earlier(identity: Identity) -> Self {
        CandidateGuard {
            identity,
            phase: Phase::WithdrawnEarlier,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The identity judged.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Whether the candidate is out of the route.
    pub fn is_withdrawn(&self) -> bool {
        matches!(self.phase, Phase::Withdrawn(_) | Phase::WithdrawnEarlier)
    }

    /// Whether the candidate should be queried at its next turn (a withdrawn one gets no
    /// traffic, so querying it would cost Prometheus for nothing).
    pub fn wants_judging(&self) -> bool {
        !self.is_withdrawn()
    }

    /// Takes the candidate's current identity; a change starts judging afresh.
    pub fn refresh(&mut self, identity: &Identity) -> Refresh {
        if *identity == self.identity {
            return Refresh::Unchanged;
        }
        self.identity = identity.clone();
        let was_withdrawn = self.is_withdrawn();
        self.phase = Phase::Judging { failing: 0 };
        if was_withdrawn {
            Refresh::Reinstated
        } else {
            Refresh::Restarted
        }
    }

    /// Records a verdict measured while the candidate had identity `judged`.
    pub fn record(&mut self, judged: &Identity, verdict: &Verdict, fail_after: u32) -> Step {
        if *judged != self.identity {
            return Step::Stale;
        }
        let Phase::Judging { failing } = self.phase else {
            return Step::StaysWithdrawn;
        };
        let failing = match verdict.kind {
            VerdictKind::Healthy => 0,
            VerdictKind::Unknown => failing,
            VerdictKind::Failing => failing.saturating_add(1),
        };
        if verdict.kind == VerdictKind::Failing
            && failing >= fail_after.max(1)
            && let Some(w) = withdrawal(verdict, failing)
        {
            self.phase = Phase::Withdrawn(Box::new(w.clone()));
            return Step::Withdraw(Box::new(w));
        }
        self.phase = Phase::Judging { failing };
        Step::Judging { failing }
    }
}

fn withdrawal(verdict: &Verdict, failing: u32) -> Option<Withdrawal> {
    let f = verdict.decisive()?;
    Some(Withdrawal {
        objective: f.objective,
        value: f.value(),
        unknown: match &f.outcome {
            Outcome::Unknown(why) => Some(why.to_string()),
            _ => None,
        },
        limit: f.limit,
        window: verdict.window,
        requests: verdict.requests,
        query: f.query.clone(),
        failing_verdicts: failing,
    })
}
