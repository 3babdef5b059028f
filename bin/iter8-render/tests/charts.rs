//! Tests of the Helm charts in `charts/` with the real tools: `helm lint --strict`, `helm template`
//! snapshots, strict schema validation of the rendered objects with `kubernetes-validate` for
//! Kubernetes 1.30 and 1.36, rejection of bad values, and parsing of every rendered routemap by
//! `routing-core` (the code the controller runs).
//!
//! The tools come from `scripts/install-tools.sh` (into `$ITER8_TOOLS_DIR`, default
//! `<workspace>/.tools`). A missing tool is a failure, not a skip.
//!
//! Snapshots live in `fixtures/charts/snapshots`; values files in `fixtures/charts/values`
//! (`seed-*.yaml` are the seed canary tutorial's three steps, verbatim).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use routing_core::{RouteMapSpec, Strategy};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Tools and paths

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn tools_dir() -> PathBuf {
    match std::env::var_os("ITER8_TOOLS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => root().join(".tools"),
    }
}

fn tool(name: &str, candidates: &[&str]) -> PathBuf {
    let dir = tools_dir();
    for c in candidates {
        let p = dir.join(c);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} not found in {} (looked for {candidates:?}): run scripts/install-tools.sh",
        dir.display()
    );
}

fn helm_bin() -> PathBuf {
    tool("helm", &["bin/helm"])
}

fn kubernetes_validate_bin() -> PathBuf {
    tool(
        "kubernetes-validate",
        &["bin/kubernetes-validate", "venv/bin/kubernetes-validate"],
    )
}

fn chart(name: &str) -> PathBuf {
    root().join("charts").join(name)
}

fn values_file(name: &str) -> PathBuf {
    root().join("fixtures/charts/values").join(name)
}

/// Runs helm hermetically (its config/cache/data dirs under the test's temp dir), optionally
/// feeding `stdin`.
fn helm(args: &[&str], stdin: Option<&str>) -> Output {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    let mut cmd = Command::new(helm_bin());
    cmd.args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn helm");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("helm stdin")
            .write_all(input.as_bytes())
            .expect("write helm stdin");
    }
    child.wait_with_output().expect("wait for helm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// One rendering: a chart, a release name and namespace, and values files.
#[derive(Debug, Clone, Copy)]
struct Case {
    snapshot: &'static str,
    chart: &'static str,
    release: &'static str,
    namespace: &'static str,
    values: &'static [&'static str],
}

/// A release chart case: release `httpbin` in namespace `test` with one values file.
macro_rules! release_case {
    ($snapshot:literal, $values:literal) => {
        Case {
            snapshot: $snapshot,
            chart: "release",
            release: "httpbin",
            namespace: "test",
            values: &[$values],
        }
    };
}

const RELEASE_CASES: &[Case] = &[
    release_case!("release-seed-1-initial", "seed-1-initial.yaml"),
    release_case!("release-seed-2-candidate", "seed-2-candidate.yaml"),
    release_case!("release-seed-3-promote", "seed-3-promote.yaml"),
    release_case!("release-blue-green-30-70", "blue-green-30-70.yaml"),
    release_case!("release-mirror", "mirror.yaml"),
    release_case!("release-custom-specs", "custom-specs.yaml"),
    release_case!("release-none-deployment", "none-deployment.yaml"),
];

const CONTROLLER_CASES: &[Case] = &[
    Case {
        snapshot: "controller-namespace-scoped",
        chart: "controller",
        release: "iter8",
        namespace: "iter8-system",
        values: &[],
    },
    Case {
        snapshot: "controller-cluster-scoped",
        chart: "controller",
        release: "iter8",
        namespace: "iter8-system",
        values: &["controller-cluster-scoped.yaml"],
    },
];

fn all_cases() -> impl Iterator<Item = &'static Case> {
    RELEASE_CASES.iter().chain(CONTROLLER_CASES)
}

fn case(snapshot: &str) -> &'static Case {
    all_cases()
        .find(|c| c.snapshot == snapshot)
        .unwrap_or_else(|| panic!("no case {snapshot}"))
}

fn template_args(c: &Case) -> Vec<String> {
    let mut args = vec![
        "template".to_string(),
        c.release.to_string(),
        chart(c.chart).display().to_string(),
        "--namespace".to_string(),
        c.namespace.to_string(),
    ];
    for v in c.values {
        args.push("--values".to_string());
        args.push(values_file(v).display().to_string());
    }
    args
}

/// `helm template` of a case; panics with helm's message when it fails.
fn render(c: &Case) -> String {
    let args = template_args(c);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm(&argv, None);
    assert!(
        out.status.success(),
        "helm {} failed:\n{}",
        args.join(" "),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The YAML documents of a rendering, parsed; comment-only documents are dropped.
fn documents(rendered: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut flush = |current: &mut String| {
        let meaningful = current
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if meaningful {
            let v: Value = serde_saphyr::from_str(current)
                .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{current}"));
            docs.push(v);
        }
        current.clear();
    };
    for line in rendered.lines() {
        if line == "---" {
            flush(&mut current);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&mut current);
    docs
}

fn kind_name(doc: &Value) -> (String, String) {
    (
        doc["kind"].as_str().unwrap_or_default().to_string(),
        doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| kind_name(d) == (kind.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The routemap ConfigMap of a release rendering and its parsed spec.
fn routemap(docs: &[Value]) -> (&Value, RouteMapSpec) {
    let cms: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            d["kind"] == "ConfigMap" && d["metadata"]["labels"]["iter8.tools/kind"] == "routemap"
        })
        .collect();
    assert_eq!(cms.len(), 1, "exactly one routemap per release");
    let cm = cms[0];
    let data = cm["data"]["routemap.yaml"]
        .as_str()
        .expect("routemap has data[\"routemap.yaml\"]");
    let spec = RouteMapSpec::from_yaml(data)
        .unwrap_or_else(|e| panic!("routing-core rejects the rendered routemap: {e}\n{data}"));
    // The controller's path: the ConfigMap as JSON, labels checked, then the same parser.
    let object = routemap_index::routemap::RouteMapObject::from_json(cm, "default");
    assert_eq!(
        object.spec.as_ref(),
        Ok(&spec),
        "the controller reads the same spec"
    );
    let labels: BTreeMap<String, String> =
        serde_json::from_value(cm["metadata"]["labels"].clone()).expect("string labels");
    assert!(routemap_index::routemap::is_routemap(&labels));
    (cm, spec)
}

// ---------------------------------------------------------------------------------------------
// helm lint --strict

fn lint(chart_name: &str, namespace: &str, values: &[&str]) {
    let chart_path = chart(chart_name).display().to_string();
    let mut args = vec![
        "lint".to_string(),
        "--strict".to_string(),
        chart_path,
        "--namespace".to_string(),
        namespace.to_string(),
    ];
    for v in values {
        args.push("--values".to_string());
        args.push(values_file(v).display().to_string());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm(&argv, None);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("0 chart(s) failed"),
        "helm {} failed:\n{stdout}\n{}",
        args.join(" "),
        text(&out.stderr)
    );
    assert!(
        !stdout.contains("[WARNING]") && !stdout.contains("[ERROR]"),
        "helm lint reported problems:\n{stdout}"
    );
}

#[test]
fn lint_strict_release_chart() {
    for c in RELEASE_CASES {
        lint("release", c.namespace, c.values);
    }
}

#[test]
fn lint_strict_controller_chart() {
    for c in CONTROLLER_CASES {
        lint("controller", c.namespace, c.values);
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

fn snapshot(name: &str) {
    let rendered = render(case(name));
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("fixtures/charts/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(format!(
        "helm {}",
        template_args(case(name))
            .iter()
            .map(|a| a.replace(&format!("{}/", root().display()), ""))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    settings.bind(|| insta::assert_snapshot!(name, rendered));
}

macro_rules! snapshot_tests {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                snapshot($name);
            }
        )*
    };
}

snapshot_tests! {
    snapshot_release_seed_1_initial => "release-seed-1-initial",
    snapshot_release_seed_2_candidate => "release-seed-2-candidate",
    snapshot_release_seed_3_promote => "release-seed-3-promote",
    snapshot_release_blue_green_30_70 => "release-blue-green-30-70",
    snapshot_release_mirror => "release-mirror",
    snapshot_release_custom_specs => "release-custom-specs",
    snapshot_release_none_deployment => "release-none-deployment",
    snapshot_controller_namespace_scoped => "controller-namespace-scoped",
    snapshot_controller_cluster_scoped => "controller-cluster-scoped",
}

// ---------------------------------------------------------------------------------------------
// kubernetes-validate --strict, Kubernetes 1.30 and 1.36

#[test]
fn rendered_objects_pass_kubernetes_validate_strict() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubernetes-validate");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut files = Vec::new();
    let mut expected = 0;
    for c in all_cases() {
        let rendered = render(c);
        expected += documents(&rendered).len();
        let file = dir.join(format!("{}.yaml", c.snapshot));
        std::fs::write(&file, rendered).expect("write rendering");
        files.push(file);
    }
    for k8s in ["1.30.0", "1.36.0"] {
        let out = Command::new(kubernetes_validate_bin())
            .args(["--strict", "--kubernetes-version", k8s])
            .args(&files)
            .output()
            .expect("run kubernetes-validate");
        let stdout = text(&out.stdout);
        let stderr = text(&out.stderr);
        assert!(
            out.status.success(),
            "kubernetes-validate --strict -k {k8s} failed:\n{stdout}\n{stderr}"
        );
        let short = k8s.trim_end_matches(".0");
        let passed = stdout
            .lines()
            .chain(stderr.lines())
            .filter(|l| {
                l.contains("passed for resource") && l.ends_with(&format!("version {short}"))
            })
            .count();
        assert_eq!(
            passed, expected,
            "every rendered object must be validated against {k8s}:\n{stdout}\n{stderr}"
        );
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

/// Renders `chart` with `values` (YAML, fed on stdin) and asserts that helm fails with a message
/// containing `expected`.
fn assert_rejected(chart_name: &str, values: &str, expected: &str) {
    let chart_path = chart(chart_name).display().to_string();
    let out = helm(
        &[
            "template",
            "x",
            &chart_path,
            "--namespace",
            "test",
            "--values",
            "-",
        ],
        Some(values),
    );
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{chart_name}: these values must be rejected:\n{values}\nbut helm rendered:\n{}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains(expected),
        "{chart_name}: expected an error containing {expected:?}, got:\n{stderr}\nvalues:\n{values}"
    );
}

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
