#!/usr/bin/env bash
# scripts/dockerd.sh start|stop|status DIR
#
# A private Docker daemon (Debian's `dockerd`, package docker.io) with its own folders and socket,
# leaving the host's network and any other daemon alone:
#   dockerd --data-root DIR/data --exec-root DIR/exec --pidfile DIR/dockerd.pid
#           -H unix://DIR/docker.sock --iptables=false --ip6tables=false --bridge=none
# (no bridge: containers get --network host or none; keep test traffic on 127.0.0.1).
#
#   start   starts it in the background (log: DIR/dockerd.log), waits until
#           `docker -H unix://DIR/docker.sock info` answers, and prints the DOCKER_HOST value
#           (unix://DIR/docker.sock) on stdout. A daemon of this DIR that is already running is
#           reused. Images stay in DIR/data across stop/start.
#   stop    stops it by the pid in DIR/dockerd.pid (SIGTERM, SIGKILL after 20 s); never by name.
#   status  exit 0 when this DIR's daemon answers.
#
# Fails with a message naming what is missing (the dockerd binary, root, a docker client).
# ITER8_DOCKERD_STORAGE_DRIVER (e.g. vfs) is passed as --storage-driver when set.
set -euo pipefail

die() { echo "dockerd.sh: ERROR: $*" >&2; exit 1; }
log() { echo "dockerd.sh: $*" >&2; }

[[ $# -eq 2 ]] || die "usage: dockerd.sh start|stop|status DIR"
cmd=$1
mkdir -p "$2"
D="$(cd "$2" && pwd)"
sock="${D}/docker.sock"
host="unix://${sock}"
pidfile="${D}/dockerd.pid"

# The pid of this DIR's dockerd when it is running (checked against /proc, so a stale pidfile or
# a recycled pid is never signalled).
our_pid() {
  local pid=""
  [[ -f "${pidfile}" ]] && pid="$(tr -dc 0-9 <"${pidfile}")"
  [[ -z "${pid}" && -f "${D}/dockerd.launch.pid" ]] && pid="$(tr -dc 0-9 <"${D}/dockerd.launch.pid")"
  [[ -n "${pid}" && -r "/proc/${pid}/cmdline" ]] || return 1
  local cl
  cl="$(tr '\0' ' ' <"/proc/${pid}/cmdline")"
  [[ "${cl}" == *dockerd* && "${cl}" == *"${pidfile}"* ]] || return 1
  echo "${pid}"
}

answers() { docker -H "${host}" info >/dev/null 2>&1; }

case "${cmd}" in
start)
  command -v docker >/dev/null ||
    die "no docker client on PATH: install Debian's docker.io (apt-get install -y --no-install-recommends docker.io)"
  if pid="$(our_pid)" && answers; then
    log "dockerd already running (pid ${pid}, ${host})"
    echo "${host}"
    exit 0
  fi
  command -v dockerd >/dev/null ||
    die "dockerd not found: install Debian's docker.io (apt-get install -y --no-install-recommends docker.io), or point DOCKER_HOST at a running daemon"
  [[ "$(id -u)" == 0 ]] ||
    die "dockerd needs root (running as uid $(id -u)); point DOCKER_HOST at a running daemon instead"
  if pid="$(our_pid)"; then
    die "dockerd pid ${pid} of ${D} is running but does not answer on ${host}; stop it first: dockerd.sh stop ${D}"
  fi
  rm -f "${pidfile}" "${D}/dockerd.launch.pid" "${sock}"
  mkdir -p "${D}/data" "${D}/exec"
  extra=()
  [[ -n "${ITER8_DOCKERD_STORAGE_DRIVER:-}" ]] && extra+=(--storage-driver "${ITER8_DOCKERD_STORAGE_DRIVER}")
  # setsid: the daemon does not get the caller's terminal signals (Ctrl-C in `just image`).
  setsid dockerd --data-root "${D}/data" --exec-root "${D}/exec" --pidfile "${pidfile}" \
    -H "${host}" --iptables=false --ip6tables=false --bridge=none "${extra[@]}" \
    >"${D}/dockerd.log" 2>&1 </dev/null &
  echo $! >"${D}/dockerd.launch.pid"
  launched=$!
  for _ in $(seq 1 300); do
    if answers; then
      log "dockerd up (pid $(our_pid || echo "${launched}"), ${host}, log ${D}/dockerd.log)"
      echo "${host}"
      exit 0
    fi
    if ! kill -0 "${launched}" 2>/dev/null; then
      tail -n 20 "${D}/dockerd.log" >&2 || true
      die "dockerd exited during start-up (log above: ${D}/dockerd.log); if the storage driver failed, try ITER8_DOCKERD_STORAGE_DRIVER=vfs"
    fi
    sleep 0.1
  done
  tail -n 20 "${D}/dockerd.log" >&2 || true
  kill -TERM "${launched}" 2>/dev/null || true
  die "dockerd did not answer on ${host} within 30 s (log: ${D}/dockerd.log)"
  ;;
stop)
  if ! pid="$(our_pid)"; then
    log "no dockerd running for ${D}"
    rm -f "${D}/dockerd.launch.pid"
    exit 0
  fi
  kill -TERM "${pid}"
  for _ in $(seq 1 200); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "${pid}" 2>/dev/null; then
    log "dockerd pid ${pid} still running 20 s after SIGTERM: SIGKILL"
    kill -KILL "${pid}" 2>/dev/null || true
  fi
  rm -f "${D}/dockerd.launch.pid"
  # dockerd leaves its network namespace bind-mounted under its exec root (exec/netns/default):
  # unmount what is still mounted below D, deepest first, so that the folder can be removed.
  awk -v d="${D}/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || log "cannot unmount ${m}"
  done
  log "dockerd stopped (pid ${pid})"
  ;;
status)
  answers
  ;;
*)
  die "usage: dockerd.sh start|stop|status DIR"
  ;;
esac
