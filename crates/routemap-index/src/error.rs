//! Why a routemap cannot be used. The message names the field path, as users see it in the
//! `InvalidRouteMap` Event and in `iter8-render`'s errors; [`RouteMapError::category`] is the
//! bounded label of the metrics.

use routing_core::keys::{ROUTEMAP_DATA_KEY, ROUTEMAP_FORMAT_VERSION, ROUTEMAP_VERSION_LABEL};
use routing_core::{PlanError, SpecError};

/// A routemap that cannot be used; the live route stays as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteMapError {
    /// The format label names another format (an Iter8 1.1 template routemap, say).
    #[error(
        "metadata.labels[{ROUTEMAP_VERSION_LABEL}]: format {found:?} is not supported (this controller reads {ROUTEMAP_FORMAT_VERSION}; Iter8 1.1 template routemaps must be re-rendered with charts/release)"
    )]
    UnsupportedFormat {
        /// The label's value.
        found: String,
    },
    /// The format label is missing.
    #[error(
        "metadata.labels[{ROUTEMAP_VERSION_LABEL}]: missing (expected {ROUTEMAP_FORMAT_VERSION})"
    )]
    MissingFormat,
    /// The data key that holds the spec is missing.
    #[error("data[{ROUTEMAP_DATA_KEY}]: missing")]
    MissingSpec,
    /// The spec does not parse or breaks a rule; field paths are relative to the data key.
    #[error("{}", spec_message(.0))]
    Spec(SpecError),
    /// A version resource names a type the controller is not configured for.
    #[error(
        "data[{ROUTEMAP_DATA_KEY}].versions[{version}].resources[{resource}].gvrShort: {short_name:?} is not a configured resource type (configured: {configured})"
    )]
    UnknownType {
        /// Index of the version.
        version: usize,
        /// Index of the resource in the version.
        resource: usize,
        /// The short name given.
        short_name: String,
        /// The configured short names, comma-separated.
        configured: String,
    },
    /// A version resource lives in another namespace, which this controller does not read.
    #[error(
        "data[{ROUTEMAP_DATA_KEY}].versions[{version}].resources[{resource}].namespace: {namespace:?} differs from the routemap's namespace {routemap_namespace:?}, and the controller is namespace-scoped (install it with clusterScoped=true)"
    )]
    OtherNamespace {
        /// Index of the version.
        version: usize,
        /// Index of the resource in the version.
        resource: usize,
        /// The namespace given.
        namespace: String,
        /// The routemap's own namespace.
        routemap_namespace: String,
    },
    /// Planning refused the spec.
    #[error(transparent)]
    Plan(PlanError),
}

fn spec_message(e: &SpecError) -> String {
    match e.path() {
        Some(_) => format!("data[{ROUTEMAP_DATA_KEY}].{e}"),
        None => format!("data[{ROUTEMAP_DATA_KEY}]: {e}"),
    }
}

impl RouteMapError {
    /// A bounded label for metrics: `format`, `yaml`, `spec`, `resource_type`, `namespace` or
    /// `internal`.
    pub fn category(&self) -> &'static str {
        match self {
            RouteMapError::UnsupportedFormat { .. } | RouteMapError::MissingFormat => "format",
            RouteMapError::MissingSpec => "spec",
            RouteMapError::Spec(e) => e.category(),
            RouteMapError::UnknownType { .. } => "resource_type",
            RouteMapError::OtherNamespace { .. } => "namespace",
            RouteMapError::Plan(e) => e.category(),
        }
    }
}
