//! The one task that owns the index: watch messages in, changes of decision out to the writer.
//!
//! All index updates go through this task over a channel, so the index needs no lock. Each
//! change is logged in a `decision` span named after its routemap.

use std::collections::HashSet;

use routemap_index::index::slices::SliceFacts;
use routemap_index::index::{Change, Decision, Index, Withdrawals, Withdrawn};
use routemap_index::routemap::{RouteMapKey, RouteMapObject};
use routing_core::ResourceFacts;
use tokio::sync::mpsc;

use crate::guard::GuardMsg;
use crate::kube_types::{ConfigMap, DynamicObject};
use crate::metrics::Metrics;
use crate::writer::WriterMsg;

/// Withdrawals recorded on a route an earlier process wrote.
#[derive(Debug)]
pub struct Restore {
    /// The routemap the route's label names.
    pub key: RouteMapKey,
    /// The route's controlling owner's uid (the routemap it was written for).
    pub uid: String,
    /// The withdrawals.
    pub withdrawn: Withdrawals,
}

/// What the watches tell the index task.
#[derive(Debug)]
pub enum IndexMsg {
    /// A routemap was listed, added or changed; with its `creationTimestamp`.
    RouteMap(Box<RouteMapObject>, Option<String>),
    /// A routemap was deleted.
    RouteMapDeleted(RouteMapKey),
    /// The routemap watch restarted.
    RouteMapsRelisting,
    /// The routemap list is complete.
    RouteMapsSynced,
    /// A version resource was listed, added or changed (`Some`) or deleted (`None`).
    Resource {
        /// Short name of its type.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Its facts.
        facts: Option<ResourceFacts>,
    },
    /// A resource watch restarted.
    ResourcesRelisting(String),
    /// A resource list is complete.
    ResourcesSynced(String),
    /// An EndpointSlice was listed, added or changed (`Some`) or deleted (`None`).
    Slice {
        /// Namespace.
        namespace: String,
        /// The slice's name.
        name: String,
        /// Its facts.
        facts: Option<SliceFacts>,
    },
    /// The EndpointSlice watch restarted.
    SlicesRelisting,
    /// The EndpointSlice list is complete (or the type is not served).
    SlicesSynced,
    /// Every event of watch `watch` up to `resource_version` has been sent before this.
    Observed {
        /// The watch's name (`routemaps` or a resource type's short name).
        watch: String,
        /// The resourceVersion of its last event, as an integer.
        resource_version: i64,
    },
    /// The guard withdrew a candidate (`Some(why)`) or let it back in (`None`).
    Guard {
        /// Which routemap.
        key: RouteMapKey,
        /// The candidate's version name.
        version: String,
        /// Why it is withdrawn, and as which identity.
        withdrawn: Option<Withdrawn>,
    },
    /// The first list of our routes is complete, with what the status annotations of routes
    /// written by an earlier process say its guard withdrew.
    RoutesListed(Vec<Restore>),
    /// Sent first by [`crate::watch::spawn_watches`]: the watches (`routemaps` and each resource type's short
    /// name) whose initial list must complete before any decision reaches the writer.
    AwaitInitialLists(Vec<String>),
}

/// The one task that owns the index: applies watch messages, forwards decisions to the writer.
///
/// Until every watch named by [`IndexMsg::AwaitInitialLists`] has listed once, the index is
/// paused and decides nothing: a routemap listed before its Deployments would otherwise be
/// decided with its versions "not found", and a restarted controller would write a route
/// without its candidates and then write it back. When the last list is in, every routemap is
/// decided once and each decision sent on its own (no list of 10,000 routes is built).
///
/// With `guard`, every guarded routemap's [`routemap_index::index::GuardView`] is sent to the
/// guard task whenever the routemap, one of its resources or its decision changes (and once
/// for all at resume); [`GuardMsg::Gone`] when it is deleted or loses its guard.
pub async fn run_index(
    mut index: Index,
    mut rx: mpsc::Receiver<IndexMsg>,
    writer: mpsc::Sender<WriterMsg>,
    metrics: Metrics,
    guard: Option<mpsc::UnboundedSender<GuardMsg>>,
) {
    let mut guarded: HashSet<RouteMapKey> = HashSet::new();
    let mut awaiting: Option<HashSet<String>> = None;
    // Removals seen while paused (decisions are not made then), and the marks after them.
    let mut held: Vec<Change> = Vec::new();
    let mut held_marks: Vec<WriterMsg> = Vec::new();
    while let Some(msg) = rx.recv().await {
        // Routemaps whose guard view may have changed, besides those with a new decision.
        let mut touched: Vec<RouteMapKey> = Vec::new();
        let mut changes = match msg {
            IndexMsg::Observed {
                watch,
                resource_version,
            } => {
                // Sent after the changes of the events it covers, so the writer handles them
                // first; while paused, after the decisions made at resume.
                let mark = WriterMsg::Observed {
                    watch,
                    resource_version,
                };
                if awaiting.is_some() {
                    held_marks.push(mark);
                } else if writer.send(mark).await.is_err() {
                    break;
                }
                continue;
            }
            IndexMsg::AwaitInitialLists(names) => {
                index.pause();
                awaiting = Some(names.into_iter().collect());
                Vec::new()
            }
            IndexMsg::RouteMap(object, created) => {
                // The writer learns the routemap's age before it hears the decision.
                let seen = WriterMsg::Seen {
                    key: object.key.clone(),
                    resource_version: object.resource_version.clone(),
                    created,
                };
                if writer.send(seen).await.is_err() {
                    break;
                }
                touched.push(object.key.clone());
                index.upsert_routemap(*object)
            }
            IndexMsg::RouteMapDeleted(key) => index.delete_routemap(&key.namespace, &key.name),
            IndexMsg::RouteMapsRelisting => {
                index.begin_routemap_relist();
                Vec::new()
            }
            IndexMsg::RouteMapsSynced => {
                if let Some(a) = awaiting.as_mut() {
                    a.remove("routemaps");
                }
                index.end_routemap_relist()
            }
            IndexMsg::Resource {
                kind,
                namespace,
                name,
                facts: Some(facts),
            } => {
                // A new generation or retry annotation changes no decision but the candidate.
                if !guarded.is_empty() {
                    touched.extend(
                        index
                            .referrers(&kind, &namespace, &name)
                            .into_iter()
                            .filter(|k| guarded.contains(k)),
                    );
                }
                index.upsert_resource(&kind, &namespace, &name, facts)
            }
            IndexMsg::Guard {
                key,
                version,
                withdrawn,
            } => index
                .set_withdrawn(&key, &version, withdrawn)
                .into_iter()
                .collect(),
            IndexMsg::RoutesListed(restores) => {
                if let Some(a) = awaiting.as_mut() {
                    a.remove(crate::watch::ROUTES_WATCH);
                }
                let mut changes = Vec::new();
                for r in restores {
                    touched.push(r.key.clone());
                    changes.extend(index.restore_withdrawn(&r.key, &r.uid, r.withdrawn));
                }
                changes
            }
            IndexMsg::Resource {
                kind,
                namespace,
                name,
                facts: None,
            } => index.delete_resource(&kind, &namespace, &name),
            IndexMsg::ResourcesRelisting(kind) => {
                index.begin_relist(&kind);
                Vec::new()
            }
            IndexMsg::ResourcesSynced(kind) => {
                if let Some(a) = awaiting.as_mut() {
                    a.remove(&kind);
                }
                index.end_relist(&kind)
            }
            IndexMsg::Slice {
                namespace,
                name,
                facts,
            } => index.upsert_slice(&namespace, &name, facts),
            IndexMsg::SlicesRelisting => {
                index.begin_slice_relist();
                Vec::new()
            }
            IndexMsg::SlicesSynced => {
                if let Some(a) = awaiting.as_mut() {
                    a.remove(SLICES_WATCH);
                }
                index.end_slice_relist()
            }
        };
        metrics.sizes(index.routemap_count(), index.version_count());
        if let Some(a) = &awaiting {
            held.append(&mut changes);
            if !a.is_empty() {
                continue;
            }
            awaiting = None;
            // The removals seen while paused, then every routemap decided once, one at a time.
            let keys = index.resume();
            if !send_changes(&writer, std::mem::take(&mut held)).await {
                return;
            }
            for key in keys {
                if !send_changes(&writer, index.recheck(&key)).await {
                    return;
                }
                tell_guard(guard.as_ref(), &index, &mut guarded, &key);
            }
            for mark in held_marks.drain(..) {
                if writer.send(mark).await.is_err() {
                    return;
                }
            }
            continue;
        }
        if guard.is_some() {
            for c in &changes {
                match c {
                    Change::Decided { key, .. } | Change::Removed { key } => {
                        touched.push(key.clone())
                    }
                }
            }
            touched.sort();
            touched.dedup();
            for key in &touched {
                tell_guard(guard.as_ref(), &index, &mut guarded, key);
            }
        }
        if !send_changes(&writer, changes).await {
            return;
        }
    }
}

/// Sends a routemap's guard view to the guard task, or `Gone` when it had a guard and has
/// none now (or is deleted).
fn tell_guard(
    guard: Option<&mpsc::UnboundedSender<GuardMsg>>,
    index: &Index,
    guarded: &mut HashSet<RouteMapKey>,
    key: &RouteMapKey,
) {
    let Some(guard) = guard else {
        return;
    };
    match index.guard_view(key) {
        Some(view) => {
            guarded.insert(key.clone());
            let _ = guard.send(GuardMsg::View(Box::new(view)));
        }
        None => {
            if guarded.remove(key) {
                let _ = guard.send(GuardMsg::Gone(key.clone()));
            }
        }
    }
}

/// Sends changes to the writer, waiting while its channel is full (the writer's backpressure);
/// false once the writer is gone.
async fn send_changes(
    writer: &mpsc::Sender<WriterMsg>,
    changes: impl IntoIterator<Item = Change>,
) -> bool {
    for c in changes {
        trace_decision(&c);
        if writer.send(WriterMsg::Change(Box::new(c))).await.is_err() {
            return false;
        }
    }
    true
}

/// Logs a change in a span named after its routemap (at debug level: one line per decision).
fn trace_decision(change: &Change) {
    let key = match change {
        Change::Decided { key, .. } | Change::Removed { key } => key,
    };
    let _span = tracing::debug_span!(
        "decision",
        routemap.namespace = %key.namespace,
        routemap.name = %key.name
    )
    .entered();
    match change {
        Change::Decided {
            decision: Decision::Desired { route, traffic },
            ..
        } => tracing::debug!(
            strategy = traffic.strategy.as_str(),
            available = ?traffic.available(),
            writes_route = route.is_some(),
            "decided"
        ),
        Change::Decided {
            decision: Decision::Invalid { error },
            ..
        } => tracing::debug!(category = error.category(), error = %error, "routemap is invalid"),
        Change::Removed { .. } => tracing::debug!("routemap removed"),
    }
}

/// The mark of a watch that feeds the index.
pub fn index_mark(watch: &str, resource_version: i64) -> IndexMsg {
    IndexMsg::Observed {
        watch: watch.to_string(),
        resource_version,
    }
}

/// A routemap ConfigMap as the index wants it.
pub fn routemap_message(cm: &ConfigMap) -> IndexMsg {
    let meta = &cm.metadata;
    let empty = Default::default();
    let object = RouteMapObject::from_parts(
        RouteMapKey::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        ),
        meta.uid.clone().unwrap_or_default(),
        meta.resource_version.clone(),
        meta.labels.as_ref().unwrap_or(&empty),
        cm.data.as_ref(),
    );
    let created = meta
        .creation_timestamp
        .as_ref()
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(str::to_string));
    IndexMsg::RouteMap(Box::new(object), created)
}

/// The name of the EndpointSlice watch (logs, metrics, readiness, initial lists).
pub const SLICES_WATCH: &str = "endpointslices";

/// An EndpointSlice as the index wants it.
pub fn slice_message(obj: &DynamicObject, deleted: bool) -> IndexMsg {
    IndexMsg::Slice {
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        name: obj.metadata.name.clone().unwrap_or_default(),
        facts: if deleted {
            None
        } else {
            SliceFacts::from_json(&serde_json::to_value(obj).unwrap_or_default())
        },
    }
}

/// A version resource as the index wants it.
pub fn resource_message(kind: &str, obj: &DynamicObject, deleted: bool) -> IndexMsg {
    IndexMsg::Resource {
        kind: kind.to_string(),
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        name: obj.metadata.name.clone().unwrap_or_default(),
        facts: (!deleted)
            .then(|| ResourceFacts::from_json(&serde_json::to_value(obj).unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use routemap_index::config::Config;
    use serde_json::json;
    #[test]
    fn routemap_configmap_becomes_object_and_creation_time() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {
                "name": "app-routemap", "namespace": "test", "uid": "u1", "resourceVersion": "9",
                "creationTimestamp": "2026-12-06T05:00:00Z",
                "labels": {"iter8.tools/kind": "routemap", "iter8.tools/version": "v2"},
                "annotations": {"iter8.tools/status": "{\"decision\":\"x\"}"}
            },
            "data": {"routemap.yaml": "strategy: none\nroute: {name: app, parentRefs: [{name: gw}]}\nversions: [{name: app-0, resources: [{gvrShort: svc, name: app-0}]}]\n"}
        }))
        .expect("configmap");
        let IndexMsg::RouteMap(object, created) = routemap_message(&cm) else {
            panic!("not a routemap message");
        };
        assert_eq!(object.key, RouteMapKey::new("test", "app-routemap"));
        assert_eq!(
            (object.uid.as_str(), object.resource_version.as_deref()),
            ("u1", Some("9"))
        );
        assert!(object.spec.is_ok(), "{:?}", object.spec);
        assert_eq!(created.as_deref(), Some("2026-12-06T05:00:00Z"));
    }

    #[test]
    fn dynamic_resource_becomes_facts() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "app-0", "namespace": "test", "generation": 2,
                         "labels": {"iter8.tools/watch": "true"}, "annotations": {"iter8.tools/weight": "30"}},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 2, "conditions": [{"type": "Available", "status": "True"}]}
        }))
        .expect("object");
        let IndexMsg::Resource {
            kind,
            namespace,
            name,
            facts,
        } = resource_message("deploy", &obj, false)
        else {
            panic!("not a resource message");
        };
        assert_eq!(
            (kind.as_str(), namespace.as_str(), name.as_str()),
            ("deploy", "test", "app-0")
        );
        let facts = facts.expect("facts");
        assert!(facts.ready(&["Available".to_string()]).is_ok());
        assert_eq!(facts.weight_annotation.as_deref(), Some("30"));
        let IndexMsg::Resource { facts: None, .. } = resource_message("deploy", &obj, true) else {
            panic!("a deletion carries no facts");
        };
    }

    #[test]
    fn endpoint_slice_becomes_one_bit_for_its_service() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "app-1-x7k", "namespace": "test",
                         "labels": {"kubernetes.io/service-name": "app-1"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": false, "terminating": true}}]
        }))
        .expect("slice");
        let IndexMsg::Slice {
            namespace,
            name,
            facts,
        } = slice_message(&obj, false)
        else {
            panic!("not a slice message");
        };
        assert_eq!((namespace.as_str(), name.as_str()), ("test", "app-1-x7k"));
        assert_eq!(
            facts,
            Some(SliceFacts {
                service: "app-1".into(),
                ready: false
            })
        );
        let IndexMsg::Slice { facts: None, .. } = slice_message(&obj, true) else {
            panic!("a deletion carries no facts");
        };
    }

    #[tokio::test]
    async fn decisions_wait_for_every_initial_list() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "app-routemap", "namespace": "test", "uid": "u1",
                         "labels": {"iter8.tools/kind": "routemap", "iter8.tools/version": "v2"}},
            "data": {"routemap.yaml": "strategy: canary\nroute: {name: app, parentRefs: [{name: gw}]}\nversions:\n- {name: app-0, resources: [{gvrShort: deploy, name: app-0}]}\n- {name: app-1, resources: [{gvrShort: deploy, name: app-1}], matches: [{headers: [{name: traffic, value: test}]}]}\n"}
        }))
        .expect("configmap");
        let deploy = |name: &str| -> DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": "test", "generation": 1,
                             "labels": {"iter8.tools/watch": "true"}},
                "status": {"observedGeneration": 1, "conditions": [{"type": "Available", "status": "True"}]}
            }))
            .expect("deployment")
        };
        let (tx, rx) = mpsc::channel(16);
        let (writer, mut decisions) = mpsc::channel(64);
        let task = tokio::spawn(run_index(
            Index::new(&Config::default()),
            rx,
            writer,
            Metrics::default(),
            None,
        ));
        for msg in [
            IndexMsg::AwaitInitialLists(vec!["routemaps".into(), "deploy".into()]),
            IndexMsg::RouteMapsRelisting,
            routemap_message(&cm),
            IndexMsg::RouteMapsSynced,
            IndexMsg::ResourcesRelisting("deploy".into()),
            resource_message("deploy", &deploy("app-0"), false),
            resource_message("deploy", &deploy("app-1"), false),
            IndexMsg::ResourcesSynced("deploy".into()),
        ] {
            tx.send(msg).await.expect("index task alive");
        }
        drop(tx);
        task.await.expect("index task");
        let mut available = Vec::new();
        while let Ok(msg) = decisions.try_recv() {
            if let WriterMsg::Change(change) = msg
                && let Change::Decided {
                    decision: routemap_index::index::Decision::Desired { traffic, .. },
                    ..
                } = *change
            {
                available.push(traffic.available().join(","));
            }
        }
        assert_eq!(
            available,
            ["app-0,app-1"],
            "one decision, made from complete lists"
        );
    }

    /// `iter8_observed_resource_version` must not claim an event handled before the writer has
    /// its decision: a mark reaches the writer after the changes of the events it covers, and
    /// while the index waits for its initial lists, after the decisions made when it resumes.
    #[tokio::test]
    async fn observed_marks_reach_the_writer_after_the_decisions_they_cover() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "app-routemap", "namespace": "test", "uid": "u1", "resourceVersion": "11",
                         "labels": {"iter8.tools/kind": "routemap", "iter8.tools/version": "v2"}},
            "data": {"routemap.yaml": "strategy: canary\nroute: {name: app, parentRefs: [{name: gw}]}\nversions:\n- {name: app-0, resources: [{gvrShort: deploy, name: app-0}]}\n"}
        }))
        .expect("configmap");
        let deploy: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "app-0", "namespace": "test", "generation": 1, "resourceVersion": "12",
                         "labels": {"iter8.tools/watch": "true"}},
            "status": {"observedGeneration": 1, "conditions": [{"type": "Available", "status": "False"}]}
        }))
        .expect("deployment");
        let mut ready: DynamicObject = deploy.clone();
        ready.data["status"]["conditions"][0]["status"] = json!("True");
        ready.metadata.resource_version = Some("13".into());
        let (tx, rx) = mpsc::channel(16);
        let (writer, mut out) = mpsc::channel(64);
        let task = tokio::spawn(run_index(
            Index::new(&Config::default()),
            rx,
            writer,
            Metrics::default(),
            None,
        ));
        for msg in [
            IndexMsg::AwaitInitialLists(vec!["routemaps".into(), "deploy".into()]),
            IndexMsg::RouteMapsRelisting,
            routemap_message(&cm),
            IndexMsg::RouteMapsSynced,
            index_mark("routemaps", 11),
            IndexMsg::ResourcesRelisting("deploy".into()),
            resource_message("deploy", &deploy, false),
            IndexMsg::ResourcesSynced("deploy".into()),
            index_mark("deploy", 12),
            resource_message("deploy", &ready, false),
            index_mark("deploy", 13),
        ] {
            tx.send(msg).await.expect("index task alive");
        }
        drop(tx);
        task.await.expect("index task");
        let mut seen = Vec::new();
        while let Ok(msg) = out.try_recv() {
            match msg {
                WriterMsg::Change(change) => {
                    if let Change::Decided {
                        decision: Decision::Desired { traffic, .. },
                        ..
                    } = *change
                    {
                        seen.push(format!("decided [{}]", traffic.available().join(",")));
                    }
                }
                WriterMsg::Observed {
                    watch,
                    resource_version,
                } => seen.push(format!("observed {watch} {resource_version}")),
                WriterMsg::Seen { .. } | WriterMsg::Live(_) => {}
            }
        }
        assert_eq!(
            seen,
            [
                "decided []",
                "observed routemaps 11",
                "observed deploy 12",
                "decided [app-0]",
                "observed deploy 13",
            ]
        );
    }
}
