//! What `helm template` renders from both charts, for every case in `support`: `insta`
//! snapshots (in `fixtures/charts/snapshots`, named after the case) and strict schema validation
//! of every rendered object with `kubernetes-validate` for Kubernetes 1.30 and 1.36.

mod support;

use std::path::Path;
use std::process::Command;

use support::{
    all_cases, case, documents, kubernetes_validate_bin, render, root, template_args, text,
};

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
    snapshot_release_guard_canary => "release-guard-canary",
    snapshot_controller_namespace_scoped => "controller-namespace-scoped",
    snapshot_controller_cluster_scoped => "controller-cluster-scoped",
    snapshot_controller_guard => "controller-guard",
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
