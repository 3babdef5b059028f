//! # kubectl-iter8: `kubectl iter8 get` and `kubectl iter8 explain`
//!
//! A kubectl plugin that shows, for each release (routemap), what the controller decides and
//! what is live, from the live objects and with the controller's own crates, so that it cannot
//! disagree with it.
//!
//! Steps:
//! 1. [`cluster`] (IO): the user's kubeconfig and context, as kubectl uses them; one list (or,
//!    with `--watch`, one watch) per source: routemap ConfigMaps, the version resources of the
//!    controller config's resource types (label `iter8.tools/watch=true`, as the controller
//!    watches them), HTTPRoutes, and the Events about ConfigMaps. The objects form a
//!    [`model::Snapshot`]. API errors become [`error::CliError`]s with documented exit codes.
//! 2. [`model`] (pure): the snapshot is fed to `routemap_index::offline::render` with
//!    `from_status` (the same index and decision function as the controller); each routemap
//!    becomes a [`model::ReleaseView`]: the route as it is live (parents and their answers per
//!    controllerName, generation observed, whether it is the decided route), each version
//!    (role, matches or weight, availability and why not), where requests go
//!    ([`requests`], `routing_core::explain` on the live route and on the decided one), the
//!    controller's status annotation and the last Events.
//! 3. [`text`] (pure): the tree users read, with colours and symbols on a terminal or plain
//!    ASCII when piped; `-o json|yaml` serializes the views instead.
//!
//! Rendering is a pure function of the snapshot and the time ("now" is injected for Event
//! ages), so the goldens under `fixtures/kubectl/` are exact.

pub mod cluster;
pub mod error;
pub mod model;
pub mod requests;
pub mod text;
