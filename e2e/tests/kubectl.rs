//! `kubectl iter8` (bin/kubectl-iter8) against a real API server with the real controller: its
//! output at each step of the seed tutorial checked against the live objects, `explain`,
//! `--watch` seeing a readiness flip, its errors and exit codes (no such release, unreachable,
//! forbidden, CRD missing), and the read-only Role of `docs/kubectl-rbac.yaml` being enough.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use iter8_e2e::prelude::*;
use iter8_e2e::tools::kubectl_iter8;
use iter8_e2e::tools::{repo_root, workspace_bin};
use serde_json::Value;

const NS: &str = "test";
const ROUTE: &str = "httpbin";
const ROUTEMAP: &str = "httpbin-routemap";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_plugin() -> Result<()> {
    let plugin = build_plugin()?;
    let cluster = Cluster::start("kubectl").await?;
    let mut suite = Suite::new(&cluster)?;
    suite
        .run(
            "kubectl iter8 get / explain / --watch",
            scenario(&cluster, &plugin),
        )
        .await;
    suite.finish()
}

/// `e2e/run.sh` builds the controller; the plugin is built here (a no-op when up to date), into
/// the same target directory and profile as this test.
fn build_plugin() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", "kubectl-iter8"])
        .current_dir(repo_root())
        .status()
        .context("running cargo build -p kubectl-iter8")?;
    ensure!(status.success(), "cargo build -p kubectl-iter8 failed");
    workspace_bin("kubectl-iter8")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The plain tree, exit code 0 required.
fn get_text(plugin: &Path, kubeconfig: &Path) -> Result<String> {
    let out = kubectl_iter8(plugin, kubeconfig, &["get", "httpbin", "-n", NS])?;
    ensure!(
        out.status.code() == Some(0),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout(&out))
}

/// `-o json`: the release's view.
fn get_json(plugin: &Path, kubeconfig: &Path) -> Result<Value> {
    let out = kubectl_iter8(
        plugin,
        kubeconfig,
        &["get", "httpbin", "-n", NS, "-o", "json"],
    )?;
    ensure!(out.status.success(), "get -o json failed");
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["releases"][0].clone())
}

fn expect_lines(text: &str, wanted: &[&str]) -> Result<()> {
    for w in wanted {
        ensure!(text.contains(w), "expected {w:?} in:\n{text}");
    }
    Ok(())
}

/// The JSON view agrees with the live route and the Deployments' availability.
fn check_against_live(view: &Value, live: &Live, available: &[(&str, bool)]) -> Result<()> {
    ensure!(
        view["route"]["generation"].as_i64() == Some(live.generation()),
        "route generation {} shown, live {}",
        view["route"]["generation"],
        live.generation()
    );
    ensure!(
        view["route"]["state"] == "asDecided",
        "the controller has caught up, so the live route is the decided one: {}",
        view["route"]["state"]
    );
    for (name, want) in available {
        let v = view["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == *name)
            .with_context(|| format!("version {name} shown"))?;
        ensure!(
            v["available"].as_bool() == Some(*want),
            "{name} available {} shown, expected {want}",
            v["available"]
        );
    }
    Ok(())
}

async fn scenario(cluster: &Cluster, plugin: &Path) -> Result<()> {
    let kc = cluster.kubeconfig.as_path();
    step(1, "seed-1-initial.yaml, httpbin-0 ready");
    let (mut release, controller) =
        release_with_controller(cluster, NS, "seed-1-initial.yaml").await?;
    cluster.set_deployment(NS, "httpbin-0", true).await?;
    cluster
        .wait_route(NS, ROUTE, "one rule to httpbin-0", one_rule_to("httpbin-0"))
        .await?;
    controller.wait_caught_up(cluster, NS).await?;
    let text = get_text(plugin, kc)?;
    println!("{text}");
    expect_lines(
        &text,
        &[
            "Release test/httpbin (routemap httpbin-routemap)  strategy canary",
            "live = decided",
            "httpbin-0  primary    [ok] available  catch-all",
            "GET /  -> httpbin-0 [rule 0]",
            "RouteApplied",
        ],
    )?;
    ok("get httpbin: one version, available, the live route as decided, its RouteApplied Event");

    step(2, "seed-2-candidate.yaml: candidate not ready");
    release.upgrade(&[&values("seed-2-candidate.yaml")]).await?;
    cluster
        .wait_status(NS, ROUTEMAP, &["httpbin-0"], &["httpbin-0", "httpbin-1"])
        .await?;
    controller.wait_caught_up(cluster, NS).await?;
    let live = cluster.existing_route(NS, ROUTE).await?;
    let text = get_text(plugin, kc)?;
    println!("{text}");
    expect_lines(
        &text,
        &[
            &format!("Route HTTPRoute httpbin  generation {}", live.generation()),
            "httpbin-1  candidate  [!!] unavailable: deploy/httpbin-1",
            "matches traffic: test",
            "GET / [traffic: test]  -> httpbin-0 [rule 0]  (httpbin-1's match)",
        ],
    )?;
    check_against_live(
        &get_json(plugin, kc)?,
        &live,
        &[("httpbin-0", true), ("httpbin-1", false)],
    )?;
    ok("get: httpbin-1 unavailable with the reason, traffic: test still to httpbin-0, as live");
    let out = kubectl_iter8(
        plugin,
        kc,
        &["explain", "httpbin", "-n", NS, "-H", "traffic=test"],
    )?;
    let text = stdout(&out);
    println!("{text}");
    ensure!(out.status.success(), "explain failed");
    expect_lines(
        &text,
        &[
            "served by httpbin-0 [rule 0]",
            "this request is for httpbin-1 (traffic: test), which is unavailable: deploy/httpbin-1",
        ],
    )?;
    let expected = live.explain(&test_request());
    ensure!(
        expected.contains("httpbin-0"),
        "routing_core::explain on the live route: {expected}"
    );
    ok(format!(
        "explain -H traffic=test: httpbin-0, and why (live route: {expected})"
    ));

    step(3, "--watch sees httpbin-1 become ready");
    let flip = watch_flip(cluster, plugin).await?;
    ok(format!(
        "--watch showed httpbin-1 available {} ms after its Deployment status was written; Ctrl-C exits 0",
        flip.as_millis()
    ));
    ensure!(
        flip < Duration::from_secs(1),
        "the readiness flip took {flip:?}, more than a second"
    );
    let live = cluster
        .wait_route(
            NS,
            ROUTE,
            "a traffic: test rule to httpbin-1",
            canary_split("httpbin-0", "httpbin-1"),
        )
        .await?;
    controller.wait_caught_up(cluster, NS).await?;
    let live = cluster.route(NS, ROUTE).await?.unwrap_or(live);
    let text = get_text(plugin, kc)?;
    println!("{text}");
    expect_lines(
        &text,
        &[
            "httpbin-1  candidate  [ok] available  matches traffic: test",
            "GET / [traffic: test]  -> httpbin-1 [rule 0]",
            "GET /                  -> httpbin-0 [rule 1]",
        ],
    )?;
    check_against_live(
        &get_json(plugin, kc)?,
        &live,
        &[("httpbin-0", true), ("httpbin-1", true)],
    )?;
    ok("get: candidate live, traffic: test -> httpbin-1, the rest -> httpbin-0, as live");

    step(4, "errors and exit codes");
    errors(cluster, plugin).await?;
    Ok(())
}

/// Kills the watch on every path out (by its pid, through `Child`).
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `get --watch`, flips httpbin-1 available, returns how long until the tree said so,
/// then stops it with SIGINT (Ctrl-C) and requires exit code 0.
async fn watch_flip(cluster: &Cluster, plugin: &Path) -> Result<Duration> {
    let child = Command::new(plugin)
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["get", "httpbin", "-n", NS, "--watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning kubectl-iter8 get --watch")?;
    let mut child = Spawned(child);
    let out = child.0.stdout.take().context("stdout")?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let wait_line = |want: &str, limit: Duration| -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((at, line)) if line.contains(want) => return Ok(at),
                Ok(_) => {}
                Err(_) => bail!("--watch did not print {want:?} within {limit:?}"),
            }
        }
    };
    wait_line("httpbin-1  candidate  [!!] unavailable", timeout())?;
    // The first frame is out and the watches are starting: let them list before the flip, so
    // the flip arrives as a watch event (the time measured is the watch's, not a list's).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = Instant::now();
    cluster.set_deployment(NS, "httpbin-1", true).await?;
    let seen = wait_line("httpbin-1  candidate  [ok] available", timeout())?;
    let flip = seen.saturating_duration_since(written);
    let pid = child.0.id().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status()?;
    ensure!(status.success(), "kill -INT {pid}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let exit = loop {
        if let Some(s) = child.0.try_wait()? {
            break s;
        }
        ensure!(
            Instant::now() < deadline,
            "--watch still running 5 s after Ctrl-C"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ensure!(exit.code() == Some(0), "--watch exited {exit:?} on Ctrl-C");
    Ok(flip)
}

/// No such release (1), unreachable (4), forbidden (3), then the documented Role is enough.
async fn errors(cluster: &Cluster, plugin: &Path) -> Result<()> {
    let kc = cluster.kubeconfig.as_path();
    let out = kubectl_iter8(plugin, kc, &["get", "nosuch", "-n", NS])?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.code() == Some(1) && err.contains("no release \"nosuch\" in namespace \"test\""),
        "no such release: exit {:?}, {err}",
        out.status.code()
    );
    ok(format!("no such release: exit 1, {}", err.trim()));

    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let admin = std::fs::read_to_string(kc)?;
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .context("server in the kubeconfig")?;
    let unreachable = cluster.dir.join("kubeconfig-unreachable");
    std::fs::write(
        &unreachable,
        admin.replace(server, &format!("https://127.0.0.1:{closed}")),
    )?;
    let out = kubectl_iter8(plugin, &unreachable, &["get", "-n", NS])?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.code() == Some(4) && err.contains("cannot reach the API server"),
        "unreachable: exit {:?}, {err}",
        out.status.code()
    );
    ok(format!("unreachable server: exit 4, {}", err.trim()));

    // A user with no grants: forbidden, naming the verb and the resource.
    std::fs::OpenOptions::new()
        .append(true)
        .open(cluster.dir.join("tokens.csv"))
        .and_then(|mut f| {
            use std::io::Write;
            writeln!(
                f,
                "test-kubectl-iter8-viewer,iter8-viewer,iter8-viewer-uid,\"viewers\""
            )
        })?;
    let viewer = cluster.dir.join("kubeconfig-viewer");
    std::fs::write(
        &viewer,
        admin.replace(
            "test-apiserver-allows-everyone",
            "test-kubectl-iter8-viewer",
        ),
    )?;
    // The server re-reads the token file when it changes: wait until it knows the token.
    let deadline = Instant::now() + timeout();
    let out = loop {
        let out = kubectl_iter8(plugin, &viewer, &["get", "-n", NS])?;
        if out.status.code() == Some(3) || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.code() == Some(3)
            && err.contains("forbidden: you may not list")
            && err.contains("in namespace \"test\""),
        "forbidden: exit {:?}, {err}",
        out.status.code()
    );
    ok(format!(
        "no grants: exit 3, {}",
        err.lines().next().unwrap_or_default()
    ));

    // The documented read-only Role, bound in namespace test, is all it needs there.
    let rbac = std::fs::read_to_string(repo_root().join("docs/kubectl-rbac.yaml"))?;
    cluster.kubectl_in(&["apply", "-f", "-"], Some(&rbac))?;
    cluster.kubectl_in(
        &[
            "create",
            "rolebinding",
            "iter8-viewer",
            "-n",
            NS,
            "--clusterrole",
            "iter8-viewer",
            "--user",
            "iter8-viewer",
        ],
        None,
    )?;
    let deadline = Instant::now() + timeout();
    let out = loop {
        let out = kubectl_iter8(plugin, &viewer, &["get", "httpbin", "-n", NS])?;
        if out.status.code() == Some(0) || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(
        out.status.code() == Some(0)
            && stdout(&out).contains("httpbin-1  candidate  [ok] available"),
        "with docs/kubectl-rbac.yaml: exit {:?}, {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    ok(
        "with the ClusterRole iter8-viewer of docs/kubectl-rbac.yaml bound in test: exit 0, same tree",
    );
    let out = kubectl_iter8(plugin, &viewer, &["get", "-A"])?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.code() == Some(3) && err.contains("at the cluster scope"),
        "-A with a namespace binding: exit {:?}, {err}",
        out.status.code()
    );
    ok(format!(
        "-A with a RoleBinding only: exit 3, {}",
        err.lines().next().unwrap_or_default()
    ));

    // Last, as it removes every route: without the Gateway API CRD, exit 5.
    cluster.kubectl(&["delete", "crd", "httproutes.gateway.networking.k8s.io"])?;
    let deadline = Instant::now() + timeout();
    let out = loop {
        let out = kubectl_iter8(plugin, kc, &["get", "httpbin", "-n", NS])?;
        if out.status.code() == Some(5) || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.code() == Some(5) && err.contains("install the Gateway API CRDs"),
        "CRD missing: exit {:?}, {err}",
        out.status.code()
    );
    ok(format!("HTTPRoute CRD deleted: exit 5, {}", err.trim()));
    Ok(())
}
