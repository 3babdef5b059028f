//! What the index decides for a routemap ([`Decision`], [`Traffic`]) and tells its caller
//! ([`Change`]), and the one decision function, [`decide`]. Re-exported by [`crate::index`].

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

/// The warning of a routemap with a `guard` block: validated, not yet acted on (issue 21).
pub const GUARD_NOT_ENFORCED: &str = "guard: validated, but not enforced by this controller yet: no candidate is withdrawn on its metrics (docs/guard.md)";

/// Observes the versions and plans the route: the one decision function of the controller and
/// of `iter8-render`.
pub fn decide(owner: &RouteMapRef, spec: &RouteMapSpec, source: &impl ObjectSource) -> Decision {
    let states = routing_core::version_states(&owner.namespace, spec, source);
    let weights = routing_core::effective_weights(spec, &states);
    let mut warnings: Vec<String> = states.iter().flat_map(|s| s.warnings.clone()).collect();
    // Said wherever the decision is shown, so that nobody takes a guard block for protection
    // before the controller acts on it.
    if spec.guard.is_some() {
        warnings.push(GUARD_NOT_ENFORCED.to_string());
    }
    let traffic = Traffic {
        strategy: spec.strategy,
        warnings,
        invalid: None,
        versions: spec
            .versions
            .iter()
            .zip(&states)
            .zip(&weights)
            .map(|((v, s), w)| VersionTraffic {
                name: v.name.clone(),
                available: s.available,
                weight: *w,
                reason: s.reason.clone(),
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
