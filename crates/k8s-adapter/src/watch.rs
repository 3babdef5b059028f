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
//! A watch that fails otherwise (the API server down, a type it may not list) is retried after
//! a delay that doubles with each consecutive failure, jittered, up to 30 s, and resets on
//! success ([`Retry`]). So that a long outage does not leave routes behind by that much once
//! the server is back, one cheap probe per replica (a one-item list of routemaps, through etcd)
//! runs every second while a watch fails for server reasons ([`ApiHealth`]); the moment it
//! succeeds again, every waiting watch retries at once. A failing watch is named in `/readyz`
//! with its error and in `iter8_watch_failing{watch}`; its WARN line is written at the first
//! failure and then at most every 30 s with the count since ([`FailureLog`]), and an INFO line
//! says when it recovers.
//!
//! After each event's messages (after a whole initial list), a watch sends an `Observed` mark
//! with the event's resourceVersion down the same path: through the index task (held while the
//! index is paused) to the writer, which sets `iter8_observed_resource_version{watch}` once the
//! writes of everything before the mark are done. A watch delivers its events in
//! resourceVersion order, so the gauge at `N` means every event of that watch up to `N` is
//! indexed, decided and written (the e2e tests wait for it instead of sleeping).

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use routing_core::keys::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, ROUTEMAP_KIND_LABEL, WATCH_LABEL};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::admin::{CacheSync, Liveness};
use crate::index_task::{
    IndexMsg, Restore, SLICES_WATCH, index_mark, resource_message, routemap_message, slice_message,
};
use crate::kube_types::{ConfigMap, DynamicObject, api_resource, httproute_resource};
use crate::metrics::Metrics;
use crate::watch_retry::probe;
pub use crate::watch_retry::{ApiHealth, FailureLog, Retry};
use crate::writer::{LiveEvent, LiveRoute, RouteId, WriterMsg};
use routemap_index::config::Config;
use routemap_index::routemap::RouteMapKey;

fn live_route(obj: &DynamicObject) -> Option<LiveRoute> {
    LiveRoute::from_json(&serde_json::to_value(obj).ok()?)
}

/// The name of the watch of our routes, among the initial lists the index awaits.
pub const ROUTES_WATCH: &str = "httproutes";

/// What the first list of our routes says the guard of an earlier process withdrew.
#[derive(Debug)]
struct RouteRestores {
    first: AtomicBool,
    found: std::sync::Mutex<Vec<Restore>>,
    index: mpsc::Sender<IndexMsg>,
}

impl RouteRestores {
    /// A route of the first list: its status's withdrawals, if any, are kept for the index.
    fn saw(&self, route: &LiveRoute) {
        if !self.first.load(Ordering::Relaxed) {
            return;
        }
        if let Some(restore) = restore_of(route)
            && let Ok(mut found) = self.found.lock()
        {
            found.push(restore);
        }
    }

    /// The first list is complete (or the type is not served): the index hears it once.
    fn listed(&self) {
        if !self.first.swap(false, Ordering::Relaxed) {
            return;
        }
        let found = self
            .found
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        let index = self.index.clone();
        tokio::spawn(async move { index.send(IndexMsg::RoutesListed(found)).await });
    }
}

/// The withdrawals the status annotation of one of our routes records.
fn restore_of(route: &LiveRoute) -> Option<Restore> {
    let status = routemap_index::report::RouteMapStatus::parse(route.status.as_deref()?)?;
    if status.withdrawn.is_empty() {
        return None;
    }
    Some(Restore {
        key: RouteMapKey::new(route.id.namespace.clone(), route.routemap.clone()?),
        uid: route.owner_uid.clone()?,
        withdrawn: status.withdrawn,
    })
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
/// doubling from 1 s to 5 min, and the absence is logged once. Other failures: see the module
/// doc.
#[allow(clippy::too_many_arguments)]
async fn drive<K, M, S, F>(
    name: String,
    make: impl Fn() -> S,
    tx: impl Fn(M) -> BoxFuture<'static, bool>,
    mut convert: F,
    mark: impl Fn(&str, i64) -> M,
    on_missing: impl Fn() -> Option<M>,
    shared: Shared,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
    F: FnMut(Event<K>) -> Vec<M>,
{
    let shared_ref = shared.clone();
    let Shared {
        metrics,
        readiness,
        health,
    } = shared;
    let mut missing = false;
    let mut synced = false;
    let mut absent_backoff = absent_backoff();
    let mut retry = Retry::default();
    let mut log = FailureLog::default();
    let mut server_trouble = false;
    let mut back = health.subscribe();
    // Highest resourceVersion of the list in progress: marked once the list is complete.
    let mut listed: Option<i64> = None;
    loop {
        let mut stream = std::pin::pin!(make());
        let mut restart_after = None;
        loop {
            // After a failure, a resumed watch that has nothing new to say sends no event:
            // no error for a moment after the retry, with the probe finding the server up,
            // means it works again. (Dropping `next()`
            // is safe: the watcher keeps its state in the stream.)
            let item = if retry.failures() > 0 {
                match tokio::time::timeout(QUIET_AFTER_RETRY, stream.next()).await {
                    Ok(item) => item,
                    Err(_) => {
                        // A server that does not answer at all looks quiet too: the probe
                        // must agree that it answers.
                        if health.is_up() {
                            recover(
                                &mut retry,
                                &mut log,
                                &mut server_trouble,
                                &name,
                                &shared_ref,
                            );
                            back.borrow_and_update();
                        }
                        continue;
                    }
                }
            } else {
                stream.next().await
            };
            let Some(item) = item else { break };
            match item {
                Ok(event) => {
                    // `Init` comes before the list call, so it proves nothing about the type.
                    if !matches!(event, Event::Init) {
                        if missing {
                            missing = false;
                            absent_backoff = self::absent_backoff();
                            metrics.set_type_missing(&name, false);
                            tracing::info!(watch = %name, "resource type is now served; watching it");
                        }
                        recover(
                            &mut retry,
                            &mut log,
                            &mut server_trouble,
                            &name,
                            &shared_ref,
                        );
                        back.borrow_and_update();
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
                    // The server answered (the type is just not served): not a failing watch.
                    recover(
                        &mut retry,
                        &mut log,
                        &mut server_trouble,
                        &name,
                        &shared_ref,
                    );
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
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    // Expired resourceVersion: the watcher relists at once; nothing failed.
                    tracing::debug!(watch = %name, "watch expired (410); relisting");
                }
                Err(e) => {
                    metrics.error("watch");
                    let error = e.to_string();
                    if retry.failures() == 0 {
                        readiness.failing(&name, &error);
                        metrics.set_watch_failing(&name, true);
                    }
                    if is_server_trouble(&e) && !server_trouble {
                        server_trouble = true;
                        health.trouble_started();
                    }
                    let delay = retry.failed(fastrand::f64());
                    let failures = retry.failures();
                    match log.failed(std::time::Instant::now()) {
                        Some(0) => {
                            tracing::warn!(watch = %name, error = %error, retry_in = ?delay, "watch failed; retrying with growing backoff (logged again every 30 s while it fails)");
                        }
                        Some(since_last) => {
                            tracing::warn!(watch = %name, error = %error, failures, since_last, retry_in = ?delay, "watch still failing");
                        }
                        None => {
                            tracing::debug!(watch = %name, error = %error, failures, retry_in = ?delay, "watch failed");
                        }
                    }
                    // The kube watcher retries when polled again: the wait is here.
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = back.changed() => {
                            // Spread the watches of every replica a little.
                            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..100))).await;
                        }
                    }
                }
            }
        }
        match restart_after {
            Some(delay) => tokio::time::sleep(delay).await,
            None => return,
        }
    }
}

/// How long a retried watch must go without an error to count as working again.
const QUIET_AFTER_RETRY: Duration = Duration::from_secs(1);

/// A failing watch works again (or the server answered it): clears its failure marks.
fn recover(
    retry: &mut Retry,
    log: &mut FailureLog,
    server_trouble: &mut bool,
    name: &str,
    shared: &Shared,
) {
    let failures = retry.succeeded();
    if failures == 0 {
        return;
    }
    let over = log.recovered();
    shared.readiness.recovered(name);
    shared.metrics.set_watch_failing(name, false);
    if std::mem::take(server_trouble) {
        shared.health.trouble_ended();
    }
    tracing::info!(watch = %name, failures, over = ?over, "watch works again");
}

/// What every watch shares.
#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    readiness: CacheSync,
    health: ApiHealth,
}

/// A failure that says the API server (or etcd behind it) is in trouble, rather than that this
/// watch is refused (401, 403, 404, 422...): only these make the health probe run.
fn is_server_trouble(e: &watcher::Error) -> bool {
    let api = match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => k,
        watcher::Error::WatchError(status) => return status.code >= 500 || status.code == 429,
        _ => return true,
    };
    match api {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        _ => true,
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

/// Where the watches report: metrics, `/readyz`, `/livez`.
#[derive(Debug, Clone)]
pub struct Reporting {
    /// The controller's metrics.
    pub metrics: Metrics,
    /// Cache sync and failing watches, for `/readyz`.
    pub readiness: CacheSync,
    /// Tasks that must run, for `/livez` (each watch and the probe).
    pub liveness: Liveness,
    /// Whether the API server answers (also followed by the leader election).
    pub health: ApiHealth,
}

/// Starts every watch. `namespace` is `None` for a cluster-scoped controller.
pub fn spawn_watches(
    client: &Client,
    config: &Config,
    namespace: Option<&str>,
    index: mpsc::Sender<IndexMsg>,
    writer: mpsc::Sender<WriterMsg>,
    report: &Reporting,
) -> Vec<JoinHandle<()>> {
    let scope = namespace.map_or("all namespaces".to_string(), |ns| format!("namespace {ns}"));
    let readiness = &report.readiness;
    let liveness = &report.liveness;
    let health = report.health.clone();
    let shared = Shared {
        metrics: report.metrics.clone(),
        readiness: report.readiness.clone(),
        health: health.clone(),
    };
    let mut tasks = vec![liveness.spawn(
        "api probe",
        probe(
            health,
            configmap_api(client, namespace),
            format!("{ROUTEMAP_KIND_LABEL}=routemap"),
        ),
    )];
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
    initial.push(ROUTES_WATCH.to_string());
    let _ = index.try_send(IndexMsg::AwaitInitialLists(initial));

    // Routemaps.
    let selector = format!("{ROUTEMAP_KIND_LABEL}=routemap");
    tracing::info!(kind = "ConfigMap", selector = %selector, scope = %scope, "watching routemaps");
    readiness.expect("routemaps");
    let api = configmap_api(client, namespace);
    tasks.push(liveness.spawn(
        "watch routemaps",
        drive(
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
            shared.clone(),
        ),
    ));

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
        tasks.push(liveness.spawn(
            &format!("watch {short}"),
            drive(
                short,
                move || watcher(api.clone(), &selector),
                send_index(index.clone()),
                move |event: Event<DynamicObject>| match event {
                    Event::Init => vec![IndexMsg::ResourcesRelisting(kind.clone())],
                    Event::InitApply(o) | Event::Apply(o) => {
                        vec![resource_message(&kind, &o, false)]
                    }
                    Event::Delete(o) => vec![resource_message(&kind, &o, true)],
                    Event::InitDone => vec![IndexMsg::ResourcesSynced(kind.clone())],
                },
                index_mark,
                move || Some(IndexMsg::ResourcesSynced(missing.clone())),
                shared.clone(),
            ),
        ));
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
        tasks.push(liveness.spawn(
            "watch endpointslices",
            drive(
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
                shared.clone(),
            ),
        ));
    }

    // Our routes, for drift repair.
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    tracing::info!(kind = "HTTPRoute", selector = %selector, scope = %scope, "watching owned routes");
    readiness.expect("httproutes");
    let api = dynamic_api(client, namespace, &httproute_resource());
    // The first list also tells the index what the guard of an earlier process withdrew, in
    // one message once it is complete: the index decides nothing before (it awaits
    // "httproutes" among the initial lists), so a restarted controller never puts a withdrawn
    // candidate back for a moment.
    let restores = Arc::new(RouteRestores {
        first: AtomicBool::new(true),
        found: std::sync::Mutex::new(Vec::new()),
        index: index.clone(),
    });
    let on_missing = restores.clone();
    tasks.push(liveness.spawn(
        "watch httproutes",
        drive(
            ROUTES_WATCH.to_string(),
            move || watcher(api.clone(), &selector),
            move |m: WriterMsg| -> BoxFuture<'static, bool> {
                let writer = writer.clone();
                Box::pin(async move { writer.send(m).await.is_ok() })
            },
            move |event: Event<DynamicObject>| {
                match event {
                    Event::Init => vec![WriterMsg::Live(LiveEvent::Relisting)],
                    Event::InitApply(o) => {
                        let route = live_route(&o);
                        if let Some(r) = &route {
                            restores.saw(r);
                        }
                        route
                            .map(|r| WriterMsg::Live(LiveEvent::Upsert(r)))
                            .into_iter()
                            .collect()
                    }
                    Event::Apply(o) => live_route(&o)
                        .map(|r| WriterMsg::Live(LiveEvent::Upsert(r)))
                        .into_iter()
                        .collect(),
                    Event::Delete(o) => vec![WriterMsg::Live(LiveEvent::Delete(RouteId {
                        namespace: o.metadata.namespace.unwrap_or_default(),
                        name: o.metadata.name.unwrap_or_default(),
                    }))],
                    Event::InitDone => {
                        restores.listed();
                        vec![WriterMsg::Live(LiveEvent::Synced)]
                    }
                }
            },
            |watch: &str, resource_version| WriterMsg::Observed {
                watch: watch.to_string(),
                resource_version,
            },
            // No HTTPRoute type: nothing to restore, and the index must not wait for it.
            move || {
                on_missing.listed();
                None
            },
            shared.clone(),
        ),
    ));
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
    // No backoff here: `drive` waits between attempts (Retry, ApiHealth).
    watcher::watcher(
        api,
        watcher::Config::default()
            .labels(selector)
            .page_size(LIST_PAGE_SIZE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn only_server_failures_make_the_probe_run() {
        let api = |code| {
            watcher::Error::InitialListFailed(kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            })))
        };
        assert!(is_server_trouble(&api(500)) && is_server_trouble(&api(429)));
        assert!(!is_server_trouble(&api(403)) && !is_server_trouble(&api(401)));
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
