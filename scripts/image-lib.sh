# Sourced by scripts/image.sh and scripts/image-check.sh: the image name the chart expects, and a
# Docker daemon to talk to.
#
#   img_chart_image        prints REPOSITORY:TAG exactly as charts/controller renders it by default
#                          (values.yaml image.repository, image.tag or else Chart.yaml appVersion)
#   img_app_version        prints appVersion of charts/controller/Chart.yaml
#   img_daemon             makes `docker` reach a daemon: the one DOCKER_HOST (or the client's
#                          default socket) names when it answers, else a private one started with
#                          scripts/dockerd.sh in ${ITER8_DOCKERD_DIR:-$HOME/.cache/iter8-docker}
#                          and stopped by img_daemon_stop (call it from an EXIT trap). Exports
#                          DOCKER_HOST either way.
# shellcheck shell=bash

IMG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMG_CHART="${IMG_ROOT}/charts/controller"
IMG_MUSL_TARGET="x86_64-unknown-linux-musl"
IMG_STARTED_DOCKERD=""

img_die() { echo "${IMG_WHO:-image}: ERROR: $*" >&2; exit 1; }
img_log() { echo "${IMG_WHO:-image}: $*" >&2; }

img_app_version() {
  local v
  v="$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"#[:space:]]*\)"\{0,1\}.*$/\1/p' "${IMG_CHART}/Chart.yaml")"
  [[ -n "${v}" ]] || img_die "no appVersion in ${IMG_CHART}/Chart.yaml"
  echo "${v}"
}

# The top-level `image:` block of values.yaml: repository and tag.
img_chart_value() {
  awk -v key="$1" '
    /^image:/ { inimg = 1; next }
    inimg && /^[^[:space:]#]/ { inimg = 0 }
    inimg && $1 == key":" {
      v = $0; sub(/^[^:]*:[[:space:]]*/, "", v); sub(/[[:space:]]+#.*$/, "", v)
      gsub(/^["'\'']|["'\'']$/, "", v); print v; exit
    }' "${IMG_CHART}/values.yaml"
}

img_chart_image() {
  local repo tag
  repo="$(img_chart_value repository)"
  tag="$(img_chart_value tag)"
  [[ -n "${repo}" ]] || img_die "no image.repository in ${IMG_CHART}/values.yaml"
  [[ -n "${tag}" ]] || tag="$(img_app_version)"
  echo "${repo}:${tag}"
}

img_daemon() {
  command -v docker >/dev/null ||
    img_die "no docker client on PATH: install Debian's docker.io (apt-get install -y --no-install-recommends docker.io)"
  if [[ -n "${DOCKER_HOST:-}" ]]; then
    docker info >/dev/null 2>&1 ||
      img_die "DOCKER_HOST=${DOCKER_HOST} does not answer (docker info failed); start that daemon, or unset DOCKER_HOST to start a private one (scripts/dockerd.sh)"
    img_log "using the Docker daemon at DOCKER_HOST=${DOCKER_HOST}"
    return 0
  fi
  if docker info >/dev/null 2>&1; then
    DOCKER_HOST="$(docker context inspect -f '{{.Endpoints.docker.Host}}' 2>/dev/null || echo unix:///var/run/docker.sock)"
    export DOCKER_HOST
    img_log "using the Docker daemon at ${DOCKER_HOST}"
    return 0
  fi
  local dir="${ITER8_DOCKERD_DIR:-${HOME}/.cache/iter8-docker}"
  img_log "no Docker daemon answers; starting a private dockerd in ${dir}"
  DOCKER_HOST="$(bash "${IMG_ROOT}/scripts/dockerd.sh" start "${dir}")" ||
    img_die "cannot start a Docker daemon (see above); install Debian's docker.io and run as root, or set DOCKER_HOST to a running daemon"
  export DOCKER_HOST
  IMG_STARTED_DOCKERD="${dir}"
}

img_daemon_stop() {
  if [[ -n "${IMG_STARTED_DOCKERD}" ]]; then
    bash "${IMG_ROOT}/scripts/dockerd.sh" stop "${IMG_STARTED_DOCKERD}" || true
    IMG_STARTED_DOCKERD=""
  fi
}

# img_is_static FILE: no program interpreter and no shared libraries.
img_is_static() {
  local f=$1 out
  if command -v file >/dev/null; then
    out="$(file -b "${f}")"
    [[ "${out}" == *ELF* ]] || { img_log "${f}: not an ELF binary: ${out}"; return 1; }
    [[ "${out}" == *"statically linked"* || "${out}" == *"static-pie linked"* ]] ||
      { img_log "${f}: not static: ${out}"; return 1; }
  fi
  if command -v readelf >/dev/null; then
    if readelf -lW "${f}" | grep -q 'Requesting program interpreter'; then
      img_log "${f}: has a program interpreter"; return 1
    fi
    if readelf -dW "${f}" 2>/dev/null | grep -q '(NEEDED)'; then
      img_log "${f}: needs shared libraries: $(readelf -dW "${f}" | grep '(NEEDED)' | tr -s ' ' | tr '\n' ';')"; return 1
    fi
  fi
  command -v file >/dev/null || command -v readelf >/dev/null ||
    { img_log "neither file nor readelf is installed: cannot tell whether ${f} is static"; return 1; }
}
