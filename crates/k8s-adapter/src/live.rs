//! What the writer knows of the routes it owns, and how it tells drift from noise.
//!
//! Only the fields the controller sets are kept (labels, owner references, spec), as compact JSON
//! text; [`covers`] decides whether a live route still carries everything desired.

use routing_core::plan::ROUTEMAP_LABEL;
use serde_json::{Value, json};

/// Namespace and name of an HTTPRoute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// What the HTTPRoute watch knows of one of our routes: only the fields we own.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRoute {
    /// Which route.
    pub id: RouteId,
    /// Its resourceVersion.
    pub resource_version: String,
    /// Its generation.
    pub generation: Option<i64>,
    /// `metadata.labels`, `metadata.ownerReferences` and `spec`, as compact JSON text: kept for
    /// every route, and a parsed `serde_json::Value` costs about ten times the text's size
    /// (a B-tree node per JSON object), which dominated the controller's memory at scale.
    pub owned: String,
    /// The routemap named by its `iter8.tools/routemap` label.
    pub routemap: Option<String>,
}

impl LiveRoute {
    /// Keeps what the writer compares from a route object (as JSON).
    pub fn from_json(obj: &Value) -> Option<Self> {
        let meta = &obj["metadata"];
        Some(LiveRoute {
            id: RouteId {
                namespace: meta["namespace"].as_str()?.to_string(),
                name: meta["name"].as_str()?.to_string(),
            },
            resource_version: meta["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            generation: meta["generation"].as_i64(),
            owned: owned_view(obj).to_string(),
            routemap: meta["labels"][ROUTEMAP_LABEL].as_str().map(str::to_string),
        })
    }
}

/// The fields of a route the controller owns.
pub(crate) fn owned_view(obj: &Value) -> Value {
    json!({
        "labels": obj["metadata"]["labels"],
        "ownerReferences": obj["metadata"]["ownerReferences"],
        "spec": obj["spec"],
    })
}

/// `live` carries everything in `want`: objects may hold more keys (server defaults, other
/// managers' labels), lists must match element by element, values must be equal.
pub fn covers(live: &Value, want: &Value) -> bool {
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| l.get(k).is_some_and(|lv| covers(lv, wv)) || wv.is_null()),
        (Value::Array(l), Value::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(lv, wv)| covers(lv, wv))
        }
        _ => live == want,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_ignores_extra_keys_but_not_list_changes() {
        let want = json!({"labels": {"a": "1"}, "spec": {"rules": [{"x": 1}]}});
        // Someone else's label and a server default inside a rule do not count as drift.
        assert!(covers(
            &json!({"labels": {"a": "1", "b": "2"}, "spec": {"rules": [{"x": 1, "d": 0}]}}),
            &want
        ));
        // An edited value, a removed label or an extra rule does.
        assert!(!covers(
            &json!({"labels": {"a": "2"}, "spec": {"rules": [{"x": 1}]}}),
            &want
        ));
        assert!(!covers(
            &json!({"labels": {}, "spec": {"rules": [{"x": 1}]}}),
            &want
        ));
        assert!(!covers(
            &json!({"labels": {"a": "1"}, "spec": {"rules": [{"x": 1}, {"x": 2}]}}),
            &want
        ));
    }
}
