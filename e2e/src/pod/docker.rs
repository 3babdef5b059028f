//! The Docker daemon the pods run in.

use std::process::Command;

use anyhow::{Context, Result, anyhow};

use crate::tools::run;

/// The Docker daemon the tests use: `DOCKER_HOST` (e2e/run.sh starts a private one when it is
/// not set).
#[derive(Debug, Clone)]
pub struct Docker {
    /// `DOCKER_HOST` value (empty: the client's default).
    pub host: String,
}

impl Docker {
    /// The daemon of `DOCKER_HOST`, checked to answer; fails naming what is missing.
    pub fn from_env() -> Result<Docker> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_default();
        let docker = Docker { host };
        let which = if docker.host.is_empty() {
            "the docker client's default daemon (DOCKER_HOST is not set)".to_string()
        } else {
            format!("DOCKER_HOST={}", docker.host)
        };
        docker
            .run(&["version", "--format", "{{.Server.Version}}"])
            .with_context(|| {
                format!(
                    "no Docker daemon answers at {which}: run the tests with bash e2e/run.sh (it starts a private dockerd with scripts/dockerd.sh), or export DOCKER_HOST=$(bash scripts/dockerd.sh start DIR); dockerd comes from Debian's docker.io"
                )
            })?;
        Ok(docker)
    }

    /// `docker ARGS` for this daemon.
    pub fn command(&self) -> Command {
        let mut c = Command::new("docker");
        if !self.host.is_empty() {
            c.env("DOCKER_HOST", &self.host);
        }
        c
    }

    /// Runs `docker ARGS`, returns stdout trimmed.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        Ok(run(self.command().args(args), None)?.trim().to_string())
    }

    /// `image: NAME:TAG, S MB, user U` of an image in the daemon (what
    /// `scripts/image-check.sh` prints), or an error naming `bash scripts/image.sh`.
    pub fn describe_image(&self, image: &str) -> Result<String> {
        let out = self
            .run(&["image", "inspect", "-f", "{{.Size}} {{.Config.User}}", image])
            .with_context(|| {
                format!("image {image} is not in the Docker daemon: build it with bash scripts/image.sh (just image)")
            })?;
        let (size, user) = out
            .split_once(' ')
            .ok_or_else(|| anyhow!("unexpected docker image inspect output {out:?}"))?;
        let size: f64 = size.parse()?;
        let uid = user.split(':').next().unwrap_or_default();
        Ok(format!(
            "image: {image}, {:.1} MB, user {uid}",
            size / 1_000_000.0
        ))
    }
}
