//! `explain` follows Gateway API precedence.

use routing_core::{Request, RouteMapRef, RouteMapSpec, VersionState, explain, plan};

/// A canary route whose candidates exercise each precedence step.
fn route(candidates: &str) -> routing_core::HttpRoute {
    let mut yaml = String::from(
        "strategy: canary\nroute: {name: r, parentRefs: [{name: gw}]}\nversions:\n- name: v0\n  resources: [{gvrShort: svc, name: v0}]\n",
    );
    yaml.push_str(candidates);
    let spec = RouteMapSpec::from_yaml(&yaml).expect("valid");
    let states = vec![VersionState::available(); spec.versions.len()];
    let owner = RouteMapRef {
        namespace: "ns".into(),
        name: "r".into(),
        uid: "u".into(),
    };
    plan(&owner, &spec, &states).expect("plans").expect("route")
}

fn served_by(route: &routing_core::HttpRoute, req: Request) -> String {
    explain(route, &req).expect("matched").backends[0]
        .backend
        .clone()
}

fn candidate(name: &str, matches: &str) -> String {
    format!(
        "- name: {name}\n  resources: [{{gvrShort: svc, name: {name}}}]\n  matches: {matches}\n"
    )
}

#[test]
fn exact_path_beats_any_prefix() {
    let r = route(
        &(candidate("exact", "[{path: {type: Exact, value: /a}}]")
            + &candidate(
                "prefix",
                "[{path: {value: /a}, headers: [{name: x, value: '1'}]}]",
            )),
    );
    assert_eq!(served_by(&r, Request::get("/a").header("x", "1")), "exact");
    assert_eq!(
        served_by(&r, Request::get("/a/b").header("x", "1")),
        "prefix"
    );
}

#[test]
fn longest_prefix_beats_method_and_headers() {
    let r = route(
        &(candidate("long", "[{path: {value: /a/b}}]")
            + &candidate(
                "method",
                "[{path: {value: /a}, method: GET, headers: [{name: x, value: '1'}]}]",
            )),
    );
    assert_eq!(
        served_by(&r, Request::get("/a/b/c").header("x", "1")),
        "long"
    );
    assert_eq!(
        served_by(&r, Request::get("/a/c").header("x", "1")),
        "method"
    );
}

#[test]
fn method_beats_headers_and_headers_beat_query() {
    let r = route(
        &(candidate(
            "hdrs",
            "[{headers: [{name: x, value: '1'}, {name: y, value: '2'}]}]",
        ) + &candidate("meth", "[{method: POST}]")
            + &candidate("query", "[{queryParams: [{name: q, value: '1'}]}]")),
    );
    let mut post = Request::get("/?q=1").header("x", "1").header("y", "2");
    post.method = "POST".into();
    assert_eq!(served_by(&r, post), "meth");
    assert_eq!(
        served_by(&r, Request::get("/?q=1").header("x", "1").header("y", "2")),
        "hdrs"
    );
    assert_eq!(
        served_by(&r, Request::get("/?q=1").header("x", "1")),
        "query"
    );
}

#[test]
fn ties_go_to_the_first_rule() {
    let r = route(
        &(candidate("first", "[{headers: [{name: x, value: '1'}]}]")
            + &candidate("second", "[{headers: [{name: y, value: '1'}]}]")),
    );
    assert_eq!(
        served_by(&r, Request::get("/").header("y", "1").header("x", "1")),
        "first"
    );
}

#[test]
fn prefixes_match_whole_segments() {
    let r = route(&candidate("v2", "[{path: {value: /v2/}}]"));
    assert_eq!(served_by(&r, Request::get("/v2")), "v2");
    assert_eq!(served_by(&r, Request::get("/v2/x")), "v2");
    assert_eq!(served_by(&r, Request::get("/v2example")), "v0");
}

#[test]
fn header_names_are_case_insensitive_values_are_not() {
    let r = route(&candidate(
        "c",
        "[{headers: [{name: Traffic, value: test}]}]",
    ));
    assert_eq!(
        served_by(&r, Request::get("/").header("traffic", "test")),
        "c"
    );
    assert_eq!(
        served_by(&r, Request::get("/").header("traffic", "Test")),
        "v0"
    );
}

#[test]
fn regular_expressions_match_whole_values() {
    let r = route(&candidate(
        "c",
        "[{headers: [{type: RegularExpression, name: user, value: 'beta-.*'}]}]",
    ));
    assert_eq!(
        served_by(&r, Request::get("/").header("user", "beta-7")),
        "c"
    );
    assert_eq!(
        served_by(&r, Request::get("/").header("user", "x-beta-7")),
        "v0"
    );
}

#[test]
fn weighted_rules_report_each_share() {
    let spec = RouteMapSpec::from_yaml(
        "strategy: blue-green\nroute: {name: r, parentRefs: [{name: gw}]}\nversions:\n- {name: a, weight: 1, resources: [{gvrShort: svc, name: a}]}\n- {name: b, weight: 3, resources: [{gvrShort: svc, name: b}]}\n",
    )
    .expect("valid");
    let owner = RouteMapRef {
        namespace: "ns".into(),
        name: "r".into(),
        uid: "u".into(),
    };
    let r = plan(
        &owner,
        &spec,
        &[VersionState::available(), VersionState::available()],
    )
    .expect("plans")
    .expect("route");
    let e = explain(&r, &Request::get("/")).expect("matched");
    let shares: Vec<(String, f64)> = e
        .backends
        .iter()
        .map(|s| (s.backend.clone(), s.percent()))
        .collect();
    assert_eq!(
        shares,
        vec![("a".to_string(), 25.0), ("b".to_string(), 75.0)]
    );
}
