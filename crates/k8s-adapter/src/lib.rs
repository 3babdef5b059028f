//! # k8s-adapter: the controller's side that talks to the API server
//!
//! Inputs: watches of routemap ConfigMaps, version resources and the HTTPRoutes we own.
//! Outputs: server-side applies of HTTPRoutes, Events and a status annotation on routemaps.
//! Deciding is not done here: every event is handed to the pure `routemap-index`, whose
//! changes this crate acts on.
//!
//! Steps:
//! 1. [`watch`]: one watch per routemap scope and resource type (how failing watches wait and
//!    report: [`watch_retry`]); [`index_task`]: the one task that owns the index, feeds it what
//!    the watches saw and sends each change of decision on.
//! 2. [`writer`]: the writer task applies routes, publishes Events and writes the status
//!    annotation ([`status`]) for those changes, leader only, with backoff.
//! 3. [`leader`]: Lease leader election, fenced ([`fence`]: until when this replica may write,
//!    checked before each write, cancelling calls in flight when it closes); [`admin`]:
//!    `/metrics`, `/livez`, `/readyz` on a bounded port; [`metrics`]: the Prometheus metrics.
//!
//! [`kube_types`] is the one module that names `k8s_openapi` and `gateway_api` types.

pub mod admin;
pub mod error;
pub mod fence;
pub mod guard;
pub mod index_task;
pub mod kube_types;
pub mod leader;
pub mod metrics;
pub mod status;
pub mod watch;
pub mod watch_retry;
pub mod writer;
