//! A release of `charts/release` as `helm upgrade --install` and `helm delete` make it, without
//! helm's own state: `helm template`, then a server-side apply with field manager `helm`; an
//! upgrade deletes the objects the new rendering no longer has, as helm does.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, DynamicObject, WatchEvent, WatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::objects::{resource_version, watch_of};
use crate::out::note;
use crate::tools::{repo_root, run, tool};

/// One object of a rendering: `kind.group/name` (as kubectl names it) -> its API coordinates.
type Objects = BTreeMap<String, ApiResource>;

/// A release in one namespace.
#[derive(Debug)]
pub struct Release<'a> {
    cluster: &'a Cluster,
    /// Release name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    objects: Objects,
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
    /// A release with no objects yet.
    pub fn new(cluster: &'a Cluster, name: &str, namespace: &str) -> Self {
        Release {
            cluster,
            name: name.into(),
            namespace: namespace.into(),
            objects: Objects::new(),
        }
    }

    /// `helm template NAME charts/release -n NS -f VALUES...`.
    pub fn render(&self, values: &[&Path]) -> Result<String> {
        let mut cmd = Command::new(tool("helm")?);
        cmd.arg("template")
            .arg(&self.name)
            .arg(repo_root().join("charts/release"))
            .arg("-n")
            .arg(&self.namespace);
        for v in values {
            cmd.arg("-f").arg(v);
        }
        run(&mut cmd, None)
    }

    /// Renders and applies (server-side, field manager `helm`), then deletes what is gone.
    /// Returns the rendered text.
    pub async fn upgrade(&mut self, values: &[&Path]) -> Result<String> {
        let rendered = self.render(values)?;
        self.apply_rendered(&rendered).await?;
        Ok(rendered)
    }

    /// Applies a rendering (maybe edited) as an upgrade.
    pub async fn apply_rendered(&mut self, rendered: &str) -> Result<()> {
        let objects = rendered_objects(rendered)?;
        self.cluster.kubectl_in(
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "helm",
                "-n",
                &self.namespace,
                "-f",
                "-",
            ],
            Some(rendered),
        )?;
        note(format!(
            "applied {} objects server-side (field manager helm): {}",
            objects.len(),
            objects.keys().cloned().collect::<Vec<_>>().join(" ")
        ));
        let gone: Objects = self
            .objects
            .iter()
            .filter(|(k, _)| !objects.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !gone.is_empty() {
            let deleted = self.delete_objects(&gone).await?;
            note(format!(
                "deleted what the release no longer has: {}",
                deleted.objects.join(" ")
            ));
        }
        self.objects = objects;
        Ok(())
    }

    /// What `helm delete` does: deletes every object of the release.
    pub async fn delete(&mut self) -> Result<Deleted> {
        let all = std::mem::take(&mut self.objects);
        self.delete_objects(&all).await
    }

    /// Deletes objects through the API (background propagation, as kubectl does). The API
    /// server answers a deletion with a bare Status, so the deletion's resourceVersion of a
    /// watched object is read from a watch of that object started where it was before.
    async fn delete_objects(&self, objects: &Objects) -> Result<Deleted> {
        let mut out = Deleted::default();
        for (reference, resource) in objects {
            let name = reference
                .rsplit_once('/')
                .map_or(reference.as_str(), |(_, n)| n);
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.cluster.client.clone(), &self.namespace, resource);
            out.objects.push(reference.clone());
            let Some(before) = api.get_opt(name).await? else {
                continue;
            };
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => return Err(e).with_context(|| format!("deleting {reference}")),
            }
            let (Some(watch), Some(since)) = (watch_of(&before), &before.metadata.resource_version)
            else {
                continue;
            };
            let rv = deletion_resource_version(&api, name, since)
                .await
                .with_context(|| format!("the deletion of {reference}"))?;
            let max = out.watched.entry(watch).or_insert(rv);
            *max = (*max).max(rv);
        }
        Ok(out)
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

/// Every object of a multi-document YAML rendering, by `kind.group/name`.
fn rendered_objects(rendered: &str) -> Result<Objects> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(rendered).context("parsing the rendered chart")?;
    let mut out = Objects::new();
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
