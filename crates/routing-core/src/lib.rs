//! # routing-core: every routing decision, pure
//!
//! This crate decides where traffic goes. It does no IO, spawns nothing, reads no clock and knows
//! nothing of Kubernetes clients: it takes data and returns data or a typed error. The controller
//! (`k8s-adapter`) and the offline renderer (`iter8-render`) both call it, so they cannot disagree.
//!
//! ## Flow
//!
//! 1. **Spec** ([`spec`]): the routemap ConfigMap's `routemap.yaml` is parsed strictly into a
//!    [`RouteMapSpec`] (strategy, route settings, versions with their resources, weights and
//!    matches). Unknown fields and wrong types are errors that name the field path.
//! 2. **Validation** ([`validate`], [`names`], [`regex`]): names, ports, header and path syntax,
//!    the Gateway API CRD's patterns, lengths and CEL rules, and its limits (16 rules, 64 matches
//!    per rule and 128 in all, 16 headers per match, 16 backendRefs) are checked over all declared
//!    versions, so validity never depends on readiness. Every candidate match must name a header
//!    or query parameter (no catch-all candidate). Regular expressions are held to what Envoy's
//!    RE2 accepts (program size 100) and to a budget per routemap, and compiled once: the spec
//!    keeps them ([`regex::Regexes`]), so no decision compiles one again.
//! 3. **Observation** ([`readiness`]): each version resource's JSON is reduced to
//!    [`ResourceFacts`]; a version is available when every one of its resources is ready (watched,
//!    not deleting, configured conditions `True` and not stale). The first valid
//!    `iter8.tools/weight` annotation among its resources overrides its weight. The result is a
//!    [`VersionState`] per version.
//! 4. **Planning** ([`plan`](mod@plan)): spec + states -> the [`HttpRoute`] to apply, or `None` for strategy
//!    `none`. `canary` gives one rule per available candidate and the primary as the catch-all;
//!    `blue-green` one weighted rule over available versions; `mirror` the primary plus a
//!    `RequestMirror` per available candidate. Every backend sets the `app-version` response header.
//!    The output is canonical (all server defaults written, deterministic order), so an unchanged
//!    decision serializes to identical bytes and re-applying it is a no-op.
//! 5. **Explain** ([`explain`](mod@explain)): which backend a request reaches under Gateway API precedence,
//!    and where that precedence is the implementation's (regex paths), a note saying so; it
//!    powers `iter8-render explain` and the planner's property tests.
//!
//! 6. **Guard** ([`guard`](mod@guard), [`duration`]): the optional `guard` of a spec (interval,
//!    window, objectives, metric preset or query templates) is parsed and validated here with
//!    the rest, so a bad guard is a bad spec; judging candidates from Prometheus is the
//!    `iter8-guard` crate's.
//!
//! The output model ([`route`]) is our own rather than the `gateway-api` crate's generated types:
//! it is canonical by construction (no `Option` for defaulted fields) and keeps this crate free of
//! kube and k8s-openapi. `k8s-adapter` converts it to the `gateway-api` types for the API calls.

pub mod duration;
pub mod error;
pub mod explain;
pub mod guard;
pub mod keys;
pub mod names;
pub mod parse;
pub mod plan;
pub mod readiness;
pub mod regex;
pub mod route;
pub mod spec;
pub mod validate;

pub use error::{PlanError, SpecError};
pub use explain::{Explanation, Request, Share, explain, explain_with, match_applies};
pub use guard::GuardSpec;
pub use plan::{RouteMapRef, effective_weights, plan};
pub use readiness::{
    NotReady, ObjectSource, ResourceFacts, VersionState, parse_weight, resource_ready,
    version_state, version_states,
};
pub use route::HttpRoute;
pub use spec::{RouteMapSpec, Strategy};
