//! Why a routemap cannot be used. The message names the field path, as users see it in the
//! `InvalidRouteMap` Event and in `iter8-render`'s errors; [`RouteMapError::category`] is the
//! bounded label of the metrics.

use routing_core::keys::{
    ROUTEMAP_DATA_KEY, ROUTEMAP_FORMAT_VERSION, ROUTEMAP_LABEL, ROUTEMAP_VERSION_LABEL,
};
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
    /// The routemap's name cannot be the value of the label that ties its route to it.
    #[error(
        "metadata.name: {shown} cannot be the value of the label {ROUTEMAP_LABEL} on the route (a label value is at most 63 letters, digits, '-', '_' and '.', alphanumeric at both ends): rename the routemap"
    )]
    NameNotLabelValue {
        /// The name, as shown (quoted, cut after 64 characters).
        shown: String,
    },
    /// The data key that holds the spec is missing.
    #[error("data[{ROUTEMAP_DATA_KEY}]: missing")]
    MissingSpec,
    /// The spec does not parse or breaks a rule; field paths are relative to the data key.
    #[error("{}", spec_message(.0))]
    Spec(SpecError),
    /// A version resource names a type the controller is not configured for.
    #[error(
        "data[{ROUTEMAP_DATA_KEY}].versions[{version}].resources[{resource}].gvrShort: {given} is not a configured resource type (configured: {configured})",
        given = routing_core::names::shown(.short_name)
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
    /// A version resource lives in another namespace than the routemap: refused unless the
    /// controller is cluster-scoped and allows cross-namespace references.
    #[error(
        "data[{ROUTEMAP_DATA_KEY}].versions[{version}].resources[{resource}].namespace: {namespace:?} differs from the routemap's namespace {routemap_namespace:?}; cross-namespace references are refused unless the controller is cluster-scoped and allows them (controller chart: --set clusterScoped=true --set allowCrossNamespaceReferences=true), or move the resource into {routemap_namespace:?}"
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
    /// A bounded label for metrics: `format`, `name`, `yaml`, `spec`, `resource_type`,
    /// `namespace` or `internal`.
    pub fn category(&self) -> &'static str {
        match self {
            RouteMapError::UnsupportedFormat { .. } | RouteMapError::MissingFormat => "format",
            RouteMapError::NameNotLabelValue { .. } => "name",
            RouteMapError::MissingSpec => "spec",
            RouteMapError::Spec(e) => e.category(),
            RouteMapError::UnknownType { .. } => "resource_type",
            RouteMapError::OtherNamespace { .. } => "namespace",
            RouteMapError::Plan(e) => e.category(),
        }
    }
}

/// A failed API write, as the write planner needs to know it: whether and when to retry, and
/// the bounded category of the metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// No answer within the per-call timeout.
    #[error("no answer from the API server within {0:?}")]
    Timeout(std::time::Duration),
    /// The API server asked us to slow down (429, or a 5xx with `Retry-After`): not a failure to
    /// report, only a later retry.
    #[error("API server asked to retry after {retry_after:?} ({code}): {message}")]
    Throttled {
        /// HTTP status.
        code: u16,
        /// How long the server asked us to wait.
        retry_after: std::time::Duration,
        /// Server message.
        message: String,
    },
    /// The API server is failing (5xx) or the write conflicted (409).
    #[error("API server answered {code}: {message}")]
    Unavailable {
        /// HTTP status.
        code: u16,
        /// Server message.
        message: String,
    },
    /// The API server refused the object (4xx other than 409/429).
    #[error("API server rejected it ({code}): {message}")]
    Rejected {
        /// HTTP status.
        code: u16,
        /// Server message.
        message: String,
    },
    /// The request did not reach the server or the answer was unreadable.
    #[error("cannot reach the API server: {0}")]
    Connection(String),
    /// The planned route does not fit the Gateway API model (a bug: tested against).
    #[error("route does not fit the gateway-api model: {0}")]
    Encode(String),
}

impl WriteError {
    /// Classifies an API server answer by its status code and the `retryAfterSeconds` of its
    /// Status details (what the API server sends with a 429 or a `Retry-After` header).
    pub fn from_status(code: u16, message: String, retry_after_seconds: Option<u32>) -> Self {
        match (code, retry_after_seconds) {
            (429, after) => WriteError::Throttled {
                code,
                retry_after: std::time::Duration::from_secs(u64::from(after.unwrap_or(1).max(1))),
                message,
            },
            (500.., Some(after)) if after > 0 => WriteError::Throttled {
                code,
                retry_after: std::time::Duration::from_secs(u64::from(after)),
                message,
            },
            (409 | 500.., _) => WriteError::Unavailable { code, message },
            _ => WriteError::Rejected { code, message },
        }
    }

    /// Worth retrying soon.
    pub fn transient(&self) -> bool {
        !matches!(self, WriteError::Rejected { .. } | WriteError::Encode(_))
    }

    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            WriteError::Timeout(_) => "timeout",
            WriteError::Throttled { .. } => "throttled",
            WriteError::Unavailable { .. } | WriteError::Connection(_) => "api_transient",
            WriteError::Rejected { .. } => "api_rejected",
            WriteError::Encode(_) => "internal",
        }
    }
}
