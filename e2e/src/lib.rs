//! The one test-support layer of the end-to-end tests (`tests/`) and the scale bench
//! (`benches/scale`): both start the test API server, run the real `iter8-controller`, read its
//! metrics and wait the same way, through these modules.
//!
//! - [`cluster`]: a test API server (etcd + server) in a fresh directory, the HTTPRoute CRD,
//!   kubectl, fault injection (restarts), stopped by its recorded pids on drop;
//! - [`objects`]: reading and writing objects on it (Deployment status, routes, the routemap's
//!   status annotation, Events, Leases, resourceVersions of what the controller watches);
//! - [`controller`]: the controller process (started, stopped by pid, killed on drop);
//! - [`metrics`]: its `/metrics`, and the waits for positive evidence that it has judged a change;
//! - [`release`]: helm against the test API server, and a release of `charts/release` made with
//!   real `helm upgrade --install` / `helm delete`;
//! - [`seed`]: the seed tutorial as one flow, which the tutorial and the seed, traffic and
//!   install tests run with their own readiness and checks;
//! - [`live`]: a live HTTPRoute in routing-core's model, and where a request goes;
//! - [`pod`]: a Deployment's pod run as a kubelet would run it, with Docker (the controller
//!   chart's image, service account token, ConfigMap volumes, security context, probes);
//! - [`install`], [`rbac`]: a helm install of the controller chart, and its least privilege
//!   (the authorization log, requests with the pod's token);
//! - [`traffic`]: what the traffic test checks of requests through the data plane;
//! - [`suite`]: scenarios one after the other on one server, with logs on failure;
//! - [`builders`]: releases, Deployments and their status as the chart and a controller-manager
//!   make them;
//! - [`fleet`], [`tracker`], [`scale`]: the scale bench's releases, its route watch and its
//!   measurements (also run scaled down by `tests/scale.rs`); [`scale_guard`]: its guard phase
//!   (guarded releases judged from a real Prometheus);
//! - [`gateway`]: the data plane: a test-only translator programming a real Envoy from the
//!   routes, httpbin per version, EndpointSlices, requests through it;
//! - [`prometheus`]: a real Prometheus (Debian's) as a child process scraping the data plane
//!   every second, instant queries, and served exposition text as a scrape target (the guard's
//!   presets, `tests/guard_presets.rs`);
//! - [`wait`], [`tools`], [`out`]: polling with a limit, paths and commands, printing.
//!
//! `use iter8_e2e::prelude::*` brings what a test file uses.

pub mod builders;
pub mod cluster;
pub mod controller;
pub mod fleet;
pub mod gateway;
pub mod install;
pub mod live;
pub mod metrics;
pub mod objects;
pub mod out;
pub mod pod;
pub mod prometheus;
pub mod proxy;
pub mod rbac;
pub mod release;
pub mod scale;
pub mod scale_guard;
pub mod seed;
pub mod status_probe;
pub mod suite;
pub mod tools;
pub mod tracker;
pub mod traffic;
pub mod wait;

/// What the test files use.
pub mod prelude {
    pub use crate::cluster::Cluster;
    pub use crate::controller::{Controller, LEASE_DURATION};
    pub use crate::live::{Live, canary_split, one_rule_to, plain_request, test_request};
    pub use crate::metrics::writes_agree;
    pub use crate::objects::show_events;
    pub use crate::out::{note, ok, say, step};
    pub use crate::release::{
        Release, edit_routemap, helm, remove_candidate_matches, rendered_object,
    };
    pub use crate::seed::{Platform, Seed, Stage, deployment_ready};
    pub use crate::suite::{Suite, release_with_controller};
    pub use crate::tools::{promote_with_new_image, values};
    pub use crate::wait::{timeout, wait_for};
}
