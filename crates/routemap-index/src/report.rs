//! What users see: Events on the routemap ConfigMap and a status annotation on the route the
//! controller wrote for it.
//!
//! [`report`] is pure: from a decision, how its route write went, and the status last written
//! (read back from the route's annotation through the route watch, so a restart or a new leader
//! remembers it), it says which Event to publish and which status to write, or nothing when the
//! decision is unchanged. The controller's writer (crate `k8s-adapter`) performs the two calls,
//! as the leader only. A routemap with no route of its own (strategy `none`, invalid before its
//! first route, a route name someone else holds) is reported by Events only.
//!
//! | Event | type | when |
//! |---|---|---|
//! | `RouteApplied` | Normal | the HTTPRoute was written; names available versions and weights |
//! | `VersionsChanged` | Normal | availability or weights changed without a route write (e.g. strategy `none`) |
//! | `InvalidRouteMap` | Warning | the routemap cannot be used; names the field path and reason; the live route is kept |
//! | `ApplyFailed` | Warning | the API server refused the route or kept failing; retried with backoff |
//! | `RouteNotOwned` | Warning | the route name is held by a route this routemap did not write; it is left untouched |
//! | `RouteClaimed` | Warning | another routemap, the winner, writes the same route name |
//! | `CandidateWithdrawn` | Warning | the guard took a candidate out of the route: the objective, the value measured, the limit, the window, the requests and the query |
//!
//! The annotation `iter8.tools/status` on the route holds compact JSON (see
//! [`RouteMapStatus`]), summarised to stay far below the API's 256 KiB annotation limit. It is
//! written by server-side apply with its own field manager (`iter8-controller-status`), owning
//! that one annotation only, so it is never drift for the route's apply. The apply carries the
//! route's uid: if the route was deleted meanwhile the call fails instead of creating one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::event::EventNote;
use crate::gateway::GatewayStatus;
use crate::index::{Decision, Traffic, Withdrawals};

/// Longest Event note the API accepts.
const MAX_NOTE: usize = 1024;
/// Versions listed by name in the status; the rest are counted (`and K more`).
pub const MAX_STATUS_VERSIONS: usize = 50;
/// Longest reason of a withdrawal kept in the status.
const MAX_WITHDRAWN_REASON: usize = 1024;
/// Longest error kept in the status.
const MAX_STATUS_ERROR: usize = 2048;

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
    /// The route name is held by a route this routemap did not write: never touched.
    NotOwned {
        /// Who holds it (its controlling owner and field managers).
        holder: String,
    },
    /// Another routemap claims the same route name and wins (older, then by namespace/name).
    Claimed {
        /// The winner, `namespace/name`.
        winner: String,
    },
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
    #[serde(rename = "decision")]
    pub fingerprint: String,
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
    /// Candidates the guard withdrew: why, and the identity they were withdrawn with (read back
    /// by a restarted controller, which keeps them out while they are the same).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub withdrawn: Withdrawals,
    /// The last error, if the decision is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What the implementations programming the route say of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayStatus>,
}

impl RouteMapStatus {
    /// Reads the annotation value; `None` when absent or not ours.
    pub fn parse(annotation: &str) -> Option<Self> {
        serde_json::from_str(annotation).ok()
    }
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
    decision: &Decision,
    result: &RouteResult,
    observed_resource_version: Option<&str>,
    previous_decision: Option<&str>,
) -> Option<Report> {
    report_with(
        route_name,
        decision,
        result,
        observed_resource_version,
        previous_decision,
        &[],
    )
}

/// [`report`], told which candidates were reported withdrawn already (the last status's
/// `withdrawn`): a candidate withdrawn since is told with a `CandidateWithdrawn` Warning.
pub fn report_with(
    route_name: Option<&str>,
    decision: &Decision,
    result: &RouteResult,
    observed_resource_version: Option<&str>,
    previous_decision: Option<&str>,
    reported_withdrawn: &[String],
) -> Option<Report> {
    let route_json = match decision {
        Decision::Desired {
            route: Some(route), ..
        } => Some(route.to_json().to_string()),
        _ => None,
    };
    report_route(
        route_name,
        route_json.as_deref(),
        decision,
        result,
        observed_resource_version,
        previous_decision,
        reported_withdrawn,
    )
}

/// [`report`] for a caller that keeps the decided route as its compact JSON text
/// (`route.to_json().to_string()`) instead of in the decision, as the writer does.
pub fn report_route(
    route_name: Option<&str>,
    route_json: Option<&str>,
    decision: &Decision,
    result: &RouteResult,
    observed_resource_version: Option<&str>,
    previous_decision: Option<&str>,
    reported_withdrawn: &[String],
) -> Option<Report> {
    let fingerprint = fingerprint(route_name, route_json, decision, result);
    if previous_decision == Some(fingerprint.as_str()) {
        return None;
    }
    let mut status = RouteMapStatus {
        fingerprint,
        observed_resource_version: observed_resource_version.map(str::to_string),
        ..Default::default()
    };
    let route = route_name.unwrap_or("-");
    let event = match (decision, result) {
        (Decision::Invalid { error }, _) => {
            status.last_error = Some(error.to_string());
            EventNote {
                warning: true,
                reason: "InvalidRouteMap",
                note: format!("{error}; the live HTTPRoute {route} is left as it is"),
            }
        }
        (Decision::Desired { traffic, .. }, result) => {
            status.strategy = Some(traffic.strategy.as_str().to_string());
            status.available_versions = traffic
                .available()
                .into_iter()
                .map(str::to_string)
                .collect();
            status.weights = traffic
                .versions
                .iter()
                .map(|v| (v.name.clone(), v.weight))
                .collect();
            status.withdrawn = traffic
                .versions
                .iter()
                .filter_map(|v| Some((v.name.clone(), v.withdrawn.clone()?)))
                .collect();
            let newly_withdrawn: Vec<(&str, &str)> = traffic
                .withdrawn()
                .filter(|(name, _)| !reported_withdrawn.iter().any(|r| r == name))
                .collect();
            match result {
                RouteResult::NotOwned { holder } => {
                    let note = format!(
                        "HTTPRoute {route} exists and was not written for this routemap ({holder}); it is left untouched and looked at again until it is gone"
                    );
                    status.last_error = Some(note.clone());
                    EventNote {
                        warning: true,
                        reason: "RouteNotOwned",
                        note,
                    }
                }
                RouteResult::Claimed { winner } => {
                    let note = format!(
                        "HTTPRoute {route} is also claimed by routemap {winner}, which keeps it (the older routemap, then by namespace/name); this routemap writes nothing until it gives the name up"
                    );
                    status.last_error = Some(note.clone());
                    EventNote {
                        warning: true,
                        reason: "RouteClaimed",
                        note,
                    }
                }
                RouteResult::Failed { message, .. } => {
                    status.last_error = Some(message.clone());
                    EventNote {
                        warning: true,
                        reason: "ApplyFailed",
                        note: format!("HTTPRoute {route}: {message}; retrying with backoff"),
                    }
                }
                RouteResult::Applied { generation } | RouteResult::Unchanged { generation }
                    if traffic.invalid.is_some() =>
                {
                    status.route_generation = *generation;
                    last_good(&mut status, traffic, route)
                }
                RouteResult::NoRoute if traffic.invalid.is_some() => {
                    last_good(&mut status, traffic, route)
                }
                RouteResult::Applied { generation } | RouteResult::Unchanged { generation }
                    if !newly_withdrawn.is_empty() =>
                {
                    status.route_generation = *generation;
                    withdrawn_note(&newly_withdrawn, traffic, route)
                }
                RouteResult::NoRoute if !newly_withdrawn.is_empty() => {
                    withdrawn_note(&newly_withdrawn, traffic, route)
                }
                RouteResult::Applied { generation } => {
                    status.route_generation = *generation;
                    EventNote {
                        warning: false,
                        reason: "RouteApplied",
                        note: format!(
                            "HTTPRoute {route} ({}): {}",
                            traffic.strategy.as_str(),
                            describe(traffic, true)
                        ),
                    }
                }
                RouteResult::Unchanged { generation } => {
                    status.route_generation = *generation;
                    versions_changed(traffic)
                }
                RouteResult::NoRoute => versions_changed(traffic),
            }
        }
    };
    Some(Report {
        event: Some(EventNote {
            note: truncate(event.note, MAX_NOTE),
            ..event
        }),
        status: summarise(status),
    })
}

/// The Warning of an invalid routemap whose last good spec stays in force: the error, and the
/// route as readiness now gates it (a new Event for each readiness change while invalid).
fn last_good(status: &mut RouteMapStatus, traffic: &Traffic, route: &str) -> EventNote {
    let error = traffic
        .invalid
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    status.last_error = Some(error.clone());
    EventNote {
        warning: true,
        reason: "InvalidRouteMap",
        note: format!(
            "{error}; the last good spec stays in force, gated on readiness: HTTPRoute {route} ({}): {}",
            traffic.strategy.as_str(),
            describe(traffic, true)
        ),
    }
}

/// The Warning of a candidate the guard withdrew: why, then the route as it now is.
fn withdrawn_note(newly: &[(&str, &str)], traffic: &Traffic, route: &str) -> EventNote {
    let which: Vec<String> = newly
        .iter()
        .map(|(name, why)| format!("candidate {name} withdrawn by the guard: {why}"))
        .collect();
    EventNote {
        warning: true,
        reason: "CandidateWithdrawn",
        note: format!(
            "{}; HTTPRoute {route} ({}): {}",
            which.join("; "),
            traffic.strategy.as_str(),
            describe(traffic, false)
        ),
    }
}

/// Keeps a status far below the annotation limit whatever the routemap holds: the first
/// [`MAX_STATUS_VERSIONS`] available versions and weights by name, then `and K more`, and the
/// error cut at 2 KiB.
pub fn summarise(mut status: RouteMapStatus) -> RouteMapStatus {
    let n = status.available_versions.len();
    if n > MAX_STATUS_VERSIONS {
        status.available_versions.truncate(MAX_STATUS_VERSIONS);
        status
            .available_versions
            .push(format!("and {} more", n - MAX_STATUS_VERSIONS));
    }
    let n = status.weights.len();
    if n > MAX_STATUS_VERSIONS {
        let extra: Vec<String> = status
            .weights
            .keys()
            .skip(MAX_STATUS_VERSIONS)
            .cloned()
            .collect();
        for k in extra {
            status.weights.remove(&k);
        }
        status
            .weights
            .insert(format!("and {} more", n - MAX_STATUS_VERSIONS), 0);
    }
    status.last_error = status.last_error.map(|e| truncate(e, MAX_STATUS_ERROR));
    // A withdrawal left out here is not restored after a restart: its candidate is judged
    // afresh, as any candidate (the guard judges at most 16 candidates of a routemap).
    status.withdrawn = std::mem::take(&mut status.withdrawn)
        .into_iter()
        .take(MAX_STATUS_VERSIONS)
        .map(|(name, mut w)| {
            w.why = truncate(w.why, MAX_WITHDRAWN_REASON);
            (name, w)
        })
        .collect();
    status
}

fn versions_changed(traffic: &Traffic) -> EventNote {
    EventNote {
        warning: false,
        reason: "VersionsChanged",
        note: format!(
            "{} ({}): {}",
            "versions",
            traffic.strategy.as_str(),
            describe(traffic, true)
        ),
    }
}

/// `httpbin-0 weight 1, httpbin-1 weight 1; unavailable: httpbin-2 (deploy/httpbin-2 ...)`.
/// `reasons: false` leaves out why a version is unavailable.
fn describe(traffic: &Traffic, reasons: bool) -> String {
    let available: Vec<String> = traffic
        .versions
        .iter()
        .filter(|v| v.available)
        .map(|v| format!("{} weight {}", v.name, v.weight))
        .collect();
    let unavailable: Vec<String> = traffic
        .versions
        .iter()
        .filter(|v| !v.available)
        .map(|v| match &v.reason {
            Some(r) if reasons => format!("{} ({r})", v.name),
            _ => v.name.clone(),
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
/// error (any apply failure of one decision is one report, however often it is retried). A
/// route name held by someone else is one report for as long as it is held, whatever the
/// decisions meanwhile.
fn fingerprint(
    route_name: Option<&str>,
    route_json: Option<&str>,
    decision: &Decision,
    result: &RouteResult,
) -> String {
    let name = route_name.unwrap_or("-");
    let text = match (decision, result) {
        (Decision::Invalid { error }, _) => format!("invalid\n{error}"),
        (_, RouteResult::NotOwned { .. }) => format!("not owned\n{name}"),
        (_, RouteResult::Claimed { winner }) => format!("claimed by {winner}\n{name}"),
        (Decision::Desired { traffic, .. }, _) => {
            let mut t = match &traffic.invalid {
                Some(error) => format!("invalid\n{error}\n"),
                None => String::new(),
            };
            t.push_str(route_json.unwrap_or_default());
            for v in &traffic.versions {
                t.push_str(&format!("\n{}:{}:{}", v.name, v.available, v.weight));
                if v.withdrawn.is_some() {
                    t.push_str(":withdrawn");
                }
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
pub fn fnv1a(bytes: &[u8]) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RouteMapError;
    use crate::index::VersionTraffic;
    use routing_core::{SpecError, Strategy};

    fn traffic(available: &[bool]) -> Traffic {
        Traffic {
            strategy: Strategy::Canary,
            warnings: vec![],
            invalid: None,
            versions: available
                .iter()
                .enumerate()
                .map(|(i, a)| VersionTraffic {
                    name: format!("app-{i}"),
                    available: *a,
                    weight: u32::from(*a),
                    reason: (!a).then(|| format!("deploy/app-{i} condition Available is False")),
                    withdrawn: None,
                })
                .collect(),
        }
    }

    fn desired(available: &[bool]) -> Decision {
        Decision::Desired {
            route: None,
            traffic: traffic(available),
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

    fn withdrawn_candidate() -> Decision {
        let mut t = traffic(&[true, false]);
        t.versions[1].reason = Some("withdrawn by the guard: errorRate 20% is over".into());
        t.versions[1].withdrawn = Some(crate::index::Withdrawn {
            why: "errorRate 20% is over".into(),
            identity: "deploy/app-1:1;".into(),
        });
        Decision::Desired {
            route: None,
            traffic: t,
        }
    }

    #[test]
    fn a_withdrawal_is_a_warning_once_and_kept_in_the_status() {
        let applied = RouteResult::Applied {
            generation: Some(3),
        };
        let r = report_with(
            Some("app"),
            &withdrawn_candidate(),
            &applied,
            None,
            None,
            &[],
        )
        .expect("reported");
        let e = r.event.expect("an event");
        assert_eq!((e.warning, e.reason), (true, "CandidateWithdrawn"));
        assert_eq!(
            e.note,
            "candidate app-1 withdrawn by the guard: errorRate 20% is over; HTTPRoute app (canary): available app-0 weight 1; unavailable app-1"
        );
        assert_eq!(
            r.status.withdrawn,
            BTreeMap::from([(
                "app-1".to_string(),
                crate::index::Withdrawn {
                    why: "errorRate 20% is over".into(),
                    identity: "deploy/app-1:1;".into()
                }
            )])
        );
        // Read back as written, identity included (what a restarted controller restores).
        let json = serde_json::to_string(&r.status).expect("json");
        assert!(json.contains(r#""withdrawn":{"app-1":{"why":"errorRate 20% is over","identity":"deploy/app-1:1;"}}"#), "{json}");
        assert_eq!(RouteMapStatus::parse(&json), Some(r.status.clone()));
        // A later decision while it stays withdrawn is an ordinary one.
        let again = report_with(
            Some("app"),
            &withdrawn_candidate(),
            &RouteResult::Applied {
                generation: Some(4),
            },
            None,
            Some("other"),
            &["app-1".to_string()],
        )
        .expect("reported");
        assert_eq!(again.event.expect("an event").reason, "RouteApplied");
        // The fingerprint tells a withdrawn candidate from an unready one.
        let unready =
            report(Some("app"), &desired(&[true, false]), &applied, None, None).expect("reported");
        assert_ne!(unready.status.fingerprint, r.status.fingerprint);
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
                Some(stored.fingerprint.as_str())
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
            Some(first.status.fingerprint.as_str()),
        )
        .expect("changed availability is reported");
        assert_eq!(second.event.expect("event").reason, "VersionsChanged");
    }

    #[test]
    fn invalid_routemap_is_a_warning_with_the_field_path() {
        let decision = Decision::Invalid {
            error: RouteMapError::Spec(SpecError::Field {
                path: "versions[1].port".into(),
                reason: "0 is not in 1-65535".into(),
            }),
        };
        let r =
            report(Some("app"), &decision, &RouteResult::NoRoute, None, None).expect("reported");
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
                &decision,
                &RouteResult::NoRoute,
                None,
                Some(r.status.fingerprint.as_str())
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
                Some(first.status.fingerprint.as_str())
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
            Some(first.status.fingerprint.as_str()),
        );
        assert_eq!(
            ok.and_then(|r| r.event).map(|e| e.reason),
            Some("RouteApplied")
        );
    }

    #[test]
    fn a_status_of_thousands_of_versions_stays_far_below_the_annotation_limit() {
        let available = vec![true; 5500];
        let r = report(
            Some("app"),
            &desired(&available),
            &RouteResult::Applied {
                generation: Some(1),
            },
            None,
            None,
        )
        .expect("reported");
        let json = serde_json::to_string(&r.status).expect("json");
        assert!(json.len() < 16 * 1024, "{} bytes", json.len());
        assert_eq!(r.status.available_versions.len(), MAX_STATUS_VERSIONS + 1);
        assert_eq!(
            r.status.available_versions.last().map(String::as_str),
            Some("and 5450 more")
        );
        assert!(r.status.weights.contains_key("and 5450 more"));
    }

    #[test]
    fn a_foreign_route_and_a_claimed_one_are_warnings_naming_who_holds_them() {
        let r = report(
            Some("victim"),
            &desired(&[true]),
            &RouteResult::NotOwned {
                holder: "controller owner none, field managers platform-team".into(),
            },
            None,
            None,
        )
        .expect("reported");
        let e = r.event.expect("event");
        assert_eq!((e.warning, e.reason), (true, "RouteNotOwned"));
        assert!(e.note.contains("platform-team"), "{}", e.note);
        let c = report(
            Some("victim"),
            &desired(&[true]),
            &RouteResult::Claimed {
                winner: "test/first-routemap".into(),
            },
            None,
            None,
        )
        .expect("reported");
        let e = c.event.expect("event");
        assert_eq!((e.warning, e.reason), (true, "RouteClaimed"));
        assert!(e.note.contains("test/first-routemap"), "{}", e.note);
        assert_ne!(r.status.fingerprint, c.status.fingerprint);
        // Held by someone else through a change of availability: not reported again.
        let again = report(
            Some("victim"),
            &desired(&[false]),
            &RouteResult::NotOwned {
                holder: "controller owner none, field managers platform-team".into(),
            },
            None,
            Some(r.status.fingerprint.as_str()),
        );
        assert_eq!(again, None);
    }

    #[test]
    fn long_notes_are_cut_at_the_api_limit() {
        let decision = Decision::Invalid {
            error: RouteMapError::UnsupportedFormat {
                found: "é".repeat(2000),
            },
        };
        let r = report(None, &decision, &RouteResult::NoRoute, None, None).expect("reported");
        let note = r.event.expect("event").note;
        assert!(note.len() <= MAX_NOTE && note.ends_with("..."));
    }
}
