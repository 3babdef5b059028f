//! The admin HTTP server: `/metrics` (Prometheus text), `/livez` and `/readyz`.
//!
//! `/readyz` answers 200 once every watch has listed its objects (the caches are synced); a
//! configured resource type whose CRD is missing counts as synced, since there is nothing to
//! cache, so an optional integration (e.g. KServe) never keeps the controller unready. Its body
//! names the caches still listing and the watches failing now (e.g. a type the controller may
//! not list), with the error. `/livez` answers 503, naming it, once a task that must run for
//! the controller to work (index, writer, leader election, a watch) has stopped.
//!
//! The port is bound on all interfaces in a pod, so it is served with limits ([`Limits`]): at
//! most `max_connections` at once (one over the limit is closed at once, so it costs neither
//! memory nor a file descriptor for long), a header-read timeout that also bounds how long a
//! kept-alive connection may sit idle, a cap on each connection's lifetime and on its read
//! buffer. Serving stops gracefully when the shutdown future completes.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, watch};

use crate::metrics::render;

/// Which caches are still listing, and which watches are failing.
#[derive(Debug, Default, Clone)]
pub struct CacheSync {
    pending: Arc<Mutex<BTreeSet<String>>>,
    failing: Arc<Mutex<BTreeMap<String, String>>>,
}

impl CacheSync {
    /// Ready only after `name` is synced.
    pub fn expect(&self, name: &str) {
        lock(&self.pending).insert(name.to_string());
    }

    /// `name` has listed everything.
    pub fn synced(&self, name: &str) {
        lock(&self.pending).remove(name);
    }

    /// All caches synced.
    pub fn is_ready(&self) -> bool {
        lock(&self.pending).is_empty()
    }

    /// The caches still listing.
    pub fn pending(&self) -> Vec<String> {
        lock(&self.pending).iter().cloned().collect()
    }

    /// The watch `name` is failing, with this error.
    pub fn failing(&self, name: &str, error: &str) {
        lock(&self.failing).insert(name.to_string(), error.to_string());
    }

    /// The watch `name` works again.
    pub fn recovered(&self, name: &str) {
        lock(&self.failing).remove(name);
    }

    /// The watches failing now, with their last error.
    pub fn failures(&self) -> Vec<(String, String)> {
        lock(&self.failing)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves usable data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Check = Arc<dyn Fn() -> bool + Send + Sync>;

/// The tasks that must keep running, for `/livez`.
#[derive(Clone, Default)]
pub struct Liveness {
    checks: Arc<Mutex<Vec<(String, Check)>>>,
}

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Liveness")
            .field("checks", &lock(&self.checks).len())
            .finish()
    }
}

/// Held by a task that must run: dropping it (the task ended, returned or panicked) fails
/// `/livez`.
#[derive(Debug)]
pub struct TaskGuard(Arc<AtomicBool>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Liveness {
    /// `name` is alive while `check` says so.
    pub fn check(&self, name: &str, check: impl Fn() -> bool + Send + Sync + 'static) {
        lock(&self.checks).push((name.to_string(), Arc::new(check)));
    }

    /// `name` is alive while the returned guard lives (move it into the task).
    pub fn track(&self, name: &str) -> TaskGuard {
        let alive = Arc::new(AtomicBool::new(true));
        let seen = alive.clone();
        self.check(name, move || seen.load(Ordering::SeqCst));
        TaskGuard(alive)
    }

    /// Runs `task` as a tracked task.
    pub fn spawn<F>(&self, name: &str, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let guard = self.track(name);
        tokio::spawn(async move {
            let _guard = guard;
            task.await
        })
    }

    /// The tasks that have stopped.
    pub fn stopped(&self) -> Vec<String> {
        lock(&self.checks)
            .iter()
            .filter(|(_, check)| !check())
            .map(|(name, _)| name.clone())
            .collect()
    }
}

struct AdminState {
    registry: Registry,
    readiness: CacheSync,
    liveness: Liveness,
}

/// The admin routes.
pub fn router(registry: Registry, readiness: CacheSync, liveness: Liveness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(AdminState {
            registry,
            readiness,
            liveness,
        }))
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render(&state.registry),
    )
}

async fn livez(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let stopped = state.liveness.stopped();
    if stopped.is_empty() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stopped: {}\n", stopped.join(", ")),
        )
    }
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let failing: String = state
        .readiness
        .failures()
        .iter()
        .map(|(name, error)| format!("watch failing: {name}: {error}\n"))
        .collect();
    if state.readiness.is_ready() {
        (StatusCode::OK, format!("ok\n{failing}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "waiting for caches: {}\n{failing}",
                state.readiness.pending().join(", ")
            ),
        )
    }
}

/// Bounds on the admin port (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to send a request's headers, counted from the connection's start or, kept alive,
    /// from the end of the previous response: also the idle timeout.
    pub header_read_timeout: Duration,
    /// Longest life of a connection.
    pub connection_lifetime: Duration,
    /// Read buffer per connection, bytes (also bounds a request's headers).
    pub max_buf_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
            max_buf_size: 16 * 1024,
        }
    }
}

/// Binds `addr` and serves until `shutdown` completes. Returns the bound address at once
/// (useful with port 0) and the serving future.
pub async fn bind(
    addr: SocketAddr,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, serve(listener, app, limits, shutdown)))
}

async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refused: u64 = 0;
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::debug!(error = %e, "admin port: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the limit: closed at once (dropping the stream).
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused,
                    limit = limits.max_connections,
                    "admin port: connection limit reached; closing new connections"
                );
            }
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_buf_size);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let lifetime = tokio::time::sleep(limits.connection_lifetime);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = lifetime => {}
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

#[cfg(test)]
#[path = "admin_tests.rs"]
mod tests;
