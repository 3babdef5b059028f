//! Planning cost: a 2-version canary, a 16-version blue-green, and 10,000 releases.
//! Run: `cargo bench -p routing-core` (figures in README.md).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use routing_core::{RouteMapRef, RouteMapSpec, VersionState, plan};

fn canary() -> RouteMapSpec {
    RouteMapSpec::from_yaml(
        r#"
strategy: canary
route:
  name: httpbin
  parentRefs: [{group: "", kind: Service, name: httpbin, port: 80}]
  hostnames: [httpbin.test, httpbin.test.svc, httpbin.test.svc.cluster.local]
versions:
- name: httpbin-0
  resources: [{gvrShort: svc, name: httpbin-0}, {gvrShort: deploy, name: httpbin-0}]
- name: httpbin-1
  resources: [{gvrShort: svc, name: httpbin-1}, {gvrShort: deploy, name: httpbin-1}]
  matches: [{headers: [{name: traffic, value: test}]}]
"#,
    )
    .expect("valid")
}

fn blue_green(n: usize) -> RouteMapSpec {
    let mut yaml = String::from(
        "strategy: blue-green\nroute:\n  name: app\n  parentRefs: [{group: \"\", kind: Service, name: app, port: 80}]\nversions:\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "- name: app-{i}\n  weight: {}\n  resources: [{{gvrShort: svc, name: app-{i}}}, {{gvrShort: deploy, name: app-{i}}}]\n",
            10 + i
        ));
    }
    RouteMapSpec::from_yaml(&yaml).expect("valid")
}

fn owner(i: usize) -> RouteMapRef {
    RouteMapRef {
        namespace: format!("ns-{}", i % 100),
        name: format!("app-{i}-routemap"),
        uid: format!("uid-{i}"),
    }
}

fn benches(c: &mut Criterion) {
    let spec = canary();
    let states = vec![VersionState::available(); 2];
    let o = owner(0);
    c.bench_function("plan canary 2 versions", |b| {
        b.iter(|| plan(black_box(&o), black_box(&spec), black_box(&states)))
    });

    let spec = blue_green(16);
    let states = vec![VersionState::available(); 16];
    c.bench_function("plan blue-green 16 versions", |b| {
        b.iter(|| plan(black_box(&o), black_box(&spec), black_box(&states)))
    });

    let releases: Vec<(RouteMapRef, RouteMapSpec)> =
        (0..10_000).map(|i| (owner(i), canary())).collect();
    let states = vec![VersionState::available(); 2];
    let mut group = c.benchmark_group("many");
    group.sample_size(10);
    group.bench_function("plan 10000 canary releases", |b| {
        b.iter(|| {
            releases
                .iter()
                .map(|(o, s)| plan(o, s, &states).map(|r| r.is_some()))
                .filter(|r| matches!(r, Ok(true)))
                .count()
        })
    });
    group.finish();

    let text = canary().to_yaml();
    c.bench_function("parse+validate canary spec", |b| {
        b.iter(|| RouteMapSpec::from_yaml(black_box(&text)))
    });
    // The same spec as the release chart writes it: one line of JSON (the JSON fast path).
    let json = serde_json::to_string(&canary()).expect("json");
    c.bench_function("parse+validate canary spec (JSON)", |b| {
        b.iter(|| RouteMapSpec::from_yaml(black_box(&json)))
    });
}

criterion_group!(planner, benches);
criterion_main!(planner);
