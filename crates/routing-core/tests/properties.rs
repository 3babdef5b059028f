//! Property tests of the planner's invariants over generated releases.

use proptest::prelude::*;
use routing_core::spec::{
    MatchSpec, ParentRefSpec, PathMatchSpec, PathMatchType, ResourceRef, RouteSettings,
    ValueMatchSpec, VersionSpec,
};
use routing_core::validate::{
    MAX_BACKENDS, MAX_HEADERS_PER_MATCH, MAX_MATCHES_PER_RULE, MAX_MATCHES_TOTAL, MAX_RULES,
};
use routing_core::{
    HttpRoute, Request, RouteMapRef, RouteMapSpec, Strategy as Routing, VersionState, explain, plan,
};

#[derive(Debug, Clone)]
struct Case {
    spec: RouteMapSpec,
    states: Vec<VersionState>,
}

fn owner() -> RouteMapRef {
    RouteMapRef {
        namespace: "test".into(),
        name: "app-routemap".into(),
        uid: "uid".into(),
    }
}

/// Candidate `i` matches on its own header `x-cand-<i>: yes`, under `/` or `/api`.
fn candidate_match(i: usize, api: bool) -> MatchSpec {
    MatchSpec {
        path: api.then(|| PathMatchSpec {
            kind: Some(PathMatchType::PathPrefix),
            value: Some("/api".into()),
        }),
        headers: vec![ValueMatchSpec {
            kind: None,
            name: format!("x-cand-{i}"),
            value: "yes".into(),
        }],
        ..Default::default()
    }
}

fn case() -> impl Strategy<Value = Case> {
    let version = (
        any::<bool>(),
        proptest::option::of(0u32..=100),
        proptest::option::of(0u32..=100),
        any::<bool>(),
    );
    (
        prop_oneof![
            Just(Routing::Canary),
            Just(Routing::BlueGreen),
            Just(Routing::Mirror)
        ],
        proptest::collection::vec(version, 1..=8),
    )
        .prop_map(|(strategy, vs)| {
            let versions = vs
                .iter()
                .enumerate()
                .map(|(i, (_, weight, _, api))| VersionSpec {
                    name: format!("app-{i}"),
                    port: 8080,
                    resources: vec![ResourceRef {
                        gvr_short: "deploy".into(),
                        name: format!("app-{i}"),
                        namespace: None,
                    }],
                    weight: *weight,
                    matches: (strategy == Routing::Canary && i > 0)
                        .then(|| vec![candidate_match(i, *api)]),
                })
                .collect();
            let states = vs
                .iter()
                .map(|(available, _, over, _)| VersionState {
                    available: *available,
                    weight_override: *over,
                    ..Default::default()
                })
                .collect();
            Case {
                spec: RouteMapSpec {
                    strategy,
                    route: RouteSettings {
                        name: "app".into(),
                        parent_refs: vec![ParentRefSpec {
                            group: Some(String::new()),
                            kind: Some("Service".into()),
                            namespace: None,
                            name: "app".into(),
                            section_name: None,
                            port: Some(80),
                        }],
                        hostnames: vec![],
                    },
                    versions,
                    guard: None,
                    regexes: Default::default(),
                },
                states,
            }
        })
}

fn planned(c: &Case) -> routing_core::HttpRoute {
    plan(&owner(), &c.spec, &c.states)
        .expect("generated specs are valid")
        .expect("these strategies write a route")
}

proptest! {
    #[test]
    fn no_rule_backend_or_mirror_for_an_unavailable_candidate(c in case()) {
        let route = planned(&c);
        for (i, (v, s)) in c.spec.versions.iter().zip(&c.states).enumerate().skip(1) {
            if s.available { continue; }
            prop_assert!(route.backends().all(|b| b.name != v.name), "backend for unavailable {}", i);
            let mirrored = route.spec.rules.iter().flat_map(|r| &r.filters)
                .filter_map(|f| f.request_mirror.as_ref())
                .any(|m| m.backend_ref.name == v.name);
            prop_assert!(!mirrored, "mirror to unavailable {}", i);
        }
    }

    #[test]
    fn default_traffic_always_has_a_backend(c in case()) {
        let route = planned(&c);
        let e = explain(&route, &Request::get("/some/path"));
        prop_assert!(e.is_some_and(|e| !e.backends.is_empty()));
    }

    #[test]
    fn no_rule_has_only_zero_weights(c in case()) {
        for rule in &planned(&c).spec.rules {
            prop_assert!(rule.backend_refs.iter().any(|b| b.weight > 0));
        }
    }

    #[test]
    fn output_stays_within_gateway_api_limits(c in case()) {
        let route = planned(&c);
        let rules = &route.spec.rules;
        prop_assert!(!rules.is_empty() && rules.len() <= MAX_RULES);
        prop_assert!(rules.iter().map(|r| r.matches.len()).sum::<usize>() <= MAX_MATCHES_TOTAL);
        for r in rules {
            prop_assert!(!r.matches.is_empty() && r.matches.len() <= MAX_MATCHES_PER_RULE);
            prop_assert!(!r.backend_refs.is_empty() && r.backend_refs.len() <= MAX_BACKENDS);
            prop_assert!(r.filters.len() <= 16);
            for m in &r.matches {
                prop_assert!(m.headers.len() <= MAX_HEADERS_PER_MATCH);
            }
        }
    }

    #[test]
    fn planned_route_reads_back_from_its_json_and_yaml_unchanged(c in case()) {
        // Canonical output: what the API server stores and returns (JSON) and what
        // iter8-render prints (YAML) parse back to the same route and the same bytes, so
        // comparing a live route with a planned one never sees a difference that is not there.
        let route = planned(&c);
        let json = serde_json::to_string(&route.to_json()).expect("json");
        let from_json: HttpRoute = serde_json::from_str(&json).expect("reads back");
        prop_assert_eq!(&from_json, &route);
        let yaml = route.to_yaml();
        let from_yaml: HttpRoute = serde_saphyr::from_str(&yaml).expect("reads back");
        prop_assert_eq!(from_yaml.to_yaml(), yaml);
    }

    #[test]
    fn candidate_headers_reach_the_candidate_only_when_available(c in case(), pick in any::<prop::sample::Index>()) {
        prop_assume!(c.spec.strategy == Routing::Canary && c.spec.versions.len() > 1);
        let i = 1 + pick.index(c.spec.versions.len() - 1);
        let route = planned(&c);
        let under_api = c.spec.versions[i].matches.as_ref().and_then(|m| m[0].path.as_ref()).is_some();
        let path = if under_api { "/api/items" } else { "/items" };
        let req = Request::get(path).header(&format!("X-Cand-{i}"), "yes");
        let e = explain(&route, &req).expect("the catch-all matches");
        let want = if c.states[i].available { format!("app-{i}") } else { "app-0".to_string() };
        prop_assert_eq!(&e.backends[0].backend, &want);
        prop_assert_eq!(e.backends[0].app_version.as_deref(), Some(want.as_str()));
    }

    #[test]
    fn spec_yaml_round_trips(c in case()) {
        let text = c.spec.to_yaml();
        prop_assert_eq!(RouteMapSpec::from_yaml(&text).expect("parses"), c.spec);
    }

    #[test]
    fn spec_as_json_reads_the_same_as_yaml(c in case()) {
        // The JSON fast path (the chart writes specs as JSON) must agree with the YAML parse,
        // compact or indented, and with the same text read through a YAML-only layout.
        let compact = serde_json::to_string(&c.spec).expect("json");
        let pretty = serde_json::to_string_pretty(&c.spec).expect("json");
        prop_assert_eq!(RouteMapSpec::from_yaml(&compact).expect("parses"), c.spec.clone());
        prop_assert_eq!(RouteMapSpec::from_yaml(&pretty).expect("parses"), c.spec.clone());
        // A YAML document that only starts with a line break takes the YAML path.
        prop_assert_eq!(RouteMapSpec::from_yaml(&format!("# spec\n{compact}")).expect("parses"), c.spec);
    }
}

/// A spec written as JSON that JSON rejects is reported by the YAML parse, so the message is
/// the same as for the spec written in YAML.
#[test]
fn invalid_json_spec_reports_what_the_yaml_parse_says() {
    let base = r#""route":{"name":"app","parentRefs":[{"kind":"Service","name":"app"}]},"versions":[{"name":"app-0","resources":[]}]"#;
    for (json, yaml) in [
        (
            format!(r#"{{"strategy":"canary","bogus":1,{base}}}"#),
            "strategy: canary\nbogus: 1\nroute: {name: app, parentRefs: [{kind: Service, name: app}]}\nversions: [{name: app-0, resources: []}]\n".to_string(),
        ),
        (
            format!(r#"{{"strategy":"canary","strategy":"none",{base}}}"#),
            "strategy: canary\nstrategy: none\nroute: {name: app, parentRefs: [{kind: Service, name: app}]}\nversions: [{name: app-0, resources: []}]\n".to_string(),
        ),
        (
            format!(r#"{{"strategy":"sideways",{base}}}"#),
            "strategy: sideways\nroute: {name: app, parentRefs: [{kind: Service, name: app}]}\nversions: [{name: app-0, resources: []}]\n".to_string(),
        ),
    ] {
        let from_json = RouteMapSpec::from_yaml(&json).expect_err("invalid").to_string();
        let from_yaml = RouteMapSpec::from_yaml(&yaml).expect_err("invalid").to_string();
        // The same message; only a syntax error's line and column follow the layout.
        let unplaced = |s: &str| match s.find("line ") {
            Some(at) => match s[at..].find(": ") {
                Some(end) => format!("{}{}", &s[..at], &s[at + end + 2..]),
                None => s.to_string(),
            },
            None => s.to_string(),
        };
        assert_eq!(unplaced(&from_json), unplaced(&from_yaml));
    }
}
