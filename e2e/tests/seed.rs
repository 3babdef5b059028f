//! The seed canary tutorial, step by step ([`iter8_e2e::seed`]), against the test API server
//! with the real controller and real helm; readiness is the Deployments' status alone (no data
//! plane: `tests/traffic.rs` runs the same flow with real requests). On top of the flow's checks
//! this one counts the controller's own writes: one apply per change, none otherwise.

use anyhow::{Result, ensure};
use iter8_e2e::prelude::*;
use iter8_e2e::seed::ROUTEMAP;

const NS: &str = "test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_tutorial() -> Result<()> {
    let cluster = Cluster::start("seed").await?;
    let mut suite = Suite::new(&cluster)?;
    suite.run("seed canary tutorial", tutorial(&cluster)).await;
    suite.finish()
}

/// Readiness from Deployment status; the controller's writes counted at every stage.
struct Counted {
    controller: Controller,
    /// The controller's applies before `helm delete`.
    applied: u64,
}

impl Platform for Counted {
    async fn set_ready(&mut self, seed: &Seed<'_>, version: &str, ready: bool) -> Result<()> {
        deployment_ready(seed, version, ready).await
    }

    async fn at(&mut self, seed: &mut Seed<'_>, stage: Stage, live: Option<&Live>) -> Result<()> {
        let cluster = seed.cluster;
        match stage {
            // Evidence that the controller has judged the new routemap before the flow checks
            // that it wrote nothing.
            Stage::CandidateNotReady => {
                self.controller.wait_caught_up(cluster, NS).await?;
                ensure!(
                    self.controller.applied()? == 1,
                    "a write for an unready candidate"
                );
            }
            Stage::Deleted => {
                // Evidence that the controller has handled the deletions before checking that
                // it left the route of a deleted routemap alone (the garbage collector's).
                let deleted = seed.deleted.as_ref().map(|d| d.watched.clone());
                self.controller
                    .wait_observed(&deleted.unwrap_or_default(), timeout())
                    .await?;
                self.controller.wait_caught_up(cluster, NS).await?;
                // The spec (generation) and the controller's applies: the status annotation on
                // the route may still report what helm deleted before the routemap (the
                // Deployment, the Services), as it should.
                let generation = live.map(|l| l.generation());
                let after = cluster.existing_route(NS, &seed.route).await?;
                let applied = self.controller.applied()?;
                ensure!(
                    Some(after.generation()) == generation && applied == self.applied,
                    "the controller must not rewrite the route of a deleted routemap (generation {generation:?} -> {}, applies {} -> {applied})",
                    after.generation(),
                    self.applied,
                );
                ok(
                    "the controller left the route of the deleted routemap to the garbage collector",
                );
            }
            Stage::Initial | Stage::CandidateReady | Stage::Promoted => {
                let live = live.ok_or_else(|| anyhow::anyhow!("no route"))?;
                let n = writes_agree(cluster, &self.controller, NS, ROUTEMAP, &seed.route).await?;
                ensure!(
                    n as i64 == live.generation(),
                    "{n} writes, but the route read before has generation {}",
                    live.generation()
                );
                ok(format!(
                    "{n} apply(ies) = RouteApplied Events = route generation"
                ));
                self.applied = self.controller.applied()?;
            }
            Stage::PrimaryRollingOut => {}
        }
        Ok(())
    }
}

async fn tutorial(cluster: &Cluster) -> Result<()> {
    cluster.create_namespace(NS).await?;
    let mut controller = Controller::start(cluster, NS, "iter8-controller-0")?;
    controller.wait_ready().await?;
    let mut counted = Counted {
        controller,
        applied: 0,
    };
    let mut seed = Seed::new(cluster, NS);
    seed.run(&mut counted).await?;
    show_events(&cluster.events(NS, ROUTEMAP).await?);
    ensure!(counted.controller.alive(), "controller exited");
    counted.controller.stop()?;
    Ok(())
}
