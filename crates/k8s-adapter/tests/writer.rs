//! Request-exact checks of everything the writer sends to the API server.
//!
//! A `tower-test` mock stands in for the API server at the HTTP edge. Each test lists the exact
//! calls it expects (method, path, query, content type, body) in order; the mock fails on a
//! different call, and after the writer is dropped it fails on any call left over or missing.
//! Decisions come from the real index, so the routes are what the controller would plan.

use std::time::Duration;

use http::{Request, Response};
use k8s_adapter::kube_types::Timestamp;
use k8s_adapter::metrics::Metrics;
use k8s_adapter::status::StatusWriter;
use k8s_adapter::writer::{KeptRoute, LiveEvent, LiveRoute, Writer, WriterConfig, WriterMsg};
use kube::Client;
use kube::client::Body;
use routemap_index::config::Config;
use routemap_index::index::{Change, Decision, Index};
use routemap_index::report::{self, RouteResult};
use routemap_index::routemap::{RouteMapKey, RouteMapObject};
use routing_core::ResourceFacts;
use serde_json::{Value, json};
use test_builders::{RouteMap, watched};
use tokio::task::JoinHandle;

const NS: &str = "test";
const ROUTE_PATH: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/test/httproutes/app";
const EVENTS_PATH: &str = "/api/v1/namespaces/test/events";
/// The uid the fake API server gives every route it stores.
const ROUTE_UID: &str = "route-uid";

/// One call the fake API server expects, and its answer.
struct Expect {
    method: &'static str,
    path: &'static str,
    query: &'static [(&'static str, &'static str)],
    content_type: Option<&'static str>,
    check: Box<dyn Fn(&Value) + Send>,
    status: u16,
    /// The answer; `None` echoes the request body with server fields added.
    answer: Option<Value>,
}

fn route_apply(body: Value) -> Expect {
    Expect {
        method: "PATCH",
        path: ROUTE_PATH,
        query: &[("fieldManager", "iter8-controller"), ("force", "true")],
        content_type: Some("application/apply-patch+yaml"),
        check: Box::new(move |got| assert_eq!(got, &body, "apply body is not the desired route")),
        status: 200,
        answer: None,
    }
}

fn event(kind: &'static str, reason: &'static str, note_part: &'static str) -> Expect {
    Expect {
        method: "POST",
        path: EVENTS_PATH,
        query: &[],
        content_type: Some("application/json"),
        check: Box::new(move |got| {
            assert_eq!(got["type"], kind);
            assert_eq!(got["reason"], reason);
            assert_eq!(got["reportingComponent"], "iter8-controller");
            assert_eq!(got["source"]["component"], "iter8-controller");
            assert_eq!(got["involvedObject"]["kind"], "ConfigMap");
            assert_eq!(got["involvedObject"]["name"], "app-routemap");
            assert_eq!(got["involvedObject"]["uid"], "uid-1");
            // Stamped with the writer's clock, and named after it (unique per instant).
            assert_eq!(got["eventTime"], "2026-05-28T20:26:40.000000Z");
            assert_eq!(got["firstTimestamp"], "2026-05-28T20:26:40Z");
            assert_eq!(
                got["metadata"]["name"],
                format!("app-routemap.{:x}", event_clock().as_nanosecond())
            );
            let note = got["message"].as_str().unwrap_or_default();
            assert!(
                note.contains(note_part),
                "note {note:?} lacks {note_part:?}"
            );
        }),
        status: 201,
        answer: None,
    }
}

/// The GET of the route name before its first create, answered with `answer` (`None`: 404).
fn route_get(answer: Option<Value>) -> Expect {
    Expect {
        method: "GET",
        path: ROUTE_PATH,
        query: &[],
        content_type: None,
        check: Box::new(|_| {}),
        status: if answer.is_some() { 200 } else { 404 },
        answer: Some(answer.unwrap_or_else(|| {
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                   "reason": "NotFound", "message": "httproutes.gateway.networking.k8s.io \"app\" not found"})
        })),
    }
}

/// The status annotation, applied on our route (never on the routemap ConfigMap).
fn status_apply(check: impl Fn(&Value) + Send + 'static) -> Expect {
    Expect {
        method: "PATCH",
        path: ROUTE_PATH,
        query: &[
            ("fieldManager", "iter8-controller-status"),
            ("force", "true"),
        ],
        content_type: Some("application/apply-patch+yaml"),
        check: Box::new(move |got| {
            assert_eq!(
                got["metadata"]["uid"], ROUTE_UID,
                "status apply must carry the route's uid as a precondition"
            );
            assert_eq!(got["kind"], "HTTPRoute");
            // Only our annotation: no spec, no labels (the route's apply owns those).
            assert!(got.get("spec").is_none() && got["metadata"].get("labels").is_none());
            let status: Value = serde_json::from_str(
                got["metadata"]["annotations"]["iter8.tools/status"]
                    .as_str()
                    .expect("annotation"),
            )
            .expect("status is JSON");
            check(&status);
        }),
        status: 200,
        answer: None,
    }
}

/// Serves the expected calls in order, then requires that no other call comes.
fn api_server(expects: Vec<Expect>) -> (Client, JoinHandle<()>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        for (i, e) in expects.into_iter().enumerate() {
            let (request, send) = handle
                .next_request()
                .await
                .unwrap_or_else(|| panic!("call {i} ({} {}) never came", e.method, e.path));
            assert_eq!(request.method().as_str(), e.method, "call {i}");
            assert_eq!(request.uri().path(), e.path, "call {i}");
            let mut query: Vec<(String, String)> =
                form_pairs(request.uri().query().unwrap_or_default());
            query.sort();
            let mut want: Vec<(String, String)> = e
                .query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            want.sort();
            assert_eq!(query, want, "call {i} query");
            if let Some(ct) = e.content_type {
                assert_eq!(
                    request
                        .headers()
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                    Some(ct),
                    "call {i} content type"
                );
            }
            let body = request.into_body().collect_bytes().await.expect("body");
            let body: Value = if body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&body).expect("JSON body")
            };
            (e.check)(&body);
            let mut answer = e.answer.unwrap_or_else(|| body.clone());
            if answer.get("metadata").is_some() && e.status < 300 && e.method != "GET" {
                answer["metadata"]["resourceVersion"] = json!(format!("{}", 100 + i));
                answer["metadata"]["generation"] = json!(1);
                answer["metadata"]["uid"] = json!(ROUTE_UID);
            }
            send.send_response(
                Response::builder()
                    .status(e.status)
                    .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                    .expect("response"),
            );
        }
        if let Some((request, _)) = handle.next_request().await {
            panic!("unexpected call: {} {}", request.method(), request.uri());
        }
    });
    (Client::new(service, NS), server)
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn writer(client: Client) -> Writer {
    let metrics = Metrics::default();
    let timeout = Duration::from_secs(2);
    Writer::new(
        client.clone(),
        WriterConfig {
            field_manager: "iter8-controller".into(),
            timeout,
            resync: Duration::from_secs(3600),
        },
        StatusWriter::new(client, Some("iter8-0".into()), timeout, metrics.clone())
            .with_clock(event_clock),
        metrics,
    )
}

/// The clock Events are stamped with: fixed, so that their bodies are exact.
fn event_clock() -> Timestamp {
    Timestamp::from_second(1_780_000_000).expect("a valid instant")
}

const CANARY: &str = r#"
strategy: canary
route:
  name: app
  parentRefs: [{group: "", kind: Service, name: app, port: 80}]
versions:
- name: app-0
  resources: [{gvrShort: svc, name: app-0}]
- name: app-1
  resources: [{gvrShort: svc, name: app-1}]
  matches: [{headers: [{name: traffic, value: test}]}]
"#;

fn routemap(yaml: &str) -> RouteMapObject {
    RouteMap::new(NS, "app-routemap", yaml)
        .resource_version("5")
        .object()
}

/// The index's decision for the canary routemap with `app-0` ready (and `app-1` if asked).
fn decided(candidate_ready: bool) -> Change {
    let mut index = Index::new(&Config::default());
    index.upsert_routemap(routemap(CANARY));
    index.upsert_resource("svc", NS, "app-0", watched());
    let mut changes = if candidate_ready {
        index.upsert_resource("svc", NS, "app-1", watched())
    } else {
        index.upsert_resource(
            "svc",
            NS,
            "app-0",
            ResourceFacts {
                generation: Some(1),
                ..watched()
            },
        )
    };
    if changes.is_empty() {
        changes = index
            .routemap_objects()
            .map(|object| Change::Decided {
                key: object.key.clone(),
                owner: routemap_index::index::owner_of(object),
                decision: index.decide(object, &index),
            })
            .collect();
    }
    changes.pop().expect("a decision")
}

fn desired_json(change: &Change) -> Value {
    match change {
        Change::Decided {
            decision: Decision::Desired { route: Some(r), .. },
            ..
        } => r.to_json(),
        other => panic!("not a route: {other:?}"),
    }
}

#[test]
fn kept_route_rebuilds_the_planned_route_exactly() {
    // The writer keeps only the route's owned view as text; the route it applies and the
    // fingerprint it reports are rebuilt from it and must not differ by a byte.
    for change in [decided(true), decided(false)] {
        let Change::Decided {
            decision: Decision::Desired { route: Some(r), .. },
            ..
        } = &change
        else {
            panic!("not a route: {change:?}")
        };
        let kept = KeptRoute::new(r);
        assert_eq!(kept.to_json().expect("json"), r.to_json());
        assert_eq!(
            kept.to_json().expect("json").to_string(),
            r.to_json().to_string()
        );
        // Without an owner (rendered offline) the metadata has no ownerReferences key.
        let mut orphan = r.clone();
        orphan.metadata.owner_references.clear();
        assert_eq!(
            KeptRoute::new(&orphan).to_json().expect("json"),
            orphan.to_json()
        );
    }
}

/// The route as the API server would show it: ours plus server fields and a foreign label.
fn live_copy(route: &Value, rv: &str) -> LiveEvent {
    live_with_status(route, rv, None)
}

/// [`live_copy`] carrying the status annotation a previous report wrote.
fn live_with_status(route: &Value, rv: &str, status: Option<String>) -> LiveEvent {
    let mut live = route.clone();
    live["metadata"]["resourceVersion"] = json!(rv);
    live["metadata"]["generation"] = json!(1);
    live["metadata"]["uid"] = json!(ROUTE_UID);
    if let Some(status) = status {
        live["metadata"]["annotations"]["iter8.tools/status"] = json!(status);
    }
    live["metadata"]["labels"]["team"] = json!("payments");
    live["status"] = json!({"parents": []});
    LiveEvent::Upsert(LiveRoute::from_json(&live).expect("route"))
}

/// The routemap watch saw the routemap (resourceVersion 5).
fn seen() -> WriterMsg {
    WriterMsg::Seen {
        key: RouteMapKey::new(NS, "app-routemap"),
        resource_version: Some("5".into()),
        created: Some("2026-05-28T20:00:00Z".into()),
    }
}

fn msg(change: &Change) -> WriterMsg {
    WriterMsg::Change(Box::new(change.clone()))
}

async fn finish(writer: Writer, server: JoinHandle<()>) {
    drop(writer);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the fake API server finished")
        .expect("every expected call came, and nothing else");
}

#[tokio::test]
async fn new_decision_is_applied_once_with_the_exact_request() {
    let change = decided(false);
    let route = desired_json(&change);
    let (client, server) = api_server(vec![
        // The owned-route watch does not show it: looked at before it is created.
        route_get(None),
        route_apply(route.clone()),
        event(
            "Normal",
            "RouteApplied",
            "HTTPRoute app (canary): available app-0 weight 1; unavailable app-1 (svc/app-1 not found)",
        ),
        status_apply(|s| {
            assert_eq!(s["availableVersions"], json!(["app-0"]));
            assert_eq!(s["routeGeneration"], json!(1));
            assert_eq!(s["observedResourceVersion"], json!("5"));
        }),
    ]);
    let mut w = writer(client);
    w.set_leader(true).await;
    w.handle(seen()).await;
    w.handle(WriterMsg::Live(LiveEvent::Synced)).await;
    w.handle(msg(&change)).await;
    // The same decision again (a re-list, a resync) must not write again.
    w.handle(msg(&change)).await;
    w.resync().await;
    finish(w, server).await;
}

#[tokio::test]
async fn restart_with_everything_in_place_writes_nothing() {
    let change = decided(true);
    let route = desired_json(&change);
    let Change::Decided { decision, .. } = &change else {
        unreachable!()
    };
    // What the previous run reported, as the route's annotation shows it.
    let reported = report::report(
        Some("app"),
        decision,
        &RouteResult::Applied {
            generation: Some(1),
        },
        Some("5"),
        None,
    )
    .expect("report")
    .status;
    let (client, server) = api_server(vec![]);
    let mut w = writer(client);
    w.set_leader(true).await;
    w.handle(seen()).await;
    w.handle(WriterMsg::Live(LiveEvent::Relisting)).await;
    w.handle(WriterMsg::Live(live_with_status(
        &route,
        "40",
        Some(serde_json::to_string(&reported).expect("json")),
    )))
    .await;
    w.handle(WriterMsg::Live(LiveEvent::Synced)).await;
    w.handle(msg(&change)).await;
    w.resync().await;
    finish(w, server).await;
}

#[tokio::test]
async fn someone_elses_edit_of_our_fields_is_repaired_once() {
    let change = decided(true);
    let route = desired_json(&change);
    let (client, server) = api_server(vec![
        event(
            "Normal",
            "VersionsChanged",
            "available app-0 weight 1, app-1 weight 1",
        ),
        status_apply(|s| assert_eq!(s["availableVersions"], json!(["app-0", "app-1"]))),
        route_apply(route.clone()),
    ]);
    let mut w = writer(client);
    w.set_leader(true).await;
    w.handle(WriterMsg::Live(live_copy(&route, "40"))).await;
    w.handle(WriterMsg::Live(LiveEvent::Synced)).await;
    // The live route already matches: no route write, only the first report.
    w.handle(msg(&change)).await;
    // Someone points the candidate rule at the primary.
    let mut edited = route.clone();
    edited["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("app-0");
    w.handle(WriterMsg::Live(live_copy(&edited, "41"))).await;
    // The echo of our repair (rv 102 is what the fake server answered) changes nothing more.
    w.handle(WriterMsg::Live(live_copy(&route, "102"))).await;
    // A label edit by someone else on a field we do not own is not drift.
    w.handle(WriterMsg::Live(live_copy(&route, "103"))).await;
    finish(w, server).await;
}

#[tokio::test]
async fn invalid_routemap_warns_and_leaves_the_route_alone() {
    let mut index = Index::new(&Config::default());
    let bad = CANARY.replace(
        "  matches: [{headers: [{name: traffic, value: test}]}]\n",
        "",
    );
    let change = index
        .upsert_routemap(routemap(&bad))
        .pop()
        .expect("a decision");
    assert!(matches!(
        &change,
        Change::Decided {
            decision: Decision::Invalid { .. },
            ..
        }
    ));
    let (client, server) = api_server(vec![
        // No route of its own yet: reported by the Event only.
        event(
            "Warning",
            "InvalidRouteMap",
            "data[routemap.yaml].versions[1]",
        ),
    ]);
    let mut w = writer(client);
    w.set_leader(true).await;
    w.handle(WriterMsg::Live(LiveEvent::Synced)).await;
    w.handle(msg(&change)).await;
    w.handle(msg(&change)).await;
    finish(w, server).await;
}

#[tokio::test]
async fn follower_writes_nothing_until_elected() {
    let change = decided(false);
    let route = desired_json(&change);
    let (client, server) = api_server(vec![
        route_get(None),
        route_apply(route.clone()),
        event("Normal", "RouteApplied", "HTTPRoute app"),
        status_apply(|_| {}),
    ]);
    let mut w = writer(client);
    w.handle(WriterMsg::Live(LiveEvent::Synced)).await;
    w.handle(msg(&change)).await;
    w.resync().await;
    // Elected: catch up at once.
    w.set_leader(true).await;
    finish(w, server).await;
}

// The clock is paused: the backoff is waited out at once, with no real sleep.
#[tokio::test(start_paused = true)]
async fn transient_failure_is_retried_with_backoff() {
    let change = decided(false);
    let route = desired_json(&change);
    let mut unavailable = route_apply(route.clone());
    unavailable.status = 503;
    unavailable.answer = Some(
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503, "message": "etcd is slow"}),
    );
    let (client, server) = api_server(vec![
        route_get(None),
        unavailable,
        // No route yet: the failure is told by the Event only.
        event("Warning", "ApplyFailed", "etcd is slow"),
        // Each create is looked at first.
        route_get(None),
        route_apply(route.clone()),
        event("Normal", "RouteApplied", "HTTPRoute app"),
        status_apply(|s| assert!(s.get("lastError").is_none())),
    ]);
    let mut w = writer(client);
    w.set_leader(true).await;
    w.handle(WriterMsg::Live(LiveEvent::Synced)).await;
    w.handle(msg(&change)).await;
    let at = w.next_retry().expect("a retry is scheduled");
    // Not before the backoff: a resync meanwhile does not hammer the server.
    w.resync().await;
    tokio::time::sleep_until(at).await;
    w.retry_due().await;
    assert_eq!(w.next_retry(), None);
    finish(w, server).await;
}

/// A route someone else made under the name the routemap asks for: looked at, never written
/// (no apply, no status, no delete), a Warning naming who holds it, and nothing more at resync.
#[tokio::test]
async fn a_foreign_route_is_looked_at_and_never_written() {
    let change = decided(true);
    let foreign = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "app", "namespace": NS, "uid": "victim-uid", "resourceVersion": "3",
                     "managedFields": [{"manager": "platform-team", "operation": "Apply"}]},
        "spec": {"parentRefs": [{"name": "prod-gateway"}],
                 "rules": [{"backendRefs": [{"name": "payments", "port": 80}]}]},
    });
    let (client, server) = api_server(vec![
        route_get(Some(foreign)),
        event("Warning", "RouteNotOwned", "platform-team"),
    ]);
    let mut w = writer(client);
    w.set_leader(true).await;
    w.handle(WriterMsg::Live(LiveEvent::Synced)).await;
    w.handle(msg(&change)).await;
    w.handle(msg(&change)).await;
    w.resync().await;
    finish(w, server).await;
}

/// The status write fails after its Event went out: at the next resync the status is written
/// again alone, and the Event is not published a second time.
#[tokio::test]
async fn a_failed_status_write_is_retried_without_its_event() {
    let change = decided(false);
    let route = desired_json(&change);
    let mut failing = status_apply(|_| {});
    failing.status = 500;
    failing.answer = Some(
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "etcd timed out"}),
    );
    let (client, server) = api_server(vec![
        route_get(None),
        route_apply(route.clone()),
        event("Normal", "RouteApplied", "HTTPRoute app (canary)"),
        failing,
        // The resync: the status alone, the same as the failed one.
        status_apply(|s| assert_eq!(s["availableVersions"], json!(["app-0"]))),
    ]);
    let mut w = writer(client);
    w.set_leader(true).await;
    w.handle(seen()).await;
    w.handle(WriterMsg::Live(LiveEvent::Synced)).await;
    w.handle(msg(&change)).await;
    w.resync().await;
    // Told: another resync writes nothing.
    w.resync().await;
    finish(w, server).await;
}
