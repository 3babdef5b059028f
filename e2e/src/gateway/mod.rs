//! A test-only gateway: it reads HTTPRoutes, Services and EndpointSlices from the API server and
//! programs a real Envoy the way Envoy Gateway translates them ([`translate`]), and writes
//! `status.parents` on each route it programs, as a Gateway API implementation does. No Gateway
//! API implementation can be installed here; this plays that part (see e2e/README.md, "The data
//! plane", for what it does not do).
//!
//! - [`translate`]: pure: what it sees -> Envoy routes and clusters + each route's status;
//! - [`envoy`]: Envoy as a child process, programmed through files (LDS/CDS/RDS), stopped by pid;
//! - [`httpbin`]: the tutorial's app, one gunicorn per version, stopped by pid;
//! - [`faulty`]: a failing backend under the same gunicorn (a share of 500s, added latency,
//!   changeable while it runs), for the guard's tests;
//! - [`dataplane`]: all of it for one test or `just tutorial`: the translator, Envoy, the
//!   backends, and the EndpointSlices the harness writes (there is no EndpointSlice controller);
//! - [`traffic`]: requests through Envoy: the tutorial's `curl`, and a bounded load with counts.

pub mod dataplane;
pub mod envoy;
pub mod faulty;
pub mod httpbin;
pub mod traffic;
pub mod translate;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use futures::FutureExt;
use futures::stream::{self, BoxStream, StreamExt};
use k8s_adapter::kube_types::httproute_resource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};

use envoy::Envoy;
use translate::{CONTROLLER_NAME, Inputs, Output, Settings};

/// The field manager of its status writes.
pub const FIELD_MANAGER: &str = "iter8-e2e-translator";

/// What the translator has done, for tests and logs.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Envoy updates (CDS or RDS files taken).
    pub envoy_updates: u64,
    /// Status writes.
    pub status_writes: u64,
    /// The last error (an Envoy rejection, a failed status write).
    pub last_error: Option<String>,
}

/// The watch events of one kind of object.
type Events = BoxStream<'static, (Kind, Result<Event<DynamicObject>, watcher::Error>)>;

/// The running translator: a task watching the API server and programming `envoy`.
#[derive(Debug)]
pub struct Translator {
    /// Envoy, which it programs.
    pub envoy: Arc<Envoy>,
    /// What it has done.
    pub stats: Arc<Mutex<Stats>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Route,
    Service,
    Slice,
}

/// One watch's objects, by `namespace/name`, and whether its first list is done.
#[derive(Default)]
struct Store {
    objects: BTreeMap<String, Value>,
    pending: BTreeMap<String, Value>,
    synced: bool,
}

fn key_of(v: &Value) -> String {
    format!(
        "{}/{}",
        v["metadata"]["namespace"].as_str().unwrap_or_default(),
        v["metadata"]["name"].as_str().unwrap_or_default()
    )
}

impl Store {
    fn apply(&mut self, ev: Event<DynamicObject>) {
        let value = |o: DynamicObject| serde_json::to_value(o).unwrap_or(Value::Null);
        match ev {
            Event::Apply(o) => {
                let v = value(o);
                self.objects.insert(key_of(&v), v);
            }
            Event::Delete(o) => {
                self.objects.remove(&key_of(&value(o)));
            }
            Event::Init => self.pending.clear(),
            Event::InitApply(o) => {
                let v = value(o);
                self.pending.insert(key_of(&v), v);
            }
            Event::InitDone => {
                self.objects = std::mem::take(&mut self.pending);
                self.synced = true;
            }
        }
    }
}

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

impl Translator {
    /// Starts Envoy in `dir` and the watch; it programs Envoy once it has listed everything.
    pub fn start(client: Client, dir: &std::path::Path, settings: Settings) -> Result<Translator> {
        let envoy = Arc::new(Envoy::start(dir)?);
        let stats = Arc::new(Mutex::new(Stats::default()));
        let watch = |kind: Kind,
                     r: ApiResource|
         -> BoxStream<
            'static,
            (Kind, Result<Event<DynamicObject>, watcher::Error>),
        > {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &r);
            watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .map(move |e| (kind, e))
                .boxed()
        };
        let streams = stream::select_all([
            watch(Kind::Route, httproute_resource()),
            watch(Kind::Service, resource("", "v1", "Service")),
            watch(
                Kind::Slice,
                resource("discovery.k8s.io", "v1", "EndpointSlice"),
            ),
        ]);
        let task = tokio::spawn(run(client, streams, envoy.clone(), settings, stats.clone()));
        Ok(Translator { envoy, stats, task })
    }

    /// The listener every route is served on (127.0.0.1).
    pub fn listener(&self) -> std::net::SocketAddr {
        self.envoy.listener
    }

    /// Stops the watch and Envoy (by its pid).
    pub fn stop(&self) {
        self.task.abort();
        self.envoy.stop();
    }
}

impl Drop for Translator {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(
    client: Client,
    mut events: stream::SelectAll<Events>,
    envoy: Arc<Envoy>,
    settings: Settings,
    stats: Arc<Mutex<Stats>>,
) {
    let mut stores: BTreeMap<Kind, Store> = BTreeMap::new();
    let mut programmed: Option<Output> = None;
    let mut written: HashMap<String, Vec<Value>> = HashMap::new();
    let routes_api =
        |ns: &str| Api::<DynamicObject>::namespaced_with(client.clone(), ns, &httproute_resource());
    while let Some((kind, ev)) = events.next().await {
        let mut batch = vec![(kind, ev)];
        // Take whatever else is ready, then program once.
        while let Some(Some(more)) = events.next().now_or_never() {
            batch.push(more);
        }
        for (kind, ev) in batch {
            if let Ok(ev) = ev {
                stores.entry(kind).or_default().apply(ev);
            }
        }
        if stores.len() < 3 || !stores.values().all(|s| s.synced) {
            continue;
        }
        let all = |k: Kind| {
            stores
                .get(&k)
                .map(|s| s.objects.values().cloned().collect())
                .unwrap_or_default()
        };
        let inputs = Inputs {
            routes: all(Kind::Route),
            services: all(Kind::Service),
            slices: all(Kind::Slice),
        };
        let out = translate::translate(&inputs, &settings);
        if let Err(e) = program(&envoy, programmed.as_ref(), &out, &stats) {
            note_error(&stats, format!("programming envoy: {e:#}"));
            continue;
        }
        programmed = Some(out.clone());
        for (key, parents) in &out.statuses {
            let Some(route) = stores.get(&Kind::Route).and_then(|s| s.objects.get(key)) else {
                continue;
            };
            let live: Vec<Value> = route["status"]["parents"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["controllerName"] == CONTROLLER_NAME)
                .cloned()
                .collect();
            if strip_times(&live) == *parents || written.get(key) == Some(parents) {
                continue;
            }
            let (ns, name) = key.split_once('/').unwrap_or_default();
            let body = json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": name, "namespace": ns},
                "status": {"parents": with_times(parents, &live)},
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match routes_api(ns)
                .patch_status(name, &params, &Patch::Apply(&body))
                .await
            {
                Ok(_) => {
                    written.insert(key.clone(), parents.clone());
                    if let Ok(mut s) = stats.lock() {
                        s.status_writes += 1;
                    }
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => note_error(&stats, format!("status of HTTPRoute {key}: {e}")),
            }
        }
    }
}

fn note_error(stats: &Mutex<Stats>, e: String) {
    eprintln!("    (translator) {e}");
    if let Ok(mut s) = stats.lock() {
        s.last_error = Some(e);
    }
}

/// New clusters before the routes that use them, removed clusters after the routes no longer
/// do, each step waiting for Envoy to take it.
fn program(
    envoy: &Envoy,
    before: Option<&Output>,
    out: &Output,
    stats: &Mutex<Stats>,
) -> Result<()> {
    let old_clusters = before.map(|b| b.clusters.clone()).unwrap_or_default();
    let routes_changed = before.is_none_or(|b| b.route_config != out.route_config);
    let mut updates = 0;
    tokio::task::block_in_place(|| -> Result<()> {
        if out.clusters != old_clusters {
            let mut union = old_clusters.clone();
            union.extend(out.clusters.clone());
            if union != old_clusters || before.is_none() {
                envoy.program("cds", union.values().cloned().collect())?;
                updates += 1;
            }
        }
        if routes_changed {
            envoy.program("rds", vec![out.route_config.clone()])?;
            updates += 1;
        }
        if old_clusters.keys().any(|k| !out.clusters.contains_key(k)) {
            envoy.program("cds", out.clusters.values().cloned().collect())?;
            updates += 1;
        }
        Ok(())
    })?;
    if let Ok(mut s) = stats.lock() {
        s.envoy_updates += updates;
    }
    Ok(())
}

fn strip_times(parents: &[Value]) -> Vec<Value> {
    parents
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if let Some(cs) = p["conditions"].as_array_mut() {
                for c in cs {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("lastTransitionTime");
                    }
                }
            }
            p
        })
        .collect()
}

/// Each condition keeps its `lastTransitionTime` while its status is unchanged, else now.
fn with_times(parents: &[Value], live: &[Value]) -> Vec<Value> {
    let now =
        serde_json::to_value(Time(k8s_openapi::jiff::Timestamp::now())).unwrap_or(Value::Null);
    parents
        .iter()
        .map(|p| {
            let mut p = p.clone();
            let before = live.iter().find(|l| l["parentRef"] == p["parentRef"]);
            if let Some(cs) = p["conditions"].as_array_mut() {
                for c in cs {
                    let kept = before
                        .and_then(|b| b["conditions"].as_array())
                        .into_iter()
                        .flatten()
                        .find(|o| o["type"] == c["type"] && o["status"] == c["status"])
                        .map(|o| o["lastTransitionTime"].clone());
                    c["lastTransitionTime"] = kept.unwrap_or_else(|| now.clone());
                }
            }
            p
        })
        .collect()
}
