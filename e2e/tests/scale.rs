//! The scale bench (`benches/scale`), scaled down for CI: 50 two-version canary releases on a
//! fresh test API server, half with their route already correct, half without. Fails unless the
//! real controller, with its writes in flight in parallel (the default), makes exactly one route
//! write per route that needed one and none to the others at cold start, and no write at all
//! (routes, Events, status) during ~10 s of churn on watched objects that changes no routing.
//! Then the same cold start against an API server that lets one write in flight at a time and
//! answers 429 past it: the controller must still converge with one write per route, waiting
//! as asked, and without a Warning Event.
//!
//! Needs `cargo build -p iter8-controller` (e2e/run.sh does it) and the test API server
//! (built by e2e/test-apiserver/build.sh, cached).

use std::time::Duration;

use anyhow::{Result, ensure};
use iter8_e2e::cluster::Cluster;
use iter8_e2e::out::say;
use iter8_e2e::scale::{ColdStartAs, churn, half_correct};

const RELEASES: usize = 50;

fn churn_secs() -> u64 {
    std::env::var("ITER8_SCALE_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

async fn scenario(cluster: &Cluster) -> Result<()> {
    let setup = half_correct(cluster, "scale", RELEASES).await?;
    let (fleet, needing, tracker) = (&setup.fleet, &setup.needing, &setup.tracker);
    let (cold, mut ctl) = setup
        .cold_start(
            cluster,
            Duration::from_secs(60),
            &ColdStartAs::default(),
            "cold start",
        )
        .await?;
    ensure!(
        cold.applied == needing.len() as u64,
        "cold start: {} route applies, want exactly {} (one per missing route)",
        cold.applied,
        needing.len()
    );
    ensure!(
        cold.needing_written == needing.len() && cold.max_writes_per_route == 1,
        "cold start: {} of {} missing routes written, up to {} times each; want each exactly once",
        cold.needing_written,
        needing.len(),
        cold.max_writes_per_route
    );
    ensure!(
        cold.correct_written == 0,
        "cold start: {} writes to routes that were already correct; want 0",
        cold.correct_written
    );
    ensure!(
        cold.status_writes == needing.len(),
        "cold start: {} status annotations written; want {} (only the routemaps whose route was written)",
        cold.status_writes,
        needing.len()
    );

    let c = churn(
        cluster,
        fleet,
        tracker,
        &mut ctl,
        Duration::from_secs(churn_secs()),
    )
    .await?;
    say(format!(
        "no-op churn: {} writes in {:.0}s: {} route applies, {} route changes, {} Events, {} status writes",
        c.churn_writes,
        c.duration.as_secs_f64(),
        c.applied,
        c.route_changes,
        c.events,
        c.status_writes
    ));
    ensure!(c.churn_writes > 0, "the churn made no writes");
    ensure!(
        c.applied == 0 && c.route_changes == 0,
        "no-op churn: {} route applies and {} route changes; want 0",
        c.applied,
        c.route_changes
    );
    ensure!(
        c.events == 0 && c.status_writes == 0,
        "no-op churn: {} Events and {} status writes; want 0",
        c.events,
        c.status_writes
    );
    ctl.check_alive()?;
    ctl.stop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_one_write_per_needed_route_and_none_on_noop_churn() -> Result<()> {
    let cluster = Cluster::start("scale").await?;
    let result = scenario(&cluster).await;
    if result.is_err() {
        cluster.keep();
    }
    result
}

/// The API server lets this many writes (and twice as many reads) in flight from anyone but
/// its administrator, and answers 429 with `Retry-After` past that.
const THROTTLED_WRITES: usize = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_throttled_cold_start_waits_as_asked_and_writes_once() -> Result<()> {
    let writes = THROTTLED_WRITES.to_string();
    let reads = (2 * THROTTLED_WRITES).to_string();
    let cluster = Cluster::start_with(
        "scale-throttled",
        &[
            "--max-mutating-requests-inflight",
            &writes,
            "--max-requests-inflight",
            &reads,
        ],
    )
    .await?;
    let result = throttled(&cluster).await;
    if result.is_err() {
        cluster.keep();
    }
    result
}

async fn throttled(cluster: &Cluster) -> Result<()> {
    let setup = half_correct(cluster, "scale", RELEASES).await?;
    let needing = &setup.needing;
    // An ordinary identity: the API server's limits apply to it (not to system:masters).
    let how = ColdStartAs {
        kubeconfig: Some(cluster.controller_kubeconfig()?),
    };
    let (cold, mut ctl) = setup
        .cold_start(
            cluster,
            Duration::from_secs(120),
            &how,
            &format!("throttled cold start ({THROTTLED_WRITES} write in flight at the API server)"),
        )
        .await?;
    ensure!(
        cold.throttled > 0,
        "the API server throttled nothing: the test did not exercise its limit"
    );
    ensure!(
        cold.applied == needing.len() as u64
            && cold.needing_written == needing.len()
            && cold.max_writes_per_route == 1
            && cold.correct_written == 0,
        "throttled cold start: {} applies, {} of {} missing routes written up to {} times, {} writes to correct routes; want one write per missing route and none else",
        cold.applied,
        cold.needing_written,
        needing.len(),
        cold.max_writes_per_route,
        cold.correct_written
    );
    ensure!(
        cold.warnings == 0,
        "throttled cold start: {} Warning Events; a 429 is no error",
        cold.warnings
    );
    ensure!(
        cold.status_writes == needing.len(),
        "throttled cold start: {} status annotations written; want {}",
        cold.status_writes,
        needing.len()
    );
    ctl.check_alive()?;
    ctl.stop()
}
