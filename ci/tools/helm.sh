#!/usr/bin/env bash
# Build helm v3 from the Go module proxy into /var/cache/berth/bin if it is missing, and print its
# absolute path as the last line of stdout (contract: the chart tests and the cluster scripts use it).
# Built with the release's link flags (helm's Makefile): `helm version` names the version, and the
# default Kubernetes version of `helm template`/`lint` is the one of helm's client-go (1.37 for
# v3.22.0), not 1.20, so the chart's kubeVersion constraint passes without --kube-version.
#   HELM_VERSION   pinned version (default v3.22.0)
#   BERTH_BIN_DIR  where the binary goes (default /var/cache/berth/bin)
set -euo pipefail

version=${HELM_VERSION:-v3.22.0}
bindir=${BERTH_BIN_DIR:-/var/cache/berth/bin}
out=$bindir/helm-$version-release

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
		# helm's Makefile: major = client-go's v0.X + 1 ... i.e. 1, minor = client-go's minor.
		moddir=$(go mod download -json "helm.sh/helm/v3@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
		k8sminor=$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2] }' "$moddir/go.mod")
		[[ $k8sminor =~ ^[0-9]+$ ]] || { echo "helm.sh: no k8s.io/client-go version in $moddir/go.mod" >&2; exit 1; }
		ld="-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.metadata="
		for p in pkg/lint/rules pkg/chartutil; do
			ld+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=$k8sminor"
		done
		GOBIN=$tmp CGO_ENABLED=0 go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$version" >&2
		mv "$tmp/helm" "$out" # atomic within the directory
	fi
fi
# $bindir/helm: the entry point for a person (and PATH); it names the binary above, relative.
ln -sfn "${out##*/}" "$bindir/helm.tmp.$$" && mv -T "$bindir/helm.tmp.$$" "$bindir/helm"
[ -x "$bindir/helm" ] || { echo "helm.sh: $bindir/helm does not lead to $out" >&2; exit 1; }
echo "$out"
