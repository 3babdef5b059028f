#!/usr/bin/env bash
# smoke.sh [DIR]: self-check of the test API server with kubectl 1.33.
# Builds if needed, starts etcd + the server in DIR (default: a temp dir), runs the checks, stops
# everything (KEEP=1 leaves it running) and prints "N passed, M failed". Exit 1 on any failure.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="${1:-$(mktemp -d /tmp/test-apiserver-smoke.XXXXXX)}"
mkdir -p "$DIR"; DIR="$(cd "$DIR" && pwd)"
CRDS="${ITER8_CRDS_DIR:-$TAS_REPO/../shared/crds}"
[ -f "$CRDS/gateway.networking.k8s.io_httproutes.yaml" ] || CRDS=/work/shared/crds
HTTPROUTE_CRD="$CRDS/gateway.networking.k8s.io_httproutes.yaml"
[ -f "$HTTPROUTE_CRD" ] || tas_die "HTTPRoute CRD not found (looked in ../shared/crds); set ITER8_CRDS_DIR"

T0=$(date +%s)
KUBECTL=$(tas_kubectl) || exit 1
bash "$TAS_HERE/start.sh" "$DIR" || { echo "0 passed, 1 failed"; exit 1; }
cleanup() { [ "${KEEP:-0}" = 1 ] || bash "$TAS_HERE/stop.sh" "$DIR" >/dev/null 2>&1; }
trap cleanup EXIT
. "$DIR/env"
export KUBECONFIG
NS=smoke-$(date +%s)   # unique: the smoke test can run again on the same DIR
W="$DIR/work"; mkdir -p "$W"

# kubectl without the client/server version-skew warning (kubectl 1.33 against 1.36 libraries)
k() { "$KUBECTL" "$@" 2> >(grep -v 'version difference between client' >&2); }

PASS=0 FAIL=0
check() { # check NAME COMMAND...: runs the command, prints PASS/FAIL
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then
    PASS=$((PASS + 1)); echo "PASS  $name"
  else
    FAIL=$((FAIL + 1)); echo "FAIL  $name"; echo "$out" | grep -v 'version difference between client' | sed 's/^/      /' | tail -15
  fi
}
expect_eq() { [ "$1" = "$2" ] || { echo "expected [$2], got [$1]"; return 1; }; }
jp() { k get "$@" 2>/dev/null; }   # jp RESOURCE... -o jsonpath=...

# ------------------------------------------------------------------------------------------
t_version() { k version -o json | python3 -c 'import json,sys; v=json.load(sys.stdin)["serverVersion"]["gitVersion"]; print(v); sys.exit(0 if v.startswith("v1.") else 1)'; }
check "kubectl version reports the server version" t_version

t_default_ns() {
  for n in default kube-system kube-public; do
    expect_eq "$(jp ns "$n" -o jsonpath='{.status.phase}')" Active || return 1
  done
}
check "default namespaces exist and are Active" t_default_ns

t_create_ns() {
  k create namespace "$NS" && expect_eq "$(jp ns "$NS" -o jsonpath='{.status.phase}')" Active
}
check "create namespace (phase Active)" t_create_ns

t_discovery() {
  local r; r=$(k api-resources --no-headers) || return 1
  for s in cm svc deploy ns ev; do echo "$r" | awk '{print $2}' | grep -qx "$s" || { echo "short name $s missing"; return 1; }; done
  k get svc,deploy,cm,ev -n "$NS" >/dev/null
}
check "discovery: short names cm/svc/deploy/ns/ev (kubectl get svc,deploy,cm,ev)" t_discovery

t_crd() {
  k apply --server-side -f "$HTTPROUTE_CRD" || return 1
  local i
  for i in $(seq 1 100); do
    k wait --for condition=Established crd/httproutes.gateway.networking.k8s.io --timeout=10s >/dev/null 2>&1 && break
    sleep 0.2
  done
  expect_eq "$(jp crd httproutes.gateway.networking.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')" True || return 1
  # both versions served and discoverable
  for i in $(seq 1 50); do
    k get httproutes.v1.gateway.networking.k8s.io -n "$NS" >/dev/null 2>&1 \
      && k get httproutes.v1beta1.gateway.networking.k8s.io -n "$NS" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  k get httproutes.v1beta1.gateway.networking.k8s.io -n "$NS"
}
check "HTTPRoute CRD applies, is Established, serves v1 and v1beta1" t_crd

cat > "$W/objects.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: $NS, labels: {app: web, tier: config}}
data: {mode: canary}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other-config, namespace: $NS, labels: {app: other}}
data: {mode: stable}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $NS, labels: {app: web}}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 8080}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v1, namespace: $NS, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web, version: v1}}
  template:
    metadata: {labels: {app: web, version: v1}}
    spec:
      containers:
      - {name: app, image: example.invalid/web:1}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: $NS, labels: {app: web}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs:
    - {name: web, port: 80, weight: 90}
    - {name: web-v2, port: 80, weight: 10}
EOF
t_ssa() {
  k apply --server-side --field-manager=smoke -f "$W/objects.yaml" || return 1
  expect_eq "$(jp cm app-config -n "$NS" -o jsonpath='{.data.mode}')" canary || return 1
  expect_eq "$(jp httproute web -n "$NS" -o jsonpath='{.spec.rules[0].backendRefs[1].weight}')" 10 || return 1
  # the same object read through the other CRD version
  expect_eq "$(jp httproutes.v1beta1.gateway.networking.k8s.io web -n "$NS" -o jsonpath='{.apiVersion}')" gateway.networking.k8s.io/v1beta1
}
check "server-side apply ConfigMap, Service, Deployment, HTTPRoute" t_ssa

t_managed_fields() {
  local mf; mf=$(k get svc web -n "$NS" -o json --show-managed-fields) || return 1
  echo "$mf" | grep -q 'k:{\\"port\\":80,\\"protocol\\":\\"TCP\\"}' || { echo "no list-map key for the Service port in managedFields"; echo "$mf" | head -40; return 1; }
  echo "$mf" | python3 -c 'import json,sys; m=json.load(sys.stdin)["metadata"]["managedFields"]; sys.exit(0 if any(e["manager"]=="smoke" and e["operation"]=="Apply" for e in m) else 1)'
}
check "managed fields carry list-map keys (Service port keyed by port+protocol)" t_managed_fields

t_strict() {
  local out
  out=$(k apply --server-side --field-manager=smoke -f - 2>&1 <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: strict-check, namespace: $NS}
data: {a: b}
notAField: 1
EOF
) && { echo "unknown field was accepted: $out"; return 1; }
  echo "$out" | grep -qi 'notAField' || { echo "$out"; return 1; }
}
check "unknown fields are rejected (strict field validation)" t_strict

t_deploy_status() {
  expect_eq "$(jp deploy web-v1 -n "$NS" -o jsonpath='{.metadata.generation}/{.status.replicas}')" "1/" || return 1
  k patch deploy web-v1 -n "$NS" --subresource=status --type=merge \
    -p '{"status":{"observedGeneration":1,"replicas":2,"readyReplicas":2,"availableReplicas":2,"updatedReplicas":2}}' || return 1
  expect_eq "$(jp deploy web-v1 -n "$NS" -o jsonpath='{.status.readyReplicas}')" 2 || return 1
  # a /status write cannot change spec
  k patch deploy web-v1 -n "$NS" --subresource=status --type=merge -p '{"spec":{"replicas":7}}' || return 1
  expect_eq "$(jp deploy web-v1 -n "$NS" -o jsonpath='{.spec.replicas}')" 2 || return 1
  # a main-resource write cannot change status, and keeps it
  k patch deploy web-v1 -n "$NS" --type=merge -p '{"metadata":{"annotations":{"a":"b"}},"status":{"readyReplicas":0}}' || return 1
  expect_eq "$(jp deploy web-v1 -n "$NS" -o jsonpath='{.status.readyReplicas}/{.metadata.generation}')" "2/1" || return 1
  # a spec change bumps the generation
  k patch deploy web-v1 -n "$NS" --type=merge -p '{"spec":{"replicas":3}}' || return 1
  expect_eq "$(jp deploy web-v1 -n "$NS" -o jsonpath='{.metadata.generation}/{.status.observedGeneration}')" "2/1"
}
check "Deployment /status: patch via --subresource=status, spec kept, status kept, generation bumped" t_deploy_status

t_svc_status() {
  k patch svc web -n "$NS" --subresource=status --type=merge \
    -p '{"status":{"loadBalancer":{"ingress":[{"ip":"127.0.0.2"}]}}}' || return 1
  expect_eq "$(jp svc web -n "$NS" -o jsonpath='{.status.loadBalancer.ingress[0].ip}')" 127.0.0.2
}
check "Service /status subresource" t_svc_status

t_labels() {
  expect_eq "$(k get cm -n "$NS" -l app=web -o name)" configmap/app-config || return 1
  expect_eq "$(k get cm -n "$NS" -l 'app in (web,other)' -o name | wc -l)" 2 || return 1
  expect_eq "$(k get deploy,svc,cm -n "$NS" -l app=web -o name | sort | tr '\n' ' ')" "configmap/app-config deployment.apps/web-v1 service/web "
}
check "list with label selectors" t_labels

t_watch() {
  local rv out pid
  rv=$(jp cm -n "$NS" -o jsonpath='{.metadata.resourceVersion}') || return 1
  k get cm -n "$NS" --watch-only --output-watch-events \
    -o jsonpath='{.type} {.object.metadata.name}{"\n"}' > "$W/watch.out" 2>&1 &
  pid=$!
  sleep 1
  k create cm watched -n "$NS" --from-literal=x=1 >/dev/null || { kill $pid; return 1; }
  k patch cm watched -n "$NS" --type=merge -p '{"data":{"x":"2"}}' >/dev/null
  k delete cm watched -n "$NS" >/dev/null
  local i
  for i in $(seq 1 50); do grep -q 'DELETED' "$W/watch.out" && break; sleep 0.1; done
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
  out=$(tr '\n' ' ' < "$W/watch.out")
  expect_eq "$out" "ADDED watched MODIFIED watched DELETED watched "
}
check "watch (ADDED, MODIFIED, DELETED)" t_watch

t_conflict() {
  local out
  k apply --server-side --field-manager=alice -f - <<EOF || return 1
apiVersion: v1
kind: ConfigMap
metadata: {name: shared, namespace: $NS}
data: {owner: alice}
EOF
  cat > "$W/bob.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: shared, namespace: $NS}
data: {owner: bob}
EOF
  out=$(k apply --server-side --field-manager=bob -f "$W/bob.yaml" 2>&1) && { echo "no conflict: $out"; return 1; }
  echo "$out" | grep -qi 'conflict' || { echo "$out"; return 1; }
  echo "$out" | grep -q 'alice' || { echo "conflict does not name the other manager: $out"; return 1; }
  expect_eq "$(jp cm shared -n "$NS" -o jsonpath='{.data.owner}')" alice || return 1
  k apply --server-side --field-manager=bob --force-conflicts -f "$W/bob.yaml" || return 1
  expect_eq "$(jp cm shared -n "$NS" -o jsonpath='{.data.owner}')" bob || return 1
  k get cm shared -n "$NS" -o json --show-managed-fields | python3 -c '
import json,sys
m=json.load(sys.stdin)["metadata"]["managedFields"]
owners=[e["manager"] for e in m if "f:owner" in json.dumps(e.get("fieldsV1",{}))]
sys.exit(0 if owners==["bob"] else print(owners) or 1)'
}
check "SSA conflict between field managers; --force-conflicts takes ownership" t_conflict

t_lease() {
  k create -f - <<EOF || return 1
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: iter8-leader, namespace: $NS}
spec: {holderIdentity: pod-a, leaseDurationSeconds: 15}
EOF
  k patch lease iter8-leader -n "$NS" --type=merge -p '{"spec":{"holderIdentity":"pod-b","leaseTransitions":1}}' || return 1
  expect_eq "$(jp lease iter8-leader -n "$NS" -o jsonpath='{.spec.holderIdentity}/{.spec.leaseTransitions}')" "pod-b/1"
}
check "Lease create and update" t_lease

t_events() {
  k create -f - <<EOF || return 1
apiVersion: v1
kind: Event
metadata: {name: web.rollout.1, namespace: $NS}
involvedObject: {apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, name: web, namespace: $NS}
reason: WeightsChanged
message: "web=90 web-v2=10"
type: Normal
source: {component: iter8-controller}
EOF
  k create -f - <<EOF || return 1
apiVersion: v1
kind: Event
metadata: {name: other.1, namespace: $NS}
involvedObject: {apiVersion: v1, kind: ConfigMap, name: other-config, namespace: $NS}
reason: Other
message: other
type: Warning
EOF
  expect_eq "$(k get ev -n "$NS" --field-selector involvedObject.name=web -o name)" event/web.rollout.1 || return 1
  expect_eq "$(k get ev -n "$NS" --field-selector involvedObject.kind=HTTPRoute,reason=WeightsChanged -o name)" event/web.rollout.1 || return 1
  expect_eq "$(k get ev -n "$NS" --field-selector type=Warning -o name)" event/other.1 || return 1
  expect_eq "$(k get ev -n "$NS" --field-selector involvedObject.name=nothing -o name)" ""
}
check "Event create and field selectors (involvedObject.name/kind, reason, type)" t_events

t_restart_apiserver() {
  bash "$TAS_HERE/restart-apiserver.sh" "$DIR" || return 1
  expect_eq "$(jp cm app-config -n "$NS" -o jsonpath='{.data.mode}')" canary || return 1
  expect_eq "$(jp httproute web -n "$NS" -o jsonpath='{.spec.rules[0].backendRefs[0].weight}')" 90
}
check "restart-apiserver.sh: same port, data kept" t_restart_apiserver

t_expired() {
  # a watch from a resourceVersion older than the restarted server's watch cache: 410 Expired
  local out
  out=$(timeout 5 curl -sN --cacert "$DIR/certs/ca.crt" \
        "$APISERVER_URL/api/v1/namespaces/$NS/configmaps?watch=1&resourceVersion=2" || true)
  echo "$out" | grep -q '"code":410' || { echo "no 410: $out"; return 1; }
  echo "$out" | grep -q '"reason":"Expired"'
}
check "stale watch gets 410 Expired" t_expired

t_restart_etcd() {
  bash "$TAS_HERE/restart-etcd.sh" "$DIR" || return 1
  expect_eq "$(jp deploy web-v1 -n "$NS" -o jsonpath='{.status.readyReplicas}')" 2 || return 1
  k create cm after-etcd-restart -n "$NS" >/dev/null
}
check "restart-etcd.sh: server recovers, data kept" t_restart_etcd

echo "smoke: $(( $(date +%s) - T0 ))s, logs in $DIR"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
