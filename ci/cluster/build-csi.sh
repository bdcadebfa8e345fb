#!/usr/bin/env bash
# Build the CSI sidecars the cluster runs beside ci/cluster/csi (external-provisioner and
# external-resizer, versions in lib.sh) from the Go module proxy. Their go.mod files carry replace
# directives (k8s.io/* pinned), which `go install mod@ver` refuses; so, as build-k8s.sh does, a
# throwaway module requires the sidecar at its version and carries the same replace lines (copied
# from the sidecar's own go.mod, fetched from the proxy), then go mod tidy and go build.
# Cached under /var/cache/berth/csi/<name>/<version>/bin; a second run is a no-op.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
export PATH=/usr/local/go/bin:$PATH
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOWORK=off

log() { printf '%s build-csi: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# build NAME MODULE VERSION CMD: $CSI_CACHE/NAME/VERSION/bin/CMD from MODULE@VERSION's cmd/CMD.
build() {
	local name=$1 mod=$2 ver=$3 cmd=$4 cache gomod goline start tmp
	cache=$CSI_CACHE/$name/$ver
	[ -x "$cache/bin/$cmd" ] && return 0
	mkdir -p "$cache/src"
	# One builder at a time (two ups may race); the loser waits, then reuses.
	exec 9>"$cache/.lock"
	timeout 3600 flock 9 || { log "timed out waiting for $cache/.lock"; return 1; }
	if [ -x "$cache/bin/$cmd" ]; then exec 9>&-; return 0; fi
	start=$(date +%s)
	log "module $mod $ver in $cache/src"
	gomod=$(timeout 120 curl -fsS "$(go env GOPROXY | cut -d, -f1)/$mod/@v/$ver.mod") ||
		{ log "cannot fetch go.mod of $mod $ver from the module proxy"; return 1; }
	goline=$(printf '%s\n' "$gomod" | awk '$1 == "go" { print $2; exit }')
	# A replace by a local directory cannot be carried into another module.
	if printf '%s\n' "$gomod" | awk '$1 == "replace" && $4 ~ /^\.\.?\// { bad = 1 } END { exit !bad }'; then
		log "$mod $ver replaces a module by a local directory: cannot be built from the proxy this way"
		return 1
	fi
	{
		echo "module berth.local/csibuild"
		echo
		echo "go $goline"
		echo
		echo "require $mod $ver"
		echo
		printf '%s\n' "$gomod" | awk '$1 == "replace" && $3 == "=>" && NF == 5'
	} >"$cache/src/go.mod.new"
	mv "$cache/src/go.mod.new" "$cache/src/go.mod"
	printf '//go:build tools\n\npackage tools\n\nimport _ "%s/cmd/%s"\n' "$mod" "$cmd" >"$cache/src/tools.go"
	log "go mod tidy ($name)"
	(cd "$cache/src" && timeout 900 nice -n 10 go mod tidy)
	tmp=$(mktemp -d "$cache/bin.tmp.XXXXXX")
	log "go build $cmd"
	# Both sidecars print main.version with --version.
	if ! (cd "$cache/src" && timeout 3600 nice -n 10 go build -trimpath -tags tools \
		-ldflags "-s -w -X main.version=$ver" -o "$tmp/$cmd" "$mod/cmd/$cmd"); then
		rm -rf "$tmp"
		return 1
	fi
	mkdir -p "$cache/bin"
	mv "$tmp/$cmd" "$cache/bin/$cmd"
	rm -rf "$tmp"
	exec 9>&-
	log "built $cmd $ver in $(($(date +%s) - start)) s"
}

build external-provisioner "$CSI_PROVISIONER_MODULE" "$CSI_PROVISIONER_VERSION" csi-provisioner
build external-resizer "$CSI_RESIZER_MODULE" "$CSI_RESIZER_VERSION" csi-resizer
