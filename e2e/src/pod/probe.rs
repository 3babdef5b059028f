//! Readiness and liveness probes, polled as a kubelet polls them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::tools::http_get;

/// A probe as the kubelet runs it (HTTP GET only).
#[derive(Debug, Clone)]
pub(super) struct HttpProbe {
    addr: SocketAddr,
    path: String,
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

impl HttpProbe {
    pub(super) fn from(probe: &Probe, container: &Container) -> Result<HttpProbe> {
        let get = probe.http_get.as_ref().ok_or_else(|| {
            anyhow!("only httpGet probes are supported by the pod runner (exec, tcpSocket and grpc are not)")
        })?;
        ensure!(
            get.scheme.as_deref().unwrap_or("HTTP") == "HTTP",
            "probe scheme {:?}: only HTTP is supported",
            get.scheme
        );
        let port = match &get.port {
            IntOrString::Int(p) => *p,
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| anyhow!("probe port {name:?} is not a port of the container"))?,
        };
        let secs = |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default) as u64);
        Ok(HttpProbe {
            // The pod's IP on the host network.
            addr: SocketAddr::from(([127, 0, 0, 1], u16::try_from(port)?)),
            path: get.path.clone().unwrap_or_else(|| "/".into()),
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10),
            timeout: secs(probe.timeout_seconds, 1),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        })
    }

    /// One probe: 200..400 within the timeout is a success, as the kubelet counts it.
    fn once(&self) -> bool {
        let addr = self.addr;
        let path = self.path.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(http_get(addr, &path));
        });
        matches!(rx.recv_timeout(self.timeout), Ok(Ok((code, _))) if (200..400).contains(&code))
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "GET http://{}{} every {}s (timeout {}s, delay {}s, success {}, failure {})",
            self.addr,
            self.path,
            self.period.as_secs(),
            self.timeout.as_secs(),
            self.initial_delay.as_secs(),
            self.success_threshold,
            self.failure_threshold
        )
    }
}

/// What the probe thread has seen.
#[derive(Debug, Default)]
pub(super) struct ProbeState {
    pub(super) ready: AtomicBool,
    /// The liveness probe has failed `failureThreshold` times in a row (a kubelet would restart
    /// the container).
    pub(super) liveness_failed: AtomicBool,
    pub(super) readiness_probes: AtomicU32,
    pub(super) liveness_probes: AtomicU32,
    pub(super) stop: AtomicBool,
}

/// The kubelet's probe loop: each probe on its own period, with its thresholds.
pub(super) fn probe_loop(
    readiness: Option<HttpProbe>,
    liveness: Option<HttpProbe>,
    state: Arc<ProbeState>,
) {
    let started = Instant::now();
    // (probe, next due, consecutive successes, consecutive failures, is readiness)
    let mut probes: Vec<(HttpProbe, Instant, u32, u32, bool)> = Vec::new();
    if let Some(p) = readiness {
        probes.push((p.clone(), started + p.initial_delay, 0, 0, true));
    } else {
        // No readiness probe: ready once running, as the kubelet has it.
        state.ready.store(true, Ordering::SeqCst);
    }
    if let Some(p) = liveness {
        probes.push((p.clone(), started + p.initial_delay, 0, 0, false));
    }
    while !state.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        for (probe, due, successes, failures, is_readiness) in probes.iter_mut() {
            if now < *due {
                continue;
            }
            *due = now + probe.period;
            let ok = probe.once();
            if ok {
                *successes += 1;
                *failures = 0;
            } else {
                *failures += 1;
                *successes = 0;
            }
            if *is_readiness {
                state.readiness_probes.fetch_add(1, Ordering::SeqCst);
                if ok && *successes >= probe.success_threshold {
                    state.ready.store(true, Ordering::SeqCst);
                } else if !ok && *failures >= probe.failure_threshold {
                    state.ready.store(false, Ordering::SeqCst);
                }
            } else {
                state.liveness_probes.fetch_add(1, Ordering::SeqCst);
                if !ok && *failures >= probe.failure_threshold {
                    state.liveness_failed.store(true, Ordering::SeqCst);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
