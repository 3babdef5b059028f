#!/usr/bin/env bash
# `just tutorial`: the seed canary tutorial, live (e2e/src/bin/iter8-tutorial.rs): the test API
# server, the iter8 controller, Envoy programmed by the test-only translator, httpbin per
# version; the tutorial's real helm and curl steps with their real answers. `guard` as argument:
# the guarded canary instead (Debian's Prometheus too, installed by install-tools.sh). Everything it starts is
# stopped by its pid on exit, on failure and on Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
tools="${ITER8_TOOLS_DIR:-${root}/.tools}"
for t in bin/helm bin/kubectl dataplane/bin/python dataplane/bin/gunicorn; do
  [[ -x "${tools}/${t}" ]] || { echo "tutorial: ${tools}/${t} missing; run: bash scripts/install-tools.sh" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "tutorial: curl not found (the tutorial's own check)" >&2; exit 1; }

# The guarded canary runs Debian's Prometheus (apt-get; idempotent, nothing installed twice).
if [[ "${1:-}" == "guard" ]]; then
  bash scripts/install-tools.sh --prometheus
fi

# Ctrl-C or SIGTERM: the runner gets SIGTERM and stops what it started (by pid) before exiting.
pid=""
trap '[[ -n "${pid}" ]] && kill -TERM "${pid}" 2>/dev/null; [[ -n "${pid}" ]] && wait "${pid}"; exit 130' INT TERM
echo "==> tutorial: building the test API server (e2e/test-apiserver/build.sh; cached: under a"
echo "    second when up to date, about 7 minutes on a fresh machine, progress below)"
bash e2e/test-apiserver/build.sh
echo "==> tutorial: building iter8-controller, kubectl-iter8 and the tutorial runner (cargo build; a few minutes the first time)"
# Both binaries by name: `--bin` limits a build to the binaries it names, in every package given.
cargo build -q -p iter8-controller --bin iter8-controller -p kubectl-iter8 --bin kubectl-iter8 -p iter8-e2e --bin iter8-tutorial
runner="${CARGO_TARGET_DIR:-${root}/target}/debug/iter8-tutorial"

# `just tutorial guard`: the guarded canary (the guard withdraws a failing candidate).
"${runner}" "$@" &
pid=$!
wait "${pid}"
