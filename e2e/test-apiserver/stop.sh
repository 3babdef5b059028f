#!/usr/bin/env bash
# stop.sh DIR [--only etcd|apiserver]: stops the API server and etcd started by start.sh DIR
# (SIGTERM, then SIGKILL after 15 s; TAS_STOP_SIGNAL=KILL kills at once, to simulate a crash).
# Data, certificates and ports in DIR are kept.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -ge 1 ] || tas_die "usage: stop.sh DIR [--only etcd|apiserver]"
[ -d "$1" ] || tas_die "no such directory: $1"
DIR="$(cd "$1" && pwd)"
ONLY=""
if [ "${2:-}" = "--only" ]; then ONLY="${3:-}"; fi
case "$ONLY" in ""|etcd|apiserver) ;; *) tas_die "--only takes etcd or apiserver" ;; esac
unset ETCD_PORT ETCD_PEER_PORT APISERVER_PORT ETCD_PID APISERVER_PID
tas_load "$DIR"
if [ "$ONLY" != etcd ]; then tas_stop_pid "${APISERVER_PID:-}" apiserver "$DIR"; tas_set_pid "$DIR" apiserver ""; fi
if [ "$ONLY" != apiserver ]; then tas_stop_pid "${ETCD_PID:-}" etcd "$DIR"; tas_set_pid "$DIR" etcd ""; fi
