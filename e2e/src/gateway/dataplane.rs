//! The data plane of a test or of `just tutorial`: the translator with its Envoy, one httpbin
//! per version, and the EndpointSlices of the version Services. There is no kubelet and no
//! EndpointSlice controller here, so the harness plays them as it plays the Deployment
//! controller: when it marks a version's Deployment available it also marks that version's
//! EndpointSlice endpoint (127.0.0.1 and the port of the version's own httpbin) ready, in the
//! order a kubelet and those controllers produce (the slice follows pod readiness directly, the
//! Deployment's `Available` follows it through the ReplicaSet, so the slice comes first both
//! ways).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::Translator;
use super::faulty::FaultSpec;
use super::httpbin::{self, App, Httpbin};
use super::translate::{CONTROLLER_NAME, Settings};
use crate::cluster::Cluster;
use crate::wait::{timeout, wait_every};

/// Field manager of the EndpointSlices the harness writes.
const SLICE_MANAGER: &str = "iter8-e2e-endpointslices";

fn slices(cluster: &Cluster, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        cluster.client.clone(),
        ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
        )),
    )
}

/// The translator, Envoy and the backends.
#[derive(Debug)]
pub struct Dataplane<'a> {
    cluster: &'a Cluster,
    /// The translator (and its Envoy).
    pub translator: Translator,
    backends: BTreeMap<String, Httpbin>,
    /// `namespace/version` -> when the harness first marked it available.
    pub first_available: BTreeMap<String, Instant>,
}

impl<'a> Dataplane<'a> {
    /// Starts Envoy and the translator (in `<cluster dir>/dataplane`), playing the mesh and the
    /// Gateways `gateways` (`namespace/name`).
    pub fn start(cluster: &'a Cluster, gateways: &[&str]) -> Result<Self> {
        let settings = Settings {
            gateways: gateways
                .iter()
                .map(|g| g.to_string())
                .collect::<BTreeSet<_>>(),
        };
        let dir = cluster.dir.join("dataplane");
        let translator = Translator::start(cluster.client.clone(), &dir, settings)?;
        crate::out::note(format!(
            "envoy (pid {}) listening on {}, admin {}; translator {CONTROLLER_NAME} watching HTTPRoutes, Services, EndpointSlices",
            translator.envoy.pid(),
            translator.listener(),
            translator.envoy.admin
        ));
        Ok(Dataplane {
            cluster,
            translator,
            backends: BTreeMap::new(),
            first_available: BTreeMap::new(),
        })
    }

    /// Envoy's listener.
    pub fn listener(&self) -> SocketAddr {
        self.translator.listener()
    }

    /// The httpbin of a version, started on first use.
    pub fn backend(&mut self, ns: &str, version: &str) -> Result<&Httpbin> {
        let key = format!("{ns}/{version}");
        if self.backends.contains_key(&key) {
            return self
                .backends
                .get(&key)
                .ok_or_else(|| anyhow!("no backend {key}"));
        }
        let h = Httpbin::start(&self.cluster.dir, &format!("{ns}-{version}"), version)?;
        Ok(self.keep_backend(key, h, "httpbin".into()))
    }

    /// Keeps a started backend under `ns/version`, saying what it is.
    fn keep_backend(&mut self, key: String, h: Httpbin, what: String) -> &Httpbin {
        crate::out::note(format!(
            "{what} for {key}: gunicorn pid {} on {}",
            h.pid().unwrap_or_default(),
            h.addr
        ));
        self.backends.entry(key).or_insert(h)
    }

    /// The version served by the faulty backend instead of httpbin (`e2e/apps/faulty.py`:
    /// a share of 500s and added latency, see [`super::faulty`]), started now with `faults`;
    /// same access log and `x-load-id` marker as httpbin, so [`Self::served_ids`] works. Call it
    /// before the version's first [`Self::set_version`] or [`Self::backend`] (which would start
    /// httpbin); it fails if the version already has a backend.
    pub fn faulty_backend(
        &mut self,
        ns: &str,
        version: &str,
        faults: FaultSpec,
    ) -> Result<&Httpbin> {
        let key = format!("{ns}/{version}");
        if let Some(h) = self.backends.get(&key) {
            anyhow::bail!(
                "{key} already has a backend ({:?}, gunicorn pid {}): stop_backend first",
                h.app,
                h.pid().unwrap_or_default()
            );
        }
        let h = Httpbin::start_app(
            &self.cluster.dir,
            &format!("{ns}-{version}"),
            version,
            App::Faulty(faults),
        )?;
        Ok(self.keep_backend(key, h, format!("faulty backend ({faults})")))
    }

    /// Changes the faults of a version's faulty backend while it runs (from its next request
    /// on); returns once the backend has them in effect. Fails if the version is httpbin.
    pub fn set_faults(&mut self, ns: &str, version: &str, faults: FaultSpec) -> Result<Duration> {
        let key = format!("{ns}/{version}");
        let h = self
            .backends
            .get_mut(&key)
            .ok_or_else(|| anyhow!("no backend {key}"))?;
        let took = h.set_faults(faults)?;
        crate::out::note(format!(
            "faulty backend for {key} now: {faults} (in effect after {} ms)",
            took.as_millis()
        ));
        Ok(took)
    }

    /// Stops a version's httpbin (by its pid).
    pub fn stop_backend(&mut self, ns: &str, version: &str) {
        if let Some(mut h) = self.backends.remove(&format!("{ns}/{version}")) {
            h.stop();
        }
    }

    /// The version's rollout as a kubelet, the EndpointSlice controller and the Deployment
    /// controller report it: its EndpointSlice endpoint ready (not ready), then its Deployment
    /// `Available=True` (`False`). Returns when the first write began.
    pub async fn set_version(
        &mut self,
        ns: &str,
        version: &str,
        available: bool,
    ) -> Result<Instant> {
        let port = self.backend(ns, version)?.addr.port();
        let started = Instant::now();
        if available {
            self.write_slice(ns, version, port, true).await?;
            self.cluster.set_deployment(ns, version, true).await?;
            self.first_available
                .entry(format!("{ns}/{version}"))
                .or_insert(started);
        } else {
            self.write_slice(ns, version, port, false).await?;
            self.cluster.set_deployment(ns, version, false).await?;
        }
        Ok(started)
    }

    /// Only the version's Deployment status flips (its endpoint stays as it is): what a
    /// Deployment whose rollout stalls, or whose `Available` falls under `minReadySeconds`,
    /// reports. Returns when the write began.
    pub async fn set_deployment_only(
        &mut self,
        ns: &str,
        version: &str,
        available: bool,
    ) -> Result<Instant> {
        let started = Instant::now();
        self.cluster.set_deployment(ns, version, available).await?;
        Ok(started)
    }

    /// The `x-load-id`s the httpbin(s) of a version have served so far (running or stopped).
    pub fn served_ids(&self, ns: &str, version: &str) -> std::collections::HashSet<u64> {
        httpbin::load_ids(&httpbin::access_log(
            &self.cluster.dir,
            &format!("{ns}-{version}"),
        ))
    }

    /// The EndpointSlice of Service `ns/service`: one endpoint 127.0.0.1 (`ready`), one port per
    /// Service port (same name), all at `port`.
    pub async fn write_slice(&self, ns: &str, service: &str, port: u16, ready: bool) -> Result<()> {
        let svc: Service = Api::namespaced(self.cluster.client.clone(), ns)
            .get(service)
            .await
            .with_context(|| format!("get svc/{service}"))?;
        let ports: Vec<Value> = svc
            .spec
            .and_then(|s| s.ports)
            .unwrap_or_default()
            .iter()
            .map(|p| match &p.name {
                Some(n) if !n.is_empty() => json!({"name": n, "port": port, "protocol": "TCP"}),
                _ => json!({"port": port, "protocol": "TCP"}),
            })
            .collect();
        let name = format!("{service}-e2e");
        let body = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns, "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "iter8-e2e",
            }},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": [{"addresses": ["127.0.0.1"],
                "conditions": {"ready": ready, "serving": ready, "terminating": false}}],
        });
        slices(self.cluster, ns)
            .patch(
                &name,
                &PatchParams::apply(SLICE_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .with_context(|| format!("apply EndpointSlice {ns}/{name}"))?;
        Ok(())
    }

    /// What the EndpointSlice controller does once a Service is deleted: its slices go.
    pub async fn delete_slice(&self, ns: &str, service: &str) -> Result<()> {
        match slices(self.cluster, ns)
            .delete(&format!("{service}-e2e"), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until Envoy answers `GET /` for `host` with 404: no route serves that host any more.
    pub async fn wait_not_served(&self, host: &str) -> Result<()> {
        let listener = self.listener();
        wait_every(
            &format!("Envoy to stop serving {host}"),
            timeout(),
            Duration::from_millis(20),
            || async {
                let a = super::traffic::request(listener, host, "/", false);
                Ok(if a.status == 404 {
                    Ok(())
                } else {
                    Err(format!("status {}", a.status))
                })
            },
        )
        .await
    }

    /// Waits until the translator has programmed the route's current generation into Envoy
    /// (its `status.parents` entries carry that generation); returns the route.
    pub async fn wait_programmed(&self, ns: &str, route: &str) -> Result<Value> {
        let api = self.cluster.routes(ns);
        wait_every(
            &format!("the translator to program HTTPRoute {ns}/{route}"),
            timeout(),
            Duration::from_millis(20),
            || async {
                let Some(r) = api.get_opt(route).await? else {
                    return Ok(Err("no route".into()));
                };
                let r = serde_json::to_value(r)?;
                let generation = r["metadata"]["generation"].as_i64();
                let ours: Vec<&Value> = r["status"]["parents"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["controllerName"] == CONTROLLER_NAME)
                    .collect();
                let current = !ours.is_empty()
                    && ours.iter().all(|p| {
                        p["conditions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .all(|c| c["observedGeneration"].as_i64() == generation)
                    });
                Ok(if current {
                    Ok(r)
                } else {
                    Err(format!("status {}", r["status"]))
                })
            },
        )
        .await
    }

    /// Plays the garbage collector: deletes the route if its owner (the routemap) is gone.
    pub async fn collect_garbage(&self, ns: &str, route: &str) -> Result<bool> {
        let api = self.cluster.routes(ns);
        let Some(r) = api.get_opt(route).await? else {
            return Ok(false);
        };
        for owner in r.metadata.owner_references.iter().flatten() {
            let cm = self.cluster.configmap(ns, &owner.name).await?;
            if cm.is_some_and(|c| c.metadata.uid.as_deref() == Some(owner.uid.as_str())) {
                return Ok(false);
            }
        }
        api.delete(route, &DeleteParams::background()).await?;
        Ok(true)
    }
}

/// The `(Accepted, ResolvedRefs)` statuses and the ResolvedRefs reason of the translator's first
/// parent entry of a route.
pub fn translator_answer(route: &Value) -> Option<(String, String, String)> {
    let p = route["status"]["parents"]
        .as_array()?
        .iter()
        .find(|p| p["controllerName"] == CONTROLLER_NAME)?;
    let cond = |t: &str| {
        p["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (a, r) = (cond("Accepted"), cond("ResolvedRefs"));
    Some((
        a["status"].as_str()?.to_string(),
        r["status"].as_str()?.to_string(),
        r["reason"].as_str().unwrap_or_default().to_string(),
    ))
}
