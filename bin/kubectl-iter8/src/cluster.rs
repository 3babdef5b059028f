//! The IO side: a client from the user's kubeconfig, the objects of a snapshot (one list per
//! source), and watches of the same sources for `--watch`.
//!
//! Sources are what the controller reads: routemap ConfigMaps (`iter8.tools/kind=routemap`),
//! each configured resource type (`iter8.tools/watch=true`), HTTPRoutes, plus the Events about
//! ConfigMaps. Every call is a read (`list`, `watch`, and `get` for `--controller-config`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config};
use routemap_index::config::{Config as ControllerConfig, ResourceType};
use routing_core::keys::{ROUTEMAP_KIND_LABEL, WATCH_LABEL};
use serde_json::Value;

use crate::error::{CliError, forbidden_parts};
use crate::model::Snapshot;

/// How to reach the cluster, as kubectl's flags say.
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    /// `--kubeconfig`; else `KUBECONFIG`, else `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`; else the kubeconfig's current context.
    pub context: Option<String>,
    /// `-n`; else the context's namespace, else `default`.
    pub namespace: Option<String>,
    /// `-A`.
    pub all_namespaces: bool,
}

/// A client and where it looks.
#[derive(Clone)]
pub struct Connection {
    /// The client.
    pub client: Client,
    /// `None`: all namespaces.
    pub namespace: Option<String>,
    /// `context NAME (URL)`, for messages.
    pub context: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("namespace", &self.namespace)
            .field("context", &self.context)
            .finish()
    }
}

impl Connection {
    /// `namespace "test"` or `any namespace`.
    pub fn scope(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("namespace {ns:?}"),
            None => "any namespace".into(),
        }
    }
}

/// Builds a client as kubectl would from the user's kubeconfig and context.
pub async fn connect(opts: &KubeOptions) -> Result<Connection, CliError> {
    let kubeconfig = match &opts.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(|e| CliError::Config(format!("kubeconfig: {e}")))?;
    let context_name = opts
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_default();
    let options = KubeConfigOptions {
        context: opts.context.clone(),
        cluster: None,
        user: None,
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| CliError::Config(format!("kubeconfig: {e}")))?;
    // Fail fast on an unreachable server instead of the client's long defaults.
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = config.read_timeout.or(Some(Duration::from_secs(30)));
    let context = format!("context {context_name:?} ({})", config.cluster_url);
    let namespace = (!opts.all_namespaces).then(|| {
        opts.namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone())
    });
    let client = Client::try_from(config).map_err(|e| CliError::Config(format!("client: {e}")))?;
    Ok(Connection {
        client,
        namespace,
        context,
    })
}

/// The controller configuration kept in a ConfigMap (`NAMESPACE/NAME`, key `config.yaml`), as
/// the controller chart writes it.
pub async fn controller_config(
    conn: &Connection,
    reference: &str,
) -> Result<ControllerConfig, CliError> {
    let (ns, name) = reference.split_once('/').ok_or_else(|| {
        CliError::Config(format!(
            "--controller-config {reference:?}: not NAMESPACE/NAME"
        ))
    })?;
    let source = Source {
        what: "configmaps".into(),
        resource: core("ConfigMap", "configmaps"),
        labels: None,
        fields: None,
        need: Need::Required,
    };
    let api: Api<DynamicObject> = Api::namespaced_with(conn.client.clone(), ns, &source.resource);
    let cm = api
        .get(name)
        .await
        .map_err(|e| api_error(e, &source, "get", conn).unwrap_or(CliError::CrdMissing))?;
    let text = cm.data["data"]["config.yaml"].as_str().ok_or_else(|| {
        CliError::Config(format!("ConfigMap {reference} has no data key config.yaml"))
    })?;
    ControllerConfig::from_yaml(text).map_err(|e| CliError::Config(format!("{reference}: {e}")))
}

/// What a 404 on a source means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Always served (core types).
    Required,
    /// HTTPRoutes: a 404 means the Gateway API CRDs are missing.
    Crd,
    /// A configured type whose CRD may not be installed (KServe's): skipped.
    Optional,
}

/// One list/watch.
#[derive(Debug, Clone)]
pub struct Source {
    what: String,
    resource: ApiResource,
    labels: Option<String>,
    fields: Option<String>,
    need: Need,
}

fn core(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn typed(t: &ResourceType) -> ApiResource {
    ApiResource {
        group: t.group.clone(),
        version: t.version.clone(),
        api_version: t.api_version(),
        kind: t.kind(),
        plural: t.resource.clone(),
    }
}

/// Everything a snapshot reads, for a controller configuration.
pub fn sources(config: &ControllerConfig) -> Vec<Source> {
    let mut out = vec![
        Source {
            what: "routemaps".into(),
            resource: core("ConfigMap", "configmaps"),
            labels: Some(format!("{ROUTEMAP_KIND_LABEL}=routemap")),
            fields: None,
            need: Need::Required,
        },
        Source {
            what: "httproutes".into(),
            resource: ApiResource {
                group: "gateway.networking.k8s.io".into(),
                version: "v1".into(),
                api_version: "gateway.networking.k8s.io/v1".into(),
                kind: "HTTPRoute".into(),
                plural: "httproutes".into(),
            },
            labels: None,
            fields: None,
            need: Need::Crd,
        },
        Source {
            what: "events".into(),
            resource: core("Event", "events"),
            labels: None,
            fields: Some("involvedObject.kind=ConfigMap".into()),
            need: Need::Required,
        },
    ];
    for (short, t) in config.watched_types() {
        out.push(Source {
            what: short,
            resource: typed(&t),
            labels: Some(format!("{WATCH_LABEL}=true")),
            fields: None,
            need: Need::Optional,
        });
    }
    out
}

fn api_for(conn: &Connection, source: &Source) -> Api<DynamicObject> {
    match &conn.namespace {
        Some(ns) => Api::namespaced_with(conn.client.clone(), ns, &source.resource),
        None => Api::all_with(conn.client.clone(), &source.resource),
    }
}

/// Maps an API error; `None` for a 404 on an optional source (its type is not served).
fn api_error(e: kube::Error, source: &Source, verb: &str, conn: &Connection) -> Option<CliError> {
    match e {
        kube::Error::Api(s) if s.code == 403 => {
            let (verb, resource, where_) = forbidden_parts(&s.message).unwrap_or_else(|| {
                let group = &source.resource.group;
                let resource = if group.is_empty() {
                    source.resource.plural.clone()
                } else {
                    format!("{}.{group}", source.resource.plural)
                };
                (verb.to_string(), resource, String::new())
            });
            Some(CliError::Forbidden {
                verb,
                resource,
                where_,
                message: s.message.clone(),
            })
        }
        kube::Error::Api(s) if s.code == 404 => match source.need {
            Need::Optional => None,
            Need::Crd => Some(CliError::CrdMissing),
            Need::Required => Some(CliError::Api(format!("{}: {}", source.what, s.message))),
        },
        kube::Error::Api(s) => Some(CliError::Api(format!(
            "{} {}: {} ({})",
            verb, source.what, s.message, s.code
        ))),
        other => Some(CliError::Unreachable {
            context: conn.context.clone(),
            message: other.to_string(),
        }),
    }
}

/// The object as JSON with its `apiVersion` and `kind` (list items may lack them).
fn to_value(obj: DynamicObject, resource: &ApiResource) -> Option<Value> {
    let mut v = serde_json::to_value(obj).ok()?;
    if v["apiVersion"].as_str().is_none_or(str::is_empty) {
        v["apiVersion"] = resource.api_version.clone().into();
    }
    if v["kind"].as_str().is_none_or(str::is_empty) {
        v["kind"] = resource.kind.clone().into();
    }
    Some(v)
}

/// apiVersion, kind, namespace, name.
type Identity = (String, String, String, String);

/// Objects by identity.
type Store = BTreeMap<Identity, Value>;

/// The identity of an object across sources (the same object may come from two: an HTTPRoute
/// that is also a configured version resource).
fn identity(v: &Value) -> Identity {
    let s = |x: &Value| x.as_str().unwrap_or_default().to_string();
    (
        s(&v["apiVersion"]),
        s(&v["kind"]),
        s(&v["metadata"]["namespace"]),
        s(&v["metadata"]["name"]),
    )
}

/// The sources a snapshot could read (an optional type that is not served is left out).
#[derive(Debug, Clone)]
pub struct Listed {
    /// The objects.
    pub snapshot: Snapshot,
    /// Sources that answered (the ones to watch).
    pub served: Vec<Source>,
    /// Types that are not served (e.g. `isvc` without KServe).
    pub missing: Vec<String>,
}

/// Lists every source once, concurrently.
pub async fn list(conn: &Connection, sources: &[Source]) -> Result<Listed, CliError> {
    let calls = sources.iter().map(|s| async move {
        let mut params = ListParams::default();
        if let Some(l) = &s.labels {
            params = params.labels(l);
        }
        if let Some(f) = &s.fields {
            params = params.fields(f);
        }
        (s, api_for(conn, s).list(&params).await)
    });
    let mut objects = BTreeMap::new();
    let mut served = Vec::new();
    let mut missing = Vec::new();
    for (source, answer) in futures::future::join_all(calls).await {
        match answer {
            Ok(list) => {
                for obj in list.items {
                    if let Some(v) = to_value(obj, &source.resource) {
                        objects.insert(identity(&v), v);
                    }
                }
                served.push(source.clone());
            }
            Err(e) => match api_error(e, source, "list", conn) {
                Some(err) => return Err(err),
                None => missing.push(source.what.clone()),
            },
        }
    }
    Ok(Listed {
        snapshot: Snapshot {
            objects: objects.into_values().collect(),
        },
        served,
        missing,
    })
}

/// A watch of every served source, keeping the objects each has seen: a new [`Snapshot`]
/// after each change, once every source has listed.
pub struct Watches {
    stream: BoxStream<'static, (usize, Result<Event<DynamicObject>, watcher::Error>)>,
    resources: Vec<ApiResource>,
    stores: Vec<Store>,
    pending: Vec<Option<Store>>,
    synced: Vec<bool>,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches")
            .field("sources", &self.resources.len())
            .finish()
    }
}

impl Watches {
    /// Starts one watch per source (with kube's default backoff on errors).
    pub fn start(conn: &Connection, sources: &[Source]) -> Self {
        let streams: Vec<_> = sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut config = watcher::Config::default();
                if let Some(l) = &s.labels {
                    config = config.labels(l);
                }
                if let Some(f) = &s.fields {
                    config = config.fields(f);
                }
                watcher::watcher(api_for(conn, s), config)
                    .default_backoff()
                    .map(move |e| (i, e))
                    .boxed()
            })
            .collect();
        let n = sources.len();
        Watches {
            stream: futures::stream::select_all(streams).boxed(),
            resources: sources.iter().map(|s| s.resource.clone()).collect(),
            stores: vec![BTreeMap::new(); n],
            pending: vec![None; n],
            synced: vec![false; n],
        }
    }

    /// Waits for the next change and takes every other one already arrived; `None` when the
    /// watches ended. Errors are retried by the watcher (with backoff) and reported.
    pub async fn next(&mut self) -> Option<Result<(), String>> {
        let first = self.stream.next().await?;
        let mut error = self.take(first);
        while let Some(Some(more)) = futures::FutureExt::now_or_never(self.stream.next()) {
            if let Some(e) = self.take(more) {
                error = Some(e);
            }
        }
        Some(error.map_or(Ok(()), Err))
    }

    fn take(
        &mut self,
        (i, item): (usize, Result<Event<DynamicObject>, watcher::Error>),
    ) -> Option<String> {
        let event = match item {
            Ok(e) => e,
            Err(e) => return Some(e.to_string()),
        };
        let resource = &self.resources[i];
        match event {
            Event::Init => self.pending[i] = Some(BTreeMap::new()),
            Event::InitApply(o) => {
                if let (Some(v), Some(p)) = (to_value(o, resource), self.pending[i].as_mut()) {
                    p.insert(identity(&v), v);
                }
            }
            Event::InitDone => {
                self.stores[i] = self.pending[i].take().unwrap_or_default();
                self.synced[i] = true;
            }
            Event::Apply(o) => {
                if let Some(v) = to_value(o, resource) {
                    self.stores[i].insert(identity(&v), v);
                }
            }
            Event::Delete(o) => {
                if let Some(v) = to_value(o, resource) {
                    self.stores[i].remove(&identity(&v));
                }
            }
        }
        None
    }

    /// Every source has listed at least once.
    pub fn synced(&self) -> bool {
        self.synced.iter().all(|s| *s)
    }

    /// What the watches hold now.
    pub fn snapshot(&self) -> Snapshot {
        let mut objects = BTreeMap::new();
        for store in &self.stores {
            for (k, v) in store {
                objects.insert(k.clone(), v.clone());
            }
        }
        Snapshot {
            objects: objects.into_values().collect(),
        }
    }
}
