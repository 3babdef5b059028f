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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

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

/// One Envoy route and its precedence key.
#[derive(Debug, Clone)]
struct EnvoyRoute {
    key: Precedence,
    route: Value,
}

/// Gateway API precedence: exact path, then regex, then prefix; longer paths first; a method
/// match first; more header matches first; more query matches first; then route age and name,
/// rule order, match order.
type Precedence = (
    u8,
    Reverse<usize>,
    u8,
    Reverse<usize>,
    Reverse<usize>,
    String,
    usize,
    usize,
);

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

/// The Services and EndpointSlices, indexed.
struct World<'a> {
    services: BTreeMap<(String, String), &'a Value>,
    slices: BTreeMap<(String, String), Vec<&'a Value>>,
}

impl<'a> World<'a> {
    fn new(inputs: &'a Inputs) -> Self {
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

fn cluster(name: &str, endpoints: &[(String, i64)]) -> Value {
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

/// `set` overwrites, `add` appends, `remove` removes (a Header*Modifier filter).
fn header_ops(m: &Value, path: &str) -> Result<(Vec<Value>, Vec<String>), String> {
    only(m, &["set", "add", "remove"], path)?;
    let mut add = Vec::new();
    for (key, action) in [
        ("set", "OVERWRITE_IF_EXISTS_OR_ADD"),
        ("add", "APPEND_IF_EXISTS_OR_ADD"),
    ] {
        for h in array(m, key) {
            add.push(json!({
                "header": {"key": s(h, "name").unwrap_or_default(), "value": s(h, "value").unwrap_or_default()},
                "append_action": action,
            }));
        }
    }
    let remove = array(m, "remove")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    Ok((add, remove))
}

/// A resolved backend (cluster name, ready endpoints), or why not (condition reason, message).
type Resolution = Result<(String, Vec<(String, i64)>), (String, String)>;

/// What a backendRef resolves to: a cluster, or why not (condition reason, message).
fn backend_cluster(world: &World, ns: &str, b: &Value, path: &str) -> Result<Resolution, String> {
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

/// One route's translation: its virtual host's domains and routes, clusters, and conditions.
struct Translated {
    domains: Vec<String>,
    routes: Vec<EnvoyRoute>,
    clusters: BTreeMap<String, Value>,
    resolved: Cond,
}

fn translate_route(world: &World, route: &Value, parents: &[&Value]) -> Result<Translated, String> {
    let meta = &route["metadata"];
    let ns = s(meta, "namespace").unwrap_or_default();
    let name = s(meta, "name").unwrap_or_default();
    let spec = &route["spec"];
    only(spec, &["parentRefs", "hostnames", "rules"], "spec")?;
    let mut domains: Vec<String> = array(spec, "hostnames")
        .iter()
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect();
    if domains.is_empty() {
        for p in parents {
            if s(p, "kind") == Some("Service") {
                let svc = s(p, "name").unwrap_or_default();
                let pns = s(p, "namespace").unwrap_or(ns);
                domains.extend([
                    svc.to_string(),
                    format!("{svc}.{pns}"),
                    format!("{svc}.{pns}.svc"),
                    format!("{svc}.{pns}.svc.cluster.local"),
                ]);
            } else {
                domains.push("*".into());
            }
        }
    }
    domains.sort();
    domains.dedup();
    let age = format!(
        "{} {ns}/{name}",
        s(meta, "creationTimestamp").unwrap_or_default()
    );
    let mut out = Translated {
        domains,
        routes: Vec::new(),
        clusters: BTreeMap::new(),
        resolved: Cond::yes("ResolvedRefs", "all backends resolved"),
    };
    let mut unresolved: Vec<(String, String)> = Vec::new();
    for (ri, rule) in array(spec, "rules").iter().enumerate() {
        let rp = format!("spec.rules[{ri}]");
        only(rule, &["name", "matches", "filters", "backendRefs"], &rp)?;
        // Rule filters: RequestMirror, header modifiers.
        let mut mirrors = Vec::new();
        let mut rule_resp = (Vec::new(), Vec::new());
        let mut rule_req = (Vec::new(), Vec::new());
        for (fi, f) in array(rule, "filters").iter().enumerate() {
            let fp = format!("{rp}.filters[{fi}]");
            match s(f, "type") {
                Some("RequestMirror") => {
                    only(f, &["type", "requestMirror"], &fp)?;
                    let m = &f["requestMirror"];
                    only(
                        m,
                        &["backendRef", "percent", "fraction"],
                        &format!("{fp}.requestMirror"),
                    )?;
                    let fraction = match (m["percent"].as_i64(), &m["fraction"]) {
                        (Some(p), _) => json!({"numerator": p, "denominator": "HUNDRED"}),
                        (None, Value::Null) => json!({"numerator": 100, "denominator": "HUNDRED"}),
                        (None, f) => match (
                            f["numerator"].as_i64(),
                            f["denominator"].as_i64().unwrap_or(100),
                        ) {
                            (Some(n), 100) => json!({"numerator": n, "denominator": "HUNDRED"}),
                            (Some(n), 10_000) => {
                                json!({"numerator": n, "denominator": "TEN_THOUSAND"})
                            }
                            (Some(n), 1_000_000) => {
                                json!({"numerator": n, "denominator": "MILLION"})
                            }
                            _ => {
                                return Err(format!(
                                    "{fp}.requestMirror.fraction: denominator must be 100, 10000 or 1000000"
                                ));
                            }
                        },
                    };
                    match backend_cluster(
                        world,
                        ns,
                        &m["backendRef"],
                        &format!("{fp}.requestMirror.backendRef"),
                    )? {
                        Ok((c, eps)) => {
                            out.clusters.insert(c.clone(), cluster(&c, &eps));
                            mirrors.push(json!({
                                "cluster": c,
                                "runtime_fraction": {"default_value": fraction},
                                "disable_shadow_host_suffix_append": true,
                            }));
                        }
                        // Envoy Gateway leaves an unresolvable mirror out.
                        Err(why) => unresolved.push(why),
                    }
                }
                Some("ResponseHeaderModifier") => {
                    only(f, &["type", "responseHeaderModifier"], &fp)?;
                    let (a, r) = header_ops(
                        &f["responseHeaderModifier"],
                        &format!("{fp}.responseHeaderModifier"),
                    )?;
                    rule_resp.0.extend(a);
                    rule_resp.1.extend(r);
                }
                Some("RequestHeaderModifier") => {
                    only(f, &["type", "requestHeaderModifier"], &fp)?;
                    let (a, r) = header_ops(
                        &f["requestHeaderModifier"],
                        &format!("{fp}.requestHeaderModifier"),
                    )?;
                    rule_req.0.extend(a);
                    rule_req.1.extend(r);
                }
                other => {
                    return Err(format!(
                        "{fp}.type {other:?} is not supported by this translator"
                    ));
                }
            }
        }
        // Backends: one weighted cluster per backendRef with a positive weight.
        let mut weighted = Vec::new();
        for (bi, b) in array(rule, "backendRefs").iter().enumerate() {
            let bp = format!("{rp}.backendRefs[{bi}]");
            let weight = b["weight"].as_i64().unwrap_or(1);
            let target = backend_cluster(world, ns, b, &bp)?;
            let mut resp = (Vec::new(), Vec::new());
            let mut req = (Vec::new(), Vec::new());
            for (fi, f) in array(b, "filters").iter().enumerate() {
                let fp = format!("{bp}.filters[{fi}]");
                match s(f, "type") {
                    Some("ResponseHeaderModifier") => {
                        only(f, &["type", "responseHeaderModifier"], &fp)?;
                        resp = header_ops(
                            &f["responseHeaderModifier"],
                            &format!("{fp}.responseHeaderModifier"),
                        )?;
                    }
                    Some("RequestHeaderModifier") => {
                        only(f, &["type", "requestHeaderModifier"], &fp)?;
                        req = header_ops(
                            &f["requestHeaderModifier"],
                            &format!("{fp}.requestHeaderModifier"),
                        )?;
                    }
                    other => {
                        return Err(format!(
                            "{fp}.type {other:?} is not supported by this translator"
                        ));
                    }
                }
            }
            let cluster_ref = match target {
                Ok((c, eps)) => {
                    out.clusters.insert(c.clone(), cluster(&c, &eps));
                    c
                }
                Err(why) => {
                    unresolved.push(why);
                    // Not in CDS: its share answers 500 (cluster_not_found_response_code).
                    format!("invalid-backend/{ns}/{}", s(b, "name").unwrap_or_default())
                }
            };
            if weight <= 0 {
                continue;
            }
            let mut entry = json!({"name": cluster_ref, "weight": weight});
            if !resp.0.is_empty() {
                entry["response_headers_to_add"] = json!(resp.0);
            }
            if !resp.1.is_empty() {
                entry["response_headers_to_remove"] = json!(resp.1);
            }
            if !req.0.is_empty() {
                entry["request_headers_to_add"] = json!(req.0);
            }
            if !req.1.is_empty() {
                entry["request_headers_to_remove"] = json!(req.1);
            }
            weighted.push(entry);
        }
        let all_invalid = weighted
            .iter()
            .all(|w| s(w, "name").is_some_and(|n| n.starts_with("invalid-backend/")));
        let action = if weighted.is_empty() || all_invalid {
            // No backend with a positive weight, or none resolvable: 500.
            ("direct_response", json!({"status": 500}))
        } else {
            let mut a = json!({
                "weighted_clusters": {"clusters": weighted},
                "cluster_not_found_response_code": "INTERNAL_SERVER_ERROR",
            });
            if !mirrors.is_empty() {
                a["request_mirror_policies"] = json!(mirrors);
            }
            ("route", a)
        };
        let default_match = [json!({"path": {"type": "PathPrefix", "value": "/"}})];
        let matches = match array(rule, "matches") {
            [] => &default_match[..],
            m => m,
        };
        for (mi, m) in matches.iter().enumerate() {
            let mp = format!("{rp}.matches[{mi}]");
            let (envoy_match, key) = translate_match(m, &mp)?;
            let mut r = json!({
                "name": format!("httproute/{ns}/{name}/rule/{ri}/match/{mi}"),
                "match": envoy_match,
                (action.0): action.1.clone(),
            });
            if !rule_resp.0.is_empty() {
                r["response_headers_to_add"] = json!(rule_resp.0);
            }
            if !rule_resp.1.is_empty() {
                r["response_headers_to_remove"] = json!(rule_resp.1);
            }
            if !rule_req.0.is_empty() {
                r["request_headers_to_add"] = json!(rule_req.0);
            }
            if !rule_req.1.is_empty() {
                r["request_headers_to_remove"] = json!(rule_req.1);
            }
            let (a, b, c, d, e) = key;
            out.routes.push(EnvoyRoute {
                key: (a, b, c, d, e, age.clone(), ri, mi),
                route: r,
            });
        }
    }
    if let Some((reason, message)) = unresolved.into_iter().next() {
        out.resolved = Cond::no(&reason, message);
    }
    Ok(out)
}

type MatchKey = (u8, Reverse<usize>, u8, Reverse<usize>, Reverse<usize>);

fn translate_match(m: &Value, mp: &str) -> Result<(Value, MatchKey), String> {
    only(m, &["path", "headers", "queryParams", "method"], mp)?;
    let path = &m["path"];
    only(path, &["type", "value"], &format!("{mp}.path"))?;
    let value = s(path, "value").unwrap_or("/");
    let mut out = serde_json::Map::new();
    let rank = match s(path, "type").unwrap_or("PathPrefix") {
        "Exact" => {
            out.insert("path".into(), json!(value));
            0
        }
        "RegularExpression" => {
            out.insert("safe_regex".into(), json!({"regex": value}));
            1
        }
        "PathPrefix" => {
            let trimmed = value.trim_end_matches('/');
            if trimmed.is_empty() {
                out.insert("prefix".into(), json!("/"));
            } else {
                // Gateway API prefixes match whole path segments.
                out.insert("path_separated_prefix".into(), json!(trimmed));
            }
            2
        }
        other => return Err(format!("{mp}.path.type {other:?} is not supported")),
    };
    let mut headers = Vec::new();
    for (hi, h) in array(m, "headers").iter().enumerate() {
        let hp = format!("{mp}.headers[{hi}]");
        only(h, &["type", "name", "value"], &hp)?;
        let v = s(h, "value").unwrap_or_default();
        let sm = match s(h, "type").unwrap_or("Exact") {
            "Exact" => json!({"exact": v}),
            "RegularExpression" => json!({"safe_regex": {"regex": v}}),
            other => return Err(format!("{hp}.type {other:?} is not supported")),
        };
        headers.push(json!({"name": s(h, "name").unwrap_or_default(), "string_match": sm}));
    }
    let method = s(m, "method");
    if let Some(method) = method {
        headers.push(json!({"name": ":method", "string_match": {"exact": method}}));
    }
    if !headers.is_empty() {
        out.insert("headers".into(), json!(headers));
    }
    let mut query = Vec::new();
    for (qi, q) in array(m, "queryParams").iter().enumerate() {
        let qp = format!("{mp}.queryParams[{qi}]");
        only(q, &["type", "name", "value"], &qp)?;
        let v = s(q, "value").unwrap_or_default();
        let sm = match s(q, "type").unwrap_or("Exact") {
            "Exact" => json!({"exact": v}),
            "RegularExpression" => json!({"safe_regex": {"regex": v}}),
            other => return Err(format!("{qp}.type {other:?} is not supported")),
        };
        query.push(json!({"name": s(q, "name").unwrap_or_default(), "string_match": sm}));
    }
    if !query.is_empty() {
        out.insert("query_parameters".into(), json!(query));
    }
    let key = (
        rank,
        Reverse(value.len()),
        u8::from(method.is_none()),
        Reverse(array(m, "headers").len()),
        Reverse(query.len()),
    );
    Ok((Value::Object(out), key))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tools::repo_root;

    /// `fixtures/gateway/<case>.yaml`: the routes, Services and EndpointSlices a gateway sees
    /// (and a `kind: Settings` document: the Gateways it plays).
    fn case(name: &str) -> (Inputs, Settings) {
        let path = repo_root()
            .join("fixtures/gateway")
            .join(format!("{name}.yaml"));
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut inputs = Inputs::default();
        let mut settings = Settings::default();
        for d in docs {
            match d["kind"].as_str() {
                Some("HTTPRoute") => inputs.routes.push(d),
                Some("Service") => inputs.services.push(d),
                Some("EndpointSlice") => inputs.slices.push(d),
                Some("Settings") => {
                    settings.gateways = array(&d, "gateways")
                        .iter()
                        .filter_map(|g| g.as_str().map(str::to_string))
                        .collect();
                }
                other => panic!("unexpected kind {other:?}"),
            }
        }
        (inputs, settings)
    }

    fn golden(name: &str) -> Output {
        let (inputs, settings) = case(name);
        let out = translate(&inputs, &settings);
        insta::with_settings!({
            snapshot_path => repo_root().join("fixtures/gateway/snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("fixtures/gateway/{name}.yaml through the translator"),
        }, {
            insta::assert_yaml_snapshot!(name, json!({
                "route_config": out.route_config,
                "clusters": out.clusters.values().collect::<Vec<_>>(),
                "status.parents": out.statuses,
            }));
        });
        out
    }

    fn routes(out: &Output) -> Vec<String> {
        array(&out.route_config, "virtual_hosts")
            .iter()
            .take(1)
            .flat_map(|v| array(v, "routes"))
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn answer(out: &Output, route: &str) -> (String, String, String) {
        let p = &out.statuses[route][0];
        let c = |i: usize| &p["conditions"][i];
        (
            format!(
                "{}/{}",
                c(0)["status"].as_str().unwrap(),
                c(0)["reason"].as_str().unwrap()
            ),
            format!(
                "{}/{}",
                c(1)["status"].as_str().unwrap(),
                c(1)["reason"].as_str().unwrap()
            ),
            c(0)["observedGeneration"].to_string(),
        )
    }

    #[test]
    fn canary_header_rule_first_weighted_clusters_even_for_one_backend() {
        let out = golden("canary");
        assert_eq!(
            routes(&out),
            [
                "httproute/test/httpbin/rule/0/match/0",
                "httproute/test/httpbin/rule/1/match/0"
            ]
        );
        let first = &out.route_config["virtual_hosts"][0]["routes"][0]["route"];
        assert_eq!(
            first["weighted_clusters"]["clusters"][0]["name"],
            "test/httpbin-1/80"
        );
        assert_eq!(
            first["weighted_clusters"]["clusters"][0]["response_headers_to_add"][0]["append_action"],
            "OVERWRITE_IF_EXISTS_OR_ADD"
        );
        assert_eq!(
            answer(&out, "test/httpbin"),
            (
                "True/Accepted".into(),
                "True/ResolvedRefs".into(),
                "2".into()
            )
        );
    }

    #[test]
    fn blue_green_weight_zero_gets_nothing_and_only_our_parents_get_status() {
        let out = golden("blue-green");
        let clusters = &out.route_config["virtual_hosts"][0]["routes"][0]["route"]["weighted_clusters"]
            ["clusters"];
        let got: Vec<(String, i64)> = clusters
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["weight"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("test/httpbin-0/80".to_string(), 30),
                ("test/httpbin-1/80".to_string(), 70)
            ]
        );
        // Not ready: resolved, but no endpoint.
        assert_eq!(
            out.clusters["test/httpbin-1/80"]["load_assignment"]["endpoints"][0]["lb_endpoints"],
            json!([])
        );
        // The mesh and my-gateway; someone else's Gateway is not ours to answer for.
        assert_eq!(out.statuses["test/httpbin"].len(), 2);
    }

    #[test]
    fn mirror_is_a_mirror_policy_with_its_percent_and_no_shadow_suffix() {
        let out = golden("mirror");
        let domains: Vec<&Value> = array(&out.route_config, "virtual_hosts")
            .iter()
            .map(|v| &v["domains"][0])
            .collect();
        assert_eq!(
            domains,
            [
                "httpbin",
                "httpbin.test",
                "httpbin.test.svc",
                "httpbin.test.svc.cluster.local"
            ]
        );
        let vh = &out.route_config["virtual_hosts"][0];
        let m = &vh["routes"][0]["route"]["request_mirror_policies"][0];
        assert_eq!(m["cluster"], "test/httpbin-1/8080");
        assert_eq!(m["runtime_fraction"]["default_value"]["numerator"], 25);
        assert_eq!(m["disable_shadow_host_suffix_append"], true);
        // The port by name; only ready (or unset) endpoints.
        assert_eq!(
            out.clusters["test/httpbin-1/8080"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            out.clusters["test/httpbin-0/8080"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
                [0]["endpoint"]["address"]["socket_address"]["port_value"],
            41000
        );
    }

    #[test]
    fn all_zero_and_unresolvable_backends_answer_500() {
        let out = golden("unresolved");
        for r in array(&out.route_config["virtual_hosts"][0], "routes") {
            assert_eq!(r["direct_response"]["status"], 500, "{r}");
        }
        assert_eq!(answer(&out, "test/httpbin").1, "False/BackendNotFound");
    }

    #[test]
    fn what_it_does_not_implement_is_refused_not_guessed() {
        let out = golden("unsupported");
        assert_eq!(array(&out.route_config, "virtual_hosts").len(), 0);
        assert_eq!(answer(&out, "test/httpbin").0, "False/UnsupportedValue");
        let msg = out.statuses["test/httpbin"][0]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("spec.rules[0].filters[0].type"), "{msg}");
    }

    #[test]
    fn gateway_api_precedence() {
        let out = golden("precedence");
        let order: Vec<String> = routes(&out)
            .into_iter()
            .map(|n| n.trim_start_matches("httproute/test/httpbin/").to_string())
            .collect();
        assert_eq!(
            order,
            [
                "rule/1/match/7", // Exact /api
                "rule/1/match/6", // RegularExpression
                "rule/1/match/5", // PathPrefix /api/v1 (longest)
                "rule/1/match/4", // PathPrefix /api/ (trailing slash kept in the length)
                "rule/1/match/3", // / with a method
                "rule/1/match/1", // / with 2 headers
                "rule/1/match/0", // / with 1 header
                "rule/1/match/2", // / with a query param
                "rule/0/match/0", // / alone
            ]
        );
    }

    #[test]
    fn routes_sharing_a_hostname_share_its_virtual_host_older_route_first() {
        let (mut inputs, settings) = case("canary");
        let mut younger = inputs.routes[0].clone();
        younger["metadata"]["namespace"] = json!("other");
        younger["metadata"]["creationTimestamp"] = json!("2026-02-01T00:00:00Z");
        younger["spec"]["hostnames"] = json!(["httpbin", "httpbin.other"]);
        inputs.routes.push(younger);
        let out = translate(&inputs, &settings);
        assert_eq!(answer(&out, "test/httpbin").0, "True/Accepted");
        assert_eq!(answer(&out, "other/httpbin").0, "True/Accepted");
        let vh = array(&out.route_config, "virtual_hosts")
            .iter()
            .find(|v| v["name"] == "httpbin")
            .unwrap();
        let names: Vec<&str> = array(vh, "routes")
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "httproute/test/httpbin/rule/0/match/0",
                "httproute/other/httpbin/rule/0/match/0",
                "httproute/test/httpbin/rule/1/match/0",
                "httproute/other/httpbin/rule/1/match/0",
            ]
        );
    }
}
