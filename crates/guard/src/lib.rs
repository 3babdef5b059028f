//! # iter8-guard: judging canary candidates from Prometheus, pure
//!
//! The guard watches each candidate of a guarded routemap (`guard` in its spec, see
//! `routing_core::guard`) and withdraws one that keeps failing its objectives. This crate holds
//! every decision of it and no IO: no HTTP client, no clock, no async. The controller's guard
//! task (`k8s_adapter::guard`) makes the HTTP calls and keeps time; everything it decides with
//! comes from here.
//!
//! ## Flow, per candidate and per interval
//!
//! 1. **When** ([`schedule`](mod@schedule)): each candidate is judged once per `interval`, at an offset from a
//!    stable hash of its key, so many releases do not query at once.
//! 2. **What to ask** ([`query`]): [`render_queries`] gives the PromQL for the request count and
//!    each objective, from a preset (`envoy`, `istio`, `linkerd`) or the user's templates, with
//!    the candidate's namespace, Service, Deployment, port and the window filled in.
//! 3. **The request** ([`prometheus`]): [`query_request`] gives the exact path and query string
//!    of `GET /api/v1/query` at a given instant, and [`request_timeout`] how long to wait.
//! 4. **The answer** ([`prometheus`]): [`parse_answer`] reads Prometheus' JSON into one number,
//!    "no data", or a typed [`QueryError`]; the caller turns transport failures into
//!    [`QueryError::Unreachable`].
//! 5. **The verdict** ([`verdict`]): [`judge`] holds each objective's value to its limit, gated
//!    on `minRequests`; the candidate is healthy, failing or unknown.
//! 6. **The state** ([`state`]): [`CandidateGuard::record`] counts failing verdicts in a row and
//!    withdraws at `failAfter`, with a [`Withdrawal`] naming what the Warning Event must say;
//!    the candidate stays withdrawn until its [`Identity`] (version fingerprint or retry
//!    annotation) changes.
//!
//! The controller then plans the route as if a withdrawn candidate were unavailable.

pub mod prometheus;
pub mod query;
pub mod schedule;
pub mod state;
pub mod verdict;

pub use prometheus::{
    Answer, QueryError, QueryRequest, parse_answer, query_request, request_timeout,
};
pub use query::{Objective, ObjectiveQuery, Queries, RenderError, Target, render_queries};
pub use schedule::{candidate_key, next_due, offset, schedule};
pub use state::{CandidateGuard, Identity, Phase, RETRY_ANNOTATION, Refresh, Step, Withdrawal};
pub use verdict::{Finding, Outcome, Unknown, Verdict, VerdictKind, judge};
