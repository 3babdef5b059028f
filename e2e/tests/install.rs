//! Installed as users install it: `helm install` of `charts/controller` (real release records in
//! Secrets), its Deployment run as the chart's pod would run (the image `just image` builds, the
//! service account's token, the chart's ConfigMap, security context and probes: `src/pod/`), RBAC
//! enforced by the API server, then the seed tutorial with `helm upgrade --install` /
//! `helm delete` of `charts/release`; namespace-scoped, then cluster-scoped with the tutorial in
//! two application namespaces. The API server's authorization log proves least privilege: no
//! request of the controller was forbidden, and every grant of the chart was used (or is listed
//! below with the reason this tier cannot exercise it).

use std::net::SocketAddr;

use anyhow::{Result, ensure};
use iter8_e2e::install::{
    RELEASE, admin_port, chart_image, image_is_current, manifest_objects, nothing_left,
};
use iter8_e2e::metrics::sum_series;
use iter8_e2e::pod::{Docker, Pod};
use iter8_e2e::prelude::*;
use iter8_e2e::rbac::{Audit, authz_log, least_privilege, negative_checks};
use iter8_e2e::seed::ROUTEMAP;
use iter8_e2e::tools::{http_get, repo_root};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

const ROUTE: &str = "httpbin";
const RENAMED: &str = "httpbin-renamed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_with_helm() -> Result<()> {
    let docker = Docker::from_env()?;
    let image = chart_image()?;
    // The line scripts/image-check.sh prints, for the image this test runs.
    println!("{}", docker.describe_image(&image)?);
    image_is_current(&docker, &image)?;
    let cluster = Cluster::start("install").await?;
    let mut suite = Suite::new(&cluster)?;
    let mut audits: Vec<Audit> = Vec::new();
    suite
        .run(
            "namespace-scoped, as the README: kubectl create ns test; helm install iter8 charts/controller -n test; the tutorial in test",
            install(&cluster, &docker, false, &mut audits),
        )
        .await;
    suite
        .run(
            "cluster-scoped, as the README: helm install iter8 charts/controller -n iter8-system --create-namespace --set clusterScoped=true; the tutorial in team-a and team-b",
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
    // The README's sequences: namespace-scoped, the controller and the application share the
    // namespace it watches; cluster-scoped, the controller has its own.
    let ns = if cluster_scoped {
        "iter8-system"
    } else {
        "test"
    };
    step(
        "install",
        format!("helm install {RELEASE} charts/controller -n {ns}"),
    );
    let (port, mut extra) = admin_port()?;
    if cluster_scoped {
        extra.extend([
            "--create-namespace".into(),
            "--set".into(),
            "clusterScoped=true".into(),
        ]);
    } else {
        note(format!("$ kubectl create ns {ns}"));
        cluster.kubectl(&["create", "ns", ns])?;
    }
    let chart = repo_root().join("charts/controller");
    let chart = chart.to_string_lossy();
    let mut args = vec!["install", RELEASE, &chart, "-n", ns];
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
            note(format!("$ kubectl create ns {app}"));
            cluster.kubectl(&["create", "ns", app])?;
            Seed::new(cluster, app)
                .run(&mut Installed { rename })
                .await?;
        }
        cross_namespace_refused(cluster).await?;
    } else {
        Seed::new(cluster, ns)
            .run(&mut Installed { rename: true })
            .await?;
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

/// Readiness from Deployment status (the pods of the release are not run: only the controller's
/// is); namespace-scoped, the routemap also renames its route once promoted (the controller
/// then deletes the old one: its `delete` grant on HTTPRoutes).
struct Installed {
    rename: bool,
}

impl Platform for Installed {
    async fn set_ready(&mut self, seed: &Seed<'_>, version: &str, ready: bool) -> Result<()> {
        deployment_ready(seed, version, ready).await
    }

    async fn at(&mut self, seed: &mut Seed<'_>, stage: Stage, _live: Option<&Live>) -> Result<()> {
        if stage == Stage::Promoted && self.rename {
            rename(seed.cluster, &seed.ns).await?;
            seed.route = RENAMED.into();
        }
        Ok(())
    }
}

/// A user edits the routemap so that it names its route `RENAMED`: the controller writes the
/// new route, then deletes the one it owned under the old name.
async fn rename(cluster: &Cluster, ns: &str) -> Result<()> {
    step(
        format!("{ns} rename"),
        format!("the routemap renames its route to {RENAMED}"),
    );
    edit_routemap(cluster, ns, ROUTEMAP, |data| {
        let from = format!(r#""name":"{ROUTE}","parentRefs""#);
        ensure!(
            data.matches(&from).count() == 1,
            "routemap route name not found"
        );
        Ok(data.replace(&from, &format!(r#""name":"{RENAMED}","parentRefs""#)))
    })
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
    Ok(())
}

/// A routemap in team-a naming a Deployment in team-b: refused by the cluster-scoped
/// controller (allowCrossNamespaceReferences is off by default) with a Warning naming the field.
async fn cross_namespace_refused(cluster: &Cluster) -> Result<()> {
    step(
        "cross-namespace",
        "a routemap in team-a names deploy/httpbin-0 in team-b",
    );
    // Written by hand, as a user may write a routemap: the chart's spec for `xns` in team-a,
    // with its primary's Deployment in team-b.
    let mut spec = test_builders::chart_canary_spec("xns", "team-a");
    ensure!(
        spec["versions"][0]["resources"][1]["gvrShort"] == "deploy",
        "unexpected routemap {spec}"
    );
    spec["versions"][0]["resources"][1]["namespace"] = json!("team-b");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "xns-routemap", "namespace": "team-a",
                     "labels": {"app.kubernetes.io/managed-by": "iter8",
                                "iter8.tools/kind": "routemap", "iter8.tools/version": "v2"}},
        "data": {"routemap.yaml": format!("{spec}\n")}});
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
