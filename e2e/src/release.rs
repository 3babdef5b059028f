//! Helm against the test API server, and a release of `charts/release` made with it: real
//! `helm upgrade --install` and `helm delete` (helm's default Secret storage driver, its three-way
//! merge on upgrade, its own deletion of what a new revision no longer has). Helm's own output is
//! printed as a user sees it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, WatchEvent, WatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::objects::{resource_version, watch_of};
use crate::out::note;
use crate::tools::{repo_root, run, tool};

/// `helm ARGS` against the test API server (its admin kubeconfig), with helm's cache, config
/// and data under the server's directory so nothing of the user's helm setup is read or changed.
/// Returns helm's standard output.
pub fn helm(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let home = cluster.dir.join("helm");
    let mut cmd = Command::new(tool("helm")?);
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("HELM_DRIVER")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(args);
    note(format!("$ helm {}", args.join(" ")));
    run(&mut cmd, None)
}

/// Prints helm's output indented, as the user would read it (without the chart's NOTES, which
/// repeat what the steps print).
pub fn show_helm_output(out: &str) {
    for line in out.lines().take_while(|l| !l.starts_with("NOTES:")) {
        note(format!("  {line}"));
    }
}

/// A release of `charts/release` in one namespace.
#[derive(Debug)]
pub struct Release<'a> {
    cluster: &'a Cluster,
    /// Release name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

/// What a deletion removed.
#[derive(Debug, Default)]
pub struct Deleted {
    /// `kind.group/name` of each object.
    pub objects: Vec<String>,
    /// For the objects the controller watches: watch -> the resourceVersion of the last
    /// deletion it will see, to wait until the controller has handled them
    /// ([`crate::controller::Controller::wait_observed`]).
    pub watched: BTreeMap<String, i64>,
}

impl<'a> Release<'a> {
    /// A release not installed yet.
    pub fn new(cluster: &'a Cluster, name: &str, namespace: &str) -> Self {
        Release {
            cluster,
            name: name.into(),
            namespace: namespace.into(),
        }
    }

    /// `helm upgrade --install NAME charts/release -n NS -f VALUES...`; prints and returns
    /// helm's output.
    pub async fn upgrade(&mut self, values: &[&Path]) -> Result<String> {
        let chart = repo_root().join("charts/release");
        let mut args: Vec<String> = vec![
            "upgrade".into(),
            "--install".into(),
            self.name.clone(),
            chart.to_string_lossy().into_owned(),
            "-n".into(),
            self.namespace.clone(),
        ];
        for v in values {
            args.push("-f".into());
            args.push(v.to_string_lossy().into_owned());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = helm(self.cluster, &refs)?;
        show_helm_output(&out);
        Ok(out)
    }

    /// `helm get manifest`: the objects of the release's current revision.
    pub fn manifest(&self) -> Result<String> {
        helm(
            self.cluster,
            &["get", "manifest", &self.name, "-n", &self.namespace],
        )
    }

    /// `helm delete NAME -n NS`; prints helm's output. Returns what it deleted, with the
    /// resourceVersions of the deletions the controller watches.
    pub async fn delete(&mut self) -> Result<Deleted> {
        let objects = rendered_objects(&self.manifest()?)?;
        // Where each watched object was before, to find its deletion in a watch afterwards.
        let mut before = Vec::new();
        for (reference, resource) in &objects {
            let name = reference
                .rsplit_once('/')
                .map_or(reference.as_str(), |(_, n)| n);
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.cluster.client.clone(), &self.namespace, resource);
            if let Some(obj) = api.get_opt(name).await?
                && let (Some(watch), Some(rv)) = (watch_of(&obj), obj.metadata.resource_version)
            {
                before.push((reference.clone(), api, name.to_string(), watch, rv));
            }
        }
        let out = helm(self.cluster, &["delete", &self.name, "-n", &self.namespace])?;
        show_helm_output(&out);
        let mut deleted = Deleted {
            objects: objects.keys().cloned().collect(),
            ..Deleted::default()
        };
        for (reference, api, name, watch, since) in before {
            let rv = deletion_resource_version(&api, &name, &since)
                .await
                .with_context(|| format!("the deletion of {reference}"))?;
            let max = deleted.watched.entry(watch).or_insert(rv);
            *max = (*max).max(rv);
        }
        Ok(deleted)
    }
}

/// The resourceVersion of object `name`'s deletion, from a watch replaying its events since
/// resourceVersion `since`.
async fn deletion_resource_version(
    api: &Api<DynamicObject>,
    name: &str,
    since: &str,
) -> Result<i64> {
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(10);
    let mut events = api.watch(&params, since).await?.boxed();
    while let Some(event) = events.try_next().await? {
        match event {
            WatchEvent::Deleted(obj) => {
                return resource_version(&obj).ok_or_else(|| anyhow!("no resourceVersion"));
            }
            WatchEvent::Error(e) => bail!("watch failed: {e:?}"),
            _ => {}
        }
    }
    bail!("no deletion seen within 10 s")
}

/// Every object of a multi-document YAML manifest, by `kind.group/name` (as kubectl names it),
/// with its API coordinates.
fn rendered_objects(rendered: &str) -> Result<BTreeMap<String, ApiResource>> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(rendered).context("parsing the release's manifest")?;
    let mut out = BTreeMap::new();
    for d in docs {
        let (Some(kind), Some(api_version)) = (d["kind"].as_str(), d["apiVersion"].as_str()) else {
            continue;
        };
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let suffix = if group.is_empty() {
            String::new()
        } else {
            format!(".{group}")
        };
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        out.insert(
            format!("{}{suffix}/{name}", kind.to_lowercase()),
            ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind)),
        );
    }
    Ok(out)
}

/// One document of a rendering, by kind and name, as JSON.
pub fn rendered_object(rendered: &str, kind: &str, name: &str) -> Result<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(rendered)?;
    docs.into_iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .ok_or_else(|| anyhow!("no {kind} {name} in the rendering"))
}

/// A user edits a routemap by hand (`kubectl edit cm`): its spec (`data["routemap.yaml"]`)
/// becomes `edit(old)`, by a merge patch. `helm upgrade` of the release puts the chart's spec
/// back (helm's three-way merge repairs what was changed outside helm).
pub async fn edit_routemap(
    cluster: &Cluster,
    ns: &str,
    routemap: &str,
    edit: impl FnOnce(&str) -> Result<String>,
) -> Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Patch, PatchParams};
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
    let cm = api.get(routemap).await?;
    let old = cm
        .data
        .as_ref()
        .and_then(|d| d.get("routemap.yaml"))
        .ok_or_else(|| anyhow!("routemap {ns}/{routemap} has no data[routemap.yaml]"))?;
    let new = edit(old)?;
    api.patch(
        routemap,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"routemap.yaml": new}})),
    )
    .await?;
    note(format!(
        "(a user) edited {ns}/{routemap}'s data[routemap.yaml]"
    ));
    Ok(())
}

/// A user's edit of the release's routemap that makes it invalid: its candidate
/// (`versions[1]`) loses its matches, which a canary candidate needs.
pub async fn remove_candidate_matches(cluster: &Cluster, ns: &str, routemap: &str) -> Result<()> {
    edit_routemap(cluster, ns, routemap, |data| {
        let mut spec: serde_json::Value = serde_saphyr::from_str(data)?;
        spec["versions"][1]
            .as_object_mut()
            .and_then(|v| v.remove("matches"))
            .ok_or_else(|| anyhow!("no versions[1].matches in the routemap"))?;
        // JSON is YAML.
        Ok(serde_json::to_string_pretty(&spec)?)
    })
    .await
}
