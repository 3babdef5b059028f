//! # k8s-adapter: the Kubernetes side of the controller
//!
//! Inputs: routemap ConfigMaps and version resources (from watches in the controller, from YAML
//! documents in `iter8-render`). Outputs: server-side applies of HTTPRoutes, Events and a status
//! annotation on routemaps.
//!
//! Steps:
//! 1. [`config`]: the controller configuration (resource types, scope, resync, field manager).
//! 2. [`routemap`]: a routemap ConfigMap becomes a [`routemap::RouteMapObject`] (identity plus
//!    the parsed spec, or the reason it is invalid).
//! 3. [`index`]: routemaps and the [`routing_core::ResourceFacts`] of version resources are kept
//!    in memory; each event returns the routemaps whose decision changed, decided by
//!    `routing-core` ([`index::decide`]). Pure: tested by calling it.
//! 4. The kube side (watches, the applier, Events and status, leader election, metrics) feeds
//!    the index and acts on its changes.

pub mod admin;
pub mod apply;
pub mod config;
pub mod index;
pub mod kube_types;
pub mod leader;
pub mod live;
pub mod metrics;
pub mod offline;
pub mod routemap;
pub mod status;
pub mod watch;
