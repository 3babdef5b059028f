//! `just tutorial`: the seed canary tutorial, live. A real API server (etcd-backed), the real
//! iter8-controller, the real release chart at each step (rendered by helm and applied as the
//! e2e tests apply it), a real Envoy programmed from the live HTTPRoute by the test-only
//! translator, and one real httpbin per version; the tutorial's `curl` commands are run against
//! Envoy and their real answers printed. The harness plays what has no process here: it writes
//! each Deployment's status and its EndpointSlice (no kubelet, no controller-manager).
//!
//! Everything it starts is stopped by its pid when it ends, fails, or gets Ctrl-C / SIGTERM.

use std::time::Duration;

use anyhow::{Result, ensure};
use iter8_e2e::gateway::dataplane::{Dataplane, translator_answer};
use iter8_e2e::gateway::traffic::{curl, request};
use iter8_e2e::prelude::*;
use iter8_e2e::wait::wait_every;

const NS: &str = "test";
const HOST: &str = "httpbin.test";
const ROUTE: &str = "httpbin";
const ROUTEMAP: &str = "httpbin-routemap";

fn banner(title: &str) {
    println!("\n================================================================");
    println!("== {title}");
    println!("================================================================");
}

/// The tutorial's `helm upgrade --install` with the values file, as the tutorial prints it.
fn show_helm(values_file: &str) -> Result<()> {
    let text = std::fs::read_to_string(values(values_file))?;
    println!("$ cat <<EOF | helm -n test upgrade --install httpbin charts/release -f -");
    print!("{text}");
    println!("EOF");
    note(format!(
        "(fixtures/charts/values/{values_file}: rendered with helm template and applied server-side, as the e2e tests do)"
    ));
    Ok(())
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

/// `kubectl get httproute` in one line, with the gateway's answer.
async fn show_route(cluster: &Cluster, dp: &Dataplane<'_>) -> Result<()> {
    let route = dp.wait_programmed(NS, ROUTE).await?;
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
    let _ = cluster;
    Ok(())
}

async fn ready(dp: &mut Dataplane<'_>, version: &str) -> Result<()> {
    dp.set_version(NS, version, true).await?;
    let addr = dp.backend(NS, version)?.addr;
    note(format!(
        "(harness) deploy/{version} status Available=True; EndpointSlice {version}-e2e endpoint 127.0.0.1:{} ready (its httpbin)",
        addr.port()
    ));
    Ok(())
}

async fn tutorial() -> Result<()> {
    banner("Setup: a real API server (etcd), the iter8 controller, Envoy + the translator");
    let cluster = Cluster::start("tutorial").await?;
    let mut dp = Dataplane::start(&cluster, &[])?;
    cluster.create_namespace(NS).await?;
    note("namespace test created");
    let mut controller = Controller::start(&cluster, NS, "iter8-controller-0")?;
    controller.wait_ready().await?;
    let mut release = Release::new(&cluster, "httpbin", NS);

    banner("Deploy initial version");
    show_helm("seed-1-initial.yaml")?;
    release.upgrade(&[&values("seed-1-initial.yaml")]).await?;
    ready(&mut dp, "httpbin-0").await?;
    cluster
        .wait_route(NS, ROUTE, "one rule to httpbin-0", one_rule_to("httpbin-0"))
        .await?;
    show_route(&cluster, &dp).await?;
    curls(&dp, "httpbin-0", "httpbin-0")?;

    banner("Deploy candidate");
    show_helm("seed-2-candidate.yaml")?;
    release.upgrade(&[&values("seed-2-candidate.yaml")]).await?;
    dp.set_version(NS, "httpbin-1", false).await?;
    note("(harness) httpbin-1 created, not ready yet: traffic: test still goes to httpbin-0");
    cluster
        .wait_status(NS, ROUTEMAP, &["httpbin-0"], &["httpbin-0", "httpbin-1"])
        .await?;
    curls(&dp, "httpbin-0", "httpbin-0")?;
    ready(&mut dp, "httpbin-1").await?;
    cluster
        .wait_route(
            NS,
            ROUTE,
            "the canary split",
            canary_split("httpbin-0", "httpbin-1"),
        )
        .await?;
    show_route(&cluster, &dp).await?;
    curls(&dp, "httpbin-0", "httpbin-1")?;

    banner("Promote candidate");
    show_helm("seed-3-promote.yaml")?;
    release.upgrade(&[&values("seed-3-promote.yaml")]).await?;
    dp.delete_slice(NS, "httpbin-1").await?;
    note("(harness) Service httpbin-1 deleted by the upgrade: its EndpointSlice goes too");
    cluster
        .wait_route(
            NS,
            ROUTE,
            "the candidate rule removed",
            one_rule_to("httpbin-0"),
        )
        .await?;
    ready(&mut dp, "httpbin-0").await?;
    dp.stop_backend(NS, "httpbin-1");
    show_route(&cluster, &dp).await?;
    curls(&dp, "httpbin-0", "httpbin-0")?;
    println!("$ kubectl -n test describe cm httpbin-routemap   # Events");
    show_events(&cluster.events(NS, ROUTEMAP).await?);

    banner("Cleanup");
    println!("$ helm -n test delete httpbin");
    let deleted = release.delete().await?;
    note(format!("deleted {}", deleted.objects.join(" ")));
    dp.delete_slice(NS, "httpbin-0").await?;
    if dp.collect_garbage(NS, ROUTE).await? {
        note(
            "(harness, as the garbage collector) HTTPRoute httpbin deleted: its owner httpbin-routemap is gone",
        );
    }
    let listener = dp.listener();
    wait_every(
        "Envoy to drop httpbin.test",
        timeout(),
        Duration::from_millis(20),
        || async {
            let a = request(listener, HOST, "/", false);
            Ok(if a.status == 404 {
                Ok(())
            } else {
                Err(format!("{}", a.status))
            })
        },
    )
    .await?;
    let c = curl(dp.listener(), HOST, false)?;
    println!("$ curl httpbin.test -s -D - | grep -e '^HTTP' -e app-version");
    for l in &c.shown {
        println!("{l}");
    }
    note("(no route for httpbin.test any more)");
    println!("$ helm delete iter8");
    controller.stop()?;
    dp.stop_backend(NS, "httpbin-0");
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
