//! Scenarios run one after the other on one API server: a failing scenario prints the logs of
//! the controllers it started and the server's, the server is brought back if a fault left it
//! down, and the other scenarios still run; [`Suite::finish`] fails the test.

use std::future::Future;
use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::cluster::Cluster;
use crate::controller::{Controller, take_logs};
use crate::out::note;
use crate::release::Release;
use crate::tools::{tool, values};

/// The scenarios of one test file.
#[derive(Debug)]
pub struct Suite<'a> {
    cluster: &'a Cluster,
    failures: Vec<String>,
    started: Instant,
    only: Option<String>,
}

impl<'a> Suite<'a> {
    /// A suite on `cluster`; fails at once if helm or kubectl is missing.
    pub fn new(cluster: &'a Cluster) -> Result<Self> {
        tool("kubectl")?;
        tool("helm")?;
        Ok(Suite {
            cluster,
            failures: Vec::new(),
            started: Instant::now(),
            // ITER8_E2E_ONLY=name runs matching scenarios only (while debugging).
            only: std::env::var("ITER8_E2E_ONLY").ok(),
        })
    }

    /// Runs one scenario.
    pub async fn run<F>(&mut self, name: &str, scenario: F)
    where
        F: Future<Output = Result<()>>,
    {
        if self.only.as_deref().is_some_and(|o| !name.contains(o)) {
            println!("\n=== {name}: skipped (ITER8_E2E_ONLY)");
            return;
        }
        println!("\n=== {name}");
        take_logs();
        let started = Instant::now();
        match scenario.await {
            Ok(()) => println!("--- PASS {name} ({:.1}s)", started.elapsed().as_secs_f64()),
            Err(e) => {
                println!(
                    "--- FAIL {name} ({:.1}s): {e:#}",
                    started.elapsed().as_secs_f64()
                );
                self.cluster.keep();
                for (who, path) in take_logs() {
                    print_tail(&format!("controller {who}"), &path, 120);
                }
                print_tail("apiserver", &self.cluster.dir.join("apiserver.log"), 15);
                self.failures.push(format!("{name}: {e:#}"));
                self.cluster.heal().await;
            }
        }
    }

    /// Prints the traffic; fails if a scenario failed.
    pub fn finish(self) -> Result<()> {
        println!(
            "\n{} scenario(s) failed, total {:.1}s",
            self.failures.len(),
            self.started.elapsed().as_secs_f64()
        );
        if !self.failures.is_empty() {
            bail!("failed scenarios:\n{}", self.failures.join("\n"));
        }
        Ok(())
    }
}

/// How most scenarios begin: namespace `ns`, release `httpbin` of the values file `values_file`
/// (`fixtures/charts/values`) in it, and a controller `iter8-controller-0` watching it, ready.
pub async fn release_with_controller<'a>(
    cluster: &'a Cluster,
    ns: &str,
    values_file: &str,
) -> Result<(Release<'a>, Controller)> {
    cluster.create_namespace(ns).await?;
    note(format!("namespace {ns} created"));
    let mut release = Release::new(cluster, "httpbin", ns);
    release.upgrade(&[&values(values_file)]).await?;
    let mut controller = Controller::start(cluster, ns, "iter8-controller-0")?;
    controller.wait_ready().await?;
    Ok((release, controller))
}

/// Prints the last `lines` lines of a log.
pub fn print_tail(who: &str, path: &Path, lines: usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    println!(
        "----- {who}: last {} lines of {}",
        all.len() - from,
        path.display()
    );
    for l in &all[from..] {
        println!("{l}");
    }
    println!("-----");
}
