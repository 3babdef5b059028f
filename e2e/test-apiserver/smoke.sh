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
  for s in cm svc deploy ns ev sa pdb; do echo "$r" | awk '{print $2}' | grep -qx "$s" || { echo "short name $s missing"; return 1; }; done
  k get svc,deploy,cm,ev,sa,pdb -n "$NS" >/dev/null || return 1
  k get secrets,serviceaccounts,endpointslices,roles,rolebindings,poddisruptionbudgets -n "$NS" >/dev/null || return 1
  k get clusterroles,clusterrolebindings >/dev/null || return 1
  # kube-apiserver's bootstrap cluster-admin and its binding to system:masters
  expect_eq "$(jp clusterrolebinding cluster-admin -o jsonpath='{.roleRef.name}/{.subjects[0].name}')" "cluster-admin/system:masters"
}
check "discovery: short names cm/svc/deploy/ns/ev/sa/pdb; secrets, endpointslices, RBAC types listed" t_discovery

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

t_secrets() {
  k create secret generic creds -n "$NS" --from-literal=user=alice --from-literal=pass=s3cret || return 1
  expect_eq "$(jp secret creds -n "$NS" -o jsonpath='{.type}/{.data.user}')" "Opaque/$(printf alice | base64)" || return 1
  # stringData is merged into data, and an empty type is Opaque
  k apply --server-side --field-manager=smoke -f - <<EOF || return 1
apiVersion: v1
kind: Secret
metadata: {name: string-data, namespace: $NS}
stringData: {token: abc}
EOF
  expect_eq "$(jp secret string-data -n "$NS" -o jsonpath='{.type}/{.data.token}/{.stringData}')" "Opaque/$(printf abc | base64)/" || return 1
  k create -f - <<EOF || return 1
apiVersion: v1
kind: Secret
metadata: {name: tlspair, namespace: $NS}
type: kubernetes.io/tls
data: {tls.crt: eA==, tls.key: eQ==}
EOF
  expect_eq "$(k get secrets -n "$NS" --field-selector type=kubernetes.io/tls -o name)" secret/tlspair || return 1
  echo "$(k get secrets -n "$NS")" | grep -q '^creds  *Opaque  *2 ' || { k get secrets -n "$NS"; return 1; }
  # invalid data keys, a TLS secret without its key, and a type change are rejected
  local out
  out=$(k create -f - 2>&1 <<EOF
apiVersion: v1
kind: Secret
metadata: {name: bad-key, namespace: $NS}
data: {"no/slash": eA==}
EOF
) && { echo "bad key accepted"; return 1; }
  echo "$out" | grep -q 'data\[no/slash\]' || { echo "$out"; return 1; }
  out=$(k create -f - 2>&1 <<EOF
apiVersion: v1
kind: Secret
metadata: {name: half-tls, namespace: $NS}
type: kubernetes.io/tls
data: {tls.crt: eA==}
EOF
) && { echo "TLS secret without tls.key accepted"; return 1; }
  echo "$out" | grep -q 'tls.key' || { echo "$out"; return 1; }
  out=$(k patch secret creds -n "$NS" --type=merge -p '{"type":"kubernetes.io/basic-auth"}' 2>&1) && { echo "type change accepted"; return 1; }
  echo "$out" | grep -q 'field is immutable' || { echo "$out"; return 1; }
}
check "Secrets: kubectl create/get, stringData merged, type Opaque, type field selector, key and type checks" t_secrets

t_endpointslices() {
  k apply --server-side --field-manager=smoke -f - <<EOF || return 1
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: $NS
  labels: {kubernetes.io/service-name: web, endpointslice.kubernetes.io/managed-by: smoke}
addressType: IPv4
endpoints:
- addresses: [127.0.0.1]
  conditions: {ready: true}
- addresses: [127.0.0.2]
  conditions: {ready: false}
ports:
- {name: http, port: 8080, protocol: TCP}
EOF
  expect_eq "$(k get endpointslices -n "$NS" -l kubernetes.io/service-name=web -o name)" endpointslice.discovery.k8s.io/web-abc12 || return 1
  expect_eq "$(jp endpointslice web-abc12 -n "$NS" -o jsonpath='{.metadata.generation}/{.endpoints[0].conditions.ready}/{.ports[0].port}')" "1/true/8080" || return 1
  echo "$(k get endpointslices -n "$NS")" | grep -q '^web-abc12  *IPv4  *8080  *127.0.0.1,127.0.0.2 ' || { k get endpointslices -n "$NS"; return 1; }
  # a change outside metadata bumps the generation; addressType is immutable
  k patch endpointslice web-abc12 -n "$NS" --type=json -p '[{"op":"replace","path":"/endpoints/1/conditions/ready","value":true}]' || return 1
  expect_eq "$(jp endpointslice web-abc12 -n "$NS" -o jsonpath='{.metadata.generation}/{.endpoints[1].conditions.ready}')" "2/true" || return 1
  local out
  out=$(k patch endpointslice web-abc12 -n "$NS" --type=merge -p '{"addressType":"IPv6"}' 2>&1) && { echo "addressType change accepted"; return 1; }
  echo "$out" | grep -q 'field is immutable' || { echo "$out"; return 1; }
}
check "EndpointSlices: apply, label kubernetes.io/service-name, generation, addressType immutable" t_endpointslices

t_pdb() {
  k create -f - <<EOF || return 1
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: $NS}
spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}
EOF
  k patch pdb web -n "$NS" --subresource=status --type=merge -p '{"status":{"disruptionsAllowed":1,"currentHealthy":2,"desiredHealthy":1,"expectedPods":2,"observedGeneration":1}}' || return 1
  echo "$(k get pdb -n "$NS")" | grep -q '^web  *1  *N/A  *1 ' || { k get pdb -n "$NS"; return 1; }
}
check "PodDisruptionBudgets: create, /status, kubectl get pdb" t_pdb

t_rbac() {
  local tok="smoke-$NS-reader" sa="system:serviceaccount:$NS:reader" out n0
  kk() { k --token "$tok" "$@"; }
  k create sa reader -n "$NS" || return 1
  # a token added to the running server's token file is accepted at once
  echo "$tok,$sa,reader-uid,\"system:serviceaccounts,system:serviceaccounts:$NS\"" >> "$DIR/tokens.csv"
  n0=$(wc -l < "$DIR/authz.log" 2>/dev/null || echo 0)
  out=$(kk get cm -n "$NS" 2>&1) && { echo "allowed without a binding: $out"; return 1; }
  echo "$out" | grep -q "User \"$sa\" cannot list resource \"configmaps\"" || { echo "$out"; return 1; }
  k create role cm-reader -n "$NS" --verb=get,list --resource=configmaps || return 1
  k create rolebinding reader -n "$NS" --role=cm-reader --serviceaccount="$NS:reader" || return 1
  kk get cm app-config -n "$NS" -o name >/dev/null || return 1
  kk get cm -n "$NS" -o name >/dev/null || return 1
  # still no writes, no other resource, no other namespace, no cluster-wide list
  kk create cm nope -n "$NS" >/dev/null 2>&1 && { echo "create allowed"; return 1; }
  kk get svc -n "$NS" >/dev/null 2>&1 && { echo "services allowed"; return 1; }
  kk get cm -n default >/dev/null 2>&1 && { echo "another namespace allowed"; return 1; }
  kk get cm -A >/dev/null 2>&1 && { echo "all namespaces allowed"; return 1; }
  # a RoleBinding to a ClusterRole grants it in the binding's namespace only
  k create clusterrole "svc-reader-$NS" --verb=list --resource=services || return 1
  k create rolebinding svc-reader -n "$NS" --clusterrole="svc-reader-$NS" --serviceaccount="$NS:reader" || return 1
  kk get svc -n "$NS" -o name >/dev/null || return 1
  kk get svc -n default >/dev/null 2>&1 && { echo "ClusterRole via RoleBinding leaked to another namespace"; return 1; }
  # a ClusterRoleBinding to the account's group grants it everywhere, until it is deleted
  k create clusterrolebinding "svc-reader-$NS" --clusterrole="svc-reader-$NS" --group="system:serviceaccounts:$NS" || return 1
  kk get svc -n default -o name >/dev/null || return 1
  kk get svc -A -o name >/dev/null || return 1
  k delete clusterrolebinding "svc-reader-$NS" >/dev/null || return 1
  kk get svc -n default >/dev/null 2>&1 && { echo "deleted binding still in force"; return 1; }
  # roleRef cannot change
  out=$(k patch rolebinding reader -n "$NS" --type=merge -p '{"roleRef":{"name":"other"}}' 2>&1) && { echo "roleRef change accepted"; return 1; }
  echo "$out" | grep -q 'cannot change roleRef' || { echo "$out"; return 1; }
  # discovery for every authenticated user; an unknown token is 401
  kk api-resources >/dev/null || return 1
  out=$(k --token nobody-knows-this get cm -n "$NS" 2>&1) && return 1
  echo "$out" | grep -qi 'unauthorized' || { echo "$out"; return 1; }
  # start.sh's ordinary identity is bound to cluster-admin (ClusterRoleBinding test-apiserver-controller)
  k --token test-apiserver-controller get cm -A -o name >/dev/null || return 1
  grep -q '"reason":"RBAC: allowed by ClusterRoleBinding \\"test-apiserver-controller\\" of ClusterRole \\"cluster-admin\\"' "$DIR/authz.log" \
    || { echo "no decision for test-apiserver-controller in the authz log"; tail -3 "$DIR/authz.log"; return 1; }
  # the authorization log: one JSON line per decision of the reader (none of the admin's)
  tail -n +"$((n0 + 1))" "$DIR/authz.log" | python3 -c '
import json, sys
sa, ns = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in sys.stdin]
assert recs, "no records"
recs = [r for r in recs if r["user"] != "system:serviceaccount:default:iter8-controller"]
assert all(r["user"] == sa for r in recs), sorted(set(r["user"] for r in recs))
keys = {"user", "groups", "verb", "apiGroup", "resource", "subresource", "namespace", "name", "path", "allowed"}
assert all(keys <= set(r) for r in recs), recs[0]
denied = [r for r in recs if not r["allowed"]]
allowed = [r for r in recs if r["allowed"]]
assert any(r["verb"] == "list" and r["resource"] == "configmaps" and r["namespace"] == ns for r in denied), "denied list"
assert any(r["verb"] == "get" and r["resource"] == "configmaps" and r["name"] == "app-config" for r in allowed), "allowed get"
assert any(r["verb"] == "create" and r["resource"] == "configmaps" for r in denied), "denied create"
assert any(r["path"] == "/api" and r["resource"] == "" for r in allowed), "discovery"
print(len(allowed), "allowed,", len(denied), "denied")
' "$sa" "$NS"
}
check "RBAC: token added at run time; Role, ClusterRole via RoleBinding, ClusterRoleBinding to a group; authz log" t_rbac


# helm with its default storage driver (Secrets) and three-way strategic-merge upgrades
HELM="${HELM:-$TAS_REPO/.tools/bin/helm}"
[ -x "$HELM" ] || HELM=$(command -v helm || true)
t_helm_steps() {
  [ -n "$HELM" ] || { echo "helm not found (scripts/install-tools.sh puts it in .tools/bin; or set HELM)"; return 1; }
  local h=("$HELM" --kubeconfig "$KUBECONFIG") vals="$TAS_REPO/fixtures/charts/values"
  local ctl="$NS-iter8" ctlc="$NS-iter8c" app="$NS-app"
  unset HELM_DRIVER
  "${h[@]}" install iter8 "$TAS_REPO/charts/controller" -n "$ctl" --create-namespace >/dev/null || return 1
  "${h[@]}" install iter8 "$TAS_REPO/charts/controller" -n "$ctlc" --create-namespace --set clusterScoped=true --set replicas=2 >/dev/null || return 1
  k get sa/iter8 role/iter8 rolebinding/iter8 role/iter8-leader-election rolebinding/iter8-leader-election deploy/iter8 -n "$ctl" -o name >/dev/null || return 1
  k get clusterrole/iter8 clusterrolebinding/iter8 pdb/iter8 -n "$ctlc" -o name >/dev/null || return 1
  expect_eq "$(k get secrets -n "$ctl" -l owner=helm,name=iter8 -o jsonpath='{.items[*].metadata.name} {.items[*].type}')" "sh.helm.release.v1.iter8.v1 helm.sh/release.v1" || return 1
  # the chart's grants, evaluated by the server's RBAC for the controller's ServiceAccount
  local tok="smoke-$NS-iter8"
  echo "$tok,system:serviceaccount:$ctl:iter8,iter8-uid,\"system:serviceaccounts,system:serviceaccounts:$ctl\"" >> "$DIR/tokens.csv"
  local out
  out=$(k --token "$tok" get lease -n "$ctl" leader 2>&1) && { echo "a missing lease was found: $out"; return 1; }
  echo "$out" | grep -q NotFound || { echo "reading its own lease: $out"; return 1; }
  out=$(k --token "$tok" get lease -n default leader 2>&1) && { echo "a missing lease was found: $out"; return 1; }
  echo "$out" | grep -q Forbidden || { echo "a lease in another namespace: $out"; return 1; }
  # the release chart: install, add a candidate, promote (real upgrades), in one namespace
  "${h[@]}" upgrade --install httpbin "$TAS_REPO/charts/release" -n "$app" --create-namespace -f "$vals/seed-1-initial.yaml" >/dev/null || return 1
  expect_eq "$(k get deploy -n "$app" -o name | tr '\n' ' ')" "deployment.apps/httpbin-0 " || return 1
  "${h[@]}" upgrade --install httpbin "$TAS_REPO/charts/release" -n "$app" -f "$vals/seed-2-candidate.yaml" >/dev/null || return 1
  expect_eq "$(k get deploy -n "$app" -o name | tr '\n' ' ')" "deployment.apps/httpbin-0 deployment.apps/httpbin-1 " || return 1
  "${h[@]}" upgrade --install httpbin "$TAS_REPO/charts/release" -n "$app" -f "$vals/seed-3-promote.yaml" >/dev/null || return 1
  expect_eq "$(k get deploy -n "$app" -o name | tr '\n' ' ')" "deployment.apps/httpbin-0 " || return 1
  expect_eq "$("${h[@]}" history httpbin -n "$app" -o json | python3 -c 'import json,sys; print(" ".join("%s:%s" % (r["revision"], r["status"]) for r in json.load(sys.stdin)))')" "1:superseded 2:superseded 3:deployed" || return 1
  local listed
  listed=$("${h[@]}" list -A -o json | python3 -c 'import json,sys; print(" ".join(sorted(r["namespace"]+"/"+r["name"]+"/"+r["status"] for r in json.load(sys.stdin))))')
  for r in "$app/httpbin/deployed" "$ctl/iter8/deployed" "$ctlc/iter8/deployed"; do
    case " $listed " in *" $r "*) ;; *) echo "helm list -A: $listed (no $r)"; return 1 ;; esac
  done
  "${h[@]}" delete httpbin -n "$app" >/dev/null || return 1
  "${h[@]}" delete iter8 -n "$ctl" >/dev/null || return 1
  "${h[@]}" delete iter8 -n "$ctlc" >/dev/null || return 1
  expect_eq "$(k get deploy,svc,cm,secrets -n "$app" -o name)" "" || return 1
  expect_eq "$(k get sa,role,rolebinding,deploy,secrets,pdb -n "$ctl" -o name; k get sa,deploy,secrets,pdb -n "$ctlc" -o name)" "" || return 1
  k get clusterrole iter8 >/dev/null 2>&1 && { echo "ClusterRole iter8 left behind"; return 1; }
  [ "$("${h[@]}" list -n "$app" -q)" = "" ]
}
t_helm() {
  # a failed run uninstalls what it installed (the cluster-scoped release's ClusterRole would
  # block the next run on the same DIR)
  local rc=0
  t_helm_steps || rc=1
  if [ $rc != 0 ] && [ -n "$HELM" ]; then
    "$HELM" --kubeconfig "$KUBECONFIG" delete httpbin -n "$NS-app" >/dev/null 2>&1
    "$HELM" --kubeconfig "$KUBECONFIG" delete iter8 -n "$NS-iter8" >/dev/null 2>&1
    "$HELM" --kubeconfig "$KUBECONFIG" delete iter8 -n "$NS-iter8c" >/dev/null 2>&1
  fi
  return $rc
}
check "helm (Secret driver): controller chart namespaced + clusterScoped, release chart seed 1-2-3 upgrades, list -A, delete" t_helm

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

# the Go unit tests (RBAC binding lookup, authz log, token file), offline with the cached toolchain
if [ "${SKIP_UNIT:-0}" != 1 ]; then
  check "Go unit tests (test.sh)" bash "$TAS_HERE/test.sh"
fi

echo "smoke: $(( $(date +%s) - T0 ))s, logs in $DIR"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
