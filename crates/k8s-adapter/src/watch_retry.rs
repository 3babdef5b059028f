//! How a failing watch waits and reports (see [`crate::watch`]'s module doc): its backoff
//! ([`Retry`]), its rate-limited log lines ([`FailureLog`]), and the shared probe that cuts every
//! wait short once the API server answers again ([`ApiHealth`], `probe`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kube::api::Api;

use crate::kube_types::ConfigMap;

/// Delay before the next attempt of a failing watch: doubles with each consecutive failure
/// from [`Retry::MIN`] to [`Retry::MAX`], with jitter (between half and all of it), and starts
/// over after a success.
#[derive(Debug, Default, Clone)]
pub struct Retry {
    failures: u32,
}

impl Retry {
    /// The first delay's upper bound.
    pub const MIN: Duration = Duration::from_millis(250);
    /// The cap.
    pub const MAX: Duration = Duration::from_secs(30);

    /// One more failure; `jitter` in `0..1`. Returns the delay before the next attempt.
    pub fn failed(&mut self, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doubled = Self::MIN.saturating_mul(1 << (self.failures - 1).min(16));
        doubled
            .min(Self::MAX)
            .mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// A success: returns how many failures it ends.
    pub fn succeeded(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// When a failing watch writes a WARN line: at the first failure, then at most every
/// [`FailureLog::EVERY`] with the number of failures since the last line.
#[derive(Debug, Default, Clone)]
pub struct FailureLog {
    since: Option<std::time::Instant>,
    last_line: Option<std::time::Instant>,
    unlogged: u64,
}

impl FailureLog {
    /// At most one WARN line this often per watch.
    pub const EVERY: Duration = Duration::from_secs(30);

    /// A failure at `now`: `Some(n)` when a WARN line is due (`n` failures not logged since the
    /// last line; 0 for the first), `None` to stay quiet.
    pub fn failed(&mut self, now: std::time::Instant) -> Option<u64> {
        self.since.get_or_insert(now);
        match self.last_line {
            Some(last) if now.duration_since(last) < Self::EVERY => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last_line = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }

    /// The watch works again: how long it failed.
    pub fn recovered(&mut self) -> Option<Duration> {
        let since = self.since.take()?;
        self.last_line = None;
        self.unlogged = 0;
        Some(since.elapsed())
    }
}

/// Whether the API server answers, shared by every watch: while at least one watch fails for
/// server reasons, `probe` asks the server once a second; when it answers again after failing,
/// the generation moves and every watch waiting out its backoff retries at once.
#[derive(Debug, Clone)]
pub struct ApiHealth {
    back: Arc<tokio::sync::watch::Sender<u64>>,
    troubled: Arc<AtomicUsize>,
    /// What the probe last found (true while it does not run).
    up: Arc<AtomicBool>,
}

impl Default for ApiHealth {
    fn default() -> Self {
        ApiHealth {
            back: Arc::default(),
            troubled: Arc::default(),
            up: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl ApiHealth {
    /// Moves each time the API server answers again after failing.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.back.subscribe()
    }

    pub(crate) fn trouble_started(&self) {
        // Not known to answer until the probe finds it does.
        if self.troubled.fetch_add(1, Ordering::SeqCst) == 0 {
            self.up.store(false, Ordering::SeqCst);
        }
    }

    pub(crate) fn trouble_ended(&self) {
        self.troubled.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether the probe last found the API server answering (true while it does not run).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// The server answered again after failing.
    pub fn answered_again(&self) {
        self.back.send_modify(|g| *g += 1);
    }
}

/// How often the probe asks while a watch fails for server reasons.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The probe task: a one-item metadata list of routemaps (it goes through etcd, unlike
/// `/version`), only while some watch is in server trouble.
pub(crate) async fn probe(health: ApiHealth, api: Api<ConfigMap>, selector: String) {
    let params = kube::api::ListParams::default().labels(&selector).limit(1);
    let mut up = true;
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        if health.troubled.load(Ordering::SeqCst) == 0 {
            up = true;
            health.up.store(true, Ordering::SeqCst);
            continue;
        }
        let answered = matches!(
            tokio::time::timeout(PROBE_EVERY * 2, api.list_metadata(&params)).await,
            Ok(Ok(_))
        );
        if answered && !up {
            tracing::info!("the API server answers again: failed watches retry now");
            health.answered_again();
        }
        up = answered;
        health.up.store(answered, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_consecutive_failures_to_a_cap_and_resets_on_success() {
        let mut retry = Retry::default();
        // Without jitter (1.0: the whole delay): 250 ms, 500 ms, 1 s, ... capped at 30 s.
        let delays: Vec<Duration> = (0..12).map(|_| retry.failed(1.0)).collect();
        assert_eq!(delays[0], Duration::from_millis(250));
        assert_eq!(delays[1], Duration::from_millis(500));
        assert_eq!(delays[3], Duration::from_secs(2));
        assert_eq!(*delays.last().expect("delays"), Retry::MAX);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        // Jitter takes up to half off, never adds.
        let jittered = retry.failed(0.0);
        assert_eq!(jittered, Retry::MAX / 2);
        assert_eq!(retry.succeeded(), 13);
        assert_eq!(retry.failed(1.0), Retry::MIN);
    }

    #[test]
    fn a_failing_watch_warns_once_then_every_30_s_with_a_count() {
        let mut log = FailureLog::default();
        let t0 = std::time::Instant::now();
        assert_eq!(log.failed(t0), Some(0));
        // A failure a second for 29 s: quiet.
        for s in 1..30 {
            assert_eq!(log.failed(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(log.failed(t0 + Duration::from_secs(30)), Some(29));
        assert!(log.recovered().is_some());
        // A new outage warns at once again.
        assert_eq!(log.failed(t0 + Duration::from_secs(31)), Some(0));
    }
}
