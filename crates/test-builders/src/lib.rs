//! Builders with defaults for the objects the tests and benches feed the index, so that each
//! test states only what matters to it: a canary spec for an app, a routemap ConfigMap holding
//! a spec, the facts of a ready or unready Deployment.
//!
//! Used only as a dev-dependency (by the tests and benches of `routemap-index`, `k8s-adapter`,
//! `routing-core` and the e2e crate); the product never links it.

pub mod heavy;

use std::collections::BTreeMap;

use routemap_index::routemap::{RouteMapKey, RouteMapObject};
use routing_core::keys::{
    ROUTEMAP_DATA_KEY, ROUTEMAP_FORMAT_VERSION, ROUTEMAP_KIND_LABEL, ROUTEMAP_VERSION_LABEL,
};
use routing_core::readiness::{ConditionFact, ResourceFacts};
use serde_json::{Value, json};

/// The spec of a two-version canary release of `app` as the release chart writes it: versions
/// `<app>-0` (primary) and `<app>-1` (candidate, for requests with `traffic: test`), each with
/// a Service and a Deployment of the same name, routed through the Service `<app>`.
pub fn canary_spec(app: &str) -> String {
    format!(
        r#"strategy: canary
route:
  name: {app}
  parentRefs: [{{group: "", kind: Service, name: {app}, port: 80}}]
versions:
- name: {app}-0
  resources: [{{gvrShort: svc, name: {app}-0}}, {{gvrShort: deploy, name: {app}-0}}]
- name: {app}-1
  resources: [{{gvrShort: svc, name: {app}-1}}, {{gvrShort: deploy, name: {app}-1}}]
  matches: [{{headers: [{{name: traffic, value: test}}]}}]
"#
    )
}

/// The spec of a two-version canary of `app` in `ns` as `charts/release` builds it (before its
/// `toJson`, which writes it as one line with sorted keys, as `to_string` does): the app Service
/// as parent, its in-cluster host names, versions `<app>-0` and `<app>-1` (for `traffic: test`)
/// with their Service and Deployment in `ns`.
pub fn chart_canary_spec(app: &str, ns: &str) -> Value {
    let resources = |v: usize| {
        json!([
            {"gvrShort": "svc", "name": format!("{app}-{v}"), "namespace": ns},
            {"gvrShort": "deploy", "name": format!("{app}-{v}"), "namespace": ns},
        ])
    };
    json!({
        "strategy": "canary",
        "route": {
            "name": app,
            "parentRefs": [{"group": "", "kind": "Service", "name": app, "port": 80}],
            "hostnames": [
                app,
                format!("{app}.{ns}"),
                format!("{app}.{ns}.svc"),
                format!("{app}.{ns}.svc.cluster.local"),
            ],
        },
        "versions": [
            {"name": format!("{app}-0"), "port": 80, "resources": resources(0)},
            {
                "name": format!("{app}-1"), "port": 80, "resources": resources(1),
                "matches": [{"headers": [{"name": "traffic", "value": "test"}]}],
            },
        ],
    })
}

/// A blue-green spec of `app` over `weights.len()` versions `<app>-<i>` with those weights,
/// each with a Service and a Deployment.
pub fn blue_green_spec(app: &str, weights: &[u32]) -> String {
    let mut yaml = format!(
        "strategy: blue-green\nroute:\n  name: {app}\n  parentRefs: [{{group: \"\", kind: Service, name: {app}, port: 80}}]\nversions:\n"
    );
    for (i, w) in weights.iter().enumerate() {
        yaml.push_str(&format!(
            "- name: {app}-{i}\n  weight: {w}\n  resources: [{{gvrShort: svc, name: {app}-{i}}}, {{gvrShort: deploy, name: {app}-{i}}}]\n"
        ));
    }
    yaml
}

/// The labels that make a ConfigMap a routemap of the current format.
pub fn routemap_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (ROUTEMAP_KIND_LABEL.to_string(), "routemap".to_string()),
        (
            ROUTEMAP_VERSION_LABEL.to_string(),
            ROUTEMAP_FORMAT_VERSION.to_string(),
        ),
    ])
}

/// A routemap builder: the ConfigMap `namespace/name` holding `spec` (uid `uid-1`, no
/// resourceVersion until set).
#[derive(Debug, Clone)]
pub struct RouteMap {
    /// Namespace.
    pub namespace: String,
    /// ConfigMap name.
    pub name: String,
    /// Owner uid.
    pub uid: String,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// Labels (default: [`routemap_labels`]).
    pub labels: BTreeMap<String, String>,
    /// The `routemap.yaml` text.
    pub spec: String,
}

impl RouteMap {
    /// `namespace/name` holding `spec`.
    pub fn new(namespace: &str, name: &str, spec: impl Into<String>) -> Self {
        RouteMap {
            namespace: namespace.into(),
            name: name.into(),
            uid: "uid-1".into(),
            resource_version: None,
            labels: routemap_labels(),
            spec: spec.into(),
        }
    }

    /// With this uid.
    pub fn uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = uid.into();
        self
    }

    /// With this resourceVersion.
    pub fn resource_version(mut self, rv: impl Into<String>) -> Self {
        self.resource_version = Some(rv.into());
        self
    }

    /// With the format version label set to `version`.
    pub fn format_version(mut self, version: &str) -> Self {
        self.labels
            .insert(ROUTEMAP_VERSION_LABEL.into(), version.into());
        self
    }

    /// As the index receives it.
    pub fn object(&self) -> RouteMapObject {
        let data = BTreeMap::from([(ROUTEMAP_DATA_KEY.to_string(), self.spec.clone())]);
        RouteMapObject::from_parts(
            RouteMapKey::new(&self.namespace, &self.name),
            self.uid.clone(),
            self.resource_version.clone(),
            &self.labels,
            Some(&data),
        )
    }

    /// As the API server stores it: a `v1 ConfigMap`.
    pub fn json(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": self.labels,
            },
            "data": {ROUTEMAP_DATA_KEY: self.spec},
        })
    }
}

/// Facts of a watched resource with no readiness conditions (a Service, a ConfigMap).
pub fn watched() -> ResourceFacts {
    ResourceFacts {
        watched: true,
        ..Default::default()
    }
}

/// Facts of a watched Deployment at generation 1, status observed, `Available` as given.
pub fn deployment(available: bool) -> ResourceFacts {
    ResourceFacts {
        generation: Some(1),
        observed_generation: Some(1),
        conditions: Some(vec![ConditionFact {
            kind: "Available".into(),
            status: if available { "True" } else { "False" }.into(),
            observed_generation: None,
        }]),
        ..watched()
    }
}

/// The same facts with an `iter8.tools/weight` annotation.
pub fn with_weight(mut facts: ResourceFacts, weight: &str) -> ResourceFacts {
    facts.weight_annotation = Some(weight.into());
    facts
}

/// The most a canary routemap can hold: 16 versions of `app` (`<app>-0` the primary), the 15
/// candidates sharing 127 matches (128 in all with the primary's catch-all), each match with 16
/// header conditions `h0`..`h15`. Header `k` (numbered over the whole spec) has the value
/// `value(k)`, as a `RegularExpression` when `regex(k)`, else `Exact`. Written as JSON, as the
/// release chart writes specs.
pub fn heavy_canary_spec(
    app: &str,
    value: impl Fn(usize) -> String,
    regex: impl Fn(usize) -> bool,
) -> String {
    let mut k = 0;
    let mut versions = vec![json!({
        "name": format!("{app}-0"),
        "resources": [{"gvrShort": "deploy", "name": format!("{app}-0")}],
    })];
    for c in 1..16 {
        let matches: Vec<Value> = (0..if c <= 7 { 9 } else { 8 })
            .map(|_| {
                let headers: Vec<Value> = (0..16)
                    .map(|h| {
                        k += 1;
                        let kind = if regex(k - 1) {
                            "RegularExpression"
                        } else {
                            "Exact"
                        };
                        json!({"type": kind, "name": format!("h{h}"), "value": value(k - 1)})
                    })
                    .collect();
                json!({"headers": headers})
            })
            .collect();
        versions.push(json!({
            "name": format!("{app}-{c}"),
            "resources": [{"gvrShort": "deploy", "name": format!("{app}-{c}")}],
            "matches": matches,
        }));
    }
    json!({
        "strategy": "canary",
        "route": {"name": app, "parentRefs": [{"group": "", "kind": "Service", "name": app, "port": 80}]},
        "versions": versions,
    })
    .to_string()
}
