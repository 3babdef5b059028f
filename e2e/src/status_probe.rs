//! Dates the end of a controller's writes as a user would see it: a bare watch on the
//! controller's routes of a namespace notes when any route's `iter8.tools/status` annotation
//! (its routemap's status) last changed. A routemap's status is the last of its writes (route,
//! Event, status), so once every routemap that needed writes has its new status, the last
//! change is when the controller finished.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use k8s_adapter::kube_types::httproute_resource;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use routing_core::keys::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, STATUS_ANNOTATION};

use crate::cluster::Cluster;

#[derive(Debug, Default)]
struct ProbeState {
    status: HashMap<String, Option<String>>,
    synced: bool,
    last_change: Option<Instant>,
    changes: usize,
}

/// A running watch of the status annotations on the controller's routes in one namespace.
#[derive(Debug)]
pub struct StatusProbe {
    state: Arc<Mutex<ProbeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl StatusProbe {
    /// Starts the watch and returns once it has listed (changes from then on are dated).
    pub async fn start(cluster: &Cluster, ns: &str) -> Result<Self> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(cluster.client.clone(), ns, &httproute_resource());
        let config =
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
        let state = Arc::new(Mutex::new(ProbeState::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(watcher::watcher(api, config).default_backoff());
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { continue };
                let Ok(mut s) = shared.lock() else { return };
                match event {
                    Event::InitDone => s.synced = true,
                    Event::Init | Event::Delete(_) => {}
                    Event::InitApply(cm) | Event::Apply(cm) => {
                        let name = cm.metadata.name.clone().unwrap_or_default();
                        let status = cm
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(STATUS_ANNOTATION).cloned());
                        let before = s.status.insert(name, status.clone());
                        if s.synced && before != Some(status) {
                            s.last_change = Some(Instant::now());
                            s.changes += 1;
                        }
                    }
                }
            }
        });
        let probe = StatusProbe { state, task };
        let started = Instant::now();
        while !probe.lock()?.synced {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the status probe did not list the routes in 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(probe)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, ProbeState>> {
        self.state
            .lock()
            .map_err(|_| anyhow::anyhow!("status probe poisoned"))
    }

    /// When a status annotation last changed, and how many changes were seen.
    pub fn last_change(&self) -> Result<(Option<Instant>, usize)> {
        let s = self.lock()?;
        Ok((s.last_change, s.changes))
    }
}

impl Drop for StatusProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}
