//! The admin HTTP server: `/metrics` (Prometheus text), `/livez` and `/readyz`.
//!
//! `/readyz` answers 200 once every watch has listed its objects (the caches are synced); a
//! configured resource type whose CRD is missing counts as synced, since there is nothing to
//! cache, so an optional integration (e.g. KServe) never keeps the controller unready.
//! Serving stops gracefully when the shutdown future completes.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::metrics::render;

/// Which caches are still listing.
#[derive(Debug, Default, Clone)]
pub struct CacheSync {
    pending: Arc<Mutex<BTreeSet<String>>>,
}

impl CacheSync {
    /// Ready only after `name` is synced.
    pub fn expect(&self, name: &str) {
        self.lock().insert(name.to_string());
    }

    /// `name` has listed everything.
    pub fn synced(&self, name: &str) {
        self.lock().remove(name);
    }

    /// All caches synced.
    pub fn is_ready(&self) -> bool {
        self.lock().is_empty()
    }

    /// The caches still listing.
    pub fn pending(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // A panic elsewhere while holding the lock leaves a usable set.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
struct AdminState {
    registry: Registry,
    readiness: CacheSync,
}

/// The admin routes.
pub fn router(registry: Registry, readiness: CacheSync) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(AdminState {
            registry,
            readiness,
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

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "waiting for caches: {}\n",
                state.readiness.pending().join(", ")
            ),
        )
    }
}

/// Binds `addr` and serves until `shutdown` completes. Returns the bound address at once
/// (useful with port 0) and the serving future.
pub async fn bind(
    addr: SocketAddr,
    registry: Registry,
    readiness: CacheSync,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(registry, readiness);
    Ok((local, async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn probes_and_metrics_are_served_until_shutdown() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.set_leader(true);
        let readiness = CacheSync::default();
        readiness.expect("routemaps");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, serve) = bind(
            "127.0.0.1:0".parse().expect("addr"),
            registry,
            readiness.clone(),
            async {
                let _ = stopped.await;
            },
        )
        .await
        .expect("binds");
        let server = tokio::spawn(serve);

        assert!(get(addr, "/livez").await.starts_with("HTTP/1.1 200"));
        // Not ready while a cache is listing, and it says which.
        let r = get(addr, "/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("routemaps"),
            "{r}"
        );
        readiness.synced("routemaps");
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let m = get(addr, "/metrics").await;
        assert!(m.contains("iter8_leader 1"), "{m}");

        stop.send(()).expect("server running");
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("stops gracefully")
            .expect("joins")
            .expect("serves without error");
    }
}
