//! A routemap's `guard`: parsed strictly with the rest of the spec, defaults filled in, and
//! every mistake refused with its field path, so the controller never judges from a bad guard.

use std::time::Duration;

use routing_core::RouteMapSpec;
use routing_core::guard::MetricsPreset;

/// A valid canary spec with `strategy` and a `guard` block (YAML flow mapping).
fn spec_with(strategy: &str, guard: &str) -> String {
    format!(
        "strategy: {strategy}\nroute: {{name: r, parentRefs: [{{name: gw}}]}}\nversions:\n- {{name: v0, resources: [{{gvrShort: svc, name: v0}}]}}\n- {{name: v1, resources: [{{gvrShort: svc, name: v1}}]{}}}\nguard: {guard}\n",
        if strategy == "canary" {
            ", matches: [{headers: [{name: traffic, value: test}]}]"
        } else {
            ""
        }
    )
}

fn spec(guard: &str) -> String {
    spec_with("canary", guard)
}

const OBJECTIVES: &str = "objectives: {errorRate: 0.01, latencyP99: 500ms}";

fn error(yaml: &str) -> String {
    RouteMapSpec::from_yaml(yaml)
        .expect_err("invalid")
        .to_string()
}

#[track_caller]
fn assert_refused(guard: &str, want: &str) {
    let e = error(&spec(guard));
    assert!(e.starts_with(want), "want {want}...\n got {e}");
}

#[test]
fn a_minimal_guard_gets_the_documented_defaults() {
    let s = RouteMapSpec::from_yaml(&spec("{metrics: envoy, objectives: {errorRate: 0.01}}"))
        .expect("valid");
    let g = s.guard.expect("a guard");
    assert_eq!(g.interval.get(), Duration::from_secs(10));
    assert_eq!(g.window.get(), Duration::from_secs(60));
    assert_eq!(g.min_requests, 20);
    assert_eq!(g.fail_after, 2);
    assert!(!g.unknown_fails);
    assert_eq!(g.prometheus, None);
    assert_eq!(g.metrics, MetricsPreset::Envoy);
}

#[test]
fn every_field_is_read() {
    let s = RouteMapSpec::from_yaml(&spec(&format!(
        "{{prometheus: 'http://prometheus.monitoring:9090', interval: 5s, window: 1m30s, minRequests: 0, failAfter: 3, unknownFails: true, {OBJECTIVES}, metrics: istio}}"
    )))
    .expect("valid");
    let g = s.guard.expect("a guard");
    assert_eq!(g.window.get(), Duration::from_secs(90));
    assert_eq!(
        g.objectives.latency_p99.map(|d| d.get()),
        Some(Duration::from_millis(500))
    );
    assert_eq!(g.objectives.error_rate.map(|r| r.0), Some(0.01));
    assert!(g.unknown_fails);
    // Serialized back as the user wrote it (durations as text).
    let yaml = RouteMapSpec::from_yaml(&spec(&format!("{{{OBJECTIVES}, metrics: envoy}}")))
        .expect("valid")
        .to_yaml();
    assert!(yaml.contains("latencyP99: 500ms"), "{yaml}");
    assert!(yaml.contains("window: 1m"), "{yaml}");
}

#[test]
fn a_spec_without_guard_serializes_without_one() {
    let yaml = spec("{metrics: envoy, objectives: {errorRate: 0.01}}");
    let without = yaml.split("guard:").next().expect("text");
    let s = RouteMapSpec::from_yaml(without).expect("valid");
    assert!(s.guard.is_none());
    assert!(!s.to_yaml().contains("guard"));
}

#[test]
fn durations_that_are_not_durations_name_their_field() {
    assert_refused(
        &format!("{{interval: 10x, metrics: envoy, {OBJECTIVES}}}"),
        "guard.interval: \"10x\" is not a duration (e.g. 10s, 1m",
    );
    assert_refused(
        "{metrics: envoy, objectives: {latencyP99: 1.5s}}",
        "guard.objectives.latencyP99: \"1.5s\" is not a duration",
    );
    assert_refused(
        &format!("{{window: 60, metrics: envoy, {OBJECTIVES}}}"),
        "guard.window: invalid type: integer `60`, expected a duration such as 10s",
    );
}

#[test]
fn bounds_are_enforced() {
    for (fields, want) in [
        (
            "interval: 500ms",
            "guard.interval: 500ms is out of range 1s-10m",
        ),
        (
            "interval: 11m, window: 1h",
            "guard.interval: 11m is out of range 1s-10m",
        ),
        (
            "window: 5s, interval: 1s",
            "guard.window: 5s is out of range 10s-1h",
        ),
        ("window: 2h", "guard.window: 2h is out of range 10s-1h"),
        (
            "interval: 2m, window: 1m",
            "guard.window: 1m is shorter than guard.interval 2m",
        ),
        ("failAfter: 0", "guard.failAfter: 0 is out of range 1-100"),
        (
            "failAfter: 101",
            "guard.failAfter: 101 is out of range 1-100",
        ),
        (
            "minRequests: 2000000000",
            "guard.minRequests: 2000000000 is out of range 0-1000000000",
        ),
        (
            "prometheus: 'prometheus:9090'",
            "guard.prometheus: \"prometheus:9090\" is not a Prometheus base URL",
        ),
        (
            "prometheus: 'http://p:9090/?x=1'",
            "guard.prometheus: \"http://p:9090/?x=1\" is not a Prometheus base URL",
        ),
    ] {
        assert_refused(&format!("{{{fields}, metrics: envoy, {OBJECTIVES}}}"), want);
    }
    assert_refused(
        "{metrics: envoy, objectives: {errorRate: 1.5}}",
        "guard.objectives.errorRate: 1.5 is out of range 0-1",
    );
    assert_refused(
        "{metrics: envoy, objectives: {errorRate: -0.1}}",
        "guard.objectives.errorRate: -0.1 is out of range 0-1",
    );
    assert_refused(
        "{metrics: envoy, objectives: {latencyP99: 0s}}",
        "guard.objectives.latencyP99: 0s is out of range 1ms-10m",
    );
    RouteMapSpec::from_yaml(&spec(
        "{prometheus: 'https://prom.example.com/prometheus', metrics: envoy, objectives: {errorRate: 0}}",
    ))
    .expect("a path prefix, and a limit of 0 (no 5xx at all)");
}

#[test]
fn at_least_one_objective() {
    assert_refused(
        "{metrics: envoy, objectives: {}}",
        "guard.objectives: needs at least one objective",
    );
    assert_refused("{metrics: envoy}", "guard: missing field `objectives`");
}

#[test]
fn unknown_fields_and_presets_are_errors() {
    assert_refused(
        &format!("{{metrics: envoy, {OBJECTIVES}, threshold: 3}}"),
        "guard.threshold: unknown field `threshold`",
    );
    assert_refused(
        "{metrics: envoy, objectives: {errorRate: 0.01, successRate: 0.99}}",
        "guard.objectives.successRate: unknown field `successRate`",
    );
    assert_refused(
        &format!("{{metrics: nginx, {OBJECTIVES}}}"),
        "guard.metrics: unknown variant `nginx`",
    );
}

#[test]
fn only_strategies_with_a_route_take_a_guard() {
    let guard = format!("{{metrics: envoy, {OBJECTIVES}}}");
    for strategy in ["canary", "blue-green", "mirror"] {
        RouteMapSpec::from_yaml(&spec_with(strategy, &guard)).expect(strategy);
    }
    let e = error(&spec_with("none", &guard));
    assert!(
        e.starts_with("guard: only with strategy canary, blue-green or mirror"),
        "{e}"
    );
}

#[test]
fn custom_queries_only_with_metrics_custom_and_complete() {
    let q = |queries: &str, objectives: &str| {
        format!("{{metrics: custom, objectives: {objectives}, queries: {queries}}}")
    };
    let requests = "requests: 'sum(increase(rq_total{svc=\"{{ service }}\"}[{{ window }}]))'";
    RouteMapSpec::from_yaml(&spec(&q(
        &format!("{{{requests}, errorRate: 'x{{{{namespace}}}}', latencyP99: 'y{{{{ port }}}}{{{{deployment}}}}{{{{version}}}}'}}"),
        "{errorRate: 0.01, latencyP99: 1s}",
    )))
    .expect("every variable, spaces or not");
    assert_refused(
        &format!("{{metrics: envoy, {OBJECTIVES}, queries: {{{requests}}}}}"),
        "guard.queries: only with metrics: custom",
    );
    assert_refused(
        &format!("{{metrics: custom, {OBJECTIVES}}}"),
        "guard.queries: metrics: custom needs queries",
    );
    assert_refused(
        &q("{errorRate: x}", "{errorRate: 0.01}"),
        "guard.queries.requests: is required",
    );
    assert_refused(
        &q(&format!("{{{requests}}}"), "{errorRate: 0.01}"),
        "guard.queries.errorRate: is required: objectives.errorRate is set",
    );
    assert_refused(
        &q(
            &format!("{{{requests}, errorRate: x, latencyP99: y}}"),
            "{errorRate: 0.01}",
        ),
        "guard.queries.latencyP99: objectives.latencyP99 is not set",
    );
    assert_refused(
        &q(
            &format!("{{{requests}, errorRate: 'rate(x{{pod=\"{{{{ pod }}}}\"}}[1m])'}}"),
            "{errorRate: 0.01}",
        ),
        "guard.queries.errorRate: unknown variable {{ pod }} (known: namespace, service, version, deployment, port, window)",
    );
    assert_refused(
        &q(
            &format!("{{{requests}, errorRate: 'x{{{{ window'}}"),
            "{errorRate: 0.01}",
        ),
        "guard.queries.errorRate: \"{{\" without its closing \"}}\"",
    );
    assert_refused(
        &q(
            &format!("{{{requests}, errorRate: 'x', p50: y}}"),
            "{errorRate: 0.01}",
        ),
        "guard.queries.p50: unknown field `p50`",
    );
}

#[test]
fn a_json_spec_as_the_chart_writes_it_reads_the_same() {
    let json = r#"{"strategy":"canary","route":{"name":"r","parentRefs":[{"name":"gw"}]},"versions":[{"name":"v0","resources":[{"gvrShort":"svc","name":"v0"}]},{"name":"v1","resources":[{"gvrShort":"svc","name":"v1"}],"matches":[{"headers":[{"name":"t","value":"x"}]}]}],"guard":{"interval":"5s","metrics":"envoy","objectives":{"errorRate":0.01}}}"#;
    let s = RouteMapSpec::from_yaml(json).expect("valid JSON");
    assert_eq!(
        s.guard.map(|g| g.interval.get()),
        Some(Duration::from_secs(5))
    );
    // A mistake gets the same words whichever way the spec is written.
    let e = error(&json.replace("\"5s\"", "\"10x\""));
    assert!(
        e.starts_with("guard.interval: \"10x\" is not a duration"),
        "{e}"
    );
}
