//! `just tutorial`: the seed canary tutorial, live ([`iter8_e2e::seed`], the flow the e2e tests
//! run). The test API server (etcd-backed, built from Kubernetes' libraries), the real
//! iter8-controller, the release chart installed and upgraded with real `helm upgrade
//! --install` and removed with `helm delete`, a real Envoy programmed from the live HTTPRoute
//! by the test-only translator, and one real httpbin per version; the tutorial's `curl`
//! commands are run against Envoy and their real answers printed. The harness plays what has
//! no process here, and says so where it acts: Deployment status, EndpointSlices, the garbage
//! collector.
//!
//! Everything it starts is stopped by its pid when it ends, fails, or gets Ctrl-C / SIGTERM.

use anyhow::{Result, ensure};
use iter8_e2e::gateway::dataplane::{Dataplane, translator_answer};
use iter8_e2e::gateway::traffic::curl;
use iter8_e2e::prelude::*;
use iter8_e2e::seed::{ROUTEMAP, collect_garbage, dataplane_ready, dataplane_removed};
use iter8_e2e::tools::{kubectl_iter8, workspace_bin};

const NS: &str = "test";
const HOST: &str = "httpbin.test";

fn banner(title: &str) {
    println!("\n================================================================");
    println!("== {title}");
    println!("================================================================");
}

/// The tutorial's two curl checks, run for real against Envoy.
fn curls(dp: &Dataplane<'_>, want_plain: &str, want_test: &str) -> Result<()> {
    for (test, want) in [(false, want_plain), (true, want_test)] {
        let c = curl(dp.listener(), HOST, test)?;
        println!(
            "$ curl httpbin.test{} -s -D - | grep -e '^HTTP' -e app-version",
            if test { " -H 'traffic: test'" } else { "" }
        );
        note(format!("(run as: {})", c.command));
        for l in &c.shown {
            println!("{l}");
        }
        ensure!(
            c.status_line == "HTTP/1.1 200 OK" && c.app_version.as_deref() == Some(want),
            "expected HTTP/1.1 200 OK from {want}, got {:?}",
            c.shown
        );
    }
    Ok(())
}

/// `kubectl get httproute` in one line, with the gateway's answer, once Envoy has it.
async fn show_route(dp: &Dataplane<'_>, route: &str) -> Result<()> {
    let route = dp.wait_programmed(NS, route).await?;
    let live = Live::from_json(route.clone())?;
    println!(
        "$ kubectl -n test get httproute.gateway.networking.k8s.io httpbin -o yaml   # summarised"
    );
    note(format!("spec: {}", live.describe()));
    if let Some((accepted, resolved, reason)) = translator_answer(&route) {
        note(format!(
            "status.parents (iter8.tools/e2e-translator, programmed into Envoy): Accepted={accepted}, ResolvedRefs={resolved} ({reason})"
        ));
    }
    Ok(())
}

/// `kubectl iter8 get httpbin -n test`: the plugin's view of the release, as a user runs it.
fn show_plugin(seed: &Seed<'_>) -> Result<()> {
    let plugin = workspace_bin("kubectl-iter8")?;
    println!("$ kubectl iter8 get httpbin -n test");
    let out = kubectl_iter8(
        &plugin,
        &seed.cluster.kubeconfig,
        &["get", "httpbin", "-n", NS],
    )?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    ensure!(
        out.status.success(),
        "kubectl iter8 get failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The tutorial's platform: versions served by real httpbins through Envoy.
struct Tutorial<'d, 'c> {
    dp: &'d mut Dataplane<'c>,
}

impl Platform for Tutorial<'_, '_> {
    async fn set_ready(&mut self, seed: &Seed<'_>, version: &str, ready: bool) -> Result<()> {
        dataplane_ready(self.dp, &seed.ns, version, ready).await
    }

    async fn version_removed(&mut self, seed: &Seed<'_>, version: &str) -> Result<()> {
        dataplane_removed(self.dp, &seed.ns, version).await
    }

    async fn before_upgrade(&mut self, _seed: &Seed<'_>, values_file: &str) -> Result<()> {
        let text = std::fs::read_to_string(values(values_file))?;
        println!("$ cat <<EOF | helm -n test upgrade --install httpbin charts/release -f -");
        print!("{text}");
        println!("EOF");
        note(format!("(fixtures/charts/values/{values_file})"));
        Ok(())
    }

    async fn at(&mut self, seed: &mut Seed<'_>, stage: Stage, _live: Option<&Live>) -> Result<()> {
        let route = seed.route.clone();
        if stage != Stage::Deleted {
            show_plugin(seed)?;
        }
        match stage {
            Stage::Initial => {
                show_route(self.dp, &route).await?;
                curls(self.dp, "httpbin-0", "httpbin-0")
            }
            Stage::CandidateNotReady => {
                show_route(self.dp, &route).await?;
                note("httpbin-1 is not ready yet: traffic: test still goes to httpbin-0");
                curls(self.dp, "httpbin-0", "httpbin-0")
            }
            Stage::CandidateReady => {
                show_route(self.dp, &route).await?;
                curls(self.dp, "httpbin-0", "httpbin-1")
            }
            Stage::PrimaryRollingOut => {
                show_route(self.dp, &route).await?;
                self.dp.stop_backend(NS, "httpbin-1");
                note(
                    "(harness) httpbin-1's pod is gone; the old httpbin-0 pod serves while the new one rolls out",
                );
                curls(self.dp, "httpbin-0", "httpbin-0")
            }
            Stage::Promoted => {
                show_route(self.dp, &route).await?;
                curls(self.dp, "httpbin-0", "httpbin-0")?;
                println!("$ kubectl -n test describe cm httpbin-routemap   # Events");
                show_events(&seed.cluster.events(NS, ROUTEMAP).await?);
                Ok(())
            }
            Stage::Deleted => {
                if collect_garbage(seed.cluster, NS, &route).await? {
                    note(format!(
                        "(harness, as Kubernetes' garbage collector) HTTPRoute {route} deleted: its owner {ROUTEMAP} is gone"
                    ));
                }
                self.dp.wait_not_served(HOST).await?;
                let c = curl(self.dp.listener(), HOST, false)?;
                println!("$ curl httpbin.test -s -D - | grep -e '^HTTP' -e app-version");
                for l in &c.shown {
                    println!("{l}");
                }
                note("(no route for httpbin.test any more)");
                self.dp.stop_backend(NS, "httpbin-0");
                Ok(())
            }
        }
    }
}

async fn tutorial() -> Result<()> {
    banner("Setup: the test API server (etcd), the iter8 controller, Envoy + the translator");
    let cluster = Cluster::start("tutorial").await?;
    let mut dp = Dataplane::start(&cluster, &[])?;
    println!("$ kubectl create ns test");
    cluster.create_namespace(NS).await?;
    println!("$ helm install iter8 charts/controller -n test");
    note(
        "(played by the controller binary with the chart's defaults, watching namespace test; `just e2e`'s install test runs the chart's pod from its image)",
    );
    let mut controller = Controller::start(&cluster, NS, "iter8-controller-0")?;
    controller.wait_ready().await?;

    let mut seed = Seed::new(&cluster, NS);
    let mut platform = Tutorial { dp: &mut dp };
    banner("Deploy initial version");
    seed.initial(&mut platform).await?;
    banner("Deploy candidate");
    seed.candidate(&mut platform).await?;
    banner("Promote candidate");
    seed.promote(&mut platform).await?;
    banner("Cleanup");
    seed.delete(&mut platform).await?;
    println!("$ helm delete iter8");
    controller.stop()?;
    note("controller stopped");
    println!("\ntutorial done: every curl answered by a real httpbin through Envoy");
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Dropping the tutorial's future stops everything it started, by pid.
    tokio::select! {
        r = tutorial() => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\ninterrupted: stopping everything the tutorial started");
            Ok(())
        }
        _ = term.recv() => {
            eprintln!("\nterminated: stopping everything the tutorial started");
            Ok(())
        }
    }
}
