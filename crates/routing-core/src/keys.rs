//! The data contract with users and other tools: every label, annotation, data key, header and
//! name the controller reads or writes on Kubernetes objects, in one place.

/// The data key of a routemap ConfigMap that holds the spec.
pub const ROUTEMAP_DATA_KEY: &str = "routemap.yaml";
/// The label that marks a ConfigMap as a routemap (value `routemap`).
pub const ROUTEMAP_KIND_LABEL: &str = "iter8.tools/kind";
/// The label that names the routemap format version.
pub const ROUTEMAP_VERSION_LABEL: &str = "iter8.tools/version";
/// The routemap format version this crate reads.
pub const ROUTEMAP_FORMAT_VERSION: &str = "v2";
/// The label on version resources that the controller watches.
pub const WATCH_LABEL: &str = "iter8.tools/watch";
/// The annotation on a version resource that overrides the version's weight.
pub const WEIGHT_ANNOTATION: &str = "iter8.tools/weight";
/// The annotation on a version resource whose new value gives a candidate withdrawn by the
/// guard another chance.
pub const GUARD_RETRY_ANNOTATION: &str = "iter8.tools/guard-retry";
/// The response header that names the version that answered.
pub const APP_VERSION_HEADER: &str = "app-version";
/// Label on every route this crate plans: who manages it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "iter8-controller";
/// Label on every route naming the routemap it comes from.
pub const ROUTEMAP_LABEL: &str = "iter8.tools/routemap";
/// The annotation on the route the controller wrote that holds `RouteMapStatus` (crate `routemap-index`).
pub const STATUS_ANNOTATION: &str = "iter8.tools/status";
/// Field manager of the status annotation.
pub const STATUS_FIELD_MANAGER: &str = "iter8-controller-status";
/// `reportingController` of our Events.
pub const REPORTING_CONTROLLER: &str = "iter8-controller";
