#!/usr/bin/env bash
# Build the e2e test API server from Debian sid's packaged Kubernetes Go libraries.
#
# - A PRIVATE apt configuration under $CACHE/apt (own sources list naming `sid main`, own
#   lists/cache/state dirs, the system's debian-archive-keyring). The archive is the one this
#   machine's apt already uses for Debian (the first main-archive URI in /etc/apt/sources.list,
#   sources.list.d/*.list or sources.list.d/*.sources), so a mirror or proxy set up for the
#   machine is used here too. The system's apt state is never touched and nothing is installed:
#   packages are only `apt-get download`ed and unpacked with `dpkg-deb -x` into $CACHE/root.
# - The versions used are in PACKAGES.lock beside this script. When it exists, exactly those
#   versions are fetched; if the archive no longer has one of them (sid moves on), or with
#   ITER8_E2E_REFRESH=1, the set is resolved afresh and PACKAGES.lock is rewritten.
# - Go build in GOPATH mode, offline: GO111MODULE=off GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=0.
# - Idempotent: when the binary exists and the hash of the sources + lock matches, it is a no-op.
#
# Usage: build.sh            (cache: ${ITER8_E2E_CACHE:-$HOME/.cache/iter8-e2e})
#        build.sh --print    prints the paths of the built binaries (after building if needed)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${ITER8_E2E_CACHE:-$HOME/.cache/iter8-e2e}"
LOCK="$HERE/PACKAGES.lock"
APTDIR="$CACHE/apt"
DEBS="$CACHE/debs"
ROOT="$CACHE/root"
BIN="$CACHE/bin"
ROOTS=(golang-k8s-apiextensions-apiserver-dev golang-k8s-kube-openapi-dev golang-1.26-go)
EXTRA=(etcd-server)   # only the etcd binary is used: its own dependencies are not fetched
K8S_GIT_VERSION="${K8S_GIT_VERSION:-}"

log() { echo "[build.sh] $*" >&2; }
die() { echo "[build.sh] ERROR: $*" >&2; exit 1; }
T_START=$(date +%s)
step() { CURRENT_STEP="$*"; log "step (+$(( $(date +%s) - T_START ))s): $*"; }
CURRENT_STEP="start"
trap 'rc=$?; [ $rc -ne 0 ] && echo "[build.sh] FAILED during step: $CURRENT_STEP (exit $rc)" >&2' EXIT

for t in apt-get apt-cache dpkg-deb sha256sum; do
  command -v "$t" >/dev/null || die "required tool '$t' not found"
done
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEYRING" ] || die "$KEYRING missing (package debian-archive-keyring)"

APT_SOURCES_DIR="${APT_SOURCES_DIR:-/etc/apt}"   # where the machine's apt sources are read

apt_source_files() { # the machine's apt source files that exist, one per line
  local f
  for f in "$APT_SOURCES_DIR/sources.list" "$APT_SOURCES_DIR"/sources.list.d/*.list \
           "$APT_SOURCES_DIR"/sources.list.d/*.sources; do
    [ -r "$f" ] && echo "$f"
  done
  return 0
}

apt_source_entries() { # prints "type uri suite components..." for every enabled source entry
  local f
  while read -r f; do
    case "$f" in
      *.sources) ;;
      *) # one-line style: deb [options] uri suite [component...]
         awk '{ sub(/#.*/, ""); gsub(/\[[^]]*\]/, "") } NF >= 3 { print }' "$f"
         continue ;;
    esac
    # deb822 style: stanzas of Types/URIs/Suites/Components fields separated by blank lines;
    # one line per type x uri x suite
    awk '
      function flush(   i, j, k, nt, nu, ns, t, u, s) {
        if (enabled != "no" && types != "" && uris != "" && suites != "") {
          nt = split(types, t, " "); nu = split(uris, u, " "); ns = split(suites, s, " ")
          for (i = 1; i <= nt; i++) for (j = 1; j <= nu; j++) for (k = 1; k <= ns; k++)
            print t[i], u[j], s[k], comps
        }
        types = uris = suites = comps = enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { next }   # continuation of a multi-line field (an inline Signed-By key)
      { key = tolower($0); sub(/[ \t]*:.*/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val) }
      key == "types" { types = val }
      key == "uris" { uris = val }
      key == "suites" { suites = val }
      key == "components" { comps = val }
      key == "enabled" { enabled = tolower(val) }
      END { flush() }' "$f"
  done < <(apt_source_files)
}

debian_archive_uri() { # the first Debian main-archive URI (not the security archive) apt uses
  local type uri suite comps base
  while read -r type uri suite comps; do
    [ "$type" = deb ] || continue
    case "$uri" in http://*|https://*) ;; *) continue ;; esac
    case "$uri" in *security*) continue ;; esac
    case " $comps " in *" main "*) ;; *) continue ;; esac
    base=${suite%-updates}; base=${base%-backports}; base=${base%-proposed-updates}
    case "$base" in
      sid|unstable|experimental|testing|stable|oldstable|oldoldstable|buster|bullseye|bookworm|trixie|forky|duke)
        echo "${uri%/}"; return 0 ;;
    esac
  done < <(apt_source_entries)
  return 1
}

src_hash() {
  # Everything that determines the binary: our Go sources (not the tests), this script, the lock.
  (cd "$HERE" && { cat build.sh; [ ! -f PACKAGES.lock ] || cat PACKAGES.lock;
                   find . -maxdepth 1 -name '*.go' ! -name '*_test.go' -print0 | LC_ALL=C sort -z | xargs -0r cat; }) \
    | sha256sum | cut -d' ' -f1
}

PRINT=0
[ "${1:-}" = "--print" ] && PRINT=1

# one build at a time per cache (parallel test runners may all call start.sh -> build.sh)
mkdir -p "$CACHE"
if command -v flock >/dev/null; then
  exec 9>"$CACHE/.build.lock"
  flock 9
fi

# ---------------------------------------------------------------------------------- no-op
HASH="$(src_hash)"
if [ -x "$BIN/test-apiserver" ] && [ -x "$BIN/etcd" ] && [ -f "$BIN/.srchash" ] \
   && [ "$(cat "$BIN/.srchash")" = "$HASH" ]; then
  log "up to date: $BIN/test-apiserver (sources hash ${HASH:0:12})"
  [ $PRINT = 1 ] && { echo "$BIN/test-apiserver"; echo "$BIN/etcd"; }
  [ -f "$LOCK" ] && log "packages: $(grep -vc '^#' "$LOCK") Debian sid packages as pinned in PACKAGES.lock, e.g. $(grep -E '^(golang-k8s-apiserver-dev|golang-1.26-go|etcd-server) ' "$LOCK" | tr '\n' ' ')"
  exit 0
fi

START=$(date +%s)
mkdir -p "$APTDIR"/{etc/apt.conf.d,etc/preferences.d,etc/trusted.gpg.d,etc/sources.list.d,lists/partial,cache/archives/partial,state} "$DEBS" "$BIN"
if ! ARCHIVE=$(debian_archive_uri); then
  READ=$(apt_source_files | paste -sd ' ' -)
  die "no Debian main archive in the machine's apt sources. Files read: ${READ:-none (no $APT_SOURCES_DIR/sources.list, sources.list.d/*.list or sources.list.d/*.sources exists)}. Looked for a 'deb' entry (one-line or deb822 URIs:) of a Debian suite with component main, other than the security archive."
fi
log "Debian archive (from the machine's apt sources): $ARCHIVE"
echo "deb [signed-by=$KEYRING] $ARCHIVE sid main" > "$APTDIR/etc/sources.list"
[ -f "$APTDIR/state/status" ] || : > "$APTDIR/state/status"
APTOPTS=(
  -o "Dir::Etc::SourceList=$APTDIR/etc/sources.list"
  -o "Dir::Etc::SourceParts=$APTDIR/etc/sources.list.d"
  -o "Dir::Etc::Parts=$APTDIR/etc/apt.conf.d"
  -o "Dir::Etc::Preferences=$APTDIR/etc/preferences"
  -o "Dir::Etc::PreferencesParts=$APTDIR/etc/preferences.d"
  -o "Dir::Etc::TrustedParts=$APTDIR/etc/trusted.gpg.d"
  -o "Dir::Etc::Trusted=$APTDIR/etc/trusted.gpg"
  -o "Dir::State=$APTDIR/state"
  -o "Dir::State::Lists=$APTDIR/lists"
  -o "Dir::State::status=$APTDIR/state/status"
  -o "Dir::Cache=$APTDIR/cache"
  -o "Dir::Log=$APTDIR/log"
  -o "APT::Architecture=amd64"
  -o "APT::Architectures::=amd64"
  -o "Acquire::Languages=none"
  -o "APT::Sandbox::User=root"
  -o "Debug::NoLocking=1"
)
APT_UPDATED=0
apt_update() {
  [ $APT_UPDATED = 1 ] && return 0
  step "apt-get update (private config, Debian sid main)"
  apt-get "${APTOPTS[@]}" -q update >"$CACHE/apt-update.log" 2>&1 \
    || { tail -20 "$CACHE/apt-update.log" >&2; die "apt-get update of the private sid configuration failed"; }
  APT_UPDATED=1
}

deb_name() { # pkg ver -> the file name apt-get download gives it (epoch ':' is %3a)
  local p=$1 v=$2 f
  for f in "$DEBS/${p}_${v//:/%3a}_"*.deb; do [ -e "$f" ] && { echo "$f"; return 0; }; done
  return 1
}

download_set() { # reads "pkg ver" lines on stdin; downloads missing ones
  local missing=() p v
  while read -r p v; do
    [ -z "$p" ] && continue
    deb_name "$p" "$v" >/dev/null || missing+=("$p=$v")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_update
  step "apt-get download of ${#missing[@]} packages"
  local chunk i
  for ((i = 0; i < ${#missing[@]}; i += 60)); do
    chunk=("${missing[@]:i:60}")
    if ! (cd "$DEBS" && apt-get "${APTOPTS[@]}" -q download "${chunk[@]}" >"$CACHE/apt-download.log" 2>&1); then
      grep -E '^(E|W):' "$CACHE/apt-download.log" >&2 || tail -5 "$CACHE/apt-download.log" >&2
      # name the failing packages precisely
      local one
      for one in "${chunk[@]}"; do
        deb_name "${one%%=*}" "${one#*=}" >/dev/null \
          || (cd "$DEBS" && apt-get "${APTOPTS[@]}" -q download "$one" >/dev/null 2>&1) \
          || { echo "[build.sh] download failed: $one" >&2; return 1; }
      done
    fi
  done
}

resolve_fresh() { # writes "pkg ver" lines for the recursive closure of ROOTS plus EXTRA
  apt_update
  step "resolve the recursive dependencies of ${ROOTS[*]}"
  local pkgs
  pkgs=$(apt-cache "${APTOPTS[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
           --no-breaks --no-replaces --no-enhances "${ROOTS[@]}" \
         | grep -v '^ ' | grep -v '^<' | LC_ALL=C sort -u) || die "apt-cache depends failed"
  [ -n "$pkgs" ] || die "dependency resolution returned nothing"
  # one apt-cache call for the candidate versions of all of them
  local out
  out=$(apt-cache "${APTOPTS[@]}" show --no-all-versions $pkgs "${EXTRA[@]}" \
        | awk '/^Package: /{p=$2} /^Version: /{print p, $2}' | LC_ALL=C sort -u) \
    || die "apt-cache show failed while resolving versions"
  local p
  for p in $pkgs "${EXTRA[@]}"; do
    grep -q "^$p " <<<"$out" || die "no candidate version for package $p"
  done
  echo "$out"
}

write_lock() { # stdin: pkg ver lines
  {
    echo "# Debian sid packages used to build e2e/test-apiserver (written by build.sh; name version)."
    echo "# Roots: ${ROOTS[*]} (+ recursive Depends/PreDepends); ${EXTRA[*]} (etcd binary only)."
    cat
  } > "$LOCK.tmp" && mv "$LOCK.tmp" "$LOCK"
}

# ---------------------------------------------------------------------------------- fetch
SET=""
if [ -f "$LOCK" ] && [ "${ITER8_E2E_REFRESH:-0}" != 1 ]; then
  SET=$(grep -v '^#' "$LOCK" | grep -v '^$')
  step "fetch the $(echo "$SET" | wc -l) package versions pinned in PACKAGES.lock"
  if ! download_set <<<"$SET"; then
    log "a pinned version is no longer in sid: resolving the package set afresh and rewriting PACKAGES.lock"
    SET=""
  fi
fi
if [ -z "$SET" ]; then
  step "resolve the package set (apt-get update, apt-cache depends --recurse)"
  apt_update
  SET=$(resolve_fresh)
  download_set <<<"$SET" || die "apt-get download failed (see the package named above)"
  echo "$SET" | write_lock
fi
log "package set: $(echo "$SET" | wc -l) packages"
echo "$SET" | sed 's/^/[build.sh]   /' >&2

# --------------------------------------------------------------------------------- unpack
SETHASH=$(echo "$SET" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$ROOT/.sethash" 2>/dev/null)" != "$SETHASH" ]; then
  step "unpack the .debs with dpkg-deb -x into $ROOT"
  rm -rf "$ROOT.new" && mkdir -p "$ROOT.new"
  while read -r p v; do
    f=$(deb_name "$p" "$v") || die "deb for $p $v missing after download"
    dpkg-deb -x "$f" "$ROOT.new" || die "dpkg-deb -x failed for $p ($f)"
  done <<<"$SET"
  echo "$SETHASH" > "$ROOT.new/.sethash"
  rm -rf "$ROOT" && mv "$ROOT.new" "$ROOT"
fi

GOROOT="$ROOT/usr/lib/go-1.26"
[ -x "$GOROOT/bin/go" ] || die "go toolchain not found at $GOROOT/bin/go (package golang-1.26-go)"
ETCD_SRC="$ROOT/usr/bin/etcd"
[ -x "$ETCD_SRC" ] || die "etcd binary not found at $ETCD_SRC (package etcd-server)"
cp -f "$ETCD_SRC" "$BIN/etcd.new" && mv -f "$BIN/etcd.new" "$BIN/etcd"

# ---------------------------------------------------------------------------------- build
GOPATHDIR="$CACHE/gopath"
PKG=iter8e2e/testapiserver
SRCDIR="$GOPATHDIR/src/$PKG"
export GOROOT GOPATH="$GOPATHDIR:$ROOT/usr/share/gocode" GO111MODULE=off GOTOOLCHAIN=local \
       GOPROXY=off GOFLAGS= CGO_ENABLED=0 GOCACHE="$CACHE/gocache" GOTELEMETRY=off GOENV=off \
       GOWORK=off PATH="$GOROOT/bin:$PATH"
mkdir -p "$SRCDIR"
rm -rf "$SRCDIR" && mkdir -p "$SRCDIR/generated/openapi"
cp "$HERE"/*.go "$SRCDIR/"

step "build openapi-gen (kube-openapi, GOPATH mode)"
go build -o "$BIN/openapi-gen" k8s.io/kube-openapi/cmd/openapi-gen || die "building openapi-gen failed"

step "generate OpenAPI definitions (openapi-gen over k8s.io/api + apimachinery packages)"
OPENAPI_PKGS=(
  k8s.io/api/core/v1
  k8s.io/api/apps/v1
  k8s.io/api/coordination/v1
  k8s.io/api/autoscaling/v1
  k8s.io/api/discovery/v1
  k8s.io/api/rbac/v1
  k8s.io/api/policy/v1
  k8s.io/apimachinery/pkg/apis/meta/v1
  k8s.io/apimachinery/pkg/runtime
  k8s.io/apimachinery/pkg/util/intstr
  k8s.io/apimachinery/pkg/api/resource
  k8s.io/apimachinery/pkg/version
)
: > "$CACHE/boilerplate.txt"
(cd "$SRCDIR" && "$BIN/openapi-gen" \
   --output-dir "$SRCDIR/generated/openapi" --output-pkg "$PKG/generated/openapi" \
   --output-file zz_generated.openapi.go --go-header-file "$CACHE/boilerplate.txt" \
   --report-filename /dev/null "${OPENAPI_PKGS[@]}") >"$CACHE/openapi-gen.log" 2>&1 \
  || { tail -30 "$CACHE/openapi-gen.log" >&2; die "openapi-gen failed"; }

if [ -z "$K8S_GIT_VERSION" ]; then
  v=$(echo "$SET" | awk '$1=="golang-k8s-apiserver-dev" {print $2}')
  v=${v%%-*}; v=${v#*:}; K8S_GIT_VERSION="v1.${v#0.}"
fi
MAJOR=1; MINOR=$(echo "$K8S_GIT_VERSION" | cut -d. -f2)
LDF="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDF="$LDF -X $p.gitVersion=$K8S_GIT_VERSION -X $p.gitMajor=$MAJOR -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
step "go build test-apiserver ($K8S_GIT_VERSION)"
T0=$(date +%s)
(cd "$SRCDIR" && go build -trimpath -ldflags "$LDF" -o "$BIN/test-apiserver.new" .) \
  || die "go build of the test API server failed"
mv -f "$BIN/test-apiserver.new" "$BIN/test-apiserver"
HASH="$(src_hash)"   # PACKAGES.lock may have been rewritten above
echo "$HASH" > "$BIN/.srchash"
log "built $BIN/test-apiserver in $(( $(date +%s) - T0 ))s (total $(( $(date +%s) - START ))s)"
CURRENT_STEP=done
[ $PRINT = 1 ] && { echo "$BIN/test-apiserver"; echo "$BIN/etcd"; }
exit 0
