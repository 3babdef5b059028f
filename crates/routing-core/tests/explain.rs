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

/// The precedence tests give every candidate match the header `c: 1` (a candidate needs a header
/// or query condition) and every request carries it: the order between the matches is unchanged.
fn served_by_c(route: &routing_core::HttpRoute, req: Request) -> String {
    served_by(route, req.header("c", "1"))
}

fn candidate(name: &str, matches: &str) -> String {
    format!(
        "- name: {name}\n  resources: [{{gvrShort: svc, name: {name}}}]\n  matches: {matches}\n"
    )
}

#[test]
fn exact_path_beats_any_prefix() {
    let r = route(
        &(candidate(
            "exact",
            "[{path: {type: Exact, value: /a}, headers: [{name: c, value: '1'}]}]",
        ) + &candidate(
            "prefix",
            "[{path: {value: /a}, headers: [{name: x, value: '1'}, {name: c, value: '1'}]}]",
        )),
    );
    assert_eq!(
        served_by_c(&r, Request::get("/a").header("x", "1")),
        "exact"
    );
    assert_eq!(
        served_by_c(&r, Request::get("/a/b").header("x", "1")),
        "prefix"
    );
}

#[test]
fn longest_prefix_beats_method_and_headers() {
    let r = route(
        &(candidate(
            "long",
            "[{path: {value: /a/b}, headers: [{name: c, value: '1'}]}]",
        ) + &candidate(
            "method",
            "[{path: {value: /a}, method: GET, headers: [{name: x, value: '1'}, {name: c, value: '1'}]}]",
        )),
    );
    assert_eq!(
        served_by_c(&r, Request::get("/a/b/c").header("x", "1")),
        "long"
    );
    assert_eq!(
        served_by_c(&r, Request::get("/a/c").header("x", "1")),
        "method"
    );
}

#[test]
fn method_beats_headers_and_headers_beat_query() {
    let r = route(
        &(candidate(
            "hdrs",
            "[{headers: [{name: x, value: '1'}, {name: y, value: '2'}, {name: c, value: '1'}]}]",
        ) + &candidate("meth", "[{method: POST, headers: [{name: c, value: '1'}]}]")
            + &candidate(
                "query",
                "[{queryParams: [{name: q, value: '1'}], headers: [{name: c, value: '1'}]}]",
            )),
    );
    let mut post = Request::get("/?q=1").header("x", "1").header("y", "2");
    post.method = "POST".into();
    assert_eq!(served_by_c(&r, post), "meth");
    assert_eq!(
        served_by_c(&r, Request::get("/?q=1").header("x", "1").header("y", "2")),
        "hdrs"
    );
    assert_eq!(
        served_by_c(&r, Request::get("/?q=1").header("x", "1")),
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
    let r = route(&candidate(
        "v2",
        "[{path: {value: /v2/}, headers: [{name: c, value: '1'}]}]",
    ));
    assert_eq!(served_by_c(&r, Request::get("/v2")), "v2");
    assert_eq!(served_by_c(&r, Request::get("/v2/x")), "v2");
    assert_eq!(served_by_c(&r, Request::get("/v2example")), "v0");
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

#[test]
fn regex_path_precedence_is_left_to_the_gateway() {
    let r = route(&candidate(
        "c",
        "[{path: {type: RegularExpression, value: '/api/.*'}, headers: [{name: x, value: '1'}]}]",
    ));
    // Without the header only the primary matches: no doubt.
    let e = explain(&r, &Request::get("/api/a")).expect("matched");
    assert_eq!((e.rule, e.implementation_specific), (1, None));
    // With it both rules match and only the regex path tells them apart: no claim.
    let e = explain(&r, &Request::get("/api/a").header("x", "1")).expect("matched");
    let note = e.implementation_specific.expect("a note");
    assert!(
        note.starts_with("implementation-specific: rule 0 also matches; Gateway API leaves the precedence of RegularExpression path matches to each gateway"),
        "{note}"
    );
    // A path the regex refuses: only the primary again.
    let e = explain(&r, &Request::get("/other").header("x", "1")).expect("matched");
    assert_eq!((e.rule, e.implementation_specific), (1, None));
}

#[test]
fn a_match_through_a_regex_value_names_the_dialect() {
    let r = route(&candidate(
        "c",
        "[{headers: [{type: RegularExpression, name: user, value: 'beta-.*'}]}]",
    ));
    let e = explain(&r, &Request::get("/").header("user", "beta-7")).expect("matched");
    assert_eq!(e.rule, 0);
    assert!(
        e.implementation_specific
            .is_some_and(|n| n.contains("RegularExpression header or query value")),
    );
}
