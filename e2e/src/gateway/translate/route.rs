//! One HTTPRoute -> its Envoy routes (one per rule match, with their precedence keys), the
//! clusters they use and its `ResolvedRefs` condition; anything not implemented is refused.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::backends::{World, backend_cluster, cluster};
use super::{Cond, array, only, s};

/// One Envoy route and its precedence key.
#[derive(Debug, Clone)]
pub(super) struct EnvoyRoute {
    pub(super) key: Precedence,
    pub(super) route: Value,
}

/// Gateway API precedence: exact path, then regex, then prefix; longer paths first; a method
/// match first; more header matches first; more query matches first; then route age and name,
/// rule order, match order.
pub(super) type Precedence = (
    u8,
    Reverse<usize>,
    u8,
    Reverse<usize>,
    Reverse<usize>,
    String,
    usize,
    usize,
);

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

/// One route's translation: its virtual host's domains and routes, clusters, and conditions.
pub(super) struct Translated {
    pub(super) domains: Vec<String>,
    pub(super) routes: Vec<EnvoyRoute>,
    pub(super) clusters: BTreeMap<String, Value>,
    pub(super) resolved: Cond,
}

pub(super) fn translate_route(
    world: &World,
    route: &Value,
    parents: &[&Value],
) -> Result<Translated, String> {
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
