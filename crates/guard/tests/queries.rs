//! Golden PromQL of every preset and of custom templates, for one candidate: what the guard
//! will ask Prometheus, reviewable as text (`fixtures/guard/queries-*.snap`).
//!
//! Re-bless with `INSTA_UPDATE=always cargo test -p iter8-guard --test queries` and review.

use std::path::Path;

use iter8_guard::{Objective, Target, render_queries};
use routing_core::RouteMapSpec;
use routing_core::guard::GuardSpec;

/// A canary whose candidate has its own port and a Deployment named apart from its Service.
const SPEC: &str = "strategy: canary\nroute: {name: httpbin, parentRefs: [{name: gw}]}\nversions:\n- {name: httpbin-0, resources: [{gvrShort: svc, name: httpbin-0}]}\n- {name: httpbin-1, port: 8080, resources: [{gvrShort: svc, name: httpbin-1}, {gvrShort: deploy, name: httpbin-1-deploy}], matches: [{headers: [{name: traffic, value: test}]}]}\n";

fn guard(yaml: &str) -> GuardSpec {
    RouteMapSpec::from_yaml(&format!("{SPEC}guard: {yaml}\n"))
        .expect("valid")
        .guard
        .map(|g| *g)
        .expect("a guard")
}

/// The candidate of [`SPEC`], as the controller would name it.
fn target() -> Target {
    let spec = RouteMapSpec::from_yaml(SPEC).expect("valid");
    Target::of_version("test", &spec.versions[1])
}

fn rendered(g: &GuardSpec) -> String {
    let q = render_queries(g, &target()).expect("renders");
    let mut out = format!("window: {:?}\nrequests: {}\n", q.window, q.requests);
    for o in &q.objectives {
        out.push_str(&format!(
            "{} (limit {}): {}\n",
            o.objective, o.limit, o.query
        ));
    }
    out
}

fn golden(name: &str, text: String) {
    insta::with_settings!({
        snapshot_path => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/guard"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn the_target_takes_the_version_service_port_and_deployment() {
    let t = target();
    assert_eq!(
        (t.namespace.as_str(), t.service.as_str(), t.version.as_str()),
        ("test", "httpbin-1", "httpbin-1")
    );
    assert_eq!((t.deployment.as_str(), t.port), ("httpbin-1-deploy", 8080));
}

#[test]
fn preset_queries() {
    for preset in ["envoy", "istio", "linkerd"] {
        let g = guard(&format!(
            "{{metrics: {preset}, window: 2m, objectives: {{errorRate: 0.01, latencyP99: 500ms}}}}"
        ));
        golden(&format!("queries-{preset}"), rendered(&g));
    }
}

#[test]
fn custom_queries_fill_every_variable() {
    let g = guard(
        r#"{metrics: custom, window: 1m30s, objectives: {errorRate: 0.05}, queries: {requests: 'sum(increase(http_requests_total{namespace="{{ namespace }}",service="{{service}}",version="{{ version }}"}[{{ window }}]))', errorRate: 'sum(rate(http_requests_total{deployment="{{ deployment }}",port="{{ port }}",code=~"5.."}[{{ window }}])) / sum(rate(http_requests_total{deployment="{{ deployment }}"}[{{ window }}]))'}}"#,
    );
    golden("queries-custom", rendered(&g));
}

#[test]
fn only_the_objectives_set_are_queried_and_limits_are_in_query_units() {
    let g = guard("{metrics: envoy, objectives: {latencyP99: 250ms}}");
    let q = render_queries(&g, &target()).expect("renders");
    let [only] = q.objectives.as_slice() else {
        panic!("one objective: {q:?}")
    };
    assert_eq!(only.objective, Objective::LatencyP99);
    // The queries divide milliseconds by 1000, so the limit is in seconds too.
    assert_eq!(only.limit, 0.25);
}
