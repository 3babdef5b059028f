//! Tests of the admin server (`admin.rs`): probes, metrics, and the port's limits.

use super::*;
use crate::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(app: Router, limits: Limits) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, serve) = bind("127.0.0.1:0".parse().expect("addr"), app, limits, async {
        let _ = stopped.await;
    })
    .await
    .expect("binds");
    Running {
        addr,
        stop,
        server: tokio::spawn(serve),
    }
}

impl Running {
    async fn stop(self) {
        self.stop.send(()).expect("server running");
        tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .expect("stops gracefully")
            .expect("joins")
            .expect("serves without error");
    }
}

#[tokio::test]
async fn probes_and_metrics_are_served_until_shutdown() {
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    metrics.set_leader(true);
    let readiness = CacheSync::default();
    readiness.expect("routemaps");
    let liveness = Liveness::default();
    let server = start(
        router(registry, readiness.clone(), liveness.clone()),
        Limits::default(),
    )
    .await;
    let addr = server.addr;

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
    server.stop().await;
}

#[tokio::test]
async fn a_failing_watch_is_named_and_a_stopped_task_fails_livez() {
    let readiness = CacheSync::default();
    readiness.expect("deployments");
    let liveness = Liveness::default();
    let writer = liveness.spawn("writer", std::future::pending::<()>());
    let index = liveness.spawn("index", async {});
    let server = start(
        router(Registry::default(), readiness.clone(), liveness.clone()),
        Limits::default(),
    )
    .await;
    // A type the controller may not list: which one, and why.
    readiness.failing("deployments", "403 Forbidden: cannot list deployments");
    let r = get(server.addr, "/readyz").await;
    assert!(
        r.starts_with("HTTP/1.1 503") && r.contains("watch failing: deployments: 403 Forbidden"),
        "{r}"
    );
    readiness.recovered("deployments");
    readiness.synced("deployments");
    assert!(
        get(server.addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );

    // The index task ended: /livez says so; the writer still runs.
    index.await.expect("index task ends");
    let r = get(server.addr, "/livez").await;
    assert!(
        r.starts_with("HTTP/1.1 503") && r.contains("stopped: index") && !r.contains("writer"),
        "{r}"
    );
    writer.abort();
    let _ = writer.await;
    assert!(
        get(server.addr, "/livez")
            .await
            .contains("stopped: writer, index")
    );
    server.stop().await;
}

/// Reads until the peer closes; `true` if it closed within `within`.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(within, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await,
        Ok(())
    )
}

#[tokio::test]
async fn idle_connections_are_limited_and_timed_out() {
    let limits = Limits {
        max_connections: 4,
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = start(
        router(
            Registry::default(),
            CacheSync::default(),
            Liveness::default(),
        ),
        limits,
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(
            tokio::net::TcpStream::connect(server.addr)
                .await
                .expect("connect"),
        );
    }
    // Let the server accept them and fill its slots.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // One over the limit is closed at once, without waiting for a timeout.
    let mut extra = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    assert!(closed_within(&mut extra, Duration::from_millis(200)).await);
    // The idle ones are closed by the header-read timeout, freeing the slots.
    for s in &mut idle {
        assert!(closed_within(s, Duration::from_secs(2)).await);
    }
    assert!(get(server.addr, "/livez").await.starts_with("HTTP/1.1 200"));

    // A kept-alive connection that goes idle after a request is closed by the same timeout.
    let mut kept = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    kept.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert!(closed_within(&mut kept, Duration::from_secs(2)).await);
    server.stop().await;
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let server = start(
        router(
            Registry::default(),
            CacheSync::default(),
            Liveness::default(),
        ),
        Limits::default(),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let big = "a".repeat(64 * 1024);
    let _ = s
        .write_all(format!("GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    // hyper answers 431 (or just closes) instead of buffering without bound.
    assert!(!text.starts_with("HTTP/1.1 200"), "{text}");
    server.stop().await;
}
