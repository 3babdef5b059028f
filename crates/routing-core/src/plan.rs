//! The planner: routemap spec + version states -> the HTTPRoute to apply (or none).

use std::collections::BTreeMap;

use crate::error::PlanError;
use crate::keys::{APP_VERSION_HEADER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, ROUTEMAP_LABEL};
use crate::readiness::VersionState;
use crate::route::{
    BackendRef, Filter, FilterType, GATEWAY_GROUP, HTTPROUTE_API_VERSION, HeaderModifier,
    HeaderValue, HttpRoute, HttpRouteSpec, Match, MirrorBackendRef, OwnerReference, ParentRef,
    PathMatch, RequestMirror, RouteMeta, Rule, ValueMatch,
};
use crate::spec::{MatchSpec, PathMatchType, RouteMapSpec, Strategy, ValueMatchType, VersionSpec};

/// Identity of the routemap ConfigMap: where the route goes and who owns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteMapRef {
    /// ConfigMap namespace (also the route's).
    pub namespace: String,
    /// ConfigMap name.
    pub name: String,
    /// ConfigMap uid (for the owner reference).
    pub uid: String,
}

/// Effective weight of each version: unavailable -> 0; else the annotation override, else the
/// routemap weight, else 1; if all are 0, the primary gets 1. Under `mirror` a weight is a
/// percentage and is capped at 100.
pub fn effective_weights(spec: &RouteMapSpec, states: &[VersionState]) -> Vec<u32> {
    let cap = if spec.strategy == Strategy::Mirror {
        100
    } else {
        u32::MAX
    };
    let mut weights: Vec<u32> = spec
        .versions
        .iter()
        .zip(states)
        .map(|(v, s)| {
            if s.available {
                s.weight_override.or(v.weight).unwrap_or(1).min(cap)
            } else {
                0
            }
        })
        .collect();
    if weights.iter().all(|w| *w == 0)
        && let Some(first) = weights.first_mut()
    {
        *first = 1;
    }
    weights
}

/// Plans the route of one routemap. `Ok(None)` for strategy `none`.
///
/// `states[i]` is the observed state of `spec.versions[i]`.
pub fn plan(
    owner: &RouteMapRef,
    spec: &RouteMapSpec,
    states: &[VersionState],
) -> Result<Option<HttpRoute>, PlanError> {
    // A spec read by `from_yaml` was validated then (its regexes say so): validating it again at
    // every decision would cost as much as its size (figures: docs/performance.md).
    if !spec.regexes.is_validated() {
        spec.validate()?;
    }
    if states.len() != spec.versions.len() {
        return Err(PlanError::StateMismatch {
            versions: spec.versions.len(),
            states: states.len(),
        });
    }
    let rules = match spec.strategy {
        Strategy::None => return Ok(None),
        Strategy::Canary => canary_rules(spec, states),
        Strategy::BlueGreen => vec![blue_green_rule(spec, &effective_weights(spec, states))],
        Strategy::Mirror => vec![mirror_rule(spec, &effective_weights(spec, states))],
    };
    Ok(Some(HttpRoute {
        api_version: HTTPROUTE_API_VERSION.into(),
        kind: "HTTPRoute".into(),
        metadata: RouteMeta {
            name: spec.route.name.clone(),
            namespace: owner.namespace.clone(),
            labels: BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
                (ROUTEMAP_LABEL.to_string(), owner.name.clone()),
            ]),
            // Without a uid (a routemap rendered offline, not yet created) there is no owner yet.
            owner_references: if owner.uid.is_empty() {
                Vec::new()
            } else {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: owner.name.clone(),
                    uid: owner.uid.clone(),
                    controller: true,
                }]
            },
        },
        spec: HttpRouteSpec {
            parent_refs: spec
                .route
                .parent_refs
                .iter()
                .map(|p| ParentRef {
                    group: p.group.clone().unwrap_or_else(|| GATEWAY_GROUP.into()),
                    kind: p.kind.clone().unwrap_or_else(|| "Gateway".into()),
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    section_name: p.section_name.clone(),
                    port: p.port,
                })
                .collect(),
            hostnames: spec.route.hostnames.clone(),
            rules,
        },
    }))
}

/// Canary: one rule per available candidate (its matches), then the primary as the catch-all.
/// The primary stays the default backend even while unavailable: default traffic always has a
/// backend, and it is the version the user declared as the default.
fn canary_rules(spec: &RouteMapSpec, states: &[VersionState]) -> Vec<Rule> {
    let mut rules = Vec::with_capacity(spec.versions.len());
    for (v, s) in spec.versions.iter().zip(states).skip(1) {
        if !s.available {
            continue;
        }
        rules.push(Rule {
            matches: v.matches.iter().flatten().map(canonical_match).collect(),
            filters: Vec::new(),
            backend_refs: vec![backend(v, 1)],
        });
    }
    rules.push(Rule {
        matches: vec![Match::catch_all()],
        filters: Vec::new(),
        backend_refs: vec![backend(&spec.versions[0], 1)],
    });
    rules
}

/// Blue-green: one rule, one backend per version with a positive weight, in version order.
fn blue_green_rule(spec: &RouteMapSpec, weights: &[u32]) -> Rule {
    Rule {
        matches: vec![Match::catch_all()],
        filters: Vec::new(),
        backend_refs: spec
            .versions
            .iter()
            .zip(weights)
            .filter(|(_, w)| **w > 0)
            .map(|(v, w)| backend(v, *w))
            .collect(),
    }
}

/// Mirror: all traffic to the primary; each candidate with a positive weight gets a mirror copy.
fn mirror_rule(spec: &RouteMapSpec, weights: &[u32]) -> Rule {
    Rule {
        matches: vec![Match::catch_all()],
        filters: spec
            .versions
            .iter()
            .zip(weights)
            .skip(1)
            .filter(|(_, w)| **w > 0)
            .map(|(v, w)| Filter {
                kind: FilterType::RequestMirror,
                response_header_modifier: None,
                request_mirror: Some(RequestMirror {
                    backend_ref: MirrorBackendRef {
                        group: String::new(),
                        kind: "Service".into(),
                        name: v.name.clone(),
                        port: v.port,
                    },
                    percent: *w,
                }),
            })
            .collect(),
        backend_refs: vec![backend(&spec.versions[0], 1)],
    }
}

fn backend(v: &VersionSpec, weight: u32) -> BackendRef {
    BackendRef {
        group: String::new(),
        kind: "Service".into(),
        name: v.name.clone(),
        port: v.port,
        weight,
        filters: vec![Filter {
            kind: FilterType::ResponseHeaderModifier,
            response_header_modifier: Some(HeaderModifier {
                set: vec![HeaderValue {
                    name: APP_VERSION_HEADER.into(),
                    value: v.name.clone(),
                }],
            }),
            request_mirror: None,
        }],
    }
}

/// A user match with every default written out (path `PathPrefix /`, type `Exact`).
fn canonical_match(m: &MatchSpec) -> Match {
    let value_match = |h: &crate::spec::ValueMatchSpec| ValueMatch {
        kind: h.kind.unwrap_or(ValueMatchType::Exact),
        name: h.name.clone(),
        value: h.value.clone(),
    };
    Match {
        path: PathMatch {
            kind: m
                .path
                .as_ref()
                .and_then(|p| p.kind)
                .unwrap_or(PathMatchType::PathPrefix),
            value: m
                .path
                .as_ref()
                .and_then(|p| p.value.clone())
                .unwrap_or_else(|| "/".into()),
        },
        headers: m.headers.iter().map(value_match).collect(),
        query_params: m.query_params.iter().map(value_match).collect(),
        method: m.method,
    }
}
