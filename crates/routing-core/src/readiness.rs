//! Readiness of version resources, and the version states the planner consumes.
//!
//! A resource is ready when it exists with the watch label, is not being deleted, and every
//! readiness condition configured for its type is `True` with an `observedGeneration` that is not
//! behind `metadata.generation`. The facts needed for that are first extracted from the object's
//! JSON into a small [`ResourceFacts`] (what the controller keeps in memory instead of whole
//! objects), then judged by [`ResourceFacts::ready`].

use std::fmt;

use serde_json::Value;

use crate::keys::{GUARD_RETRY_ANNOTATION, WATCH_LABEL, WEIGHT_ANNOTATION};
use crate::spec::{RouteMapSpec, VersionSpec};
use crate::validate::MAX_WEIGHT;

/// One status condition, as far as readiness cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionFact {
    /// Condition type (compared case-insensitively).
    pub kind: String,
    /// Condition status (`True`, `False`, `Unknown`).
    pub status: String,
    /// The condition's own `observedGeneration`, if any.
    pub observed_generation: Option<i64>,
}

/// What readiness and weights need to know of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceFacts {
    /// Carries `iter8.tools/watch: "true"`.
    pub watched: bool,
    /// Has a deletion timestamp.
    pub deleting: bool,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// `status.conditions`, `None` when absent.
    pub conditions: Option<Vec<ConditionFact>>,
    /// Raw value of the `iter8.tools/weight` annotation.
    pub weight_annotation: Option<String>,
    /// Value of the `iter8.tools/guard-retry` annotation (a guarded candidate's retry token).
    pub guard_retry: Option<String>,
}

/// Why a resource (and so its version) is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The resource type is not configured in the controller's `resourceTypes`.
    UnknownType,
    /// No such object (or not visible to the controller).
    Missing,
    /// The object lacks the `iter8.tools/watch: "true"` label.
    NotWatched,
    /// The object is being deleted.
    Deleting,
    /// A configured condition is absent.
    ConditionMissing(String),
    /// A configured condition is not `True`.
    ConditionNotTrue(String, String),
    /// A Service whose EndpointSlices exist and hold no ready endpoint: its pods are going away
    /// (or not ready yet) even if the Deployment still reports them available.
    NoReadyEndpoint,
    /// A configured condition describes an older generation.
    Stale {
        /// Condition type.
        condition: String,
        /// Generation the status describes.
        observed: i64,
        /// Current generation.
        generation: i64,
    },
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::UnknownType => write!(f, "resource type is not configured"),
            NotReady::Missing => write!(f, "not found"),
            NotReady::NotWatched => write!(f, "lacks label {WATCH_LABEL}=true"),
            NotReady::Deleting => write!(f, "is being deleted"),
            NotReady::ConditionMissing(c) => write!(f, "condition {c} is not reported"),
            NotReady::ConditionNotTrue(c, s) => write!(f, "condition {c} is {s}"),
            NotReady::NoReadyEndpoint => write!(f, "has EndpointSlices but no ready endpoint"),
            NotReady::Stale {
                condition,
                observed,
                generation,
            } => write!(
                f,
                "condition {condition} describes generation {observed}, current is {generation}"
            ),
        }
    }
}

impl ResourceFacts {
    /// Extracts the facts from a Kubernetes object (any kind) as JSON.
    pub fn from_json(obj: &Value) -> Self {
        let meta = &obj["metadata"];
        let status = &obj["status"];
        let conditions = status["conditions"].as_array().map(|list| {
            list.iter()
                .filter_map(|c| {
                    Some(ConditionFact {
                        kind: c["type"].as_str()?.to_string(),
                        status: c["status"].as_str()?.to_string(),
                        observed_generation: c["observedGeneration"].as_i64(),
                    })
                })
                .collect()
        });
        ResourceFacts {
            watched: meta["labels"][WATCH_LABEL].as_str() == Some("true"),
            deleting: !meta["deletionTimestamp"].is_null(),
            generation: meta["generation"].as_i64(),
            observed_generation: status["observedGeneration"].as_i64(),
            conditions,
            weight_annotation: meta["annotations"][WEIGHT_ANNOTATION]
                .as_str()
                .map(str::to_string),
            guard_retry: meta["annotations"][GUARD_RETRY_ANNOTATION]
                .as_str()
                .map(str::to_string),
        }
    }

    /// Judges readiness against the conditions configured for the object's type.
    pub fn ready(&self, conditions: &[String]) -> Result<(), NotReady> {
        if !self.watched {
            return Err(NotReady::NotWatched);
        }
        if self.deleting {
            return Err(NotReady::Deleting);
        }
        for wanted in conditions {
            let found = self
                .conditions
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|c| c.kind.eq_ignore_ascii_case(wanted));
            let Some(c) = found else {
                return Err(NotReady::ConditionMissing(wanted.clone()));
            };
            if let (Some(generation), Some(observed)) = (
                self.generation,
                c.observed_generation.or(self.observed_generation),
            ) && observed < generation
            {
                return Err(NotReady::Stale {
                    condition: wanted.clone(),
                    observed,
                    generation,
                });
            }
            if !c.status.eq_ignore_ascii_case("true") {
                return Err(NotReady::ConditionNotTrue(wanted.clone(), c.status.clone()));
            }
        }
        Ok(())
    }

    /// The weight annotation, when present and valid.
    pub fn weight(&self) -> Option<Result<u32, String>> {
        self.weight_annotation.as_deref().map(parse_weight)
    }
}

/// Readiness of one object from its JSON: see the module doc.
pub fn resource_ready(obj: &Value, conditions: &[String]) -> Result<(), NotReady> {
    ResourceFacts::from_json(obj).ready(conditions)
}

/// Parses an `iter8.tools/weight` annotation value (an integer 0-1000000).
pub fn parse_weight(raw: &str) -> Result<u32, String> {
    match raw.trim().parse::<u32>() {
        Ok(w) if w <= MAX_WEIGHT => Ok(w),
        _ => Err(format!(
            "{WEIGHT_ANNOTATION}={raw:?} is not an integer 0-{MAX_WEIGHT}; ignored"
        )),
    }
}

/// What the planner needs to know of one version, observed now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionState {
    /// Every resource of the version is ready.
    pub available: bool,
    /// A valid `iter8.tools/weight` annotation on one of its resources (the first one wins).
    pub weight_override: Option<u32>,
    /// Why the version is unavailable, e.g. `deploy/httpbin-1: condition Available is False`.
    pub reason: Option<String>,
    /// Problems that did not change the decision (an invalid weight annotation).
    pub warnings: Vec<String>,
}

impl VersionState {
    /// An available version without weight override.
    pub fn available() -> Self {
        VersionState {
            available: true,
            ..Default::default()
        }
    }

    /// An unavailable version.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        VersionState {
            available: false,
            reason: Some(reason.into()),
            ..Default::default()
        }
    }
}

/// Where version states come from: the controller's index, or the objects given to `iter8-render`.
pub trait ObjectSource {
    /// Readiness conditions configured for a resource type; `None` if the type is unknown.
    fn conditions(&self, gvr_short: &str) -> Option<&[String]>;
    /// The facts of an object, if it is known.
    fn facts(&self, gvr_short: &str, namespace: &str, name: &str) -> Option<&ResourceFacts>;
    /// For a Service: whether its EndpointSlices hold a ready endpoint; `None` when no slice of
    /// it is known (or the object is no Service), and the object is judged by its facts alone.
    fn endpoints_ready(&self, _gvr_short: &str, _namespace: &str, _name: &str) -> Option<bool> {
        None
    }
}

/// Observes one version: available iff every resource is ready (a Service also needs a ready
/// endpoint when it has EndpointSlices); the first valid weight annotation among its resources
/// overrides its weight.
pub fn version_state(
    namespace: &str,
    version: &VersionSpec,
    source: &impl ObjectSource,
) -> VersionState {
    let mut state = VersionState::available();
    for r in &version.resources {
        let ns = r.namespace.as_deref().unwrap_or(namespace);
        let kept = match source.conditions(&r.gvr_short) {
            None => Err(NotReady::UnknownType),
            Some(conds) => match source.facts(&r.gvr_short, ns, &r.name) {
                None => Err(NotReady::Missing),
                Some(f) => {
                    match f.weight() {
                        Some(Ok(w)) if state.weight_override.is_none() => {
                            state.weight_override = Some(w)
                        }
                        Some(Err(e)) => state
                            .warnings
                            .push(format!("{}/{}: {e}", r.gvr_short, r.name)),
                        _ => {}
                    }
                    // The slices say a version is going away before its Deployment does (the
                    // EndpointSlice controller follows pod readiness directly).
                    f.ready(conds).and_then(|()| {
                        match source.endpoints_ready(&r.gvr_short, ns, &r.name) {
                            Some(false) => Err(NotReady::NoReadyEndpoint),
                            _ => Ok(()),
                        }
                    })
                }
            },
        };
        if let Err(why) = kept
            && state.available
        {
            state.available = false;
            state.reason = Some(format!("{}/{} {why}", r.gvr_short, r.name));
        }
    }
    state
}

/// Observes every version of a spec.
pub fn version_states(
    namespace: &str,
    spec: &RouteMapSpec,
    source: &impl ObjectSource,
) -> Vec<VersionState> {
    spec.versions
        .iter()
        .map(|v| version_state(namespace, v, source))
        .collect()
}
