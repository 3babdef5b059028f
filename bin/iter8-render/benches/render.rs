//! Wall time of the whole `iter8-render routes` process on 1,000 releases (a routemap, alone or
//! with two Services and two Deployments, as `helm template charts/release` gives them; and the
//! same routemaps with their specs in YAML). Run: `cargo bench -p iter8-render`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};

/// How the routemap specs of the input are written.
#[derive(Debug, Clone, Copy)]
pub enum Specs {
    /// As `charts/release` writes them: one line of JSON (`toJson`, keys sorted).
    Chart,
    /// The same spec in YAML, laid out as a person (or the chart before) writes it.
    Yaml,
}

/// The spec of release `app` in namespace `ns`, as `charts/release` builds it.
fn spec(app: &str, ns: &str, specs: Specs) -> String {
    match specs {
        Specs::Chart => test_builders::chart_canary_spec(app, ns).to_string(),
        Specs::Yaml => {
            let mut s = format!(
                "strategy: canary\nroute:\n  name: {app}\n  parentRefs:\n  - {{group: \"\", kind: Service, name: {app}, port: 80}}\n  hostnames:\n  - {app}\n  - {app}.{ns}\n  - {app}.{ns}.svc\n  - {app}.{ns}.svc.cluster.local\nversions:"
            );
            for v in 0..2 {
                let _ = write!(
                    s,
                    "\n- name: {app}-{v}\n  port: 80\n  resources:\n  - {{gvrShort: svc, name: {app}-{v}, namespace: {ns}}}\n  - {{gvrShort: deploy, name: {app}-{v}, namespace: {ns}}}"
                );
            }
            s.push_str("\n  matches:\n  - headers:\n    - name: traffic\n      value: test");
            s
        }
    }
}

/// Writes an input of `n` two-version canary releases as `helm template charts/release` gives
/// them, with or without their Services and Deployments.
pub fn input(n: usize, specs: Specs, with_objects: bool) -> String {
    let mut s = String::new();
    for i in 0..n {
        let app = format!("app{i}");
        let ns = format!("ns{}", i % 50);
        let spec: String = spec(&app, &ns, specs)
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        let _ = write!(
            s,
            "---\n# Source: release/templates/routemap.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}-routemap\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/managed-by: iter8\n    iter8.tools/kind: routemap\n    iter8.tools/version: v2\ndata:\n  routemap.yaml: |\n{spec}"
        );
        if with_objects {
            for v in 0..2 {
                let _ = write!(
                    s,
                    "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {app}-{v}, namespace: {ns}, labels: {{iter8.tools/watch: \"true\"}}}}\nspec: {{selector: {{app: {app}-{v}}}, ports: [{{port: 80}}]}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}-{v}, namespace: {ns}, generation: 1, labels: {{iter8.tools/watch: \"true\"}}}}\nspec:\n  selector: {{matchLabels: {{app: {app}-{v}}}}}\n  template:\n    metadata: {{labels: {{app: {app}-{v}}}}}\n    spec: {{containers: [{{name: app, image: kennethreitz/httpbin}}]}}\nstatus: {{observedGeneration: 1, conditions: [{{type: Available, status: \"True\"}}]}}\n"
                );
            }
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let mut group = c.benchmark_group("iter8-render routes");
    group.sample_size(20);
    for (label, specs, with_objects, from_status) in [
        (
            "1000 routemaps, specs as the chart writes them (JSON)",
            Specs::Chart,
            false,
            false,
        ),
        ("1000 routemaps, specs in YAML", Specs::Yaml, false, false),
        (
            "1000 releases with objects, --from-status",
            Specs::Chart,
            true,
            true,
        ),
    ] {
        let path = dir.join(format!(
            "render-bench-{}.yaml",
            label.replace([' ', ',', '(', ')'], "_")
        ));
        std::fs::write(&path, input(1000, specs, with_objects)).expect("write input");
        let mut args = vec!["routes".to_string(), path.display().to_string()];
        if from_status {
            args.push("--from-status".into());
        }
        group.bench_function(label, |b| {
            b.iter(|| {
                let out = Command::new(env!("CARGO_BIN_EXE_iter8-render"))
                    .args(&args)
                    .output()
                    .expect("run");
                assert!(out.status.success());
                out.stdout.len()
            })
        });
    }
    group.finish();
}

criterion_group!(render, bench);
criterion_main!(render);
