//! The Lease election against a fake API server at the HTTP edge (`tower-test`), in virtual
//! time: a small Lease store that honours the resourceVersion precondition of merge patches as
//! the API server does, and can be cut off (every call left unanswered).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use k8s_adapter::leader::{Election, LeaderSettings, Timings};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::time::Instant;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ns/leases";
const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/leader";

#[derive(Default)]
struct Store {
    lease: Option<Value>,
    version: u64,
    /// Every call but watches: (when, method, body).
    calls: Vec<(Instant, String, Value)>,
    /// Leave every call unanswered from now on.
    cut: bool,
}

fn status(code: u16) -> Value {
    let reason = match code {
        404 => "NotFound",
        409 => "Conflict",
        _ => "InternalError",
    };
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code})
}

/// Merges `patch` into `target` (JSON merge patch: null removes).
fn merge(target: &mut Value, patch: &Value) {
    if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else if v.is_object() {
                merge(t.entry(k.clone()).or_insert_with(|| json!({})), v);
            } else {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

fn answer(store: &mut Store, method: &str, body: &Value) -> (u16, Value) {
    store
        .calls
        .push((Instant::now(), method.to_string(), body.clone()));
    match (method, store.lease.as_mut()) {
        ("GET", None) => (404, status(404)),
        ("GET", Some(l)) => (200, l.clone()),
        ("POST", Some(_)) => (409, status(409)),
        ("POST", None) => {
            store.version += 1;
            let mut l = body.clone();
            l["metadata"]["resourceVersion"] = json!(store.version.to_string());
            store.lease = Some(l.clone());
            (201, l)
        }
        ("PATCH", Some(l)) => {
            if body["metadata"]["resourceVersion"] != l["metadata"]["resourceVersion"] {
                return (409, status(409));
            }
            store.version += 1;
            merge(l, body);
            l["metadata"]["resourceVersion"] = json!(store.version.to_string());
            (200, l.clone())
        }
        _ => (404, status(404)),
    }
}

fn api_server(store: Arc<Mutex<Store>>) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let watch = request.uri().query().unwrap_or("").contains("watch=true");
            if watch || store.lock().expect("store").cut {
                held.push(send);
                continue;
            }
            let path = request.uri().path();
            assert!(path == PATH || path == LEASES, "unexpected path {path}");
            let method = request.method().to_string();
            if method == "PATCH" {
                assert_eq!(
                    request
                        .headers()
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                    Some("application/merge-patch+json")
                );
            }
            let bytes = request.into_body().collect_bytes().await.expect("body");
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, out) = answer(&mut store.lock().expect("store"), &method, &body);
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&out).expect("json")))
                    .expect("response"),
            );
        }
    });
    Client::new(service, "ns")
}

fn settings(identity: &str) -> LeaderSettings {
    LeaderSettings {
        namespace: "ns".into(),
        lease_name: "leader".into(),
        identity: identity.into(),
    }
}

fn holder(store: &Arc<Mutex<Store>>) -> Option<String> {
    store.lock().expect("store").lease.as_ref()?["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(start_paused = true)]
async fn a_free_lease_is_taken_renewed_with_a_precondition_and_released() {
    let store = Arc::new(Mutex::new(Store::default()));
    let election = Election::start(
        api_server(store.clone()),
        &settings("me"),
        Timings::default(),
        None,
    )
    .expect("starts");
    let mut leader = election.is_leader.clone();
    leader.wait_for(|l| *l).await.expect("becomes leader");
    assert!(election.fence.is_open());
    tokio::time::sleep(Duration::from_secs(7)).await;
    {
        let s = store.lock().expect("store");
        let patches: Vec<&Value> = s
            .calls
            .iter()
            .filter(|c| c.1 == "PATCH")
            .map(|c| &c.2)
            .collect();
        // Renewed every 2 s, each patch conditional on the version just read.
        assert_eq!(patches.len(), 3, "{patches:?}");
        assert!(
            patches
                .iter()
                .all(|p| p["metadata"]["resourceVersion"].is_string())
        );
        assert!(patches.iter().all(|p| p["spec"]["holderIdentity"] == "me"));
    }
    drop(leader);
    election.release(Duration::from_secs(2)).await;
    assert_eq!(
        holder(&store),
        None,
        "the Lease is released for the next replica"
    );
}

#[tokio::test(start_paused = true)]
async fn a_held_lease_is_taken_only_a_lease_duration_after_its_last_change_was_seen() {
    let store = Arc::new(Mutex::new(Store {
        lease: Some(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "leader", "namespace": "ns", "resourceVersion": "1"},
            "spec": {"holderIdentity": "other", "leaseDurationSeconds": 15, "leaseTransitions": 4},
        })),
        version: 1,
        ..Store::default()
    }));
    let start = Instant::now();
    let election = Election::start(
        api_server(store.clone()),
        &settings("me"),
        Timings::default(),
        None,
    )
    .expect("starts");
    let mut leader = election.is_leader.clone();
    leader.wait_for(|l| *l).await.expect("takes over");
    let took = Instant::now() - start;
    // The holder never renewed: taken 15 s after it was first seen, not before.
    assert!(
        took >= Duration::from_secs(15) && took <= Duration::from_secs(16),
        "{took:?}"
    );
    let lease = store.lock().expect("store").lease.clone().expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "me");
    assert_eq!(lease["spec"]["leaseTransitions"], 5);
    drop(leader);
    election.release(Duration::from_secs(2)).await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_stops_writing_at_the_renew_deadline_before_the_lease_can_be_taken() {
    let store = Arc::new(Mutex::new(Store::default()));
    let election = Election::start(
        api_server(store.clone()),
        &settings("me"),
        Timings::default(),
        None,
    )
    .expect("starts");
    let mut leader = election.is_leader.clone();
    leader.wait_for(|l| *l).await.expect("becomes leader");
    tokio::time::sleep(Duration::from_secs(3)).await;
    store.lock().expect("store").cut = true;
    let last_renewal = store
        .lock()
        .expect("store")
        .calls
        .iter()
        .rev()
        .find(|c| c.1 == "PATCH" || c.1 == "POST")
        .map(|c| c.0)
        .expect("a renewal");
    leader.wait_for(|l| !*l).await.expect("steps down");
    let stepped_down = Instant::now();
    assert!(!election.fence.is_open());
    // Ten seconds after the last renewal was sent; another replica must wait fifteen.
    assert_eq!(stepped_down - last_renewal, Duration::from_secs(10));
    drop(leader);
    election.release(Duration::from_millis(10)).await;
}
