//! Reading a Deployment into what to run, as a kubelet reads its pod template: env, service
//! account, ConfigMap volumes, security context, command and args, probes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PodSecurityContext, SecurityContext, ServiceAccount};
use kube::api::Api;

use super::docker::Docker;
use super::probe::HttpProbe;
use crate::cluster::Cluster;

/// Where a kubelet mounts the service account's credentials.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Pod names already given (a pod name is unique).
static NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Random lowercase alphanumerics (from /dev/urandom), for pod names and tokens.
pub fn random_string(len: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = vec![0u8; len];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

/// The container's security context over the pod's: `(uid, gid, run_as_non_root)`.
fn user_of(pod: Option<&PodSecurityContext>, c: Option<&SecurityContext>) -> (i64, i64, bool) {
    let uid = c
        .and_then(|c| c.run_as_user)
        .or(pod.and_then(|p| p.run_as_user));
    let gid = c
        .and_then(|c| c.run_as_group)
        .or(pod.and_then(|p| p.run_as_group));
    let non_root = c
        .and_then(|c| c.run_as_non_root)
        .or(pod.and_then(|p| p.run_as_non_root))
        .unwrap_or(false);
    // Without runAsUser the image's user applies; -1 says "not set".
    (uid.unwrap_or(-1), gid.unwrap_or(-1), non_root)
}

/// Kubernetes' `$(VAR)` expansion of command and args from the container's env.
fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) if env.contains_key(&after[..end]) => {
                out.push_str(&env[&after[..end]]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("$(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn make_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// What to run for one pod of a Deployment, read from the API server, with its files (service
/// account, ConfigMap volumes) written and its token registered; nothing runs yet.
#[derive(Debug)]
pub(super) struct Spec {
    pub(super) name: String,
    pub(super) user: String,
    pub(super) token: String,
    pub(super) image: String,
    /// The `docker run` arguments.
    pub(super) args: Vec<String>,
    pub(super) readiness: Option<HttpProbe>,
    pub(super) liveness: Option<HttpProbe>,
    /// `terminationGracePeriodSeconds`.
    pub(super) grace: u64,
}

/// Reads Deployment `ns/deployment` into what to run, as described in the module doc of `pod`.
pub(super) async fn read(
    cluster: &Cluster,
    docker: &Docker,
    ns: &str,
    deployment: &str,
) -> Result<Spec> {
    let deploy = Api::<Deployment>::namespaced(cluster.client.clone(), ns)
        .get(deployment)
        .await
        .with_context(|| format!("reading deploy/{deployment} in {ns}"))?;
    let spec = deploy
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .ok_or_else(|| anyhow!("deploy/{deployment} has no pod template spec"))?;
    ensure!(
        spec.containers.len() == 1 && spec.init_containers.as_ref().is_none_or(Vec::is_empty),
        "the pod runner runs exactly one container (deploy/{deployment} has {} and {} init containers)",
        spec.containers.len(),
        spec.init_containers.as_ref().map_or(0, Vec::len)
    );
    let container = &spec.containers[0];
    let image = container
        .image
        .clone()
        .ok_or_else(|| anyhow!("container {} has no image", container.name))?;
    let sa = spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".into());

    // A pod name as a ReplicaSet's pods have: <deploy>-<template hash>-<suffix>.
    let name = loop {
        let n = format!("{deployment}-{}-{}", random_string(10)?, random_string(5)?);
        let mut names = NAMES.lock().map_err(|_| anyhow!("poisoned"))?;
        if !names.contains(&n) {
            names.push(n.clone());
            break n;
        }
    };
    let files = cluster.dir.join(format!("pod-{ns}-{name}"));
    make_dir(&files)?;

    // --- env, as the kubelet resolves it -----------------------------------------------
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut env_order: Vec<String> = Vec::new();
    for e in container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => expand(v, &env),
            (None, None) => String::new(),
            (None, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    match field.field_path.as_str() {
                        "metadata.name" => name.clone(),
                        "metadata.namespace" => ns.to_string(),
                        "spec.serviceAccountName" => sa.clone(),
                        "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
                        other => bail!("env {}: fieldRef {other} is not supported", e.name),
                    }
                } else if let Some(key) = &from.config_map_key_ref {
                    let cm = Api::<ConfigMap>::namespaced(cluster.client.clone(), ns)
                        .get_opt(&key.name)
                        .await?;
                    match cm
                        .and_then(|c| c.data)
                        .and_then(|d| d.get(&key.key).cloned())
                    {
                        Some(v) => v,
                        None if key.optional == Some(true) => continue,
                        None => bail!(
                            "env {}: ConfigMap {}/{} has no key {} (the kubelet would not start the pod)",
                            e.name,
                            ns,
                            key.name,
                            key.key
                        ),
                    }
                } else {
                    bail!(
                        "env {}: only value, fieldRef and configMapKeyRef are supported",
                        e.name
                    );
                }
            }
        };
        if !env.contains_key(&e.name) {
            env_order.push(e.name.clone());
        }
        env.insert(e.name.clone(), value);
    }
    ensure!(
        container.env_from.as_ref().is_none_or(Vec::is_empty),
        "envFrom is not supported by the pod runner"
    );

    // --- the service account, as the kubelet mounts it ----------------------------------
    let automount = spec.automount_service_account_token.unwrap_or(true);
    let sa_object = Api::<ServiceAccount>::namespaced(cluster.client.clone(), ns)
        .get_opt(&sa)
        .await?
        .ok_or_else(|| {
            anyhow!("serviceaccount {ns}/{sa} does not exist (the pod would not be created)")
        })?;
    let user = format!("system:serviceaccount:{ns}:{sa}");
    let token = format!("e2e-sa-{}", random_string(40)?);
    let mut mounts: Vec<(PathBuf, String)> = Vec::new();
    if automount && sa_object.automount_service_account_token != Some(false) {
        let uid = sa_object.metadata.uid.clone().unwrap_or_default();
        let line = format!(
            "{token},{user},{uid},\"system:serviceaccounts,system:serviceaccounts:{ns}\"\n"
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(cluster.dir.join("tokens.csv"))
            .context("appending to the API server's tokens.csv")?
            .write_all(line.as_bytes())?;
        let sa_dir = files.join("serviceaccount");
        make_dir(&sa_dir)?;
        write_file(&sa_dir.join("token"), token.as_bytes(), 0o644)?;
        write_file(&sa_dir.join("namespace"), ns.as_bytes(), 0o644)?;
        std::fs::copy(cluster.dir.join("certs/ca.crt"), sa_dir.join("ca.crt"))
            .context("copying the API server's CA")?;
        write_file(
            &sa_dir.join("ca.crt"),
            &std::fs::read(sa_dir.join("ca.crt"))?,
            0o644,
        )?;
        mounts.push((sa_dir, SERVICE_ACCOUNT_DIR.into()));
    }

    // --- ConfigMap volumes -----------------------------------------------------------------
    for m in container.volume_mounts.iter().flatten() {
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .ok_or_else(|| anyhow!("volumeMount {} names no volume", m.name))?;
        let source = volume.config_map.as_ref().ok_or_else(|| {
            anyhow!(
                "volume {}: only configMap volumes are supported by the pod runner",
                volume.name
            )
        })?;
        ensure!(
            m.sub_path.is_none(),
            "volumeMount {}: subPath is not supported",
            m.name
        );
        let cm = Api::<ConfigMap>::namespaced(cluster.client.clone(), ns)
            .get_opt(&source.name)
            .await?;
        let data = match cm {
            Some(cm) => cm.data.unwrap_or_default(),
            None if source.optional == Some(true) => BTreeMap::new(),
            None => bail!(
                "configmap {ns}/{} of volume {} does not exist (the pod would not start)",
                source.name,
                volume.name
            ),
        };
        let dir = files.join(format!("volume-{}", volume.name));
        make_dir(&dir)?;
        let mode = source.default_mode.unwrap_or(0o644) as u32 | 0o444;
        let items: Vec<(String, String)> = match &source.items {
            Some(items) => items
                .iter()
                .map(|i| (i.key.clone(), i.path.clone()))
                .collect(),
            None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
        };
        for (key, path) in items {
            let content = data
                .get(&key)
                .ok_or_else(|| anyhow!("configmap {} has no key {key}", source.name))?;
            let target = dir.join(&path);
            if let Some(parent) = target.parent() {
                make_dir(parent)?;
            }
            write_file(&target, content.as_bytes(), mode)?;
        }
        mounts.push((dir, m.mount_path.clone()));
    }

    // --- security context -------------------------------------------------------------------
    let csc = container.security_context.as_ref();
    let (uid, gid, non_root) = user_of(spec.security_context.as_ref(), csc);
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--pull".into(),
        "never".into(),
        "--network".into(),
        "host".into(),
        "--label".into(),
        format!("iter8-e2e.pod={ns}/{name}"),
    ];
    if uid >= 0 {
        let gid = if gid >= 0 { gid } else { uid };
        args.extend(["--user".into(), format!("{uid}:{gid}")]);
    }
    if non_root {
        ensure!(
            uid != 0,
            "runAsNonRoot with runAsUser 0: the kubelet would refuse this pod"
        );
        if uid < 0 {
            let user = docker.run(&["image", "inspect", "-f", "{{.Config.User}}", &image])?;
            let u = user.split(':').next().unwrap_or_default();
            ensure!(
                !u.is_empty() && u != "0" && u != "root",
                "runAsNonRoot but image {image} runs as {user:?}: the kubelet would refuse this pod"
            );
        }
    }
    if csc.and_then(|c| c.read_only_root_filesystem) == Some(true) {
        args.push("--read-only".into());
    }
    if let Some(caps) = csc.and_then(|c| c.capabilities.as_ref()) {
        for d in caps.drop.iter().flatten() {
            args.extend(["--cap-drop".into(), d.clone()]);
        }
        for a in caps.add.iter().flatten() {
            args.extend(["--cap-add".into(), a.clone()]);
        }
    }
    if csc.and_then(|c| c.allow_privilege_escalation) == Some(false) {
        args.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    ensure!(
        csc.and_then(|c| c.privileged) != Some(true),
        "privileged containers are not run by the pod runner"
    );

    // --- mounts and env -------------------------------------------------------------------
    for (host, target) in &mounts {
        args.extend(["-v".into(), format!("{}:{target}:ro", host.display())]);
    }
    let port = crate::tools::read_env_file(&cluster.dir.join("env"), "APISERVER_PORT")?;
    for k in &env_order {
        args.extend(["-e".into(), format!("{k}={}", env[k])]);
    }
    args.extend([
        "-e".into(),
        "KUBERNETES_SERVICE_HOST=127.0.0.1".into(),
        "-e".into(),
        format!("KUBERNETES_SERVICE_PORT={port}"),
    ]);

    // --- command and args -----------------------------------------------------------------
    let command: Vec<String> = container
        .command
        .iter()
        .flatten()
        .map(|c| expand(c, &env))
        .collect();
    if let Some((entry, _)) = command.split_first() {
        args.extend(["--entrypoint".into(), entry.clone()]);
    }
    args.push(image.clone());
    if command.len() > 1 {
        args.extend(command[1..].iter().cloned());
    }
    args.extend(container.args.iter().flatten().map(|a| expand(a, &env)));

    let readiness = container
        .readiness_probe
        .as_ref()
        .map(|p| HttpProbe::from(p, container))
        .transpose()?;
    let liveness = container
        .liveness_probe
        .as_ref()
        .map(|p| HttpProbe::from(p, container))
        .transpose()?;
    ensure!(
        container.startup_probe.is_none(),
        "startup probes are not supported by the pod runner"
    );
    let grace = spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64;

    Ok(Spec {
        name,
        user,
        token,
        image,
        args,
        readiness,
        liveness,
        grace,
    })
}
