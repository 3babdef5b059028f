#!/usr/bin/env bash
# test.sh [go test args...]: the Go unit tests of the test API server (binding lookup and RBAC
# decisions, the authorization log, the token file), run with the cached Debian toolchain and
# sources exactly as build.sh builds: GOPATH mode, offline. Builds first if needed (build.sh
# also generates the OpenAPI package the server code imports).
#   bash e2e/test-apiserver/test.sh            # all tests
#   bash e2e/test-apiserver/test.sh -run RBAC -v
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${ITER8_E2E_CACHE:-$HOME/.cache/iter8-e2e}"
bash "$HERE/build.sh" >/dev/null 2>"$CACHE/test-build.log" || { tail -20 "$CACHE/test-build.log" >&2; exit 1; }

ROOT="$CACHE/root"
GOROOT="$ROOT/usr/lib/go-1.26"
GOPATHDIR="$CACHE/gopath"
SRCDIR="$GOPATHDIR/src/iter8e2e/testapiserver"
export GOROOT GOPATH="$GOPATHDIR:$ROOT/usr/share/gocode" GO111MODULE=off GOTOOLCHAIN=local \
       GOPROXY=off GOFLAGS= CGO_ENABLED=0 GOCACHE="$CACHE/gocache" GOTELEMETRY=off GOENV=off \
       GOWORK=off PATH="$GOROOT/bin:$PATH"

# build.sh's lock: the sources in $SRCDIR are this checkout's while the tests run
exec 9>"$CACHE/.build.lock"
command -v flock >/dev/null && flock 9
find "$SRCDIR" -maxdepth 1 -name '*.go' -delete
cp "$HERE"/*.go "$SRCDIR/"
cd "$SRCDIR"
go vet . >&2
go test -count=1 "$@" .
