//! The built `iter8-render` binary on the fixtures: stdout, stderr and exit code are snapshots
//! under `fixtures/render/snapshots/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the binary from the repository root; returns a transcript of the run.
fn run(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iter8-render"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn iter8-render");
    {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(stdin.unwrap_or("").as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("run iter8-render");
    format!(
        "$ iter8-render {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check(name: &str, transcript: String) {
    insta::with_settings!({
        snapshot_path => root().join("fixtures/render/snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, transcript);
    });
}

const SEED_1: &str = "fixtures/routing/seed-1-initial/routemap.yaml";
const SEED_2: &str = "fixtures/routing/seed-2-candidate-ready/routemap.yaml";

#[test]
fn seed_step_1_routes_everything_to_the_primary() {
    check("seed-1-routes", run(&["routes", SEED_1], None));
}

#[test]
fn seed_step_2_candidate_gets_a_header_rule_once_ready() {
    check("seed-2-routes", run(&["routes", SEED_2], None));
    check(
        "seed-2-routes-unready",
        run(&["routes", SEED_2, "--unready", "httpbin-1"], None),
    );
}

#[test]
fn seed_step_2_explain_follows_the_traffic_header() {
    let with = run(&["explain", SEED_2, "--header", "traffic=test"], None);
    assert!(
        with.contains("-> httpbin-1 (app-version: httpbin-1)"),
        "{with}"
    );
    check("seed-2-explain-header", with);
    check("seed-2-explain-no-header", run(&["explain", SEED_2], None));
    let unready = run(
        &[
            "explain",
            SEED_2,
            "-H",
            "traffic=test",
            "--unready",
            "httpbin-1",
        ],
        None,
    );
    assert!(
        unready.contains("-> httpbin-0 (app-version: httpbin-0)"),
        "{unready}"
    );
    check("seed-2-explain-header-unready", unready);
}

#[test]
fn stdin_and_json_output() {
    let text = std::fs::read_to_string(root().join(SEED_1)).expect("fixture");
    let out = run(&["routes", "--output", "json"], Some(&text));
    check("seed-1-routes-json", out);
}

#[test]
fn strategies_explained() {
    check(
        "blue-green-explain",
        run(
            &["explain", "fixtures/routing/blue-green-30-70/routemap.yaml"],
            None,
        ),
    );
    check(
        "mirror-explain",
        run(&["explain", "fixtures/routing/mirror/routemap.yaml"], None),
    );
    check(
        "none-routes",
        run(
            &["routes", "fixtures/routing/strategy-none/routemap.yaml"],
            None,
        ),
    );
}

#[test]
fn from_status_judges_versions_like_the_controller() {
    // httpbin-1's Deployment reports Available for an older generation: not ready.
    let out = run(
        &[
            "routes",
            "--from-status",
            "fixtures/render/from-status.yaml",
        ],
        None,
    );
    assert!(!out.contains("name: httpbin-1\n      port"), "{out}");
    check("from-status-routes", out);
}

#[test]
fn weight_annotation_in_the_input_is_honoured() {
    let out = run(&["explain", "fixtures/render/weight-annotation.yaml"], None);
    assert!(out.contains("httpbin-1 75.0%"), "{out}");
    check("weight-annotation-explain", out);
}

#[test]
fn invalid_routemap_fails_with_its_field_path_and_prints_nothing() {
    let out = run(
        &[
            "routes",
            "fixtures/routing/invalid-bad-header-name/routemap.yaml",
        ],
        None,
    );
    assert!(out.contains("exit: 1\n--- stdout\n--- stderr\n"), "{out}");
    check("invalid-routemap", out);
}

/// A routemap `test/broken-routemap` whose candidate misspells `headers` as `header`.
const BROKEN_ROUTEMAP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: broken-routemap
  namespace: test
  labels: {iter8.tools/kind: routemap, iter8.tools/version: v2}
data:
  routemap.yaml: |
    strategy: canary
    route: {name: broken, parentRefs: [{name: gw}]}
    versions:
    - name: broken-0
      resources: [{gvrShort: svc, name: broken-0}]
    - name: broken-1
      resources: [{gvrShort: svc, name: broken-1}]
      matches: [{header: [{name: traffic, value: test}]}]
"#;

/// The stdout and stderr sections of a transcript made by [`run`].
fn sections(transcript: &str) -> (&str, &str) {
    let (head, stderr) = transcript
        .split_once("--- stderr\n")
        .expect("transcript has stderr");
    let (_, stdout) = head
        .split_once("--- stdout\n")
        .expect("transcript has stdout");
    (stdout, stderr)
}

#[test]
fn invalid_routemap_does_not_hide_valid_ones() {
    // Two different routemaps: test/broken-routemap (invalid, on stdin) and
    // test/httpbin-routemap (valid, in a file).
    let out = run(
        &["routes", "-", "fixtures/render/weight-annotation.yaml"],
        Some(BROKEN_ROUTEMAP),
    );
    let (stdout, stderr) = sections(&out);
    // The valid routemap's route is still printed in full: one bad release must not hide the
    // others' routes.
    assert!(
        stdout.contains("kind: HTTPRoute\nmetadata:\n  name: httpbin\n  namespace: test\n"),
        "{out}"
    );
    assert!(stdout.contains("    name: httpbin-routemap\n"), "{out}");
    assert!(
        !stdout.contains("broken"),
        "nothing is printed for the invalid routemap:\n{out}"
    );
    // The invalid one is named, with the field path, so the user knows what to fix.
    assert!(
        stderr.contains(
            "error: routemap test/broken-routemap: data[routemap.yaml].versions[1].matches[0].header: unknown field `header`"
        ),
        "{out}"
    );
    assert!(!stderr.contains("httpbin-routemap"), "{out}");
    // Any invalid routemap fails the run, so scripts and CI notice.
    assert!(out.contains("\nexit: 1\n"), "{out}");
}

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let out = run(
        &["routes", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [\n"),
    );
    assert!(out.contains("exit: 2"), "{out}");
    assert!(out.contains("-: invalid YAML: line"), "{out}");
    check("yaml-syntax-error", out);
}

#[test]
fn unknown_unready_name_is_warned_about() {
    let out = run(&["routes", SEED_1, "--unready", "httpbin-9"], None);
    assert!(out.contains("warning: --unready httpbin-9"), "{out}");
}

/// `helm template charts/release | iter8-render routes` for each tutorial step.
#[test]
fn helm_template_pipeline_gives_the_tutorial_routes() {
    let helm = std::env::var_os("ITER8_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools"))
        .join("bin/helm");
    assert!(
        helm.exists(),
        "{} is missing: run scripts/install-tools.sh",
        helm.display()
    );
    for (step, unready) in [
        ("seed-1-initial", None),
        ("seed-2-candidate", None),
        ("seed-2-candidate", Some("httpbin-1")),
        ("seed-3-promote", None),
    ] {
        let values = format!("fixtures/charts/values/{step}.yaml");
        let out = Command::new(&helm)
            .args([
                "template",
                "httpbin",
                "charts/release",
                "-n",
                "test",
                "-f",
                &values,
            ])
            .current_dir(root())
            .output()
            .expect("run helm");
        assert!(
            out.status.success(),
            "helm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest = String::from_utf8(out.stdout).expect("utf8");
        let mut args = vec!["routes", "-"];
        if let Some(u) = unready {
            args.extend(["--unready", u]);
        }
        let transcript = run(&args, Some(&manifest));
        // The uid of a rendered (not yet created) ConfigMap is empty: the controller fills it.
        let name = format!(
            "helm-{step}{}",
            unready.map(|u| format!("-unready-{u}")).unwrap_or_default()
        );
        check(&name, transcript);
    }
}

#[test]
fn explain_says_where_precedence_is_the_gateways() {
    let file = "fixtures/render/regex-path.yaml";
    let both = run(
        &[
            "explain",
            file,
            "-H",
            "traffic=test",
            "--path",
            "/api/v2/items",
        ],
        None,
    );
    assert!(both.contains("(implementation-specific: "), "{both}");
    check("regex-path-explain-both-match", both);
    // Only the primary matches: nothing is left to the gateway.
    for args in [
        vec!["explain", file, "--path", "/api/v2/items"],
        vec!["explain", file, "-H", "traffic=test", "--path", "/other"],
    ] {
        let out = run(&args, None);
        assert!(!out.contains("implementation-specific"), "{out}");
        assert!(out.contains("-> httpbin-0 "), "{out}");
    }
}

const GUARDED: &str = "fixtures/routing/canary-guarded/routemap.yaml";

#[test]
fn explain_shows_the_guard_and_plans_a_withdrawn_candidate_out() {
    let test = ["-H", "traffic=test"];
    check(
        "guarded-explain",
        run(&[&["explain", GUARDED][..], &test[..]].concat(), None),
    );
    check(
        "guarded-explain-withdrawn",
        run(
            &[
                &["explain", GUARDED, "--withdrawn", "httpbin-1"][..],
                &test[..],
            ]
            .concat(),
            None,
        ),
    );
    // The primary is never withdrawn: said, and the route is unchanged.
    check(
        "guarded-explain-withdrawn-primary",
        run(
            &[
                &["explain", GUARDED, "--withdrawn", "httpbin-0"][..],
                &test[..],
            ]
            .concat(),
            None,
        ),
    );
}
