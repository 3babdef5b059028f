//! Reading and writing the objects of a test: Deployment status (there is no
//! kube-controller-manager), the live route, the routemap's status (an annotation on its route), Events, the
//! leader Lease, and the resourceVersions of everything the controller watches.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_adapter::kube_types::{api_resource, configmap_resource, httproute_resource};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use routemap_index::config::Config;
use routing_core::keys::{
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, ROUTEMAP_KIND_LABEL, ROUTEMAP_LABEL, STATUS_ANNOTATION,
    WATCH_LABEL,
};
use serde_json::Value;

use crate::builders::deployment_status;
use crate::cluster::Cluster;
use crate::live::Live;
use crate::out::note;
use crate::wait::{timeout, wait_for};

/// The controller's watches (named as in `iter8_observed_resource_version{watch}`): what each
/// lists, with the same label selector. Resource types come from the controller's default
/// configuration, which is what the tests run it with.
pub fn watches() -> Vec<(String, ApiResource, String)> {
    let mut out = vec![(
        "routemaps".to_string(),
        configmap_resource(),
        format!("{ROUTEMAP_KIND_LABEL}=routemap"),
    )];
    for (short, t) in Config::default().watched_types() {
        out.push((short, api_resource(&t), format!("{WATCH_LABEL}=true")));
    }
    if Config::default().slice_service_type().is_some() {
        // Any slice of a Service (an existence selector: `watch_of` never names it).
        out.push((
            "endpointslices".to_string(),
            ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
                "discovery.k8s.io",
                "v1",
                "EndpointSlice",
            )),
            "kubernetes.io/service-name".to_string(),
        ));
    }
    out.push((
        "httproutes".to_string(),
        httproute_resource(),
        format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"),
    ));
    out
}

/// The watch of the controller that sees `obj` (by its kind and labels), if any.
pub fn watch_of(obj: &DynamicObject) -> Option<String> {
    let types = obj.types.as_ref()?;
    let labels = obj.metadata.labels.clone().unwrap_or_default();
    watches()
        .into_iter()
        .find(|(_, resource, selector)| {
            resource.api_version == types.api_version
                && resource.kind == types.kind
                && selector
                    .split_once('=')
                    .is_some_and(|(k, v)| labels.get(k).is_some_and(|l| l == v))
        })
        .map(|(name, _, _)| name)
}

/// An object's resourceVersion as an integer (the test server is etcd-backed: revisions).
pub fn resource_version(obj: &DynamicObject) -> Option<i64> {
    obj.metadata.resource_version.as_deref()?.parse().ok()
}

impl Cluster {
    /// Watch name -> the highest resourceVersion of the objects it sees in `ns` now. A type the
    /// server does not serve has no entry.
    pub async fn watched_resource_versions(&self, ns: &str) -> Result<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        for (name, resource, selector) in watches() {
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &resource);
            let mut lp = ListParams::default().labels(&selector).limit(500);
            loop {
                let list = match api.list_metadata(&lp).await {
                    Ok(list) => list,
                    Err(kube::Error::Api(s)) if s.code == 404 => break,
                    Err(e) => return Err(e).with_context(|| format!("listing {name} in {ns}")),
                };
                for item in &list.items {
                    if let Some(rv) = item
                        .metadata
                        .resource_version
                        .as_deref()
                        .and_then(|rv| rv.parse::<i64>().ok())
                    {
                        let max = out.entry(name.clone()).or_insert(rv);
                        *max = (*max).max(rv);
                    }
                }
                match list.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(c) => lp = lp.continue_token(&c),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// Marks a Deployment available (or not) for its current generation, through the status
    /// subresource. Returns the generation observed.
    pub async fn set_deployment(&self, ns: &str, name: &str, available: bool) -> Result<i64> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let d = api
            .get(name)
            .await
            .with_context(|| format!("get deploy/{name}"))?;
        let generation = d.metadata.generation.unwrap_or(1);
        let status = deployment_status(available, generation, "set by the iter8 e2e test");
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .with_context(|| format!("patch deploy/{name}/status"))?;
        Ok(generation)
    }

    /// A Deployment's `(generation, status.observedGeneration)`.
    pub async fn deployment_generations(&self, ns: &str, name: &str) -> Result<(i64, i64)> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let d = api.get(name).await?;
        Ok((
            d.metadata.generation.unwrap_or(0),
            d.status.and_then(|s| s.observed_generation).unwrap_or(0),
        ))
    }

    /// The live HTTPRoute read back and converted into routing-core's model, if it exists.
    pub async fn route(&self, ns: &str, name: &str) -> Result<Option<Live>> {
        match self.routes(ns).get_opt(name).await? {
            Some(obj) => Ok(Some(Live::from_json(serde_json::to_value(obj)?)?)),
            None => Ok(None),
        }
    }

    /// The live HTTPRoute, which must exist.
    pub async fn existing_route(&self, ns: &str, name: &str) -> Result<Live> {
        self.route(ns, name)
            .await?
            .with_context(|| format!("HTTPRoute {ns}/{name} is gone"))
    }

    /// Waits until the route exists and `check` accepts it (`Err(why)` = not yet).
    pub async fn wait_route<F>(&self, ns: &str, name: &str, what: &str, check: F) -> Result<Live>
    where
        F: Fn(&Live) -> std::result::Result<(), String>,
    {
        self.wait_route_within(ns, name, what, timeout(), check)
            .await
    }

    /// [`Self::wait_route`] with its own time limit.
    pub async fn wait_route_within<F>(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        limit: Duration,
        check: F,
    ) -> Result<Live>
    where
        F: Fn(&Live) -> std::result::Result<(), String>,
    {
        wait_for(what, limit, || async {
            Ok(match self.route(ns, name).await? {
                None => Err(format!("no HTTPRoute {ns}/{name}")),
                Some(live) => match check(&live) {
                    Ok(()) => Ok(live),
                    Err(why) => Err(format!("{why}; route: {}", live.describe())),
                },
            })
        })
        .await
    }

    /// A ConfigMap, if it exists.
    pub async fn configmap(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        Ok(api.get_opt(name).await?)
    }

    /// The routemap's status (parsed), if any: the `iter8.tools/status` annotation on the route
    /// the controller wrote for it (labelled `iter8.tools/routemap=<name>`, owned by it). Of
    /// two (a rename in progress), the one written last.
    pub async fn routemap_status(&self, ns: &str, name: &str) -> Result<Option<Value>> {
        let Some(uid) = self
            .configmap(ns, name)
            .await?
            .and_then(|cm| cm.metadata.uid)
        else {
            return Ok(None);
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), ns, &httproute_resource());
        let routes = api
            .list(&ListParams::default().labels(&format!("{ROUTEMAP_LABEL}={name}")))
            .await?
            .items;
        Ok(routes
            .iter()
            .filter(|r| {
                r.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid && o.controller == Some(true))
            })
            .filter_map(|r| {
                let rv: i64 = r.metadata.resource_version.as_deref()?.parse().ok()?;
                let status = r.metadata.annotations.as_ref()?.get(STATUS_ANNOTATION)?;
                Some((rv, status.clone()))
            })
            .max()
            .and_then(|(_, s)| serde_json::from_str(&s).ok()))
    }

    /// Waits until the routemap's status annotation lists exactly `available` as the versions
    /// receiving traffic and names every version in `known` (the controller has seen them).
    pub async fn wait_status(
        &self,
        ns: &str,
        routemap: &str,
        available: &[&str],
        known: &[&str],
    ) -> Result<Value> {
        let what = format!("{routemap} status: available {available:?}, versions {known:?}");
        wait_for(&what, timeout(), || async {
            let Some(status) = self.routemap_status(ns, routemap).await? else {
                return Ok(Err("no status annotation".into()));
            };
            let got: Vec<&str> = status["availableVersions"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let weights = status["weights"].as_object();
            let all_known = known
                .iter()
                .all(|k| weights.is_some_and(|w| w.contains_key(*k)));
            let exact_known = weights.is_some_and(|w| w.len() == known.len());
            Ok(if got == available && all_known && exact_known {
                Ok(status)
            } else {
                Err(status.to_string())
            })
        })
        .await
    }

    /// `routemap name -> status annotation` of every routemap in `ns` that has a route of
    /// its own (the annotation lives on the route the controller wrote for it).
    pub async fn status_annotations(&self, ns: &str) -> Result<BTreeMap<String, String>> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), ns, &httproute_resource());
        let mut out = BTreeMap::new();
        let mut lp = ListParams::default()
            .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"))
            .limit(500);
        loop {
            let list = api.list(&lp).await?;
            for route in list.items {
                let Some(routemap) = route
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(ROUTEMAP_LABEL).cloned())
                else {
                    continue;
                };
                let status = route
                    .metadata
                    .annotations
                    .and_then(|a| a.get(STATUS_ANNOTATION).cloned())
                    .unwrap_or_default();
                out.insert(routemap, status);
            }
            match list.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => return Ok(out),
            }
        }
    }

    /// Events about an object (core/v1, field selector on `involvedObject.name`), oldest first.
    pub async fn events(&self, ns: &str, involved: &str) -> Result<Vec<Event>> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let mut list = api
            .list(&ListParams::default().fields(&format!("involvedObject.name={involved}")))
            .await?
            .items;
        list.sort_by_key(|e| {
            (
                e.event_time.as_ref().map(|t| t.0.to_string()),
                e.metadata.name.clone(),
            )
        });
        Ok(list)
    }

    /// How many Events with `reason` (counting `count`).
    pub async fn event_count(&self, ns: &str, involved: &str, reason: &str) -> Result<usize> {
        Ok(count_events(&self.events(ns, involved).await?, reason))
    }

    /// The holder of the leader Lease.
    pub async fn lease_holder(&self, ns: &str, name: &str) -> Result<Option<String>> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), ns);
        Ok(api
            .get_opt(name)
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity))
    }
}

/// Sum of the `count` of Events with `reason`.
pub fn count_events(events: &[Event], reason: &str) -> usize {
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.count.unwrap_or(1).max(1) as usize)
        .sum()
}

/// One line per Event: `event Normal RouteApplied [instance]: message`.
pub fn show_events(events: &[Event]) {
    for e in events {
        note(format!(
            "event {} {} [{}]: {}",
            e.type_.as_deref().unwrap_or("-"),
            e.reason.as_deref().unwrap_or("-"),
            e.reporting_instance.as_deref().unwrap_or("-"),
            e.message.as_deref().unwrap_or("")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn watched_objects_are_named_by_the_controller_watch_that_sees_them() {
        let obj = |v: Value| -> DynamicObject { serde_json::from_value(v).expect("object") };
        let routemap = obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "40", "labels": {"iter8.tools/kind": "routemap"}}}));
        let deploy = obj(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a-0", "labels": {"iter8.tools/watch": "true"}}}));
        let app_service =
            obj(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}));
        assert_eq!(watch_of(&routemap).as_deref(), Some("routemaps"));
        assert_eq!(resource_version(&routemap), Some(40));
        assert_eq!(watch_of(&deploy).as_deref(), Some("deploy"));
        assert_eq!(
            watch_of(&app_service),
            None,
            "not labelled: no watch sees it"
        );
    }
}
