//! The release chart (`charts/release`) with real helm: `helm lint --strict`, every rendered
//! routemap parsed by the code the controller runs (`routing-core`, `routemap-index`), and bad
//! values rejected with a clear message.
//!
//! Values files are in `fixtures/charts/values` (`seed-*.yaml` are the seed canary tutorial's
//! three steps, verbatim).

mod support;

use std::collections::BTreeSet;

use routing_core::Strategy;
use support::{
    RELEASE_CASES, assert_rejected, case, documents, find, kind_name, lint, render, routemap,
};

#[test]
fn lint_strict_release_chart() {
    for c in RELEASE_CASES {
        lint("release", c.namespace, c.values);
    }
}

// ---------------------------------------------------------------------------------------------
// Rendered routemaps are what routing-core (the controller) accepts

#[test]
fn seed_tutorial_routemaps_parse() {
    let step = |name: &str| {
        let docs = documents(&render(case(name)));
        let (cm, spec) = routemap(&docs);
        assert_eq!(cm["metadata"]["name"], "httpbin-routemap");
        assert_eq!(cm["metadata"]["namespace"], "test");
        assert_eq!(cm["metadata"]["labels"]["iter8.tools/version"], "v2");
        assert_eq!(
            cm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "iter8"
        );
        assert_eq!(spec.strategy, Strategy::Canary);
        assert_eq!(spec.route.name, "httpbin");
        assert_eq!(spec.route.parent_refs.len(), 1);
        let parent = &spec.route.parent_refs[0];
        assert_eq!(parent.group.as_deref(), Some(""));
        assert_eq!(parent.kind.as_deref(), Some("Service"));
        assert_eq!(parent.name, "httpbin");
        assert_eq!(parent.port, Some(80));
        assert_eq!(
            spec.route.hostnames,
            [
                "httpbin",
                "httpbin.test",
                "httpbin.test.svc",
                "httpbin.test.svc.cluster.local"
            ]
        );
        (docs, spec)
    };

    // Step 1: one version, all traffic to httpbin-0.
    let (docs, spec) = step("release-seed-1-initial");
    let names: Vec<&str> = spec.versions.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["httpbin-0"]);
    let v0 = &spec.versions[0];
    assert_eq!(v0.port, 80);
    assert_eq!(v0.matches, None);
    assert_eq!(v0.weight, None);
    let resources: Vec<(&str, &str, Option<&str>)> = v0
        .resources
        .iter()
        .map(|r| {
            (
                r.gvr_short.as_str(),
                r.name.as_str(),
                r.namespace.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        resources,
        [
            ("svc", "httpbin-0", Some("test")),
            ("deploy", "httpbin-0", Some("test"))
        ]
    );
    for kind in ["Deployment", "Service"] {
        let obj = find(&docs, kind, "httpbin-0");
        assert_eq!(obj["metadata"]["labels"]["iter8.tools/watch"], "true");
        assert_eq!(obj["metadata"]["labels"]["app.kubernetes.io/version"], "v0");
    }
    assert_eq!(
        find(&docs, "Service", "httpbin")["spec"]["ports"][0]["port"],
        80
    );

    // Step 2: a candidate with the traffic: test header match.
    let (docs, spec) = step("release-seed-2-candidate");
    let names: Vec<&str> = spec.versions.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["httpbin-0", "httpbin-1"]);
    let matches = spec.versions[1]
        .matches
        .as_ref()
        .expect("candidate matches");
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].headers.len(), 1);
    assert_eq!(matches[0].headers[0].name, "traffic");
    assert_eq!(matches[0].headers[0].value, "test");
    assert_eq!(spec.versions[0].matches, None);
    assert_eq!(
        find(&docs, "Deployment", "httpbin-1")["metadata"]["labels"]["app.kubernetes.io/version"],
        "v1"
    );

    // Step 3: promotion; version 0 redefined, the candidate gone.
    let (docs, spec) = step("release-seed-3-promote");
    let names: Vec<&str> = spec.versions.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["httpbin-0"]);
    assert_eq!(
        find(&docs, "Deployment", "httpbin-0")["metadata"]["labels"]["app.kubernetes.io/version"],
        "v1"
    );
    assert!(
        !docs
            .iter()
            .any(|d| d["metadata"]["name"].as_str() == Some("httpbin-1")),
        "the candidate's objects are gone after promotion"
    );
}

#[test]
fn other_release_routemaps_parse() {
    // Blue-green 30/70 with a Gateway: weights, weight ConfigMaps as third resources.
    let docs = documents(&render(case("release-blue-green-30-70")));
    let (_, spec) = routemap(&docs);
    assert_eq!(spec.strategy, Strategy::BlueGreen);
    let weights: Vec<Option<u32>> = spec.versions.iter().map(|v| v.weight).collect();
    assert_eq!(weights, [Some(30), Some(70)]);
    let gateway = &spec.route.parent_refs[1];
    assert_eq!(gateway.group.as_deref(), Some("gateway.networking.k8s.io"));
    assert_eq!(gateway.kind.as_deref(), Some("Gateway"));
    assert_eq!(gateway.name, "my-gateway");
    for (i, w) in [(0, "30"), (1, "70")] {
        let cm_name = format!("httpbin-{i}-weight-config");
        let cm = find(&docs, "ConfigMap", &cm_name);
        assert_eq!(cm["metadata"]["labels"]["iter8.tools/watch"], "true");
        assert_eq!(cm["metadata"]["annotations"]["iter8.tools/weight"], w);
        let third = &spec.versions[i].resources[2];
        assert_eq!(
            (third.gvr_short.as_str(), third.name.as_str()),
            ("cm", cm_name.as_str())
        );
    }

    // Mirror: default 50, explicit 0 stays 0, per-version ports, merged metadata.
    let docs = documents(&render(case("release-mirror")));
    let (_, spec) = routemap(&docs);
    assert_eq!(spec.strategy, Strategy::Mirror);
    let weights: Vec<Option<u32>> = spec.versions.iter().map(|v| v.weight).collect();
    assert_eq!(weights, [Some(50), Some(25), Some(0)]);
    let ports: Vec<u32> = spec.versions.iter().map(|v| v.port).collect();
    assert_eq!(ports, [8080, 8080, 9090]);
    assert_eq!(spec.route.parent_refs[0].port, Some(8080));
    assert_eq!(
        find(&docs, "ConfigMap", "httpbin-2-weight-config")["metadata"]["annotations"]["iter8.tools/weight"],
        "0"
    );
    let v1 = find(&docs, "Deployment", "httpbin-1");
    assert_eq!(
        v1["metadata"]["labels"]["team"], "web-canary",
        "version labels win"
    );
    assert_eq!(v1["metadata"]["annotations"]["owner"], "web@example.com");
    assert_eq!(v1["metadata"]["annotations"]["note"], "mirror candidate");

    // Custom specifications: names and the route port follow the user's objects.
    let docs = documents(&render(case("release-custom-specs")));
    let (cm, spec) = routemap(&docs);
    assert_eq!(cm["metadata"]["name"], "shop-routemap");
    assert_eq!(cm["metadata"]["namespace"], "prod");
    let v0 = &spec.versions[0];
    assert_eq!(v0.name, "shop-stable");
    assert_eq!(
        v0.port, 8000,
        "route port follows the custom Service's spec.ports[0].port"
    );
    let names: Vec<&str> = v0.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["shop-stable", "shop-primary"]);
    assert_eq!(spec.versions[1].name, "shop-next");
    assert_eq!(spec.versions[1].matches.as_ref().map(Vec::len), Some(2));
    let deploy = find(&docs, "Deployment", "shop-primary");
    assert_eq!(
        deploy["metadata"]["labels"]["iter8.tools/watch"], "true",
        "the watch label cannot be overridden"
    );
    assert_eq!(deploy["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(deploy["spec"]["replicas"], 2);

    // Environment deployment: strategy none, no app Service, no weight ConfigMaps.
    let docs = documents(&render(case("release-none-deployment")));
    let (_, spec) = routemap(&docs);
    assert_eq!(spec.strategy, Strategy::None);
    assert_eq!(spec.versions.len(), 2);
    assert!(
        spec.versions
            .iter()
            .all(|v| v.weight.is_none() && v.matches.is_none())
    );
    let kinds: BTreeSet<(String, String)> = docs.iter().map(kind_name).collect();
    assert!(!kinds.contains(&("Service".into(), "httpbin".into())));
}

// ---------------------------------------------------------------------------------------------
// Bad values are rejected with a clear message

/// The seed tutorial's first values, up to the first version's image.
const SEED_HEAD: &str =
    "environment: deployment-gtw\napplication:\n  versions:\n  - image: kennethreitz/httpbin\n";

#[test]
fn release_rejects_bad_values() {
    // Typos: unknown keys at any level.
    assert_rejected(
        "release",
        &format!("{SEED_HEAD}  strategey: canary\n"),
        "Additional property strategey is not allowed",
    );
    assert_rejected(
        "release",
        "environment: deployment-gtw\napplication:\n  versions:\n  - imag: kennethreitz/httpbin\n",
        "Additional property imag is not allowed",
    );
    assert_rejected(
        "release",
        "environment: deployment-gtw\napplication:\n  strategy: canary\n  versions:\n  - image: a\n  - image: b\n    matches:\n    - header:\n      - {name: traffic, value: test}\n",
        "Additional property header is not allowed",
    );
    // Wrong types.
    assert_rejected(
        "release",
        &format!("{SEED_HEAD}  port: eighty\n"),
        "application.port: Invalid type. Expected: integer, given: string",
    );
    assert_rejected(
        "release",
        "environment: deployment-gtw\napplication:\n  strategy: blue-green\n  versions:\n  - image: a\n    weight: \"30\"\n",
        "Invalid type. Expected: integer, given: string",
    );
    // Missing required values.
    assert_rejected(
        "release",
        "application:\n  versions:\n  - image: a\n",
        "environment is required",
    );
    // Unknown environment and strategy name the accepted values.
    assert_rejected(
        "release",
        "environment: deployment-istio\napplication:\n  versions:\n  - image: a\n",
        "environment \"deployment-istio\" is not supported: accepted values are deployment-gtw, deployment",
    );
    assert_rejected(
        "release",
        &format!("{SEED_HEAD}  strategy: bluegreen\n"),
        "application.strategy \"bluegreen\" is not supported: accepted values are none, canary, blue-green, mirror",
    );
    assert_rejected(
        "release",
        "environment: deployment\napplication:\n  strategy: canary\n  versions:\n  - image: a\n",
        "application.strategy \"canary\" is not supported with environment \"deployment\": accepted values are none",
    );
    // A canary candidate without matches would take all traffic.
    assert_rejected(
        "release",
        "environment: deployment-gtw\napplication:\n  strategy: canary\n  versions:\n  - image: a\n  - image: b\n",
        "application.versions[1] (x-1): a canary candidate needs matches",
    );
    assert_rejected(
        "release",
        "environment: deployment-gtw\napplication:\n  strategy: canary\n  versions:\n  - image: a\n  - image: b\n    matches: []\n",
        "application.versions[1] (x-1): a canary candidate needs matches",
    );
    // The primary is the catch-all.
    assert_rejected(
        "release",
        "environment: deployment-gtw\napplication:\n  strategy: canary\n  versions:\n  - image: a\n    matches: [{method: GET}]\n",
        "application.versions[0] (x-0): the primary (version 0) is the catch-all and takes no matches",
    );
    // No image and no deploymentSpecification.
    assert_rejected(
        "release",
        "environment: deployment-gtw\napplication:\n  versions:\n  - port: 80\n",
        "application.versions[0] (x-0): image is required",
    );
    // Mirror weights are percentages.
    assert_rejected(
        "release",
        "environment: deployment-gtw\napplication:\n  strategy: mirror\n  versions:\n  - image: a\n  - image: b\n    weight: 150\n",
        "application.versions[1] (x-1): weight 150 is a mirror percentage",
    );
    // Two versions with one Service name.
    assert_rejected(
        "release",
        "environment: deployment-gtw\napplication:\n  versions:\n  - image: a\n  - image: b\n    metadata: {name: x-0}\n",
        "Service name \"x-0\" is used by application.versions[0] too",
    );
    // A version Service outside the route's namespace cannot be a backend.
    assert_rejected(
        "release",
        "environment: deployment-gtw\napplication:\n  versions:\n  - image: a\n    metadata: {namespace: other}\n",
        "the Service is in namespace \"other\" but the route is in \"test\"",
    );
}

// ---------------------------------------------------------------------------------------------
// The guard: application.guard copied unchanged into the routemap, checked as the controller does

/// `helm template x charts/release -n test` of `values` (YAML on stdin); helm's stdout, or its
/// stderr as the error.
fn render_values(values: &str) -> Result<String, String> {
    let out = support::template_values("release", values);
    if out.status.success() {
        Ok(support::text(&out.stdout))
    } else {
        Err(support::text(&out.stderr))
    }
}

/// The routemap spec of a rendering as raw JSON (what the chart wrote, before any parsing).
fn raw_spec(docs: &[serde_json::Value]) -> serde_json::Value {
    let (cm, _) = routemap(docs);
    serde_json::from_str(cm["data"]["routemap.yaml"].as_str().expect("routemap data"))
        .expect("the routemap is one line of JSON")
}

/// YAML text as JSON values (the values file's view of a block).
fn yaml_value(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Values of a release `x` with two versions under `strategy` and `guard` (a YAML flow map).
fn guarded(strategy: &str, guard: &str) -> String {
    let matches = if strategy == "canary" {
        "\n    matches: [{headers: [{name: traffic, value: test}]}]"
    } else {
        ""
    };
    format!(
        "environment: deployment-gtw\napplication:\n  strategy: {strategy}\n  versions:\n  - image: a\n  - image: b{matches}\n  guard: {guard}\n"
    )
}

#[test]
fn guarded_release_copies_the_guard_unchanged() {
    let docs = documents(&render(case("release-guard-canary")));
    let (_, spec) = routemap(&docs);
    let raw = raw_spec(&docs);

    // The routemap's guard is the values block, key for key and value for value.
    let values_text = std::fs::read_to_string(support::values_file("guard-canary.yaml"))
        .expect("guard-canary.yaml");
    let values = yaml_value(&values_text);
    let block = &values["application"]["guard"];
    assert!(block.is_object(), "the values have a guard block");
    assert_eq!(&raw["guard"], block);
    // And routing-core (which `routemap` ran, validation included) reads it as that block.
    let expected: routing_core::GuardSpec =
        serde_json::from_value(block.clone()).expect("the block is a guard");
    assert_eq!(spec.guard.as_deref(), Some(&expected));
    assert_eq!(expected.fail_after, 3);
    assert!(expected.unknown_fails);
    assert_eq!(expected.window.to_string(), "1m30s");

    // Nothing else changes: the same values without the guard render the same spec otherwise.
    let mut unguarded = raw.clone();
    unguarded
        .as_object_mut()
        .expect("spec is a map")
        .remove("guard");
    let seed_2 = raw_spec(&documents(&render(case("release-seed-2-candidate"))));
    assert_eq!(unguarded, seed_2);
    assert!(seed_2.get("guard").is_none(), "no guard, no guard key");
    let null = raw_spec(&documents(
        &render_values(&guarded("canary", "null")).expect("guard: null renders"),
    ));
    assert!(null.get("guard").is_none(), "guard: null, no guard key");

    // The renderer takes the guarded release: `helm template | iter8-render routes -`.
    let rendered = render(case("release-guard-canary"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_iter8-render"))
        .args(["routes", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn iter8-render");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), rendered.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("run iter8-render");
    let stdout = support::text(&out.stdout);
    assert!(
        out.status.success(),
        "iter8-render routes rejects the guarded release:\n{stdout}\n{}",
        support::text(&out.stderr)
    );
    assert!(stdout.contains("httpbin-1"), "{stdout}");
}

/// Guards at the edges of every bound, with each strategy that takes one and each preset: the
/// chart copies them unchanged (defaults are not filled in), and the controller's parser and
/// validation accept them.
#[test]
fn guards_the_controller_accepts_render() {
    for (strategy, guard) in [
        ("canary", "{metrics: envoy, objectives: {errorRate: 0.01}}"),
        (
            "blue-green",
            "{metrics: istio, interval: 1s, window: 10s, objectives: {errorRate: 0}}",
        ),
        (
            "mirror",
            "{metrics: linkerd, interval: 10m, window: 1h, minRequests: 0, failAfter: 1, objectives: {errorRate: 1, latencyP99: 1ms}}",
        ),
        (
            "canary",
            "{metrics: envoy, interval: 1m30s, window: 1h0m0s, minRequests: 1000000000, failAfter: 100, unknownFails: false, objectives: {latencyP99: 10m}}",
        ),
        (
            "blue-green",
            "{prometheus: 'https://prom.example.com/prometheus', metrics: custom, objectives: {errorRate: 0.05, latencyP99: 250ms}, queries: {requests: 'sum(increase(my_requests_total{svc=\"{{ service }}\"}[{{ window }}]))', errorRate: 'my_error_share{svc=\"{{service}}\",ns=\"{{ namespace }}\"}', latencyP99: 'my_p99_seconds{deploy=\"{{ deployment }}\",port=\"{{ port }}\",v=\"{{ version }}\"}'}}",
        ),
    ] {
        let values = guarded(strategy, guard);
        let rendered = render_values(&values)
            .unwrap_or_else(|e| panic!("helm rejects a valid guard:\n{values}\n{e}"));
        let docs = documents(&rendered);
        let (_, spec) = routemap(&docs);
        assert!(spec.guard.is_some(), "{values}");
        assert_eq!(
            raw_spec(&docs)["guard"],
            yaml_value(guard),
            "copied unchanged: {values}"
        );
    }
}

/// The controller's message for `guard` in a spec: the rendering of `base` (values without a
/// guard) with `guard` added to its routemap, parsed by routing-core.
fn controller_error(base: &str, guard: &str) -> String {
    let rendered = render_values(base).unwrap_or_else(|e| panic!("{e}\n{base}"));
    let mut spec = raw_spec(&documents(&rendered));
    spec.as_object_mut()
        .expect("spec is a map")
        .insert("guard".into(), yaml_value(guard));
    match routing_core::RouteMapSpec::from_yaml(&spec.to_string()) {
        Ok(_) => panic!("the controller accepts guard {guard}"),
        Err(e) => e.to_string(),
    }
}

/// What the schema catches: helm's message names the value; the controller refuses the same
/// guard too.
#[test]
fn release_rejects_bad_guards_by_schema() {
    for (guard, expected) in [
        (
            "{metrics: envoy, interval: 10x, objectives: {errorRate: 0.01}}",
            "application.guard.interval: Does not match pattern",
        ),
        (
            "{metrics: envoy, window: 1.5m, objectives: {errorRate: 0.01}}",
            "application.guard.window: Does not match pattern",
        ),
        (
            "{metrics: envoy, window: 30s1m, objectives: {errorRate: 0.01}}",
            "application.guard.window: Does not match pattern",
        ),
        (
            "{metrics: envoy, objectives: {latencyP99: 1d}}",
            "application.guard.objectives.latencyP99: Does not match pattern",
        ),
        (
            "{metrics: envoy, objectives: {errorRate: 1.5}}",
            "application.guard.objectives.errorRate: Must be less than or equal to 1",
        ),
        (
            "{metrics: envoy, objectives: {errorRate: -0.1}}",
            "application.guard.objectives.errorRate: Must be greater than or equal to 0",
        ),
        (
            "{metrics: prometheus, objectives: {errorRate: 0.01}}",
            "application.guard.metrics must be one of the following: \"envoy\", \"istio\", \"linkerd\", \"custom\"",
        ),
        (
            "{metrics: envoy, failafter: 3, objectives: {errorRate: 0.01}}",
            "application.guard: Additional property failafter is not allowed",
        ),
        (
            "{metrics: envoy, objectives: {errorRate: 0.01, latency: 1s}}",
            "application.guard.objectives: Additional property latency is not allowed",
        ),
        (
            "{metrics: envoy, objectives: {}}",
            "application.guard.objectives: Must have at least 1 properties",
        ),
        (
            "{objectives: {errorRate: 0.01}}",
            "application.guard: metrics is required",
        ),
        (
            "{metrics: envoy, failAfter: 0, objectives: {errorRate: 0.01}}",
            "application.guard.failAfter: Must be greater than or equal to 1",
        ),
        (
            "{metrics: envoy, minRequests: 1000000001, objectives: {errorRate: 0.01}}",
            "application.guard.minRequests: Must be less than or equal to 1e+09",
        ),
        (
            "{metrics: envoy, unknownFails: 'yes', objectives: {errorRate: 0.01}}",
            "application.guard.unknownFails: Invalid type. Expected: boolean, given: string",
        ),
        (
            "{prometheus: 'prometheus.monitoring:9090', metrics: envoy, objectives: {errorRate: 0.01}}",
            "application.guard.prometheus: Does not match pattern",
        ),
        (
            "{prometheus: 'http://prometheus:9090/?x=1', metrics: envoy, objectives: {errorRate: 0.01}}",
            "application.guard.prometheus: Does not match pattern",
        ),
        (
            "{prometheus: 'http://prometheus monitoring:9090', metrics: envoy, objectives: {errorRate: 0.01}}",
            "application.guard.prometheus: Does not match pattern",
        ),
        (
            "{prometheus: 'http://prométheus:9090', metrics: envoy, objectives: {errorRate: 0.01}}",
            "application.guard.prometheus: Does not match pattern",
        ),
        (
            "{prometheus: 'http:///api', metrics: envoy, objectives: {errorRate: 0.01}}",
            "application.guard.prometheus: Does not match pattern",
        ),
    ] {
        assert_rejected("release", &guarded("canary", guard), expected);
        controller_error(&guarded("canary", "null"), guard);
    }
}

/// What the chart's templates catch: the controller's own message, with `guard` named as
/// `application.guard`.
#[test]
fn release_rejects_bad_guards_as_the_controller_does() {
    for (strategy, guard, expected) in [
        (
            "none",
            "{metrics: envoy, objectives: {errorRate: 0.01}}",
            "application.guard: only with strategy canary, blue-green or mirror (strategy none writes no route to withdraw a candidate from); set application.strategy (environment deployment-gtw) or remove application.guard",
        ),
        (
            "canary",
            "{metrics: envoy, interval: 20m, window: 1h, objectives: {errorRate: 0.01}}",
            "application.guard.interval: 20m is out of range 1s-10m",
        ),
        (
            "canary",
            "{metrics: envoy, interval: 500ms, objectives: {errorRate: 0.01}}",
            "application.guard.interval: 500ms is out of range 1s-10m",
        ),
        (
            "blue-green",
            "{metrics: envoy, interval: 5s, window: 5s, objectives: {errorRate: 0.01}}",
            "application.guard.window: 5s is out of range 10s-1h",
        ),
        (
            "mirror",
            "{metrics: envoy, window: 60m1s, objectives: {errorRate: 0.01}}",
            "application.guard.window: 1h1s is out of range 10s-1h",
        ),
        (
            "canary",
            "{metrics: envoy, interval: 1m, window: 30s, objectives: {errorRate: 0.01}}",
            "application.guard.window: 30s is shorter than application.guard.interval 1m: requests between two judgements would go unjudged",
        ),
        (
            "canary",
            "{metrics: envoy, objectives: {latencyP99: 0ms}}",
            "application.guard.objectives.latencyP99: 0s is out of range 1ms-10m",
        ),
        (
            "canary",
            "{metrics: envoy, objectives: {latencyP99: 10m1ms}}",
            "application.guard.objectives.latencyP99: 10m1ms is out of range 1ms-10m",
        ),
        (
            "canary",
            "{metrics: custom, objectives: {errorRate: 0.01}}",
            "application.guard.queries: metrics: custom needs queries (requests, and one per objective)",
        ),
        (
            "canary",
            "{metrics: istio, objectives: {errorRate: 0.01}, queries: {requests: q}}",
            "application.guard.queries: only with metrics: custom (metrics: istio has its own queries)",
        ),
        (
            "canary",
            "{metrics: custom, objectives: {errorRate: 0.01}, queries: {errorRate: q}}",
            "application.guard.queries.requests: is required: it counts the requests in the window (see minRequests)",
        ),
        (
            "canary",
            "{metrics: custom, objectives: {errorRate: 0.01, latencyP99: 1s}, queries: {requests: q, errorRate: q}}",
            "application.guard.queries.latencyP99: is required: objectives.latencyP99 is set",
        ),
        (
            "canary",
            "{metrics: custom, objectives: {latencyP99: 1s}, queries: {requests: q, errorRate: q, latencyP99: q}}",
            "application.guard.queries.errorRate: objectives.errorRate is not set, so nothing would judge this query",
        ),
    ] {
        let values = guarded(strategy, guard);
        assert_rejected("release", &values, expected);
        // The controller says the same of the same guard, naming `guard` where the chart
        // names `application.guard`.
        let core = controller_error(&guarded(strategy, "null"), guard);
        let core = match core.strip_prefix("guard:") {
            Some(rest) => format!("application.guard:{rest}"),
            None => core.replace("guard.", "application.guard."),
        };
        assert!(
            expected.starts_with(&core),
            "the chart's message {expected:?} differs from the controller's {core:?}"
        );
    }
    // Environment deployment has strategy none only, so no guard either.
    assert_rejected(
        "release",
        "environment: deployment\napplication:\n  versions:\n  - image: a\n  guard: {metrics: envoy, objectives: {errorRate: 0.01}}\n",
        "application.guard: only with strategy canary, blue-green or mirror",
    );
}
