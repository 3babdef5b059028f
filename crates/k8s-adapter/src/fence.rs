//! The write fence: until when this replica may write, shared by the elector (which moves it)
//! and the writer (which checks it before each call and cancels calls still running when it
//! closes).
//!
//! Leadership alone is a flag that is true until someone notices it is not; the fence is a
//! deadline that passes by itself. The elector sets it to "the moment the last successful
//! renewal was *sent*, plus the renew deadline" ([`crate::leader`]), which is a margin before
//! any other replica may take the Lease (they wait a whole lease duration from when they *saw*
//! that renewal). A replica cut off from the API server therefore stops writing on its own
//! clock, even if the elector task is starved.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

/// Until when writes are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Always (leader election disabled: a single replica).
    Always,
    /// Until this instant (exclusive), unless renewed.
    Until(Instant),
    /// Not at all (a follower, or a leader that lost or gave up the Lease).
    Closed,
}

impl Grant {
    /// Whether a write may start at `now`.
    pub fn allows(self, now: Instant) -> bool {
        match self {
            Grant::Always => true,
            Grant::Until(end) => now < end,
            Grant::Closed => false,
        }
    }
}

/// A cloneable handle on the grant. See the module doc.
#[derive(Debug, Clone)]
pub struct Fence {
    grant: Arc<watch::Sender<Grant>>,
}

impl Fence {
    /// A fence that never closes (no leader election).
    pub fn always() -> Self {
        Fence {
            grant: Arc::new(watch::Sender::new(Grant::Always)),
        }
    }

    /// A closed fence (a replica that has not won the Lease yet).
    pub fn closed() -> Self {
        Fence {
            grant: Arc::new(watch::Sender::new(Grant::Closed)),
        }
    }

    /// The current grant.
    pub fn grant(&self) -> Grant {
        *self.grant.borrow()
    }

    /// Whether a write may start now.
    pub fn is_open(&self) -> bool {
        self.grant().allows(Instant::now())
    }

    /// Writes are allowed until `end` (a renewal).
    pub fn open_until(&self, end: Instant) {
        self.grant.send_replace(Grant::Until(end));
    }

    /// No more writes (leadership lost or released).
    pub fn close(&self) {
        self.grant.send_replace(Grant::Closed);
    }

    /// Resolves once writes are no longer allowed: the grant was closed, or its deadline passed
    /// without a renewal.
    pub async fn closed_now(&self) {
        let mut rx = self.grant.subscribe();
        loop {
            let grant = *rx.borrow_and_update();
            match grant {
                Grant::Closed => return,
                Grant::Always => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                Grant::Until(end) => {
                    if Instant::now() >= end {
                        return;
                    }
                    tokio::select! {
                        biased;
                        () = tokio::time::sleep_until(end) => {}
                        changed = rx.changed() => {
                            if changed.is_err() {
                                tokio::time::sleep_until(end).await;
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Runs `call` only if writes are allowed now, and drops it (cancelling its requests and
    /// any wait inside it) the moment they stop being allowed. `None` when it did not run to
    /// the end.
    pub async fn guard<F: Future>(&self, call: F) -> Option<F::Output> {
        if !self.is_open() {
            return None;
        }
        tokio::select! {
            // The fence first: a call whose deadline passed is not polled again.
            biased;
            () = self.closed_now() => None,
            out = call => Some(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_call_is_cancelled_when_the_grant_runs_out_without_renewal() {
        let fence = Fence::closed();
        // A closed fence starts nothing.
        assert_eq!(fence.guard(async { 1 }).await, None);
        let start = Instant::now();
        fence.open_until(start + Duration::from_secs(10));
        assert_eq!(fence.guard(async { 2 }).await, Some(2));
        // A call that would sleep past the deadline (a throttled status write) is cut at it.
        let slow = fence.guard(tokio::time::sleep(Duration::from_secs(300)));
        assert_eq!(slow.await, None);
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
        assert!(!fence.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_keeps_a_running_call_alive() {
        let fence = Fence::closed();
        let start = Instant::now();
        fence.open_until(start + Duration::from_secs(10));
        let renewer = fence.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(8)).await;
            renewer.open_until(start + Duration::from_secs(20));
        });
        let call = fence.guard(async {
            tokio::time::sleep(Duration::from_secs(15)).await;
            "done"
        });
        assert_eq!(call.await, Some("done"));
    }

    #[tokio::test(start_paused = true)]
    async fn closing_cancels_at_once() {
        let fence = Fence::closed();
        fence.open_until(Instant::now() + Duration::from_secs(10));
        let closer = fence.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            closer.close();
        });
        let start = Instant::now();
        let call = fence.guard(tokio::time::sleep(Duration::from_secs(5)));
        assert_eq!(call.await, None);
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn always_never_cancels() {
        let fence = Fence::always();
        let call = fence.guard(tokio::time::sleep(Duration::from_secs(3600)));
        assert_eq!(call.await, Some(()));
    }
}
