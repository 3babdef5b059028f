//! `just tutorial`: the seed canary tutorial, live ([`iter8_e2e::seed`], the flow the e2e tests
//! run). The test API server (etcd-backed, built from Kubernetes' libraries), the real
//! iter8-controller, the release chart installed and upgraded with real `helm upgrade
//! --install` and removed with `helm delete`, a real Envoy programmed from the live HTTPRoute
//! by the test-only translator, and one real httpbin per version; the tutorial's `curl`
//! commands are run against Envoy and their real answers printed. The harness plays what has
//! no process here, and says so where it acts: Deployment status, EndpointSlices, the garbage
//! collector.
//!
//! `iter8-tutorial guard` (`just tutorial guard`) runs the guarded canary instead: Debian's
//! Prometheus scraping Envoy, a candidate that answers one request in five with a 500, the
//! guard withdrawing it (real answers before and after), and the retry annotation letting the
//! fixed candidate back in.
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

/// `curl -H 'traffic: test'` `n` times, printing each answer's status and app-version, and
/// the tally.
fn test_curls(dp: &Dataplane<'_>, n: usize) -> Result<Vec<(String, Option<String>)>> {
    println!(
        "$ for i in $(seq {n}); do curl httpbin.test -H 'traffic: test' -s -D - -o /dev/null | grep -e '^HTTP' -e app-version | tr -d '\\r' | paste -sd' '; done"
    );
    let mut answers = Vec::new();
    for _ in 0..n {
        let c = curl(dp.listener(), HOST, true)?;
        println!("{}", c.shown.join(" "));
        answers.push((c.status_line.clone(), c.app_version.clone()));
    }
    Ok(answers)
}

async fn guard_tutorial() -> Result<()> {
    use iter8_e2e::gateway::faulty::FaultSpec;
    use iter8_e2e::prometheus::Prometheus;
    use iter8_e2e::traffic::load;
    use std::time::{Duration, Instant};

    banner("Setup: the test API server, Envoy + the translator, Prometheus, the iter8 controller");
    let cluster = Cluster::start("tutorial-guard").await?;
    let mut dp = Dataplane::start(&cluster, &[])?;
    let mut prometheus = Prometheus::scraping_envoy(&cluster, &dp)?;
    println!("$ kubectl create ns test");
    cluster.create_namespace(NS).await?;
    let url = prometheus.url();
    println!("$ helm install iter8 charts/controller -n test --set guard.prometheus={url}");
    note("(played by the controller binary with --guard-prometheus, watching namespace test)");
    let mut controller = Controller::start_with(
        &cluster,
        NS,
        "iter8-controller-0",
        &["--guard-prometheus", &url],
    )?;
    controller.wait_ready().await?;

    let mut seed = Seed::new(&cluster, NS);
    let mut platform = Tutorial { dp: &mut dp };
    banner("Deploy initial version");
    seed.initial(&mut platform).await?;
    let dp = platform.dp;

    banner("Deploy a guarded candidate that has a bug");
    let text = std::fs::read_to_string(values("seed-2-guarded.yaml"))?;
    println!("$ cat <<EOF | helm -n test upgrade --install httpbin charts/release -f -");
    print!("{text}");
    println!("EOF");
    let mut release = Release::new(&cluster, "httpbin", NS);
    release.upgrade(&[&values("seed-2-guarded.yaml")]).await?;
    let buggy = FaultSpec {
        error_share: 0.2,
        latency: Duration::ZERO,
    };
    dp.faulty_backend(NS, "httpbin-1", buggy)?;
    note(
        "(harness) httpbin-1 is e2e/apps/faulty.py: one answer in five is a 500, the bug this release ships",
    );
    dataplane_ready(dp, NS, "httpbin-1", true).await?;
    cluster
        .wait_route(
            NS,
            "httpbin",
            "a traffic: test rule to httpbin-1",
            canary_split("httpbin-0", "httpbin-1"),
        )
        .await?;
    show_route(dp, "httpbin").await?;
    let before = test_curls(dp, 10)?;
    ensure!(
        before
            .iter()
            .all(|(_, v)| v.as_deref() == Some("httpbin-1")),
        "before the withdrawal, traffic: test goes to httpbin-1: {before:?}"
    );
    note(format!(
        "{} of 10 answered 500 by httpbin-1",
        before.iter().filter(|(s, _)| s.contains(" 500")).count()
    ));
    note(
        "(harness) users' traffic: 250 requests/s through Envoy, half with traffic: test, so that Prometheus has something to judge",
    );
    let users = load(dp, HOST, Duration::from_secs(60));
    let started = Instant::now();
    cluster
        .wait_route(
            NS,
            "httpbin",
            "httpbin-1 withdrawn: one rule to httpbin-0",
            one_rule_to("httpbin-0"),
        )
        .await?;
    dp.wait_programmed(NS, "httpbin").await?;
    note(format!(
        "the guard withdrew httpbin-1 {:.1} s after users' traffic started",
        started.elapsed().as_secs_f64()
    ));
    drop(users.stop());
    println!("$ kubectl -n test describe cm httpbin-routemap   # Events");
    show_events(&cluster.events(NS, ROUTEMAP).await?);
    show_plugin(&seed)?;
    let after = test_curls(dp, 10)?;
    ensure!(
        after
            .iter()
            .all(|(s, v)| s == "HTTP/1.1 200 OK" && v.as_deref() == Some("httpbin-0")),
        "after the withdrawal, traffic: test goes to httpbin-0 and succeeds: {after:?}"
    );
    note("withdrawn: traffic: test goes to httpbin-0 until a new httpbin-1 or a retry");

    banner("Fix the candidate and ask for a retry");
    dp.set_faults(NS, "httpbin-1", FaultSpec::HEALTHY)?;
    note("(harness) httpbin-1 fixed outside its Deployment: no more 500s");
    println!("$ kubectl -n test annotate deploy httpbin-1 iter8.tools/guard-retry=1 --overwrite");
    cluster.kubectl(&[
        "-n",
        NS,
        "annotate",
        "deploy",
        "httpbin-1",
        "iter8.tools/guard-retry=1",
        "--overwrite",
    ])?;
    cluster
        .wait_route(
            NS,
            "httpbin",
            "httpbin-1 back for traffic: test",
            canary_split("httpbin-0", "httpbin-1"),
        )
        .await?;
    show_route(dp, "httpbin").await?;
    let back = test_curls(dp, 5)?;
    ensure!(
        back.iter()
            .all(|(s, v)| s == "HTTP/1.1 200 OK" && v.as_deref() == Some("httpbin-1")),
        "after the retry, traffic: test goes to httpbin-1 again: {back:?}"
    );

    banner("Cleanup");
    println!("$ helm delete httpbin -n test");
    release.delete().await?;
    println!("$ helm delete iter8");
    controller.stop()?;
    prometheus.stop();
    dp.stop_backend(NS, "httpbin-0");
    dp.stop_backend(NS, "httpbin-1");
    println!(
        "\nguarded canary done: the failing candidate withdrawn from real Prometheus metrics, every curl answered through Envoy"
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let guarded = match std::env::args().nth(1).as_deref() {
        None | Some("seed") => false,
        Some("guard") => true,
        Some(other) => anyhow::bail!("unknown tutorial {other:?}: seed (the default) or guard"),
    };
    // Dropping the tutorial's future stops everything it started, by pid.
    let run = async {
        if guarded {
            guard_tutorial().await
        } else {
            tutorial().await
        }
    };
    tokio::select! {
        r = run => r,
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
