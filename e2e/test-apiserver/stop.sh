#!/usr/bin/env bash
# stop.sh DIR [--only etcd|apiserver]: stops the API server and etcd started by start.sh DIR
# (SIGTERM, then SIGKILL after 15 s). Data, certificates and ports in DIR are kept.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -ge 1 ] || tas_die "usage: stop.sh DIR [--only etcd|apiserver]"
[ -d "$1" ] || tas_die "no such directory: $1"
DIR="$(cd "$1" && pwd)"
ONLY=""
if [ "${2:-}" = "--only" ]; then ONLY="${3:-}"; fi
case "$ONLY" in ""|etcd|apiserver) ;; *) tas_die "--only takes etcd or apiserver" ;; esac
ETCD_PID="" APISERVER_PID=""
tas_load "$DIR"
if [ "$ONLY" != etcd ]; then tas_stop_pid "${APISERVER_PID:-}" apiserver; APISERVER_PID=""; fi
if [ "$ONLY" != apiserver ]; then tas_stop_pid "${ETCD_PID:-}" etcd; ETCD_PID=""; fi
tas_write_pids "$DIR"
