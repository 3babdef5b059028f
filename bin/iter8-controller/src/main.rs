//! `iter8-controller`: flags and wiring only. See `k8s-adapter` for the flow:
//! watches -> index (one task) -> writer (one task: HTTPRoute applies, Events, status), gated by
//! a Lease, with an admin server for metrics and probes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{ArgAction, Parser};
use k8s_adapter::admin::{self, CacheSync, Limits, Liveness};
use k8s_adapter::guard::{GuardEvents, GuardSettings, HttpFetch, run_guard};
use k8s_adapter::index_task::run_index;
use k8s_adapter::kube_types::go_duration;
use k8s_adapter::leader::{DEFAULT_LEASE_NAME, Election, LeaderSettings, Timings};
use k8s_adapter::metrics::Metrics;
use k8s_adapter::status::StatusWriter;
use k8s_adapter::watch::{ApiHealth, Reporting, spawn_watches};
use k8s_adapter::writer::{Writer, WriterConfig};
use prometheus_client::registry::Registry;
use routemap_index::config::Config;
use routemap_index::index::Index;
use tokio::sync::{mpsc, watch};

/// Canary-release controller for Kubernetes (Iter8 1.1 compatible): watches routemap
/// ConfigMaps and the resources of each version, and server-side-applies the Gateway API
/// HTTPRoute that sends traffic to the available versions. Flags override the config file;
/// each flag can also be set by the environment variable shown.
#[derive(Debug, Parser)]
#[command(name = "iter8-controller", version)]
struct Args {
    /// Controller config file (YAML: resourceTypes, clusterScoped, defaultResync, ...), as
    /// rendered by the controller chart. Built-in defaults apply when absent.
    #[arg(long, env = "ITER8_CONFIG")]
    config: Option<PathBuf>,

    /// kubeconfig to use outside a cluster. Without it: $KUBECONFIG, ~/.kube/config, then the
    /// in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// The controller's namespace: holds the leader Lease, and is the only namespace watched
    /// unless cluster-scoped. Defaults to the kubeconfig context's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,

    /// Watch routemaps and resources in all namespaces (overrides clusterScoped).
    #[arg(long, env = "ITER8_CLUSTER_SCOPED", num_args = 0..=1, default_missing_value = "true")]
    cluster_scoped: Option<bool>,

    /// Let routemaps name version resources in other namespaces than their own; only with
    /// cluster scope (overrides allowCrossNamespaceReferences).
    #[arg(long, env = "ITER8_ALLOW_CROSS_NAMESPACE_REFERENCES", num_args = 0..=1, default_missing_value = "true")]
    allow_cross_namespace_references: Option<bool>,

    /// Period of the full resync that repairs missed writes, e.g. 15m (overrides defaultResync).
    #[arg(long, env = "ITER8_DEFAULT_RESYNC")]
    default_resync: Option<String>,

    /// Field manager of the HTTPRoute server-side applies (overrides fieldManager).
    #[arg(long, env = "ITER8_FIELD_MANAGER")]
    field_manager: Option<String>,

    /// Log filter: trace, debug, info, warn, error, or a tracing directive such as
    /// `info,k8s_adapter=debug` (overrides logLevel; RUST_LOG is not read).
    #[arg(long, env = "ITER8_LOG_LEVEL")]
    log_level: Option<String>,

    /// Log format (overrides logFormat).
    #[arg(long, env = "ITER8_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,

    /// Address of the admin server: /metrics, /livez, /readyz (overrides adminAddr).
    #[arg(long, env = "ITER8_ADMIN_ADDR")]
    admin_addr: Option<String>,

    /// Name of the leader-election Lease in the controller's namespace.
    #[arg(long, env = "ITER8_LEASE_NAME", default_value = DEFAULT_LEASE_NAME)]
    lease_name: String,

    /// This replica's identity in the Lease and in Events (the pod name). Defaults to the host name.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,

    /// Elect a leader with the Lease; `--leader-election=false` writes unconditionally (a
    /// single replica run from a laptop).
    #[arg(long, env = "ITER8_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,

    /// Writes (route applies, deletes, Events with status) in flight at once, at most one per
    /// routemap (overrides maxWritesInFlight).
    #[arg(long, env = "ITER8_MAX_WRITES_IN_FLIGHT")]
    max_writes_in_flight: Option<usize>,

    /// Also watch EndpointSlices: a version whose Service has slices and no ready endpoint leaves
    /// the route at once (overrides endpointSlices).
    #[arg(long, env = "ITER8_ENDPOINT_SLICES", num_args = 0..=1, default_missing_value = "true")]
    endpoint_slices: Option<bool>,

    /// The Prometheus of guarded routemaps that name none (overrides guardPrometheus).
    #[arg(long, env = "ITER8_GUARD_PROMETHEUS")]
    guard_prometheus: Option<String>,

    /// Timeout of each API write.
    #[arg(long, env = "ITER8_API_TIMEOUT", default_value = "10s", value_parser = go_duration)]
    api_timeout: Duration,
}

fn load_config(args: &Args) -> Result<Config> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_yaml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(v) = args.cluster_scoped {
        config.cluster_scoped = v;
    }
    if let Some(v) = args.allow_cross_namespace_references {
        config.allow_cross_namespace_references = v;
    }
    if let Some(v) = &args.default_resync {
        config.default_resync = v.clone();
    }
    if let Some(v) = &args.field_manager {
        config.field_manager = v.clone();
    }
    if let Some(v) = &args.log_level {
        config.log_level = v.clone();
    }
    if let Some(v) = &args.log_format {
        config.log_format = v.clone();
    }
    if let Some(v) = &args.admin_addr {
        config.admin_addr = v.clone();
    }
    if let Some(v) = args.max_writes_in_flight {
        config.max_writes_in_flight = v;
    }
    if let Some(v) = args.endpoint_slices {
        config.endpoint_slices = v;
    }
    if let Some(v) = &args.guard_prometheus {
        config.guard_prometheus = Some(v.clone()).filter(|v| !v.is_empty());
    }
    config.validate()?;
    Ok(config)
}

fn init_logging(config: &Config) {
    // kube's HTTP trace layer logs every 5xx answer at ERROR, one line per call: during an
    // outage that floods the log with what `watch` already reports, rate-limited. Off unless
    // the filter names kube_client itself.
    let directives = if config.log_level.contains("kube_client") {
        config.log_level.clone()
    } else {
        format!("{},kube_client::client::builder=off", config.log_level)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: `kubectl logs` and log collectors would show the escapes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Two clients of the same configuration, neither with kube's own retry of 429/503 (up to 15
/// attempts, doubling from 5 ms: minutes inside one call): one for reads (watches, the Lease,
/// the watch probe), whose failures `watch` and `leader` retry with their own backoff and
/// deadlines, so a watch retries the moment the API server answers again; and one for the
/// writer, so that it sees the API server's flow control, waits with jitter, counts it, and
/// keeps its write slot free meanwhile (`routemap_index::write_plan`). Separate clients keep
/// writes from queueing behind reads for a connection.
async fn clients(args: &Args) -> Result<(kube::Client, kube::Client)> {
    let mut config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    config.default_retry = false;
    Ok((
        kube::Client::try_from(config.clone())?,
        kube::Client::try_from(config)?,
    ))
}

/// Budgets of the shutdown steps. Their sum, 4 s + 2 x 2 s (the Lease release waits twice) +
/// 1 s, stays under the chart's `terminationGracePeriodSeconds` (10 s), so the kubelet never has
/// to SIGKILL; with nothing in flight the whole shutdown takes milliseconds (docs/performance.md).
const WRITER_STOP_BUDGET: Duration = Duration::from_secs(4);
const LEASE_RELEASE_BUDGET: Duration = Duration::from_secs(2);
const ADMIN_STOP_BUDGET: Duration = Duration::from_secs(1);

/// The signals that stop the controller: SIGTERM (what `docker stop` and the kubelet send) and
/// SIGINT (Ctrl-C). Installed first thing in `main`: in a container the controller is PID 1,
/// and the kernel drops a signal that PID 1 has no handler for, so a SIGTERM that arrived before
/// the handlers exist would be lost and the kubelet would wait out the grace period.
struct ShutdownSignal {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

fn shutdown_signal() -> Result<ShutdownSignal> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignal {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }
    #[cfg(not(unix))]
    Ok(ShutdownSignal {})
}

impl ShutdownSignal {
    /// Waits for the next signal and names it.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut signals = shutdown_signal()?;
    let config = load_config(&args)?;
    init_logging(&config);
    let resync =
        go_duration(&config.default_resync).map_err(|e| anyhow::anyhow!("defaultResync: {e}"))?;
    let admin_addr: SocketAddr = config
        .admin_addr
        .parse()
        .with_context(|| format!("adminAddr {:?}", config.admin_addr))?;

    let (client, write_client) = clients(&args).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let identity = args
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "iter8-controller".into());
    let watch_namespace = (!config.cluster_scoped).then_some(namespace.as_str());
    tracing::info!(namespace = %namespace, cluster_scoped = config.cluster_scoped, allow_cross_namespace_references = config.allow_cross_namespace_references, identity = %identity, field_manager = %config.field_manager, resync = ?resync, "starting iter8-controller");

    if config.allow_cross_namespace_references && !config.cluster_scoped {
        tracing::warn!(
            "allowCrossNamespaceReferences has no effect on a namespace-scoped controller: it reads its own namespace only"
        );
    }
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let readiness = CacheSync::default();
    let liveness = Liveness::default();
    let health = ApiHealth::default();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    // Admin server first, so probes answer while caches fill.
    let mut admin_shutdown = shutdown_rx.clone();
    let app = admin::router(registry, readiness.clone(), liveness.clone());
    let (bound, serve) = admin::bind(admin_addr, app, Limits::default(), async move {
        let _ = admin_shutdown.changed().await;
    })
    .await
    .with_context(|| format!("binding admin server on {admin_addr}"))?;
    tracing::info!(addr = %bound, "admin server: /metrics /livez /readyz");
    let admin_task = tokio::spawn(serve);

    let election = if args.leader_election {
        let settings = LeaderSettings {
            namespace: namespace.clone(),
            lease_name: args.lease_name.clone(),
            identity: identity.clone(),
        };
        Election::start(client.clone(), &settings, Timings::default(), Some(&health))?
    } else {
        tracing::warn!("leader election disabled: this replica writes unconditionally");
        Election::always()
    };

    let (index_tx, index_rx) = mpsc::channel(1024);
    // Bounded: a burst of decisions waits in the index task while the writer is busy.
    let (writer_tx, writer_rx) = mpsc::channel(256);
    liveness.check("leader election", election.liveness());
    // An invalid routemap keeps its last good spec in force, so readiness gating never stops.
    let mut index = Index::new(&config);
    index.keep_last_good(true);
    let (guard_tx, guard_rx) = mpsc::unbounded_channel();
    let index_task = liveness.spawn(
        "index",
        run_index(
            index,
            index_rx,
            writer_tx.clone(),
            metrics.clone(),
            Some(guard_tx),
        ),
    );
    let status_writer = StatusWriter::new(
        write_client.clone(),
        Some(identity.clone()),
        args.api_timeout,
        metrics.clone(),
    );
    let fetch = HttpFetch::new();
    let guard_task = liveness.spawn(
        "guard",
        run_guard(
            guard_rx,
            index_tx.clone(),
            std::sync::Arc::new(fetch),
            GuardSettings {
                default_prometheus: config.guard_prometheus.clone(),
                queries_in_flight: config.guard_queries_in_flight,
            },
            Some(GuardEvents {
                status: status_writer.clone(),
                leader: election.is_leader.clone(),
            }),
            metrics.clone(),
        ),
    );
    let writer = Writer::new(
        write_client,
        WriterConfig {
            field_manager: config.field_manager.clone(),
            timeout: args.api_timeout,
            resync,
        },
        status_writer,
        metrics.clone(),
    )
    .with_max_in_flight(config.max_writes_in_flight)
    .with_fence(election.fence.clone());
    let writer_task = liveness.spawn(
        "writer",
        writer.run(writer_rx, election.is_leader.clone(), shutdown_rx.clone()),
    );
    let watches = spawn_watches(
        &client,
        &config,
        watch_namespace,
        index_tx,
        writer_tx,
        &Reporting {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            liveness: liveness.clone(),
            health,
        },
    );

    let signal = signals.recv().await;
    let stopping = std::time::Instant::now();
    tracing::info!(signal, "shutting down");
    let shutdown = async move {
        let _ = shutdown_tx.send(true);
        for w in &watches {
            w.abort();
        }
        let mut writer_task = writer_task;
        if tokio::time::timeout(WRITER_STOP_BUDGET, &mut writer_task)
            .await
            .is_err()
        {
            tracing::warn!(budget = ?WRITER_STOP_BUDGET, "writer did not stop in time; abandoning its writes");
            writer_task.abort();
            // Gone for sure, with its view of the leader flag, which the release needs.
            let _ = writer_task.await;
        }
        index_task.abort();
        guard_task.abort();
        // Hand the Lease over at once instead of letting it expire.
        election.release(LEASE_RELEASE_BUDGET).await;
        let mut admin_task = admin_task;
        if tokio::time::timeout(ADMIN_STOP_BUDGET, &mut admin_task)
            .await
            .is_err()
        {
            admin_task.abort();
        }
    };
    // A second signal while shutting down stops at once.
    tokio::select! {
        () = shutdown => {
            tracing::info!(signal, elapsed_ms = stopping.elapsed().as_millis() as u64, "stopped cleanly");
            Ok(())
        }
        again = signals.recv() => {
            tracing::warn!(signal = again, elapsed_ms = stopping.elapsed().as_millis() as u64, "second signal: exiting without finishing the shutdown");
            std::process::exit(1);
        }
    }
}
