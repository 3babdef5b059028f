//! The fast route writer (`iter8_render::yaml`) against `serde-saphyr`, on arbitrary routes:
//! whatever path writes a route, the bytes are the ones `serde-saphyr` writes.

use std::collections::BTreeMap;

use iter8_render::yaml::{is_name_like, to_block_yaml};
use proptest::prelude::*;
use routing_core::HttpRoute;
use routing_core::route::{
    BackendRef, Filter, FilterType, HeaderModifier, HeaderValue, HttpRouteSpec, Match,
    MirrorBackendRef, OwnerReference, ParentRef, PathMatch, RequestMirror, RouteMeta, Rule,
    ValueMatch,
};
use routing_core::spec::{Method, PathMatchType, ValueMatchType};

/// Strings of every kind a route can carry: names, and what needs quoting or folding.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        16 => "[a-z][a-z0-9.-]{0,20}",
        2 => "[A-Za-z/][A-Za-z0-9._/-]{0,70}",
        2 => prop::sample::select(vec![
            "", "true", "False", "yes", "NO", "on", "y", "null", "~", "1", "0x1F", "1.5", "1e3",
            "-", "- x", "a: b", "#x", "x #y", "'q'", "\"q\"", "@x", "`x", "!x", "&x", "*x", "|",
            ">", "%x", "{x}", "[x]", "x,y", "2026-11-26", "12:30", ".inf", ".NaN", "<<", "=",
            " lead", "trail ", "tab\there", "line\nbreak", "é", "日本",
        ]).prop_map(String::from),
        1 => "\\PC{0,12}",
        1 => "[a-z ]{70,100}",
    ]
}

fn value_match() -> impl Strategy<Value = ValueMatch> {
    (any::<bool>(), text(), text()).prop_map(|(exact, name, value)| ValueMatch {
        kind: if exact {
            ValueMatchType::Exact
        } else {
            ValueMatchType::RegularExpression
        },
        name,
        value,
    })
}

fn a_match() -> impl Strategy<Value = Match> {
    (
        text(),
        prop::collection::vec(value_match(), 0..3),
        prop::collection::vec(value_match(), 0..2),
        prop::option::of(prop::sample::select(vec![Method::Get, Method::Post])),
    )
        .prop_map(|(path, headers, query_params, method)| Match {
            path: PathMatch {
                kind: PathMatchType::PathPrefix,
                value: path,
            },
            headers,
            query_params,
            method,
        })
}

fn header_filter() -> impl Strategy<Value = Filter> {
    prop::collection::vec((text(), text()), 0..3).prop_map(|set| Filter {
        kind: FilterType::ResponseHeaderModifier,
        response_header_modifier: Some(HeaderModifier {
            set: set
                .into_iter()
                .map(|(name, value)| HeaderValue { name, value })
                .collect(),
        }),
        request_mirror: None,
    })
}

fn mirror_filter() -> impl Strategy<Value = Filter> {
    (text(), 0u32..=100).prop_map(|(name, percent)| Filter {
        kind: FilterType::RequestMirror,
        response_header_modifier: None,
        request_mirror: Some(RequestMirror {
            backend_ref: MirrorBackendRef {
                group: String::new(),
                kind: "Service".into(),
                name,
                port: 80,
            },
            percent,
        }),
    })
}

fn backend() -> impl Strategy<Value = BackendRef> {
    (
        text(),
        1u32..=65535,
        0u32..=1000,
        prop::collection::vec(header_filter(), 0..2),
    )
        .prop_map(|(name, port, weight, filters)| BackendRef {
            group: String::new(),
            kind: "Service".into(),
            name,
            port,
            weight,
            filters,
        })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::collection::vec(a_match(), 1..3),
        prop::collection::vec(mirror_filter(), 0..2),
        prop::collection::vec(backend(), 1..3),
    )
        .prop_map(|(matches, filters, backend_refs)| Rule {
            matches,
            filters,
            backend_refs,
        })
}

fn route() -> impl Strategy<Value = HttpRoute> {
    (
        (text(), text()),
        prop::collection::btree_map(text(), text(), 0..3),
        any::<bool>(),
        prop::collection::vec(
            (
                text(),
                prop::option::of(text()),
                prop::option::of(1u32..100),
            ),
            1..3,
        ),
        prop::collection::vec(text(), 0..3),
        prop::collection::vec(rule(), 1..3),
    )
        .prop_map(
            |((name, namespace), labels, owned, parents, hostnames, rules)| HttpRoute {
                api_version: "gateway.networking.k8s.io/v1".into(),
                kind: "HTTPRoute".into(),
                metadata: RouteMeta {
                    owner_references: if owned {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "ConfigMap".into(),
                            name: format!("{name}-routemap"),
                            uid: "6f1c2a52-0c1e-4f5e-9d55-1b2f6a0c9e01".into(),
                            controller: true,
                        }]
                    } else {
                        Vec::new()
                    },
                    name,
                    namespace,
                    labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                },
                spec: HttpRouteSpec {
                    parent_refs: parents
                        .into_iter()
                        .map(|(name, section_name, port)| ParentRef {
                            group: String::new(),
                            kind: "Service".into(),
                            namespace: None,
                            name,
                            section_name,
                            port,
                        })
                        .collect(),
                    hostnames,
                    rules,
                },
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_route_is_written_as_saphyr_writes_it(route in route()) {
        let saphyr = serde_saphyr::to_string(&route).expect("saphyr");
        if let Some(fast) = to_block_yaml(&route) {
            prop_assert_eq!(&fast, &saphyr);
        }
        prop_assert_eq!(iter8_render::route_yaml(&route), saphyr);
    }

    #[test]
    fn saphyr_writes_name_like_strings_bare(s in prop_oneof![
        "[A-Za-z/][A-Za-z0-9._/-]{0,70}",
        "[A-Za-z]{1,5}",
        "[A-Za-z/][0-9eEx._/+-]{0,6}",
    ]) {
        // Strings it refuses go through serde-saphyr, whatever they are.
        if is_name_like(&s) {
            prop_assert_eq!(serde_saphyr::to_string(&s).expect("saphyr"), format!("{s}\n"));
            let as_key = BTreeMap::from([(s.clone(), 1)]);
            prop_assert_eq!(serde_saphyr::to_string(&as_key).expect("saphyr"), format!("{s}: 1\n"));
        }
    }
}

/// The routes above exercise the fast writer, not only the fallback: most of them take it.
#[test]
fn most_generated_routes_take_the_fast_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = route();
    let fast = (0..200)
        .filter(|_| {
            let route = strategy.new_tree(&mut runner).expect("route").current();
            to_block_yaml(&route).is_some()
        })
        .count();
    assert!(fast >= 50, "only {fast} of 200 routes took the fast path");
}

/// The special words and shapes `is_name_like` must refuse, whatever their case.
#[test]
fn yaml_words_are_not_name_like() {
    for w in [
        "y", "Y", "n", "yes", "Yes", "NO", "on", "Off", "TRUE", "false", "Null", "nan", "Inf",
    ] {
        assert!(!is_name_like(w), "{w}");
        assert_ne!(
            serde_saphyr::to_string(&w).expect("saphyr"),
            format!("{w}\n"),
            "{w}"
        );
    }
}

/// Routes as the planner writes them (canary with and without an available candidate,
/// blue-green over up to 16 versions) always take the fast writer, and match serde-saphyr.
#[test]
fn planned_routes_are_written_fast_and_as_saphyr_writes_them() {
    use routing_core::{RouteMapRef, RouteMapSpec, VersionState, plan};
    let owner = RouteMapRef {
        namespace: "test".into(),
        name: "app-routemap".into(),
        uid: "uid-1".into(),
    };
    let mut specs = vec![test_builders::canary_spec("app")];
    for n in [1, 2, 5, 16] {
        specs.push(test_builders::blue_green_spec("app", &vec![7; n]));
    }
    for text in specs {
        let spec = RouteMapSpec::from_yaml(&text).expect("valid");
        for available in 0..(1u32 << spec.versions.len().min(4)) {
            let states: Vec<VersionState> = (0..spec.versions.len())
                .map(|i| VersionState {
                    available: i >= 4 || available & (1 << i) != 0,
                    ..Default::default()
                })
                .collect();
            let Some(route) = plan(&owner, &spec, &states).expect("plans") else {
                continue;
            };
            let fast = to_block_yaml(&route);
            assert!(
                fast.is_some(),
                "a planned route fell back:\n{}",
                route.to_yaml()
            );
            assert_eq!(fast, Some(serde_saphyr::to_string(&route).expect("saphyr")));
        }
    }
}
