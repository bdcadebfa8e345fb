#!/usr/bin/env bash
# Build the Kubernetes binaries Berth's CI cluster runs, from the Go module proxy, at one pinned
# release: a throwaway module requires k8s.io/kubernetes and replaces every k8s.io/* staging
# module with the matching v0.Y.Z (the replace block of kubernetes' own go.mod, made mechanical).
# Cached under /var/cache/berth/k8s/<version>/bin; a second run is a no-op.
# Prints the bin directory as the last line of stdout.
set -euo pipefail

# The version: ci/k8s-version, the one place that names it (charttest renders the chart for it too).
K8S_VERSION=${K8S_VERSION:-$(cat "$(dirname "$0")/../k8s-version")}
[[ $K8S_VERSION =~ ^v1\.[0-9]+\.[0-9]+$ ]] || { echo "build-k8s: K8S_VERSION ${K8S_VERSION@Q}: want v1.<minor>.<patch>" >&2; exit 2; }
CACHE=${BERTH_K8S_CACHE:-/var/cache/berth/k8s}/$K8S_VERSION
BIN=$CACHE/bin
SRC=$CACHE/src
CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy)
export PATH=/usr/local/go/bin:$PATH
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '%s build-k8s: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

have_all() {
	local c
	for c in "${CMDS[@]}"; do [ -x "$BIN/$c" ] || return 1; done
}

if have_all; then
	echo "$BIN"
	exit 0
fi

mkdir -p "$CACHE"
# One builder at a time (make test and make demo may race); the loser waits, then reuses.
exec 9>"$CACHE/.lock"
timeout 3600 flock 9 || { log "timed out waiting for $CACHE/.lock"; exit 1; }
if have_all; then
	echo "$BIN"
	exit 0
fi

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
staging_version=v0.${K8S_VERSION#v1.}
start=$(date +%s)

mkdir -p "$SRC"
cd "$SRC"
log "module k8s.io/kubernetes $K8S_VERSION (staging $staging_version) in $SRC"
gomod=$(timeout 120 curl -fsS "$(go env GOPROXY | cut -d, -f1)/k8s.io/kubernetes/@v/$K8S_VERSION.mod") ||
	{ log "cannot fetch go.mod of k8s.io/kubernetes $K8S_VERSION from the module proxy"; exit 1; }
goline=$(printf '%s\n' "$gomod" | awk '$1 == "go" { print $2; exit }')
{
	echo "module berth.local/k8sbuild"
	echo
	echo "go $goline"
	echo
	echo "require k8s.io/kubernetes $K8S_VERSION"
	echo
	echo "replace ("
	printf '%s\n' "$gomod" | awk -v v="$staging_version" \
		'$2 == "=>" && $3 ~ /^\.\/staging\/src\// { printf "\t%s => %s %s\n", $1, $1, v }'
	echo ")"
} >go.mod.new
mv go.mod.new go.mod
cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
log "go mod tidy"
timeout 900 nice -n 10 go mod tidy

ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

tmp=$(mktemp -d "$CACHE/bin.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for c in "${CMDS[@]}"; do
	if [ -x "$BIN/$c" ]; then continue; fi
	log "go build $c"
	timeout 3600 nice -n 10 go build -trimpath -tags tools -ldflags "$ldflags" -o "$tmp/$c" "k8s.io/kubernetes/cmd/$c"
	mkdir -p "$BIN"
	mv "$tmp/$c" "$BIN/$c"
	log "built $c at $(($(date +%s) - start)) s"
done
"$BIN/kubectl" version --client >&2
log "done in $(($(date +%s) - start)) s"
echo "$BIN"
