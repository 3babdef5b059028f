//! The scale fleet: many two-version canary releases in one namespace (a routemap, two Services,
//! two Deployments each), the routes the controller must write for them, computed by the
//! controller's own index, and ways to put the cluster in the state a controller would have
//! left (routes and status annotations applied as it applies them) or undo that.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_adapter::kube_types::{
    CoreEvent, configmap_reference, core_event, httproute_resource, now, to_gateway,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use routemap_index::config::Config;
use routemap_index::index::{Decision, Index};
use routemap_index::live::KeptRoute;
use routemap_index::report::{EventNote, RouteResult, report};
use routemap_index::routemap::{RouteMapKey, RouteMapObject};
use routing_core::HttpRoute;
use routing_core::keys::{REPORTING_CONTROLLER, STATUS_ANNOTATION, STATUS_FIELD_MANAGER};
use serde_json::{Value, json};

use crate::builders::{app, deployment, deployment_status, facts, routemap, service};
use crate::cluster::Cluster;

/// Field manager of the controller's route applies (its default `fieldManager`).
pub const FIELD_MANAGER: &str = "iter8-controller";
/// Concurrency of the bench's own API calls (seeding, resets).
pub const CONCURRENCY: usize = 32;

/// One release as created.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub i: usize,
    /// The routemap ConfigMap as the server returned it.
    pub routemap: Value,
}

/// The fleet of releases in one namespace.
#[derive(Debug)]
pub struct Fleet {
    pub ns: String,
    pub releases: Vec<Seeded>,
    /// Route name -> the route the controller must write, as the writer keeps it.
    pub want: HashMap<String, KeptRoute>,
    /// Route name -> the route itself.
    pub routes: HashMap<String, HttpRoute>,
    /// Route name -> the decision.
    pub decisions: HashMap<String, Decision>,
}

/// Runs `f` over `items` with [`CONCURRENCY`] calls in flight.
pub async fn concurrently<T, R, F, Fut>(items: Vec<T>, f: F) -> Result<Vec<R>>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<R>>,
{
    futures::stream::iter(items.into_iter().map(f))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// Creates `n` releases in `ns` (7 API calls each, [`CONCURRENCY`] in flight).
pub async fn seed(cluster: &Cluster, ns: &str, n: usize) -> Result<Fleet> {
    seed_with(cluster, ns, n, routemap).await
}

/// [`seed`] with each release's routemap ConfigMap made by `routemap(ns, i)` (e.g.
/// [`crate::builders::guarded_routemap`]).
pub async fn seed_with(
    cluster: &Cluster,
    ns: &str,
    n: usize,
    routemap: impl Fn(&str, usize) -> Value + Sync,
) -> Result<Fleet> {
    let routemap = &routemap;
    let client = cluster.client.clone();
    let ns_s = ns.to_string();
    let mut releases = concurrently((0..n).collect(), |i| {
        let client = client.clone();
        let ns = ns_s.clone();
        async move {
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
            let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let pp = PostParams::default();
            for v in 0..2 {
                svcs.create(&pp, &serde_json::from_value(service(&ns, i, v))?)
                    .await
                    .with_context(|| format!("creating svc {}-{v}", app(i)))?;
                let name = format!("{}-{v}", app(i));
                deps.create(&pp, &serde_json::from_value(deployment(&ns, i, v))?)
                    .await
                    .with_context(|| format!("creating deploy {name}"))?;
                deps.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&deployment_status(true, 1, "seeded")),
                )
                .await
                .with_context(|| format!("deploy {name} status"))?;
            }
            let cm = cms
                .create(&pp, &serde_json::from_value(routemap(&ns, i))?)
                .await
                .with_context(|| format!("creating the routemap of {}", app(i)))?;
            Ok(Seeded {
                i,
                routemap: serde_json::to_value(cm)?,
            })
        }
    })
    .await?;
    releases.sort_by_key(|r| r.i);
    let mut fleet = Fleet {
        ns: ns.to_string(),
        releases,
        want: HashMap::new(),
        routes: HashMap::new(),
        decisions: HashMap::new(),
    };
    fleet.plan(true)?;
    Ok(fleet)
}

impl Fleet {
    /// Computes every route with the controller's own index and decision function, with all
    /// versions available (`candidates_available`) or only the primaries.
    pub fn plan(&mut self, candidates_available: bool) -> Result<()> {
        let config = Config::default();
        let mut index = Index::new(&config);
        for r in &self.releases {
            let a = app(r.i);
            for v in 0..2 {
                let name = format!("{a}-{v}");
                let avail = v == 0 || candidates_available;
                index.upsert_resource("svc", &self.ns, &name, facts(true, false));
                index.upsert_resource("deploy", &self.ns, &name, facts(avail, true));
            }
            index.upsert_routemap(RouteMapObject::from_json(&r.routemap, &self.ns));
        }
        for r in &self.releases {
            let a = app(r.i);
            let key = RouteMapKey::new(&self.ns, format!("{a}-routemap"));
            let decision = index
                .current_decision(&key)
                .ok_or_else(|| anyhow!("no decision for {a}"))?;
            let Decision::Desired {
                route: Some(route), ..
            } = &decision
            else {
                bail!("{a}: no route decided: {decision:?}");
            };
            self.want.insert(a.clone(), KeptRoute::new(route));
            self.routes.insert(a.clone(), route.clone());
            self.decisions.insert(a, decision);
        }
        Ok(())
    }

    /// Applies the routes (and the status annotation) of `which` releases exactly as the
    /// controller would have: same body, same field managers.
    pub async fn preapply(&self, cluster: &Cluster, which: &[usize]) -> Result<()> {
        self.write_as_controller(cluster, which, CONCURRENCY, false)
            .await
    }

    /// Makes the writes the controller makes for each of `which` releases, in its order: the
    /// GET of the route name before its first create, the route's server-side apply, then
    /// (with `events`) its `RouteApplied` Event, then the status annotation on the route;
    /// `in_flight` releases at a time. The floor of a cold start.
    pub async fn write_as_controller(
        &self,
        cluster: &Cluster,
        which: &[usize],
        in_flight: usize,
        events: bool,
    ) -> Result<()> {
        let items = which
            .iter()
            .map(|&i| {
                let a = app(i);
                let decision = self
                    .decisions
                    .get(&a)
                    .ok_or_else(|| anyhow!("{a}: no decision"));
                Ok((
                    a.clone(),
                    self.route(&a)?.clone(),
                    decision?.clone(),
                    self.routemap(i)?.clone(),
                ))
            })
            .collect::<Result<Vec<(String, HttpRoute, Decision, Value)>>>()?;
        let client = cluster.client.clone();
        let ns = self.ns.clone();
        futures::stream::iter(items.into_iter().map(|(name, route, decision, cm)| {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                let routes: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &ns, &httproute_resource());
                // The controller looks before it creates a route (a route that is not ours is
                // never written): the floor makes the same call.
                routes
                    .get_opt(&name)
                    .await
                    .with_context(|| format!("looking at route {name}"))?;
                let applied = routes
                    .patch(
                        &name,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&to_gateway(&route)?),
                    )
                    .await
                    .with_context(|| format!("applying route {name}"))?;
                let generation = applied.metadata.generation;
                let uid = applied.metadata.uid.clone().unwrap_or_default();
                let rv = cm["metadata"]["resourceVersion"].as_str();
                let report = report(
                    Some(&name),
                    &decision,
                    &RouteResult::Applied { generation },
                    rv,
                    None,
                )
                .ok_or_else(|| anyhow!("nothing to report"))?;
                if events && let Some(event) = &report.event {
                    publish_event(&client, &ns, &cm, event).await?;
                }
                set_status_annotation(
                    &client,
                    &ns,
                    &name,
                    &uid,
                    &serde_json::to_string(&report.status)?,
                )
                .await?;
                Ok::<(), anyhow::Error>(())
            }
        }))
        .buffer_unordered(in_flight.max(1))
        .try_collect::<Vec<()>>()
        .await?;
        Ok(())
    }

    /// Undoes what the controller did for `which` releases: deletes their routes, and with
    /// them the status annotation (as before the first run).
    pub async fn reset(&self, cluster: &Cluster, which: &[usize]) -> Result<()> {
        let items = which
            .iter()
            .map(|&i| Ok(app(i)))
            .collect::<Result<Vec<String>>>()?;
        let client = cluster.client.clone();
        let ns = self.ns.clone();
        concurrently(items, |name| {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                let routes: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &ns, &httproute_resource());
                match routes.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(e).with_context(|| format!("deleting route {name}")),
                }
            }
        })
        .await?;
        Ok(())
    }

    /// The route decided for app `name`.
    pub fn route(&self, name: &str) -> Result<&HttpRoute> {
        self.routes
            .get(name)
            .ok_or_else(|| anyhow!("{name}: no route decided"))
    }

    /// The routemap of release `i` as the server returned it.
    fn routemap(&self, i: usize) -> Result<&Value> {
        self.releases
            .get(i)
            .map(|r| &r.routemap)
            .ok_or_else(|| anyhow!("no release {i}"))
    }

    /// Route names of the releases in `which`.
    pub fn names(which: &[usize]) -> Vec<String> {
        which.iter().map(|&i| app(i)).collect()
    }
}

/// Publishes an Event on the routemap as the controller does.
async fn publish_event(client: &Client, ns: &str, cm: &Value, event: &EventNote) -> Result<()> {
    let name = cm["metadata"]["name"].as_str().unwrap_or_default();
    let uid = cm["metadata"]["uid"].as_str().unwrap_or_default();
    let body = core_event(
        &configmap_reference(ns, name, uid),
        event.warning,
        event.reason,
        &event.note,
        REPORTING_CONTROLLER,
        Some("floor"),
        now(),
    );
    let api: Api<CoreEvent> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &body)
        .await
        .with_context(|| format!("Event on {name}"))?;
    Ok(())
}

/// Writes the status annotation on the route `name` (uid `uid`) as the controller's status
/// field manager does.
async fn set_status_annotation(
    client: &Client,
    ns: &str,
    name: &str,
    uid: &str,
    status: &str,
) -> Result<()> {
    let body = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns, "uid": uid,
                     "annotations": { STATUS_ANNOTATION: status }},
    });
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &httproute_resource());
    api.patch(
        name,
        &PatchParams::apply(STATUS_FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .with_context(|| format!("status annotation of {name}"))?;
    Ok(())
}
