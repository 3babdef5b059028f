//! Validation refuses, with a field path, everything the API server or the Gateway API CRD
//! (v1.6.1) would refuse in the route we write, and what gateways refuse of regexes.

use routing_core::RouteMapSpec;
use routing_core::regex::{MAX_PROGRAM_SIZE, MAX_ROUTEMAP_PROGRAM_SIZE};

/// A valid canary spec with `route` and the candidate's `matches` replaced.
fn spec(route: &str, matches: &str) -> String {
    format!(
        "strategy: canary\nroute: {route}\nversions:\n- {{name: v0, resources: [{{gvrShort: svc, name: v0}}]}}\n- {{name: v1, resources: [{{gvrShort: svc, name: v1}}], matches: {matches}}}\n"
    )
}

const ROUTE: &str = "{name: r, parentRefs: [{name: gw}]}";
const MATCHES: &str = "[{headers: [{name: traffic, value: test}]}]";

fn error(yaml: &str) -> String {
    RouteMapSpec::from_yaml(yaml)
        .expect_err("invalid")
        .to_string()
}

fn assert_refused(yaml: &str, path: &str, words: &str) {
    let e = error(yaml);
    assert!(
        e.starts_with(&format!("{path}: ")) && e.contains(words),
        "want {path}: ...{words}...\n got {e}"
    );
}

fn parent(fields: &str) -> String {
    format!("{{name: r, parentRefs: [{{name: gw, {fields}}}]}}")
}

#[test]
fn the_base_spec_is_valid() {
    RouteMapSpec::from_yaml(&spec(ROUTE, MATCHES)).expect("valid");
    RouteMapSpec::from_yaml(&spec(
        &parent("group: '', kind: Service, port: 80"),
        MATCHES,
    ))
    .expect("a Service parent");
    RouteMapSpec::from_yaml(&spec(
        "{name: r, parentRefs: [{name: gw, sectionName: a}, {name: gw, sectionName: b}]}",
        MATCHES,
    ))
    .expect("two sections of one parent");
}

#[test]
fn parent_ref_fields_follow_the_crd() {
    let cases = [
        (
            "group: Gateway.Networking",
            "group",
            "not a valid API group",
        ),
        ("group: a_b", "group", "not a valid API group"),
        ("kind: 9Gateway", "kind", "not a valid kind"),
        ("kind: Gate_way", "kind", "not a valid kind"),
        ("namespace: Prod", "namespace", "not a valid name"),
        ("sectionName: HTTP", "sectionName", "not a valid name"),
        ("sectionName: ''", "sectionName", "not a valid name"),
        ("port: 0", "port", "not a port"),
        ("port: 70000", "port", "not a port"),
    ];
    for (fields, field, words) in cases {
        assert_refused(
            &spec(&parent(fields), MATCHES),
            &format!("route.parentRefs[0].{field}"),
            words,
        );
    }
    let long_kind = format!("kind: {}", "K".repeat(64));
    assert_refused(
        &spec(&parent(&long_kind), MATCHES),
        "route.parentRefs[0].kind",
        "not a valid kind",
    );
    let long_group = format!("group: {}", "g".repeat(254));
    assert_refused(
        &spec(&parent(&long_group), MATCHES),
        "route.parentRefs[0].group",
        "not a valid API group",
    );
    assert_refused(
        &spec("{name: r, parentRefs: [{name: Gw}]}", MATCHES),
        "route.parentRefs[0].name",
        "not a valid name",
    );
}

#[test]
fn one_parent_twice_needs_distinct_section_names() {
    for refs in [
        "[{name: gw}, {name: gw}]",
        "[{name: gw, sectionName: a}, {name: gw}]",
        "[{name: gw}, {name: gw, sectionName: a}]",
        "[{name: gw, sectionName: a}, {name: gw, sectionName: a}]",
    ] {
        assert_refused(
            &spec(&format!("{{name: r, parentRefs: {refs}}}"), MATCHES),
            "route.parentRefs[1].sectionName",
            "distinct sectionName",
        );
    }
    // Another kind or namespace is another parent.
    RouteMapSpec::from_yaml(&spec(
        "{name: r, parentRefs: [{name: gw}, {name: gw, kind: Service, group: ''}, {name: gw, namespace: other}]}",
        MATCHES,
    ))
    .expect("three parents");
}

#[test]
fn hostnames_are_dns_names_not_ips() {
    for (host, words) in [
        ("10.0.0.1", "is an IP address"),
        ("'*.10.0.0.1'", "is an IP address"),
        ("Example.com", "not a valid hostname"),
        ("'*'", "not a valid hostname"),
        ("a..b", "not a valid hostname"),
    ] {
        assert_refused(
            &spec(
                &format!("{{name: r, parentRefs: [{{name: gw}}], hostnames: [{host}]}}"),
                MATCHES,
            ),
            "route.hostnames[0]",
            words,
        );
    }
}

#[test]
fn route_and_backend_names() {
    assert_refused(
        &spec("{name: My_Route, parentRefs: [{name: gw}]}", MATCHES),
        "route.name",
        "not a valid name",
    );
    let long = format!("{{name: {}, parentRefs: [{{name: gw}}]}}", "a".repeat(254));
    assert_refused(&spec(&long, MATCHES), "route.name", "1-253 characters");
    let yaml = spec(ROUTE, MATCHES).replace("name: v1,", "name: V1,");
    assert_refused(&yaml, "versions[1].name", "not a valid name");
    let yaml = spec(ROUTE, MATCHES).replace("name: v1,", &format!("name: {},", "v".repeat(64)));
    assert_refused(&yaml, "versions[1].name", "1-63 characters");
}

#[test]
fn header_and_query_conditions() {
    let m = |h: &str| format!("[{{headers: [{h}]}}]");
    assert_refused(
        &spec(ROUTE, &m("{name: 'bad name', value: x}")),
        "versions[1].matches[0].headers[0].name",
        "not a valid header name",
    );
    let long = format!("{{name: {}, value: x}}", "h".repeat(257));
    assert_refused(
        &spec(ROUTE, &m(&long)),
        "versions[1].matches[0].headers[0].name",
        "not a valid header name",
    );
    assert_refused(
        &spec(ROUTE, &m("{name: x, value: ''}")),
        "versions[1].matches[0].headers[0].value",
        "1-4096",
    );
    let long = format!("{{name: x, value: {}}}", "v".repeat(4097));
    assert_refused(
        &spec(ROUTE, &m(&long)),
        "versions[1].matches[0].headers[0].value",
        "1-4096",
    );
    assert_refused(
        &spec(ROUTE, &m("{name: x, value: a}, {name: X, value: b}")),
        "versions[1].matches[0].headers[1].name",
        "listed twice",
    );
    let long = format!(
        "[{{queryParams: [{{name: q, value: {}}}]}}]",
        "v".repeat(1025)
    );
    assert_refused(
        &spec(ROUTE, &long),
        "versions[1].matches[0].queryParams[0].value",
        "1-1024",
    );
}

#[test]
fn paths_follow_the_crd() {
    for value in ["/a%2", "/a%zz", "a", "/a//b", "/a/../b", "/a#b", "/a b"] {
        assert_refused(
            &spec(
                ROUTE,
                &format!("[{{path: {{value: '{value}'}}, headers: [{{name: x, value: '1'}}]}}]"),
            ),
            "versions[1].matches[0].path.value",
            "not a valid path",
        );
    }
    RouteMapSpec::from_yaml(&spec(
        ROUTE,
        "[{path: {value: '/a%20b'}, headers: [{name: x, value: '1'}]}]",
    ))
    .expect("a percent-encoded space");
}

#[test]
fn every_candidate_match_names_a_header_or_query_parameter() {
    for m in [
        "[{path: {type: RegularExpression, value: /.*}}]",
        "[{path: {type: Exact, value: /a}}]",
        "[{path: {value: /api}}]",
        "[{method: POST}]",
        "[{headers: [{name: x, value: '1'}]}, {path: {value: /b}}]",
    ] {
        let e = error(&spec(ROUTE, m));
        assert!(
            e.contains("needs at least one header or query parameter condition"),
            "{m}: {e}"
        );
    }
    RouteMapSpec::from_yaml(&spec(ROUTE, "[{queryParams: [{name: beta, value: '1'}]}]"))
        .expect("a query parameter distinguishes");
    RouteMapSpec::from_yaml(&spec(
        ROUTE,
        "[{path: {type: RegularExpression, value: /.*}, headers: [{name: x, value: '1'}]}]",
    ))
    .expect("a regex path with a header");
}

#[test]
fn regexes_over_the_program_size_are_refused_with_their_path() {
    let big = format!(
        "[{{headers: [{{name: x, value: '1'}}, {{type: RegularExpression, name: y, value: '[a-z]{{{}}}'}}]}}]",
        MAX_PROGRAM_SIZE
    );
    assert_refused(
        &spec(ROUTE, &big),
        "versions[1].matches[0].headers[1].value",
        "RE2 program size",
    );
    let path =
        "[{path: {type: RegularExpression, value: '(.*){8}'}, headers: [{name: x, value: '1'}]}]";
    assert_refused(
        &spec(ROUTE, path),
        "versions[1].matches[0].path.value",
        "RE2 program size",
    );
    assert_refused(
        &spec(
            ROUTE,
            "[{headers: [{type: RegularExpression, name: y, value: '(a'}]}]",
        ),
        "versions[1].matches[0].headers[0].value",
        "invalid regular expression",
    );
}

#[test]
fn a_routemap_over_its_regex_budget_is_refused_at_the_first_regex_over_it() {
    // 64 matches of one near-limit regex each: a gateway compiles every one.
    let one = "{headers: [{type: RegularExpression, name: y, value: '[a-z]{90}'}]}";
    let matches = format!("[{}]", vec![one; 64].join(", "));
    let e = error(&spec(ROUTE, &matches));
    let size = routing_core::regex::program_size("[a-z]{90}").expect("fits alone");
    let first_over = MAX_ROUTEMAP_PROGRAM_SIZE / size;
    assert_eq!(
        e,
        format!(
            "versions[1].matches[{first_over}].headers[0].value: the routemap's regular expressions add up to an RE2 program size of over {MAX_ROUTEMAP_PROGRAM_SIZE} (the budget of one routemap); use fewer or simpler ones, or Exact matches"
        )
    );
}

#[test]
fn counts_are_bounded_under_every_strategy() {
    let version =
        |i: usize| format!("- {{name: v{i}, resources: [{{gvrShort: svc, name: v{i}}}]}}\n");
    let mut none = format!("strategy: none\nroute: {ROUTE}\nversions:\n");
    for i in 0..18 {
        none.push_str(&version(i));
    }
    assert_refused(&none, "versions", "18 versions; at most 17");
    let resources: Vec<String> = (0..17)
        .map(|i| format!("{{gvrShort: svc, name: r{i}}}"))
        .collect();
    let yaml = format!(
        "strategy: none\nroute: {ROUTE}\nversions:\n- {{name: v0, resources: [{}]}}\n",
        resources.join(", ")
    );
    assert_refused(&yaml, "versions[0].resources", "17 resources; at most 16");
}

#[test]
fn errors_quoting_huge_input_stay_small() {
    // A parser's message quotes the unknown variant or field: 300 KB of it would not fit an
    // Event or the status annotation.
    let huge = "x".repeat(300_000);
    for yaml in [
        spec(ROUTE, MATCHES).replace("strategy: canary", &format!("strategy: {huge}")),
        spec(ROUTE, MATCHES).replace("strategy: canary", &format!("strategy: canary\n{huge}: 1")),
        spec(
            ROUTE,
            &format!("[{{headers: [{{name: x, value: '1'}}], method: {huge}}}]"),
        ),
        spec(
            ROUTE,
            &format!("[{{headers: [{{name: {huge}, value: '1'}}]}}]"),
        ),
        format!("{{\"strategy\": \"{huge}\"}}"),
        format!("strategy: [{huge}"),
    ] {
        let e = error(&yaml);
        assert!(e.len() < 1500, "{} bytes: {}", e.len(), &e[..200]);
    }
    // The parser did quote it: cut, with its length.
    let e = error(&spec(ROUTE, MATCHES).replace("strategy: canary", &format!("strategy: {huge}")));
    assert!(e.contains("bytes in all)"), "{e}");
}
