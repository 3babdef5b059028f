//! Shared by the chart tests (`chart_render.rs`, `chart_release.rs`, `chart_controller.rs`):
//! the tools, the rendering cases, `helm` run hermetically, and parsing of what it renders.
//!
//! The tools come from `scripts/install-tools.sh` (into `$ITER8_TOOLS_DIR`, default
//! `<workspace>/.tools`). A missing tool is a failure, not a skip.

// Each test file is its own crate and uses only part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use routing_core::RouteMapSpec;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Tools and paths

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

pub fn tools_dir() -> PathBuf {
    match std::env::var_os("ITER8_TOOLS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => root().join(".tools"),
    }
}

pub fn tool(name: &str, candidates: &[&str]) -> PathBuf {
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

pub fn helm_bin() -> PathBuf {
    tool("helm", &["bin/helm"])
}

pub fn kubernetes_validate_bin() -> PathBuf {
    tool(
        "kubernetes-validate",
        &["bin/kubernetes-validate", "venv/bin/kubernetes-validate"],
    )
}

pub fn chart(name: &str) -> PathBuf {
    root().join("charts").join(name)
}

pub fn values_file(name: &str) -> PathBuf {
    root().join("fixtures/charts/values").join(name)
}

/// Runs helm hermetically (its config/cache/data dirs under the test's temp dir), optionally
/// feeding `stdin`.
pub fn helm(args: &[&str], stdin: Option<&str>) -> Output {
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

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// One rendering: a chart, a release name and namespace, and values files.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub snapshot: &'static str,
    pub chart: &'static str,
    pub release: &'static str,
    pub namespace: &'static str,
    pub values: &'static [&'static str],
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

pub const RELEASE_CASES: &[Case] = &[
    release_case!("release-seed-1-initial", "seed-1-initial.yaml"),
    release_case!("release-seed-2-candidate", "seed-2-candidate.yaml"),
    release_case!("release-seed-3-promote", "seed-3-promote.yaml"),
    release_case!("release-blue-green-30-70", "blue-green-30-70.yaml"),
    release_case!("release-mirror", "mirror.yaml"),
    release_case!("release-custom-specs", "custom-specs.yaml"),
    release_case!("release-none-deployment", "none-deployment.yaml"),
    release_case!("release-guard-canary", "guard-canary.yaml"),
];

pub const CONTROLLER_CASES: &[Case] = &[
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
    Case {
        snapshot: "controller-guard",
        chart: "controller",
        release: "iter8",
        namespace: "iter8-system",
        values: &["controller-guard.yaml"],
    },
];

pub fn all_cases() -> impl Iterator<Item = &'static Case> {
    RELEASE_CASES.iter().chain(CONTROLLER_CASES)
}

pub fn case(snapshot: &str) -> &'static Case {
    all_cases()
        .find(|c| c.snapshot == snapshot)
        .unwrap_or_else(|| panic!("no case {snapshot}"))
}

pub fn template_args(c: &Case) -> Vec<String> {
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
pub fn render(c: &Case) -> String {
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
pub fn documents(rendered: &str) -> Vec<Value> {
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

pub fn kind_name(doc: &Value) -> (String, String) {
    (
        doc["kind"].as_str().unwrap_or_default().to_string(),
        doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| kind_name(d) == (kind.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The routemap ConfigMap of a release rendering and its parsed spec.
pub fn routemap(docs: &[Value]) -> (&Value, RouteMapSpec) {
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

pub fn lint(chart_name: &str, namespace: &str, values: &[&str]) {
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

// ---------------------------------------------------------------------------------------------
// Bad values are rejected with a clear message

/// `helm template x charts/<chart_name> -n test` of `values` (YAML, fed on stdin).
pub fn template_values(chart_name: &str, values: &str) -> std::process::Output {
    let chart_path = chart(chart_name).display().to_string();
    helm(
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
    )
}

/// Renders `chart` with `values` (YAML, fed on stdin) and asserts that helm fails with a message
/// containing `expected`.
pub fn assert_rejected(chart_name: &str, values: &str, expected: &str) {
    let out = template_values(chart_name, values);
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
