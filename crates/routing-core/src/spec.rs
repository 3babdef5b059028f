//! The routemap spec: what a user declares (through the release chart) in a routemap ConfigMap.
//!
//! Parsing is strict: an unknown field, a wrong type or a missing required field is an error
//! that names the field path (`versions[1].matches[0].headers[0].name: ...`). After parsing,
//! [`RouteMapSpec::validate`] checks everything the Gateway API would reject, so a spec that
//! passes can always be planned into a valid HTTPRoute.

use serde::{Deserialize, Serialize};

/// How traffic is shared between the versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// No route is written.
    None,
    /// The primary takes all traffic; each available candidate takes the requests its matches select.
    Canary,
    /// One rule, traffic split by weight between available versions.
    BlueGreen,
    /// All traffic to the primary; available candidates receive a mirrored copy at their weight (percent).
    Mirror,
}

impl Strategy {
    /// The name used in the routemap.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::None => "none",
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blue-green",
            Strategy::Mirror => "mirror",
        }
    }
}

/// A whole routemap spec (the `routemap.yaml` data key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteMapSpec {
    /// How traffic is shared.
    pub strategy: Strategy,
    /// The route to write.
    pub route: RouteSettings,
    /// The versions; index 0 is the primary.
    pub versions: Vec<VersionSpec>,
    /// Judge candidates from Prometheus and withdraw failing ones (strategies other than
    /// `none`). Absent: no guard, and the spec serializes as it did before guards existed.
    /// Boxed: the controller keeps one spec per routemap, and most have no guard, so an absent
    /// one costs a pointer rather than the ~200 bytes of the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Box<crate::guard::GuardSpec>>,
    /// The compiled regular expressions of the matches, filled in by validation
    /// ([`RouteMapSpec::from_yaml`], [`crate::validate::validate_and_compile`]) so that no
    /// decision compiles one again. Not part of the spec's data: leave it `Default::default()`.
    #[serde(skip)]
    pub regexes: crate::regex::Regexes,
}

/// Settings of the HTTPRoute the controller writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteSettings {
    /// Name of the HTTPRoute (in the routemap's namespace).
    pub name: String,
    /// Where the route attaches: Gateways, or a Service for mesh (GAMMA) routing.
    pub parent_refs: Vec<ParentRefSpec>,
    /// Optional hostnames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
}

/// A Gateway API ParentReference as written by the user (defaults not yet applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ParentRefSpec {
    /// API group; defaults to `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind; defaults to `Gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace of the parent; the route's namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the parent.
    pub name: String,
    /// A listener name of the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// A port of the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

/// One version of the application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VersionSpec {
    /// Backend Service name, and the `app-version` header value.
    pub name: String,
    /// Backend Service port.
    #[serde(default = "default_port")]
    pub port: u32,
    /// Every one must be ready for the version to be available.
    pub resources: Vec<ResourceRef>,
    /// Relative weight (blue-green) or mirror percentage; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Canary candidates: which requests the version receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<Vec<MatchSpec>>,
}

fn default_port() -> u32 {
    80
}

/// A Kubernetes object that is part of a version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceRef {
    /// A key of the controller's `resourceTypes` (`svc`, `deploy`, ...).
    pub gvr_short: String,
    /// Object name.
    pub name: String,
    /// Object namespace; the routemap's namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A Gateway API HTTPRouteMatch as written by the user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchSpec {
    /// Path condition; `PathPrefix /` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatchSpec>,
    /// Header conditions, AND-ed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatchSpec>,
    /// Query parameter conditions, AND-ed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatchSpec>,
    /// HTTP method condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
}

/// A path condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathMatchSpec {
    /// Match type; `PathPrefix` when absent.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<PathMatchType>,
    /// Path value; `/` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A header or query parameter condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ValueMatchSpec {
    /// Match type; `Exact` when absent.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ValueMatchType>,
    /// Header or parameter name.
    pub name: String,
    /// Value to match.
    pub value: String,
}

/// Gateway API path match types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PathMatchType {
    /// The whole path.
    Exact,
    /// A path prefix, by `/`-separated segments.
    PathPrefix,
    /// A regular expression (implementation-specific dialect; RE2-like here).
    RegularExpression,
}

/// Gateway API header and query parameter match types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ValueMatchType {
    /// The whole value.
    Exact,
    /// A regular expression.
    RegularExpression,
}

/// HTTP methods a match may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

impl Method {
    /// The method as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
        }
    }
}

impl RouteMapSpec {
    /// Gives back the spare capacity parsing leaves in every list: a controller keeps one spec
    /// per routemap for as long as it runs, so spare room is paid for once per routemap.
    pub fn shrink_to_fit(&mut self) {
        self.route.parent_refs.shrink_to_fit();
        self.route.hostnames.shrink_to_fit();
        self.versions.shrink_to_fit();
        for v in &mut self.versions {
            v.resources.shrink_to_fit();
            for m in v.matches.iter_mut() {
                m.shrink_to_fit();
                for m in m {
                    m.headers.shrink_to_fit();
                    m.query_params.shrink_to_fit();
                }
            }
        }
    }

    /// Serializes the spec back to YAML (used by the release chart tests and `iter8-render`).
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }
}
