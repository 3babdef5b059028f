//! What the index decides for a routemap ([`Decision`], [`Traffic`]) and tells its caller
//! ([`Change`]), and the one decision function, [`decide`]. Re-exported by [`crate::index`].

use std::collections::BTreeMap;

use routing_core::readiness::ObjectSource;
use routing_core::{HttpRoute, RouteMapRef, RouteMapSpec, Strategy};

use crate::error::RouteMapError;
use crate::routemap::RouteMapKey;

/// One version as decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTraffic {
    /// Version name.
    pub name: String,
    /// Available now.
    pub available: bool,
    /// Effective weight (unavailable -> 0).
    pub weight: u32,
    /// Why it is unavailable.
    pub reason: Option<String>,
    /// Set while the guard keeps this candidate out of the route.
    pub withdrawn: Option<Withdrawn>,
}

/// A candidate the guard withdrew.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Withdrawn {
    /// Why: objective, value, limit, window, requests, query.
    pub why: String,
    /// The candidate's identity when it was withdrawn (its resources' generations and retry
    /// annotation, as the guard writes it): kept in the route's status, so that a restarted
    /// controller keeps the candidate out for as long as it is the same.
    #[serde(default)]
    pub identity: String,
}

/// What was decided for a routemap, for Events and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// Strategy.
    pub strategy: Strategy,
    /// Per version, in order.
    pub versions: Vec<VersionTraffic>,
    /// Problems that did not change the decision (e.g. an invalid weight annotation).
    pub warnings: Vec<String>,
    /// Set when the routemap is invalid and this decision comes from its last good spec, still
    /// in force ([`crate::index::Index::keep_last_good`]): why it is invalid.
    pub invalid: Option<RouteMapError>,
}

impl Traffic {
    /// The candidates the guard keeps out of the route, with why.
    pub fn withdrawn(&self) -> impl Iterator<Item = (&str, &str)> {
        self.versions
            .iter()
            .filter_map(|v| Some((v.name.as_str(), v.withdrawn.as_ref()?.why.as_str())))
    }

    /// Names of the available versions.
    pub fn available(&self) -> Vec<&str> {
        self.versions
            .iter()
            .filter(|v| v.available)
            .map(|v| v.name.as_str())
            .collect()
    }
}

/// A decision for a routemap.
// Most routemaps are valid, so the large variant is the common one; boxing would not save memory.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The route to have (`None` for strategy `none`).
    Desired {
        /// The route.
        route: Option<HttpRoute>,
        /// Why.
        traffic: Traffic,
    },
    /// The routemap cannot be used; the live route must stay as it is.
    Invalid {
        /// Field path and reason.
        error: RouteMapError,
    },
}

/// What an index call changed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A routemap has a new decision.
    Decided {
        /// Which routemap.
        key: RouteMapKey,
        /// Its identity (owner of the route).
        owner: RouteMapRef,
        /// The decision.
        decision: Decision,
    },
    /// A routemap is gone.
    Removed {
        /// Which routemap.
        key: RouteMapKey,
    },
}

/// Candidates withdrawn by the guard, by version name.
pub type Withdrawals = BTreeMap<String, Withdrawn>;

/// The prefix of the reason of a version the guard withdrew.
pub const WITHDRAWN_REASON: &str = "withdrawn by the guard";

/// Observes the versions and plans the route: the one decision function of the controller and
/// of `iter8-render`.
pub fn decide(owner: &RouteMapRef, spec: &RouteMapSpec, source: &impl ObjectSource) -> Decision {
    decide_withdrawn(owner, spec, source, &Withdrawals::new())
}

/// The version states of a spec, with the candidates in `withdrawn` unavailable: planned as a
/// version that is not ready, so the same write path, gating and fencing carry a withdrawal.
/// The first version (the primary) is never withdrawn.
pub fn guarded_states(
    namespace: &str,
    spec: &RouteMapSpec,
    source: &impl ObjectSource,
    withdrawn: &Withdrawals,
) -> Vec<routing_core::VersionState> {
    let mut states = routing_core::version_states(namespace, spec, source);
    if withdrawn.is_empty() {
        return states;
    }
    for (v, s) in spec.versions.iter().zip(states.iter_mut()).skip(1) {
        if let Some(w) = withdrawn.get(&v.name)
            && s.available
        {
            s.available = false;
            s.reason = Some(format!("{WITHDRAWN_REASON}: {}", w.why));
        }
    }
    states
}

/// [`decide`] with the candidates the guard withdrew taken out of the route.
pub fn decide_withdrawn(
    owner: &RouteMapRef,
    spec: &RouteMapSpec,
    source: &impl ObjectSource,
    withdrawn: &Withdrawals,
) -> Decision {
    let states = guarded_states(&owner.namespace, spec, source, withdrawn);
    let weights = routing_core::effective_weights(spec, &states);
    let warnings: Vec<String> = states.iter().flat_map(|s| s.warnings.clone()).collect();
    let traffic = Traffic {
        strategy: spec.strategy,
        warnings,
        invalid: None,
        versions: spec
            .versions
            .iter()
            .zip(&states)
            .zip(&weights)
            .enumerate()
            .map(|(i, ((v, s), w))| VersionTraffic {
                name: v.name.clone(),
                available: s.available,
                weight: *w,
                reason: s.reason.clone(),
                withdrawn: withdrawn.get(&v.name).filter(|_| i > 0).cloned(),
            })
            .collect(),
    };
    match routing_core::plan(owner, spec, &states) {
        Ok(route) => Decision::Desired { route, traffic },
        Err(e) => Decision::Invalid {
            error: RouteMapError::Plan(e),
        },
    }
}
