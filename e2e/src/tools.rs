//! Paths in the repository, the binaries and tools the tests run, and how they are run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

use crate::out::note;

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A fixture under `fixtures/charts/values`.
pub fn values(name: &str) -> PathBuf {
    repo_root().join("fixtures/charts/values").join(name)
}

/// `seed-3-promote.yaml` as a real promotion would be: the tutorial changes only the version
/// label, a real one the image too, so the Deployment's spec changes and the new primary is
/// unavailable until it has rolled out. Written to `dir/<name>.yaml`; returns its path.
pub fn promote_with_new_image(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        std::fs::read_to_string(values("seed-3-promote.yaml"))?.replace(
            "image: kennethreitz/httpbin",
            "image: kennethreitz/httpbin:latest",
        ),
    )?;
    Ok(path)
}

/// `KEY`'s value in a shell `KEY=value` file such as the test API server's `DIR/env`.
pub fn read_env_file(path: &Path, key: &str) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches("export ").split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim_matches(|c| c == '"' || c == '\'').to_string())
        .ok_or_else(|| anyhow!("no {key} in {}", path.display()))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The target directory and profile directory of the running test, bench or binary:
/// `<target>/<profile>/deps/<test>-<hash>`, or `<target>/<profile>/<binary>` (`just tutorial`'s
/// iter8-tutorial).
fn target_and_profile() -> Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe()?;
    let parent = exe.parent();
    let profile = if parent.is_some_and(|p| p.ends_with("deps")) {
        parent.and_then(Path::parent)
    } else {
        parent
    }
    .ok_or_else(|| anyhow!("cannot locate the target directory from {}", exe.display()))?;
    let target = profile
        .parent()
        .ok_or_else(|| anyhow!("cannot locate the target directory from {}", exe.display()))?;
    Ok((target.to_path_buf(), profile.to_path_buf()))
}

/// The cargo target directory the running test or binary was built in.
pub fn target_dir() -> Result<PathBuf> {
    Ok(target_and_profile()?.0)
}

/// A binary of the workspace from the profile that built the running test or bench (`debug`
/// for `cargo test`, `release` for `cargo bench`), else from the other profile.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let (target, profile) = target_and_profile()?;
    for dir in [profile, target.join("release"), target.join("debug")] {
        let bin = dir.join(name);
        if bin.is_file() {
            return Ok(bin);
        }
    }
    bail!(
        "{name} is not built under {}: run: cargo build -p {name} (e2e/run.sh does it first)",
        target.display()
    )
}

/// A tool installed by `scripts/install-tools.sh` (helm, kubectl).
pub fn tool(name: &str) -> Result<PathBuf> {
    let bin = repo_root().join(".tools/bin").join(name);
    ensure!(
        bin.is_file(),
        "{} is missing: run: bash scripts/install-tools.sh (installs helm and kubectl into .tools/bin)",
        bin.display()
    );
    Ok(bin)
}

/// Runs a command to completion (`input` on its stdin) and returns its stdout; fails with its
/// output when it fails.
pub fn run(cmd: &mut Command, input: Option<&str>) -> Result<String> {
    let shown = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {shown}"))?;
    if let Some(text) = input {
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("no stdin for {shown}"))?;
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("{shown} failed ({}):\n{stdout}{stderr}", out.status);
    }
    Ok(stdout)
}

/// `bash e2e/test-apiserver/<script> <dir> <args>` with extra environment.
pub fn script(name: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("e2e/test-apiserver").join(name))
        .arg(dir)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, None)
}

/// Builds the test API server once per process (`build.sh`: cached, a no-op when up to date;
/// it waits on a lock while another build runs).
pub fn ensure_apiserver_built() -> Result<()> {
    static BUILT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let started = Instant::now();
            let build = repo_root().join("e2e/test-apiserver/build.sh");
            let status = Command::new("bash")
                .arg(&build)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .status()
                .map_err(|e| format!("cannot run {}: {e}", build.display()))?;
            if !status.success() {
                return Err(format!("bash {} failed ({status})", build.display()));
            }
            note(format!(
                "test API server built (build.sh, {:.1}s)",
                started.elapsed().as_secs_f64()
            ));
            Ok(())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// A tiny HTTP/1.1 GET (the controller's admin server is plain HTTP on loopback): status code
/// and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP answer: {buf:.80}"))?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((code, body.to_string()))
}

/// Runs `kubectl-iter8 --kubeconfig KUBECONFIG ARGS...` (the kubectl plugin, `kubectl iter8`).
pub fn kubectl_iter8(
    plugin: &Path,
    kubeconfig: &Path,
    args: &[&str],
) -> Result<std::process::Output> {
    Command::new(plugin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {args:?}", plugin.display()))
}

/// Stops a child process by its pid: SIGTERM, SIGKILL if it still runs after `grace`; then
/// reaps it. Never by name.
pub fn stop_child(mut child: Child, grace: Duration) {
    let pid = child.id().to_string();
    let signal = |sig: &str| {
        let _ = Command::new("kill")
            .args([sig, &pid])
            .stderr(Stdio::null())
            .status();
    };
    signal("-TERM");
    let deadline = Instant::now() + grace;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if matches!(child.try_wait(), Ok(None)) {
        signal("-KILL");
    }
    let _ = child.wait();
}
