//! A pod of a Deployment, run as a kubelet would run it, with Docker: there is no kubelet here
//! (see `e2e/README.md`, "The pod runner").
//!
//! [`Pod::run`] reads the Deployment (as `helm install` created it) from the API server and
//! derives everything from it, so a change of the chart changes what runs:
//! - the container's image, `command`/`args` (with `$(VAR)` expanded from its env), `env` with
//!   `value`, `fieldRef` (`metadata.name` is a pod name `<deploy>-<hash>-<suffix>`,
//!   `metadata.namespace`, `spec.serviceAccountName`, `status.podIP`/`status.hostIP`
//!   127.0.0.1) and `configMapKeyRef`;
//! - its ConfigMap volumes: the ConfigMap's keys (or its `items`) written as files into a
//!   folder mounted read-only at the `mountPath`;
//! - its security context, the container's over the pod's: `runAsUser`/`runAsGroup`
//!   (`--user`), `runAsNonRoot` (refused for user 0), `readOnlyRootFilesystem` (`--read-only`),
//!   `capabilities` (`--cap-drop`/`--cap-add`), `allowPrivilegeEscalation: false`
//!   (`--security-opt no-new-privileges`);
//! - the service account: a random token appended to the server's `DIR/tokens.csv` as
//!   `system:serviceaccount:<ns>:<sa>` (the server re-reads the file), and the files `token`,
//!   `ca.crt`, `namespace` mounted read-only at `/var/run/secrets/kubernetes.io/serviceaccount/`,
//!   with `KUBERNETES_SERVICE_HOST=127.0.0.1` and `KUBERNETES_SERVICE_PORT=<server port>`, so
//!   the program uses its in-cluster configuration;
//! - its readiness and liveness probes (`httpGet` path and port, a named port resolved through
//!   the container's ports), polled as a kubelet does: `initialDelaySeconds`, `periodSeconds`,
//!   `timeoutSeconds`, `successThreshold`, `failureThreshold`.
//!
//! The container runs with `--network host` (the daemon has no bridge; its ports are the host's
//! ports, so two pods of charts with the same port clash: set the port through the chart's
//! values), `--pull never` (no registry is reachable: the image must be in the daemon). It is
//! stopped by its id (`docker stop -t <terminationGracePeriodSeconds>`, then `docker rm`),
//! explicitly with [`Pod::stop`] or on drop.
//!
//! Not done (a kubelet would): no restart when the liveness probe fails (the failure is recorded
//! and [`Pod::check`] fails), no resource requests/limits, no DNS or Service IPs, no
//! `secretKeyRef`/`envFrom`/Secret or projected volumes other than the service account's, no
//! `exec`/`tcpSocket`/`grpc` probes, no startup probe, no image pulls, one container (no init
//! containers or sidecars), one replica per [`Pod::run`].

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PodSecurityContext, Probe, SecurityContext, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;

use crate::cluster::Cluster;
use crate::out::note;
use crate::tools::{http_get, run};
use crate::wait::{POLL, timeout};

/// Where a kubelet mounts the service account's credentials.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The Docker daemon the tests use: `DOCKER_HOST` (e2e/run.sh starts a private one when it is
/// not set).
#[derive(Debug, Clone)]
pub struct Docker {
    /// `DOCKER_HOST` value (empty: the client's default).
    pub host: String,
}

impl Docker {
    /// The daemon of `DOCKER_HOST`, checked to answer; fails naming what is missing.
    pub fn from_env() -> Result<Docker> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_default();
        let docker = Docker { host };
        let which = if docker.host.is_empty() {
            "the docker client's default daemon (DOCKER_HOST is not set)".to_string()
        } else {
            format!("DOCKER_HOST={}", docker.host)
        };
        docker
            .run(&["version", "--format", "{{.Server.Version}}"])
            .with_context(|| {
                format!(
                    "no Docker daemon answers at {which}: run the tests with bash e2e/run.sh (it starts a private dockerd with scripts/dockerd.sh), or export DOCKER_HOST=$(bash scripts/dockerd.sh start DIR); dockerd comes from Debian's docker.io"
                )
            })?;
        Ok(docker)
    }

    /// `docker ARGS` for this daemon.
    pub fn command(&self) -> Command {
        let mut c = Command::new("docker");
        if !self.host.is_empty() {
            c.env("DOCKER_HOST", &self.host);
        }
        c
    }

    /// Runs `docker ARGS`, returns stdout trimmed.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        Ok(run(self.command().args(args), None)?.trim().to_string())
    }

    /// `image: NAME:TAG, S MB, user U` of an image in the daemon (what
    /// `scripts/image-check.sh` prints), or an error naming `bash scripts/image.sh`.
    pub fn describe_image(&self, image: &str) -> Result<String> {
        let out = self
            .run(&["image", "inspect", "-f", "{{.Size}} {{.Config.User}}", image])
            .with_context(|| {
                format!("image {image} is not in the Docker daemon: build it with bash scripts/image.sh (just image)")
            })?;
        let (size, user) = out
            .split_once(' ')
            .ok_or_else(|| anyhow!("unexpected docker image inspect output {out:?}"))?;
        let size: f64 = size.parse()?;
        let uid = user.split(':').next().unwrap_or_default();
        Ok(format!(
            "image: {image}, {:.1} MB, user {uid}",
            size / 1_000_000.0
        ))
    }
}

/// A probe as the kubelet runs it (HTTP GET only).
#[derive(Debug, Clone)]
struct HttpProbe {
    addr: SocketAddr,
    path: String,
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

impl HttpProbe {
    fn from(probe: &Probe, container: &Container) -> Result<HttpProbe> {
        let get = probe.http_get.as_ref().ok_or_else(|| {
            anyhow!("only httpGet probes are supported by the pod runner (exec, tcpSocket and grpc are not)")
        })?;
        ensure!(
            get.scheme.as_deref().unwrap_or("HTTP") == "HTTP",
            "probe scheme {:?}: only HTTP is supported",
            get.scheme
        );
        let port = match &get.port {
            IntOrString::Int(p) => *p,
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| anyhow!("probe port {name:?} is not a port of the container"))?,
        };
        let secs = |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default) as u64);
        Ok(HttpProbe {
            // The pod's IP on the host network.
            addr: SocketAddr::from(([127, 0, 0, 1], u16::try_from(port)?)),
            path: get.path.clone().unwrap_or_else(|| "/".into()),
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10),
            timeout: secs(probe.timeout_seconds, 1),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        })
    }

    /// One probe: 200..400 within the timeout is a success, as the kubelet counts it.
    fn once(&self) -> bool {
        let addr = self.addr;
        let path = self.path.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(http_get(addr, &path));
        });
        matches!(rx.recv_timeout(self.timeout), Ok(Ok((code, _))) if (200..400).contains(&code))
    }

    fn describe(&self) -> String {
        format!(
            "GET http://{}{} every {}s (timeout {}s, delay {}s, success {}, failure {})",
            self.addr,
            self.path,
            self.period.as_secs(),
            self.timeout.as_secs(),
            self.initial_delay.as_secs(),
            self.success_threshold,
            self.failure_threshold
        )
    }
}

/// What the probe thread has seen.
#[derive(Debug, Default)]
struct ProbeState {
    ready: AtomicBool,
    /// The liveness probe has failed `failureThreshold` times in a row (a kubelet would restart
    /// the container).
    liveness_failed: AtomicBool,
    readiness_probes: AtomicU32,
    liveness_probes: AtomicU32,
    stop: AtomicBool,
}

/// The kubelet's probe loop: each probe on its own period, with its thresholds.
fn probe_loop(readiness: Option<HttpProbe>, liveness: Option<HttpProbe>, state: Arc<ProbeState>) {
    let started = Instant::now();
    // (probe, next due, consecutive successes, consecutive failures, is readiness)
    let mut probes: Vec<(HttpProbe, Instant, u32, u32, bool)> = Vec::new();
    if let Some(p) = readiness {
        probes.push((p.clone(), started + p.initial_delay, 0, 0, true));
    } else {
        // No readiness probe: ready once running, as the kubelet has it.
        state.ready.store(true, Ordering::SeqCst);
    }
    if let Some(p) = liveness {
        probes.push((p.clone(), started + p.initial_delay, 0, 0, false));
    }
    while !state.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        for (probe, due, successes, failures, is_readiness) in probes.iter_mut() {
            if now < *due {
                continue;
            }
            *due = now + probe.period;
            let ok = probe.once();
            if ok {
                *successes += 1;
                *failures = 0;
            } else {
                *failures += 1;
                *successes = 0;
            }
            if *is_readiness {
                state.readiness_probes.fetch_add(1, Ordering::SeqCst);
                if ok && *successes >= probe.success_threshold {
                    state.ready.store(true, Ordering::SeqCst);
                } else if !ok && *failures >= probe.failure_threshold {
                    state.ready.store(false, Ordering::SeqCst);
                }
            } else {
                state.liveness_probes.fetch_add(1, Ordering::SeqCst);
                if !ok && *failures >= probe.failure_threshold {
                    state.liveness_failed.store(true, Ordering::SeqCst);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running pod of a Deployment: one container, its probes polled.
#[derive(Debug)]
pub struct Pod {
    docker: Docker,
    /// The container id (stopped by it, never by name).
    id: Option<String>,
    /// The pod name (`metadata.name` of the downward API).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Its service account's user name, `system:serviceaccount:<ns>:<sa>`.
    pub user: String,
    /// Its token (the bearer token of that user).
    pub token: String,
    /// The image run.
    pub image: String,
    /// The `docker run` arguments (shown in the test output).
    pub docker_args: Vec<String>,
    /// Its container log (followed while it runs).
    pub log: PathBuf,
    grace: u64,
    state: Arc<ProbeState>,
    probes: Option<std::thread::JoinHandle<()>>,
    logs: Option<Child>,
    started: Instant,
}

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

impl Pod {
    /// Runs one pod of Deployment `ns/deployment` as described in the module doc.
    pub async fn run(
        cluster: &Cluster,
        docker: &Docker,
        ns: &str,
        deployment: &str,
    ) -> Result<Pod> {
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

        let started = Instant::now();
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker
            .run(&arg_refs)
            .with_context(|| format!("docker run of deploy/{deployment}'s pod"))?;
        ensure!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()),
            "docker run printed no container id: {id:?}"
        );
        let log = cluster.dir.join(format!("pod-{ns}-{name}.log"));
        // Its stdout and stderr, both into one file, followed while it runs.
        let log_file = std::fs::File::create(&log)?;
        let logs = docker
            .command()
            .args(["logs", "-f", &id])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .ok();
        let state = Arc::new(ProbeState::default());
        let probe_state = state.clone();
        let shown = [
            readiness
                .as_ref()
                .map(|p| format!("readiness {}", p.describe())),
            liveness
                .as_ref()
                .map(|p| format!("liveness {}", p.describe())),
        ];
        let probes = std::thread::spawn(move || probe_loop(readiness, liveness, probe_state));
        crate::controller::register_log(&format!("{ns}/{name} (container)"), &log);
        note(format!(
            "pod {ns}/{name}: container {} of {image} as {user} (deploy/{deployment})",
            &id[..12]
        ));
        note(format!("docker {}", args.join(" ")));
        for p in shown.into_iter().flatten() {
            note(p);
        }
        Ok(Pod {
            docker: docker.clone(),
            id: Some(id),
            name,
            namespace: ns.into(),
            user,
            token,
            image,
            docker_args: args,
            log,
            grace,
            state,
            probes: Some(probes),
            logs,
            started,
        })
    }

    /// The container id, while it exists.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Ready as the kubelet sees it (readiness probe past its thresholds).
    pub fn ready(&self) -> bool {
        self.state.ready.load(Ordering::SeqCst)
    }

    /// Fails if the container exited or its liveness probe failed past its threshold.
    pub fn check(&self) -> Result<()> {
        let id = self.id.as_deref().ok_or_else(|| anyhow!("pod stopped"))?;
        let state =
            self.docker
                .run(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id])?;
        if !state.starts_with("running") {
            bail!(
                "pod {} exited ({state}); last log lines:\n{}",
                self.name,
                self.log_tail(30)
            );
        }
        ensure!(
            !self.state.liveness_failed.load(Ordering::SeqCst),
            "pod {}: liveness probe failed {} times in a row (a kubelet would restart it)",
            self.name,
            "failureThreshold"
        );
        Ok(())
    }

    /// Waits until the readiness probe says ready.
    pub async fn wait_ready(&self) -> Result<()> {
        let limit = timeout();
        loop {
            self.check()?;
            if self.ready() {
                break;
            }
            if self.started.elapsed() > limit {
                bail!(
                    "pod {} not ready within {limit:?} ({} readiness probes); last log lines:\n{}",
                    self.name,
                    self.state.readiness_probes.load(Ordering::SeqCst),
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(POLL).await;
        }
        note(format!(
            "pod {} ready (readiness probe, {:.1}s after docker run; {} readiness, {} liveness probes)",
            self.name,
            self.started.elapsed().as_secs_f64(),
            self.state.readiness_probes.load(Ordering::SeqCst),
            self.state.liveness_probes.load(Ordering::SeqCst)
        ));
        Ok(())
    }

    /// The last lines of the container's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `docker stop -t <terminationGracePeriodSeconds>` then `docker rm`, by id; returns the
    /// container's exit code. Fails if it was not still running, or the liveness probe failed.
    pub fn stop(&mut self) -> Result<i64> {
        let healthy = self.check();
        let Some(id) = self.id.clone() else {
            bail!("pod {} already stopped", self.name);
        };
        self.stop_probes();
        let started = Instant::now();
        let stopped = self
            .docker
            .run(&["stop", "-t", &self.grace.to_string(), &id]);
        let code = self
            .docker
            .run(&["inspect", "-f", "{{.State.ExitCode}}", &id])
            .ok()
            .and_then(|c| c.parse::<i64>().ok());
        self.finish_logs();
        let removed = self.docker.run(&["rm", &id]);
        self.id = None;
        stopped?;
        removed?;
        healthy?;
        let code = code.ok_or_else(|| anyhow!("no exit code for container {id}"))?;
        note(format!(
            "pod {} stopped (docker stop {:.1}s, exit code {code}), container removed",
            self.name,
            started.elapsed().as_secs_f64()
        ));
        Ok(code)
    }

    fn stop_probes(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.probes.take() {
            let _ = t.join();
        }
    }

    fn finish_logs(&mut self) {
        // `docker logs -f` ends when the container stops; give it a moment, then stop it.
        if let Some(mut child) = self.logs.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.stop_probes();
        if let Some(id) = self.id.take() {
            let _ = self.docker.run(&["stop", "-t", "2", &id]);
            self.finish_logs();
            let _ = self.docker.run(&["rm", "-f", &id]);
        } else if let Some(mut child) = self.logs.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
