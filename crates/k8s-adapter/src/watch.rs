//! Watches: the cluster's objects become small values fed to the index and the writer.
//!
//! Three kinds of watch run, each with a label selector so the API server filters for us:
//! - routemap ConfigMaps (`iter8.tools/kind=routemap`) -> [`RouteMapObject`] plus the status
//!   annotation we last wrote;
//! - every configured resource type (`iter8.tools/watch=true`), as dynamic objects ->
//!   [`ResourceFacts`];
//! - EndpointSlices (`kubernetes.io/service-name`), when `endpointSlices` is on and Services
//!   are a configured type -> one bit per slice (a ready endpoint or not) for the Service's
//!   readiness (`routemap_index::index::slices`);
//! - the HTTPRoutes we own (`app.kubernetes.io/managed-by=iter8-controller`) -> [`LiveRoute`],
//!   straight to the writer, to repair drift.
//!
//! Whole objects are dropped as soon as they are converted. All index updates go through ONE
//! task ([`crate::index_task::run_index`]) over a channel; a watch restart (`Init`,
//! `InitApply`..., `InitDone`) maps to the index's re-list calls, which delete what was not
//! listed again. A configured type whose CRD is not installed is reported once (a warning and
//! the `iter8_watch_type_missing` gauge) and retried with a backoff doubling from 1 s to 5 min
//! until it appears; it does not fail the process or flood the log.
//!
//! After each event's messages (after a whole initial list), a watch sends an `Observed` mark
//! with the event's resourceVersion down the same path: through the index task (held while the
//! index is paused) to the writer, which sets `iter8_observed_resource_version{watch}` once the
//! writes of everything before the mark are done. A watch delivers its events in
//! resourceVersion order, so the gauge at `N` means every event of that watch up to `N` is
//! indexed, decided and written (the e2e tests wait for it instead of sleeping).

use std::fmt::Debug;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use routing_core::keys::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, ROUTEMAP_KIND_LABEL, WATCH_LABEL};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::admin::CacheSync;
use crate::apply::{LiveEvent, LiveRoute, RouteId, WriterMsg};
use crate::index_task::{
    IndexMsg, SLICES_WATCH, index_mark, resource_message, routemap_message, slice_message,
};
use crate::kube_types::{ConfigMap, DynamicObject, api_resource, httproute_resource};
use crate::metrics::Metrics;
use routemap_index::config::Config;
use routemap_index::routemap::RouteMapKey;

fn live_route(obj: &DynamicObject) -> Option<LiveRoute> {
    LiveRoute::from_json(&serde_json::to_value(obj).ok()?)
}

fn is_not_found(e: &watcher::Error) -> bool {
    matches!(
        e,
        watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s))
            if s.code == 404
    )
}

/// Runs one watch until its consumer goes away. `name` labels logs, metrics and readiness.
///
/// A type the API server does not serve (404 on list) is not left to the watcher's own retry,
/// which restarts every second or so: the stream is dropped and made again after a backoff
/// doubling from 1 s to 5 min, and the absence is logged once.
#[allow(clippy::too_many_arguments)]
async fn drive<K, M, S, F>(
    name: String,
    make: impl Fn() -> S,
    tx: impl Fn(M) -> BoxFuture<'static, bool>,
    mut convert: F,
    mark: impl Fn(&str, i64) -> M,
    on_missing: impl Fn() -> Option<M>,
    metrics: Metrics,
    readiness: CacheSync,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
    F: FnMut(Event<K>) -> Vec<M>,
{
    let mut missing = false;
    let mut synced = false;
    let mut absent_backoff = absent_backoff();
    // Highest resourceVersion of the list in progress: marked once the list is complete.
    let mut listed: Option<i64> = None;
    loop {
        let mut stream = std::pin::pin!(make());
        let mut restart_after = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    // `Init` comes before the list call, so it proves nothing about the type.
                    if missing && !matches!(event, Event::Init) {
                        missing = false;
                        absent_backoff = self::absent_backoff();
                        metrics.set_type_missing(&name, false);
                        tracing::info!(watch = %name, "resource type is now served; watching it");
                    }
                    let done = matches!(event, Event::InitDone);
                    let observed = match &event {
                        Event::Init => {
                            listed = None;
                            None
                        }
                        Event::InitApply(o) => {
                            listed = listed.max(resource_version(o));
                            None
                        }
                        Event::InitDone => listed.take(),
                        Event::Apply(o) | Event::Delete(o) => resource_version(o),
                    };
                    for msg in convert(event) {
                        if !tx(msg).await {
                            return;
                        }
                    }
                    if let Some(rv) = observed
                        && !tx(mark(&name, rv)).await
                    {
                        return;
                    }
                    if done && !synced {
                        synced = true;
                        readiness.synced(&name);
                        tracing::info!(watch = %name, "initial list complete");
                    }
                }
                Err(e) if is_not_found(&e) => {
                    if !missing {
                        missing = true;
                        metrics.set_type_missing(&name, true);
                        // Nothing to cache: an absent optional type must not keep us unready.
                        readiness.synced(&name);
                        // ... nor keep decisions waiting for its initial list.
                        if let Some(msg) = on_missing()
                            && !tx(msg).await
                        {
                            return;
                        }
                        tracing::warn!(watch = %name, error = %e, "resource type is not served by the API server (CRD not installed?); retrying with backoff, reported once");
                    } else {
                        tracing::debug!(watch = %name, "resource type still not served");
                    }
                    restart_after = Some(absent_backoff.next().unwrap_or(Duration::from_secs(300)));
                    break;
                }
                Err(e) => {
                    metrics.error("watch");
                    tracing::warn!(watch = %name, error = %e, "watch failed; retrying with backoff");
                }
            }
        }
        match restart_after {
            Some(delay) => tokio::time::sleep(delay).await,
            None => return,
        }
    }
}

/// An object's resourceVersion as an integer (etcd revisions: ordered within a watch).
fn resource_version<K: Resource>(obj: &K) -> Option<i64> {
    obj.meta().resource_version.as_deref()?.parse().ok()
}

fn absent_backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(300))
        .with_jitter()
        .without_max_times()
        .build()
}

fn configmap_api(client: &Client, namespace: Option<&str>) -> Api<ConfigMap> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn dynamic_api(
    client: &Client,
    namespace: Option<&str>,
    resource: &kube::core::ApiResource,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// Starts every watch. `namespace` is `None` for a cluster-scoped controller.
pub fn spawn_watches(
    client: &Client,
    config: &Config,
    namespace: Option<&str>,
    index: mpsc::Sender<IndexMsg>,
    writer: mpsc::Sender<WriterMsg>,
    metrics: &Metrics,
    readiness: &CacheSync,
) -> Vec<JoinHandle<()>> {
    let scope = namespace.map_or("all namespaces".to_string(), |ns| format!("namespace {ns}"));
    let mut tasks = Vec::new();
    // Waiting on a full index channel only waits for the index task, which does no IO.
    let send_index = |tx: mpsc::Sender<IndexMsg>| {
        move |m: IndexMsg| -> BoxFuture<'static, bool> {
            let tx = tx.clone();
            Box::pin(async move { tx.send(m).await.is_ok() })
        }
    };

    // First message on the index channel (before any watch runs): which initial lists to await.
    let mut initial = vec!["routemaps".to_string()];
    initial.extend(config.watched_types().into_iter().map(|(short, _)| short));
    let slices = config.slice_service_type().is_some();
    if slices {
        initial.push(SLICES_WATCH.to_string());
    }
    let _ = index.try_send(IndexMsg::AwaitInitialLists(initial));

    // Routemaps.
    let selector = format!("{ROUTEMAP_KIND_LABEL}=routemap");
    tracing::info!(kind = "ConfigMap", selector = %selector, scope = %scope, "watching routemaps");
    readiness.expect("routemaps");
    let api = configmap_api(client, namespace);
    tasks.push(tokio::spawn(drive(
        "routemaps".to_string(),
        move || watcher(api.clone(), &selector),
        send_index(index.clone()),
        |event: Event<ConfigMap>| match event {
            Event::Init => vec![IndexMsg::RouteMapsRelisting],
            Event::InitApply(cm) | Event::Apply(cm) => vec![routemap_message(&cm)],
            Event::Delete(cm) => vec![IndexMsg::RouteMapDeleted(RouteMapKey::new(
                cm.metadata.namespace.unwrap_or_default(),
                cm.metadata.name.unwrap_or_default(),
            ))],
            Event::InitDone => vec![IndexMsg::RouteMapsSynced],
        },
        index_mark,
        || None,
        metrics.clone(),
        readiness.clone(),
    )));

    // Version resources, one watch per distinct group/resource.
    let selector = format!("{WATCH_LABEL}=true");
    for (short, t) in config.watched_types() {
        let resource = api_resource(&t);
        tracing::info!(kind = %resource.kind, api_version = %resource.api_version, short = %short, selector = %selector, scope = %scope, "watching version resources");
        readiness.expect(&short);
        let api = dynamic_api(client, namespace, &resource);
        let kind = short.clone();
        let missing = short.clone();
        let selector = selector.clone();
        tasks.push(tokio::spawn(drive(
            short,
            move || watcher(api.clone(), &selector),
            send_index(index.clone()),
            move |event: Event<DynamicObject>| match event {
                Event::Init => vec![IndexMsg::ResourcesRelisting(kind.clone())],
                Event::InitApply(o) | Event::Apply(o) => vec![resource_message(&kind, &o, false)],
                Event::Delete(o) => vec![resource_message(&kind, &o, true)],
                Event::InitDone => vec![IndexMsg::ResourcesSynced(kind.clone())],
            },
            index_mark,
            move || Some(IndexMsg::ResourcesSynced(missing.clone())),
            metrics.clone(),
            readiness.clone(),
        )));
    }

    // EndpointSlices of Services: a version goes as soon as its slices have no ready endpoint.
    if slices {
        let selector = routemap_index::index::slices::SERVICE_NAME_LABEL.to_string();
        let resource = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
        ));
        tracing::info!(kind = "EndpointSlice", selector = %selector, scope = %scope, "watching EndpointSlices");
        readiness.expect(SLICES_WATCH);
        let api = dynamic_api(client, namespace, &resource);
        tasks.push(tokio::spawn(drive(
            SLICES_WATCH.to_string(),
            move || watcher(api.clone(), &selector),
            send_index(index.clone()),
            |event: Event<DynamicObject>| match event {
                Event::Init => vec![IndexMsg::SlicesRelisting],
                Event::InitApply(o) | Event::Apply(o) => vec![slice_message(&o, false)],
                Event::Delete(o) => vec![slice_message(&o, true)],
                Event::InitDone => vec![IndexMsg::SlicesSynced],
            },
            index_mark,
            || Some(IndexMsg::SlicesSynced),
            metrics.clone(),
            readiness.clone(),
        )));
    }

    // Our routes, for drift repair.
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    tracing::info!(kind = "HTTPRoute", selector = %selector, scope = %scope, "watching owned routes");
    readiness.expect("httproutes");
    let api = dynamic_api(client, namespace, &httproute_resource());
    tasks.push(tokio::spawn(drive(
        "httproutes".to_string(),
        move || watcher(api.clone(), &selector),
        move |m: WriterMsg| -> BoxFuture<'static, bool> {
            let writer = writer.clone();
            Box::pin(async move { writer.send(m).await.is_ok() })
        },
        |event: Event<DynamicObject>| match event {
            Event::Init => vec![WriterMsg::Live(LiveEvent::Relisting)],
            Event::InitApply(o) | Event::Apply(o) => live_route(&o)
                .map(|r| WriterMsg::Live(LiveEvent::Upsert(r)))
                .into_iter()
                .collect(),
            Event::Delete(o) => vec![WriterMsg::Live(LiveEvent::Delete(RouteId {
                namespace: o.metadata.namespace.unwrap_or_default(),
                name: o.metadata.name.unwrap_or_default(),
            }))],
            Event::InitDone => vec![WriterMsg::Live(LiveEvent::Synced)],
        },
        |watch: &str, resource_version| WriterMsg::Observed {
            watch: watch.to_string(),
            resource_version,
        },
        || None,
        metrics.clone(),
        readiness.clone(),
    )));
    tasks
}

/// Objects per page of a watch's initial list. kube's default (500) holds a page of whole
/// objects (managedFields included) per watch at once, five watches listing side by side; a
/// smaller page keeps that transient peak, which the allocator keeps as resident memory, small,
/// for one more list call per 100 objects (measured in `docs/performance.md`).
const LIST_PAGE_SIZE: u32 = 100;

fn watcher<K>(
    api: Api<K>,
    selector: &str,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + use<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(
        api,
        watcher::Config::default()
            .labels(selector)
            .page_size(LIST_PAGE_SIZE),
    )
    .backoff(WatchBackoff::new())
}

/// Delays between attempts of a failed watch: 100 ms doubling to 500 ms, each with up to as much
/// again of jitter, so the route follows within a second of an API server coming back. kube's
/// default grows to 30 s, which left routes behind for seconds after a short outage; a retry a
/// second against a server that is down costs it nothing.
#[derive(Debug)]
struct WatchBackoff {
    builder: backon::ExponentialBuilder,
    current: backon::ExponentialBackoff,
}

impl WatchBackoff {
    fn new() -> Self {
        use backon::BackoffBuilder;
        let builder = backon::ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_millis(500))
            .with_jitter()
            .without_max_times();
        WatchBackoff {
            builder,
            current: builder.build(),
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.current.next()
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        use backon::BackoffBuilder;
        self.current = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_failed_watch_is_retried_within_a_second() {
        use kube::runtime::utils::Backoff;
        let mut backoff = WatchBackoff::new();
        let delays: Vec<Duration> = backoff.by_ref().take(50).collect();
        assert_eq!(delays.len(), 50, "never gives up");
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(1)),
            "{delays:?}"
        );
        backoff.reset();
        assert!(backoff.next().expect("a delay") <= Duration::from_millis(200));
    }

    /// A restarted controller listing its routemap before the Deployments must not decide
    /// "candidate not found" (a write without the candidate, then a write back).
    #[test]
    fn missing_crd_is_recognised() {
        let status = kube::core::Status {
            code: 404,
            ..Default::default()
        };
        assert!(is_not_found(&watcher::Error::InitialListFailed(
            kube::Error::Api(Box::new(status.clone()))
        )));
        let forbidden = kube::core::Status {
            code: 403,
            ..Default::default()
        };
        assert!(!is_not_found(&watcher::Error::InitialListFailed(
            kube::Error::Api(Box::new(forbidden))
        )));
    }
}
