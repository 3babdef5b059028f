//! Wall time of the whole `iter8-render routes` process on 1,000 releases (a routemap plus two
//! Services and two Deployments each, as `helm template` gives). Run: `cargo bench -p iter8-render`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};

/// Writes an input of `n` two-version canary releases, with or without their objects.
pub fn input(n: usize, with_objects: bool) -> String {
    let mut s = String::new();
    for i in 0..n {
        let app = format!("app{i}");
        let ns = format!("ns{}", i % 50);
        let _ = write!(
            s,
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}-routemap\n  namespace: {ns}\n  uid: uid-{i}\n  labels: {{iter8.tools/kind: routemap, iter8.tools/version: v2}}\ndata:\n  routemap.yaml: |\n    strategy: canary\n    route:\n      name: {app}\n      parentRefs: [{{group: \"\", kind: Service, name: {app}, port: 80}}]\n    versions:\n    - name: {app}-0\n      resources: [{{gvrShort: svc, name: {app}-0}}, {{gvrShort: deploy, name: {app}-0}}]\n    - name: {app}-1\n      resources: [{{gvrShort: svc, name: {app}-1}}, {{gvrShort: deploy, name: {app}-1}}]\n      matches: [{{headers: [{{name: traffic, value: test}}]}}]\n"
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
    for (label, with_objects, from_status) in [
        ("1000 routemaps", false, false),
        ("1000 releases with objects, --from-status", true, true),
    ] {
        let path = dir.join(format!("render-bench-{with_objects}.yaml"));
        std::fs::write(&path, input(1000, with_objects)).expect("write input");
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
