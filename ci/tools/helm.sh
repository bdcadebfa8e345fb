#!/usr/bin/env bash
# Build helm v3 from the Go module proxy into /var/cache/berth/bin if it is missing, and print its
# absolute path as the last line of stdout (contract: the chart tests and the cluster scripts use it).
#   HELM_VERSION   pinned version (default v3.22.0)
#   BERTH_BIN_DIR  where the binary goes (default /var/cache/berth/bin)
set -euo pipefail

version=${HELM_VERSION:-v3.22.0}
bindir=${BERTH_BIN_DIR:-/var/cache/berth/bin}
out=$bindir/helm-$version

if [ ! -x "$out" ]; then
	mkdir -p "$bindir"
	export PATH=/usr/local/go/bin:$PATH
	# One build at a time: parallel callers wait for the first instead of racing.
	exec 9>"$bindir/.helm.lock"
	flock 9
	if [ ! -x "$out" ]; then
		tmp=$(mktemp -d "$bindir/.helm-build.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		echo "helm.sh: building helm $version from the Go module proxy (about 2.5 min cold)" >&2
		GOBIN=$tmp CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$version" >&2
		mv "$tmp/helm" "$out" # atomic within the directory
	fi
fi
ln -sfn "helm-$version" "$bindir/helm.tmp.$$" && mv -T "$bindir/helm.tmp.$$" "$bindir/helm"
echo "$out"
