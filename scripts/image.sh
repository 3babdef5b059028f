#!/usr/bin/env bash
# scripts/image.sh (`just image`): builds the static musl iter8-controller and the container image
# tagged exactly as the controller chart's default image (iter8-controller:<Chart appVersion>).
#
#   1. cargo build --release --locked --target x86_64-unknown-linux-musl -p iter8-controller
#      (the workspace's release profile as it is: no LTO, one target dir)
#   2. checks the binary is static (file, readelf)
#   3. a build context with just the binary, symbols stripped (binutils `strip`; the target dir's
#      copy keeps them), in <target dir>/image-context, and docker build -f Dockerfile (the
#      repository's Dockerfile; FROM scratch, nothing to pull)
#
# The Docker daemon: DOCKER_HOST (or the client's default) when it answers, else a private
# dockerd (scripts/dockerd.sh) in ${ITER8_DOCKERD_DIR:-$HOME/.cache/iter8-docker}, stopped again
# at the end; the image stays in that daemon's data (scripts/image-check.sh finds it there).
# Needs: the rustup target x86_64-unknown-linux-musl, musl-gcc (Debian musl-tools), docker
# (Debian docker.io): `bash scripts/install-tools.sh --image` installs them. Anything missing
# fails with a message that names it.
set -euo pipefail
IMG_WHO=image
. "$(dirname "${BASH_SOURCE[0]}")/image-lib.sh"
cd "${IMG_ROOT}"

image="$(img_chart_image)"
version="$(img_app_version)"
# A plain `docker build .` labels the image with the Dockerfile's default: keep it in step.
df_version="$(sed -n 's/^ARG VERSION=//p' Dockerfile)"
[[ "${df_version}" == "${version}" ]] ||
  img_die "Dockerfile has ARG VERSION=${df_version} but charts/controller/Chart.yaml has appVersion ${version}: make them equal"
source_url="$(git config --get remote.origin.url 2>/dev/null | sed -E 's#^([a-z+]+://)[^/@]*@#\1#' || true)"
[[ -n "${source_url}" ]] || source_url="$(sed -n 's/^ARG SOURCE=//p' Dockerfile)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
[[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] || revision="${revision}-dirty"

# --- prerequisites ---------------------------------------------------------------------------
command -v cargo >/dev/null || img_die "cargo not found (the Rust toolchain is needed)"
if command -v rustup >/dev/null; then
  rustup target list --installed | grep -qx "${IMG_MUSL_TARGET}" ||
    img_die "the Rust target ${IMG_MUSL_TARGET} is not installed: rustup target add ${IMG_MUSL_TARGET} (or bash scripts/install-tools.sh --image)"
fi
command -v musl-gcc >/dev/null ||
  img_die "musl-gcc not found (ring's C code needs it for ${IMG_MUSL_TARGET}): apt-get install -y --no-install-recommends musl-tools (or bash scripts/install-tools.sh --image)"

trap img_daemon_stop EXIT
# The daemon first: a missing one fails now, not after a build of several minutes.
img_daemon

# --- the static binary -------------------------------------------------------------------------
target_dir="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
bin="${target_dir}/${IMG_MUSL_TARGET}/release/iter8-controller"
img_log "building ${bin}"
started=$(date +%s)
cargo build --release --locked --target "${IMG_MUSL_TARGET}" -p iter8-controller
img_log "binary built in $(($(date +%s) - started)) s: $(du -h "${bin}" | cut -f1)"
img_is_static "${bin}" || img_die "${bin} is not a static binary: it would not run on FROM scratch"

# --- the image ---------------------------------------------------------------------------------
context="${target_dir}/image-context"
rm -rf "${context}"
mkdir -p "${context}"
if command -v strip >/dev/null; then
  strip -o "${context}/iter8-controller" "${bin}"
else
  img_log "no strip (binutils) found: the image gets the binary with its symbols"
  cp "${bin}" "${context}/iter8-controller"
fi
chmod 0755 "${context}/iter8-controller"
img_log "docker build -t ${image} (context ${context})"
docker build --quiet -f Dockerfile -t "${image}" \
  --build-arg BINARY=iter8-controller \
  --build-arg VERSION="${version}" \
  --build-arg SOURCE="${source_url}" \
  --build-arg REVISION="${revision}" \
  "${context}" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "${image}")
echo "image: ${image} built, $(awk -v b="${size}" 'BEGIN { printf "%.1f", b / 1000000 }') MB (DOCKER_HOST=${DOCKER_HOST})"
if [[ -n "${IMG_STARTED_DOCKERD}" ]]; then
  img_log "the image is kept in the private daemon's data; reach it with: export DOCKER_HOST=\$(bash scripts/dockerd.sh start ${IMG_STARTED_DOCKERD})"
fi
