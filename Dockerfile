# The iter8-controller image: one static (musl) binary on an empty base.
#
# The binary is built OUTSIDE Docker and copied in, so the build needs no base image to pull and
# no toolchain inside Docker. `just image` (scripts/image.sh) does all of this; by hand:
#
#   rustup target add x86_64-unknown-linux-musl        # plus Debian's musl-tools (musl-gcc, for ring)
#   cargo build --release --locked --target x86_64-unknown-linux-musl -p iter8-controller
#   docker build -t iter8-controller:0.1.0 .            # tag: appVersion of charts/controller/Chart.yaml
#
# The build context is the repository root; .dockerignore sends only the musl binary. BINARY
# names another prepared binary inside the context (scripts/image.sh uses a context folder with
# just the binary: --build-arg BINARY=iter8-controller).
#
# Plain Dockerfile syntax only (no `# syntax=` line, no COPY --chmod, no RUN --mount): the legacy
# builder and BuildKit both build it. There is no RUN step (FROM scratch has no shell).
#
# What is in the image: /iter8-controller (mode 0755, owned by root), nothing else: no shell, no
# libc, no CA bundle (the API server's CA comes from the kubeconfig or the service account's
# ca.crt), no /etc/passwd (the user is numeric). The root filesystem can be read-only.
FROM scratch

ARG BINARY=target/x86_64-unknown-linux-musl/release/iter8-controller
ARG VERSION=0.1.0
ARG SOURCE=https://iter8.tools
# The commit the binary was built from (scripts/image.sh: git rev-parse HEAD, "-dirty" with local changes).
ARG REVISION=unknown

LABEL org.opencontainers.image.title="iter8-controller" \
      org.opencontainers.image.description="Canary-release controller for Kubernetes: watches routemap ConfigMaps and the resources of each version, writes Gateway API HTTPRoutes (Iter8 1.1 compatible)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}"

COPY ${BINARY} /iter8-controller

# The chart's pod runs as 65532:65532 too (runAsNonRoot); nothing in the image is writable by it.
USER 65532:65532

# The admin server: /metrics (Prometheus), /livez, /readyz (--admin-addr, default 0.0.0.0:8080).
EXPOSE 8080

# PID 1: the controller handles SIGTERM/SIGINT itself (releases the Lease, stops the writer).
ENTRYPOINT ["/iter8-controller"]
