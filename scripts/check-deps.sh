#!/usr/bin/env bash
# The crates follow the data flow (README "How it works"): the offline renderer links no
# Kubernetes client, HTTP server or lease manager, and the controller links none of the
# renderer's speed-ups; the kubectl plugin links the pure crates and a read-only client.
# Fails, naming the crate, when a dependency crosses that line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

check() {
  local package="$1" forbidden="$2" tree
  tree="$(cargo tree -p "${package}" -e normal --prefix none --format '{p}')"
  local found
  found="$(grep -E "^(${forbidden}) " <<<"${tree}" | sort -u || true)"
  if [[ -n "${found}" ]]; then
    echo "check-deps: ${package} must not link: ${found//$'\n'/, }" >&2
    return 1
  fi
  echo "check-deps: ${package} links none of: ${forbidden//|/, }"
}

check iter8-render 'kube-client|kube-runtime|hyper|axum|kube-lease-manager'
check iter8-controller 'rayon|mimalloc'
# The kubectl plugin only reads: none of the controller's write side, admin server or election.
check kubectl-iter8 'k8s-adapter|axum|kube-lease-manager|prometheus-client|rayon|mimalloc'
