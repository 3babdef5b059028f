//! Leadership under faults, proven from the API server's own record.
//!
//! 1. **Partitioned leader.** Two replicas with their own identities (bearer tokens, so the
//!    API server's authz log names who made each request). Replica a reaches the API server
//!    through a fault-injecting proxy (`src/proxy.rs`); while a leads and keeps writing (a
//!    version's availability flips every 300 ms), the proxy blackholes a's Lease requests only:
//!    its renewals never arrive, its other calls still do. Replica b takes over once the Lease
//!    expires. From the authz log, tailed and time-stamped as it grows: no write (create,
//!    update, patch, delete; Leases aside) of a lands after b's first write, and the gap between
//!    a's last and b's first write is printed.
//! 2. **Handover.** SIGTERM of the leader with a follower waiting, K times: how long until the
//!    follower holds the Lease (under 1 s required); every other time a version's readiness
//!    changes at the moment of the SIGTERM (a rolling update under traffic) and must reach the
//!    route within a second, and the other times the route must not be written at all. Then a
//!    SIGKILL of the leader: how long until the other holds the Lease (within the lease
//!    duration plus a retry period).
//!
//! API server outages and the admin port are in `tests/outage.rs`.
//!
//! Run with `bash e2e/run.sh --test partition`.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use iter8_e2e::controller::Launch;
use iter8_e2e::prelude::*;
use iter8_e2e::proxy::{Proxy, add_identity, kubeconfig_with};
use iter8_e2e::wait::wait_every;
use serde_json::Value;

const LEASE: &str = "iter8-controller-leader";
const RENEW_DEADLINE: Duration = Duration::from_secs(k8s_adapter::leader::RENEW_DEADLINE_SECS);
const RETRY_PERIOD: Duration = Duration::from_secs(k8s_adapter::leader::RETRY_PERIOD_SECS);
/// SIGTERM handovers measured.
const HANDOVERS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition() -> Result<()> {
    let cluster = Cluster::start("partition").await?;
    let mut suite = Suite::new(&cluster)?;
    suite
        .run(
            "leader cut off from the Lease, other calls passing",
            partitioned_leader(&cluster),
        )
        .await;
    suite
        .run("handover after SIGTERM and SIGKILL", handover(&cluster))
        .await;
    suite.finish()
}

/// The authz log's lines as they appear, each stamped with when this test read it (polled
/// every 5 ms, so a stamp is at most a few ms late; the order is the server's).
struct Tail {
    lines: Arc<Mutex<Vec<(Instant, Value)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tail {
    fn start(path: PathBuf) -> Tail {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (lines.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let mut partial = String::new();
            while !s.load(Ordering::SeqCst) {
                if let Ok(mut f) = std::fs::File::open(&path)
                    && f.seek(SeekFrom::Start(offset)).is_ok()
                {
                    let mut chunk = String::new();
                    if let Ok(n) = f.read_to_string(&mut chunk) {
                        offset += n as u64;
                        partial.push_str(&chunk);
                        let now = Instant::now();
                        while let Some(end) = partial.find('\n') {
                            let line: String = partial.drain(..=end).collect();
                            if let Ok(v) = serde_json::from_str::<Value>(line.trim())
                                && let Ok(mut l) = l.lock()
                            {
                                l.push((now, v));
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Tail {
            lines,
            stop,
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> Vec<(Instant, Value)> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A measured figure, on a line of its own (what the issue and docs/leadership.md quote).
fn figure(text: String) {
    println!("{text}");
}

/// A write that lands in the cluster: anything but reads, Leases aside.
fn is_write(v: &Value) -> bool {
    let verb = v["verb"].as_str().unwrap_or("");
    matches!(verb, "create" | "update" | "patch" | "delete") && v["resource"] != "leases"
}

fn user(v: &Value) -> &str {
    v["user"].as_str().unwrap_or("")
}

fn describe(v: &Value) -> String {
    format!(
        "{} {} {}/{}",
        v["verb"].as_str().unwrap_or(""),
        v["resource"].as_str().unwrap_or(""),
        v["namespace"].as_str().unwrap_or(""),
        v["name"].as_str().unwrap_or("")
    )
}

async fn holder(cluster: &Cluster, ns: &str) -> Result<Option<String>> {
    cluster.lease_holder(ns, LEASE).await
}

async fn wait_holder(cluster: &Cluster, ns: &str, who: &str) -> Result<()> {
    wait_for(&format!("{who} to hold the Lease"), timeout(), || async {
        Ok(match holder(cluster, ns).await? {
            Some(h) if h == who => Ok(()),
            other => Err(format!("holder {other:?}")),
        })
    })
    .await
}

async fn partitioned_leader(cluster: &Cluster) -> Result<()> {
    let ns = "partition";
    cluster.create_namespace(ns).await?;
    let mut release = Release::new(cluster, "httpbin", ns);
    release.upgrade(&[&values("seed-2-candidate.yaml")]).await?;
    cluster.set_deployment(ns, "httpbin-0", true).await?;
    cluster.set_deployment(ns, "httpbin-1", true).await?;

    step(
        1,
        "two replicas, each with its own token; a through a proxy that can cut its Lease calls",
    );
    let (user_a, user_b) = (
        format!("system:serviceaccount:{ns}:replica-a"),
        format!("system:serviceaccount:{ns}:replica-b"),
    );
    add_identity(cluster, "partition-replica-a", &user_a)?;
    add_identity(cluster, "partition-replica-b", &user_b)?;
    let proxy = Proxy::start(cluster, "/leases").await?;
    let kc_a = proxy.kubeconfig(cluster, "partition-replica-a", "kubeconfig-replica-a")?;
    let server = std::fs::read_to_string(&cluster.kubeconfig)?
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
        .unwrap_or_default();
    let kc_b = kubeconfig_with(
        cluster,
        &server,
        "partition-replica-b",
        "kubeconfig-replica-b",
    )?;
    let mut a = Launch::new(cluster, ns, "replica-a")
        .kubeconfig(&kc_a)
        .start()?;
    a.wait_ready().await?;
    wait_holder(cluster, ns, "replica-a").await?;
    let mut b = Launch::new(cluster, ns, "replica-b")
        .kubeconfig(&kc_b)
        .start()?;
    b.wait_ready().await?;
    cluster
        .wait_route(
            ns,
            "httpbin",
            "two rules",
            canary_split("httpbin-0", "httpbin-1"),
        )
        .await?;
    ok("replica-a leads, replica-b follows, the route has both versions");

    step(
        2,
        "httpbin-1 flips every 300 ms; replica-a's Lease calls are blackholed",
    );
    let tail = Tail::start(cluster.dir.join("authz.log"));
    let mut available = true;
    let flip = Duration::from_millis(300);
    for _ in 0..5 {
        available = !available;
        cluster.set_deployment(ns, "httpbin-1", available).await?;
        tokio::time::sleep(flip).await;
    }
    let cut = Instant::now();
    proxy.cut(true);
    let limit = LEASE_DURATION + RETRY_PERIOD + Duration::from_secs(10);
    let mut taken = None;
    // Keep the leader busy until b has led for a few seconds.
    while cut.elapsed() < limit {
        available = !available;
        cluster.set_deployment(ns, "httpbin-1", available).await?;
        tokio::time::sleep(flip).await;
        if taken.is_none() && holder(cluster, ns).await?.as_deref() == Some("replica-b") {
            taken = Some(cut.elapsed());
        }
        if taken.is_some_and(|t| cut.elapsed() > t + Duration::from_secs(4)) {
            break;
        }
    }
    let taken = taken.ok_or_else(|| anyhow::anyhow!("replica-b never took the Lease"))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = tail.snapshot();
    drop(tail);
    let (blackholed, passed) = proxy.counts();
    note(format!(
        "proxy: {blackholed} Lease requests blackholed, {passed} requests passed; replica-b took the Lease {:.1}s after the cut",
        taken.as_secs_f64()
    ));

    let writes: Vec<&(Instant, Value)> = log.iter().filter(|(_, v)| is_write(v)).collect();
    let first_b = writes
        .iter()
        .position(|(_, v)| user(v) == user_b)
        .ok_or_else(|| anyhow::anyhow!("replica-b made no write after taking over"))?;
    let after: Vec<String> = writes[first_b..]
        .iter()
        .filter(|(_, v)| user(v) == user_a)
        .map(|(_, v)| describe(v))
        .collect();
    let last_a = writes[..first_b]
        .iter()
        .rev()
        .find(|(_, v)| user(v) == user_a)
        .ok_or_else(|| anyhow::anyhow!("replica-a made no write in the whole run"))?;
    let a_after_cut = writes[..first_b]
        .iter()
        .filter(|(t, v)| user(v) == user_a && *t > cut)
        .count();
    let (t_first_b, v_first_b) = writes[first_b];
    let gap = t_first_b.duration_since(last_a.0);
    note(format!(
        "replica-a: {a_after_cut} writes after the cut, the last {:.2}s after it ({}); replica-b's first write {:.2}s after it ({})",
        last_a.0.duration_since(cut).as_secs_f64(),
        describe(&last_a.1),
        t_first_b.duration_since(cut).as_secs_f64(),
        describe(v_first_b)
    ));
    figure(format!(
        "partitioned leader: last write {} ms before the new leader's first write; {} writes after",
        gap.as_millis(),
        after.len()
    ));
    ensure!(
        after.is_empty(),
        "replica-a wrote after replica-b's first write: {after:?}"
    );
    ensure!(
        a_after_cut > 0,
        "replica-a made no write while cut off from the Lease: the test did not exercise the fence"
    );
    ensure!(
        last_a.0.duration_since(cut) <= RENEW_DEADLINE + Duration::from_millis(500),
        "replica-a wrote {:.2}s after the cut, past its renew deadline ({RENEW_DEADLINE:?})",
        last_a.0.duration_since(cut).as_secs_f64()
    );
    ensure!(
        a.metric("iter8_leader")? == 0.0,
        "replica-a still says it leads"
    );
    ensure!(
        b.metric("iter8_leader")? == 1.0,
        "replica-b does not say it leads"
    );
    let log_a = std::fs::read_to_string(&a.log)?;
    ensure!(
        log_a.contains("stopped leading"),
        "replica-a never logged that it stopped leading"
    );
    ok("replica-a fenced itself off before replica-b could take over; 0 writes after");

    step(3, "the partition heals: replica-a stays a follower");
    proxy.cut(false);
    tokio::time::sleep(RETRY_PERIOD * 2).await;
    ensure!(
        holder(cluster, ns).await?.as_deref() == Some("replica-b"),
        "the Lease moved back after the partition healed"
    );
    ensure!(a.metric("iter8_leader")? == 0.0, "replica-a leads again");
    ok("Lease still held by replica-b, replica-a iter8_leader 0");
    a.stop()?;
    b.stop()?;
    Ok(())
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Time from `since` until `who` holds the Lease (polled every 10 ms).
async fn until_held(
    cluster: &Cluster,
    ns: &str,
    who: &str,
    since: Instant,
    limit: Duration,
) -> Result<Duration> {
    loop {
        if holder(cluster, ns).await?.as_deref() == Some(who) {
            return Ok(since.elapsed());
        }
        ensure!(
            since.elapsed() < limit,
            "{who} did not take the Lease within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn handover(cluster: &Cluster) -> Result<()> {
    let ns = "handover";
    cluster.create_namespace(ns).await?;
    let mut release = Release::new(cluster, "httpbin", ns);
    release.upgrade(&[&values("seed-2-candidate.yaml")]).await?;
    cluster.set_deployment(ns, "httpbin-0", true).await?;
    cluster.set_deployment(ns, "httpbin-1", true).await?;
    let names = ["replica-a", "replica-b"];
    let mut replicas = [
        Controller::start(cluster, ns, names[0])?,
        Controller::start(cluster, ns, names[1])?,
    ];
    for r in replicas.iter_mut() {
        r.wait_ready().await?;
    }
    cluster
        .wait_route(
            ns,
            "httpbin",
            "two rules",
            canary_split("httpbin-0", "httpbin-1"),
        )
        .await?;
    let mut leader = match holder(cluster, ns).await?.as_deref() {
        Some("replica-b") => 1,
        _ => {
            wait_holder(cluster, ns, "replica-a").await?;
            0
        }
    };

    step(
        1,
        format!("SIGTERM of the leader, {HANDOVERS} times, the other replica waiting"),
    );
    let mut took = Vec::new();
    let mut applied = Vec::new();
    let mut available = true;
    for round in 0..HANDOVERS {
        let follower = 1 - leader;
        let before = cluster
            .existing_route(ns, "httpbin")
            .await?
            .resource_version();
        // Every other round, a readiness change at the moment of the SIGTERM (a rolling update
        // under traffic): the new leader must apply it within the handover.
        let flip = round % 2 == 1;
        let sent = Instant::now();
        replicas[leader].terminate();
        if flip {
            available = !available;
            cluster.set_deployment(ns, "httpbin-1", available).await?;
        }
        let t = until_held(cluster, ns, names[follower], sent, Duration::from_secs(20)).await?;
        let mut line = format!(
            "round {}: {} -> {} in {} ms",
            round + 1,
            names[leader],
            names[follower],
            t.as_millis()
        );
        if flip {
            let want = if available { 2 } else { 1 };
            wait_every(
                "the readiness change on the route",
                timeout(),
                Duration::from_millis(10),
                || async {
                    let rules = cluster.existing_route(ns, "httpbin").await?.rules();
                    Ok((rules == want)
                        .then_some(())
                        .ok_or(format!("{rules} rules")))
                },
            )
            .await?;
            applied.push(sent.elapsed());
            line.push_str(&format!(
                "; httpbin-1 {} at the SIGTERM, on the route {} ms later",
                if available { "ready" } else { "unready" },
                sent.elapsed().as_millis()
            ));
        } else {
            replicas[follower].wait_caught_up(cluster, ns).await?;
            let after = cluster
                .existing_route(ns, "httpbin")
                .await?
                .resource_version();
            ensure!(
                after == before,
                "a handover with nothing changed rewrote the route (rv {before} -> {after})"
            );
            line.push_str("; route untouched");
        }
        let status = replicas[leader].wait_exit(Duration::from_secs(15))?;
        ensure!(status.success(), "{} exited with {status}", names[leader]);
        note(line);
        took.push(t);
        replicas[leader] = Controller::start(cluster, ns, names[leader])?;
        replicas[leader].wait_ready().await?;
        leader = follower;
    }
    let median = p50(took.clone());
    let max = took.iter().max().copied().unwrap_or_default();

    step(2, "SIGKILL of the leader: the Lease is not released");
    let follower = 1 - leader;
    let killed = Instant::now();
    replicas[leader].kill();
    let limit = LEASE_DURATION + RETRY_PERIOD + Duration::from_secs(3);
    let failover = until_held(cluster, ns, names[follower], killed, limit).await?;
    figure(format!(
        "handover after SIGTERM: p50 {} ms over {HANDOVERS} (max {} ms); after SIGKILL: {:.1} s",
        median.as_millis(),
        max.as_millis(),
        failover.as_secs_f64()
    ));
    let slowest = applied.iter().max().copied().unwrap_or_default();
    figure(format!(
        "readiness change at a SIGTERM handover: on the route within {} ms (max over {})",
        slowest.as_millis(),
        applied.len()
    ));
    ensure!(
        slowest < Duration::from_secs(1),
        "a readiness change made at a handover took {slowest:?} to reach the route"
    );
    ensure!(
        median < Duration::from_secs(1),
        "SIGTERM handover p50 {median:?}, want under 1 s"
    );
    ensure!(
        failover <= LEASE_DURATION + RETRY_PERIOD,
        "SIGKILL failover {failover:?}, want within the lease duration ({LEASE_DURATION:?}) plus a retry period"
    );
    for r in replicas.iter_mut() {
        r.stop()?;
    }
    Ok(())
}
