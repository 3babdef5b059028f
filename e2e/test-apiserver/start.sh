#!/usr/bin/env bash
# start.sh DIR [--only etcd|apiserver]
#
# Starts etcd (data in DIR/etcd-data) and the test API server (certificate in DIR/certs) on
# 127.0.0.1, each on a free port, waits until /readyz is ok and returns. Writes:
#   DIR/kubeconfig  kubectl/kube-rs config (server https://127.0.0.1:PORT, CA = DIR/certs/ca.crt)
#   DIR/env         KUBECONFIG, ETCD_PORT, ETCD_PEER_PORT, ETCD_ENDPOINT, APISERVER_PORT, APISERVER_URL
#   DIR/pids        ETCD_PID, APISERVER_PID (also DIR/etcd.pid, DIR/apiserver.pid)
#   DIR/etcd.log, DIR/apiserver.log
# Ports already recorded in DIR/env are reused, so a stopped component comes back on the same
# port with the same data. --only starts just one component (it must not be running).
# Builds the server first if needed (build.sh; a no-op in seconds when up to date).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 1 ] || tas_die "usage: start.sh DIR [--only etcd|apiserver]"
mkdir -p "$1"
DIR="$(cd "$1" && pwd)"
ONLY=""
if [ "${2:-}" = "--only" ]; then ONLY="${3:-}"; fi
case "$ONLY" in ""|etcd|apiserver) ;; *) tas_die "--only takes etcd or apiserver" ;; esac

tas_binaries
# ports come from DIR/env only, never from the caller's environment (another DIR's env)
unset ETCD_PORT ETCD_PEER_PORT APISERVER_PORT ETCD_PID APISERVER_PID
tas_load "$DIR"

if [ -z "$ONLY" ]; then
  if tas_ours "${ETCD_PID:-}" "$DIR" || tas_ours "${APISERVER_PID:-}" "$DIR"; then
    tas_die "already running in $DIR (pids: etcd ${ETCD_PID:-none}, apiserver ${APISERVER_PID:-none}); use stop.sh first"
  fi
  # a failed full start leaves nothing running
  trap 'rc=$?; if [ $rc -ne 0 ]; then bash "$TAS_HERE/stop.sh" "$DIR" >/dev/null 2>&1 || true; fi' EXIT
fi
: "${ETCD_PORT:=$(tas_free_port)}"
: "${ETCD_PEER_PORT:=$(tas_free_port)}"
: "${APISERVER_PORT:=$(tas_free_port)}"
while [ "$ETCD_PEER_PORT" = "$ETCD_PORT" ]; do ETCD_PEER_PORT=$(tas_free_port); done
while [ "$APISERVER_PORT" = "$ETCD_PORT" ] || [ "$APISERVER_PORT" = "$ETCD_PEER_PORT" ]; do APISERVER_PORT=$(tas_free_port); done
tas_write_kubeconfig "$DIR"

if [ "$ONLY" != apiserver ]; then
  tas_ours "${ETCD_PID:-}" "$DIR" && tas_die "etcd already running (pid $ETCD_PID)"
  tas_start_etcd "$DIR"
fi
if [ "$ONLY" != etcd ]; then
  tas_ours "${APISERVER_PID:-}" "$DIR" && tas_die "API server already running (pid $APISERVER_PID)"
  tas_start_apiserver "$DIR"
elif tas_ours "${APISERVER_PID:-}" "$DIR"; then
  # etcd came back under a running API server: wait until it serves reads again
  tas_wait_serving || tas_die "API server does not serve after the etcd restart (log: $DIR/apiserver.log)"
  tas_log "API server serves again after the etcd start"
fi
tas_log "env: $DIR/env   kubeconfig: $DIR/kubeconfig"
