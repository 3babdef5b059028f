//! The tutorial's application: `gunicorn --no-control-socket -w 1 -b 127.0.0.1:PORT httpbin:app`,
//! one per version, with an access log (what a mirror test counts, and which load request each
//! process served: the `x-load-id` header of every request is logged), stopped by its pid.
//! A version can instead be the faulty backend ([`super::faulty`]) under the same gunicorn, with
//! the same access log.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::faulty::{self, FaultSpec};
use crate::tools::{free_port, http_get, repo_root};

/// What a version's gunicorn serves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum App {
    /// httpbin (`httpbin:app`).
    Httpbin,
    /// The faulty backend (`e2e/apps/faulty.py`), starting with these faults.
    Faulty(FaultSpec),
}

/// A running httpbin.
#[derive(Debug)]
pub struct Httpbin {
    /// The version it serves (`httpbin-1`).
    pub name: String,
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    /// Its access log: one line per request it answered.
    pub access_log: PathBuf,
    /// What it serves.
    pub app: App,
    /// The faulty backend's control file (`None` for httpbin) and the last generation written.
    control: Option<(PathBuf, u64)>,
    child: Option<Child>,
}

impl Httpbin {
    /// Starts it, logging to `dir/httpbin-<tag>.log` and `dir/httpbin-<tag>.access.log`; waits
    /// until it answers.
    pub fn start(dir: &Path, tag: &str, name: &str) -> Result<Httpbin> {
        Self::start_app(dir, tag, name, App::Httpbin)
    }

    /// [`Self::start`] serving `app`: httpbin, or the faulty backend (its control file is
    /// `dir/httpbin-<tag>.faults.json`).
    pub fn start_app(dir: &Path, tag: &str, name: &str, app: App) -> Result<Httpbin> {
        let gunicorn = repo_root().join(".tools/dataplane/bin/gunicorn");
        ensure!(
            gunicorn.is_file(),
            "{} is missing: run: bash scripts/install-tools.sh",
            gunicorn.display()
        );
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let access_log = access_log(dir, tag);
        let log = std::fs::File::create(dir.join(format!("httpbin-{tag}.log")))?;
        let mut cmd = Command::new(&gunicorn);
        cmd.args(["--no-control-socket", "-w", "1", "-b", &addr.to_string()])
            .arg("--access-logfile")
            .arg(&access_log)
            // The request line (mirror markers) and the load generator's request id.
            .arg("--access-logformat")
            .arg(format!(
                "%(h)s \"%(r)s\" %(s)s id=%({{{}}}i)s",
                super::traffic::ID_HEADER
            ));
        let control = match app {
            App::Httpbin => {
                cmd.arg("httpbin:app");
                None
            }
            App::Faulty(faults) => {
                faults.check()?;
                let control = dir.join(format!("httpbin-{tag}.faults.json"));
                let _ = std::fs::remove_file(&control);
                cmd.args(faulty::gunicorn_args(&faulty::app_dir()?))
                    .envs(faulty::env(&faults, &control));
                Some((control, 0))
            }
        };
        let child = cmd
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", gunicorn.display()))?;
        let mut me = Httpbin {
            name: name.into(),
            addr,
            access_log,
            app,
            control,
            child: Some(child),
        };
        let started = Instant::now();
        loop {
            if matches!(http_get(addr, "/status/200"), Ok((200, _))) {
                break;
            }
            if let Some(c) = me.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "gunicorn for {name} exited ({status}); see {}",
                    dir.display()
                );
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("httpbin {name} not answering on {addr} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(me)
    }

    /// The faulty backend's faults from now on (the next request it counts); fails for httpbin.
    /// Returns once the app has them in effect.
    pub fn set_faults(&mut self, faults: FaultSpec) -> Result<Duration> {
        let Some((control, generation)) = self.control.as_mut() else {
            bail!("{} is httpbin, not the faulty backend", self.name);
        };
        *generation += 1;
        let took = faulty::apply(control, *generation, &faults)?;
        self.app = App::Faulty(faults);
        Ok(took)
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Requests in its access log whose line contains `marker`.
    pub fn served(&self, marker: &str) -> usize {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(marker))
            .count()
    }

    /// Stops it by its pid: SIGTERM (gunicorn stops its worker), SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::tools::stop_child(child, Duration::from_secs(10));
        }
    }
}

/// The access log of the httpbin started with `tag` in `dir` (appended to by every process
/// started with that tag, so it outlives each of them).
pub fn access_log(dir: &Path, tag: &str) -> PathBuf {
    dir.join(format!("httpbin-{tag}.access.log"))
}

/// The `x-load-id`s of the requests in an access log.
pub fn load_ids(access_log: &Path) -> HashSet<u64> {
    std::fs::read_to_string(access_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit_once(" id=")?.1.trim().parse().ok())
        .collect()
}

impl Drop for Httpbin {
    fn drop(&mut self) {
        self.stop();
    }
}
