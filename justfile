# Task runner (https://just.systems). Install the tools first: `bash scripts/install-tools.sh`
# (helm, kubectl, kubernetes-validate and just itself, into .tools/), then `export PATH=$PWD/.tools/bin:$PATH`.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Install helm, kubectl, kubernetes-validate and just into .tools/ (idempotent).
tools:
    bash scripts/install-tools.sh

# The main job: the seed canary tutorial, offline, with real helm and iter8-render.
demo: tools
    bash scripts/demo.sh

# The seed tutorial live: API server, controller, Envoy + translator, httpbin; real curl answers.
# `just tutorial guard`: the guarded canary (Prometheus; a failing candidate withdrawn).
tutorial *args: tools
    bash scripts/tutorial.sh {{args}}

# Format the code.
fmt:
    cargo fmt --all

# Formatting, clippy (warnings are errors), and which crates may link what.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    bash scripts/check-deps.sh

# Unit, property, golden, request-exact and chart tests (no API server).
unit: tools
    cargo test --workspace --exclude iter8-e2e
    cargo test -p iter8-e2e --lib gateway    # the gateway translator's goldens (fixtures/gateway)

# End to end against a real API server built from Debian packages (see e2e/README.md).
e2e: tools
    # Docker and the musl toolchain (apt, rustup; idempotent): the install test runs the image.
    # Debian's prometheus: the guard's tests run it (its system service is not started).
    bash scripts/install-tools.sh --image --prometheus
    bash e2e/run.sh

# Build the e2e API server from Debian sid packages (cached; a no-op when up to date).
test-apiserver:
    bash e2e/test-apiserver/build.sh

# Self-check of the e2e API server with kubectl (prints "N passed, 0 failed").
test-apiserver-smoke: tools test-apiserver
    bash e2e/test-apiserver/smoke.sh

# Every test tier: what the README's test command runs.
test: unit e2e
    # Goldens are committed; a test run must not have changed any of them.
    git diff --exit-code -- fixtures

# Benchmarks: planner, index, and the iter8-render binary (figures in docs/performance.md).
bench:
    cargo bench -p routing-core --bench planner
    cargo bench -p routemap-index --bench index
    cargo bench -p routemap-index --bench heavy
    cargo bench -p iter8-render --bench render

# The controller against the real API server: reaction latency, cold start, churn, memory.
bench-e2e: tools test-apiserver
    # Debian's prometheus: the guard phase (ITER8_SCALE_GUARDED) runs it.
    bash scripts/install-tools.sh --prometheus
    cargo build --release -p iter8-controller -p iter8-render
    cargo bench -p iter8-e2e --bench scale

# The chart's default image iter8-controller:<appVersion>: static musl binary, FROM scratch.
image:
    bash scripts/install-tools.sh --image
    bash scripts/image.sh

# Checks the image and runs it on the test API server: size, cold start, docker stop time.
image-check: test-apiserver
    bash scripts/image-check.sh

# What CI runs (.ci/run): lint, then every test tier.
ci: lint test
