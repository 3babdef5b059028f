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

mod docker;
mod probe;
mod spec;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

pub use docker::Docker;
pub use spec::{SERVICE_ACCOUNT_DIR, random_string};

use crate::cluster::Cluster;
use crate::out::note;
use crate::wait::{POLL, timeout};
use probe::{ProbeState, probe_loop};

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

impl Pod {
    /// Runs one pod of Deployment `ns/deployment` as described in the module doc.
    pub async fn run(
        cluster: &Cluster,
        docker: &Docker,
        ns: &str,
        deployment: &str,
    ) -> Result<Pod> {
        let spec = spec::read(cluster, docker, ns, deployment).await?;
        let (name, image, user, args) = (&spec.name, &spec.image, &spec.user, &spec.args);
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
            spec.readiness
                .as_ref()
                .map(|p| format!("readiness {}", p.describe())),
            spec.liveness
                .as_ref()
                .map(|p| format!("liveness {}", p.describe())),
        ];
        let (readiness, liveness) = (spec.readiness, spec.liveness);
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
            name: spec.name,
            namespace: ns.into(),
            user: spec.user,
            token: spec.token,
            image: spec.image,
            docker_args: spec.args,
            log,
            grace: spec.grace,
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
