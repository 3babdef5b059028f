#!/usr/bin/env bash
# e2e/run.sh [cargo test args...]: the end-to-end tier.
#
# 1. builds the test API server (e2e/test-apiserver/build.sh: cached, a no-op when up to date);
# 2. builds the controller binary the tests start (cargo build -p iter8-controller);
# 3. runs the e2e tests (cargo test -p iter8-e2e), one test file at a time, each against its own
#    fresh API server, printing every step.
#
# Needs helm and kubectl in .tools/bin (bash scripts/install-tools.sh).
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

echo "==> e2e: building the test API server (e2e/test-apiserver/build.sh)"
bash e2e/test-apiserver/build.sh
echo "==> e2e: building iter8-controller"
cargo build -p iter8-controller
echo "==> e2e: building the tests"
cargo test -p iter8-e2e --no-run

echo "==> e2e: running (build took $((SECONDS - started)) s)"
tests_started=$SECONDS
cargo test -p iter8-e2e "$@" -- --test-threads=1 --nocapture
echo "==> e2e: passed (tests $((SECONDS - tests_started)) s, total $((SECONDS - started)) s)"
