//! The writer under the leadership fence, at the HTTP edge (a `tower-test` mock API server):
//! nothing is sent while the fence is closed, and a call in flight when it closes is dropped at
//! that instant, not at the end of its own timeout.

use std::time::Duration;

use http::{Request, Response};
use k8s_adapter::fence::Fence;
use k8s_adapter::metrics::Metrics;
use k8s_adapter::status::StatusWriter;
use k8s_adapter::writer::{LiveEvent, Writer, WriterConfig, WriterMsg};
use kube::Client;
use kube::client::Body;
use routemap_index::config::Config;
use routemap_index::index::{Change, Index};
use test_builders::{RouteMap, watched};
use tokio::time::Instant;
use tower_test::mock::Handle;

const NS: &str = "test";
const CANARY: &str = r#"
strategy: canary
route:
  name: app
  parentRefs: [{group: "", kind: Service, name: app, port: 80}]
versions:
- name: app-0
  resources: [{gvrShort: svc, name: app-0}]
"#;

/// The index's decision for a one-version routemap whose version is ready.
fn decided() -> Change {
    let mut index = Index::new(&Config::default());
    index.upsert_routemap(
        RouteMap::new(NS, "app-routemap", CANARY)
            .resource_version("5")
            .object(),
    );
    index
        .upsert_resource("svc", NS, "app-0", watched())
        .pop()
        .expect("a decision")
}

fn writer(fence: Fence) -> (Writer, Handle<Request<Body>, Response<Body>>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let metrics = Metrics::default();
    // A per-call timeout far past the fence: only the fence can end the call early.
    let timeout = Duration::from_secs(60);
    let w = Writer::new(
        client.clone(),
        WriterConfig {
            field_manager: "iter8-controller".into(),
            timeout,
            resync: Duration::from_secs(3600),
        },
        StatusWriter::new(client, Some("iter8-0".into()), timeout, metrics.clone()),
        metrics,
    )
    .with_fence(fence);
    (w, handle)
}

#[tokio::test(start_paused = true)]
async fn nothing_is_sent_while_the_fence_is_closed() {
    let (mut w, mut api) = writer(Fence::closed());
    // The flag says leader (it lags the fence by a moment); the fence says no.
    w.set_leader(true).await;
    w.handle(WriterMsg::Live(LiveEvent::Synced)).await;
    w.handle(WriterMsg::Change(Box::new(decided()))).await;
    drop(w);
    assert!(
        api.next_request().await.is_none(),
        "a call went out through a closed fence"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_in_flight_is_dropped_when_the_fence_runs_out() {
    let fence = Fence::closed();
    let start = Instant::now();
    fence.open_until(start + Duration::from_secs(5));
    let (mut w, mut api) = writer(fence.clone());
    // The route name is looked at first (404: no such route); then the API server takes the
    // apply and never answers (a partition).
    let server = tokio::spawn(async move {
        let (look, send) = api.next_request().await.expect("the GET before the create");
        assert_eq!(look.method(), http::Method::GET);
        send.send_response(
            Response::builder()
                .status(404)
                .body(Body::from(
                    br#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":404,"reason":"NotFound"}"#
                        .to_vec(),
                ))
                .expect("response"),
        );
        let (request, send) = api.next_request().await.expect("the apply");
        (request.method().clone(), send, api)
    });
    w.set_leader(true).await;
    w.handle(WriterMsg::Live(LiveEvent::Synced)).await;
    w.handle(WriterMsg::Change(Box::new(decided()))).await;
    // Returned at the fence's deadline, not after the 60 s call timeout.
    assert_eq!(Instant::now() - start, Duration::from_secs(5));
    assert!(!fence.is_open());
    let (method, _unanswered, mut api) = server.await.expect("the mock ran");
    assert_eq!(method, http::Method::PATCH);
    drop(w);
    assert!(
        api.next_request().await.is_none(),
        "a call went out after the fence closed"
    );
}
