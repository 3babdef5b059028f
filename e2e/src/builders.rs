//! Objects as the release chart and a kube-controller-manager would make them, shared by the
//! e2e tests (Deployment status) and the scale fleet (whole two-version canary releases).

use routing_core::ResourceFacts;
use serde_json::{Value, json};

/// Name of scale release `i`'s app: route `app{i}`, routemap `app{i}-routemap`, versions
/// `app{i}-0` and `app{i}-1`.
pub fn app(i: usize) -> String {
    format!("app{i}")
}

/// The routemap ConfigMap of scale release `i`, as `charts/release` renders a two-version canary.
pub fn routemap(ns: &str, i: usize) -> Value {
    routemap_with_spec(ns, i, test_builders::chart_canary_spec(&app(i), ns))
}

/// [`routemap`] with `guard` in its spec, as the release chart copies `application.guard`
/// into it unchanged.
pub fn guarded_routemap(ns: &str, i: usize, guard: &Value) -> Value {
    let mut spec = test_builders::chart_canary_spec(&app(i), ns);
    spec["guard"] = guard.clone();
    routemap_with_spec(ns, i, spec)
}

fn routemap_with_spec(ns: &str, i: usize, spec: Value) -> Value {
    let app = app(i);
    // One line of JSON, keys sorted, as the chart's `toJson` writes it.
    let spec = format!("{spec}\n");
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": format!("{app}-routemap"), "namespace": ns,
            "labels": {
                "app.kubernetes.io/managed-by": "iter8",
                "iter8.tools/kind": "routemap",
                "iter8.tools/version": "v2",
            },
        },
        "data": {"routemap.yaml": spec},
    })
}

/// Service `app{i}-{v}` with the watch label.
pub fn service(ns: &str, i: usize, v: usize) -> Value {
    let name = format!("{}-{v}", app(i));
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": {"iter8.tools/watch": "true", "app.kubernetes.io/name": app(i)}},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP", "name": "http"}]},
    })
}

/// Deployment `app{i}-{v}` with the watch label (no status: see [`deployment_status`]).
pub fn deployment(ns: &str, i: usize, v: usize) -> Value {
    let name = format!("{}-{v}", app(i));
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"iter8.tools/watch": "true", "app.kubernetes.io/name": app(i)}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "kennethreitz/httpbin", "ports": [{"containerPort": 80}]}]},
            },
        },
    })
}

/// A Deployment status as a kube-controller-manager writes it once generation `generation` has
/// rolled out: `Available` = `available` (`message` varies it without changing readiness).
/// There is no controller-manager here, so the tests write it through `/status`.
pub fn deployment_status(available: bool, generation: i64, message: &str) -> Value {
    let n = i32::from(available);
    json!({"status": {
        "observedGeneration": generation,
        "replicas": 1, "updatedReplicas": 1, "readyReplicas": n, "availableReplicas": n,
        "conditions": [{
            "type": "Available",
            "status": if available { "True" } else { "False" },
            "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
            "message": message,
        }],
    }})
}

/// Facts of a watched Service (`deploy` false) or Deployment as the controller sees them.
pub fn facts(available: bool, deploy: bool) -> ResourceFacts {
    let mut obj = json!({"metadata": {"generation": 1, "labels": {"iter8.tools/watch": "true"}}});
    if deploy {
        obj["status"] = deployment_status(available, 1, "")["status"].clone();
    }
    ResourceFacts::from_json(&obj)
}
