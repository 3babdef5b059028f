//! Faults, each ending with the right route and nothing lost: API server and etcd restarts,
//! another field manager editing the route, an invalid routemap, a controller restart with
//! nothing to do, and two replicas with leader election.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use iter8_e2e::prelude::*;

const ROUTE: &str = "httpbin";
const ROUTEMAP: &str = "httpbin-routemap";
const LEASE: &str = "iter8-controller-leader";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults() -> Result<()> {
    let cluster = Cluster::start("faults").await?;
    let mut suite = Suite::new(&cluster)?;
    suite
        .run(
            "API server restarted mid-run",
            apiserver_restart(&cluster, "fault-apiserver", false),
        )
        .await;
    suite
        .run(
            "API server killed mid-run",
            apiserver_restart(&cluster, "fault-apiserver-kill", true),
        )
        .await;
    suite
        .run("etcd restarted mid-run", etcd_restart(&cluster))
        .await;
    suite
        .run(
            "another field manager edits the route",
            other_manager(&cluster),
        )
        .await;
    suite
        .run("invalid routemap", invalid_routemap(&cluster))
        .await;
    suite
        .run(
            "controller restarted with nothing changed",
            restart_no_writes(&cluster, "fault-restart", &[]),
        )
        .await;
    suite
        .run(
            "controller restarted with nothing changed, --leader-election=false",
            restart_no_writes(
                &cluster,
                "fault-restart-nolease",
                &["--leader-election=false"],
            ),
        )
        .await;
    suite
        .run("two replicas, leader election", leader_election(&cluster))
        .await;
    suite.finish()
}

fn one_rule(r: &Live) -> std::result::Result<(), String> {
    one_rule_to("httpbin-0")(r)
}

fn two_rules(r: &Live) -> std::result::Result<(), String> {
    canary_split("httpbin-0", "httpbin-1")(r)
}

/// The tutorial's step 2 in `ns`, with a controller: httpbin-0 ready, httpbin-1 ready or not.
async fn canary<'a>(
    cluster: &'a Cluster,
    ns: &str,
    candidate_ready: bool,
    pod: &str,
) -> Result<(Release<'a>, Controller, Live)> {
    cluster.create_namespace(ns).await?;
    let mut release = Release::new(cluster, "httpbin", ns);
    release.upgrade(&[&values("seed-2-candidate.yaml")]).await?;
    cluster.set_deployment(ns, "httpbin-0", true).await?;
    if candidate_ready {
        cluster.set_deployment(ns, "httpbin-1", true).await?;
    }
    let mut controller = Controller::start(cluster, ns, pod)?;
    controller.wait_ready().await?;
    let live = if candidate_ready {
        cluster
            .wait_route(ns, ROUTE, "two rules", two_rules)
            .await?
    } else {
        cluster.wait_route(ns, ROUTE, "one rule", one_rule).await?
    };
    note(format!(
        "canary in {ns}: httpbin-0 ready, httpbin-1 {}: {}",
        if candidate_ready {
            "ready"
        } else {
            "not ready"
        },
        live.describe()
    ));
    Ok((release, controller, live))
}

async fn apiserver_restart(cluster: &Cluster, ns: &str, crash: bool) -> Result<()> {
    step(1, "canary with httpbin-1 not ready");
    let (_release, mut controller, _) = canary(cluster, ns, false, "iter8-controller-0").await?;
    step(
        2,
        if crash {
            "kill the API server (SIGKILL) and start it again (restart-apiserver.sh)"
        } else {
            "restart the API server gracefully (restart-apiserver.sh)"
        },
    );
    let t = Instant::now();
    cluster.restart_apiserver(crash)?;
    note(format!(
        "API server back in {:.1}s (same port, same etcd data)",
        t.elapsed().as_secs_f64()
    ));
    step(
        3,
        "mark httpbin-1 available: the change still reaches the route",
    );
    change_reaches_route(cluster, ns, &mut controller, true).await?;
    ok("controller alive; 2 writes in all (nothing lost, nothing repeated)");
    controller.stop()?;
    Ok(())
}

/// After a restart: a readiness change of httpbin-1 reaches the route, the controller survived,
/// and it made exactly two writes in all (the first route and this change).
async fn change_reaches_route(
    cluster: &Cluster,
    ns: &str,
    controller: &mut Controller,
    available: bool,
) -> Result<()> {
    let t = Instant::now();
    cluster.set_deployment(ns, "httpbin-1", available).await?;
    let live = if available {
        cluster
            .wait_route(ns, ROUTE, "two rules after the restart", two_rules)
            .await?
    } else {
        cluster
            .wait_route(ns, ROUTE, "one rule after the restart", one_rule)
            .await?
    };
    ok(format!(
        "after {:.1}s: {}",
        t.elapsed().as_secs_f64(),
        live.describe()
    ));
    ensure!(controller.alive(), "the controller exited");
    controller.expect_applied(cluster, ns, 2).await
}

async fn etcd_restart(cluster: &Cluster) -> Result<()> {
    let ns = "fault-etcd";
    step(1, "canary with httpbin-1 ready");
    let (_release, mut controller, _) = canary(cluster, ns, true, "iter8-controller-0").await?;
    step(2, "restart etcd (restart-etcd.sh)");
    let t = Instant::now();
    cluster.restart_etcd()?;
    note(format!(
        "etcd back and the API server serving in {:.1}s",
        t.elapsed().as_secs_f64()
    ));
    step(
        3,
        "mark httpbin-1 unavailable: the change still reaches the route",
    );
    change_reaches_route(cluster, ns, &mut controller, false).await?;
    ok("controller alive; 2 writes in all");
    controller.stop()?;
    Ok(())
}

async fn other_manager(cluster: &Cluster) -> Result<()> {
    let ns = "fault-manager";
    step(1, "canary with both versions ready");
    let (_release, mut controller, live) = canary(cluster, ns, true, "iter8-controller-0").await?;
    let applied = controller.applied()?;
    step(
        2,
        "field manager `other` adds label team=other and sets the candidate's weight to 7 (--force-conflicts)",
    );
    let mut rules = live.json["spec"]["rules"].clone();
    rules[0]["backendRefs"][0]["weight"] = 7.into();
    let edit = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": ROUTE, "namespace": ns, "labels": {"team": "other"}},
        "spec": {"rules": rules},
    });
    let out = cluster.kubectl_in(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(&edit.to_string()),
    )?;
    note(out.trim());
    let live = cluster
        .wait_route(ns, ROUTE, "the weight repaired to 1", |r| {
            (r.backends(0) == [("httpbin-1".to_string(), 1)] && two_rules(r).is_ok())
                .then_some(())
                .ok_or_else(|| "weight not repaired".into())
        })
        .await?;
    ok(format!(
        "controller repaired its fields: {}",
        live.describe()
    ));
    // Evidence that the controller has judged the route it repaired (its own write's echo)
    // before checking that it did not write again.
    controller.wait_caught_up(cluster, ns).await?;
    let live = cluster.existing_route(ns, ROUTE).await?;
    ensure!(
        two_rules(&live).is_ok() && live.backends(0) == [("httpbin-1".to_string(), 1)],
        "route changed again: {}",
        live.describe()
    );
    ensure!(
        live.label("team").as_deref() == Some("other"),
        "the other manager's label was removed"
    );
    ok("label team=other (field manager other) left alone");
    let managers = live.managers();
    ensure!(
        managers.iter().any(|m| m == "other") && managers.iter().any(|m| m == "iter8-controller"),
        "managedFields: {managers:?}"
    );
    ok(format!("managedFields managers: {}", managers.join(", ")));
    let repairs = controller.applied()? - applied;
    ensure!(repairs == 1, "expected one repair write, got {repairs}");
    ok("exactly one repair write");
    controller.stop()?;
    Ok(())
}

async fn invalid_routemap(cluster: &Cluster) -> Result<()> {
    let ns = "fault-invalid";
    step(1, "canary with both versions ready");
    let (mut release, mut controller, live) =
        canary(cluster, ns, true, "iter8-controller-0").await?;
    // The route's spec (its generation) is what must not move: the status annotation on it
    // changes, as it should, to report the invalid routemap.
    let generation = live.generation();
    let applied = controller.applied()?;

    step(2, "a user edits the routemap: its candidate has no matches");
    remove_candidate_matches(cluster, ns, ROUTEMAP).await?;
    let warning = wait_for("a Warning InvalidRouteMap Event", timeout(), || async {
        let events = cluster.events(ns, ROUTEMAP).await?;
        Ok(events
            .iter()
            .find(|e| {
                e.reason.as_deref() == Some("InvalidRouteMap")
                    && e.type_.as_deref() == Some("Warning")
            })
            .and_then(|e| e.message.clone())
            .ok_or_else(|| format!("{} events, none InvalidRouteMap", events.len())))
    })
    .await?;
    ok(format!("Warning InvalidRouteMap: {warning}"));
    let n = cluster.event_count(ns, ROUTEMAP, "InvalidRouteMap").await?;
    ensure!(n == 1, "{n} InvalidRouteMap Events; want exactly 1");
    ensure!(
        warning.contains("versions[1].matches"),
        "the Event must name the field path versions[1].matches"
    );
    ok("the Event names the field path versions[1].matches");
    // Evidence that the controller has judged the invalid routemap (and written its status)
    // before checking that it left the route alone.
    controller.wait_caught_up(cluster, ns).await?;
    let now = cluster.existing_route(ns, ROUTE).await?;
    ensure!(
        now.generation() == generation && controller.applied()? == applied,
        "the live route's spec must stay as it was (generation {generation} -> {})",
        now.generation()
    );
    ok(format!(
        "live route spec unchanged (generation {generation}): {}",
        now.describe()
    ));

    step(3, "a user edits the routemap: its spec is not YAML");
    edit_routemap(cluster, ns, ROUTEMAP, |_| Ok("strategy: [canary\n".into())).await?;
    wait_for("a second InvalidRouteMap Event", timeout(), || async {
        let n = cluster.event_count(ns, ROUTEMAP, "InvalidRouteMap").await?;
        Ok(if n >= 2 {
            Ok(())
        } else {
            Err(format!("{n} InvalidRouteMap Events"))
        })
    })
    .await?;
    controller.wait_caught_up(cluster, ns).await?;
    let n = cluster.event_count(ns, ROUTEMAP, "InvalidRouteMap").await?;
    ensure!(
        n == 2,
        "{n} InvalidRouteMap Events; want exactly 2 (one per invalid edit)"
    );
    let events = cluster.events(ns, ROUTEMAP).await?;
    if let Some(e) = events
        .iter()
        .rev()
        .find(|e| e.reason.as_deref() == Some("InvalidRouteMap"))
    {
        ok(format!(
            "Warning InvalidRouteMap: {}",
            e.message.as_deref().unwrap_or("")
        ));
    }
    controller.wait_caught_up(cluster, ns).await?;
    let now = cluster.existing_route(ns, ROUTE).await?;
    ensure!(
        now.generation() == generation && controller.applied()? == applied,
        "route changed"
    );
    ok("live route unchanged");

    step(
        4,
        "helm upgrade with the release's values: helm puts the valid routemap back",
    );
    release.upgrade(&[&values("seed-2-candidate.yaml")]).await?;
    cluster
        .wait_status(
            ns,
            ROUTEMAP,
            &["httpbin-0", "httpbin-1"],
            &["httpbin-0", "httpbin-1"],
        )
        .await?;
    controller.wait_caught_up(cluster, ns).await?;
    let now = cluster.existing_route(ns, ROUTE).await?;
    ensure!(
        now.generation() == generation
            && two_rules(&now).is_ok()
            && controller.applied()? == applied,
        "route after recovery: {}",
        now.describe()
    );
    ensure!(controller.alive(), "the controller exited");
    ok(format!(
        "valid again; the route never changed and needs no write: {}",
        now.describe()
    ));
    show_events(&cluster.events(ns, ROUTEMAP).await?);
    controller.stop()?;
    Ok(())
}

async fn restart_no_writes(cluster: &Cluster, ns: &str, extra: &[&str]) -> Result<()> {
    step(1, "canary with both versions ready");
    let (_release, mut controller, live) = canary(cluster, ns, true, "iter8-controller-0").await?;
    // The first replica has finished (route, status annotation, Events) before the snapshot.
    controller.wait_caught_up(cluster, ns).await?;
    let rv = cluster.existing_route(ns, ROUTE).await?.resource_version();
    ensure!(
        rv == live.resource_version(),
        "the route changed after it was right"
    );
    let events = cluster.events(ns, ROUTEMAP).await?.len();
    let status = cluster.routemap_status(ns, ROUTEMAP).await?;
    step(
        2,
        "stop the controller (SIGTERM) and start it again, nothing changed",
    );
    controller.stop()?;
    let mut controller = Controller::start_with(cluster, ns, "iter8-controller-0", extra)?;
    controller.wait_ready().await?;
    // Positive evidence that the new process has looked at the routemap and found the route
    // right, before checking that it wrote nothing.
    wait_for(
        "the new replica to lead and check the route",
        timeout(),
        || async {
            let leader = controller.metric("iter8_leader")?;
            let unchanged = controller.metric("iter8_applies_total{result=\"unchanged\"}")?;
            Ok(if leader == 1.0 && unchanged >= 1.0 {
                Ok(())
            } else {
                Err(format!("leader {leader}, unchanged {unchanged}"))
            })
        },
    )
    .await?;
    // ... and has caught up with everything it watches.
    controller.wait_caught_up(cluster, ns).await?;
    let now = cluster.existing_route(ns, ROUTE).await?;
    let applied = controller.applied()?;
    ensure!(
        now.resource_version() == rv && applied == 0,
        "expected zero writes: route rv {rv} -> {}, applies {applied}",
        now.resource_version()
    );
    ok(format!(
        "route resourceVersion {rv} unchanged; iter8_applies_total{{result=\"applied\"}} 0"
    ));
    let events_after = cluster.events(ns, ROUTEMAP).await?.len();
    ensure!(
        events_after == events,
        "no new Events expected ({events} -> {events_after})"
    );
    ensure!(
        cluster.routemap_status(ns, ROUTEMAP).await? == status,
        "status annotation rewritten"
    );
    ok(format!(
        "no new Event ({events} in all), status annotation unchanged"
    ));
    controller.stop()?;
    Ok(())
}

async fn leader_election(cluster: &Cluster) -> Result<()> {
    let ns = "fault-leader";
    step(1, "replica a starts first and takes the Lease");
    let (_release, mut a, _) = canary(cluster, ns, false, "replica-a").await?;
    let holder = wait_for("replica-a to hold the Lease", timeout(), || async {
        Ok(match cluster.lease_holder(ns, LEASE).await? {
            Some(h) if h == "replica-a" => Ok(h),
            other => Err(format!("holder {other:?}")),
        })
    })
    .await?;
    ok(format!("Lease {LEASE} held by {holder}"));

    step(2, "replica b starts: a follower with a warm cache");
    let mut b = Controller::start(cluster, ns, "replica-b")?;
    b.wait_ready().await?;
    ensure!(b.metric("iter8_leader")? == 0.0, "b must not lead");
    ok("replica-b ready, iter8_leader 0");

    step(3, "httpbin-1 ready: only the leader writes");
    cluster.set_deployment(ns, "httpbin-1", true).await?;
    let live = cluster
        .wait_route(ns, ROUTE, "two rules", two_rules)
        .await?;
    a.expect_applied(cluster, ns, 2).await?;
    let (wa, wb) = (a.applied()?, b.applied()?);
    ensure!(wa == 2 && wb == 0, "writes: a {wa}, b {wb}");
    let skipped = b.metric("iter8_applies_total{result=\"skipped_follower\"}")?;
    ok(format!(
        "{}; writes: replica-a {wa}, replica-b {wb} (b skipped {skipped} as follower)",
        live.describe()
    ));
    let events = cluster.events(ns, ROUTEMAP).await?;
    ensure!(
        events
            .iter()
            .all(|e| e.reporting_instance.as_deref() == Some("replica-a")),
        "Events from a follower"
    );
    ok(format!("all {} Events reported by replica-a", events.len()));

    step(
        4,
        "kill replica-a (SIGKILL, Lease not released); httpbin-1 becomes unavailable",
    );
    a.kill();
    let killed = Instant::now();
    cluster.set_deployment(ns, "httpbin-1", false).await?;
    let limit = LEASE_DURATION + Duration::from_secs(5);
    let live = cluster
        .wait_route_within(
            ns,
            ROUTE,
            "replica-b to apply the new decision",
            limit,
            one_rule,
        )
        .await?;
    let took = killed.elapsed();
    let holder = cluster.lease_holder(ns, LEASE).await?;
    ensure!(
        holder.as_deref() == Some("replica-b"),
        "Lease holder {holder:?}"
    );
    ensure!(
        took <= LEASE_DURATION + Duration::from_secs(2),
        "takeover took {:.1}s, more than the lease duration {}s (+2 s)",
        took.as_secs_f64(),
        LEASE_DURATION.as_secs()
    );
    ok(format!(
        "replica-b took over and applied after {:.1}s (lease duration {}s): {}",
        took.as_secs_f64(),
        LEASE_DURATION.as_secs(),
        live.describe()
    ));
    b.expect_applied(cluster, ns, 1).await?;
    let events = cluster.events(ns, ROUTEMAP).await?;
    let last = events
        .iter()
        .rev()
        .find(|e| e.reason.as_deref() == Some("RouteApplied"))
        .and_then(|e| e.reporting_instance.clone());
    ensure!(
        last.as_deref() == Some("replica-b"),
        "last RouteApplied from {last:?}"
    );
    ok("one write by replica-b, its RouteApplied Event reported by replica-b");
    b.stop()?;
    Ok(())
}
