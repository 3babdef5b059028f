#!/usr/bin/env bash
# scripts/image-check.sh (`just image-check`): checks the image `just image` built, and runs it
# the way the chart's pod runs it.
#
# Prints on stdout, on success:
#   image: NAME:TAG, S MB, user 65532
#   cold start (docker run -> /readyz 200): N ms
#   docker stop: N ms (the controller's own shutdown: M ms)
#
# Checks, each failing with a message that says what is wrong:
#   - the image exists (NAME:TAG is the chart's default image: charts/controller values + appVersion,
#     and what `helm template charts/controller` renders)
#   - user 65532:65532, entrypoint ["/iter8-controller"], port 8080/tcp exposed
#   - the OCI labels title, description, version (= appVersion), licenses (= Apache-2.0), source
#   - its files are /iter8-controller and nothing else, no shell (`--entrypoint /bin/sh` fails)
#   - /iter8-controller is static (file, readelf on the file exported from the image)
#   - it runs as the chart runs it: read-only root, all capabilities dropped, no-new-privileges,
#     user 65532:65532, against the project's test API server (e2e/test-apiserver, on 127.0.0.1;
#     --network host), with the kubeconfig and CA mounted read-only; /readyz, /livez and
#     /metrics answer 200
#   - `docker stop` (SIGTERM to PID 1) ends it with exit code 0 and a "stopped cleanly" log
#     line, within ITER8_IMAGE_MAX_STOP_MS (default 2000; the controller takes milliseconds,
#     a missing SIGTERM handler would take the full 10 s grace period)
#
# The Docker daemon as in scripts/image.sh (DOCKER_HOST, or a private dockerd it starts and
# stops). Everything started here (API server, etcd, container, dockerd) is stopped on exit, by
# pid or container id.
set -euo pipefail
IMG_WHO=image-check
. "$(dirname "${BASH_SOURCE[0]}")/image-lib.sh"
cd "${IMG_ROOT}"

max_stop_ms="${ITER8_IMAGE_MAX_STOP_MS:-2000}"
image="$(img_chart_image)"
version="$(img_app_version)"

work="$(mktemp -d "${TMPDIR:-/tmp}/iter8-image-check.XXXXXX")"
cid=""
logs_pid=""
wait_pid=""
apiserver=""
cleanup() {
  local rc=$?
  if [[ -n "${cid}" ]]; then docker rm -f "${cid}" >/dev/null 2>&1 || true; fi
  for p in "${logs_pid}" "${wait_pid}"; do
    if [[ -n "${p}" ]]; then kill "${p}" 2>/dev/null || true; wait "${p}" 2>/dev/null || true; fi
  done
  if [[ -n "${apiserver}" ]]; then bash e2e/test-apiserver/stop.sh "${apiserver}" >/dev/null 2>&1 || true; fi
  img_daemon_stop
  if [[ ${rc} -ne 0 ]]; then
    img_log "FAILED; kept ${work} (container log: ${work}/container.log)"
  else
    rm -rf "${work}"
  fi
}
trap cleanup EXIT

# The name is the chart's default image: helm renders exactly that (when helm is installed).
helm_bin="$(command -v helm || echo "${IMG_ROOT}/.tools/bin/helm")"
if [[ -x "${helm_bin}" ]]; then
  rendered="$("${helm_bin}" template iter8 "${IMG_CHART}" | sed -n 's/^ *image: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | head -n1)"
  [[ "${rendered}" == "${image}" ]] ||
    img_die "helm template charts/controller renders image '${rendered}', but just image builds ${image}"
else
  img_log "helm not installed (bash scripts/install-tools.sh): not comparing with the rendered chart"
fi

img_daemon

# --- the image's metadata ------------------------------------------------------------------------
docker image inspect "${image}" >/dev/null 2>&1 ||
  img_die "image ${image} not found in the daemon at ${DOCKER_HOST}: build it with just image"
inspect() { docker image inspect -f "$1" "${image}"; }
size=$(inspect '{{.Size}}')
size_mb="$(awk -v b="${size}" 'BEGIN { printf "%.1f", b / 1000000 }')"
user="$(inspect '{{.Config.User}}')"
[[ "${user}" == "65532:65532" ]] || img_die "image user is '${user}', want 65532:65532"
entrypoint="$(inspect '{{json .Config.Entrypoint}}')"
[[ "${entrypoint}" == '["/iter8-controller"]' ]] || img_die "entrypoint is ${entrypoint}, want [\"/iter8-controller\"]"
ports="$(inspect '{{json .Config.ExposedPorts}}')"
[[ "${ports}" == *'"8080/tcp"'* ]] || img_die "port 8080/tcp not exposed (ExposedPorts: ${ports})"
label() { docker image inspect -f "{{index .Config.Labels \"org.opencontainers.image.$1\"}}" "${image}"; }
for l in title description version licenses source; do
  [[ -n "$(label "${l}")" ]] || img_die "label org.opencontainers.image.${l} missing or empty"
done
[[ "$(label version)" == "${version}" ]] || img_die "label version is '$(label version)', want the chart's appVersion ${version}"
[[ "$(label licenses)" == "Apache-2.0" ]] || img_die "label licenses is '$(label licenses)', want Apache-2.0"

# --- its files: the binary and nothing else, static, no shell ------------------------------------
tmpc="$(docker create "${image}")"
docker export "${tmpc}" -o "${work}/rootfs.tar" && docker rm "${tmpc}" >/dev/null ||
  { docker rm "${tmpc}" >/dev/null 2>&1 || true; img_die "docker export of ${image} failed"; }
# What Docker itself puts into every container's filesystem (mount points, /etc/hosts ...).
extra="$(tar -tf "${work}/rootfs.tar" | sed 's#/$##' |
  grep -vxE 'iter8-controller|\.dockerenv|dev|dev/console|dev/pts|dev/shm|etc|etc/hostname|etc/hosts|etc/mtab|etc/resolv.conf|proc|sys' || true)"
[[ -z "${extra}" ]] || img_die "files in the image besides /iter8-controller: $(echo "${extra}" | tr '\n' ' ')"
tar -xf "${work}/rootfs.tar" -C "${work}" iter8-controller
img_is_static "${work}/iter8-controller" || img_die "/iter8-controller in ${image} is not static"
if docker run --rm --network none --entrypoint /bin/sh "${image}" -c true >"${work}/sh.out" 2>&1; then
  img_die "the image has a shell: docker run --entrypoint /bin/sh succeeded"
fi

# --- run it as the chart's pod runs: against the test API server ---------------------------------
apiserver="${work}/apiserver"
bash e2e/test-apiserver/start.sh "${apiserver}" >"${work}/apiserver-start.log" 2>&1 ||
  { cat "${work}/apiserver-start.log" >&2; img_die "the test API server did not start (e2e/test-apiserver/start.sh)"; }
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
admin="127.0.0.1:${port}"
kubeconfig="${apiserver}/kubeconfig"
ca="${apiserver}/certs/ca.crt"
[[ -f "${kubeconfig}" && -f "${ca}" ]] || img_die "start.sh wrote no ${kubeconfig} or ${ca}"

t0=$(date +%s%N)
cid="$(docker run --rm -d --network host --read-only --cap-drop ALL \
  --security-opt no-new-privileges --user 65532:65532 \
  -v "${kubeconfig}:${kubeconfig}:ro" -v "${ca}:${ca}:ro" \
  "${image}" --kubeconfig "${kubeconfig}" --leader-election=false --namespace default \
  --admin-addr "${admin}")"
# The log and the exit code outlive the container (--rm) through these two followers.
docker logs -f "${cid}" >"${work}/container.log" 2>&1 &
logs_pid=$!
docker wait "${cid}" >"${work}/exit-code" 2>"${work}/wait.err" &
wait_pid=$!

ready=""
for _ in $(seq 1 3000); do
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://${admin}/readyz" || true)"
  if [[ "${code}" == 200 ]]; then ready=1; break; fi
  if ! kill -0 "${wait_pid}" 2>/dev/null; then break; fi
  sleep 0.01
done
t1=$(date +%s%N)
if [[ -z "${ready}" ]]; then
  sleep 0.2
  tail -n 30 "${work}/container.log" >&2 || true
  img_die "the container never answered /readyz 200 on ${admin} (exit code: $(cat "${work}/exit-code" 2>/dev/null || echo 'still running'))"
fi
cold_ms=$(((t1 - t0) / 1000000))
for path in livez metrics; do
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://${admin}/${path}" || true)"
  [[ "${code}" == 200 ]] || img_die "/${path} answered ${code:-nothing}, want 200"
done

t0=$(date +%s%N)
docker stop -t 10 "${cid}" >/dev/null
t1=$(date +%s%N)
stop_ms=$(((t1 - t0) / 1000000))
wait "${wait_pid}" || true
wait_pid=""
wait "${logs_pid}" || true
logs_pid=""
cid=""
exit_code="$(tr -dc 0-9 <"${work}/exit-code")"
# The text log format colours its fields when ANSI is on: compare without the escapes.
sed 's/\x1b\[[0-9;]*m//g' "${work}/container.log" >"${work}/container.txt"
[[ "${exit_code}" == 0 ]] ||
  { tail -n 20 "${work}/container.log" >&2; img_die "the container exited with code ${exit_code:-unknown} after docker stop, want 0 (137: killed after the grace period)"; }
grep -q 'shutting down.*signal="\{0,1\}SIGTERM' "${work}/container.txt" ||
  { tail -n 20 "${work}/container.log" >&2; img_die "no 'shutting down' on SIGTERM in the container log"; }
grep -q 'stopped cleanly' "${work}/container.txt" ||
  { tail -n 20 "${work}/container.log" >&2; img_die "no 'stopped cleanly' in the container log"; }
[[ ${stop_ms} -le ${max_stop_ms} ]] ||
  img_die "docker stop took ${stop_ms} ms, more than ${max_stop_ms} ms"

echo "image: ${image}, ${size_mb} MB, user 65532"
echo "cold start (docker run -> /readyz 200): ${cold_ms} ms"
own_ms="$(sed -n 's/.*stopped cleanly.*elapsed_ms=\([0-9]*\).*/\1/p' "${work}/container.txt" | head -n1)"
echo "docker stop: ${stop_ms} ms (the controller's own shutdown: ${own_ms:-?} ms)"
