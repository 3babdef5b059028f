#!/usr/bin/env bash
# restart-etcd.sh DIR: stops and starts only etcd (same port, same data). The API server keeps
# running, reconnects, and this waits until its /readyz is ok again.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/stop.sh" "$1" --only etcd
bash "$here/start.sh" "$1" --only etcd
