//! Routemap ConfigMaps -> [`RouteMapObject`]: identity plus the parsed spec (or why it is invalid).
//!
//! The controller builds these from watched ConfigMaps and `iter8-render` from YAML documents;
//! both go through [`RouteMapObject::from_parts`], so they judge a routemap identically.

use std::collections::BTreeMap;
use std::fmt;

use routing_core::RouteMapSpec;
use routing_core::keys::{
    ROUTEMAP_DATA_KEY, ROUTEMAP_FORMAT_VERSION, ROUTEMAP_KIND_LABEL, ROUTEMAP_VERSION_LABEL,
};
use routing_core::names::{is_label_value, shown};
use serde_json::Value;

use crate::error::RouteMapError;

/// Namespace and name of a routemap.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteMapKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl RouteMapKey {
    /// A key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        RouteMapKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for RouteMapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A routemap as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMapObject {
    /// Where it is.
    pub key: RouteMapKey,
    /// Its uid (for the route's owner reference).
    pub uid: String,
    /// Its resourceVersion, reported back in status.
    pub resource_version: Option<String>,
    /// The spec, or the reason it cannot be used (field path and reason).
    pub spec: Result<RouteMapSpec, RouteMapError>,
}

/// Whether labels mark a ConfigMap as a routemap (the controller's watch selector).
pub fn is_routemap(labels: &BTreeMap<String, String>) -> bool {
    labels.get(ROUTEMAP_KIND_LABEL).map(String::as_str) == Some("routemap")
}

impl RouteMapObject {
    /// Builds the object from a ConfigMap's parts, parsing and validating the spec.
    pub fn from_parts(
        key: RouteMapKey,
        uid: String,
        resource_version: Option<String>,
        labels: &BTreeMap<String, String>,
        data: Option<&BTreeMap<String, String>>,
    ) -> Self {
        // The route carries the routemap's name as a label value: a name that cannot be one
        // could never get a route, so it is refused before the spec is even read.
        let spec = if is_label_value(&key.name) {
            parse_spec(labels, data)
        } else {
            Err(RouteMapError::NameNotLabelValue {
                shown: shown(&key.name),
            })
        };
        RouteMapObject {
            key,
            uid,
            resource_version,
            spec,
        }
    }

    /// Builds the object from a ConfigMap as JSON. `default_namespace` applies when the object
    /// has none (as `kubectl apply -n` would).
    pub fn from_json(obj: &Value, default_namespace: &str) -> Self {
        let meta = &obj["metadata"];
        let str_map = |v: &Value| -> BTreeMap<String, String> {
            v.as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let labels = str_map(&meta["labels"]);
        let data = obj["data"].is_object().then(|| str_map(&obj["data"]));
        RouteMapObject::from_parts(
            RouteMapKey::new(
                meta["namespace"].as_str().unwrap_or(default_namespace),
                meta["name"].as_str().unwrap_or_default(),
            ),
            meta["uid"].as_str().unwrap_or_default().to_string(),
            meta["resourceVersion"].as_str().map(str::to_string),
            &labels,
            data.as_ref(),
        )
    }
}

fn parse_spec(
    labels: &BTreeMap<String, String>,
    data: Option<&BTreeMap<String, String>>,
) -> Result<RouteMapSpec, RouteMapError> {
    match labels.get(ROUTEMAP_VERSION_LABEL).map(String::as_str) {
        Some(ROUTEMAP_FORMAT_VERSION) => {}
        Some(other) => {
            return Err(RouteMapError::UnsupportedFormat {
                found: other.to_string(),
            });
        }
        None => return Err(RouteMapError::MissingFormat),
    }
    let text = data
        .and_then(|d| d.get(ROUTEMAP_DATA_KEY))
        .ok_or(RouteMapError::MissingSpec)?;
    RouteMapSpec::from_yaml(text).map_err(RouteMapError::Spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> RouteMapObject {
        let labels = BTreeMap::from([
            (ROUTEMAP_KIND_LABEL.to_string(), "routemap".to_string()),
            (
                ROUTEMAP_VERSION_LABEL.to_string(),
                ROUTEMAP_FORMAT_VERSION.to_string(),
            ),
        ]);
        let spec = "strategy: none\nroute: {name: r, parentRefs: [{name: gw}]}\nversions: [{name: v0, resources: [{gvrShort: svc, name: v0}]}]\n";
        let data = BTreeMap::from([(ROUTEMAP_DATA_KEY.to_string(), spec.to_string())]);
        RouteMapObject::from_parts(
            RouteMapKey::new("ns", name),
            "u".into(),
            None,
            &labels,
            Some(&data),
        )
    }

    #[test]
    fn a_name_that_cannot_be_a_label_value_is_refused() {
        assert!(object(&"a".repeat(63)).spec.is_ok());
        for name in ["a".repeat(64), "a".repeat(300), "a-".to_string()] {
            let e = object(&name).spec.expect_err("not a label value");
            assert_eq!(e.category(), "name");
            assert!(e.to_string().starts_with("metadata.name: "), "{e}");
            assert!(e.to_string().len() < 400, "{e}");
        }
    }
}
