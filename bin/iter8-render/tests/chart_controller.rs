//! The controller chart (`charts/controller`) with real helm: `helm lint --strict`, its RBAC,
//! Deployment and configuration (read back by the controller's own config parser), and bad
//! values rejected with a clear message.

mod support;

use std::collections::{BTreeMap, BTreeSet};

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

fn rules(doc: &Value) -> Vec<(Vec<String>, Vec<String>, Vec<String>)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    doc["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                strings(&r["apiGroups"]),
                strings(&r["resources"]),
                strings(&r["verbs"]),
            )
        })
        .collect()
}

#[test]
fn controller_rbac_is_least_privilege() {
    for (name, role_kind, binding_kind) in [
        ("controller-namespace-scoped", "Role", "RoleBinding"),
        (
            "controller-cluster-scoped",
            "ClusterRole",
            "ClusterRoleBinding",
        ),
    ] {
        let docs = controller_docs(name);
        let role = find(&docs, role_kind, "iter8");
        let binding = find(&docs, binding_kind, "iter8");
        assert_eq!(binding["roleRef"]["kind"], role_kind);
        assert_eq!(binding["subjects"][0]["name"], "iter8");
        assert_eq!(binding["subjects"][0]["namespace"], "iter8-system");

        let mut verbs: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for (groups, resources, vs) in rules(role) {
            assert_eq!(groups.len(), 1, "one API group per rule");
            for r in resources {
                let entry = verbs.entry((groups[0].clone(), r)).or_default();
                for v in &vs {
                    assert!(entry.insert(v.clone()), "verb {v} granted twice");
                }
            }
        }
        let set = |vs: &[&str]| vs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let key = |g: &str, r: &str| (g.to_string(), r.to_string());
        assert_eq!(verbs[&key("", "services")], set(&["get", "list", "watch"]));
        assert_eq!(
            verbs[&key("apps", "deployments")],
            set(&["get", "list", "watch"])
        );
        assert_eq!(
            verbs[&key("", "configmaps")],
            set(&["get", "list", "watch", "patch"])
        );
        assert_eq!(
            verbs[&key("gateway.networking.k8s.io", "httproutes")],
            set(&["get", "list", "watch", "create", "patch"])
        );
        assert_eq!(verbs[&key("", "events")], set(&["create", "patch"]));
        assert_eq!(
            verbs[&key("events.k8s.io", "events")],
            set(&["create", "patch"])
        );
        for ((g, r), vs) in &verbs {
            assert_ne!(r, "secrets", "nothing on Secrets");
            assert!(
                !vs.contains("delete") && !vs.contains("*"),
                "{g}/{r}: {vs:?}"
            );
            assert!(
                !vs.contains("update"),
                "{g}/{r}: server-side apply needs no update"
            );
        }
        if name == "controller-cluster-scoped" {
            assert!(verbs.contains_key(&key("serving.knative.dev", "services")));
            assert!(!verbs.contains_key(&key("serving.kserve.io", "inferenceservices")));
        } else {
            assert_eq!(
                verbs[&key("serving.kserve.io", "inferenceservices")],
                set(&["get", "list", "watch"])
            );
        }

        // Leases: always a namespaced Role in the controller's namespace.
        let lease_role = find(&docs, "Role", "iter8-leader-election");
        assert_eq!(lease_role["metadata"]["namespace"], "iter8-system");
        assert_eq!(
            rules(lease_role),
            [(
                vec!["coordination.k8s.io".to_string()],
                vec!["leases".to_string()],
                vec![
                    "get".to_string(),
                    "create".to_string(),
                    "update".to_string(),
                    "patch".to_string()
                ]
            )]
        );
        let lease_binding = find(&docs, "RoleBinding", "iter8-leader-election");
        assert_eq!(lease_binding["roleRef"]["name"], "iter8-leader-election");
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
        assert_eq!(c["resources"]["limits"]["memory"], "128Mi");

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
        assert!(
            parsed.ignored.is_empty(),
            "keys the controller ignores: {:?}",
            parsed.ignored
        );
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
                "clusterScoped",
                "defaultResync",
                "fieldManager",
                "logFormat",
                "logLevel",
                "resourceTypes"
            ]
        );
        assert_eq!(config["clusterScoped"], cluster_scoped);
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
