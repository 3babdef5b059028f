//! One test API server (etcd + server, `e2e/test-apiserver`) in a fresh directory, with the
//! HTTPRoute CRD installed: what every e2e test file and every bench size starts from.
//!
//! `start.sh` records the pids of etcd and the server in the directory; they are stopped by
//! those pids (`stop.sh`) when the [`Cluster`] is dropped, and the directory (logs of the server,
//! etcd and the controllers) is removed unless something failed or `ITER8_E2E_KEEP` is set.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use serde_json::json;

use crate::out::note;
use crate::tools::{ensure_apiserver_built, repo_root, run, script, tool, workspace_bin};
use crate::wait::{timeout, wait_for};

/// Field manager of everything the harness applies itself.
const FIELD_MANAGER: &str = "iter8-e2e";

/// A running test API server.
pub struct Cluster {
    /// Its directory: kubeconfig, pids, logs.
    pub dir: PathBuf,
    /// `dir/kubeconfig`.
    pub kubeconfig: PathBuf,
    /// A client for it.
    pub client: Client,
    keep: AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("dir", &self.dir).finish()
    }
}

impl Cluster {
    /// Builds the server if needed, starts it in a fresh temp directory, installs the HTTPRoute
    /// CRD and waits until it is Established and served.
    pub async fn start(name: &str) -> Result<Cluster> {
        Self::start_with(name, &[]).await
    }

    /// [`Self::start`] with extra API server flags, e.g. its in-flight limits
    /// (`--max-mutating-requests-inflight 2`).
    pub async fn start_with(name: &str, apiserver_args: &[&str]) -> Result<Cluster> {
        // Fail before minutes of setup if the controller the test runs is missing.
        workspace_bin("iter8-controller")?;
        ensure_apiserver_built()?;
        let dir = std::env::temp_dir().join(format!("iter8-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let started = Instant::now();
        let args = apiserver_args.join(" ");
        script("start.sh", &dir, &[], &[("TEST_APISERVER_ARGS", &args)])
            .context("starting the test API server")?;
        let kubeconfig = dir.join("kubeconfig");
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        let cluster = Cluster {
            client: Client::try_from(config)?,
            dir,
            kubeconfig,
            keep: AtomicBool::new(false),
        };
        note(format!(
            "API server + etcd up in {:.1}s (dir {})",
            started.elapsed().as_secs_f64(),
            cluster.dir.display()
        ));
        cluster.install_crd().await?;
        Ok(cluster)
    }

    /// A kubeconfig for the ordinary identity `start.sh` gives the token
    /// `test-apiserver-controller` (not `system:masters`, so the API server's in-flight limits
    /// apply to it), bound to a ClusterRole that allows everything: the tests that use it are
    /// about flow control, not permissions.
    pub fn controller_kubeconfig(&self) -> Result<PathBuf> {
        self.kubectl_in(
            &["apply", "--server-side", "-f", "-"],
            Some(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: e2e-everything\nrules:\n- apiGroups: [\"*\"]\n  resources: [\"*\"]\n  verbs: [\"*\"]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: e2e-controller-everything\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: e2e-everything\nsubjects:\n- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: system:serviceaccount:default:iter8-controller\n",
            ),
        )?;
        let admin = std::fs::read_to_string(&self.kubeconfig)?;
        anyhow::ensure!(
            admin.contains("token: test-apiserver-allows-everyone"),
            "unexpected kubeconfig from start.sh"
        );
        let path = self.dir.join("kubeconfig-controller");
        std::fs::write(
            &path,
            admin.replace(
                "token: test-apiserver-allows-everyone",
                "token: test-apiserver-controller",
            ),
        )?;
        Ok(path)
    }

    /// Keep the directory (logs) when dropped.
    pub fn keep(&self) {
        self.keep.store(true, Ordering::SeqCst);
    }

    async fn install_crd(&self) -> Result<()> {
        let (crd, source) = httproute_crd()?;
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .context("installing the HTTPRoute CRD")?;
        wait_for("the HTTPRoute CRD to be Established", timeout(), || async {
            let crd = api.get(&name).await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok(established.then_some(()).ok_or("not Established".into()))
        })
        .await?;
        // Discovery must list the resource before kubectl can use it, and the resource must be
        // served before the controller can watch it.
        let group = format!("{}/{}", crd.spec.group, "v1");
        wait_for("httproutes in discovery and served", timeout(), || async {
            let resources = self.client.list_api_group_resources(&group).await?;
            if !resources.resources.iter().any(|r| r.name == "httproutes") {
                return Ok(Err(format!("{group} lists no httproutes")));
            }
            self.routes("default")
                .list_metadata(&Default::default())
                .await?;
            Ok(Ok(()))
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

    /// The HTTPRoutes of a namespace.
    pub fn routes(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            ns,
            &k8s_adapter::kube_types::httproute_resource(),
        )
    }

    /// After a failed fault scenario: starts whichever component is down and waits until the
    /// server answers, so the next scenario gets a working server.
    pub async fn heal(&self) {
        if self.kubectl(&["get", "--raw", "/readyz"]).is_ok() {
            return;
        }
        for only in ["etcd", "apiserver"] {
            let _ = script("start.sh", &self.dir, &["--only", only], &[]);
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
        let env: &[(&str, &str)] = if crash {
            &[("TAS_STOP_SIGNAL", "KILL")]
        } else {
            &[]
        };
        script("restart-apiserver.sh", &self.dir, &[], env).map(|_| ())
    }

    /// `restart-etcd.sh DIR`.
    pub fn restart_etcd(&self) -> Result<()> {
        script("restart-etcd.sh", &self.dir, &[], &[]).map(|_| ())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // By the pids start.sh recorded in the directory.
        let _ = script("stop.sh", &self.dir, &[], &[("TAS_STOP_SIGNAL", "KILL")]);
        if std::thread::panicking()
            || self.keep.load(Ordering::SeqCst)
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

/// The HTTPRoute CRD to install, and where it came from: the official Gateway API v1.6.1 CRD
/// from `../shared/crds` when this checkout sits in the project's workspace, else the one
/// generated from the `gateway-api` crate. A CRD in a `*.k8s.io` group needs the
/// `api-approved.kubernetes.io` annotation (the official one has it, the generated one does
/// not), so it is added when missing.
pub fn httproute_crd() -> Result<(CustomResourceDefinition, String)> {
    let official = repo_root().join("../shared/crds/gateway.networking.k8s.io_httproutes.yaml");
    let (mut crd, source) = if official.is_file() {
        let text = std::fs::read_to_string(&official)?;
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text)
            .with_context(|| format!("parsing {}", official.display()))?;
        (crd, format!("official CRD {}", official.display()))
    } else {
        (
            gateway_api::apis::standard::httproutes::HttpRoute::crd(),
            "CRD generated from the gateway-api crate".to_string(),
        )
    };
    crd.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .entry("api-approved.kubernetes.io".to_string())
        // The value the official v1.6.1 CRD carries.
        .or_insert_with(|| "https://github.com/kubernetes-sigs/gateway-api/pull/4530".to_string());
    Ok((crd, source))
}
