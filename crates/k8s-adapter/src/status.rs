//! What users see: Events and a status annotation on the routemap ConfigMap.
//!
//! [`report`] is pure: from a decision, how its route write went, and the status last written
//! (read back from the routemap's annotation, so a restart or a new leader remembers it), it
//! says which Event to publish and which status to write, or nothing when the decision is
//! unchanged. [`StatusWriter`] performs the two calls; the writer task in [`crate::apply`]
//! is its only caller, so Events, like every write, come from the leader only.
//!
//! | Event | type | when |
//! |---|---|---|
//! | `RouteApplied` | Normal | the HTTPRoute was written; names available versions and weights |
//! | `VersionsChanged` | Normal | availability or weights changed without a route write (e.g. strategy `none`) |
//! | `InvalidRouteMap` | Warning | the routemap cannot be used; names the field path and reason; the live route is kept |
//! | `ApplyFailed` | Warning | the API server refused the route or kept failing; retried with backoff |
//!
//! The annotation `iter8.tools/status` holds compact JSON (see [`RouteMapStatus`]). It is
//! written by server-side apply with its own field manager (`iter8-controller-status`), owning
//! that one annotation only, so it never conflicts with Helm, which owns the data and labels.
//! The apply carries the routemap's uid: if the routemap was deleted meanwhile the call fails
//! instead of creating an empty ConfigMap.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use routing_core::RouteMapRef;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::apply::WriteError;
use crate::index::{Outcome, Summary};
use crate::kube_types::{
    CoreEvent, DynamicObject, configmap_reference, configmap_resource, core_event, now,
};
use crate::metrics::Metrics;

/// The annotation on the routemap that holds [`RouteMapStatus`].
pub const STATUS_ANNOTATION: &str = "iter8.tools/status";
/// Field manager of the status annotation.
pub const STATUS_FIELD_MANAGER: &str = "iter8-controller-status";
/// `reportingController` of our Events.
pub const REPORTING_CONTROLLER: &str = "iter8-controller";
/// Longest Event note the API accepts.
const MAX_NOTE: usize = 1024;

/// How the route write for a decision went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteResult {
    /// The route was written; its `metadata.generation` afterwards.
    Applied {
        /// Route generation.
        generation: Option<i64>,
    },
    /// The live route already matched.
    Unchanged {
        /// Route generation.
        generation: Option<i64>,
    },
    /// Nothing to write (strategy `none`, or an invalid routemap).
    NoRoute,
    /// The write failed.
    Failed {
        /// Bounded category of the error.
        category: &'static str,
        /// The error.
        message: String,
    },
}

/// The compact status kept in the routemap's `iter8.tools/status` annotation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteMapStatus {
    /// Fingerprint of the decision reported; equal fingerprints are not reported again.
    pub decision: String,
    /// The routemap's resourceVersion the decision was made from (ConfigMaps have no generation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_resource_version: Option<String>,
    /// Strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Versions receiving traffic.
    #[serde(default)]
    pub available_versions: Vec<String>,
    /// Effective weight per version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    /// `metadata.generation` of the HTTPRoute after the last write or check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_generation: Option<i64>,
    /// The last error, if the decision is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl RouteMapStatus {
    /// Reads the annotation value; `None` when absent or not ours.
    pub fn parse(annotation: &str) -> Option<Self> {
        serde_json::from_str(annotation).ok()
    }
}

/// One Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNote {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// `RouteApplied`, `VersionsChanged`, `InvalidRouteMap` or `ApplyFailed`.
    pub reason: &'static str,
    /// The message users read.
    pub note: String,
}

/// What to tell users about a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The Event, if any.
    pub event: Option<EventNote>,
    /// The status to write.
    pub status: RouteMapStatus,
}

/// Decides what to report (see the module doc). `None`: the decision was already reported.
pub fn report(
    route_name: Option<&str>,
    outcome: &Outcome,
    result: &RouteResult,
    observed_resource_version: Option<&str>,
    previous_decision: Option<&str>,
) -> Option<Report> {
    let route_json = match outcome {
        Outcome::Desired {
            route: Some(route), ..
        } => Some(route.to_json().to_string()),
        _ => None,
    };
    report_route(
        route_name,
        route_json.as_deref(),
        outcome,
        result,
        observed_resource_version,
        previous_decision,
    )
}

/// [`report`] for a caller that keeps the decided route as its compact JSON text
/// (`route.to_json().to_string()`) instead of in the outcome, as the writer does.
pub fn report_route(
    route_name: Option<&str>,
    route_json: Option<&str>,
    outcome: &Outcome,
    result: &RouteResult,
    observed_resource_version: Option<&str>,
    previous_decision: Option<&str>,
) -> Option<Report> {
    let fingerprint = fingerprint(route_json, outcome, result);
    if previous_decision == Some(fingerprint.as_str()) {
        return None;
    }
    let mut status = RouteMapStatus {
        decision: fingerprint,
        observed_resource_version: observed_resource_version.map(str::to_string),
        ..Default::default()
    };
    let route = route_name.unwrap_or("-");
    let event = match (outcome, result) {
        (Outcome::Invalid { error }, _) => {
            status.last_error = Some(error.clone());
            EventNote {
                warning: true,
                reason: "InvalidRouteMap",
                note: format!("{error}; the live HTTPRoute {route} is left as it is"),
            }
        }
        (Outcome::Desired { summary, .. }, result) => {
            status.strategy = Some(summary.strategy.as_str().to_string());
            status.available_versions = summary
                .available()
                .into_iter()
                .map(str::to_string)
                .collect();
            status.weights = summary
                .versions
                .iter()
                .map(|v| (v.name.clone(), v.weight))
                .collect();
            match result {
                RouteResult::Failed { message, .. } => {
                    status.last_error = Some(message.clone());
                    EventNote {
                        warning: true,
                        reason: "ApplyFailed",
                        note: format!("HTTPRoute {route}: {message}; retrying with backoff"),
                    }
                }
                RouteResult::Applied { generation } => {
                    status.route_generation = *generation;
                    EventNote {
                        warning: false,
                        reason: "RouteApplied",
                        note: format!(
                            "HTTPRoute {route} ({}): {}",
                            summary.strategy.as_str(),
                            describe(summary)
                        ),
                    }
                }
                RouteResult::Unchanged { generation } => {
                    status.route_generation = *generation;
                    versions_changed(summary)
                }
                RouteResult::NoRoute => versions_changed(summary),
            }
        }
    };
    Some(Report {
        event: Some(EventNote {
            note: truncate(event.note, MAX_NOTE),
            ..event
        }),
        status,
    })
}

fn versions_changed(summary: &Summary) -> EventNote {
    EventNote {
        warning: false,
        reason: "VersionsChanged",
        note: format!(
            "{} ({}): {}",
            "versions",
            summary.strategy.as_str(),
            describe(summary)
        ),
    }
}

/// `httpbin-0 weight 1, httpbin-1 weight 1; unavailable: httpbin-2 (deploy/httpbin-2 ...)`.
fn describe(summary: &Summary) -> String {
    let available: Vec<String> = summary
        .versions
        .iter()
        .filter(|v| v.available)
        .map(|v| format!("{} weight {}", v.name, v.weight))
        .collect();
    let unavailable: Vec<String> = summary
        .versions
        .iter()
        .filter(|v| !v.available)
        .map(|v| match &v.reason {
            Some(r) => format!("{} ({r})", v.name),
            None => v.name.clone(),
        })
        .collect();
    let mut text = if available.is_empty() {
        "no version available".to_string()
    } else {
        format!("available {}", available.join(", "))
    };
    if !unavailable.is_empty() {
        text.push_str(&format!("; unavailable {}", unavailable.join(", ")));
    }
    text
}

/// A stable fingerprint of what users are told: the route, availability and weights, or the
/// error (any apply failure of one decision is one report, however often it is retried).
fn fingerprint(route_json: Option<&str>, outcome: &Outcome, result: &RouteResult) -> String {
    let text = match outcome {
        Outcome::Invalid { error } => format!("invalid\n{error}"),
        Outcome::Desired { summary, .. } => {
            let mut t = route_json.unwrap_or_default().to_string();
            for v in &summary.versions {
                t.push_str(&format!("\n{}:{}:{}", v.name, v.available, v.weight));
            }
            if let RouteResult::Failed { .. } = result {
                t.push_str("\nfailed");
            }
            t
        }
    };
    format!("{:016x}", fnv1a(text.as_bytes()))
}

/// FNV-1a, 64 bit: stable across builds and Rust versions (unlike `DefaultHasher`).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Publishes Events and writes the status annotation.
#[derive(Clone)]
pub struct StatusWriter {
    client: Client,
    instance: Option<String>,
    timeout: Duration,
    metrics: Metrics,
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl StatusWriter {
    /// A writer reporting as `iter8-controller`, instance `instance` (the pod name).
    pub fn new(
        client: Client,
        instance: Option<String>,
        timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        StatusWriter {
            instance,
            client,
            timeout,
            metrics,
        }
    }

    /// Publishes the report's Event, then writes its status annotation.
    pub async fn publish(&self, owner: &RouteMapRef, report: &Report) -> Result<(), WriteError> {
        if let Some(event) = &report.event {
            let reference = configmap_reference(&owner.namespace, &owner.name, &owner.uid);
            let ev = core_event(
                &reference,
                event.warning,
                event.reason,
                &event.note,
                REPORTING_CONTROLLER,
                self.instance.as_deref(),
                now(),
            );
            let events: Api<CoreEvent> = Api::namespaced(self.client.clone(), &owner.namespace);
            match tokio::time::timeout(self.timeout, events.create(&Default::default(), &ev)).await
            {
                Ok(Ok(_)) => self.metrics.event(
                    if event.warning { "Warning" } else { "Normal" },
                    event.reason,
                ),
                // An Event that cannot be published is logged and counted; status still goes on.
                Ok(Err(e)) => {
                    self.metrics.error("event");
                    tracing::warn!(routemap = %format!("{}/{}", owner.namespace, owner.name), reason = event.reason, error = %e, "cannot publish Event");
                }
                Err(_) => {
                    self.metrics.error("event");
                    tracing::warn!(routemap = %format!("{}/{}", owner.namespace, owner.name), reason = event.reason, "publishing Event timed out");
                }
            }
        }
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": owner.name,
                "namespace": owner.namespace,
                "uid": owner.uid,
                "annotations": {
                    STATUS_ANNOTATION: serde_json::to_string(&report.status).unwrap_or_default(),
                },
            },
        });
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &owner.namespace, &configmap_resource());
        let params = PatchParams::apply(STATUS_FIELD_MANAGER).force();
        match tokio::time::timeout(
            self.timeout,
            api.patch(&owner.name, &params, &Patch::Apply(&body)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                self.metrics.error("status");
                Err(WriteError::from_kube(e))
            }
            Err(_) => {
                self.metrics.error("status");
                Err(WriteError::Timeout(self.timeout))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::VersionSummary;
    use routing_core::Strategy;

    fn summary(available: &[bool]) -> Summary {
        Summary {
            strategy: Strategy::Canary,
            warnings: vec![],
            versions: available
                .iter()
                .enumerate()
                .map(|(i, a)| VersionSummary {
                    name: format!("app-{i}"),
                    available: *a,
                    weight: u32::from(*a),
                    reason: (!a).then(|| format!("deploy/app-{i} condition Available is False")),
                })
                .collect(),
        }
    }

    fn desired(available: &[bool]) -> Outcome {
        Outcome::Desired {
            route: None,
            summary: summary(available),
        }
    }

    #[test]
    fn applied_route_names_versions_and_weights() {
        let r = report(
            Some("app"),
            &desired(&[true, false]),
            &RouteResult::Applied {
                generation: Some(2),
            },
            Some("7"),
            None,
        )
        .expect("first decision is reported");
        let e = r.event.expect("an event");
        assert_eq!((e.warning, e.reason), (false, "RouteApplied"));
        assert_eq!(
            e.note,
            "HTTPRoute app (canary): available app-0 weight 1; unavailable app-1 (deploy/app-1 condition Available is False)"
        );
        assert_eq!(r.status.available_versions, vec!["app-0".to_string()]);
        assert_eq!(r.status.route_generation, Some(2));
        assert_eq!(r.status.observed_resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn unchanged_decision_is_not_reported_again() {
        let first = report(
            Some("app"),
            &desired(&[true]),
            &RouteResult::Applied {
                generation: Some(1),
            },
            None,
            None,
        )
        .expect("reported");
        // Read back from the annotation, as after a restart: same decision, nothing to say.
        let stored = RouteMapStatus::parse(&serde_json::to_string(&first.status).expect("json"))
            .expect("parses");
        assert_eq!(
            report(
                Some("app"),
                &desired(&[true]),
                &RouteResult::Unchanged {
                    generation: Some(1)
                },
                None,
                Some(stored.decision.as_str())
            ),
            None
        );
    }

    #[test]
    fn availability_change_without_write_is_versions_changed() {
        let first = report(
            None,
            &desired(&[true, true]),
            &RouteResult::NoRoute,
            None,
            None,
        )
        .expect("reported");
        let second = report(
            None,
            &desired(&[true, false]),
            &RouteResult::NoRoute,
            None,
            Some(first.status.decision.as_str()),
        )
        .expect("changed availability is reported");
        assert_eq!(second.event.expect("event").reason, "VersionsChanged");
    }

    #[test]
    fn invalid_routemap_is_a_warning_with_the_field_path() {
        let outcome = Outcome::Invalid {
            error: "data[routemap.yaml].versions[1].port: 0 is not in 1-65535".into(),
        };
        let r = report(Some("app"), &outcome, &RouteResult::NoRoute, None, None).expect("reported");
        let e = r.event.expect("event");
        assert_eq!((e.warning, e.reason), (true, "InvalidRouteMap"));
        assert!(
            e.note.starts_with("data[routemap.yaml].versions[1].port"),
            "{}",
            e.note
        );
        assert_eq!(
            r.status.last_error.as_deref(),
            Some("data[routemap.yaml].versions[1].port: 0 is not in 1-65535")
        );
        // The same error again is the same decision.
        assert_eq!(
            report(
                Some("app"),
                &outcome,
                &RouteResult::NoRoute,
                None,
                Some(r.status.decision.as_str())
            ),
            None
        );
    }

    #[test]
    fn retries_of_one_failure_are_one_report() {
        let failed = |m: &str| RouteResult::Failed {
            category: "api_transient",
            message: m.into(),
        };
        let first = report(
            Some("app"),
            &desired(&[true]),
            &failed("503 unavailable"),
            None,
            None,
        )
        .expect("reported");
        assert_eq!(first.event.as_ref().map(|e| e.reason), Some("ApplyFailed"));
        assert_eq!(
            report(
                Some("app"),
                &desired(&[true]),
                &failed("timed out"),
                None,
                Some(first.status.decision.as_str())
            ),
            None
        );
        // Recovery is news.
        let ok = report(
            Some("app"),
            &desired(&[true]),
            &RouteResult::Applied {
                generation: Some(1),
            },
            None,
            Some(first.status.decision.as_str()),
        );
        assert_eq!(
            ok.and_then(|r| r.event).map(|e| e.reason),
            Some("RouteApplied")
        );
    }

    #[test]
    fn long_notes_are_cut_at_the_api_limit() {
        let outcome = Outcome::Invalid {
            error: "é".repeat(2000),
        };
        let r = report(None, &outcome, &RouteResult::NoRoute, None, None).expect("reported");
        let note = r.event.expect("event").note;
        assert!(note.len() <= MAX_NOTE && note.ends_with("..."));
    }
}
