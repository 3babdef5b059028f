//! EndpointSlices in the index: a version goes as soon as either its Deployment or its
//! Service's slices say so; a Service without slices is judged as without the watch.

use routemap_index::config::Config;
use routemap_index::index::slices::SliceFacts;
use routemap_index::index::{Change, Decision, Index};
use serde_json::json;
use test_builders::{RouteMap, canary_spec, deployment, watched};

/// The available versions of the single decision in `changes`.
fn available(changes: &[Change]) -> Vec<String> {
    assert_eq!(changes.len(), 1, "expected one change, got {changes:#?}");
    match &changes[0] {
        Change::Decided {
            decision: Decision::Desired { traffic, .. },
            ..
        } => traffic
            .available()
            .into_iter()
            .map(str::to_string)
            .collect(),
        other => panic!("expected a decision, got {other:#?}"),
    }
}

fn slice(service: &str, ready: bool) -> Option<SliceFacts> {
    Some(SliceFacts {
        service: service.into(),
        ready,
    })
}

/// The canary routemap of `app` with both versions' Service and Deployment ready.
fn ready_canary(config: &Config) -> Index {
    let mut index = Index::new(config);
    index.upsert_routemap(
        RouteMap::new("test", "app-routemap", canary_spec("app"))
            .resource_version("1")
            .object(),
    );
    for v in ["app-0", "app-1"] {
        index.upsert_resource("svc", "test", v, watched());
        index.upsert_resource("deploy", "test", v, deployment(true));
    }
    index
}

#[test]
fn slices_without_a_ready_endpoint_drop_the_version_before_its_deployment_does() {
    let mut index = ready_canary(&Config::default());
    // A ready slice changes nothing: the version was available already.
    assert!(
        index
            .upsert_slice("test", "app-1-abc", slice("app-1", true))
            .is_empty()
    );
    // Its only endpoint not ready: the candidate goes, its Deployment still Available.
    let changes = index.upsert_slice("test", "app-1-abc", slice("app-1", false));
    assert_eq!(available(&changes), ["app-0"]);
    match &changes[0] {
        Change::Decided {
            decision: Decision::Desired { traffic, .. },
            ..
        } => assert_eq!(
            traffic.versions[1].reason.as_deref(),
            Some("svc/app-1 has EndpointSlices but no ready endpoint")
        ),
        other => panic!("{other:#?}"),
    }
    // The Deployment follows: nothing more to decide (the reason names the first resource).
    assert!(
        index
            .upsert_resource("deploy", "test", "app-1", deployment(false))
            .is_empty()
    );
    // A second slice with a ready endpoint is enough for the Service, not for the Deployment.
    assert!(
        index
            .upsert_slice("test", "app-1-def", slice("app-1", true))
            .len()
            == 1
    );
    let changes = index.upsert_resource("deploy", "test", "app-1", deployment(true));
    assert_eq!(available(&changes), ["app-0", "app-1"]);
    // Deleting the ready slice leaves only the not-ready one: gone again.
    let changes = index.upsert_slice("test", "app-1-def", None);
    assert_eq!(available(&changes), ["app-0"]);
    // Deleting the last slice: no slice known, judged by the Service and Deployment alone.
    let changes = index.upsert_slice("test", "app-1-abc", None);
    assert_eq!(available(&changes), ["app-0", "app-1"]);
}

#[test]
fn a_relist_forgets_slices_not_listed_again() {
    let mut index = ready_canary(&Config::default());
    index.upsert_slice("test", "app-1-abc", slice("app-1", false));
    index.begin_slice_relist();
    assert!(
        index
            .upsert_slice("test", "app-0-abc", slice("app-0", true))
            .is_empty()
    );
    let changes = index.end_slice_relist();
    assert_eq!(available(&changes), ["app-0", "app-1"]);
}

#[test]
fn slices_change_nothing_when_turned_off() {
    let config = Config::from_yaml("endpointSlices: false").expect("config");
    assert_eq!(config.slice_service_type(), None);
    let mut index = ready_canary(&config);
    assert!(
        index
            .upsert_slice("test", "app-1-abc", slice("app-1", false))
            .is_empty()
    );
    assert_eq!(
        Config::default().slice_service_type().as_deref(),
        Some("service")
    );
}

#[test]
fn slice_facts_from_json() {
    let s = |endpoints: serde_json::Value| {
        SliceFacts::from_json(&json!({
            "metadata": {"name": "app-1-x", "labels": {"kubernetes.io/service-name": "app-1"}},
            "endpoints": endpoints,
        }))
    };
    let ready = |r: bool| {
        Some(SliceFacts {
            service: "app-1".into(),
            ready: r,
        })
    };
    assert_eq!(
        s(json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": false}}])),
        ready(false)
    );
    assert_eq!(
        s(json!([
            {"addresses": ["10.0.0.1"], "conditions": {"ready": false}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": true}}
        ])),
        ready(true)
    );
    // `ready` absent means ready (the API's own definition); no endpoints at all: none ready.
    assert_eq!(s(json!([{"addresses": ["10.0.0.1"]}])), ready(true));
    assert_eq!(s(json!(null)), ready(false));
    assert_eq!(
        SliceFacts::from_json(&json!({"metadata": {"name": "x"}})),
        None
    );
}
