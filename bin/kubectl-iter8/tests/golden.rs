//! Golden output of `kubectl iter8 get` and `explain` for the cluster snapshots in
//! `fixtures/kubectl/*.yaml`: the tree on a terminal and piped, and `-o json`. Rendering is a
//! pure function of the snapshot and the time, fixed here.

use std::path::PathBuf;

use k8s_openapi::jiff::Timestamp;
use kubectl_iter8::model::{self, Selection, Snapshot};
use kubectl_iter8::text::{self, Style};
use routemap_index::config::Config;
use routing_core::Request;

const CASES: &[&str] = &[
    "candidate-not-ready",
    "candidate-live",
    "route-not-accepted",
    "backend-not-resolved",
    "invalid-routemap",
    "blue-green-weight-changed",
    "guard-judged",
    "guard-withdrawn",
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/kubectl")
}

fn now() -> Timestamp {
    "2026-12-06T07:00:00Z".parse().expect("a timestamp")
}

fn snapshot(case: &str) -> Snapshot {
    let path = fixtures().join(format!("{case}.yaml"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    Snapshot::from_yaml(case, &text).expect("valid YAML")
}

fn selection() -> Selection {
    Selection {
        namespace: Some("test".into()),
        release: Some("httpbin".into()),
    }
}

#[test]
fn get_goldens() {
    let config = Config::default();
    for case in CASES {
        let views = model::views(&config, &snapshot(case), &selection());
        assert_eq!(views.len(), 1, "{case}: one release");
        insta::with_settings!({
            snapshot_path => fixtures().join("snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(
                format!("{case}-plain"),
                text::render(&views, now(), Style::plain(), "namespace \"test\"")
            );
            insta::assert_snapshot!(
                format!("{case}-tty"),
                text::render(&views, now(), Style::tty(), "namespace \"test\"")
            );
            insta::assert_json_snapshot!(format!("{case}-json"), views);
        });
    }
}

#[test]
fn explain_goldens() {
    let config = Config::default();
    let test = Request::get("/").header("traffic", "test");
    for case in [
        "candidate-not-ready",
        "candidate-live",
        "backend-not-resolved",
    ] {
        let view = model::explain_view(&config, &snapshot(case), &selection(), &test)
            .expect("the release exists");
        insta::with_settings!({
            snapshot_path => fixtures().join("snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(
                format!("{case}-explain-test"),
                text::render_explain(&view, Style::plain())
            );
        });
    }
}

#[test]
fn a_release_that_is_not_there_selects_nothing() {
    let sel = Selection {
        namespace: Some("test".into()),
        release: Some("other".into()),
    };
    let views = model::views(&Config::default(), &snapshot("candidate-live"), &sel);
    assert!(views.is_empty());
    let views = model::views(
        &Config::default(),
        &snapshot("candidate-live"),
        &Selection {
            namespace: Some("elsewhere".into()),
            release: None,
        },
    );
    assert!(views.is_empty());
    assert_eq!(
        text::render(&views, now(), Style::plain(), "namespace \"elsewhere\""),
        "No releases (routemaps labelled iter8.tools/kind=routemap) in namespace \"elsewhere\".\n"
    );
}

#[test]
fn yaml_output_holds_the_same_views_as_json() {
    let views = model::views(
        &Config::default(),
        &snapshot("candidate-live"),
        &selection(),
    );
    let doc = serde_json::json!({ "releases": views });
    let yaml = serde_saphyr::to_string(&doc).expect("serializes");
    let back: serde_json::Value = serde_saphyr::from_str(&yaml).expect("parses back");
    assert_eq!(back, doc);
}
