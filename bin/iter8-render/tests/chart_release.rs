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
