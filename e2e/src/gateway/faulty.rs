//! A failing backend beside httpbin: `e2e/apps/faulty.py`, a small WSGI app under the same
//! gunicorn, with the same access log and `x-load-id` marker (so [`super::httpbin::load_ids`] and
//! `served` work for it too). It answers a configured share of requests with 500,
//! deterministically (request `n` fails when `floor(n * share)` moves: 0.2 is every 5th), and
//! can add latency to every request. The share and latency can change while it runs: the
//! harness replaces a control file (by a rename) that the app re-reads, and waits until the app
//! says the new generation is in effect. `GET /status/<code>` (the readiness probe) is never
//! counted, failed or delayed. See the app's docstring for the details.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

use crate::tools::repo_root;

/// What the faulty backend does to the requests it counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultSpec {
    /// Share of requests answered 500, 0-1.
    pub error_share: f64,
    /// Added to every counted request (0: none).
    pub latency: Duration,
}

impl FaultSpec {
    /// No faults: answers every request with 200, at once.
    pub const HEALTHY: FaultSpec = FaultSpec {
        error_share: 0.0,
        latency: Duration::ZERO,
    };

    /// Checks the bounds the app accepts (share 0-1, latency up to 60 s).
    pub fn check(&self) -> Result<()> {
        ensure!(
            (0.0..=1.0).contains(&self.error_share),
            "error_share {} is not within 0-1",
            self.error_share
        );
        ensure!(
            self.latency <= Duration::from_secs(60),
            "latency {:?} is over 60 s",
            self.latency
        );
        Ok(())
    }

    fn latency_ms(&self) -> f64 {
        self.latency.as_secs_f64() * 1000.0
    }
}

impl std::fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}% 500s, {} ms added latency",
            self.error_share * 100.0,
            self.latency_ms()
        )
    }
}

/// The directory holding `faulty.py` (gunicorn's `--pythonpath`).
pub fn app_dir() -> Result<PathBuf> {
    let dir = repo_root().join("e2e/apps");
    ensure!(
        dir.join("faulty.py").is_file(),
        "{} is missing",
        dir.join("faulty.py").display()
    );
    Ok(dir)
}

/// gunicorn's arguments for the app (after the common ones): threads, so that added latency
/// does not queue requests behind each other, and the module.
pub fn gunicorn_args(app_dir: &Path) -> Vec<String> {
    vec![
        "--worker-class".into(),
        "gthread".into(),
        "--threads".into(),
        "16".into(),
        "--pythonpath".into(),
        app_dir.to_string_lossy().into_owned(),
        "faulty:app".into(),
    ]
}

/// Its environment at start.
pub fn env(faults: &FaultSpec, control: &Path) -> Vec<(String, String)> {
    vec![
        ("FAULTY_ERROR_SHARE".into(), faults.error_share.to_string()),
        ("FAULTY_LATENCY_MS".into(), faults.latency_ms().to_string()),
        (
            "FAULTY_CONTROL".into(),
            control.to_string_lossy().into_owned(),
        ),
    ]
}

/// Puts `faults` in effect as `generation` (greater than the last): writes the control file
/// through a temporary file and a rename, then waits until the app has written that generation
/// into `<control>.applied` (it re-reads every 20 ms). Returns how long that took.
pub fn apply(control: &Path, generation: u64, faults: &FaultSpec) -> Result<Duration> {
    faults.check()?;
    let started = Instant::now();
    let tmp = control.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(&json!({
            "generation": generation,
            "error_share": faults.error_share,
            "latency_ms": faults.latency_ms(),
        }))?,
    )?;
    std::fs::rename(&tmp, control)
        .with_context(|| format!("renaming into {}", control.display()))?;
    let applied = PathBuf::from(format!("{}.applied", control.display()));
    loop {
        let seen = std::fs::read_to_string(&applied).unwrap_or_default();
        if seen.trim().parse::<u64>().ok() == Some(generation) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(5) {
            bail!(
                "the faulty backend did not take generation {generation} ({faults}) within 5 s (it says {:?} in {})",
                seen.trim(),
                applied.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
