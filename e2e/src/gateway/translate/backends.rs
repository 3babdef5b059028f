//! Backends: the Services and EndpointSlices a backendRef resolves through, and the Envoy
//! clusters of their ready endpoints.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{Inputs, SERVICE_NAME_LABEL, array, only, s};

/// The Services and EndpointSlices, indexed.
pub(super) struct World<'a> {
    services: BTreeMap<(String, String), &'a Value>,
    slices: BTreeMap<(String, String), Vec<&'a Value>>,
}

impl<'a> World<'a> {
    pub(super) fn new(inputs: &'a Inputs) -> Self {
        let key = |o: &Value, name: Option<&str>| {
            (
                s(&o["metadata"], "namespace")
                    .unwrap_or_default()
                    .to_string(),
                name.unwrap_or_default().to_string(),
            )
        };
        let services = inputs
            .services
            .iter()
            .map(|o| (key(o, s(&o["metadata"], "name")), o))
            .collect();
        let mut slices: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
        for o in &inputs.slices {
            if let Some(svc) = o["metadata"]["labels"][SERVICE_NAME_LABEL].as_str() {
                slices.entry(key(o, Some(svc))).or_default().push(o);
            }
        }
        World { services, slices }
    }

    /// The ready endpoints (`address`, `port`) of Service `ns/name` port `port`, through its
    /// EndpointSlices only; `Err` says why it cannot be resolved.
    fn resolve(&self, ns: &str, name: &str, port: i64) -> Result<Vec<(String, i64)>, String> {
        let service = self
            .services
            .get(&(ns.to_string(), name.to_string()))
            .ok_or_else(|| format!("Service {ns}/{name} not found"))?;
        let sp = array(&service["spec"], "ports")
            .iter()
            .find(|p| p["port"].as_i64() == Some(port))
            .ok_or_else(|| format!("Service {ns}/{name} has no port {port}"))?;
        let port_name = s(sp, "name").unwrap_or_default();
        let mut out = BTreeSet::new();
        for slice in self
            .slices
            .get(&(ns.to_string(), name.to_string()))
            .into_iter()
            .flatten()
        {
            if s(slice, "addressType") != Some("IPv4") {
                continue;
            }
            let Some(target) = array(slice, "ports")
                .iter()
                .find(|p| s(p, "name").unwrap_or_default() == port_name)
                .and_then(|p| p["port"].as_i64())
            else {
                continue;
            };
            for ep in array(slice, "endpoints") {
                // As kube-proxy reads it: an unset `ready` is ready.
                if ep["conditions"]["ready"].as_bool() == Some(false) {
                    continue;
                }
                for a in array(ep, "addresses") {
                    if let Some(a) = a.as_str() {
                        out.insert((a.to_string(), target));
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}

fn cluster_name(ns: &str, name: &str, port: i64) -> String {
    format!("{ns}/{name}/{port}")
}

pub(super) fn cluster(name: &str, endpoints: &[(String, i64)]) -> Value {
    let lb: Vec<Value> = endpoints
        .iter()
        .map(|(a, p)| json!({"endpoint": {"address": {"socket_address": {"address": a, "port_value": p}}}}))
        .collect();
    json!({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": lb}]},
    })
}
/// A resolved backend (cluster name, ready endpoints), or why not (condition reason, message).
pub(super) type Resolution = Result<(String, Vec<(String, i64)>), (String, String)>;

/// What a backendRef resolves to: a cluster, or why not (condition reason, message).
pub(super) fn backend_cluster(
    world: &World,
    ns: &str,
    b: &Value,
    path: &str,
) -> Result<Resolution, String> {
    only(
        b,
        &[
            "group",
            "kind",
            "name",
            "namespace",
            "port",
            "weight",
            "filters",
        ],
        path,
    )?;
    let name = s(b, "name").unwrap_or_default();
    if s(b, "group").unwrap_or_default() != "" || s(b, "kind").unwrap_or("Service") != "Service" {
        return Ok(Err((
            "InvalidKind".into(),
            format!("{path}: only core Services are supported"),
        )));
    }
    if let Some(other) = s(b, "namespace").filter(|n| *n != ns) {
        return Ok(Err((
            "RefNotPermitted".into(),
            format!(
                "{path}: Service {other}/{name} is in another namespace (no ReferenceGrant support)"
            ),
        )));
    }
    let Some(port) = b["port"].as_i64() else {
        return Ok(Err((
            "BackendNotFound".into(),
            format!("{path}: a Service backend needs a port"),
        )));
    };
    Ok(match world.resolve(ns, name, port) {
        Ok(eps) => Ok((cluster_name(ns, name, port), eps)),
        Err(e) => Err(("BackendNotFound".into(), e)),
    })
}
