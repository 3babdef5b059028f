//! Only what is ours, proven against the real controller: `charts/controller` installed with
//! real helm (namespace-scoped), its Deployment run as the chart's pod (the image, the service
//! account's real token, RBAC enforced by the API server: `src/pod/`), then the attacks of
//! issue 19:
//!
//! 1. a routemap names an HTTPRoute `victim` someone else made (other parent, other rules): the
//!    route stays untouched (spec, owner references, resourceVersion), the routemap gets a
//!    Warning `RouteNotOwned` naming its field manager; renaming `route.name` afterwards never
//!    deletes it;
//! 2. two routemaps name one route: the older keeps it, the newer gets `RouteClaimed` naming
//!    it, and readiness flips meanwhile make no write loop (each flip one write, by the winner);
//! 3. the controller's own token cannot patch a ConfigMap in its namespace (403).
//!
//! The API server's authorization log then counts the controller's forbidden requests and its
//! writes to foreign routes. It prints
//! `authority: F foreign routes untouched, C conflicts reported, W writes to foreign routes, X forbidden requests`
//! and fails unless W = 0 and X = 0.

use std::time::Duration;

use anyhow::{Result, ensure};
use iter8_e2e::install::{RELEASE, admin_port};
use iter8_e2e::pod::{Docker, Pod};
use iter8_e2e::prelude::*;
use iter8_e2e::rbac::{authz_log, client_with_token, expect_forbidden};
use iter8_e2e::tools::repo_root;
use k8s_adapter::kube_types::configmap_resource;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

const NS: &str = "iter8-system";
const APP: &str = "shop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_is_ours() -> Result<()> {
    let docker = Docker::from_env()?;
    let cluster = Cluster::start("authority").await?;
    step(
        "install",
        format!("helm install {RELEASE} charts/controller -n {NS}"),
    );
    let (_port, extra) = admin_port()?;
    let chart = repo_root().join("charts/controller");
    let chart = chart.to_string_lossy();
    let mut args = vec!["install", RELEASE, &chart, "-n", NS, "--create-namespace"];
    args.extend(extra.iter().map(String::as_str));
    helm(&cluster, &args)?;
    let log_start = authz_log(&cluster)?.len();
    let mut pod = Pod::run(&cluster, &docker, NS, RELEASE).await?;
    pod.wait_ready().await?;
    cluster.set_deployment(NS, RELEASE, true).await?;
    ok(format!("the controller runs as {}", pod.user));
    versions(&cluster).await?;

    let foreign_untouched = foreign_route(&cluster).await?;
    claimed_route(&cluster).await?;
    for routemap in ["attacker-routemap", "second-routemap"] {
        note(format!("Events of {routemap}:"));
        show_events(&cluster.events(NS, routemap).await?);
    }
    // Conflicts as users were told of them: the Warnings on the two losing routemaps.
    let conflicts = cluster
        .event_count(NS, "attacker-routemap", "RouteNotOwned")
        .await?
        + cluster
            .event_count(NS, "second-routemap", "RouteClaimed")
            .await?;

    let code = pod.stop()?;
    ensure!(
        code == 0,
        "the controller exited with {code} on docker stop"
    );
    // The controller's own requests, up to here.
    let log = authz_log(&cluster)?;
    let mine: Vec<&Value> = log[log_start..]
        .iter()
        .filter(|l| l["user"] == pod.user.as_str())
        .collect();
    let forbidden = mine.iter().filter(|l| l["allowed"] == false).count();
    let foreign_writes = mine
        .iter()
        .filter(|l| {
            l["resource"] == "httproutes"
                && l["name"] == "victim"
                && !matches!(l["verb"].as_str(), Some("get" | "list" | "watch"))
        })
        .count();
    for l in mine.iter().filter(|l| l["allowed"] == false) {
        note(format!("FORBIDDEN: {l}"));
    }

    step("rbac", "a ConfigMap patch with the controller's own token");
    let client = client_with_token(&cluster, &pod.token).await?;
    expect_forbidden(
        &format!("patch ConfigMap {APP}-routemap in {NS}"),
        Api::<DynamicObject>::namespaced_with(client, NS, &configmap_resource())
            .patch(
                &format!("{APP}-routemap"),
                &PatchParams::apply("iter8-controller-status").force(),
                &Patch::Apply(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("{APP}-routemap"), "namespace": NS,
                                 "annotations": {"iter8.tools/status": "{}"}}})),
            )
            .await,
    )?;

    println!(
        "authority: {foreign_untouched} foreign routes untouched, {conflicts} conflicts reported, {foreign_writes} writes to foreign routes, {forbidden} forbidden requests"
    );
    ensure!(
        foreign_writes == 0 && forbidden == 0,
        "the controller wrote {foreign_writes} time(s) to a foreign route and was refused {forbidden} request(s)"
    );
    helm(&cluster, &["delete", RELEASE, "-n", NS])?;
    Ok(())
}

/// Server-side apply of `obj` as the test's own field manager `manager`.
async fn apply(cluster: &Cluster, obj: &Value, manager: &str) -> Result<DynamicObject> {
    let obj: DynamicObject = serde_json::from_value(obj.clone())?;
    let gvk = obj
        .types
        .as_ref()
        .map(|t| (t.api_version.clone(), t.kind.clone()))
        .unwrap_or_default();
    let resource = match gvk.1.as_str() {
        "HTTPRoute" => k8s_adapter::kube_types::httproute_resource(),
        "ConfigMap" => configmap_resource(),
        "Service" => kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
        _ => kube::core::ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
    };
    let name = obj.metadata.name.clone().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), NS, &resource);
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&obj),
        )
        .await?)
}

/// The two versions every routemap here names, both available.
async fn versions(cluster: &Cluster) -> Result<()> {
    for v in 0..2 {
        let name = format!("{APP}-{v}");
        apply(
            cluster,
            &json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NS, "labels": {"iter8.tools/watch": "true"}},
                "spec": {"ports": [{"port": 80}]}}),
            "test",
        )
        .await?;
        apply(
            cluster,
            &json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": NS, "labels": {"iter8.tools/watch": "true"}},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": "app", "image": "httpbin"}]}}}}),
            "test",
        )
        .await?;
        cluster.set_deployment(NS, &name, true).await?;
    }
    Ok(())
}

/// A routemap `name` (as the release chart renders one) writing route `route`.
fn routemap(name: &str, route: &str) -> Value {
    let mut spec = test_builders::chart_canary_spec(APP, NS);
    spec["route"]["name"] = json!(route);
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS,
                     "labels": {"iter8.tools/kind": "routemap", "iter8.tools/version": "v2"}},
        "data": {"routemap.yaml": format!("{spec}\n")}})
}

/// What must never change on a route someone else made.
fn fingerprint(route: &DynamicObject) -> Value {
    json!({
        "resourceVersion": route.metadata.resource_version,
        "ownerReferences": route.metadata.owner_references,
        "labels": route.metadata.labels,
        "spec": route.data["spec"],
    })
}

/// Waits for a Warning `reason` on routemap `routemap` whose note contains `part`.
async fn warning(cluster: &Cluster, routemap: &str, reason: &str, part: &str) -> Result<String> {
    wait_for(
        &format!("Warning {reason} on {routemap}"),
        timeout(),
        || async {
            let events = cluster.events(NS, routemap).await?;
            Ok(events
                .iter()
                .find(|e| e.reason.as_deref() == Some(reason))
                .and_then(|e| e.message.clone())
                .filter(|m| m.contains(part))
                .ok_or_else(|| format!("{} Event(s), none {reason} naming {part}", events.len())))
        },
    )
    .await
}

/// Attack 1: the platform team's route `victim`, named by an attacker's routemap, then renamed
/// away from. Returns the foreign routes left untouched (1).
async fn foreign_route(cluster: &Cluster) -> Result<usize> {
    step(
        "foreign",
        "a routemap names the platform team's HTTPRoute victim",
    );
    let victim = apply(
        cluster,
        &json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "victim", "namespace": NS},
            "spec": {"parentRefs": [{"name": "prod-gateway"}],
                     "rules": [{"backendRefs": [{"name": "payments", "port": 80}]}]}}),
        "platform-team",
    )
    .await?;
    let before = fingerprint(&victim);
    apply(cluster, &routemap("attacker-routemap", "victim"), "helm").await?;
    let note = warning(
        cluster,
        "attacker-routemap",
        "RouteNotOwned",
        "platform-team",
    )
    .await?;
    ok(format!("Warning RouteNotOwned: {note}"));
    let routes = cluster.routes(NS);
    ensure!(
        fingerprint(&routes.get("victim").await?) == before,
        "the victim route changed"
    );
    step(
        "foreign",
        "the attacker renames route.name away from victim",
    );
    apply(
        cluster,
        &routemap("attacker-routemap", "attacker-route"),
        "helm",
    )
    .await?;
    cluster
        .wait_route(
            NS,
            "attacker-route",
            "the renamed route written",
            |_| Ok(()),
        )
        .await?;
    // Time for a wrong delete to happen (it came 0.21 s after the rename before the fix).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = routes.get_opt("victim").await?;
    ensure!(
        after.is_some(),
        "the victim route was deleted after the rename"
    );
    ensure!(
        after.as_ref().map(fingerprint) == Some(before),
        "the victim route changed after the rename"
    );
    ok("victim untouched: spec, labels, owner references and resourceVersion as made");
    let not_owned = cluster
        .event_count(NS, "attacker-routemap", "RouteNotOwned")
        .await?;
    ensure!(
        not_owned == 1,
        "{not_owned} RouteNotOwned Events, want 1 (the new name is ours to create)"
    );
    Ok(1)
}

/// Attack 2: two routemaps name route `shared`.
async fn claimed_route(cluster: &Cluster) -> Result<()> {
    step("claim", "two routemaps name the HTTPRoute shared");
    apply(cluster, &routemap("first-routemap", "shared"), "helm").await?;
    cluster
        .wait_route(NS, "shared", "written for first-routemap", |_| Ok(()))
        .await?;
    // Its status is on the route it wrote (the controller cannot write the ConfigMap).
    let versions = [format!("{APP}-0"), format!("{APP}-1")];
    let versions: Vec<&str> = versions.iter().map(String::as_str).collect();
    let status = cluster
        .wait_status(NS, "first-routemap", &versions, &versions)
        .await?;
    ok(format!("status on HTTPRoute shared: {status}"));
    // Creation times have a resolution of a second: the second routemap is clearly newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apply(cluster, &routemap("second-routemap", "shared"), "helm").await?;
    let note = warning(cluster, "second-routemap", "RouteClaimed", "first-routemap").await?;
    ok(format!("Warning RouteClaimed: {note}"));
    let routes = cluster.routes(NS);
    let generation = |r: &DynamicObject| r.metadata.generation.unwrap_or(0);
    let owner = |r: &DynamicObject| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("iter8.tools/routemap").cloned())
    };
    let start = routes.get("shared").await?;
    ensure!(
        owner(&start).as_deref() == Some("first-routemap"),
        "the route is not first-routemap's: {:?}",
        owner(&start)
    );
    // Two readiness flips: both routemaps decide again; only the winner writes, once each.
    step(
        "claim",
        "the candidate goes unready and ready again; a 10 s window",
    );
    cluster
        .set_deployment(NS, &format!("{APP}-1"), false)
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster
        .set_deployment(NS, &format!("{APP}-1"), true)
        .await?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let end = routes.get("shared").await?;
    let writes = generation(&end) - generation(&start);
    ensure!(
        owner(&end).as_deref() == Some("first-routemap") && writes <= 2,
        "route shared: {writes} writes over two flips, owner {:?}",
        owner(&end)
    );
    let claimed = cluster
        .event_count(NS, "second-routemap", "RouteClaimed")
        .await?;
    ensure!(claimed == 1, "{claimed} RouteClaimed Events, want 1");
    ok(format!(
        "shared stays first-routemap's: {writes} write(s) over two readiness flips, one RouteClaimed"
    ));
    Ok(())
}
