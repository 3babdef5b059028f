//! Controller configuration: the YAML file the controller chart renders into a ConfigMap.
//!
//! Keys are Iter8's where Iter8 had them (`resourceTypes`, `clusterScoped`, `defaultResync`),
//! including Iter8's capitalised `Group`/`Version`/`Resource`, so existing `--set` lines work.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not parse or has a wrong field.
    #[error("controller config: {0}")]
    Invalid(String),
}

/// One watched resource type: where it lives and which conditions make it ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceType {
    /// API group (`""` for core).
    #[serde(alias = "Group", default)]
    pub group: String,
    /// API version.
    #[serde(alias = "Version")]
    pub version: String,
    /// Plural resource name.
    #[serde(alias = "Resource")]
    pub resource: String,
    /// Kind; derived from the resource name when absent (`deployments` -> `Deployment` is not
    /// guessable in general, so the defaults set it).
    #[serde(alias = "Kind", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Readiness conditions that must be `True` (e.g. `Available`).
    #[serde(alias = "Conditions", default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
}

impl ResourceType {
    fn new(group: &str, version: &str, resource: &str, kind: &str, conditions: &[&str]) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
            kind: Some(kind.into()),
            conditions: conditions.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// `group/version` or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind: the configured one, else the singular of the resource capitalised.
    pub fn kind(&self) -> String {
        if let Some(k) = &self.kind {
            return k.clone();
        }
        let singular = self.resource.strip_suffix('s').unwrap_or(&self.resource);
        let mut c = singular.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    }
}

/// The controller's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Watch all namespaces (true) or only the controller's (false).
    #[serde(default)]
    pub cluster_scoped: bool,
    /// Let a routemap's version resources live in another namespace than the routemap's. Off
    /// by default: a routemap author could otherwise make the controller route traffic by the
    /// readiness of objects in namespaces they do not control. Only a cluster-scoped controller
    /// can use it (a namespace-scoped one reads its own namespace only).
    #[serde(default)]
    pub allow_cross_namespace_references: bool,
    /// Period of the full resync that repairs missed writes, e.g. `15m`.
    #[serde(default = "default_resync")]
    pub default_resync: String,
    /// Field manager of the server-side applies.
    #[serde(default = "default_field_manager")]
    pub field_manager: String,
    /// Short name -> type. Routemaps name types by these keys (`gvrShort`).
    #[serde(default = "default_resource_types")]
    pub resource_types: BTreeMap<String, ResourceType>,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Address of the admin HTTP server (metrics and probes).
    #[serde(default = "default_admin_addr")]
    pub admin_addr: String,
    /// Writes in flight at once (at most one per routemap).
    #[serde(default = "default_max_writes_in_flight")]
    pub max_writes_in_flight: usize,
    /// Also watch `discovery.k8s.io/v1` EndpointSlices (label `kubernetes.io/service-name`): a
    /// version whose Service has slices and no ready endpoint is dropped from the route without
    /// waiting for its Deployment's status. Needs list/watch on endpointslices.
    #[serde(default = "default_endpoint_slices")]
    pub endpoint_slices: bool,
    /// The Prometheus a guarded routemap's queries go to when its `guard.prometheus` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard_prometheus: Option<String>,
    /// Prometheus queries of the guard in flight at once, over all routemaps.
    #[serde(default = "default_guard_queries_in_flight")]
    pub guard_queries_in_flight: usize,
    /// Keys the chart writes that the controller does not use (image, resources, ...).
    #[serde(flatten, skip_serializing)]
    pub ignored: BTreeMap<String, serde_json::Value>,
}

fn default_resync() -> String {
    "15m".into()
}
fn default_field_manager() -> String {
    "iter8-controller".into()
}
fn default_log_level() -> String {
    "info".into()
}
fn default_log_format() -> String {
    "text".into()
}
fn default_admin_addr() -> String {
    "0.0.0.0:8080".into()
}
/// Writes in flight unless configured: measured in `docs/performance.md` (cold start against
/// the API server at 1,000 and 10,000 releases).
pub const DEFAULT_MAX_WRITES_IN_FLIGHT: usize = 16;
fn default_max_writes_in_flight() -> usize {
    DEFAULT_MAX_WRITES_IN_FLIGHT
}
/// Guard queries in flight unless configured.
pub const DEFAULT_GUARD_QUERIES_IN_FLIGHT: usize = 8;
fn default_guard_queries_in_flight() -> usize {
    DEFAULT_GUARD_QUERIES_IN_FLIGHT
}
fn default_endpoint_slices() -> bool {
    true
}

/// The resource types known out of the box (Iter8's, with Gateway API v1).
pub fn default_resource_types() -> BTreeMap<String, ResourceType> {
    BTreeMap::from([
        (
            "svc".into(),
            ResourceType::new("", "v1", "services", "Service", &[]),
        ),
        (
            "service".into(),
            ResourceType::new("", "v1", "services", "Service", &[]),
        ),
        (
            "cm".into(),
            ResourceType::new("", "v1", "configmaps", "ConfigMap", &[]),
        ),
        (
            "deploy".into(),
            ResourceType::new("apps", "v1", "deployments", "Deployment", &["Available"]),
        ),
        (
            "isvc".into(),
            ResourceType::new(
                "serving.kserve.io",
                "v1beta1",
                "inferenceservices",
                "InferenceService",
                &["Ready"],
            ),
        ),
        (
            "httproute".into(),
            ResourceType::new(
                "gateway.networking.k8s.io",
                "v1",
                "httproutes",
                "HTTPRoute",
                &[],
            ),
        ),
    ])
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster_scoped: false,
            allow_cross_namespace_references: false,
            default_resync: default_resync(),
            field_manager: default_field_manager(),
            resource_types: default_resource_types(),
            log_level: default_log_level(),
            log_format: default_log_format(),
            admin_addr: default_admin_addr(),
            max_writes_in_flight: default_max_writes_in_flight(),
            endpoint_slices: default_endpoint_slices(),
            guard_prometheus: None,
            guard_queries_in_flight: default_guard_queries_in_flight(),
            ignored: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Parses the YAML config; absent keys take their defaults.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let value = if value.is_null() {
            serde_json::json!({})
        } else {
            value
        };
        let config: Config =
            serde_json::from_value(value).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (short, t) in &self.resource_types {
            if t.version.is_empty() || t.resource.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "resourceTypes.{short}: version and resource are required"
                )));
            }
        }
        if self.max_writes_in_flight == 0 {
            return Err(ConfigError::Invalid(
                "maxWritesInFlight: must be at least 1".into(),
            ));
        }
        if let Some(url) = &self.guard_prometheus {
            routing_core::validate::guard::check_prometheus_url("guardPrometheus", url)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if !(1..=256).contains(&self.guard_queries_in_flight) {
            return Err(ConfigError::Invalid(format!(
                "guardQueriesInFlight: {} is out of range 1-256",
                self.guard_queries_in_flight
            )));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "logFormat: {:?} is not one of text, json",
                self.log_format
            )));
        }
        Ok(())
    }

    /// The short name of the core `services` type whose readiness EndpointSlices refine: the
    /// one [`Self::watched_types`] watches; `None` when slices are off or no such type exists.
    pub fn slice_service_type(&self) -> Option<String> {
        if !self.endpoint_slices {
            return None;
        }
        self.watched_types()
            .into_iter()
            .find(|(_, t)| t.group.is_empty() && t.resource == "services")
            .map(|(short, _)| short)
    }

    /// One entry per distinct group/resource, named by its first short name, for watching each
    /// API resource once even when several short names point at it (`svc` and `service`).
    pub fn watched_types(&self) -> Vec<(String, ResourceType)> {
        let mut seen = std::collections::BTreeSet::new();
        self.resource_types
            .iter()
            .filter(|(_, t)| seen.insert((t.group.clone(), t.resource.clone())))
            .map(|(s, t)| (s.clone(), t.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_takes_defaults() {
        let c = Config::from_yaml("").expect("defaults");
        assert_eq!(c, Config::default());
    }

    #[test]
    fn iter8_capitalised_keys_are_accepted() {
        // Iter8's docs extend types with --set resourceTypes.ksvc.Group=... ; those files must load.
        let c = Config::from_yaml(
            "resourceTypes:\n  ksvc: {Group: serving.knative.dev, Version: v1, Resource: services, conditions: [Ready]}\nimage: x\n",
        )
        .expect("parses");
        let t = &c.resource_types["ksvc"];
        assert_eq!(t.api_version(), "serving.knative.dev/v1");
        assert_eq!(t.kind(), "Service");
        assert_eq!(t.conditions, vec!["Ready".to_string()]);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = Config::from_yaml("logFormat: xml").expect_err("invalid");
        assert!(e.to_string().contains("logFormat"), "{e}");
    }

    #[test]
    fn aliases_are_watched_once() {
        let c = Config::default();
        let services: Vec<_> = c
            .watched_types()
            .into_iter()
            .filter(|(_, t)| t.resource == "services")
            .collect();
        assert_eq!(services.len(), 1);
    }
}
