#!/usr/bin/env bash
# restart-apiserver.sh DIR: stops and starts only the API server (same port, same etcd data,
# same certificate), waiting for /readyz. etcd keeps running.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/stop.sh" "$1" --only apiserver
bash "$here/start.sh" "$1" --only apiserver
