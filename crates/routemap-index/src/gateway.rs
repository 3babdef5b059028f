//! The gateway's answer: what the implementations that program a route (a Gateway controller, a
//! mesh) say of it in `status.parents`, as users should see it on the routemap.
//!
//! Each implementation writes one entry per parent it handles, under its own `controllerName`,
//! with the conditions `Accepted` and `ResolvedRefs` and the route generation they judged. The
//! controller never writes a route's status (it is theirs); it reads it from the routes it owns
//! and reports it in the routemap's status annotation and in Events. An answer for an older
//! generation, or no answer yet, is "not yet accepted": the gateway has not caught up, which is
//! not an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::EventNote;

/// One implementation's answer for one parent of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentAnswer {
    /// The parent: `Kind/name` or `Kind/namespace/name`.
    pub parent: String,
    /// The implementation's `controllerName`.
    pub controller: String,
    /// `Accepted` is `True` (`None`: not said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<bool>,
    /// `ResolvedRefs` is `True` (`None`: not said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_refs: Option<bool>,
    /// The reason of the first condition that is not `True`, else `Accepted`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The oldest route generation its conditions judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The answer of all parents, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Acceptance {
    /// Every parent accepted the current generation and resolved its backends.
    Accepted,
    /// A parent refused the route.
    NotAccepted,
    /// A parent accepted it but cannot resolve a backend (a missing Service, say).
    BackendNotResolved,
    /// No implementation has answered for the current generation yet.
    NotYetAccepted,
}

impl Acceptance {
    /// A bounded label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Acceptance::Accepted => "accepted",
            Acceptance::NotAccepted => "not_accepted",
            Acceptance::BackendNotResolved => "backend_not_resolved",
            Acceptance::NotYetAccepted => "not_yet_accepted",
        }
    }
}

/// The gateway's answer as kept in the routemap's status annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// All parents' answer, in one word.
    pub acceptance: Acceptance,
    /// Each parent's answer.
    #[serde(default)]
    pub parents: Vec<ParentAnswer>,
}

/// Reads `status.parents` of a route (JSON as the API server returns it).
pub fn parent_answers(route: &Value) -> Vec<ParentAnswer> {
    let Some(parents) = route["status"]["parents"].as_array() else {
        return Vec::new();
    };
    parents
        .iter()
        .map(|p| {
            let r = &p["parentRef"];
            let kind = r["kind"].as_str().unwrap_or("Gateway");
            let name = r["name"].as_str().unwrap_or_default();
            let parent = match r["namespace"].as_str() {
                Some(ns) => format!("{kind}/{ns}/{name}"),
                None => format!("{kind}/{name}"),
            };
            let condition = |kind: &str| {
                p["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == kind)
            };
            let accepted = condition("Accepted");
            let resolved = condition("ResolvedRefs");
            let is_true = |c: Option<&Value>| c.map(|c| c["status"] == "True");
            let telling = [accepted, resolved]
                .into_iter()
                .flatten()
                .find(|c| c["status"] != "True")
                .or(accepted);
            let text = |key: &str| {
                telling
                    .and_then(|c| c[key].as_str())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            ParentAnswer {
                parent,
                controller: p["controllerName"].as_str().unwrap_or_default().to_string(),
                accepted: is_true(accepted),
                resolved_refs: is_true(resolved),
                reason: text("reason"),
                message: text("message"),
                observed_generation: [accepted, resolved]
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["observedGeneration"].as_i64())
                    .min(),
            }
        })
        .collect()
}

/// The acceptance over all parents for the route's current `generation`.
pub fn acceptance(parents: &[ParentAnswer], generation: Option<i64>) -> Acceptance {
    let current = |p: &&ParentAnswer| match (p.observed_generation, generation) {
        (Some(seen), Some(now)) => seen >= now,
        // An answer without a generation is taken as current.
        (None, _) | (_, None) => true,
    };
    let answered: Vec<&ParentAnswer> = parents
        .iter()
        .filter(current)
        .filter(|p| p.accepted.is_some())
        .collect();
    if answered.iter().any(|p| p.accepted == Some(false)) {
        Acceptance::NotAccepted
    } else if answered.iter().any(|p| p.resolved_refs == Some(false)) {
        Acceptance::BackendNotResolved
    } else if answered.is_empty() || answered.len() < parents.len() {
        Acceptance::NotYetAccepted
    } else {
        Acceptance::Accepted
    }
}

/// The gateway status of a route: its parents' answers and their acceptance.
pub fn gateway_status(route: &Value) -> GatewayStatus {
    let parents = parent_answers(route);
    GatewayStatus {
        acceptance: acceptance(&parents, route["metadata"]["generation"].as_i64()),
        parents,
    }
}

/// The Event for a new acceptance of `route` (none for "not yet accepted": the gateway has not
/// caught up, which is no news). `previous` is the acceptance last reported.
pub fn acceptance_event(
    route: &str,
    status: &GatewayStatus,
    previous: Option<Acceptance>,
) -> Option<EventNote> {
    if previous == Some(status.acceptance) {
        return None;
    }
    let first = |bad: fn(&ParentAnswer) -> bool| status.parents.iter().find(|p| bad(p));
    let said = |p: &ParentAnswer| {
        let reason = p.reason.as_deref().unwrap_or("no reason given");
        match p.message.as_deref() {
            Some(m) => format!("{reason}: {m}"),
            None => reason.to_string(),
        }
    };
    match status.acceptance {
        Acceptance::NotYetAccepted => None,
        Acceptance::Accepted => {
            let by: Vec<String> = status
                .parents
                .iter()
                .map(|p| format!("{} ({})", p.parent, p.controller))
                .collect();
            Some(EventNote {
                warning: false,
                reason: "RouteAccepted",
                note: format!("HTTPRoute {route} accepted for {}", by.join(", ")),
            })
        }
        Acceptance::NotAccepted => first(|p| p.accepted == Some(false)).map(|p| EventNote {
            warning: true,
            reason: "RouteNotAccepted",
            note: format!(
                "{} did not accept HTTPRoute {route} for {}: {}",
                p.controller,
                p.parent,
                said(p)
            ),
        }),
        Acceptance::BackendNotResolved => {
            first(|p| p.resolved_refs == Some(false)).map(|p| EventNote {
                warning: true,
                reason: "BackendNotResolved",
                note: format!(
                    "{} cannot resolve a backend of HTTPRoute {route} for {}: {}",
                    p.controller,
                    p.parent,
                    said(p)
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(generation: i64, conditions: Value) -> Value {
        json!({
            "metadata": {"generation": generation},
            "status": {"parents": [{
                "parentRef": {"group": "", "kind": "Service", "name": "httpbin", "port": 80},
                "controllerName": "example.com/gateway",
                "conditions": conditions,
            }]},
        })
    }

    fn condition(kind: &str, status: &str, reason: &str, generation: i64) -> Value {
        json!({"type": kind, "status": status, "reason": reason, "message": format!("{kind} {status}"), "observedGeneration": generation})
    }

    #[test]
    fn an_answer_for_the_current_generation_is_the_acceptance() {
        let ok = route(
            2,
            json!([
                condition("Accepted", "True", "Accepted", 2),
                condition("ResolvedRefs", "True", "ResolvedRefs", 2)
            ]),
        );
        let status = gateway_status(&ok);
        assert_eq!(status.acceptance, Acceptance::Accepted);
        assert_eq!(status.parents[0].parent, "Service/httpbin");
        let event = acceptance_event("httpbin", &status, None).expect("news");
        assert_eq!(event.reason, "RouteAccepted");
        assert!(!event.warning);
        assert!(
            event.note.contains("Service/httpbin (example.com/gateway)"),
            "{}",
            event.note
        );
        assert_eq!(
            acceptance_event("httpbin", &status, Some(Acceptance::Accepted)),
            None
        );
    }

    #[test]
    fn an_answer_for_an_older_generation_is_not_yet_accepted_not_an_error() {
        let stale = route(
            3,
            json!([
                condition("Accepted", "False", "NotAllowedByListeners", 2),
                condition("ResolvedRefs", "True", "ResolvedRefs", 2)
            ]),
        );
        let status = gateway_status(&stale);
        assert_eq!(status.acceptance, Acceptance::NotYetAccepted);
        assert_eq!(
            acceptance_event("httpbin", &status, Some(Acceptance::Accepted)),
            None
        );
        assert_eq!(
            gateway_status(&json!({"metadata": {"generation": 1}})).acceptance,
            Acceptance::NotYetAccepted
        );
    }

    #[test]
    fn a_missing_backend_is_a_warning_with_the_gateways_words() {
        let missing = route(
            1,
            json!([
                condition("Accepted", "True", "Accepted", 1),
                condition("ResolvedRefs", "False", "BackendNotFound", 1)
            ]),
        );
        let status = gateway_status(&missing);
        assert_eq!(status.acceptance, Acceptance::BackendNotResolved);
        assert_eq!(status.parents[0].reason.as_deref(), Some("BackendNotFound"));
        let event = acceptance_event("httpbin", &status, Some(Acceptance::Accepted)).expect("news");
        assert_eq!(event.reason, "BackendNotResolved");
        assert!(event.warning);
        assert!(
            event.note.contains("BackendNotFound: ResolvedRefs False"),
            "{}",
            event.note
        );
    }

    #[test]
    fn a_refusal_wins_over_a_missing_backend() {
        let refused = route(
            1,
            json!([
                condition("Accepted", "False", "NoMatchingParent", 1),
                condition("ResolvedRefs", "False", "BackendNotFound", 1)
            ]),
        );
        let status = gateway_status(&refused);
        assert_eq!(status.acceptance, Acceptance::NotAccepted);
        let event = acceptance_event("httpbin", &status, None).expect("news");
        assert_eq!(event.reason, "RouteNotAccepted");
        assert!(event.note.contains("NoMatchingParent"), "{}", event.note);
    }
}
