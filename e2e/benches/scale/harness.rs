//! The scale harness, shared by the bench (`benches/scale/main.rs`, `cargo bench -p iter8-e2e
//! --bench scale`) and its scaled-down CI check (`tests/scale.rs`).
//!
//! It starts a fresh test API server (e2e/test-apiserver), fills one namespace with two-version
//! canary releases (a routemap ConfigMap, two Services, two Deployments with `Available=True`
//! written through `/status`), pre-applies the routes of half of them exactly as the controller
//! would (same body, same field manager, same status annotation), runs the REAL
//! `iter8-controller` binary as a child process, and watches the HTTPRoutes with a bare client
//! to time when every route is correct and to count every write that changed one.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use iter8_e2e::{free_port, http_get, repo_root};
use k8s_adapter::kube_types::{httproute_resource, to_gateway};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use routemap_index::config::Config;
use routemap_index::index::{Decision, Index};
use routemap_index::live::covers;
use routemap_index::report::{RouteResult, report};
use routemap_index::routemap::{RouteMapKey, RouteMapObject};
use routing_core::HttpRoute;
use routing_core::ResourceFacts;
use routing_core::keys::{STATUS_ANNOTATION, STATUS_FIELD_MANAGER};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Field manager of the controller's route applies (its default `fieldManager`).
pub const FIELD_MANAGER: &str = "iter8-controller";
/// Concurrency of the bench's own API calls (seeding, resets).
pub const CONCURRENCY: usize = 32;

/// Prints a progress line.
pub fn say(text: impl std::fmt::Display) {
    println!("[scale] {text}");
    let _ = std::io::stdout().flush();
}

// ---------------------------------------------------------------------------------------------
// Paths

/// A binary of the workspace from the profile that built this executable (`release` for
/// `cargo bench`, `debug` for `cargo test`), else from the other profile.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // <target>/<profile>/deps/<name>-<hash>
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("cannot locate the target directory"))?;
    let target = profile
        .parent()
        .ok_or_else(|| anyhow!("cannot locate the target directory"))?;
    for dir in [
        profile.to_path_buf(),
        target.join("release"),
        target.join("debug"),
    ] {
        let bin = dir.join(name);
        if bin.is_file() {
            return Ok(bin);
        }
    }
    bail!(
        "{name} is not built under {}: run: cargo build --release -p {name}",
        target.display()
    )
}

fn run_script(script: &str, dir: &Path, quiet: bool) -> Result<()> {
    let path = repo_root().join("e2e/test-apiserver").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if quiet {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    ensure!(
        out.status.success(),
        "bash {} {} failed ({}):\n{}{}",
        path.display(),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The API server

/// A fresh test API server (etcd + server); stopped on drop, its directory removed unless
/// [`Server::keep`] was called.
pub struct Server {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub client: Client,
    keep: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("dir", &self.dir).finish()
    }
}

impl Server {
    /// Builds (cached no-op when built) and starts a server, installs the HTTPRoute CRD.
    pub async fn start(name: &str) -> Result<Server> {
        let started = Instant::now();
        let build = repo_root().join("e2e/test-apiserver/build.sh");
        let status = Command::new("bash")
            .arg(&build)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()?;
        ensure!(status.success(), "bash {} failed", build.display());
        let dir = std::env::temp_dir().join(format!("iter8-scale-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        run_script("start.sh", &dir, true).context("starting the test API server")?;
        let kubeconfig = dir.join("kubeconfig");
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        let client = Client::try_from(config)?;
        let server = Server {
            dir,
            kubeconfig,
            client,
            keep: false,
        };
        server.install_crd().await?;
        say(format!(
            "test API server up with the HTTPRoute CRD in {:.1}s ({})",
            started.elapsed().as_secs_f64(),
            server.dir.display()
        ));
        Ok(server)
    }

    /// Keep the directory (logs) after the run.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    async fn install_crd(&self) -> Result<()> {
        let (crd, _) = iter8_e2e::httproute_crd()?;
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("iter8-scale").force(),
            &Patch::Apply(&crd),
        )
        .await
        .context("installing the HTTPRoute CRD")?;
        let routes: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), "default", &httproute_resource());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if routes.list(&ListParams::default().limit(1)).await.is_ok() {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "HTTPRoutes not served 60 s after installing the CRD"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

    /// The HTTPRoutes of a namespace.
    pub fn routes(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &httproute_resource())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("e2e/test-apiserver/stop.sh"))
            .arg(&self.dir)
            .env("TAS_STOP_SIGNAL", "KILL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if self.keep || std::thread::panicking() {
            println!("[scale] kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The releases

/// Name of release `i`'s app (route `app{i}`, routemap `app{i}-routemap`, versions
/// `app{i}-0` and `app{i}-1`).
pub fn app(i: usize) -> String {
    format!("app{i}")
}

/// The routemap ConfigMap of release `i`, as `charts/release` renders a two-version canary.
pub fn routemap(ns: &str, i: usize) -> Value {
    let app = app(i);
    // One line of JSON, keys sorted, as the chart's `toJson` writes it.
    let spec = format!("{}\n", canary_spec(&app, ns));
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": format!("{app}-routemap"), "namespace": ns,
            "labels": {
                "app.kubernetes.io/managed-by": "iter8",
                "iter8.tools/kind": "routemap",
                "iter8.tools/version": "v2",
            },
        },
        "data": {"routemap.yaml": spec},
    })
}

/// The spec of a two-version canary as `charts/release` builds it (before `toJson`).
pub fn canary_spec(app: &str, ns: &str) -> Value {
    let resources = |v: usize| {
        json!([
            {"gvrShort": "svc", "name": format!("{app}-{v}"), "namespace": ns},
            {"gvrShort": "deploy", "name": format!("{app}-{v}"), "namespace": ns},
        ])
    };
    json!({
        "strategy": "canary",
        "route": {
            "name": app,
            "parentRefs": [{"group": "", "kind": "Service", "name": app, "port": 80}],
            "hostnames": [
                app,
                format!("{app}.{ns}"),
                format!("{app}.{ns}.svc"),
                format!("{app}.{ns}.svc.cluster.local"),
            ],
        },
        "versions": [
            {"name": format!("{app}-0"), "port": 80, "resources": resources(0)},
            {
                "name": format!("{app}-1"), "port": 80, "resources": resources(1),
                "matches": [{"headers": [{"name": "traffic", "value": "test"}]}],
            },
        ],
    })
}

fn service(ns: &str, i: usize, v: usize) -> Value {
    let name = format!("{}-{v}", app(i));
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": {"iter8.tools/watch": "true", "app.kubernetes.io/name": app(i)}},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP", "name": "http"}]},
    })
}

fn deployment(ns: &str, i: usize, v: usize) -> Value {
    let name = format!("{}-{v}", app(i));
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"iter8.tools/watch": "true", "app.kubernetes.io/name": app(i)}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "kennethreitz/httpbin", "ports": [{"containerPort": 80}]}]},
            },
        },
    })
}

/// A Deployment status with `Available` = `available` for generation 1 (`message` varies it
/// without changing readiness).
pub fn deployment_status(available: bool, message: &str) -> Value {
    let n = i32::from(available);
    json!({"status": {
        "observedGeneration": 1,
        "replicas": 1, "updatedReplicas": 1, "readyReplicas": n, "availableReplicas": n,
        "conditions": [{
            "type": "Available",
            "status": if available { "True" } else { "False" },
            "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
            "message": message,
        }],
    }})
}

/// Facts of a Service or Deployment as the controller sees them.
fn facts(available: bool, deploy: bool) -> ResourceFacts {
    let mut obj = json!({"metadata": {"generation": 1, "labels": {"iter8.tools/watch": "true"}}});
    if deploy {
        obj["status"] = deployment_status(available, "")["status"].clone();
    }
    ResourceFacts::from_json(&obj)
}

/// One release as created.
#[derive(Debug, Clone)]
pub struct Release {
    pub i: usize,
    /// The routemap ConfigMap as the server returned it.
    pub routemap: Value,
}

/// The fleet of releases in one namespace.
#[derive(Debug)]
pub struct Fleet {
    pub ns: String,
    pub releases: Vec<Release>,
    /// Route name -> the owned view (labels, owner references, spec) the controller must write.
    pub want: HashMap<String, Value>,
    /// Route name -> the route itself.
    pub routes: HashMap<String, HttpRoute>,
    /// Route name -> the decision.
    pub decisions: HashMap<String, Decision>,
}

/// The fields of a route the controller owns (as `k8s_adapter::apply` compares them).
pub fn owned_view(obj: &Value) -> Value {
    json!({
        "labels": obj["metadata"]["labels"],
        "ownerReferences": obj["metadata"]["ownerReferences"],
        "spec": obj["spec"],
    })
}

/// Runs `f` over `items` with [`CONCURRENCY`] calls in flight.
pub async fn concurrently<T, R, F, Fut>(items: Vec<T>, f: F) -> Result<Vec<R>>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<R>>,
{
    futures::stream::iter(items.into_iter().map(f))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}

/// Creates `n` releases in `ns` (7 API calls each, [`CONCURRENCY`] in flight).
pub async fn seed(server: &Server, ns: &str, n: usize) -> Result<Fleet> {
    let client = server.client.clone();
    let ns_s = ns.to_string();
    let mut releases = concurrently((0..n).collect(), |i| {
        let client = client.clone();
        let ns = ns_s.clone();
        async move {
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
            let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let pp = PostParams::default();
            for v in 0..2 {
                svcs.create(&pp, &serde_json::from_value(service(&ns, i, v))?)
                    .await
                    .with_context(|| format!("creating svc {}-{v}", app(i)))?;
                let name = format!("{}-{v}", app(i));
                deps.create(&pp, &serde_json::from_value(deployment(&ns, i, v))?)
                    .await
                    .with_context(|| format!("creating deploy {name}"))?;
                deps.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&deployment_status(true, "seeded")),
                )
                .await
                .with_context(|| format!("deploy {name} status"))?;
            }
            let cm = cms
                .create(&pp, &serde_json::from_value(routemap(&ns, i))?)
                .await
                .with_context(|| format!("creating the routemap of {}", app(i)))?;
            Ok(Release {
                i,
                routemap: serde_json::to_value(cm)?,
            })
        }
    })
    .await?;
    releases.sort_by_key(|r| r.i);
    let mut fleet = Fleet {
        ns: ns.to_string(),
        releases,
        want: HashMap::new(),
        routes: HashMap::new(),
        decisions: HashMap::new(),
    };
    fleet.plan(true)?;
    Ok(fleet)
}

impl Fleet {
    /// Computes every route with the controller's own index and decision function, with all
    /// versions available (`candidates_available`) or only the primaries.
    pub fn plan(&mut self, candidates_available: bool) -> Result<()> {
        let config = Config::default();
        let mut index = Index::new(&config);
        for r in &self.releases {
            let a = app(r.i);
            for v in 0..2 {
                let name = format!("{a}-{v}");
                let avail = v == 0 || candidates_available;
                index.upsert_resource("svc", &self.ns, &name, facts(true, false));
                index.upsert_resource("deploy", &self.ns, &name, facts(avail, true));
            }
            index.upsert_routemap(RouteMapObject::from_json(&r.routemap, &self.ns));
        }
        for r in &self.releases {
            let a = app(r.i);
            let key = RouteMapKey::new(&self.ns, format!("{a}-routemap"));
            let decision = index
                .current_decision(&key)
                .ok_or_else(|| anyhow!("no decision for {a}"))?;
            let Decision::Desired {
                route: Some(route), ..
            } = &decision
            else {
                bail!("{a}: no route decided: {decision:?}");
            };
            self.want.insert(a.clone(), owned_view(&route.to_json()));
            self.routes.insert(a.clone(), route.clone());
            self.decisions.insert(a, decision);
        }
        Ok(())
    }

    /// Applies the routes (and the status annotation) of `which` releases exactly as the
    /// controller would have: same body, same field managers.
    pub async fn preapply(&self, server: &Server, which: &[usize]) -> Result<()> {
        let items: Vec<(String, HttpRoute, Decision, Value)> = which
            .iter()
            .map(|&i| {
                let a = app(i);
                (
                    a.clone(),
                    self.routes[&a].clone(),
                    self.decisions[&a].clone(),
                    self.releases[i].routemap.clone(),
                )
            })
            .collect();
        let client = server.client.clone();
        let ns = self.ns.clone();
        concurrently(items, |(name, route, decision, cm)| {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                let routes: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &ns, &httproute_resource());
                let applied = routes
                    .patch(
                        &name,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&to_gateway(&route)?),
                    )
                    .await
                    .with_context(|| format!("pre-applying route {name}"))?;
                let generation = applied.metadata.generation;
                let rv = cm["metadata"]["resourceVersion"].as_str();
                let report = report(
                    Some(&name),
                    &decision,
                    &RouteResult::Applied { generation },
                    rv,
                    None,
                )
                .ok_or_else(|| anyhow!("nothing to report"))?;
                set_status_annotation(
                    &client,
                    &ns,
                    &cm,
                    Some(serde_json::to_string(&report.status)?),
                )
                .await?;
                Ok(())
            }
        })
        .await?;
        Ok(())
    }

    /// Undoes what the controller did for `which` releases: deletes their routes and removes
    /// the status annotation (as before the first run).
    pub async fn reset(&self, server: &Server, which: &[usize]) -> Result<()> {
        let items: Vec<(String, Value)> = which
            .iter()
            .map(|&i| (app(i), self.releases[i].routemap.clone()))
            .collect();
        let client = server.client.clone();
        let ns = self.ns.clone();
        concurrently(items, |(name, cm)| {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                let routes: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), &ns, &httproute_resource());
                match routes.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e).with_context(|| format!("deleting route {name}")),
                }
                set_status_annotation(&client, &ns, &cm, None).await
            }
        })
        .await?;
        Ok(())
    }

    /// Route names of the releases in `which`.
    pub fn names(which: &[usize]) -> Vec<String> {
        which.iter().map(|&i| app(i)).collect()
    }
}

/// Writes (or, with `None`, removes) the status annotation as the controller's status field
/// manager.
async fn set_status_annotation(
    client: &Client,
    ns: &str,
    cm: &Value,
    status: Option<String>,
) -> Result<()> {
    let name = cm["metadata"]["name"].as_str().unwrap_or_default();
    let annotations = match status {
        Some(s) => json!({ STATUS_ANNOTATION: s }),
        None => json!({}),
    };
    let body = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "uid": cm["metadata"]["uid"], "annotations": annotations},
    });
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &k8s_adapter::kube_types::configmap_resource(),
    );
    api.patch(
        name,
        &PatchParams::apply(STATUS_FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .with_context(|| format!("status annotation of {name}"))?;
    Ok(())
}

/// `name -> status annotation` of every routemap in `ns`.
pub async fn status_annotations(server: &Server, ns: &str) -> Result<BTreeMap<String, String>> {
    let api: Api<ConfigMap> = Api::namespaced(server.client.clone(), ns);
    let mut out = BTreeMap::new();
    let mut lp = ListParams::default()
        .labels("iter8.tools/kind=routemap")
        .limit(500);
    loop {
        let list = api.list(&lp).await?;
        for cm in list.items {
            let status = cm
                .metadata
                .annotations
                .and_then(|a| a.get(STATUS_ANNOTATION).cloned())
                .unwrap_or_default();
            out.insert(cm.metadata.name.unwrap_or_default(), status);
        }
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(out),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The route tracker: a bare watch on the HTTPRoutes

#[derive(Debug, Default)]
struct TrackState {
    want: HashMap<String, Value>,
    /// name -> (resourceVersion, correct)
    live: HashMap<String, (String, bool)>,
    correct: usize,
    synced: bool,
    counting: bool,
    since: Option<Instant>,
    /// Route name -> changes seen (new resourceVersions, deletions) since counting started.
    writes: HashMap<String, u32>,
    all_correct_at: Option<Instant>,
    last_change_at: Option<Instant>,
}

/// Watches the HTTPRoutes of a namespace; knows which are correct and counts writes.
#[derive(Debug)]
pub struct Tracker {
    state: Arc<Mutex<TrackState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tracker {
    /// Starts the watch and waits for its initial list.
    pub async fn start(server: &Server, ns: &str, want: &HashMap<String, Value>) -> Result<Self> {
        let state = Arc::new(Mutex::new(TrackState {
            want: want.clone(),
            ..Default::default()
        }));
        let api = server.routes(ns);
        let st = state.clone();
        let task = tokio::spawn(async move {
            let stream = watcher::watcher(api, watcher::Config::default());
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let now = Instant::now();
                let Ok(ev) = ev else { continue };
                let Ok(mut s) = st.lock() else { return };
                match ev {
                    Event::Init => {}
                    Event::InitDone => s.synced = true,
                    Event::InitApply(o) | Event::Apply(o) => s.upsert(&o, now),
                    Event::Delete(o) => s.delete(&o, now),
                }
            }
        });
        let tracker = Tracker { state, task };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !tracker.lock().synced {
            ensure!(
                Instant::now() < deadline,
                "the route watch did not list within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(tracker)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts counting writes from now on (and forgets the last "all correct" time).
    pub fn start_counting(&self) {
        let mut s = self.lock();
        s.counting = true;
        s.since = Some(Instant::now());
        s.writes.clear();
        s.all_correct_at = None;
        s.last_change_at = None;
        if s.correct == s.want.len() {
            s.all_correct_at = s.since;
        }
    }

    /// Routes correct now.
    pub fn correct(&self) -> usize {
        self.lock().correct
    }

    /// When every route first became correct since counting started.
    pub fn all_correct_at(&self) -> Option<Instant> {
        self.lock().all_correct_at
    }

    /// When the last route change was seen.
    pub fn last_change_at(&self) -> Option<Instant> {
        self.lock().last_change_at
    }

    /// Route name -> changes since counting started.
    pub fn writes(&self) -> HashMap<String, u32> {
        self.lock().writes.clone()
    }

    /// Waits until `count` routes are correct.
    pub async fn wait_correct(&self, count: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.correct();
            if now == count {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{now} routes correct, waiting for {count}, after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TrackState {
    fn upsert(&mut self, o: &DynamicObject, now: Instant) {
        let name = o.metadata.name.clone().unwrap_or_default();
        let rv = o.metadata.resource_version.clone().unwrap_or_default();
        let json = serde_json::to_value(o).unwrap_or_default();
        let ok = self
            .want
            .get(&name)
            .is_some_and(|w| covers(&owned_view(&json), w));
        let before = self.live.insert(name.clone(), (rv.clone(), ok));
        if before.as_ref().is_some_and(|(_, was)| *was) {
            self.correct -= 1;
        }
        if ok {
            self.correct += 1;
        }
        if self.counting && before.as_ref().is_none_or(|(r, _)| *r != rv) {
            *self.writes.entry(name).or_default() += 1;
            self.last_change_at = Some(now);
        }
        if self.counting && self.all_correct_at.is_none() && self.correct == self.want.len() {
            self.all_correct_at = Some(now);
        }
    }

    fn delete(&mut self, o: &DynamicObject, now: Instant) {
        let name = o.metadata.name.clone().unwrap_or_default();
        if let Some((_, was)) = self.live.remove(&name)
            && was
        {
            self.correct -= 1;
        }
        if self.counting {
            *self.writes.entry(name).or_default() += 1;
            self.last_change_at = Some(now);
        }
    }
}

/// Watches one route; sends `(arrival, rules, resourceVersion)` for every change.
pub fn probe(api: Api<DynamicObject>, name: &str) -> mpsc::UnboundedReceiver<(Instant, usize)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        // With backoff: once the API server is gone, a watcher without it fails and retries at
        // once, forever, and the task never yields to let the runtime shut down.
        let stream = watcher::watcher(api, config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if tx.is_closed() {
                return;
            }
            let now = Instant::now();
            if let Ok(Event::Apply(o) | Event::InitApply(o)) = ev {
                let rules = o.data["spec"]["rules"].as_array().map_or(0, Vec::len);
                if tx.send((now, rules)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Waits on a probe for a route with `rules` rules; returns when it arrived.
pub async fn wait_rules(
    rx: &mut mpsc::UnboundedReceiver<(Instant, usize)>,
    rules: usize,
    limit: Duration,
) -> Result<Instant> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((at, n))) if n == rules => return Ok(at),
            Ok(Some(_)) => {}
            Ok(None) => bail!("the route watch ended"),
            Err(_) => bail!("no route with {rules} rules within {limit:?}"),
        }
    }
}

/// Drops what a probe has queued.
pub fn drain(rx: &mut mpsc::UnboundedReceiver<(Instant, usize)>) {
    while rx.try_recv().is_ok() {}
}

// ---------------------------------------------------------------------------------------------
// The controller

/// The real `iter8-controller`, as a child process; killed on drop.
#[derive(Debug)]
pub struct Controller {
    child: Option<Child>,
    /// Started in its own process group (wrapped by `ITER8_SCALE_WRAP`).
    grouped: bool,
    pub admin: SocketAddr,
    pub log: PathBuf,
    pub started: Instant,
}

impl Controller {
    /// Starts the controller on namespace `ns` (leader election on, as deployed).
    pub fn start(server: &Server, ns: &str, run: usize) -> Result<Controller> {
        let bin = workspace_bin("iter8-controller")?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let log = server.dir.join(format!("controller-{ns}-{run}.log"));
        let file = std::fs::File::create(&log)?;
        let started = Instant::now();
        // `ITER8_SCALE_WRAP="heaptrack -o /tmp/ctl"` runs the controller under a profiler.
        let wrap = std::env::var("ITER8_SCALE_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        // A wrapped controller gets its own process group, so that stopping the group stops
        // the controller too (an unwrapped one stays in ours, so Ctrl-C reaches it).
        let grouped = !wrap.trim().is_empty();
        if grouped {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let child = command
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(["--namespace", ns, "--pod-name", "scale-0"])
            .arg("--admin-addr")
            .arg(admin.to_string())
            .args(["--log-level", "info"])
            .env_remove("ITER8_CONFIG")
            .env_remove("ITER8_CLUSTER_SCOPED")
            .env_remove("ITER8_LEADER_ELECTION")
            .env_remove("ITER8_LOG_LEVEL")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Controller {
            child: Some(child),
            grouped,
            admin,
            log,
            started,
        })
    }

    /// Its pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails if the process exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            bail!(
                "iter8-controller exited ({status}); last log lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// `/metrics` as text ("" while the admin server is not up).
    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics")
            .ok()
            .filter(|(code, _)| *code == 200)
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Sum of every series of a metric family whose line starts with `prefix`.
    pub fn metric_sum(&self, prefix: &str) -> u64 {
        sum_series(&self.metrics(), prefix)
    }

    /// Peak resident set (VmHWM), bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmHWM:").map(|k| k * 1024)
    }

    /// Current resident set (VmRSS), bytes.
    pub fn rss(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmRSS:").map(|k| k * 1024)
    }

    /// Waits until `/metrics` stops changing for `quiet` (the controller is idle).
    pub async fn wait_idle(&mut self, quiet: Duration, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        let mut since = Instant::now();
        loop {
            self.check_alive()?;
            let now = self.metrics();
            if now != last || now.is_empty() {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the controller kept changing its metrics for {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM and wait (SIGKILL after 15 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "-TERM", self.grouped);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            signal(&child, "-KILL", self.grouped);
            let _ = child.wait();
        }
    }
}

/// Signals the child, or its process group (a profiler and the controller it wraps).
fn signal(child: &Child, signal: &str, group: bool) {
    let target = if group {
        format!("-{}", child.id())
    } else {
        child.id().to_string()
    };
    let _ = Command::new("kill").args([signal, "--", &target]).status();
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "-KILL", self.grouped);
            let _ = child.wait();
        }
    }
}

/// Sum of the values of the series whose line starts with `prefix`.
pub fn sum_series(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum::<f64>() as u64
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

// ---------------------------------------------------------------------------------------------
// Phases

/// What a cold start did.
#[derive(Debug, Clone, Default)]
pub struct ColdStart {
    /// Process start -> every route correct.
    pub to_correct: Duration,
    /// Process start -> idle (no more writes of any kind).
    pub to_idle: Duration,
    /// `iter8_applies_total{result="applied"}`.
    pub applied: u64,
    /// `iter8_applies_total{result="unchanged"}`.
    pub unchanged: u64,
    /// Routes that changed (watch), among those that needed a write.
    pub needing_written: usize,
    /// Most changes seen on one route that needed a write.
    pub max_writes_per_route: u32,
    /// Changes seen on routes that were already correct.
    pub correct_written: u32,
    /// Events published (`iter8_events_total`).
    pub events: u64,
    /// Routemaps whose status annotation changed.
    pub status_writes: usize,
    /// Peak RSS of the controller, bytes.
    pub peak_rss: u64,
}

/// Starts a controller on a fleet whose `correct` releases have their routes and the rest
/// none, and measures until it is idle. Returns the still-running controller.
pub async fn cold_start(
    server: &Server,
    fleet: &Fleet,
    tracker: &Tracker,
    needing: &[usize],
    run: usize,
    limit: Duration,
) -> Result<(ColdStart, Controller)> {
    let status_before = status_annotations(server, &fleet.ns).await?;
    tracker.start_counting();
    let mut ctl = Controller::start(server, &fleet.ns, run)?;
    let deadline = Instant::now() + limit;
    let done = loop {
        ctl.check_alive()?;
        if let Some(at) = tracker.all_correct_at() {
            break at;
        }
        ensure!(
            Instant::now() < deadline,
            "{} of {} routes correct {limit:?} after the controller started",
            tracker.correct(),
            fleet.want.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    ctl.wait_idle(Duration::from_secs(3), limit).await?;
    let idle = Instant::now() - Duration::from_secs(3);
    let metrics = ctl.metrics();
    let writes = tracker.writes();
    let needing_names: std::collections::HashSet<String> =
        Fleet::names(needing).into_iter().collect();
    let status_after = status_annotations(server, &fleet.ns).await?;
    let result = ColdStart {
        to_correct: done.duration_since(ctl.started),
        to_idle: idle.saturating_duration_since(ctl.started),
        applied: sum_series(&metrics, "iter8_applies_total{result=\"applied\"}"),
        unchanged: sum_series(&metrics, "iter8_applies_total{result=\"unchanged\"}"),
        needing_written: writes.keys().filter(|n| needing_names.contains(*n)).count(),
        max_writes_per_route: writes
            .iter()
            .filter(|(n, _)| needing_names.contains(*n))
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(0),
        correct_written: writes
            .iter()
            .filter(|(n, _)| !needing_names.contains(*n))
            .map(|(_, c)| *c)
            .sum(),
        events: sum_series(&metrics, "iter8_events_total"),
        status_writes: status_after
            .iter()
            .filter(|(k, v)| status_before.get(*k) != Some(v))
            .count(),
        peak_rss: ctl.peak_rss().unwrap_or(0),
    };
    Ok((result, ctl))
}

/// What no-op churn did.
#[derive(Debug, Clone, Default)]
pub struct Churn {
    pub duration: Duration,
    /// Writes the bench made to watched objects.
    pub churn_writes: u64,
    /// Route applies by the controller meanwhile (`applied`).
    pub applied: u64,
    /// Route changes seen by the watch.
    pub route_changes: u32,
    /// Events published meanwhile.
    pub events: u64,
    /// Status annotations changed.
    pub status_writes: usize,
}

/// Writes that change no routing, for `duration`, `CONCURRENCY / 4` in flight: annotate
/// Services, relabel Deployments with an unrelated label, rewrite Deployment status with the
/// same `Available=True`, annotate routemaps (not their status).
pub async fn churn(
    server: &Server,
    fleet: &Fleet,
    tracker: &Tracker,
    ctl: &mut Controller,
    duration: Duration,
) -> Result<Churn> {
    ctl.wait_idle(Duration::from_secs(2), Duration::from_secs(120))
        .await?;
    let status_before = status_annotations(server, &fleet.ns).await?;
    let m0 = ctl.metrics();
    tracker.start_counting();
    let started = Instant::now();
    let n = fleet.releases.len();
    let client = server.client.clone();
    let ns = fleet.ns.clone();
    let ops = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers = (CONCURRENCY / 4).max(1);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let client = client.clone();
        let ns = ns.clone();
        let ops = ops.clone();
        tasks.push(tokio::spawn(async move {
            let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
            let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (w as u64 + 1);
            let pp = PatchParams::default();
            while started.elapsed() < duration {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let k = ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let i = (rng % n as u64) as usize;
                let v = (rng >> 32) % 2;
                let name = format!("{}-{v}", app(i));
                let tag = format!("{k}");
                let r = match k % 4 {
                    0 => svcs
                        .patch(
                            &name,
                            &pp,
                            &Patch::Merge(
                                json!({"metadata": {"annotations": {"bench/churn": tag}}}),
                            ),
                        )
                        .await
                        .map(|_| ()),
                    1 => deps
                        .patch(
                            &name,
                            &pp,
                            &Patch::Merge(json!({"metadata": {"labels": {"bench-churn": tag}}})),
                        )
                        .await
                        .map(|_| ()),
                    2 => deps
                        .patch_status(
                            &name,
                            &pp,
                            &Patch::Merge(deployment_status(true, &format!("churn {tag}"))),
                        )
                        .await
                        .map(|_| ()),
                    _ => cms
                        .patch(
                            &format!("{}-routemap", app(i)),
                            &pp,
                            &Patch::Merge(
                                json!({"metadata": {"annotations": {"bench/churn": tag}}}),
                            ),
                        )
                        .await
                        .map(|_| ()),
                };
                r.with_context(|| format!("churn write {k}"))?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    ctl.wait_idle(Duration::from_secs(3), Duration::from_secs(300))
        .await?;
    let m1 = ctl.metrics();
    let applied = |m: &str| sum_series(m, "iter8_applies_total{result=\"applied\"}");
    let events = |m: &str| sum_series(m, "iter8_events_total");
    let status_after = status_annotations(server, &fleet.ns).await?;
    Ok(Churn {
        duration: elapsed,
        churn_writes: ops.load(std::sync::atomic::Ordering::Relaxed),
        applied: applied(&m1) - applied(&m0),
        route_changes: tracker.writes().values().sum(),
        events: events(&m1) - events(&m0),
        status_writes: status_after
            .iter()
            .filter(|(k, v)| status_before.get(*k) != Some(v))
            .count(),
    })
}

/// Percentile (nearest rank) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of unsorted values.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Reaction latency figures.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub flips: usize,
    /// Status write sent -> route change seen.
    pub controller: Vec<Duration>,
    /// Status write answered -> route change seen.
    pub controller_from_commit: Vec<Duration>,
    /// Bare apply sent -> route change seen (the floor).
    pub floor: Vec<Duration>,
    /// Bare status write alone (request -> response).
    pub status_write: Vec<Duration>,
}

/// Flips the candidate of release 0 `flips` times (unavailable, available, ...), each time
/// timing the status write -> route change seen through a watch; interleaved with the floor:
/// a bare client's server-side apply of the same route (in namespace `floor_ns`, which the
/// controller does not watch) -> its change seen through a watch.
pub async fn latency(
    server: &Server,
    fleet: &mut Fleet,
    floor_ns: &str,
    flips: usize,
    warmup: usize,
) -> Result<Latency> {
    let a = app(0);
    let with_candidate = fleet.routes[&a].clone();
    fleet.plan(false)?;
    let without_candidate = fleet.routes[&a].clone();
    fleet.plan(true)?;
    let rules_with = with_candidate.spec.rules.len();
    let rules_without = without_candidate.spec.rules.len();
    ensure!(
        rules_with != rules_without,
        "the two route forms must differ in rules"
    );
    let floor_body = |r: &HttpRoute| -> Result<Value> {
        let mut j = serde_json::to_value(to_gateway(r)?)?;
        j["metadata"]["namespace"] = json!(floor_ns);
        j["metadata"]["name"] = json!("floor");
        Ok(j)
    };
    let floor_routes = server.routes(floor_ns);
    floor_routes
        .patch(
            "floor",
            &PatchParams::apply("bench-floor").force(),
            &Patch::Apply(&floor_body(&with_candidate)?),
        )
        .await?;
    let deps: Api<Deployment> = Api::namespaced(server.client.clone(), &fleet.ns);
    let candidate = format!("{a}-1");
    let mut ctl_rx = probe(server.routes(&fleet.ns), &a);
    let mut floor_rx = probe(floor_routes.clone(), "floor");
    wait_rules(&mut ctl_rx, rules_with, Duration::from_secs(10)).await?;
    wait_rules(&mut floor_rx, rules_with, Duration::from_secs(10)).await?;
    let mut out = Latency {
        flips,
        ..Default::default()
    };
    let limit = Duration::from_secs(10);
    for k in 0..(flips + warmup) {
        let available = k % 2 == 1;
        let rules = if available { rules_with } else { rules_without };
        // The controller's path: status write -> watch -> decide -> apply -> watch.
        tokio::time::sleep(Duration::from_millis(40)).await;
        drain(&mut ctl_rx);
        let t0 = Instant::now();
        deps.patch_status(
            &candidate,
            &PatchParams::default(),
            &Patch::Merge(deployment_status(available, &format!("flip {k}"))),
        )
        .await?;
        let t1 = Instant::now();
        let seen = wait_rules(&mut ctl_rx, rules, limit)
            .await
            .with_context(|| format!("flip {k}: the controller did not update the route"))?;
        // The floor: one bare apply of the same route -> watch.
        tokio::time::sleep(Duration::from_millis(40)).await;
        drain(&mut floor_rx);
        let body = floor_body(if available {
            &with_candidate
        } else {
            &without_candidate
        })?;
        let f0 = Instant::now();
        floor_routes
            .patch(
                "floor",
                &PatchParams::apply("bench-floor").force(),
                &Patch::Apply(&body),
            )
            .await?;
        let floor_seen = wait_rules(&mut floor_rx, rules, limit)
            .await
            .with_context(|| format!("flip {k}: the floor route was not seen"))?;
        if k >= warmup {
            out.controller.push(seen.saturating_duration_since(t0));
            out.controller_from_commit
                .push(seen.saturating_duration_since(t1));
            out.status_write.push(t1 - t0);
            out.floor.push(floor_seen.saturating_duration_since(f0));
        }
    }
    for v in [
        &mut out.controller,
        &mut out.controller_from_commit,
        &mut out.floor,
        &mut out.status_write,
    ] {
        v.sort();
    }
    Ok(out)
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
