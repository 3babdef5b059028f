//! A release of `charts/controller` installed with real helm against the test API server, and
//! what `tests/install.rs` checks after `helm delete`: the chart's objects, helm's records,
//! finalizers.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::out::{note, ok};
use crate::release::rendered_object;
use crate::tools::{free_port, repo_root, run, tool};

/// The release name of the controller chart.
pub const RELEASE: &str = "iter8";

/// The image the chart runs by default (`helm template`).
pub fn chart_image() -> Result<String> {
    let rendered = run(
        Command::new(tool("helm")?)
            .arg("template")
            .arg(RELEASE)
            .arg(repo_root().join("charts/controller")),
        None,
    )?;
    let deploy = rendered_object(&rendered, "Deployment", RELEASE)?;
    deploy["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the chart's Deployment names no image"))
}

/// helm against the test API server, with its state under the server's directory.
pub fn helm(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let home = cluster.dir.join("helm");
    let mut cmd = Command::new(tool("helm")?);
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(args);
    note(format!("helm {}", args.join(" ")));
    run(&mut cmd, None)
}

/// The chart's admin port, unless something on this host already listens there (the pods
/// share the host network): then a free one, set through the chart's own value.
pub fn admin_port() -> Result<(u16, Vec<String>)> {
    let default = 8080;
    if std::net::TcpListener::bind(("0.0.0.0", default)).is_ok() {
        return Ok((default, Vec::new()));
    }
    let port = free_port()?;
    note(format!(
        "port {default} is taken on this host: --set metrics.port={port}"
    ));
    Ok((port, vec!["--set".into(), format!("metrics.port={port}")]))
}

/// `(kind.group, name, namespace)` of every object of a helm manifest.
pub fn manifest_objects(manifest: &str) -> Result<Vec<(String, String, String)>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(manifest).context("parsing the manifest")?;
    Ok(docs
        .iter()
        .filter_map(|d| {
            let kind = d["kind"].as_str()?.to_lowercase();
            let api = d["apiVersion"].as_str()?;
            let kind = match api.split_once('/') {
                Some((group, _)) => format!("{kind}.{group}"),
                None => kind,
            };
            Some((
                kind,
                d["metadata"]["name"].as_str()?.to_string(),
                d["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ))
        })
        .collect())
}

/// The release chart with real helm: `helm upgrade --install httpbin charts/release`.
pub fn release(cluster: &Cluster, ns: &str, values: &[&Path]) -> Result<()> {
    let chart = repo_root().join("charts/release");
    let chart = chart.to_string_lossy();
    let mut args: Vec<String> = ["upgrade", "--install", "httpbin", &chart, "-n", ns]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push("--create-namespace".into());
    for v in values {
        args.push("-f".into());
        args.push(v.to_string_lossy().into_owned());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    helm(cluster, &refs)?;
    Ok(())
}

/// After `helm delete iter8`: every object the chart created is gone, helm's records too, and
/// nothing in the namespaces involved carries a finalizer or a deletion timestamp. The
/// controller's Lease stays (the controller created it, not the chart; released, with no
/// holder, on SIGTERM), as do Events (they expire by TTL in a real cluster).
pub async fn nothing_left(
    cluster: &Cluster,
    ns: &str,
    created: &[(String, String, String)],
) -> Result<()> {
    for (kind, name, obj_ns) in created {
        let mut args = vec![
            "get",
            kind.as_str(),
            name.as_str(),
            "--ignore-not-found",
            "-o",
            "name",
        ];
        if !obj_ns.is_empty() {
            args.extend(["-n", obj_ns.as_str()]);
        }
        let out = cluster.kubectl(&args)?;
        ensure!(
            out.trim().is_empty(),
            "{kind}/{name} is still there after helm delete"
        );
    }
    ok(format!(
        "gone: {}",
        created
            .iter()
            .map(|(k, n, _)| format!("{}/{n}", k.split('.').next().unwrap_or(k)))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let records =
        cluster.kubectl(&["get", "secrets", "-n", ns, "-l", "owner=helm", "-o", "name"])?;
    ensure!(records.trim().is_empty(), "helm records left: {records}");
    ok("no helm release records left");
    let types = "configmaps,services,deployments.apps,serviceaccounts,secrets,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,leases.coordination.k8s.io,httproutes.gateway.networking.k8s.io";
    let mut stuck = Vec::new();
    for scope in [
        vec!["get", types, "-A", "-o", "json"],
        vec![
            "get",
            "clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io,namespaces",
            "-o",
            "json",
        ],
    ] {
        let list: Value = serde_json::from_str(&cluster.kubectl(&scope)?)?;
        for item in list["items"].as_array().into_iter().flatten() {
            let md = &item["metadata"];
            let finalizers = md["finalizers"].as_array().is_some_and(|f| !f.is_empty());
            if finalizers || !md["deletionTimestamp"].is_null() {
                stuck.push(format!(
                    "{} {}/{}",
                    item["kind"].as_str().unwrap_or_default(),
                    md["namespace"].as_str().unwrap_or_default(),
                    md["name"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    ensure!(
        stuck.is_empty(),
        "objects stuck with finalizers: {}",
        stuck.join(", ")
    );
    ok("no object anywhere carries a finalizer or a deletion timestamp");
    let leases = cluster.kubectl(&["get", "leases", "-n", ns, "-o", "name"])?;
    note(format!(
        "left by design: the controller's Lease ({}; it created it, helm did not), Events (TTL)",
        leases.trim()
    ));
    Ok(())
}
