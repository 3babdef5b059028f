//! The HTTPRoute this crate produces: a small model of `gateway.networking.k8s.io/v1` HTTPRoute.
//!
//! Every field the API server would default is always written (backend group/kind/weight, match
//! path `PathPrefix /`, header type `Exact`), so the object read back from the server equals the
//! object applied and re-applying an unchanged route is a no-op. Field order follows this model,
//! list order follows the spec, so the YAML is byte-stable.
//!
//! It is deliberately our own model rather than the `gateway-api` crate's generated types: it has
//! no `Option` for defaulted fields (canonical by construction), it keeps this crate free of
//! kube/k8s-openapi (fast to build, trivially pure), and it serializes to exactly the JSON the
//! Gateway API CRD accepts. `k8s-adapter` converts it to `gateway_api` types and tests that the
//! conversion loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::{Method, PathMatchType, ValueMatchType};

/// Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// apiVersion of the HTTPRoutes written.
pub const HTTPROUTE_API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// An HTTPRoute object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Always `gateway.networking.k8s.io/v1`.
    pub api_version: String,
    /// Always `HTTPRoute`.
    pub kind: String,
    /// Name, namespace, labels, owner.
    pub metadata: RouteMeta,
    /// The routing.
    pub spec: HttpRouteSpec,
}

/// Metadata of the route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteMeta {
    /// Route name.
    pub name: String,
    /// Route namespace (the routemap's).
    pub namespace: String,
    /// Labels that mark the route as the controller's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The routemap ConfigMap, so deleting it deletes the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
}

/// A Kubernetes owner reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    /// `v1`.
    pub api_version: String,
    /// `ConfigMap`.
    pub kind: String,
    /// Routemap name.
    pub name: String,
    /// Routemap uid.
    pub uid: String,
    /// The routemap is the managing controller of the route.
    pub controller: bool,
}

/// HTTPRoute spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// Parents, fully defaulted.
    pub parent_refs: Vec<ParentRef>,
    /// Hostnames, when given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Rules; candidates first, the primary catch-all last.
    pub rules: Vec<Rule>,
}

/// A parent reference with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// Group (`""` for a Service).
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Listener name, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Port, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Conditions, OR-ed; never empty (the catch-all is `PathPrefix /`).
    pub matches: Vec<Match>,
    /// Rule filters (mirrors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// Backends with explicit weights, never all zero.
    pub backend_refs: Vec<BackendRef>,
}

/// One match with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    /// Path condition.
    pub path: PathMatch,
    /// Header conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    /// Query parameter conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatch>,
    /// Method condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
}

impl Match {
    /// The catch-all match, `PathPrefix /`.
    pub fn catch_all() -> Self {
        Match {
            path: PathMatch {
                kind: PathMatchType::PathPrefix,
                value: "/".into(),
            },
            headers: Vec::new(),
            query_params: Vec::new(),
            method: None,
        }
    }
}

/// Path condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathMatch {
    /// Type.
    #[serde(rename = "type")]
    pub kind: PathMatchType,
    /// Value.
    pub value: String,
}

/// Header or query condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueMatch {
    /// Type.
    #[serde(rename = "type")]
    pub kind: ValueMatchType,
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// A backend Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// `""`.
    pub group: String,
    /// `Service`.
    pub kind: String,
    /// Service name (the version name).
    pub name: String,
    /// Service port.
    pub port: u32,
    /// Relative weight.
    pub weight: u32,
    /// Backend filters: the `app-version` response header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

/// A filter (only the kinds this controller writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// `ResponseHeaderModifier` or `RequestMirror`.
    #[serde(rename = "type")]
    pub kind: FilterType,
    /// Set when `type` is `ResponseHeaderModifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    /// Set when `type` is `RequestMirror`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<RequestMirror>,
}

/// Filter types written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterType {
    /// Sets response headers.
    ResponseHeaderModifier,
    /// Copies requests to another backend.
    RequestMirror,
}

/// Header modifier (only `set` is written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderModifier {
    /// Headers set on the response, replacing any the backend sent.
    pub set: Vec<HeaderValue>,
}

/// A header name and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderValue {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// Mirror to a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMirror {
    /// The mirror target.
    pub backend_ref: MirrorBackendRef,
    /// Share of requests mirrored, 0-100.
    pub percent: u32,
}

/// A mirror target Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorBackendRef {
    /// `""`.
    pub group: String,
    /// `Service`.
    pub kind: String,
    /// Service name.
    pub name: String,
    /// Service port.
    pub port: u32,
}

impl HttpRoute {
    /// The route as YAML (stable field and list order), as `serde-saphyr` writes it.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }

    /// The route as a JSON value (the body of a server-side apply).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// All backends of all rules, in order.
    pub fn backends(&self) -> impl Iterator<Item = &BackendRef> {
        self.spec.rules.iter().flat_map(|r| r.backend_refs.iter())
    }
}
