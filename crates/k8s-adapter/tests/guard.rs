//! The guard task against a Prometheus played by a fake HTTP client: the exact requests it
//! makes, what it tells the index, and how it behaves when Prometheus cannot be reached.
//! Time is tokio's paused clock, so a 1 s interval takes no wall time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_adapter::guard::{Fetch, Fetched, GuardMsg, GuardSettings, run_guard};
use k8s_adapter::index_task::IndexMsg;
use k8s_adapter::metrics::{Metrics, render};
use prometheus_client::registry::Registry;
use routemap_index::config::Config;
use routemap_index::index::{GuardView, Index, Withdrawals, Withdrawn};
use routemap_index::routemap::RouteMapKey;
use test_builders::{RouteMap, deployment, watched};
use tokio::sync::mpsc;

/// Answers by query: the request count, else the error rate; or no answer at all.
#[derive(Default)]
struct FakePrometheus {
    requests: f64,
    error_rate: f64,
    down: bool,
    urls: Mutex<Vec<String>>,
    /// Overrides, served first.
    next: Mutex<VecDeque<Fetched>>,
}

fn vector(v: f64) -> Vec<u8> {
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1700000000.000,"{v}"]}}]}}}}"#
    )
    .into_bytes()
}

impl Fetch for FakePrometheus {
    fn get(&self, url: String, _timeout: Duration) -> BoxFuture<'static, Fetched> {
        self.urls.lock().expect("lock").push(url.clone());
        let answer = self
            .next
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or_else(|| {
                if self.down {
                    Err("connection refused".to_string())
                } else if url.contains("envoy_cluster_upstream_rq_xx") {
                    Ok((200, vector(self.error_rate)))
                } else {
                    Ok((200, vector(self.requests)))
                }
            });
        Box::pin(async move { answer })
    }
}

const GUARD: &str = "guard:\n  prometheus: http://prom.example:9090/base/\n  interval: 1s\n  window: 10s\n  failAfter: 2\n  metrics: envoy\n  objectives: {errorRate: 0.01}\n";

fn view(generation: i64) -> GuardView {
    view_restored(generation, None)
}

/// The view of a routemap whose route's status says the candidate was withdrawn with identity
/// `restored` (a restarted controller).
fn view_restored(generation: i64, restored: Option<&str>) -> GuardView {
    let mut index = Index::new(&Config::default());
    let spec = format!("{}{GUARD}", test_builders::canary_spec("app"));
    index.upsert_routemap(RouteMap::new("test", "app-routemap", spec).object());
    for v in ["app-0", "app-1"] {
        index.upsert_resource("svc", "test", v, watched());
        let mut d = deployment(true);
        d.generation = Some(generation);
        d.observed_generation = Some(generation);
        index.upsert_resource("deploy", "test", v, d);
    }
    let key = RouteMapKey::new("test", "app-routemap");
    if let Some(identity) = restored {
        let uid = index
            .routemap_objects()
            .next()
            .map(|o| o.uid.clone())
            .expect("held");
        let withdrawn = Withdrawals::from([(
            "app-1".to_string(),
            Withdrawn {
                why: "before the restart".into(),
                identity: identity.into(),
            },
        )]);
        index.restore_withdrawn(&key, &uid, withdrawn);
    }
    index.guard_view(&key).expect("guarded")
}

struct Running {
    guard: mpsc::UnboundedSender<GuardMsg>,
    index: mpsc::Receiver<IndexMsg>,
    registry: Registry,
}

fn start(prometheus: Arc<FakePrometheus>) -> Running {
    let (guard, rx) = mpsc::unbounded_channel();
    let (index_tx, index) = mpsc::channel(16);
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    tokio::spawn(run_guard(
        rx,
        index_tx,
        prometheus,
        GuardSettings {
            default_prometheus: None,
            queries_in_flight: 4,
        },
        None,
        metrics,
    ));
    Running {
        guard,
        index,
        registry,
    }
}

/// The value of one series in the metrics text (0 when absent).
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn next_guard_msg(index: &mut mpsc::Receiver<IndexMsg>) -> (String, Option<Withdrawn>) {
    let msg = tokio::time::timeout(Duration::from_secs(30), index.recv())
        .await
        .expect("a message within 30 s")
        .expect("open");
    let IndexMsg::Guard {
        key,
        version,
        withdrawn,
    } = msg
    else {
        panic!("a guard message: {msg:?}");
    };
    assert_eq!(key, RouteMapKey::new("test", "app-routemap"));
    (version, withdrawn)
}

#[tokio::test(start_paused = true)]
async fn a_failing_candidate_is_withdrawn_after_fail_after_verdicts_with_why() {
    let prometheus = Arc::new(FakePrometheus {
        requests: 240.0,
        error_rate: 0.2,
        ..Default::default()
    });
    let mut run = start(prometheus.clone());
    run.guard
        .send(GuardMsg::View(Box::new(view(1))))
        .expect("send");
    let started = tokio::time::Instant::now();
    let (version, why) = next_guard_msg(&mut run.index).await;
    assert_eq!(version, "app-1", "only the candidate is judged");
    let withdrawn = why.expect("withdrawn");
    assert_eq!(
        withdrawn.identity, "svc/app-1:-;deploy/app-1:1;",
        "the identity judged"
    );
    let why = withdrawn.why;
    assert!(
        why.starts_with("errorRate 0.2 is over the limit 0.01 over 10s (240 requests), 2 failing verdicts in a row; query: (sum(increase(envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"test/app-1/80\""),
        "{why}"
    );
    // Two judgements one interval apart: within two intervals of the first view.
    assert!(
        started.elapsed() <= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let urls = prometheus.urls.lock().expect("lock").clone();
    assert_eq!(
        urls.len(),
        4,
        "two judgements of two queries each: {urls:#?}"
    );
    for url in &urls {
        assert!(
            url.starts_with("http://prom.example:9090/base/api/v1/query?query="),
            "{url}"
        );
        assert!(url.contains("&time="), "{url}");
        assert!(
            url.contains("test%2Fapp-1%2F80"),
            "the candidate's cluster: {url}"
        );
    }
    // Withdrawn: not asked again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(prometheus.urls.lock().expect("lock").len(), 4);
    let text = render(&run.registry);
    assert!(text.contains("iter8_guard_withdrawals_total 1"), "{text}");
    assert!(
        text.contains("iter8_guard_withdrawn_candidates 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"iter8_guard_verdicts_total{verdict="failing"} 2"#),
        "{text}"
    );

    // A new generation of the candidate: back in, judged afresh.
    run.guard
        .send(GuardMsg::View(Box::new(view(2))))
        .expect("send");
    let (version, why) = next_guard_msg(&mut run.index).await;
    assert_eq!((version.as_str(), why), ("app-1", None));
}

#[tokio::test(start_paused = true)]
async fn a_healthy_or_quiet_candidate_is_never_withdrawn() {
    let prometheus = Arc::new(FakePrometheus {
        requests: 5.0, // under minRequests (20): unknown, never failing
        error_rate: 0.5,
        ..Default::default()
    });
    let mut run = start(prometheus.clone());
    run.guard
        .send(GuardMsg::View(Box::new(view(1))))
        .expect("send");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(run.index.try_recv().is_err(), "no withdrawal");
    let text = render(&run.registry);
    // One judgement per second; where the first falls in its second depends on the clock.
    let unknown = series(&text, r#"iter8_guard_verdicts_total{verdict="unknown"}"#);
    assert!((29.0..=30.0).contains(&unknown), "{text}");
}

#[tokio::test(start_paused = true)]
async fn prometheus_down_withdraws_nothing_and_is_reported_once() {
    let prometheus = Arc::new(FakePrometheus {
        down: true,
        ..Default::default()
    });
    let mut run = start(prometheus.clone());
    run.guard
        .send(GuardMsg::View(Box::new(view(1))))
        .expect("send");
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(run.index.try_recv().is_err(), "no withdrawal");
    let text = render(&run.registry);
    assert!(
        text.contains("iter8_guard_prometheus_unreachable 1"),
        "{text}"
    );
    // Two queries a judgement, one judgement a second.
    let unreachable = series(&text, r#"iter8_guard_queries_total{result="unreachable"}"#);
    assert!((38.0..=40.0).contains(&unreachable), "{text}");
}

#[tokio::test(start_paused = true)]
async fn error_bodies_and_nan_are_unknown_not_failing() {
    let prometheus = Arc::new(FakePrometheus {
        requests: 240.0,
        error_rate: f64::NAN,
        ..Default::default()
    });
    prometheus.next.lock().expect("lock").extend([
        Ok((
            422,
            br#"{"status":"error","errorType":"execution","error":"query timed out"}"#.to_vec(),
        )),
        Ok((200, b"not json".to_vec())),
    ]);
    let mut run = start(prometheus.clone());
    run.guard
        .send(GuardMsg::View(Box::new(view(1))))
        .expect("send");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(run.index.try_recv().is_err(), "no withdrawal");
    let text = render(&run.registry);
    assert!(
        text.contains(r#"iter8_guard_queries_total{result="prometheus"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"iter8_guard_queries_total{result="malformed"} 1"#),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_routemap_gone_is_no_longer_judged() {
    let prometheus = Arc::new(FakePrometheus {
        requests: 240.0,
        ..Default::default()
    });
    let run = start(prometheus.clone());
    run.guard
        .send(GuardMsg::View(Box::new(view(1))))
        .expect("send");
    tokio::time::sleep(Duration::from_secs(3)).await;
    run.guard
        .send(GuardMsg::Gone(RouteMapKey::new("test", "app-routemap")))
        .expect("send");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = prometheus.urls.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(prometheus.urls.lock().expect("lock").len(), asked);
}

#[tokio::test(start_paused = true)]
async fn a_candidate_withdrawn_before_a_restart_stays_out_while_the_same() {
    let prometheus = Arc::new(FakePrometheus {
        requests: 240.0,
        ..Default::default()
    });
    let mut run = start(prometheus.clone());
    run.guard
        .send(GuardMsg::View(Box::new(view_restored(
            1,
            Some("svc/app-1:-;deploy/app-1:1;"),
        ))))
        .expect("send");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(run.index.try_recv().is_err(), "kept out, nothing said");
    assert!(
        prometheus.urls.lock().expect("lock").is_empty(),
        "a withdrawn candidate is not queried"
    );
    let text = render(&run.registry);
    assert_eq!(
        series(&text, "iter8_guard_withdrawn_candidates"),
        1.0,
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_candidate_rolled_out_anew_during_a_restart_is_let_back_in() {
    let prometheus = Arc::new(FakePrometheus {
        requests: 240.0,
        ..Default::default()
    });
    let mut run = start(prometheus);
    // Withdrawn at generation 1; the controller comes back to generation 2.
    run.guard
        .send(GuardMsg::View(Box::new(view_restored(
            2,
            Some("svc/app-1:-;deploy/app-1:1;"),
        ))))
        .expect("send");
    let (version, withdrawn) = next_guard_msg(&mut run.index).await;
    assert_eq!((version.as_str(), withdrawn), ("app-1", None));
}
