//! Waiting for a condition, polled, with a time limit: the only way the tests wait.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Poll interval of [`wait_for`].
pub const POLL: Duration = Duration::from_millis(100);

/// Default limit of a wait: 20 s, or `ITER8_E2E_TIMEOUT_SECS` on a slower machine.
pub fn timeout() -> Duration {
    std::env::var("ITER8_E2E_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(20))
}

/// Calls `check` every [`POLL`] until it returns `Ok(Ok(value))`, and returns that value.
///
/// Anything else means "not yet": `Ok(Err(state))` describes what was seen, and an `Err` (an API
/// call failing while a server restarts, say) is kept as the state too. So a wait never fails
/// early: it fails, with `what` and the last state seen, only when a check that did not succeed
/// ends more than `limit` after the wait began (so a slow check may overrun the limit).
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<std::result::Result<T, String>>>,
{
    wait_every(what, limit, POLL, check).await
}

/// [`wait_for`] with its own poll interval.
pub async fn wait_every<T, F, Fut>(
    what: &str,
    limit: Duration,
    poll: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<std::result::Result<T, String>>>,
{
    let started = Instant::now();
    loop {
        let state = match check().await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(state)) => state,
            Err(e) => format!("error: {e:#}"),
        };
        if started.elapsed() > limit {
            bail!(
                "timed out after {:.1}s waiting for {what}; last seen: {state}",
                limit.as_secs_f64()
            );
        }
        tokio::time::sleep(poll).await;
    }
}
