//! A fault-injecting proxy in front of the test API server, for one controller replica: plain
//! HTTP on 127.0.0.1 towards the controller, the API server's TLS behind it. Requests pass
//! through untouched (the replica's own bearer token included, so the API server's authz log
//! names the replica), except that once [`Proxy::cut`] is on, every request whose path
//! contains the cut pattern (e.g. `/leases`) is blackholed: it never gets an answer, as behind
//! a network partition, and streams already open on such paths (a watch) end. With
//! [`Proxy::refuse`] on instead, such requests get `503 Service Unavailable` at once (an API
//! server that is down behind its load balancer), and open streams on them end too.
//!
//! The proxy runs in the test's own runtime and stops when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::out::note;

struct Shared {
    upstream: kube::Client,
    pattern: String,
    cut: watch::Sender<bool>,
    refuse: watch::Sender<bool>,
    blackholed: AtomicU64,
    refused: AtomicU64,
    passed: AtomicU64,
}

/// A running proxy. See the module doc.
pub struct Proxy {
    /// Where the replica connects (`http://` + this).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("addr", &self.addr).finish()
    }
}

impl Proxy {
    /// Starts a proxy to `cluster`'s API server that can cut requests whose path contains
    /// `pattern`.
    pub async fn start(cluster: &Cluster, pattern: &str) -> Result<Proxy> {
        let kc = kube::config::Kubeconfig::read_from(&cluster.kubeconfig)?;
        let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        // No credentials of its own: the replica's Authorization header goes through as it is.
        config.auth_info = Default::default();
        config.default_retry = false;
        config.read_timeout = None;
        let shared = Arc::new(Shared {
            upstream: kube::Client::try_from(config)?,
            pattern: pattern.to_string(),
            cut: watch::Sender::new(false),
            refuse: watch::Sender::new(false),
            blackholed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            passed: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        note(format!(
            "proxy http://{addr} -> API server (can cut paths containing {pattern:?})"
        ));
        Ok(Proxy { addr, shared, task })
    }

    /// Blackholes (true) or passes again (false) the requests matching the pattern.
    pub fn cut(&self, on: bool) {
        self.shared.cut.send_replace(on);
    }

    /// Answers 503 (true) or passes again (false) the requests matching the pattern.
    pub fn refuse(&self, on: bool) {
        self.shared.refuse.send_replace(on);
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Requests blackholed, and passed, so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.blackholed.load(Ordering::SeqCst),
            self.shared.passed.load(Ordering::SeqCst),
        )
    }

    /// A kubeconfig that reaches the API server through this proxy with `token`.
    pub fn kubeconfig(&self, cluster: &Cluster, token: &str, file: &str) -> Result<PathBuf> {
        kubeconfig_with(cluster, &format!("http://{}", self.addr), token, file)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The cluster's kubeconfig with another server URL and bearer token, written to
/// `<cluster dir>/<file>`.
pub fn kubeconfig_with(
    cluster: &Cluster,
    server: &str,
    token: &str,
    file: &str,
) -> Result<PathBuf> {
    let admin = std::fs::read_to_string(&cluster.kubeconfig)?;
    let mut out = String::new();
    for line in admin.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if trimmed.starts_with("server: ") {
            out.push_str(&format!("{indent}server: {server}\n"));
        } else if trimmed.starts_with("token: ") {
            out.push_str(&format!("{indent}token: {token}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = cluster.dir.join(file);
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Gives `user` a bearer `token` on the running API server (it re-reads its token file) and
/// binds it to `cluster-admin`; the replica is then named by `user` in the authz log.
pub fn add_identity(cluster: &Cluster, token: &str, user: &str) -> Result<()> {
    use std::io::Write;
    let tokens = cluster.dir.join("tokens.csv");
    let mut f = std::fs::OpenOptions::new().append(true).open(&tokens)?;
    writeln!(f, "{token},{user},{token}-uid,\"system:serviceaccounts\"")?;
    let binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {token}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: {user}\n"
    );
    cluster.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(&binding))?;
    Ok(())
}

async fn forward(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let matches = target.contains(&s.pattern);
    if matches && *s.cut.borrow() {
        s.blackholed.fetch_add(1, Ordering::SeqCst);
        // No answer, ever: the client's timeout or closing the connection ends this.
        std::future::pending::<()>().await;
    }
    if matches && *s.refuse.borrow() {
        s.refused.fetch_add(1, Ordering::SeqCst);
        let status = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"refused by the test proxy","reason":"ServiceUnavailable","code":503}"#;
        return (
            http::StatusCode::SERVICE_UNAVAILABLE,
            [(http::header::CONTENT_TYPE, "application/json")],
            status,
        )
            .into_response();
    }
    s.passed.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return (http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut out = http::Request::builder()
        .method(parts.method)
        .uri(target.as_str());
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            out = out.header(name, value);
        }
    }
    let out = match out.body(kube::client::Body::from(bytes.to_vec())) {
        Ok(r) => r,
        Err(e) => return (http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match s.upstream.send(out).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = Body::new(body);
            let body = if matches {
                // A stream on a cut path (a watch) ends when a cut or refusal starts.
                let (mut cut, mut refuse) = (s.cut.subscribe(), s.refuse.subscribe());
                let cut = async move {
                    tokio::select! {
                        _ = cut.wait_for(|c| *c) => {}
                        _ = refuse.wait_for(|c| *c) => {}
                    }
                };
                Body::from_stream(body.into_data_stream().take_until(cut))
            } else {
                body
            };
            Response::from_parts(parts, body)
        }
        Err(e) => (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
