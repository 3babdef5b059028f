#!/usr/bin/env bash
# The seed canary tutorial, offline: render the release chart at each step with real helm,
# print the HTTPRoute the controller would write, and show where requests with and without
# `traffic: test` go (the tutorial's curl checks), all with iter8-render.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
helm="${ITER8_TOOLS_DIR:-${root}/.tools}/bin/helm"
[[ -x "${helm}" ]] || { echo "demo: helm missing; run: bash scripts/install-tools.sh" >&2; exit 1; }
cargo build -q -p iter8-render
render="${CARGO_TARGET_DIR:-${root}/target}/debug/iter8-render"

step() {
  local title="$1" values="$2"; shift 2
  echo
  echo "=================================================================="
  echo "== ${title}"
  echo "== helm template httpbin charts/release -n test -f ${values} | iter8-render routes $*"
  echo "=================================================================="
  local manifest
  manifest="$("${helm}" template httpbin charts/release -n test -f "${values}")"
  echo "${manifest}" | "${render}" routes - "$@"
  echo "------------------------------------------------------------------"
  echo "\$ curl httpbin.test -s -D - | grep app-version"
  echo "${manifest}" | "${render}" explain - "$@"
  echo "\$ curl httpbin.test -H 'traffic: test' -s -D - | grep app-version"
  echo "${manifest}" | "${render}" explain - "$@" --header traffic=test
}

step "Step 1: deploy the initial version (httpbin-0)" fixtures/charts/values/seed-1-initial.yaml
step "Step 2a: candidate httpbin-1 deployed but not ready yet" fixtures/charts/values/seed-2-candidate.yaml --unready httpbin-1
step "Step 2b: candidate httpbin-1 ready" fixtures/charts/values/seed-2-candidate.yaml
step "Step 3: promote (version 0 redefined, candidate removed)" fixtures/charts/values/seed-3-promote.yaml
