#!/usr/bin/env bash
# e2e/run.sh [cargo test args...]: the end-to-end tier.
#
# 1. builds the test API server (e2e/test-apiserver/build.sh: cached, a no-op when up to date);
# 2. builds the controller binary the tests start (cargo build -p iter8-controller);
# 3. runs the e2e tests (cargo test -p iter8-e2e), one test file at a time, each against its own
#    fresh API server, printing every step.
#
# Needs helm and kubectl in .tools/bin (bash scripts/install-tools.sh), for the guard's tests
# Debian's /usr/bin/prometheus (bash scripts/install-tools.sh --prometheus), and for tests/install.rs
# Docker (DOCKER_HOST, or a private dockerd started here) with the image `just image` builds.
# Extra arguments go to cargo test, e.g. `e2e/run.sh --test seed`.
# ITER8_E2E_ONLY=<part of a scenario name> runs matching scenarios only;
# ITER8_E2E_TIMEOUT_SECS (default 20) is the limit of each wait.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
for tool in helm kubectl; do
  if [ ! -x ".tools/bin/$tool" ]; then
    echo "e2e: .tools/bin/$tool is missing: run: bash scripts/install-tools.sh" >&2
    exit 1
  fi
done

# The guard's tests (tests/guard_presets.rs, tests/guard.rs) run Debian's Prometheus as a child
# process: fail now, not after the builds, when it is missing and they are to run.
if [[ " $* " != *" --test "* || " $* " == *" --test guard"* ]] && [ ! -x /usr/bin/prometheus ]; then
  echo "e2e: /usr/bin/prometheus is missing: run (as root): bash scripts/install-tools.sh --prometheus" >&2
  exit 1
fi

echo "==> e2e: building the test API server (e2e/test-apiserver/build.sh)"
bash e2e/test-apiserver/build.sh
echo "==> e2e: building iter8-controller and kubectl-iter8"
cargo build -p iter8-controller -p kubectl-iter8
echo "==> e2e: building the tests"
cargo test -p iter8-e2e --no-run

# The install test (tests/install.rs) runs the controller image as the chart's pod: it needs a
# Docker daemon and the image. DOCKER_HOST when set (CI's private dockerd), else a private
# dockerd started here (scripts/dockerd.sh) and stopped by its pid at the end; the image is
# built when missing (scripts/image.sh). Skipped only when the arguments name other tests.
needs_docker=1
# tests/authority.rs runs the controller as the chart's pod too.
if [[ " $* " == *" --test "* && " $* " != *" --test install "* && " $* " != *" --test authority "* ]]; then needs_docker=""; fi
if [ -n "$needs_docker" ]; then
  if [ -n "${DOCKER_HOST:-}" ]; then
    docker info >/dev/null 2>&1 || {
      echo "e2e: DOCKER_HOST=$DOCKER_HOST does not answer (docker info failed): the install test needs a Docker daemon" >&2
      exit 1
    }
  else
    dockerd_dir="$(mktemp -d "${TMPDIR:-/tmp}/iter8-e2e-dockerd.XXXXXX")"
    trap 'bash scripts/dockerd.sh stop "$dockerd_dir" >/dev/null 2>&1 || true; rm -rf "$dockerd_dir"' EXIT
    echo "==> e2e: no DOCKER_HOST: starting a private dockerd (scripts/dockerd.sh, $dockerd_dir)"
    DOCKER_HOST="$(bash scripts/dockerd.sh start "$dockerd_dir")" || {
      echo "e2e: FAILED: the install test needs a Docker daemon and none could be started (see the dockerd.sh error above: Debian's docker.io, root); or set DOCKER_HOST" >&2
      exit 1
    }
    export DOCKER_HOST
  fi
  # The chart's default image, built from this checkout every time (cargo and docker rebuild
  # only what changed): an image left in the daemon under the same tag from another commit
  # must never be the one tested (tests/install.rs checks the binary's digest and revision).
  echo "==> e2e: building the chart's image from this checkout (scripts/image.sh)"
  bash scripts/image.sh
fi

echo "==> e2e: running (build took $((SECONDS - started)) s)"
tests_started=$SECONDS
cargo test -p iter8-e2e "$@" -- --test-threads=1 --nocapture
echo "==> e2e: passed (tests $((SECONDS - tests_started)) s, total $((SECONDS - started)) s)"
