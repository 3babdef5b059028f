//! Golden routes through the controller's own reading of the cluster: every directory under
//! `fixtures/routing/` holds a routemap ConfigMap (`routemap.yaml`), the version resources as
//! the API server stores them (`objects.yaml`: Services and Deployments with the
//! `iter8.tools/watch` label, Deployment generation and status conditions, `iter8.tools/weight`
//! annotations), and the expected route or error as an insta snapshot (`expected.snap`).
//!
//! Both files go through [`load_documents`] and [`render`] with readiness judged from the
//! objects' status, the path `iter8-render --from-status` takes: each object becomes
//! [`routing_core::ResourceFacts`] by `ResourceFacts::from_json`, the index holds them, and
//! readiness and weight annotations are parsed exactly as in the controller.
//!
//! Re-bless with `INSTA_UPDATE=always cargo test -p routemap-index --test goldens` and review.

use std::path::{Path, PathBuf};

use routemap_index::config::Config;
use routemap_index::error::RouteMapError;
use routemap_index::index::Decision;
use routemap_index::offline::{Availability, InOrder, load_documents, render};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/routing")
}

/// Decides one fixture; returns the route YAML, `(no route: strategy none)`, or `error: ...`.
fn render_case(dir: &Path) -> String {
    let mut documents = Vec::new();
    for file in ["routemap.yaml", "objects.yaml"] {
        let path = dir.join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        documents.extend(
            load_documents(file, &text, &InOrder)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        );
    }
    let from_status = Availability {
        from_status: true,
        ..Default::default()
    };
    let rendering = render(
        &Config::default(),
        "default",
        &documents,
        &from_status,
        &InOrder,
    );
    let [rendered] = rendering.routemaps.as_slice() else {
        panic!(
            "{}: one routemap expected, found {}",
            dir.display(),
            rendering.routemaps.len()
        );
    };
    match &rendered.decision {
        Decision::Desired {
            route: Some(route), ..
        } => route.to_yaml(),
        Decision::Desired { route: None, .. } => "(no route: strategy none)\n".into(),
        // The goldens keep routing-core's words: spec field paths relative to the data key.
        Decision::Invalid {
            error: RouteMapError::Spec(e),
        } => format!("error: {e}\n"),
        Decision::Invalid { error } => format!("error: {error}\n"),
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
