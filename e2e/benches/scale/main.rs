//! Scale bench of the real `iter8-controller` against the test API server.
//!
//! ```sh
//! cargo build --release -p iter8-controller -p iter8-render
//! cargo bench -p iter8-e2e --bench scale
//! ```
//!
//! Knobs (environment): `ITER8_SCALE_SIZES` (releases per cold start, default `1000,10000`),
//! `ITER8_SCALE_RUNS` (cold starts per size, default 3; the figures are medians),
//! `ITER8_SCALE_RUNS_LARGE` (at most this many for sizes above 2,000, default 1),
//! `ITER8_SCALE_FLIPS` (readiness flips for the reaction latency, default 300, measured at every
//! size), `ITER8_SCALE_CHURN_SECS` (no-op churn per size, default 60),
//! `ITER8_SCALE_THROTTLED` (releases of the cold start against an API server that lets
//! `ITER8_SCALE_THROTTLED_WRITES` (default 4) writes in flight and answers 429 past them,
//! default 1000, 0 skips),
//! `ITER8_SCALE_RENDER` (routemaps for `iter8-render routes`, default 10000, 0 skips),
//! `ITER8_SCALE_GUARDED` (guarded releases judged from a real Prometheus, default 1000, 0
//! skips; needs `/usr/bin/prometheus`: `bash scripts/install-tools.sh --prometheus`),
//! `ITER8_SCALE_GUARDED_FAILING` (of which with a candidate answering 20% 5xx, default 10),
//! `ITER8_SCALE_GUARDED_SECS` (the guard phase's measuring window, default 60),
//! `ITER8_SCALE_IN_FLIGHT` (writes in flight of the controller and of the floor, default the
//! controller's default), `ITER8_SCALE_OUT` (where the markdown table goes, default `target/scale-results.md`),
//! `ITER8_SCALE_WRAP` (a command the controller runs under, e.g. `heaptrack -o /tmp/controller`).
//!
//! What it does per size: a fresh API server; N two-version canary releases (routemap + 2
//! Services + 2 Deployments with `Available=True`); the routes (and status annotations) of the
//! even releases applied beforehand exactly as the controller would, the odd ones missing; then
//! per run: the floor (a bare client making the controller's writes for the odd releases, each
//! route apply, its Event and its status write, with the controller's default number in
//! flight), undone; then the controller: start it, time until every route is correct and until
//! its last status write (bare watches see both), wait until idle, count writes; stop it and
//! undo what it did. The last run's controller then does the reaction-latency flips and the
//! no-op churn. `ITER8_SCALE_SIZES=` (empty) skips the sizes.
//!
//! The guard phase (`iter8_e2e::scale_guard`): a fresh API server, N canary releases whose
//! routemaps have a guard (every 10 s over 1m, errorRate 5%, failAfter 2, the envoy preset),
//! Debian's Prometheus scraping Envoy cluster counters served by the bench and moved on every
//! second (the failing candidates at 20% 5xx), the controller with `--guard-prometheus`; once
//! every route is written and one interval more, a window of queries per second (the
//! controller's and Prometheus' counters, the busiest second), the controller's CPU and RSS;
//! verdicts, withdrawals and their timing, and no healthy candidate withdrawn.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use iter8_e2e::builders::{app, routemap};
use iter8_e2e::cluster::Cluster;
use iter8_e2e::controller::{Controller, proc_status_kib};
use iter8_e2e::out::say;
use iter8_e2e::scale::{
    Churn, ColdStart, ColdStartAs, HalfCorrect, Latency, churn, half_correct, latency, median, mib,
    ms, percentile,
};
use iter8_e2e::scale_guard::{GuardScale, guard_at_scale};
use iter8_e2e::tools::{repo_root, workspace_bin};

mod table;

use table::{machine, table};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Default)]
struct SizeResult {
    n: usize,
    seed_secs: f64,
    runs: Vec<ColdStart>,
    /// Wall time of the floor's writes, one per run.
    floors: Vec<Duration>,
    churn: Option<Churn>,
    latency: Option<Latency>,
    peak_rss_end: u64,
}

async fn run_size(n: usize, runs: usize, flips: usize, churn_secs: u64) -> Result<SizeResult> {
    say(format!("=== {n} releases"));
    let cluster = Cluster::start(&format!("scale-{n}")).await?;
    let result = measure_size(&cluster, n, runs, flips, churn_secs).await;
    if result.is_err() {
        cluster.keep();
    }
    result
}

async fn measure_size(
    cluster: &Cluster,
    n: usize,
    runs: usize,
    flips: usize,
    churn_secs: u64,
) -> Result<SizeResult> {
    cluster.create_namespace("floor").await?;
    let mut setup = half_correct(cluster, "scale", n).await?;
    let mut out = SizeResult {
        n,
        seed_secs: setup.seed_secs,
        ..Default::default()
    };
    let mut last = None;
    let in_flight = iter8_e2e::scale::in_flight();
    for run in 0..runs {
        if run > 0 {
            reset(cluster, &setup).await?;
        }
        // The floor, in the same run as the controller: the same writes, as many in flight.
        let t = Instant::now();
        setup
            .fleet
            .write_as_controller(cluster, &setup.needing, in_flight, true)
            .await?;
        let floor = t.elapsed();
        say(format!(
            "floor: {} route applies, Events and status writes, {in_flight} releases in flight, in {:.2}s",
            setup.needing.len(),
            floor.as_secs_f64()
        ));
        out.floors.push(floor);
        reset(cluster, &setup).await?;
        let (cold, ctl) = setup
            .cold_start(
                cluster,
                Duration::from_secs(1200),
                &ColdStartAs::default(),
                &format!("run {run}"),
            )
            .await?;
        out.runs.push(cold);
        if run + 1 < runs {
            stop(ctl);
        } else {
            last = Some(ctl);
        }
    }
    let Some(mut ctl) = last else {
        bail!("no run");
    };
    let controller = median(
        out.runs
            .iter()
            .map(|r| r.to_written.as_secs_f64())
            .collect(),
    );
    let floor = median(out.floors.iter().map(Duration::as_secs_f64).collect());
    say(format!(
        "cold start {n} releases: controller {controller:.2} s, floor {floor:.2} s, ratio {:.2}",
        controller / floor
    ));
    if flips > 0 {
        let lat = latency(cluster, &mut setup.fleet, "floor", flips, 10).await?;
        for q in [50.0, 99.0] {
            let (c, f) = (
                ms(percentile(&lat.controller_from_commit, q)),
                ms(percentile(&lat.floor, q)),
            );
            say(format!(
                "reaction latency {n} releases p{q:.0}: controller {c:.1} ms, floor {f:.1} ms, ratio {:.2}",
                c / f
            ));
        }
        out.latency = Some(lat);
    }
    if churn_secs > 0 {
        let c = churn(
            cluster,
            &setup.fleet,
            &setup.tracker,
            &mut ctl,
            Duration::from_secs(churn_secs),
        )
        .await?;
        say(format!(
            "churn: {} no-op writes in {:.0}s ({:.0}/s): {} route applies, {} route changes, {} Events, {} status writes",
            c.churn_writes,
            c.duration.as_secs_f64(),
            c.churn_writes as f64 / c.duration.as_secs_f64(),
            c.applied,
            c.route_changes,
            c.events,
            c.status_writes
        ));
        out.churn = Some(c);
    }
    out.peak_rss_end = ctl.peak_rss().unwrap_or(0);
    stop(ctl);
    Ok(out)
}

/// Deletes the routes the controller or the floor wrote for the releases that need one, and
/// their status, and waits until only the correct routes are left.
async fn reset(cluster: &Cluster, setup: &HalfCorrect) -> Result<()> {
    let t = Instant::now();
    setup.fleet.reset(cluster, &setup.needing).await?;
    setup
        .tracker
        .wait_correct(setup.correct.len(), Duration::from_secs(120))
        .await?;
    say(format!(
        "reset: {} routes deleted, status annotations removed, in {:.1}s",
        setup.needing.len(),
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The cold start against an API server that lets `writes` writes (and twice as many reads)
/// in flight from anyone but its administrator and answers 429 past them: the controller,
/// with an ordinary identity, must converge with one write per needed route, waiting as asked
/// and reporting no error.
async fn throttled(n: usize, writes: usize) -> Result<ColdStart> {
    say(format!(
        "=== {n} releases, API server limited to {writes} writes in flight"
    ));
    let (w, r) = (writes.to_string(), (2 * writes).to_string());
    let cluster = Cluster::start_with(
        &format!("scale-throttled-{n}"),
        &[
            "--max-mutating-requests-inflight",
            &w,
            "--max-requests-inflight",
            &r,
        ],
    )
    .await?;
    let setup = half_correct(&cluster, "scale", n).await?;
    let how = ColdStartAs {
        kubeconfig: Some(cluster.controller_kubeconfig()?),
    };
    let (cold, ctl) = setup
        .cold_start(&cluster, Duration::from_secs(1200), &how, "throttled")
        .await?;
    stop(ctl);
    say(format!(
        "throttled cold start {n} releases ({writes} writes in flight at the API server): controller {:.2} s; 429s seen and retried: {}; route applies {} for {} needed, max {} per route, {} on correct routes; Warning Events {}",
        cold.to_written.as_secs_f64(),
        cold.throttled,
        cold.applied,
        setup.needing.len(),
        cold.max_writes_per_route,
        cold.correct_written,
        cold.warnings
    ));
    if cold.applied != setup.needing.len() as u64
        || cold.max_writes_per_route != 1
        || cold.warnings > 0
    {
        cluster.keep();
        bail!("the throttled cold start did not converge with one write per route and no Warning");
    }
    Ok(cold)
}

/// The guard phase (see the module doc) on a fresh API server: `n` guarded releases, `failing`
/// of them failing, measured for `secs`. Fails, after its line, unless exactly the failing
/// candidates were withdrawn.
async fn guarded(n: usize, failing: usize, secs: u64) -> Result<GuardScale> {
    say(format!(
        "=== {n} guarded releases ({failing} failing), Prometheus, {secs} s window"
    ));
    let cluster = Cluster::start(&format!("scale-guarded-{n}")).await?;
    let g = match guard_at_scale(&cluster, n, failing, Duration::from_secs(secs)).await {
        Ok(g) => g,
        Err(e) => {
            cluster.keep();
            return Err(e);
        }
    };
    say(format!("guard at scale: {}", g.summary()));
    if !g.correct() {
        cluster.keep();
        bail!("the guard did not withdraw exactly the failing candidates");
    }
    Ok(g)
}

/// Stops a controller between runs; one slow to stop (a profiler writing its data) is killed
/// and reported, not fatal to a long bench.
fn stop(mut ctl: Controller) {
    if let Err(e) = ctl.stop() {
        say(format!("{e:#}"));
    }
}

/// One `iter8-render routes` run: (wall seconds, peak RSS bytes).
fn render_once(bin: &PathBuf, input: &PathBuf, from_status: bool) -> Result<(f64, u64)> {
    let time = PathBuf::from("/usr/bin/time");
    if time.is_file() {
        let mut cmd = Command::new(&time);
        cmd.args(["-f", "%e %M"]).arg(bin).arg("routes").arg(input);
        if from_status {
            cmd.arg("--from-status");
        }
        let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
        if !out.status.success() {
            bail!(
                "iter8-render failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or_default();
        let mut parts = last.split_whitespace();
        let secs: f64 = parts.next().unwrap_or("0").parse()?;
        let kib: u64 = parts.next().unwrap_or("0").parse()?;
        return Ok((secs, kib * 1024));
    }
    // No /usr/bin/time: sample VmHWM while it runs (a reaped process has no /proc entry).
    let mut cmd = Command::new(bin);
    cmd.arg("routes").arg(input);
    if from_status {
        cmd.arg("--from-status");
    }
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).spawn()?;
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("iter8-render failed: {status}");
            }
            break;
        }
        if let Some(k) = proc_status_kib(child.id(), "VmHWM:") {
            peak = peak.max(k * 1024);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok((started.elapsed().as_secs_f64(), peak))
}

/// The input of `iter8-render` for `n` releases: routemaps, and with `objects` their Services
/// and Deployments with status (as the render bench writes them).
fn render_input(n: usize, objects: bool) -> String {
    let mut s = String::new();
    for i in 0..n {
        let ns = format!("ns{}", i % 50);
        let cm = routemap(&ns, i);
        let _ = write!(s, "---\n{}", serde_json::to_string(&cm).unwrap_or_default());
        s.push('\n');
        if objects {
            let a = app(i);
            for v in 0..2 {
                let _ = write!(
                    s,
                    "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {a}-{v}, namespace: {ns}, labels: {{iter8.tools/watch: \"true\"}}}}\nspec: {{selector: {{app: {a}-{v}}}, ports: [{{port: 80}}]}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {a}-{v}, namespace: {ns}, generation: 1, labels: {{iter8.tools/watch: \"true\"}}}}\nspec:\n  selector: {{matchLabels: {{app: {a}-{v}}}}}\n  template:\n    metadata: {{labels: {{app: {a}-{v}}}}}\n    spec: {{containers: [{{name: app, image: kennethreitz/httpbin}}]}}\nstatus: {{observedGeneration: 1, conditions: [{{type: Available, status: \"True\"}}]}}\n"
                );
            }
        }
    }
    s
}

#[derive(Debug)]
struct RenderResult {
    label: String,
    bytes: usize,
    secs: f64,
    rss: u64,
}

fn render_bench(n: usize) -> Result<Vec<RenderResult>> {
    let bin = workspace_bin("iter8-render")?;
    let dir = std::env::temp_dir().join(format!("iter8-scale-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    for (label, objects) in [
        (format!("{n} routemaps"), false),
        (format!("{n} releases with objects, --from-status"), true),
    ] {
        let input = dir.join(format!("input-{objects}.yaml"));
        let text = render_input(n, objects);
        std::fs::write(&input, &text)?;
        let mut secs = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..5 {
            let (s, r) = render_once(&bin, &input, objects)?;
            secs.push(s);
            rss.push(r as f64);
        }
        let r = RenderResult {
            label,
            bytes: text.len(),
            secs: median(secs),
            rss: median(rss) as u64,
        };
        say(format!(
            "iter8-render routes, {} ({:.1} MB input): {:.2}s, peak RSS {:.1} MiB (median of 5)",
            r.label,
            r.bytes as f64 / 1e6,
            r.secs,
            mib(r.rss)
        ));
        out.push(r);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

async fn bench() -> Result<()> {
    let sizes: Vec<usize> = std::env::var("ITER8_SCALE_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs = env_num("ITER8_SCALE_RUNS", 3).max(1);
    let runs_large = env_num("ITER8_SCALE_RUNS_LARGE", 1).max(1);
    let flips = env_num("ITER8_SCALE_FLIPS", 300) / 2 * 2;
    let churn_secs = env_num("ITER8_SCALE_CHURN_SECS", 60) as u64;
    let render_n = env_num("ITER8_SCALE_RENDER", 10_000);
    let out_path = std::env::var("ITER8_SCALE_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target/scale-results.md"));
    let machine_before = machine();
    say(format!("machine: {machine_before}"));
    say(format!(
        "controller: {}",
        workspace_bin("iter8-controller")?.display()
    ));
    let mut results = Vec::new();
    for &n in &sizes {
        let runs = if n > 2000 { runs.min(runs_large) } else { runs };
        results.push(run_size(n, runs, flips, churn_secs).await?);
    }
    let throttled_n = env_num("ITER8_SCALE_THROTTLED", 1000);
    let throttled_cold = if throttled_n > 0 {
        let writes = env_num("ITER8_SCALE_THROTTLED_WRITES", 4).max(1);
        Some((throttled_n, writes, throttled(throttled_n, writes).await?))
    } else {
        None
    };
    let guarded_n = env_num("ITER8_SCALE_GUARDED", 1000);
    let guard = if guarded_n > 0 {
        let failing = env_num("ITER8_SCALE_GUARDED_FAILING", 10);
        let secs = env_num("ITER8_SCALE_GUARDED_SECS", 60).max(1) as u64;
        Some(guarded(guarded_n, failing, secs).await?)
    } else {
        None
    };
    let render = if render_n > 0 {
        render_bench(render_n)?
    } else {
        Vec::new()
    };
    let mut text = table(&results, &render, guard.as_ref(), &machine_before);
    if let Some((n, writes, c)) = throttled_cold {
        let _ = writeln!(
            text,
            "\nThrottled cold start, {n} releases, API server limited to {writes} writes in flight: controller {:.2} s, 429s retried {}, route applies {} for {} needed (max {} per route), Warning Events {}",
            c.to_written.as_secs_f64(),
            c.throttled,
            c.applied,
            n / 2,
            c.max_writes_per_route,
            c.warnings
        );
    }
    println!("\n{text}");
    std::fs::write(&out_path, &text).with_context(|| format!("writing {}", out_path.display()))?;
    say(format!("table written to {}", out_path.display()));
    Ok(())
}

fn main() -> Result<()> {
    // `cargo test --benches` runs bench targets without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale: run with `cargo bench -p iter8-e2e --bench scale`");
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}
