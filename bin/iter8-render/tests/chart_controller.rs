//! The controller chart (`charts/controller`) with real helm: `helm lint --strict`, its RBAC,
//! Deployment and configuration (read back by the controller's own config parser), and bad
//! values rejected with a clear message.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{CONTROLLER_CASES, assert_rejected, case, documents, find, lint, render};

#[test]
fn lint_strict_controller_chart() {
    for c in CONTROLLER_CASES {
        lint("controller", c.namespace, c.values);
    }
}

// ---------------------------------------------------------------------------------------------
// Controller chart semantics

fn controller_docs(name: &str) -> Vec<Value> {
    documents(&render(case(name)))
}

/// One permission: API group, resource, verb.
type Grant = (String, String, String);

/// The grants of a Role or ClusterRole, each once (a grant given twice fails the test: the
/// rules must read as one list of distinct permissions).
fn grants(role: &Value) -> BTreeSet<Grant> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut grants = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let groups = strings(&rule["apiGroups"]);
        assert_eq!(groups.len(), 1, "one API group per rule: {rule}");
        assert!(rule.get("nonResourceURLs").is_none(), "{rule}");
        let names = strings(&rule["resourceNames"]);
        for resource in strings(&rule["resources"]) {
            for verb in strings(&rule["verbs"]) {
                let verb = if names.is_empty() {
                    verb
                } else {
                    format!("{verb}[{}]", names.join(","))
                };
                let grant = (groups[0].clone(), resource.clone(), verb);
                assert!(grants.insert(grant.clone()), "{grant:?} granted twice");
            }
        }
    }
    grants
}

/// `group/resource` may `verbs`.
fn grant(group: &str, resource: &str, verbs: &[&str]) -> Vec<Grant> {
    verbs
        .iter()
        .map(|v| (group.to_string(), resource.to_string(), v.to_string()))
        .collect()
}

/// Every grant is one the controller uses: the expected rules below list the API calls in
/// `crates/k8s-adapter` (and the Lease library it drives), one comment per rule naming the
/// call. A grant no code uses, or a call with no grant, fails here.
#[test]
fn controller_rbac_is_least_privilege() {
    for (name, role_kind, binding_kind, extra_type) in [
        (
            "controller-namespace-scoped",
            "Role",
            "RoleBinding",
            // The chart's default KServe type.
            ("serving.kserve.io", "inferenceservices"),
        ),
        (
            "controller-cluster-scoped",
            "ClusterRole",
            "ClusterRoleBinding",
            // The values replace KServe with a Knative type.
            ("serving.knative.dev", "services"),
        ),
    ] {
        let docs = controller_docs(name);
        let role = find(&docs, role_kind, "iter8");
        let binding = find(&docs, binding_kind, "iter8");
        assert_eq!(binding["roleRef"]["kind"], role_kind);
        assert_eq!(binding["roleRef"]["name"], "iter8");
        assert_eq!(binding["subjects"][0]["name"], "iter8");
        assert_eq!(binding["subjects"][0]["namespace"], "iter8-system");

        let expected: BTreeSet<Grant> = [
            // watch.rs `spawn_watches`: one watch (an initial list, then watch) per configured
            // resource type, labelled `iter8.tools/watch=true`; `svc` and `service` share one.
            grant("", "services", &["list", "watch"]),
            // watch.rs `spawn_watches`: EndpointSlices (`kubernetes.io/service-name`), whose
            // ready endpoints refine the readiness of the `svc` type (`endpointSlices: true`).
            grant("discovery.k8s.io", "endpointslices", &["list", "watch"]),
            grant("apps", "deployments", &["list", "watch"]),
            grant(extra_type.0, extra_type.1, &["list", "watch"]),
            // watch.rs `spawn_watches`: the routemap ConfigMaps (`iter8.tools/kind=routemap`),
            // also the `cm` type. No write verb on any ConfigMap: the status is an annotation
            // on our own route (status.rs).
            grant("", "configmaps", &["list", "watch"]),
            // watch.rs `spawn_watches`: the HTTPRoutes we own, for drift repair; writer.rs
            // `look`: a GET of a route name before its first create (a foreign route is never
            // written); writer.rs `apply` and status.rs `StatusWriter::publish` (the status
            // annotation): server-side apply (PATCH), which the API server also authorizes as
            // `create` when the route does not exist yet (the first write of every route);
            // writer.rs `delete`: a route its routemap no longer writes after a rename.
            grant(
                "gateway.networking.k8s.io",
                "httproutes",
                &["get", "list", "watch", "patch", "create", "delete"],
            ),
            // status.rs `StatusWriter::publish`: one new core/v1 Event per decision (POST).
            grant("", "events", &["create"]),
        ]
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(grants(role), expected, "{name}: {role_kind} iter8");

        // Leases: always a namespaced Role in the controller's namespace, whatever the scope.
        let lease_role = find(&docs, "Role", "iter8-leader-election");
        assert_eq!(lease_role["metadata"]["namespace"], "iter8-system");
        let lease_grants: BTreeSet<Grant> =
            // leader.rs `Election::start`: reads the Lease (GET), creates it when it is missing
            // (POST: RBAC cannot limit a create by name), takes, renews and releases it (PATCH),
            // watches it for a release (WATCH, field selector on its name); get, patch and watch
            // name the one Lease.
            grant(
                "coordination.k8s.io",
                "leases",
                &[
                    "get[iter8-controller-leader]",
                    "patch[iter8-controller-leader]",
                    "watch[iter8-controller-leader]",
                    "create",
                ],
            )
            .into_iter()
            .collect();
        assert_eq!(
            grants(lease_role),
            lease_grants,
            "{name}: Role iter8-leader-election"
        );
        let lease_binding = find(&docs, "RoleBinding", "iter8-leader-election");
        assert_eq!(lease_binding["roleRef"]["name"], "iter8-leader-election");
        assert_eq!(lease_binding["subjects"][0]["name"], "iter8");
    }
}

#[test]
fn controller_deployment_and_config() {
    for (name, cluster_scoped, replicas) in [
        ("controller-namespace-scoped", false, 1),
        ("controller-cluster-scoped", true, 2),
    ] {
        let docs = controller_docs(name);
        let deploy = find(&docs, "Deployment", "iter8");
        assert_eq!(deploy["spec"]["replicas"], replicas);
        let pod = &deploy["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let c = &pod["containers"][0];
        assert_eq!(c["name"], "iter8-controller");
        assert_eq!(
            c["args"],
            serde_json::json!(["--config", "/config/config.yaml"])
        );
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["ports"][0]["containerPort"], 8080);
        let env: Vec<(&str, &str)> = c["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default(),
                    e["valueFrom"]["fieldRef"]["fieldPath"]
                        .as_str()
                        .unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            env,
            [
                ("POD_NAME", "metadata.name"),
                ("POD_NAMESPACE", "metadata.namespace")
            ]
        );
        assert_eq!(c["resources"]["requests"]["memory"], "16Mi");
        assert_eq!(c["resources"]["limits"]["memory"], "256Mi");

        let svc = find(&docs, "Service", "iter8");
        assert_eq!(
            svc["metadata"]["annotations"]["prometheus.io/scrape"],
            "true"
        );
        assert_eq!(svc["metadata"]["annotations"]["prometheus.io/port"], "8080");

        let cm = find(&docs, "ConfigMap", "iter8");
        let config: Value =
            serde_saphyr::from_str(cm["data"]["config.yaml"].as_str().expect("config.yaml"))
                .expect("config.yaml parses");
        // The controller's own parser accepts it.
        let parsed = routemap_index::config::Config::from_yaml(
            cm["data"]["config.yaml"].as_str().expect("config.yaml"),
        )
        .unwrap_or_else(|e| panic!("the controller rejects the rendered config: {e}"));
        assert_eq!(parsed.cluster_scoped, cluster_scoped);
        assert_nothing_ignored_but_guard(&parsed);
        let keys: Vec<&str> = config
            .as_object()
            .expect("config is a map")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "adminAddr",
                "allowCrossNamespaceReferences",
                "clusterScoped",
                "defaultResync",
                "endpointSlices",
                "fieldManager",
                "guardQueriesInFlight",
                "logFormat",
                "logLevel",
                "maxWritesInFlight",
                "resourceTypes"
            ]
        );
        assert_eq!(config["clusterScoped"], cluster_scoped);
        // Off by default, whatever the scope: a routemap names resources in its own namespace.
        assert_eq!(config["allowCrossNamespaceReferences"], false);
        assert!(!parsed.allow_cross_namespace_references);
        assert_eq!(parsed.max_writes_in_flight, 16);
        // No default Prometheus unless one is given.
        assert_eq!(config["guardQueriesInFlight"], 8);
        assert!(config.get("guardPrometheus").is_none());
        assert_eq!(config["adminAddr"], "0.0.0.0:8080");
        assert_eq!(config["fieldManager"], "iter8-controller");
        let deploy_type = &config["resourceTypes"]["deploy"];
        assert_eq!(deploy_type["group"], "apps");
        assert_eq!(deploy_type["version"], "v1");
        assert_eq!(deploy_type["resource"], "deployments");
        assert_eq!(deploy_type["kind"], "Deployment");
        assert_eq!(deploy_type["conditions"], serde_json::json!(["Available"]));
        assert_eq!(config["resourceTypes"]["svc"]["group"], "");
        assert_eq!(config["resourceTypes"]["httproute"]["version"], "v1");
        if cluster_scoped {
            assert_eq!(
                config["logLevel"], "warn",
                "Iter8's \"warning\" is normalised"
            );
            assert_eq!(config["logFormat"], "json");
            assert_eq!(config["defaultResync"], "1h");
            assert_eq!(
                config["resourceTypes"]["ksvc"]["group"], "serving.knative.dev",
                "Iter8's capitalised keys are normalised"
            );
            assert!(config["resourceTypes"].get("isvc").is_none());
            find(&docs, "PodDisruptionBudget", "iter8");
        } else {
            assert_eq!(config["logLevel"], "info");
            assert_eq!(config["logFormat"], "text");
            assert_eq!(config["defaultResync"], "15m");
            assert_eq!(
                config["resourceTypes"]["isvc"]["conditions"],
                serde_json::json!(["Ready"])
            );
        }
    }
}

/// The config keys of the guard. The controller's `Config` is getting fields for them
/// (`guard_prometheus`, `guard_queries_in_flight` in crates/routemap-index/src/config.rs);
/// until it has them they land in its `ignored` map. Every other key must be one it reads.
const GUARD_CONFIG_KEYS: [&str; 2] = ["guardPrometheus", "guardQueriesInFlight"];

fn assert_nothing_ignored_but_guard(parsed: &routemap_index::config::Config) {
    let ignored: Vec<&String> = parsed
        .ignored
        .keys()
        .filter(|k| !GUARD_CONFIG_KEYS.contains(&k.as_str()))
        .collect();
    assert!(
        ignored.is_empty(),
        "keys the controller ignores: {ignored:?}"
    );
}

/// `guard.prometheus` and `guard.queriesInFlight` become `guardPrometheus` and
/// `guardQueriesInFlight` in the controller's config; nothing else changes.
#[test]
fn controller_guard_config() {
    let config_of = |docs: &[Value]| -> (String, Value) {
        let text = find(docs, "ConfigMap", "iter8")["data"]["config.yaml"]
            .as_str()
            .expect("config.yaml")
            .to_string();
        let value: Value = serde_saphyr::from_str(&text).expect("config.yaml parses");
        (text, value)
    };
    let (text, config) = config_of(&controller_docs("controller-guard"));
    let parsed = routemap_index::config::Config::from_yaml(&text)
        .unwrap_or_else(|e| panic!("the controller rejects the rendered config: {e}"));
    assert_nothing_ignored_but_guard(&parsed);
    assert_eq!(
        config["guardPrometheus"],
        "http://prometheus.monitoring:9090"
    );
    assert_eq!(config["guardQueriesInFlight"], 32);
    // Once the controller's Config has the guard's fields, it reads the rendered values.
    let read_back = serde_json::to_value(&parsed).expect("the config serializes");
    for key in GUARD_CONFIG_KEYS {
        assert!(
            parsed.ignored.contains_key(key) || read_back[key] == config[key],
            "{key}: the controller reads {} from {}",
            read_back[key],
            config[key]
        );
    }

    // Everything else is the default rendering's.
    let (_, default) = config_of(&controller_docs("controller-namespace-scoped"));
    let strip = |mut c: Value| {
        let map = c.as_object_mut().expect("config is a map");
        for key in GUARD_CONFIG_KEYS {
            map.remove(key);
        }
        c
    };
    assert_eq!(strip(config), strip(default));
}

// ---------------------------------------------------------------------------------------------
// Bad values are rejected with a clear message

#[test]
fn controller_rejects_bad_values() {
    assert_rejected(
        "controller",
        "clusterScope: true\n",
        "Additional property clusterScope is not allowed",
    );
    assert_rejected(
        "controller",
        "clusterScoped: \"yes\"\n",
        "clusterScoped: Invalid type. Expected: boolean, given: string",
    );
    assert_rejected(
        "controller",
        "replicas: two\n",
        "replicas: Invalid type. Expected: integer",
    );
    assert_rejected(
        "controller",
        "logFormat: xml\n",
        "logFormat must be one of the following",
    );
    assert_rejected(
        "controller",
        "maxWritesInFlight: 0\n",
        "maxWritesInFlight: Must be greater than or equal to 1",
    );
    assert_rejected(
        "controller",
        "defaultResync: 1.5h\n",
        "defaultResync: Does not match pattern",
    );
    assert_rejected(
        "controller",
        "resourceTypes:\n  deploy:\n    resources: deployments\n",
        "Additional property resources is not allowed",
    );
    assert_rejected(
        "controller",
        "resourceTypes:\n  sec: {group: \"\", version: v1, resource: secrets, kind: Secret}\n",
        "resourceTypes.sec: Secrets cannot be watched",
    );
    assert_rejected(
        "controller",
        "resourceTypes:\n  ksvc: {group: serving.knative.dev, version: v1}\n",
        "resourceTypes.ksvc: resource is required",
    );
}

#[test]
fn controller_rejects_bad_guard_values() {
    assert_rejected(
        "controller",
        "guard:\n  prometeus: http://prometheus:9090\n",
        "guard: Additional property prometeus is not allowed",
    );
    assert_rejected(
        "controller",
        "guard:\n  prometheus: prometheus.monitoring:9090\n",
        "guard.prometheus: Does not match pattern",
    );
    assert_rejected(
        "controller",
        "guard:\n  prometheus: http://prometheus:9090/api?x=1\n",
        "guard.prometheus: Does not match pattern",
    );
    assert_rejected(
        "controller",
        "guard:\n  prometheus: http://prometheus monitoring:9090\n",
        "guard.prometheus: Does not match pattern",
    );
    assert_rejected(
        "controller",
        "guard:\n  queriesInFlight: 0\n",
        "guard.queriesInFlight: Must be greater than or equal to 1",
    );
    assert_rejected(
        "controller",
        "guard:\n  queriesInFlight: 257\n",
        "guard.queriesInFlight: Must be less than or equal to 256",
    );
    assert_rejected(
        "controller",
        "guard:\n  queriesInFlight: eight\n",
        "guard.queriesInFlight: Invalid type. Expected: integer, given: string",
    );
}
