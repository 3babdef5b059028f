//! Leader election with a Kubernetes Lease, so that only one replica writes.
//!
//! Built on `kube-lease-manager` 0.12 (the release line on kube 4 / k8s-openapi 0.28): it holds
//! the Lease `iter8-controller-leader` (configurable) in the controller's namespace, renews it by
//! server-side apply, and takes over a Lease whose holder stopped renewing once it expires.
//! Timings: the Lease lasts 15 s and the holder renews it 5 s after each renewal, so a replica
//! that dies is replaced within the lease duration (plus under a second of jitter). A replica
//! that stops releases the Lease at once, so a rolling update hands over without waiting.
//!
//! The decision is a `watch` channel of `bool` (am I the leader?) that the writer follows:
//! followers keep their watches and index warm and write nothing.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Default Lease name.
pub const DEFAULT_LEASE_NAME: &str = "iter8-controller-leader";
/// Lease duration, seconds.
pub const LEASE_DURATION_SECS: u64 = 15;
/// The holder renews this long after each renewal, seconds.
pub const RENEW_EVERY_SECS: u64 = 5;

/// Where and as whom to hold the Lease.
#[derive(Debug, Clone)]
pub struct LeaderSettings {
    /// Namespace of the Lease (the controller's).
    pub namespace: String,
    /// Lease name.
    pub lease_name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
}

/// Leader election could not start.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be read or created.
    #[error("cannot set up Lease {namespace}/{name}: {source}")]
    Lease {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Cause.
        #[source]
        source: LeaseManagerError,
    },
}

impl LeaderError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        "leader"
    }
}

/// A running election: the leadership flag, and the task holding the Lease.
#[derive(Debug)]
pub struct Election {
    /// `true` while this replica holds the Lease.
    pub is_leader: watch::Receiver<bool>,
    task: Option<JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>>,
    /// The flag's sender when there is no Lease (the flag then stays `true`).
    _fixed: Option<watch::Sender<bool>>,
}

impl Election {
    /// Always leader: for a single replica run without a Lease (`--leader-election=false`).
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        Election {
            is_leader: rx,
            task: None,
            _fixed: Some(tx),
        }
    }

    /// Starts competing for the Lease.
    pub async fn start(client: Client, settings: &LeaderSettings) -> Result<Self, LeaderError> {
        let manager = LeaseManagerBuilder::new(client, &settings.lease_name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_duration(LEASE_DURATION_SECS)
            .with_grace(LEASE_DURATION_SECS - RENEW_EVERY_SECS)
            .with_field_manager(format!("iter8-controller-lease-{}", settings.identity))
            .build()
            .await
            .map_err(|source| LeaderError::Lease {
                namespace: settings.namespace.clone(),
                name: settings.lease_name.clone(),
                source,
            })?;
        let (is_leader, task) = manager.watch().await;
        tracing::info!(lease = %format!("{}/{}", settings.namespace, settings.lease_name), identity = %settings.identity, "competing for leadership");
        Ok(Election {
            is_leader,
            task: Some(task),
            _fixed: None,
        })
    }

    /// Gives the Lease up (when this replica holds it) so another takes over at once.
    /// Every other clone of [`Self::is_leader`] must be dropped first.
    pub async fn release(self, timeout: std::time::Duration) {
        let Election {
            is_leader, task, ..
        } = self;
        drop(is_leader);
        if let Some(task) = task {
            match tokio::time::timeout(timeout, task).await {
                Ok(Ok(Ok(_))) => tracing::info!("leader Lease released"),
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader Lease failed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "leader election task failed"),
                Err(_) => tracing::warn!("leader Lease not released in time; it expires by itself"),
            }
        }
    }
}
