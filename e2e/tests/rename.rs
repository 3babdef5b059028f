//! A routemap that renames its route (`route.name`): the controller writes the new route, then
//! deletes the one it owned under the old name and says so in an Event; a route of the old name
//! that it does not own (another owner) is left alone.

use anyhow::{Result, ensure};
use iter8_e2e::prelude::*;

const NS: &str = "rename";
const ROUTEMAP: &str = "httpbin-routemap";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename() -> Result<()> {
    let cluster = Cluster::start("rename").await?;
    let mut suite = Suite::new(&cluster)?;
    suite
        .run(
            "renamed route: new one written, old one deleted",
            renamed(&cluster),
        )
        .await;
    suite.finish()
}

/// The routemap's spec with its route named `name`.
fn with_route_name(data: &str, name: &str) -> Result<String> {
    let from = r#""name":"httpbin","parentRefs""#;
    ensure!(
        data.matches(from).count() == 1,
        "the routemap no longer names its route as expected"
    );
    Ok(data.replace(from, &format!(r#""name":"{name}","parentRefs""#)))
}

async fn renamed(cluster: &Cluster) -> Result<()> {
    step(
        1,
        "release seed-1-initial.yaml, httpbin-0 available: route httpbin",
    );
    let (_release, controller) =
        release_with_controller(cluster, NS, "seed-1-initial.yaml").await?;
    cluster.set_deployment(NS, "httpbin-0", true).await?;
    let old = cluster
        .wait_route(
            NS,
            "httpbin",
            "one rule to httpbin-0",
            one_rule_to("httpbin-0"),
        )
        .await?;
    ok(format!("httpbin: {}", old.describe()));

    step(2, "the routemap renames its route to httpbin-v2");
    edit_routemap(cluster, NS, ROUTEMAP, |d| with_route_name(d, "httpbin-v2")).await?;
    let new = cluster
        .wait_route(
            NS,
            "httpbin-v2",
            "one rule to httpbin-0",
            one_rule_to("httpbin-0"),
        )
        .await?;
    ok(format!("httpbin-v2: {}", new.describe()));
    wait_for("the old route httpbin to be deleted", timeout(), || async {
        Ok(match cluster.route(NS, "httpbin").await? {
            None => Ok(()),
            Some(r) => Err(format!("still there (rv {})", r.resource_version())),
        })
    })
    .await?;
    ok("the old route httpbin is gone");
    wait_for(
        "a RouteRemoved Event on the routemap",
        timeout(),
        || async {
            Ok(
                match cluster.event_count(NS, ROUTEMAP, "RouteRemoved").await? {
                    1 => Ok(()),
                    n => Err(format!("{n} RouteRemoved Events")),
                },
            )
        },
    )
    .await?;
    show_events(&cluster.events(NS, ROUTEMAP).await?);

    step(
        3,
        "a route named httpbin that another owner wrote is never deleted",
    );
    let theirs = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: httpbin\n  namespace: {NS}\n  labels:\n    iter8.tools/routemap: {ROUTEMAP}\n    app.kubernetes.io/managed-by: iter8-controller\nspec:\n  parentRefs:\n  - {{group: \"\", kind: Service, name: httpbin, port: 80}}\n  rules:\n  - backendRefs:\n    - name: httpbin-0\n      port: 80\n"
    );
    cluster.kubectl_in(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "someone-else",
            "-f",
            "-",
        ],
        Some(&theirs),
    )?;
    controller.wait_caught_up(cluster, NS).await?;
    ensure!(
        cluster.route(NS, "httpbin").await?.is_some(),
        "the controller deleted a route it does not own"
    );
    ensure!(
        cluster.event_count(NS, ROUTEMAP, "RouteRemoved").await? == 1,
        "a second RouteRemoved Event"
    );
    ok("a route without our owner reference stays, even with our labels");
    Ok(())
}
