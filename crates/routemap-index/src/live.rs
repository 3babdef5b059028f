//! What the writer knows of the routes it owns, and how it tells drift from noise.
//!
//! Only the fields the controller sets are kept (labels, owner references, spec), as compact JSON
//! text; [`covers`] decides whether a live route still carries everything desired.

use std::sync::Arc;

use routing_core::HttpRoute;

use crate::gateway::{GatewayStatus, gateway_status};
use routing_core::keys::{ROUTEMAP_LABEL, STATUS_ANNOTATION};
use routing_core::route::HTTPROUTE_API_VERSION;
use serde_json::{Value, json};

/// Namespace and name of an HTTPRoute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// A desired route as the writer keeps it for every routemap: its identity and its owned view
/// (see [`owned_view`]) as compact JSON text, which is all of the route but constants. The text
/// is shared with the live view when they are equal, as they are once the route is in place, so
/// a correct route costs one copy of its text, not a typed route plus two texts.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptRoute {
    /// Which route.
    pub id: RouteId,
    /// Owned view, compact JSON text.
    pub owned: Arc<str>,
}

impl KeptRoute {
    /// Keeps a planned route.
    pub fn new(route: &HttpRoute) -> Self {
        KeptRoute {
            id: RouteId {
                namespace: route.metadata.namespace.clone(),
                name: route.metadata.name.clone(),
            },
            owned: owned_view(&route.to_json()).to_string().into(),
        }
    }

    /// The whole route, equal to `HttpRoute::to_json` of the route it was made from.
    pub fn to_json(&self) -> Result<Value, serde_json::Error> {
        let owned: Value = serde_json::from_str(&self.owned)?;
        let mut metadata = json!({"name": self.id.name, "namespace": self.id.namespace});
        for key in ["labels", "ownerReferences"] {
            if !owned[key].is_null() {
                metadata[key] = owned[key].clone();
            }
        }
        Ok(json!({
            "apiVersion": HTTPROUTE_API_VERSION,
            "kind": "HTTPRoute",
            "metadata": metadata,
            "spec": owned["spec"],
        }))
    }
}

/// Makes `text` share `other`'s allocation when they hold the same text: one copy of a route's
/// text while the live route is as wanted.
pub fn share_equal(text: &mut Arc<str>, other: &Arc<str>) {
    if *text == *other && !Arc::ptr_eq(text, other) {
        *text = other.clone();
    }
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
    /// every route, and a parsed `serde_json::Value` costs many times the text's size (a B-tree node
    /// per JSON object): the largest part of the controller's memory at scale (see
    /// `docs/performance.md`).
    /// Shared with [`KeptRoute::owned`] when equal.
    pub owned: Arc<str>,
    /// The routemap named by its `iter8.tools/routemap` label.
    pub routemap: Option<String>,
    /// The uid of its controlling owner, when that is a ConfigMap (a routemap).
    pub owner_uid: Option<String>,
    /// What the implementations programming it say (`status.parents`): never compared as
    /// drift, only reported.
    pub gateway: GatewayStatus,
    /// Its uid (the status annotation is written on this route only while it is this one).
    pub uid: Option<String>,
    /// Its `iter8.tools/status` annotation: what was last reported about its routemap. Never
    /// compared as drift.
    pub status: Option<String>,
    /// The field managers in its `managedFields`, each once: who else writes it.
    pub managers: Vec<String>,
    /// Its controlling owner as `Kind/name`, when it has one.
    pub controller: Option<String>,
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
            owned: owned_view(obj).to_string().into(),
            routemap: meta["labels"][ROUTEMAP_LABEL].as_str().map(str::to_string),
            owner_uid: meta["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["kind"] == "ConfigMap" && o["controller"] == true)
                .and_then(|o| o["uid"].as_str())
                .map(str::to_string),
            gateway: gateway_status(obj),
            uid: meta["uid"].as_str().map(str::to_string),
            status: meta["annotations"][STATUS_ANNOTATION]
                .as_str()
                .map(str::to_string),
            managers: managers(meta),
            controller: meta["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["controller"] == true)
                .map(|o| {
                    format!(
                        "{}/{}",
                        o["kind"].as_str().unwrap_or("?"),
                        o["name"].as_str().unwrap_or("?")
                    )
                }),
        })
    }

    /// This route is the one `owner_uid`'s routemap wrote: it names that routemap as its
    /// controlling owner. A label edited by hand is drift to repair, not a change of owner;
    /// deletion also asks for the label (see the write planner).
    pub fn owned_by(&self, owner_uid: &str) -> bool {
        self.owner_uid.as_deref() == Some(owner_uid)
    }

    /// Who this route belongs to, for users: its controlling owner and its field managers.
    pub fn describe_owner(&self) -> String {
        let managers = if self.managers.is_empty() {
            "none".to_string()
        } else {
            self.managers.join(", ")
        };
        format!(
            "controller owner {}, field managers {managers}",
            self.controller.as_deref().unwrap_or("none")
        )
    }

    /// This live route carries every field of `want` the controller owns, so writing `want`
    /// would change nothing: the writer's test for "no write needed".
    pub fn carries(&self, want: &KeptRoute) -> bool {
        // Equal text is the usual case; otherwise the live route may still carry everything
        // we want next to server defaults and other managers' fields.
        *self.owned == *want.owned
            || serde_json::from_str::<Value>(&self.owned)
                .ok()
                .zip(serde_json::from_str::<Value>(&want.owned).ok())
                .is_some_and(|(owned, want)| covers(&owned, &want))
    }
}

/// The managers of `metadata.managedFields`, each once, in order.
fn managers(meta: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in meta["managedFields"].as_array().into_iter().flatten() {
        if let Some(name) = m["manager"].as_str()
            && !out.iter().any(|o| o == name)
        {
            out.push(name.to_string());
        }
    }
    out
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

    #[test]
    fn live_route_carries_the_planned_route_next_to_server_defaults() {
        let planned = json!({
            "metadata": {"name": "app", "namespace": "test", "labels": {"a": "1"}},
            "spec": {"rules": [{"backendRefs": [{"name": "app-0", "weight": 1}]}]},
        });
        let want = KeptRoute {
            id: RouteId {
                namespace: "test".into(),
                name: "app".into(),
            },
            owned: owned_view(&planned).to_string().into(),
        };
        let mut live = planned.clone();
        live["metadata"]["resourceVersion"] = json!("7");
        live["metadata"]["labels"]["team"] = json!("other");
        live["spec"]["rules"][0]["timeouts"] = json!({});
        let live = LiveRoute::from_json(&live).expect("a route");
        assert!(live.carries(&want), "extra keys are not drift");
        let mut edited = planned;
        edited["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(7);
        let edited = LiveRoute::from_json(&edited).expect("a route");
        assert!(!edited.carries(&want), "an edited weight is drift");
    }
}
