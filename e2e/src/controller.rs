//! The real `iter8-controller` binary as a child process of the test or bench.
//!
//! It is stopped by its pid (its process group when it runs under a wrapper such as a profiler)
//! with SIGTERM, then SIGKILL; dropping a [`Controller`] kills it, so none outlives a test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::Cluster;
use crate::out::note;
use crate::tools::{free_port, http_get, workspace_bin};
use crate::wait::{POLL, timeout};

/// Lease duration of the controller's leader election (k8s-adapter `leader.rs`).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);

/// How long a controller gets to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// `(namespace/pod, log file)` of every controller started since [`take_logs`] was last called:
/// what a failing scenario prints.
static LOGS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

/// Adds a log to what a failing scenario prints (e.g. a pod's container log, `pod.rs`).
pub fn register_log(who: &str, path: &std::path::Path) {
    if let Ok(mut logs) = LOGS.lock()
        && !logs.iter().any(|(_, p)| p == path)
    {
        logs.push((who.to_string(), path.to_path_buf()));
    }
}

/// The logs of the controllers started since the last call (and forgets them).
pub fn take_logs() -> Vec<(String, PathBuf)> {
    LOGS.lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default()
}

/// How to start a controller; [`Controller::start`] covers the usual case.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    cluster: &'a Cluster,
    namespace: String,
    pod_name: String,
    args: Vec<String>,
    log_level: String,
    wrap: Vec<String>,
    kubeconfig: Option<PathBuf>,
}

impl<'a> Launch<'a> {
    /// A replica watching `namespace` (its Lease lives there too), named `pod_name`, logging
    /// `k8s_adapter` at debug level (what a failing scenario needs).
    pub fn new(cluster: &'a Cluster, namespace: &str, pod_name: &str) -> Self {
        Launch {
            cluster,
            namespace: namespace.into(),
            pod_name: pod_name.into(),
            args: Vec::new(),
            log_level: "info,k8s_adapter=debug".into(),
            wrap: Vec::new(),
            kubeconfig: None,
        }
    }

    /// Another kubeconfig than the cluster's administrator's (e.g.
    /// [`Cluster::controller_kubeconfig`]).
    pub fn kubeconfig(mut self, path: &std::path::Path) -> Self {
        self.kubeconfig = Some(path.to_path_buf());
        self
    }

    /// Extra flags.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// `--log-level`.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.into();
        self
    }

    /// A command the controller runs under, e.g. `heaptrack -o /tmp/ctl` (empty: none).
    pub fn wrap(mut self, command: &str) -> Self {
        self.wrap = command.split_whitespace().map(str::to_string).collect();
        self
    }

    /// Starts it, logging to `<cluster dir>/controller-<ns>-<pod>.log` (a restarted replica
    /// appends to the same file).
    pub fn start(self) -> Result<Controller> {
        let bin = workspace_bin("iter8-controller")?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let (ns, pod) = (&self.namespace, &self.pod_name);
        let log = self.cluster.dir.join(format!("controller-{ns}-{pod}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut command = match self.wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        // A wrapped controller gets its own process group, so that stopping the group stops
        // the controller too; an unwrapped one stays in ours, so that Ctrl-C reaches it.
        let grouped = !self.wrap.is_empty();
        if grouped {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let started = Instant::now();
        let child = command
            .arg("--kubeconfig")
            .arg(self.kubeconfig.as_ref().unwrap_or(&self.cluster.kubeconfig))
            .args(["--namespace", ns, "--pod-name", pod])
            .arg("--admin-addr")
            .arg(admin.to_string())
            .args(["--log-level", &self.log_level])
            .args(&self.args)
            .env("NO_COLOR", "1")
            .env_remove("ITER8_CONFIG")
            .env_remove("ITER8_CLUSTER_SCOPED")
            .env_remove("ITER8_LEADER_ELECTION")
            .env_remove("ITER8_LOG_LEVEL")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        if let Ok(mut logs) = LOGS.lock()
            && !logs.iter().any(|(_, p)| *p == log)
        {
            logs.push((format!("{ns}/{pod}"), log.clone()));
        }
        note(format!(
            "started iter8-controller {pod} (pid {}, namespace {ns}, admin {admin})",
            child.id()
        ));
        Ok(Controller {
            child: Some(child),
            grouped,
            pod_name: self.pod_name,
            admin,
            log,
            started,
        })
    }
}

/// A running controller.
#[derive(Debug)]
pub struct Controller {
    child: Option<Child>,
    /// In its own process group (see [`Launch::wrap`]).
    grouped: bool,
    /// Its `--pod-name` (its identity in the Lease and in Events).
    pub pod_name: String,
    /// Its admin server (`/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// Its log file.
    pub log: PathBuf,
    /// When the process was started.
    pub started: Instant,
}

impl Controller {
    /// Starts a replica watching `namespace` (see [`Launch::new`]).
    pub fn start(cluster: &Cluster, namespace: &str, pod_name: &str) -> Result<Controller> {
        Launch::new(cluster, namespace, pod_name).start()
    }

    /// [`Self::start`] with extra flags.
    pub fn start_with(
        cluster: &Cluster,
        namespace: &str,
        pod_name: &str,
        extra: &[&str],
    ) -> Result<Controller> {
        Launch::new(cluster, namespace, pod_name)
            .args(extra)
            .start()
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until `/readyz` answers 200 (every watch listed).
    pub async fn wait_ready(&mut self) -> Result<()> {
        loop {
            self.check_alive()?;
            let state = match http_get(self.admin, "/readyz") {
                Ok((200, _)) => break,
                Ok((code, body)) => format!("{code} {body}"),
                Err(e) => e.to_string(),
            };
            if self.started.elapsed() > timeout() {
                bail!(
                    "{} /readyz not 200 within {:?}: {state}",
                    self.pod_name,
                    timeout()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        note(format!(
            "{} ready (/readyz 200 after {:.1}s)",
            self.pod_name,
            self.started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Fails, with the end of its log, if the process exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            bail!(
                "iter8-controller {} exited ({status}); last log lines:\n{}",
                self.pod_name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// Peak resident set (VmHWM), bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmHWM:").map(|k| k * 1024)
    }

    /// Graceful stop: SIGTERM (a leader releases its Lease), then SIGKILL and an error if it has
    /// not exited within 15 s.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        self.signal(&child, "-TERM");
        let deadline = Instant::now() + STOP_GRACE;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.signal(&child, "-KILL");
                let _ = child.wait();
                bail!(
                    "iter8-controller {} did not stop within {STOP_GRACE:?} of SIGTERM",
                    self.pod_name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        note(format!("stopped {} (SIGTERM)", self.pod_name));
        Ok(())
    }

    /// Sends SIGTERM and returns at once (see [`Self::wait_exit`]): to time what happens while
    /// it shuts down.
    pub fn terminate(&self) {
        if let Some(child) = self.child.as_ref() {
            self.signal(child, "-TERM");
        }
    }

    /// Waits up to `limit` for the process to exit by itself (after [`Self::terminate`]).
    pub fn wait_exit(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} is not running", self.pod_name);
        };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                note(format!("{} exited ({status})", self.pod_name));
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} still running {limit:?} after SIGTERM", self.pod_name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Crash: SIGKILL (a leader does not release its Lease).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.signal(&child, "-KILL");
            let _ = child.wait();
            note(format!("killed {} (SIGKILL)", self.pod_name));
        }
    }

    /// Signals the process by its pid, or its process group (a wrapper and the controller).
    fn signal(&self, child: &Child, signal: &str) {
        let target = if self.grouped {
            format!("-{}", child.id())
        } else {
            child.id().to_string()
        };
        let _ = Command::new("kill")
            .args([signal, "--", &target])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.signal(&child, "-KILL");
            let _ = child.wait();
        }
    }
}

/// A `kB` line of `/proc/<pid>/status`, in KiB.
pub fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time a process has used so far (user + system, `/proc/<pid>/stat`), in seconds.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    // Then field 3 (state) is the first, utime (14) the 12th, stime (15) the 13th.
    let rest = text.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks_per_second())
}

/// `getconf CLK_TCK` (the unit of `/proc/<pid>/stat` times), read once; 100 if it fails.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}
