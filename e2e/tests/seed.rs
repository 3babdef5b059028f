//! The seed canary tutorial, step by step, against a real API server with the real controller.

use anyhow::{Result, ensure};
use iter8_e2e::prelude::*;

const NS: &str = "test";
const ROUTE: &str = "httpbin";
const ROUTEMAP: &str = "httpbin-routemap";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_tutorial() -> Result<()> {
    let cluster = Cluster::start("seed").await?;
    let mut suite = Suite::new(&cluster)?;
    suite.run("seed canary tutorial", tutorial(&cluster)).await;
    suite.finish()
}

/// RouteApplied Events, controller applies and route generations agree: one Event per write.
async fn check_events(cluster: &Cluster, controller: &Controller, live: &Live) -> Result<()> {
    let n = writes_agree(cluster, controller, NS, ROUTEMAP, ROUTE).await?;
    ensure!(
        n as i64 == live.generation(),
        "{n} writes, but the route read before has generation {}",
        live.generation()
    );
    ok(format!(
        "{n} RouteApplied Event(s) = {n} apply(ies) = route generation {n}"
    ));
    Ok(())
}

/// httpbin-0 rolled out (its status written as a controller-manager would): the controller
/// lists it as the only available version and routes everything to it.
async fn primary_ready(cluster: &Cluster) -> Result<Live> {
    let generation = cluster.set_deployment(NS, "httpbin-0", true).await?;
    note(format!(
        "deploy/httpbin-0 status: Available=True, observedGeneration {generation}"
    ));
    cluster
        .wait_status(NS, ROUTEMAP, &["httpbin-0"], &["httpbin-0"])
        .await?;
    cluster
        .wait_route(NS, ROUTE, "one rule to httpbin-0", one_rule_to("httpbin-0"))
        .await
}

async fn tutorial(cluster: &Cluster) -> Result<()> {
    step(1, "deploy the initial version (seed-1-initial.yaml)");
    let (mut release, mut controller) =
        release_with_controller(cluster, NS, "seed-1-initial.yaml").await?;
    cluster
        .wait_status(NS, ROUTEMAP, &[], &["httpbin-0"])
        .await?;
    match cluster.route(NS, ROUTE).await? {
        Some(live) => note(format!(
            "before httpbin-0 is ready: {} (the primary stays the default backend)",
            live.describe()
        )),
        None => note("before httpbin-0 is ready: no HTTPRoute yet"),
    }
    let live = primary_ready(cluster).await?;
    println!("==> step 1: httpbin-0 ready: {}", live.describe());
    ensure!(
        live.app_version_headers_ok(),
        "backends must set app-version"
    );
    ok("every backend sets the response header app-version: <its name>");
    let parent = &live.route.spec.parent_refs;
    ensure!(
        parent.len() == 1
            && parent[0].kind == "Service"
            && parent[0].name == "httpbin"
            && parent[0].port == Some(80),
        "parentRefs {parent:?}"
    );
    ok("parentRef: Service httpbin port 80 (mesh)");
    live.expect_all_to("httpbin-0")?;
    check_events(cluster, &controller, &live).await?;

    step(2, "deploy the candidate (seed-2-candidate.yaml)");
    let before = live.resource_version();
    release.upgrade(&[&values("seed-2-candidate.yaml")]).await?;
    cluster
        .wait_status(NS, ROUTEMAP, &["httpbin-0"], &["httpbin-0", "httpbin-1"])
        .await?;
    // Evidence that the controller has judged the new routemap before checking it wrote nothing.
    controller.wait_caught_up(cluster, NS).await?;
    let live = cluster.existing_route(NS, ROUTE).await?;
    println!(
        "==> step 2: candidate httpbin-1 deployed, not ready: route has {} rule ({})",
        live.rules(),
        live.describe()
    );
    ensure!(
        live.rules() == 1 && live.resource_version() == before && controller.applied()? == 1,
        "no candidate rule while httpbin-1 is unavailable, and no write"
    );
    ok("no candidate rule while httpbin-1 is unavailable (route not rewritten)");
    let generation = cluster.set_deployment(NS, "httpbin-1", true).await?;
    note(format!(
        "deploy/httpbin-1 status: Available=True, observedGeneration {generation}"
    ));
    let live = cluster
        .wait_route(
            NS,
            ROUTE,
            "a traffic: test rule to httpbin-1",
            canary_split("httpbin-0", "httpbin-1"),
        )
        .await?;
    println!("==> step 2: httpbin-1 ready: {}", live.describe());
    ensure!(live.rules() == 2, "two rules expected");
    ok(format!(
        "GET / traffic: test -> {}",
        live.explain(&test_request())
    ));
    ok(format!("GET / -> {}", live.explain(&plain_request())));
    ensure!(live.app_version_headers_ok(), "app-version headers");
    check_events(cluster, &controller, &live).await?;

    step(
        3,
        "promote: redefine version 0, remove version 1 (seed-3-promote.yaml)",
    );
    // The tutorial changes only the version label; a real promotion also changes the image, so
    // the Deployment's spec changes and httpbin-0 is unavailable until it has rolled out.
    let promote = promote_with_new_image(&cluster.dir, "seed-3-promote-new-image")?;
    note("seed-3-promote.yaml with the image changed to kennethreitz/httpbin:latest");
    release
        .upgrade(&[&values("seed-3-promote.yaml"), &promote])
        .await?;
    let (generation, observed) = cluster.deployment_generations(NS, "httpbin-0").await?;
    ensure!(
        generation > observed,
        "the spec change must bump generation ({generation} vs observed {observed})"
    );
    cluster
        .wait_status(NS, ROUTEMAP, &[], &["httpbin-0"])
        .await?;
    ok(format!(
        "deploy/httpbin-0 generation {generation} > observedGeneration {observed}: httpbin-0 unavailable"
    ));
    let live = cluster
        .wait_route(NS, ROUTE, "the candidate rule removed", |r| {
            (r.rules() == 1)
                .then_some(())
                .ok_or_else(|| "still a candidate rule".into())
        })
        .await?;
    note(format!("while httpbin-0 rolls out: {}", live.describe()));
    let live = primary_ready(cluster).await?;
    println!("==> step 3: new httpbin-0 ready: {}", live.describe());
    for req in [plain_request(), test_request()] {
        ensure!(
            live.serves(&req) == [("httpbin-0".into(), Some("httpbin-0".into()))],
            "{req:?} -> {}",
            live.explain(&req)
        );
    }
    ok(format!(
        "GET / traffic: test -> {}",
        live.explain(&test_request())
    ));
    ok(format!("GET / -> {}", live.explain(&plain_request())));
    check_events(cluster, &controller, &live).await?;
    let events = cluster.events(NS, ROUTEMAP).await?;
    show_events(&events);

    step(
        4,
        "cleanup: delete the release's objects (what helm delete does)",
    );
    let routemap = cluster
        .configmap(NS, ROUTEMAP)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no routemap"))?;
    let uid = routemap.metadata.uid.clone().unwrap_or_default();
    let owners = &live.route.metadata.owner_references;
    ensure!(
        owners.len() == 1
            && owners[0].api_version == "v1"
            && owners[0].kind == "ConfigMap"
            && owners[0].name == ROUTEMAP
            && owners[0].uid == uid
            && owners[0].controller,
        "owner references {owners:?} (routemap uid {uid})"
    );
    ok(format!(
        "the route's owner reference: v1 ConfigMap {ROUTEMAP} uid {uid} (controller)"
    ));
    let rv = live.resource_version();
    let applied = controller.applied()?;
    let deleted = release.delete().await?;
    note(format!("deleted {}", deleted.objects.join(" ")));
    ensure!(
        cluster.configmap(NS, ROUTEMAP).await?.is_none(),
        "routemap still there"
    );
    // Evidence that the controller has handled the deletions before checking it wrote nothing.
    controller
        .wait_observed(&deleted.watched, timeout())
        .await?;
    controller.wait_caught_up(cluster, NS).await?;
    note(format!(
        "the controller has handled the deletions (resourceVersions {:?})",
        deleted.watched
    ));
    let after = cluster.existing_route(NS, ROUTE).await?;
    ensure!(
        after.resource_version() == rv && controller.applied()? == applied,
        "the controller must not touch the route of a deleted routemap"
    );
    ok(format!(
        "owner {ROUTEMAP} (uid {uid}) is gone: Kubernetes' garbage collector deletes the route (this test server has none; the controller leaves the route alone)"
    ));
    ensure!(controller.alive(), "controller exited");
    controller.stop()?;
    Ok(())
}
