//! A release of `charts/controller` installed with real helm against the test API server, and
//! what `tests/install.rs` checks after `helm delete`: the chart's objects, helm's records,
//! finalizers.

use std::process::Command;

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::out::{note, ok};
use crate::pod::Docker;
use crate::release::rendered_object;
use crate::tools::{free_port, repo_root, run, target_dir, tool};

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

/// The image is the one built from this checkout, not an older one left in a daemon under the
/// same tag: the binary inside it is byte for byte the one `scripts/image.sh` put in its build
/// context from this checkout's cargo build (`e2e/run.sh` runs image.sh before the tests, so
/// cargo rebuilds it when any source changed), and its revision label is this checkout's commit.
pub fn image_is_current(docker: &Docker, image: &str) -> Result<()> {
    let built = target_dir()?.join("image-context/iter8-controller");
    ensure!(
        built.is_file(),
        "{} is missing: build the image with bash scripts/image.sh (e2e/run.sh does)",
        built.display()
    );
    let copy = std::env::temp_dir().join(format!("iter8-image-binary-{}", std::process::id()));
    let id = docker.run(&["create", image])?;
    let copied = docker.run(&[
        "cp",
        &format!("{id}:/iter8-controller"),
        &copy.to_string_lossy(),
    ]);
    docker.run(&["rm", &id])?;
    copied?;
    let digest = |p: &std::path::Path| -> Result<String> {
        let out = run(Command::new("sha256sum").arg(p), None)?;
        out.split_whitespace()
            .next()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no sha256sum of {}", p.display()))
    };
    let (inside, ours) = (digest(&copy)?, digest(&built)?);
    let _ = std::fs::remove_file(&copy);
    ensure!(
        inside == ours,
        "the image {image} holds another iter8-controller (sha256 {inside}) than this checkout builds ({ours}): rebuild it with bash scripts/image.sh"
    );
    let label = docker.run(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"org.opencontainers.image.revision\"}}",
        image,
    ])?;
    let head = run(
        Command::new("git")
            .arg("-C")
            .arg(repo_root())
            .args(["rev-parse", "HEAD"]),
        None,
    )
    .map(|h| h.trim().to_string())
    .unwrap_or_default();
    ensure!(
        label.trim_end_matches("-dirty") == head,
        "the image {image} is labelled revision {label:?}, this checkout is {head}: rebuild it with bash scripts/image.sh"
    );
    ok(format!(
        "image {image} is this checkout's build: /iter8-controller sha256 {}, revision {label}",
        &inside[..16]
    ));
    Ok(())
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
