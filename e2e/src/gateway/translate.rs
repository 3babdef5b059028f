//! Pure translation: the HTTPRoutes, Services and EndpointSlices a gateway sees -> the Envoy
//! route configuration and clusters it programs, and the `status.parents` entry it writes on
//! each route. No IO, no clock: tested with golden snapshots (`fixtures/gateway/`).
//!
//! It follows Envoy Gateway's translation of the fields the iter8 controller writes
//! (`reference/data-plane.md`): one Envoy route per rule match, ordered by Gateway API
//! precedence; `weighted_clusters` with per-backend `response_headers_to_add` even for one
//! backend; weight 0 gets nothing; a rule whose backends all weigh 0 or cannot be resolved
//! answers 500; `RequestMirror` becomes a `request_mirror_policies` entry; the route's
//! hostnames become the virtual host's domains. Anything else is refused with
//! `Accepted=False, reason UnsupportedValue` naming the field: never guessed.
//!
//! Here: the whole translation ([`translate`]) and each route's `status.parents`; in `route`:
//! one route's rules and matches; in `backends`: what a backendRef resolves to; in `tests`: the
//! goldens (`fixtures/gateway/snapshots`).

mod backends;
mod route;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use backends::World;
use route::{EnvoyRoute, translate_route};

/// The `controllerName` the translator writes in `status.parents`.
pub const CONTROLLER_NAME: &str = "iter8.tools/e2e-translator";
/// Name of the Envoy route configuration (RDS).
pub const ROUTE_CONFIG: &str = "iter8-e2e";
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the translator implements.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Gateways it plays, `namespace/name` (a `Service` parent, the mesh, is always its own).
    pub gateways: BTreeSet<String>,
}

/// What it sees on the API server (JSON as the API server returns it).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// HTTPRoutes.
    pub routes: Vec<Value>,
    /// Services.
    pub services: Vec<Value>,
    /// `discovery.k8s.io/v1` EndpointSlices.
    pub slices: Vec<Value>,
}

/// What to program and what to say.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The Envoy `RouteConfiguration` (RDS resource).
    pub route_config: Value,
    /// Envoy `Cluster`s (CDS resources), by name.
    pub clusters: BTreeMap<String, Value>,
    /// `namespace/name` of each route it handles -> its `status.parents` entries (conditions
    /// without `lastTransitionTime`, which the writer keeps or sets).
    pub statuses: BTreeMap<String, Vec<Value>>,
}

/// A condition of a parent's status.
#[derive(Debug, Clone)]
struct Cond {
    ok: bool,
    reason: String,
    message: String,
}

impl Cond {
    fn yes(reason: &str, message: &str) -> Cond {
        Cond {
            ok: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
    fn no(reason: &str, message: impl Into<String>) -> Cond {
        Cond {
            ok: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v[key].as_str()
}

/// Fails with the field path of the first key of `obj` not in `allowed`.
fn only(obj: &Value, allowed: &[&str], path: &str) -> Result<(), String> {
    if let Some(map) = obj.as_object() {
        for k in map.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(format!("{path}.{k} is not supported by this translator"));
            }
        }
    }
    Ok(())
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Is this parentRef one of ours? (A Service parent: the mesh; a Gateway we play.)
fn ours(settings: &Settings, route_ns: &str, p: &Value) -> bool {
    let group = s(p, "group").unwrap_or(GATEWAY_GROUP);
    let kind = s(p, "kind").unwrap_or("Gateway");
    let ns = s(p, "namespace").unwrap_or(route_ns);
    match (group, kind) {
        ("", "Service") => true,
        (GATEWAY_GROUP, "Gateway") => settings
            .gateways
            .contains(&format!("{ns}/{}", s(p, "name").unwrap_or_default())),
        _ => false,
    }
}

fn parent_status(parent: &Value, generation: i64, accepted: &Cond, resolved: &Cond) -> Value {
    let cond = |kind: &str, c: &Cond| {
        json!({
            "type": kind,
            "status": if c.ok { "True" } else { "False" },
            "reason": c.reason,
            "message": c.message,
            "observedGeneration": generation,
        })
    };
    json!({
        "parentRef": parent,
        "controllerName": CONTROLLER_NAME,
        "conditions": [cond("Accepted", accepted), cond("ResolvedRefs", resolved)],
    })
}

/// The whole translation.
pub fn translate(inputs: &Inputs, settings: &Settings) -> Output {
    let world = World::new(inputs);
    let mut routes: Vec<&Value> = inputs.routes.iter().collect();
    routes.sort_by_key(|r| {
        (
            s(&r["metadata"], "creationTimestamp")
                .unwrap_or_default()
                .to_string(),
            s(&r["metadata"], "namespace")
                .unwrap_or_default()
                .to_string(),
            s(&r["metadata"], "name").unwrap_or_default().to_string(),
        )
    });
    // One virtual host per hostname, as Envoy Gateway builds them: the routes of every
    // HTTPRoute with that hostname, ordered by precedence (an older route first on a tie).
    let mut vhosts: BTreeMap<String, Vec<EnvoyRoute>> = BTreeMap::new();
    let mut clusters = BTreeMap::new();
    let mut statuses = BTreeMap::new();
    for route in routes {
        let meta = &route["metadata"];
        let ns = s(meta, "namespace").unwrap_or_default();
        let name = s(meta, "name").unwrap_or_default();
        let key = format!("{ns}/{name}");
        let parents: Vec<&Value> = array(&route["spec"], "parentRefs")
            .iter()
            .filter(|p| ours(settings, ns, p))
            .collect();
        if parents.is_empty() {
            continue;
        }
        let generation = meta["generation"].as_i64().unwrap_or(0);
        let (accepted, resolved) = match translate_route(&world, route, &parents) {
            Err(why) => (
                Cond::no("UnsupportedValue", why),
                Cond::yes("ResolvedRefs", "not checked: the route is not accepted"),
            ),
            Ok(t) => {
                for d in &t.domains {
                    vhosts
                        .entry(d.clone())
                        .or_default()
                        .extend(t.routes.iter().cloned());
                }
                clusters.extend(t.clusters);
                (Cond::yes("Accepted", "programmed into Envoy"), t.resolved)
            }
        };
        statuses.insert(
            key,
            parents
                .iter()
                .map(|p| parent_status(p, generation, &accepted, &resolved))
                .collect(),
        );
    }
    let vhosts: Vec<Value> = vhosts
        .into_iter()
        .map(|(domain, mut rs)| {
            rs.sort_by(|a, b| a.key.cmp(&b.key));
            json!({
                "name": domain,
                "domains": [domain],
                "routes": rs.into_iter().map(|r| r.route).collect::<Vec<_>>(),
            })
        })
        .collect();
    Output {
        route_config: json!({
            "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            "name": ROUTE_CONFIG,
            "ignore_port_in_host_matching": true,
            "virtual_hosts": vhosts,
        }),
        clusters,
        statuses,
    }
}
