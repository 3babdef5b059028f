//! # routemap-index: what the controller knows and decides, without a cluster
//!
//! Inputs: routemap ConfigMaps and version resources as JSON values (from watches in the
//! controller, from YAML documents in `iter8-render`). Outputs: [`index::Decision`]s per routemap
//! and the [`report::Report`] (Event and status annotation) that tells users about one. No IO, no
//! async, no clock, no Kubernetes client: everything here is tested by calling it.
//!
//! Steps:
//! 1. [`config`]: the controller configuration (resource types, scope, resync, field manager).
//! 2. [`routemap`]: a routemap ConfigMap becomes a [`routemap::RouteMapObject`] (identity plus
//!    the parsed spec, or the reason it is invalid).
//! 3. [`index`]: routemaps and the [`routing_core::ResourceFacts`] of version resources are kept
//!    in memory; each event returns the routemaps whose decision changed, decided by
//!    `routing-core` ([`index::decide`]).
//! 4. [`report`]: from a decision and how its write went, the Event and status users see.
//! 5. [`live`]: the fields of a live route the controller owns, and whether they are as decided;
//!    [`gateway`]: what the implementations programming it say of it (`status.parents`).
//! 6. [`write_plan`]: the writes a decision needs (apply, delete, report), one step at a time,
//!    given the live routes, leadership and the time; the controller's executor makes them.
//! 7. [`offline`]: the same index fed from YAML documents (`iter8-render`).
//!
//! ## Glossary
//!
//! - **routemap**: a ConfigMap labelled `iter8.tools/kind: routemap` holding a spec.
//! - **version resource**: an object a version lists (`svc`, `deploy`, ...), known by the
//!   **short name** of its type and its namespace/name ([`index::ObjectKey`]).
//! - **facts**: what is kept of a version resource ([`routing_core::ResourceFacts`]).
//! - **ready**: a version resource whose facts pass its type's checks (watched, not deleting,
//!   conditions `True` for the current generation).
//! - **available**: a version all of whose resources are ready; only available versions get
//!   traffic.
//! - **decision** ([`index::Decision`]): for one routemap, the route to have and the state of each
//!   version ([`index::Traffic`]), or why the routemap is invalid. Made by [`index::decide`].
//! - **change** ([`index::Change`]): a routemap whose decision differs from the last one, or that
//!   is gone.
//! - **report** ([`report::Report`]): the Event and status annotation that tell users about a
//!   decision.

pub mod config;
pub mod decision;
pub mod error;
pub mod event;
pub mod gateway;
pub mod index;
pub mod live;
pub mod offline;
pub mod report;
pub mod routemap;
pub mod write_plan;
