//! Installed as users install it: `helm install` of `charts/controller` (real release records in
//! Secrets), its Deployment run as the chart's pod would run (the image `just image` builds, the
//! service account's token, the chart's ConfigMap, security context and probes: `src/pod/`), RBAC
//! enforced by the API server, then the seed tutorial with `helm upgrade --install` /
//! `helm delete` of `charts/release`; namespace-scoped, then cluster-scoped with the tutorial in
//! two application namespaces. The API server's authorization log proves least privilege: no
//! request of the controller was forbidden, and every grant of the chart was used (or is listed
//! below with the reason this tier cannot exercise it).

use std::net::SocketAddr;
use std::process::Command;

use anyhow::{Result, anyhow, ensure};
use iter8_e2e::install::{
    RELEASE, admin_port, chart_image, helm, manifest_objects, nothing_left, release,
};
use iter8_e2e::metrics::sum_series;
use iter8_e2e::pod::{Docker, Pod};
use iter8_e2e::prelude::*;
use iter8_e2e::rbac::{Audit, authz_log, least_privilege, negative_checks};
use iter8_e2e::tools::{http_get, repo_root, run, tool};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const ROUTEMAP: &str = "httpbin-routemap";
const ROUTE: &str = "httpbin";
const RENAMED: &str = "httpbin-renamed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_with_helm() -> Result<()> {
    let docker = Docker::from_env()?;
    let image = chart_image()?;
    // The line scripts/image-check.sh prints, for the image this test runs.
    println!("{}", docker.describe_image(&image)?);
    let cluster = Cluster::start("install").await?;
    let mut suite = Suite::new(&cluster)?;
    let mut audits: Vec<Audit> = Vec::new();
    suite
        .run(
            "namespace-scoped: helm install iter8 -n iter8-system, the tutorial in iter8-system",
            install(&cluster, &docker, false, &mut audits),
        )
        .await;
    suite
        .run(
            "cluster-scoped: helm install iter8 -n iter8-cluster --set clusterScoped=true, the tutorial in team-a and team-b",
            install(&cluster, &docker, true, &mut audits),
        )
        .await;
    let allowed: usize = audits.iter().map(|a| a.allowed).sum();
    let forbidden: usize = audits.iter().map(|a| a.forbidden).sum();
    println!("controller requests under chart RBAC: {allowed} allowed, {forbidden} forbidden");
    let result = suite.finish();
    ensure!(
        audits.len() == 2 || std::env::var_os("ITER8_E2E_ONLY").is_some(),
        "only {} of 2 controllers were audited",
        audits.len()
    );
    ensure!(
        forbidden == 0,
        "the controller was refused {forbidden} request(s) under the chart's RBAC"
    );
    result
}

async fn install(
    cluster: &Cluster,
    docker: &Docker,
    cluster_scoped: bool,
    audits: &mut Vec<Audit>,
) -> Result<()> {
    let ns = if cluster_scoped {
        "iter8-cluster"
    } else {
        "iter8-system"
    };
    step(
        "install",
        format!("helm install {RELEASE} charts/controller -n {ns}"),
    );
    let (port, mut extra) = admin_port()?;
    if cluster_scoped {
        extra.extend(["--set".into(), "clusterScoped=true".into()]);
    }
    let chart = repo_root().join("charts/controller");
    let chart = chart.to_string_lossy();
    let mut args = vec!["install", RELEASE, &chart, "-n", ns, "--create-namespace"];
    args.extend(extra.iter().map(String::as_str));
    helm(cluster, &args)?;
    let manifest = helm(cluster, &["get", "manifest", RELEASE, "-n", ns])?;
    let created = manifest_objects(&manifest)?;
    ok(format!(
        "helm release {RELEASE} deployed: {}",
        created
            .iter()
            .map(|(k, n, _)| format!("{k}/{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    ensure!(
        helm(cluster, &["list", "-n", ns, "-q"])?.trim() == RELEASE,
        "helm list does not show {RELEASE}"
    );

    let log_start = authz_log(cluster)?.len();
    let mut pod = Pod::run(cluster, docker, ns, RELEASE).await?;
    pod.wait_ready().await?;
    ensure!(pod.ready(), "pod not ready");
    // What a controller-manager would report once the pod is ready.
    cluster.set_deployment(ns, RELEASE, true).await?;
    let admin: SocketAddr = ([127, 0, 0, 1], port).into();
    let (code, _) = http_get(admin, "/metrics")?;
    ensure!(code == 200, "/metrics answered {code}");
    ok(format!(
        "the controller runs in-cluster as {} (/readyz via the readiness probe, /metrics {code} on {admin})",
        pod.user
    ));

    if cluster_scoped {
        // Each scope's grants are audited on their own: team-a renames its route, so that this
        // controller's `delete` on HTTPRoutes is exercised too.
        for (app, rename) in [("team-a", true), ("team-b", false)] {
            tutorial(cluster, app, rename).await?;
        }
        cross_namespace_refused(cluster).await?;
    } else {
        tutorial(cluster, ns, true).await?;
    }
    ok(format!(
        "{} applies in all (iter8_applies_total{{result=\"applied\"}})",
        sum_series(
            &http_get(admin, "/metrics")?.1,
            "iter8_applies_total{result=\"applied\"}"
        )
    ));

    let code = pod.stop()?;
    ensure!(
        code == 0,
        "the controller exited with {code} on docker stop"
    );
    // Everything the controller did is in the log up to here; what follows is the test's.
    let log = authz_log(cluster)?;
    let controller_lines = &log[log_start..];
    let audit = least_privilege(cluster, ns, &pod.user, controller_lines, cluster_scoped).await?;
    audits.push(audit);
    negative_checks(cluster, ns, &pod, cluster_scoped).await?;

    step("uninstall", format!("helm delete {RELEASE} -n {ns}"));
    helm(cluster, &["delete", RELEASE, "-n", ns])?;
    nothing_left(cluster, ns, &created).await?;
    Ok(())
}

/// RouteApplied Events = route generation (one Event per write, one write per change).
async fn events_agree(cluster: &Cluster, ns: &str, route: &str) -> Result<()> {
    let n = wait_for(
        "RouteApplied Events = route generation",
        timeout(),
        || async {
            let events = cluster.event_count(ns, ROUTEMAP, "RouteApplied").await? as i64;
            let generation = cluster
                .route(ns, route)
                .await?
                .map_or(0, |r| r.generation());
            Ok(if events == generation {
                Ok(events)
            } else {
                Err(format!(
                    "{events} RouteApplied Events, generation {generation}"
                ))
            })
        },
    )
    .await?;
    ok(format!("{n} RouteApplied Event(s) = route generation {n}"));
    Ok(())
}

async fn primary_ready(cluster: &Cluster, ns: &str) -> Result<Live> {
    let generation = cluster.set_deployment(ns, "httpbin-0", true).await?;
    note(format!(
        "deploy/httpbin-0 status: Available=True, observedGeneration {generation}"
    ));
    cluster
        .wait_status(ns, ROUTEMAP, &["httpbin-0"], &["httpbin-0"])
        .await?;
    cluster
        .wait_route(ns, ROUTE, "one rule to httpbin-0", one_rule_to("httpbin-0"))
        .await
}

/// The seed tutorial in `ns` with real helm releases; `rename`: also rename the route (the
/// controller then deletes the old one: its `delete` grant).
async fn tutorial(cluster: &Cluster, ns: &str, rename: bool) -> Result<()> {
    step(
        format!("{ns} 1"),
        "helm upgrade --install httpbin -f seed-1-initial.yaml",
    );
    release(cluster, ns, &[&values("seed-1-initial.yaml")])?;
    cluster
        .wait_status(ns, ROUTEMAP, &[], &["httpbin-0"])
        .await?;
    let live = primary_ready(cluster, ns).await?;
    println!("==> step {ns} 1: httpbin-0 ready: {}", live.describe());
    ensure!(
        live.app_version_headers_ok(),
        "backends must set app-version"
    );
    let parent = &live.route.spec.parent_refs;
    ensure!(
        parent.len() == 1 && parent[0].kind == "Service" && parent[0].name == "httpbin",
        "parentRefs {parent:?}"
    );
    ok("parentRef: Service httpbin; every backend sets app-version");
    live.expect_all_to("httpbin-0")?;
    events_agree(cluster, ns, ROUTE).await?;

    step(
        format!("{ns} 2"),
        "helm upgrade --install httpbin -f seed-2-candidate.yaml",
    );
    let before = live.resource_version();
    release(cluster, ns, &[&values("seed-2-candidate.yaml")])?;
    // The status annotation names httpbin-1: the controller has judged the new routemap.
    cluster
        .wait_status(ns, ROUTEMAP, &["httpbin-0"], &["httpbin-0", "httpbin-1"])
        .await?;
    let live = cluster.existing_route(ns, ROUTE).await?;
    ensure!(
        live.rules() == 1 && live.resource_version() == before,
        "no candidate rule (and no write) while httpbin-1 is unavailable: {}",
        live.describe()
    );
    ok("no candidate rule while httpbin-1 is unavailable (route not rewritten)");
    cluster.set_deployment(ns, "httpbin-1", true).await?;
    let live = cluster
        .wait_route(
            ns,
            ROUTE,
            "a traffic: test rule to httpbin-1",
            canary_split("httpbin-0", "httpbin-1"),
        )
        .await?;
    println!("==> step {ns} 2: httpbin-1 ready: {}", live.describe());
    ok(format!(
        "GET / traffic: test -> {}",
        live.explain(&test_request())
    ));
    ok(format!("GET / -> {}", live.explain(&plain_request())));
    events_agree(cluster, ns, ROUTE).await?;

    step(
        format!("{ns} 3"),
        "helm upgrade --install httpbin -f seed-3-promote.yaml (new image)",
    );
    let promote = promote_with_new_image(&cluster.dir, &format!("seed-3-promote-new-image-{ns}"))?;
    release(cluster, ns, &[&values("seed-3-promote.yaml"), &promote])?;
    let (generation, observed) = cluster.deployment_generations(ns, "httpbin-0").await?;
    ensure!(
        generation > observed,
        "the image change must bump generation ({generation} vs {observed})"
    );
    if let Err(e) = cluster.wait_status(ns, ROUTEMAP, &[], &["httpbin-0"]).await {
        show_events(&cluster.events(ns, ROUTEMAP).await?);
        let d = cluster.kubectl(&["get", "deploy", "-n", ns, "-o", "yaml"])?;
        note(d);
        return Err(e);
    }
    cluster
        .wait_route(ns, ROUTE, "the candidate rule removed", |r| {
            (r.rules() == 1)
                .then_some(())
                .ok_or_else(|| "still a candidate rule".into())
        })
        .await?;
    let live = primary_ready(cluster, ns).await?;
    println!("==> step {ns} 3: new httpbin-0 ready: {}", live.describe());
    live.expect_all_to("httpbin-0")?;
    events_agree(cluster, ns, ROUTE).await?;

    let mut route = ROUTE;
    if rename {
        step(
            format!("{ns} rename"),
            format!("the routemap renames its route to {RENAMED}"),
        );
        let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
        let cm = api.get(ROUTEMAP).await?;
        let (key, data) = cm
            .data
            .as_ref()
            .and_then(|d| d.iter().next())
            .ok_or_else(|| anyhow!("routemap without data"))?;
        let from = format!(r#""name":"{ROUTE}","parentRefs""#);
        ensure!(
            data.matches(&from).count() == 1,
            "routemap route name not found"
        );
        let renamed = data.replace(&from, &format!(r#""name":"{RENAMED}","parentRefs""#));
        api.patch(
            ROUTEMAP,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {key: renamed}})),
        )
        .await?;
        cluster
            .wait_route(
                ns,
                RENAMED,
                "one rule to httpbin-0",
                one_rule_to("httpbin-0"),
            )
            .await?;
        wait_for(
            "the old route to be deleted by the controller",
            timeout(),
            || async {
                Ok(match cluster.route(ns, ROUTE).await? {
                    None => Ok(()),
                    Some(r) => Err(format!("still there (rv {})", r.resource_version())),
                })
            },
        )
        .await?;
        ok(format!(
            "{RENAMED} written, {ROUTE} deleted by the controller"
        ));
        route = RENAMED;
    }

    step(format!("{ns} 4"), "helm delete httpbin");
    let routemap = cluster
        .configmap(ns, ROUTEMAP)
        .await?
        .ok_or_else(|| anyhow!("no routemap"))?;
    let uid = routemap.metadata.uid.clone().unwrap_or_default();
    let live = cluster.existing_route(ns, route).await?;
    let owners = &live.route.metadata.owner_references;
    ensure!(
        owners.len() == 1
            && owners[0].kind == "ConfigMap"
            && owners[0].name == ROUTEMAP
            && owners[0].uid == uid,
        "owner references {owners:?}"
    );
    helm(cluster, &["delete", "httpbin", "-n", ns])?;
    ensure!(
        cluster.configmap(ns, ROUTEMAP).await?.is_none(),
        "routemap still there after helm delete"
    );
    ensure!(
        helm(cluster, &["list", "-n", ns, "-q"])?
            .lines()
            .all(|l| l.trim() != "httpbin"),
        "helm still lists httpbin"
    );
    ok(format!(
        "release deleted; route {route} is owned by {ROUTEMAP} (uid {uid}): Kubernetes' garbage collector deletes it (this server has none)"
    ));
    Ok(())
}

/// A routemap in team-a naming a Deployment in team-b: refused by the cluster-scoped
/// controller (allowCrossNamespaceReferences is off by default) with a Warning naming the field.
async fn cross_namespace_refused(cluster: &Cluster) -> Result<()> {
    step(
        "cross-namespace",
        "a routemap in team-a names deploy/httpbin-0 in team-b",
    );
    let rendered = run(
        Command::new(tool("helm")?)
            .args(["template", "xns"])
            .arg(repo_root().join("charts/release"))
            .args(["-n", "team-a", "-f"])
            .arg(values("seed-1-initial.yaml")),
        None,
    )?;
    let mut cm = rendered_object(&rendered, "ConfigMap", "xns-routemap")?;
    let data = cm["data"]["routemap.yaml"]
        .as_str()
        .ok_or_else(|| anyhow!("no routemap.yaml"))?;
    let from = r#"{"gvrShort":"deploy","name":"xns-0","namespace":"team-a"}"#;
    ensure!(data.contains(from), "unexpected routemap {data}");
    cm["data"]["routemap.yaml"] = Value::String(data.replace(
        from,
        r#"{"gvrShort":"deploy","name":"xns-0","namespace":"team-b"}"#,
    ));
    let cm: ConfigMap = serde_json::from_value(cm)?;
    Api::<ConfigMap>::namespaced(cluster.client.clone(), "team-a")
        .create(&PostParams::default(), &cm)
        .await?;
    let message = wait_for(
        "a Warning InvalidRouteMap on xns-routemap",
        timeout(),
        || async {
            let events = cluster.events("team-a", "xns-routemap").await?;
            Ok(events
                .iter()
                .find(|e| e.reason.as_deref() == Some("InvalidRouteMap"))
                .map(|e| {
                    (
                        e.type_.clone().unwrap_or_default(),
                        e.message.clone().unwrap_or_default(),
                    )
                })
                .ok_or_else(|| format!("{} Events", events.len())))
        },
    )
    .await?;
    ensure!(
        message.0 == "Warning"
            && message.1.contains("versions[0].resources[1].namespace")
            && message.1.contains("allowCrossNamespaceReferences"),
        "Event {message:?}"
    );
    ok(format!("Warning InvalidRouteMap: {}", message.1));
    ensure!(
        cluster.route("team-a", "xns").await?.is_none(),
        "a route was written for a refused routemap"
    );
    Api::<ConfigMap>::namespaced(cluster.client.clone(), "team-a")
        .delete("xns-routemap", &Default::default())
        .await?;
    Ok(())
}
