//! Golden routes: every directory under `fixtures/routing/` holds a routemap ConfigMap
//! (`routemap.yaml`), optionally the observed state (`state.yaml`: `unavailable` version names,
//! annotation `weights`), and the expected route or error as an insta snapshot (`expected.snap`).
//! Re-bless with `INSTA_UPDATE=always cargo test -p routing-core --test fixtures` and review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use routing_core::{RouteMapRef, RouteMapSpec, VersionState, plan};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct State {
    #[serde(default)]
    unavailable: Vec<String>,
    #[serde(default)]
    weights: BTreeMap<String, u32>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/routing")
}

/// Plans one fixture; returns the route YAML, `(no route)`, or `error: ...`.
fn render_case(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("routemap.yaml")).expect("routemap.yaml");
    let cm: serde_json::Value = serde_saphyr::from_str(&text).expect("ConfigMap YAML");
    let state: State = match std::fs::read_to_string(dir.join("state.yaml")) {
        Ok(s) => serde_saphyr::from_str(&s).expect("state.yaml"),
        Err(_) => State::default(),
    };
    let spec_text = cm["data"]["routemap.yaml"]
        .as_str()
        .expect("data[routemap.yaml]");
    let spec = match RouteMapSpec::from_yaml(spec_text) {
        Ok(spec) => spec,
        Err(e) => return format!("error: {e}\n"),
    };
    let states: Vec<VersionState> = spec
        .versions
        .iter()
        .map(|v| VersionState {
            available: !state.unavailable.contains(&v.name),
            weight_override: state.weights.get(&v.name).copied(),
            ..Default::default()
        })
        .collect();
    let owner = RouteMapRef {
        namespace: cm["metadata"]["namespace"]
            .as_str()
            .expect("namespace")
            .into(),
        name: cm["metadata"]["name"].as_str().expect("name").into(),
        uid: cm["metadata"]["uid"].as_str().expect("uid").into(),
    };
    match plan(&owner, &spec, &states) {
        Ok(Some(route)) => route.to_yaml(),
        Ok(None) => "(no route: strategy none)\n".into(),
        Err(e) => format!("error: {e}\n"),
    }
}

#[test]
fn golden_routes() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/routing")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("routemap.yaml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 20, "fixtures went missing: {dirs:?}");
    for dir in dirs {
        let out = render_case(&dir);
        let invalid = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("invalid-"));
        // A case named invalid-* must fail, and only those may.
        assert_eq!(
            out.starts_with("error: "),
            invalid,
            "{}: {out}",
            dir.display()
        );
        insta::with_settings!({
            snapshot_path => dir.clone(),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("fixtures/routing/{}", dir.file_name().unwrap_or_default().to_string_lossy()),
        }, {
            insta::assert_snapshot!("expected", out);
        });
    }
}
