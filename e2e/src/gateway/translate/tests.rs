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
        out.clusters["test/httpbin-0/8080"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"]["port_value"],
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
