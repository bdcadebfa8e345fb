#!/usr/bin/env bash
# ci/chart/test.sh: the chart's checks with the helm CLI (the version ci/tools/helm.sh pins):
# `helm lint --strict` and `helm template` of chart/ with every chart/examples/*.yaml, each rendering
# checked to be valid YAML with at least one StatefulSet; then the Go tests in charttest/ (Helm's SDK:
# objects, golden snapshots, refused values, rendered objects validated, the stages' --dry-run on
# the rendered env; the image-cache step as root, when run as root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PATH=/usr/local/go/bin:$PATH
HELM=$("$repo/ci/tools/helm.sh" | tail -1)
# The Kubernetes version to render for: the CI cluster's (ci/k8s-version), as charttest does.
KUBE_VERSION=${KUBE_VERSION:-$(cat "$repo/ci/k8s-version")}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0
for f in "$repo"/chart/examples/*.yaml; do
	name=$(basename "$f" .yaml)
	if ! "$HELM" lint --strict "$repo/chart" -f "$f" >"$out/$name.lint" 2>&1; then
		echo "chart: helm lint --strict with examples/$name.yaml failed:" >&2
		cat "$out/$name.lint" >&2
		fail=1
		continue
	fi
	if ! "$HELM" template "example-$name" "$repo/chart" -n berth -f "$f" --kube-version "$KUBE_VERSION" >"$out/$name.yaml" 2>"$out/$name.err"; then
		echo "chart: helm template with examples/$name.yaml failed:" >&2
		cat "$out/$name.err" >&2
		fail=1
		continue
	fi
	n=$(python3 -c 'import sys, yaml; print(sum(1 for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "StatefulSet"))' "$out/$name.yaml") || {
		echo "chart: examples/$name.yaml renders invalid YAML" >&2
		fail=1
		continue
	}
	[ "$n" -ge 1 ] || { echo "chart: examples/$name.yaml renders no StatefulSet" >&2; fail=1; continue; }
	echo "chart: examples/$name.yaml: lint --strict ok, template ok ($n StatefulSet)"
done
[ "$fail" = 0 ] || exit 1
# The stage binaries: charttest runs each stage's --dry-run on the env the chart renders for it
# (TestStagesAgree), and BERTH_REQUIRE_BIN=1 makes their absence a failure, not a skip.
make -C "$repo" build >/dev/null
grep -q "./charttest" "$repo/go.work" 2>/dev/null || export GOWORK=off # until go.work lists charttest
(cd "$repo/charttest" && BERTH_REQUIRE_BIN=1 go test -count=1 ./...)
