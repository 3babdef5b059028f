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
//!
//! The lease manager keeps saying "leader" while its renewals fail (it retries with backoff and
//! only reports a change it has seen on the Lease). So while the manager says "leader", a guard
//! reads the Lease every renewal period and steps down as soon as the hold it last saw
//! (`renewTime` + duration) has run out by this replica's own clock, the clock the holder wrote
//! `renewTime` with: a replica cut off from the API server stops writing before another can
//! take over.

use std::time::{Duration, SystemTime};

use kube::Client;
use kube::api::Api;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kube_types::{Lease, lease_held_until};

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
    guard: Option<JoinHandle<()>>,
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
            guard: None,
            _fixed: Some(tx),
        }
    }

    /// Starts competing for the Lease.
    pub async fn start(client: Client, settings: &LeaderSettings) -> Result<Self, LeaderError> {
        let manager = LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
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
        let (manager_says, task) = manager.watch().await;
        let (tx, is_leader) = watch::channel(false);
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let guard = tokio::spawn(guard(
            manager_says,
            tx,
            api,
            settings.lease_name.clone(),
            settings.identity.clone(),
        ));
        tracing::info!(
            lease.namespace = %settings.namespace,
            lease.name = %settings.lease_name,
            identity = %settings.identity,
            "competing for leadership"
        );
        Ok(Election {
            is_leader,
            task: Some(task),
            guard: Some(guard),
            _fixed: None,
        })
    }

    /// Gives the Lease up (when this replica holds it) so another takes over at once.
    /// Every other clone of [`Self::is_leader`] must be dropped first.
    pub async fn release(self, timeout: std::time::Duration) {
        let Election {
            is_leader,
            task,
            guard,
            ..
        } = self;
        drop(is_leader);
        // The guard ends when the flag's last receiver is gone, dropping the manager's receiver,
        // which makes the manager release the Lease.
        if let Some(guard) = guard {
            let _ = tokio::time::timeout(timeout, guard).await;
        }
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

/// What this replica last saw of its hold on the Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Not read since the manager said "leader" (it has just taken or renewed the Lease).
    Unknown,
    /// Ours until then.
    Until(SystemTime),
    /// The Lease names another holder.
    Lost,
}

/// Whether to act as the leader: the lease manager says so and the hold last seen has not run
/// out by `now`.
pub fn still_leader(manager_says: bool, hold: Hold, now: SystemTime) -> bool {
    manager_says
        && match hold {
            Hold::Unknown => true,
            Hold::Until(end) => now < end,
            Hold::Lost => false,
        }
}

/// Follows the manager's flag and, while it says "leader", the Lease itself (see the module
/// doc); publishes the result on `tx` until every receiver is gone.
async fn guard(
    mut manager_says: watch::Receiver<bool>,
    tx: watch::Sender<bool>,
    api: Api<Lease>,
    name: String,
    identity: String,
) {
    let renew_every = Duration::from_secs(RENEW_EVERY_SECS);
    let mut hold = Hold::Unknown;
    let mut next_read = tokio::time::Instant::now() + renew_every;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            changed = manager_says.changed() => {
                if changed.is_err() {
                    tx.send_replace(false);
                    return;
                }
                hold = Hold::Unknown;
                next_read = tokio::time::Instant::now() + renew_every;
            }
            _ = tick.tick() => {}
        }
        let says = *manager_says.borrow();
        if says && tokio::time::Instant::now() >= next_read {
            next_read = tokio::time::Instant::now() + renew_every;
            match tokio::time::timeout(renew_every, api.get(&name)).await {
                Ok(Ok(lease)) => {
                    hold = lease_held_until(&lease, &identity).map_or(Hold::Lost, Hold::Until);
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "reading the leader Lease failed"),
                Err(_) => tracing::debug!("reading the leader Lease timed out"),
            }
        }
        let leader = still_leader(says, hold, SystemTime::now());
        if *tx.borrow() != leader {
            if says && !leader {
                tracing::warn!(
                    lease = %name,
                    "the leader Lease was not renewed in time by this replica's clock: stepping down"
                );
            }
            tx.send_replace(leader);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_steps_down_once_its_hold_runs_out_by_its_own_clock() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let held = Hold::Until(t0 + Duration::from_secs(LEASE_DURATION_SECS));
        assert!(still_leader(true, held, t0));
        assert!(still_leader(true, held, t0 + Duration::from_secs(14)));
        // Renewals failed for the whole lease duration: another replica may now take over.
        assert!(!still_leader(true, held, t0 + Duration::from_secs(15)));
    }

    #[test]
    fn only_the_managers_leader_with_a_hold_leads() {
        let now = SystemTime::UNIX_EPOCH;
        assert!(still_leader(true, Hold::Unknown, now));
        assert!(!still_leader(false, Hold::Unknown, now));
        assert!(!still_leader(true, Hold::Lost, now));
        assert!(!still_leader(
            false,
            Hold::Until(now + Duration::from_secs(5)),
            now
        ));
    }
}
