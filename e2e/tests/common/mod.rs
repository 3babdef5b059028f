//! The e2e harness: a real API server (e2e/test-apiserver) per test file, the real
//! `iter8-controller` binary as a child process, helm/kubectl from `<repo>/.tools/bin`, and small
//! helpers to read routes, Events, Leases and the controller's metrics.
//!
//! Nothing here is mocked: objects go through a real API server backed by etcd (watch,
//! resourceVersions, label selectors, server-side apply with field managers). What the test API
//! server does not have (no kube-controller-manager, no garbage collector) is done by the tests:
//! they write Deployment status through the status subresource and check owner references.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use iter8_e2e::{free_port, http_get, repo_root};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use routing_core::route::FilterType;
use routing_core::{HttpRoute, Request};
use serde_json::{Value, json};

/// Poll interval of every wait.
pub const POLL: Duration = Duration::from_millis(100);
/// Default timeout of a wait (`ITER8_E2E_TIMEOUT_SECS` overrides).
pub fn timeout() -> Duration {
    std::env::var("ITER8_E2E_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(20))
}

/// Lease duration of the controller's leader election (k8s-adapter `leader.rs`).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Output

/// Prints one tutorial-like line: `==> step 2: ...`.
pub fn step(n: impl std::fmt::Display, text: impl std::fmt::Display) {
    println!("==> step {n}: {text}");
}

/// Prints a detail line under a step.
pub fn note(text: impl std::fmt::Display) {
    println!("    {text}");
}

/// Prints a passed check.
pub fn ok(text: impl std::fmt::Display) {
    println!("    ok: {text}");
}

// ---------------------------------------------------------------------------------------------
// Paths and tools

/// `<target>/debug` (or whichever profile built this test).
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // <target>/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot locate the target directory from {}", exe.display()))
}

/// The controller binary, built by `cargo build -p iter8-controller`.
pub fn controller_binary() -> Result<PathBuf> {
    let bin = profile_dir()?.join("iter8-controller");
    ensure!(
        bin.is_file(),
        "{} is missing: run: cargo build -p iter8-controller (e2e/run.sh does it first)",
        bin.display()
    );
    Ok(bin)
}

fn tool(name: &str) -> Result<PathBuf> {
    let bin = repo_root().join(".tools/bin").join(name);
    ensure!(
        bin.is_file(),
        "{} is missing: run: bash scripts/install-tools.sh (installs helm and kubectl into .tools/bin)",
        bin.display()
    );
    Ok(bin)
}

/// A fixture under `fixtures/charts/values`.
pub fn values(name: &str) -> PathBuf {
    repo_root().join("fixtures/charts/values").join(name)
}

fn run(cmd: &mut Command, input: Option<&str>) -> Result<String> {
    let shown = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {shown}"))?;
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("{shown} failed ({}):\n{stdout}{stderr}", out.status);
    }
    Ok(stdout)
}

/// Builds the test API server once per test process (idempotent and cached by build.sh).
fn ensure_apiserver_built() -> Result<()> {
    static BUILT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let started = Instant::now();
            let script = repo_root().join("e2e/test-apiserver/build.sh");
            let status = Command::new("bash")
                .arg(&script)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .status()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !status.success() {
                return Err(format!("bash {} failed ({status})", script.display()));
            }
            note(format!(
                "test API server built (build.sh, {:.1}s)",
                started.elapsed().as_secs_f64()
            ));
            Ok(())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// Polls `check` every [`POLL`] until it returns `Ok(Ok(value))`; `Ok(Err(state))` means "not
/// yet" (the last state is shown on timeout); `Err` fails at once.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<std::result::Result<T, String>>>,
{
    let started = Instant::now();
    loop {
        let state = match check().await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(state)) => state,
            // API errors while a server restarts are "not yet".
            Err(e) => format!("error: {e:#}"),
        };
        if started.elapsed() > limit {
            bail!(
                "timed out after {:.1}s waiting for {what}; last seen: {state}",
                limit.as_secs_f64()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The API server

/// One test API server (etcd + server) in a fresh directory; stopped (and the directory removed,
/// unless something failed) on drop.
pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub client: Client,
    failed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("dir", &self.dir).finish()
    }
}

impl Cluster {
    /// Builds (if needed) and starts a server in a fresh temp directory, installs the HTTPRoute
    /// CRD and waits until it is Established.
    pub async fn start(name: &str) -> Result<Cluster> {
        tool("kubectl")?;
        tool("helm")?;
        controller_binary()?;
        ensure_apiserver_built()?;
        let dir = std::env::temp_dir().join(format!("iter8-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let started = Instant::now();
        run(
            Command::new("bash")
                .arg(repo_root().join("e2e/test-apiserver/start.sh"))
                .arg(&dir),
            None,
        )
        .context("starting the test API server")?;
        let kubeconfig = dir.join("kubeconfig");
        let client = client(&kubeconfig).await?;
        let cluster = Cluster {
            dir,
            kubeconfig,
            client,
            failed: Default::default(),
        };
        note(format!(
            "API server + etcd up in {:.1}s (dir {})",
            started.elapsed().as_secs_f64(),
            cluster.dir.display()
        ));
        cluster.install_crd().await?;
        Ok(cluster)
    }

    /// Keep the directory (logs) after the test.
    pub fn mark_failed(&self) {
        self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    async fn install_crd(&self) -> Result<()> {
        let (crd, source) = iter8_e2e::httproute_crd()?;
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("iter8-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .context("installing the HTTPRoute CRD")?;
        wait_for("the HTTPRoute CRD to be Established", timeout(), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok(if established {
                    Ok(())
                } else {
                    Err("not Established".into())
                })
            }
        })
        .await?;
        // Discovery must list the new resource before kubectl can use it.
        wait_for("httproutes in discovery", timeout(), || async {
            Ok(
                match self.kubectl(&["api-resources", "--api-group=gateway.networking.k8s.io"]) {
                    Ok(out) if out.contains("httproutes") => Ok(()),
                    Ok(out) => Err(out),
                    Err(e) => Err(format!("{e:#}")),
                },
            )
        })
        .await?;
        note(format!("HTTPRoute CRD Established ({source})"));
        Ok(())
    }

    /// Runs kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_in(args, None)
    }

    /// Runs kubectl with `input` on stdin.
    pub fn kubectl_in(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        run(
            Command::new(tool("kubectl")?)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--cache-dir")
                .arg(self.dir.join("kubectl-cache"))
                .args(args),
            input,
        )
        .map(|out| {
            // kubectl 1.33 against a 1.36 server: drop the version-skew warning.
            out.lines()
                .filter(|l| !l.contains("version difference"))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// Creates a namespace.
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(())
    }

    /// After a failed fault scenario: starts whichever component is down and waits until the
    /// server answers, so the next scenario gets a working server.
    pub async fn heal(&self) {
        if self.kubectl(&["get", "--raw", "/readyz"]).is_ok() {
            return;
        }
        for only in ["etcd", "apiserver"] {
            let _ = run(
                Command::new("bash")
                    .arg(repo_root().join("e2e/test-apiserver/start.sh"))
                    .arg(&self.dir)
                    .args(["--only", only]),
                None,
            );
        }
        let healed = wait_for("the API server to answer again", timeout(), || async {
            Ok(self
                .kubectl(&["get", "--raw", "/readyz"])
                .map_err(|e| format!("{e:#}")))
        })
        .await;
        match healed {
            Ok(_) => note("(API server restarted for the next scenario)"),
            Err(e) => note(format!("(cannot bring the API server back: {e:#})")),
        }
    }

    /// `restart-apiserver.sh DIR`; `crash`: SIGKILL instead of a graceful stop.
    pub fn restart_apiserver(&self, crash: bool) -> Result<()> {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("e2e/test-apiserver/restart-apiserver.sh"))
            .arg(&self.dir);
        if crash {
            cmd.env("TAS_STOP_SIGNAL", "KILL");
        }
        run(&mut cmd, None).map(|_| ())
    }

    /// `restart-etcd.sh DIR`.
    pub fn restart_etcd(&self) -> Result<()> {
        run(
            Command::new("bash")
                .arg(repo_root().join("e2e/test-apiserver/restart-etcd.sh"))
                .arg(&self.dir),
            None,
        )
        .map(|_| ())
    }

    // --- objects -------------------------------------------------------------------------

    /// Marks a Deployment available (or not): `Available` condition and `observedGeneration` =
    /// `generation`, written through the status subresource (there is no controller-manager).
    /// Returns the generation observed.
    pub async fn set_deployment(&self, ns: &str, name: &str, available: bool) -> Result<i64> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let d = api
            .get(name)
            .await
            .with_context(|| format!("get deploy/{name}"))?;
        let generation = d.metadata.generation.unwrap_or(1);
        let n = i32::from(available);
        let status = json!({"status": {
            "observedGeneration": generation,
            "replicas": 1, "updatedReplicas": 1, "readyReplicas": n, "availableReplicas": n,
            "conditions": [{
                "type": "Available",
                "status": if available { "True" } else { "False" },
                "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                "message": "set by the iter8 e2e test",
            }],
        }});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .with_context(|| format!("patch deploy/{name}/status"))?;
        Ok(generation)
    }

    /// A Deployment's `(generation, status.observedGeneration)`.
    pub async fn deployment_generations(&self, ns: &str, name: &str) -> Result<(i64, i64)> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let d = api.get(name).await?;
        Ok((
            d.metadata.generation.unwrap_or(0),
            d.status.and_then(|s| s.observed_generation).unwrap_or(0),
        ))
    }

    fn routes(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            ns,
            &k8s_adapter::kube_types::httproute_resource(),
        )
    }

    /// The live HTTPRoute as JSON, if it exists.
    pub async fn route_json(&self, ns: &str, name: &str) -> Result<Option<Value>> {
        Ok(match self.routes(ns).get_opt(name).await? {
            Some(obj) => Some(serde_json::to_value(obj)?),
            None => None,
        })
    }

    /// The live HTTPRoute read back and converted into routing-core's model.
    pub async fn route(&self, ns: &str, name: &str) -> Result<Option<Live>> {
        Ok(match self.route_json(ns, name).await? {
            Some(json) => Some(Live::from_json(json)?),
            None => None,
        })
    }

    /// Waits until the route exists and `check` accepts it (`Err(why)` = not yet).
    pub async fn wait_route<F>(&self, ns: &str, name: &str, what: &str, check: F) -> Result<Live>
    where
        F: Fn(&Live) -> std::result::Result<(), String>,
    {
        self.wait_route_within(ns, name, what, timeout(), check)
            .await
    }

    /// [`Self::wait_route`] with its own time limit.
    pub async fn wait_route_within<F>(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        limit: Duration,
        check: F,
    ) -> Result<Live>
    where
        F: Fn(&Live) -> std::result::Result<(), String>,
    {
        wait_for(what, limit, || async {
            Ok(match self.route(ns, name).await? {
                None => Err(format!("no HTTPRoute {ns}/{name}")),
                Some(live) => match check(&live) {
                    Ok(()) => Ok(live),
                    Err(why) => Err(format!("{why}; route: {}", live.describe())),
                },
            })
        })
        .await
    }

    /// A ConfigMap, if it exists.
    pub async fn configmap(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        Ok(api.get_opt(name).await?)
    }

    /// The routemap's `iter8.tools/status` annotation (parsed), if any.
    pub async fn routemap_status(&self, ns: &str, name: &str) -> Result<Option<Value>> {
        Ok(self
            .configmap(ns, name)
            .await?
            .and_then(|cm| cm.metadata.annotations)
            .and_then(|a| a.get("iter8.tools/status").cloned())
            .and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Waits until the routemap's status annotation lists exactly `available` as the versions
    /// receiving traffic and names every version in `known` (the controller has seen them).
    pub async fn wait_status(
        &self,
        ns: &str,
        routemap: &str,
        available: &[&str],
        known: &[&str],
    ) -> Result<Value> {
        let what = format!("{routemap} status: available {available:?}, versions {known:?}");
        wait_for(&what, timeout(), || async {
            let Some(status) = self.routemap_status(ns, routemap).await? else {
                return Ok(Err("no status annotation".into()));
            };
            let got: Vec<&str> = status["availableVersions"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let weights = status["weights"].as_object();
            let all_known = known
                .iter()
                .all(|k| weights.is_some_and(|w| w.contains_key(*k)));
            let exact_known = weights.is_some_and(|w| w.len() == known.len());
            Ok(if got == available && all_known && exact_known {
                Ok(status)
            } else {
                Err(status.to_string())
            })
        })
        .await
    }

    /// Events about an object (core/v1, field selector on `involvedObject.name`), oldest first.
    pub async fn events(&self, ns: &str, involved: &str) -> Result<Vec<Event>> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let mut list = api
            .list(&ListParams::default().fields(&format!("involvedObject.name={involved}")))
            .await?
            .items;
        list.sort_by_key(|e| {
            (
                e.event_time.as_ref().map(|t| t.0.to_string()),
                e.metadata.name.clone(),
            )
        });
        Ok(list)
    }

    /// How many Events with `reason` (counting `count`).
    pub async fn event_count(&self, ns: &str, involved: &str, reason: &str) -> Result<usize> {
        Ok(count_events(&self.events(ns, involved).await?, reason))
    }

    /// The holder of the leader Lease.
    pub async fn lease_holder(&self, ns: &str, name: &str) -> Result<Option<String>> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), ns);
        Ok(api
            .get_opt(name)
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("e2e/test-apiserver/stop.sh"))
            .arg(&self.dir)
            .env("TAS_STOP_SIGNAL", "KILL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if std::thread::panicking()
            || self.failed.load(std::sync::atomic::Ordering::SeqCst)
            || std::env::var_os("ITER8_E2E_KEEP").is_some()
        {
            println!(
                "    (kept {} with apiserver.log, etcd.log and the controller logs)",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Sum of the `count` of Events with `reason`.
pub fn count_events(events: &[Event], reason: &str) -> usize {
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.count.unwrap_or(1).max(1) as usize)
        .sum()
}

/// One line per Event: `Normal RouteApplied [instance]: message`.
pub fn show_events(events: &[Event]) {
    for e in events {
        note(format!(
            "event {} {} [{}]: {}",
            e.type_.as_deref().unwrap_or("-"),
            e.reason.as_deref().unwrap_or("-"),
            e.reporting_instance.as_deref().unwrap_or("-"),
            e.message.as_deref().unwrap_or("")
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// The live route

/// A live HTTPRoute: its JSON and routing-core's view of it.
#[derive(Debug, Clone)]
pub struct Live {
    pub json: Value,
    pub route: HttpRoute,
}

impl Live {
    /// Converts the API server's JSON into routing-core's model.
    pub fn from_json(json: Value) -> Result<Live> {
        let route: HttpRoute = serde_json::from_value(json.clone())
            .context("the live HTTPRoute does not fit routing-core's model")?;
        Ok(Live { json, route })
    }

    pub fn resource_version(&self) -> String {
        self.json["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn generation(&self) -> i64 {
        self.json["metadata"]["generation"].as_i64().unwrap_or(0)
    }

    pub fn label(&self, key: &str) -> Option<String> {
        self.json["metadata"]["labels"][key]
            .as_str()
            .map(str::to_string)
    }

    /// Field managers in `managedFields`.
    pub fn managers(&self) -> Vec<String> {
        self.json["metadata"]["managedFields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["manager"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of rules.
    pub fn rules(&self) -> usize {
        self.route.spec.rules.len()
    }

    /// `(backend, weight)` of every backend of rule `i`.
    pub fn backends(&self, i: usize) -> Vec<(String, u32)> {
        self.route
            .spec
            .rules
            .get(i)
            .map(|r| {
                r.backend_refs
                    .iter()
                    .map(|b| (b.name.clone(), b.weight))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `(target, percent)` of every RequestMirror filter.
    pub fn mirrors(&self) -> Vec<(String, u32)> {
        self.route
            .spec
            .rules
            .iter()
            .flat_map(|r| &r.filters)
            .filter(|f| f.kind == FilterType::RequestMirror)
            .filter_map(|f| f.request_mirror.as_ref())
            .map(|m| (m.backend_ref.name.clone(), m.percent))
            .collect()
    }

    /// Every backend sets `app-version: <its name>` on responses.
    pub fn app_version_headers_ok(&self) -> bool {
        self.route.spec.rules.iter().all(|r| {
            r.backend_refs.iter().all(|b| {
                b.filters.iter().any(|f| {
                    f.response_header_modifier.as_ref().is_some_and(|h| {
                        h.set
                            .iter()
                            .any(|v| v.name == "app-version" && v.value == b.name)
                    })
                })
            })
        })
    }

    /// Where a request goes: `httpbin-1 (100%, app-version httpbin-1)`, via routing-core's
    /// `explain` (Gateway API precedence).
    pub fn explain(&self, req: &Request) -> String {
        match routing_core::explain(&self.route, req) {
            None => "no rule matches (404)".into(),
            Some(x) => {
                let mut s = x
                    .backends
                    .iter()
                    .map(|b| {
                        format!(
                            "{} ({:.0}%, app-version {})",
                            b.backend,
                            b.percent(),
                            b.app_version.as_deref().unwrap_or("-")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" + ");
                for (m, p) in &x.mirrors {
                    let _ = write!(s, ", mirrored to {m} ({p}%)");
                }
                let _ = write!(s, " [rule {}]", x.rule);
                s
            }
        }
    }

    /// The backends (name, app-version) a request reaches with a positive weight.
    pub fn serves(&self, req: &Request) -> Vec<(String, Option<String>)> {
        routing_core::explain(&self.route, req)
            .map(|x| {
                x.backends
                    .into_iter()
                    .map(|b| (b.backend, b.app_version))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One-line traffic: `rule 0 [traffic=test] -> httpbin-1 w1; rule 1 [/] -> httpbin-0 w1`.
    pub fn describe(&self) -> String {
        let rules: Vec<String> = self
            .route
            .spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let matches: Vec<String> = r
                    .matches
                    .iter()
                    .map(|m| {
                        let mut parts = vec![m.path.value.clone()];
                        parts.extend(m.headers.iter().map(|h| format!("{}={}", h.name, h.value)));
                        parts.join(" ")
                    })
                    .collect();
                let backends: Vec<String> = r
                    .backend_refs
                    .iter()
                    .map(|b| format!("{} w{}", b.name, b.weight))
                    .collect();
                let mut s = format!(
                    "rule {i} [{}] -> {}",
                    matches.join(" | "),
                    backends.join(", ")
                );
                for f in &r.filters {
                    if let Some(m) = &f.request_mirror {
                        let _ = write!(s, " (mirror {} {}%)", m.backend_ref.name, m.percent);
                    }
                }
                s
            })
            .collect();
        format!(
            "{} (generation {}, rv {})",
            rules.join("; "),
            self.generation(),
            self.resource_version()
        )
    }
}

/// A request with the tutorial's `traffic: test` header.
pub fn test_request() -> Request {
    Request::get("/").header("traffic", "test")
}

/// A plain request.
pub fn plain_request() -> Request {
    Request::get("/")
}

// ---------------------------------------------------------------------------------------------
// Releases (what `helm upgrade --install` and `helm delete` do, without Tiller-like state)

/// A release of `charts/release`: `helm template` + server-side apply with field manager
/// `helm`; an upgrade deletes the objects the new rendering no longer has, as helm does.
#[derive(Debug)]
pub struct Release<'a> {
    cluster: &'a Cluster,
    pub name: String,
    pub namespace: String,
    objects: BTreeSet<String>,
}

impl<'a> Release<'a> {
    pub fn new(cluster: &'a Cluster, name: &str, namespace: &str) -> Self {
        Release {
            cluster,
            name: name.into(),
            namespace: namespace.into(),
            objects: BTreeSet::new(),
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
    pub fn upgrade(&mut self, values: &[&Path]) -> Result<String> {
        let rendered = self.render(values)?;
        self.apply_rendered(&rendered)?;
        Ok(rendered)
    }

    /// Applies a rendering (maybe edited) as an upgrade.
    pub fn apply_rendered(&mut self, rendered: &str) -> Result<()> {
        let objects = object_refs(rendered)?;
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
        let gone: Vec<String> = self.objects.difference(&objects).cloned().collect();
        note(format!(
            "applied {} objects server-side (field manager helm): {}",
            objects.len(),
            objects.iter().cloned().collect::<Vec<_>>().join(" ")
        ));
        if !gone.is_empty() {
            self.delete_objects(&gone)?;
            note(format!(
                "deleted what the release no longer has: {}",
                gone.join(" ")
            ));
        }
        self.objects = objects;
        Ok(())
    }

    /// What `helm delete` does: deletes every object of the release.
    pub fn delete(&mut self) -> Result<Vec<String>> {
        let all: Vec<String> = self.objects.iter().cloned().collect();
        self.delete_objects(&all)?;
        self.objects.clear();
        Ok(all)
    }

    fn delete_objects(&self, objects: &[String]) -> Result<()> {
        let mut args = vec![
            "delete",
            "-n",
            &self.namespace,
            "--ignore-not-found",
            "--wait=false",
        ];
        args.extend(objects.iter().map(String::as_str));
        self.cluster.kubectl(&args).map(|_| ())
    }
}

/// `kind.group/name` of every object in a multi-document YAML.
pub fn object_refs(rendered: &str) -> Result<BTreeSet<String>> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(rendered).context("parsing the rendered chart")?;
    let mut out = BTreeSet::new();
    for d in docs {
        let Some(kind) = d["kind"].as_str() else {
            continue;
        };
        let group = d["apiVersion"]
            .as_str()
            .and_then(|a| a.split_once('/'))
            .map(|(g, _)| format!(".{g}"))
            .unwrap_or_default();
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        out.insert(format!("{}{group}/{name}", kind.to_lowercase()));
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

// ---------------------------------------------------------------------------------------------
// The controller

static LOGS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

/// The real `iter8-controller` binary, as a child process; killed on drop.
#[derive(Debug)]
pub struct Controller {
    child: Option<Child>,
    pub pod_name: String,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Controller {
    /// Starts a replica watching `namespace` (its Lease lives there too).
    pub fn start(cluster: &Cluster, namespace: &str, pod_name: &str) -> Result<Controller> {
        Self::start_with(cluster, namespace, pod_name, &[])
    }

    /// [`Self::start`] with extra flags.
    pub fn start_with(
        cluster: &Cluster,
        namespace: &str,
        pod_name: &str,
        extra: &[&str],
    ) -> Result<Controller> {
        let bin = controller_binary()?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let log = cluster
            .dir
            .join(format!("controller-{namespace}-{pod_name}.log"));
        // A restarted replica appends to the same file.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(bin)
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(["--namespace", namespace, "--pod-name", pod_name])
            .arg("--admin-addr")
            .arg(admin.to_string())
            .args(["--log-level", "info,k8s_adapter=debug"])
            .args(extra)
            .env("NO_COLOR", "1")
            .env_remove("ITER8_CONFIG")
            .env_remove("ITER8_CLUSTER_SCOPED")
            .env_remove("ITER8_LEADER_ELECTION")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting iter8-controller")?;
        if let Ok(mut logs) = LOGS.lock()
            && !logs.iter().any(|(_, p)| *p == log)
        {
            logs.push((format!("{namespace}/{pod_name}"), log.clone()));
        }
        note(format!(
            "started iter8-controller {pod_name} (pid {}, namespace {namespace}, admin {admin})",
            child.id()
        ));
        Ok(Controller {
            child: Some(child),
            pod_name: pod_name.into(),
            admin,
            log,
        })
    }

    /// Waits until `/readyz` answers 200 (every watch listed).
    pub async fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("iter8-controller {} exited: {status}", self.pod_name);
            }
            let state = match http_get(self.admin, "/readyz") {
                Ok((200, _)) => break,
                Ok((code, body)) => format!("{code} {body}"),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > timeout() {
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
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `/metrics` as text.
    pub fn metrics(&self) -> Result<String> {
        let (code, body) = http_get(self.admin, "/metrics")?;
        ensure!(code == 200, "/metrics answered {code}");
        Ok(body)
    }

    /// Value of one series, e.g. `iter8_applies_total{result="applied"}` (0 when absent).
    pub fn metric(&self, series: &str) -> Result<f64> {
        let text = self.metrics()?;
        Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter_map(|rest| rest.trim().split(' ').next())
            .filter_map(|v| v.parse::<f64>().ok())
            .next()
            .unwrap_or(0.0))
    }

    /// `iter8_applies_total{result="applied"}`.
    pub fn applied(&self) -> Result<u64> {
        Ok(self.metric("iter8_applies_total{result=\"applied\"}")? as u64)
    }

    /// Waits until `applies_total{result="applied"}` is `n` (the route may be visible before
    /// the controller has counted its write), then checks it stays there.
    pub async fn expect_applied(&self, n: u64) -> Result<()> {
        wait_for(
            &format!("{} to count {n} writes", self.pod_name),
            timeout(),
            || async {
                let got = self.applied()?;
                ensure!(
                    got <= n,
                    "{} made {got} writes, expected {n}",
                    self.pod_name
                );
                Ok(if got == n {
                    Ok(())
                } else {
                    Err(format!("{got} writes"))
                })
            },
        )
        .await?;
        settle().await;
        let got = self.applied()?;
        ensure!(
            got == n,
            "{} made {got} writes, expected {n}",
            self.pod_name
        );
        Ok(())
    }

    /// Graceful stop (SIGTERM: the Lease is released).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "iter8-controller {} did not stop within 15 s of SIGTERM",
                        self.pod_name
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            note(format!("stopped {} (SIGTERM)", self.pod_name));
        }
        Ok(())
    }

    /// Crash (SIGKILL: the Lease is not released).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            note(format!("killed {} (SIGKILL)", self.pod_name));
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Runs scenarios one after the other on one API server; a failing scenario prints the logs of
/// the controllers it started and the others still run; [`Suite::finish`] fails the test.
#[derive(Debug)]
pub struct Suite<'a> {
    cluster: &'a Cluster,
    failures: Vec<String>,
    started: Instant,
    only: Option<String>,
}

impl<'a> Suite<'a> {
    pub fn new(cluster: &'a Cluster) -> Self {
        Suite {
            cluster,
            failures: Vec::new(),
            started: Instant::now(),
            // ITER8_E2E_ONLY=name runs one scenario (while debugging).
            only: std::env::var("ITER8_E2E_ONLY").ok(),
        }
    }

    pub async fn run<F>(&mut self, name: &str, scenario: F)
    where
        F: Future<Output = Result<()>>,
    {
        if self.only.as_deref().is_some_and(|o| !name.contains(o)) {
            println!("\n=== {name}: skipped (ITER8_E2E_ONLY)");
            return;
        }
        println!("\n=== {name}");
        if let Ok(mut logs) = LOGS.lock() {
            logs.clear();
        }
        let started = Instant::now();
        match scenario.await {
            Ok(()) => println!("--- PASS {name} ({:.1}s)", started.elapsed().as_secs_f64()),
            Err(e) => {
                println!(
                    "--- FAIL {name} ({:.1}s): {e:#}",
                    started.elapsed().as_secs_f64()
                );
                self.cluster.mark_failed();
                let logs = LOGS.lock().map(|l| l.clone()).unwrap_or_default();
                for (who, path) in logs {
                    print_tail(&format!("controller {who}"), &path, 120);
                }
                print_tail("apiserver", &self.cluster.dir.join("apiserver.log"), 15);
                self.failures.push(format!("{name}: {e:#}"));
                self.cluster.heal().await;
            }
        }
    }

    pub fn finish(self) {
        println!(
            "\n{} scenario(s) failed, total {:.1}s",
            self.failures.len(),
            self.started.elapsed().as_secs_f64()
        );
        assert!(
            self.failures.is_empty(),
            "failed scenarios:\n{}",
            self.failures.join("\n")
        );
    }
}

fn print_tail(who: &str, path: &Path, lines: usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    println!(
        "----- {who}: last {} lines of {}",
        all.len() - from,
        path.display()
    );
    for l in &all[from..] {
        println!("{l}");
    }
    println!("-----");
}

/// Waits until `RouteApplied` Events on the routemap, the controller's applies and the route's
/// generation agree (one Event per write, one generation per write: every write here changes
/// the spec). The three are read separately, so they may briefly disagree while a write is
/// being reported. Returns the count.
pub async fn writes_agree(
    cluster: &Cluster,
    controller: &Controller,
    ns: &str,
    routemap: &str,
    route: &str,
) -> Result<u64> {
    wait_for(
        "RouteApplied Events = applies = route generation",
        timeout(),
        || async {
            let applied = controller.applied()?;
            let events = cluster.event_count(ns, routemap, "RouteApplied").await? as u64;
            let generation = cluster
                .route(ns, route)
                .await?
                .map(|r| r.generation())
                .unwrap_or(0) as u64;
            Ok(if applied == events && events == generation {
                Ok(applied)
            } else {
                Err(format!(
                    "RouteApplied Events {events}, applies {applied}, route generation {generation}"
                ))
            })
        },
    )
    .await
}

/// Sleeps a little so that a controller that would (wrongly) write has time to do it.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}
