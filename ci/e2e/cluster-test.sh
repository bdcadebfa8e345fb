#!/usr/bin/env bash
# ci/e2e/cluster-test.sh (`make test-e2e`): Berth end to end on a real single-node Kubernetes
# (ci/cluster/up), for each CNI setup in E2E_CNIS (default "calico-like bridge"). This script only
# brings things up: helm, the test guest, the images, the SSH key, the browser check's packages,
# then per CNI the cluster, the e2e toolbox image, the namespace with the HTTP server pod that
# image-fetch downloads the guest from, and the values. Every check is the Go test e2e/cluster
# (go test -tags e2e, client-go; docs/e2e.md lists them), run here with flags; it also appends its
# phase timings to out/e2e/timings.tsv. The trap takes the cluster down (KEEP_CLUSTER=1 keeps it).
#   E2E_CNIS        the CNIs, in order;  E2E_FULL_CNIS  those that get the full scenario (default
#                   calico-like; set and empty: none)
#   E2E_SKIP_IMAGES=1  use out/images/*.oci.tar as they are;  E2E_RUN  a -test.run pattern (default:
#                   TestCluster, and on the full CNIs also TestDisks and TestDiskMigration)
#   E2E_LEGACY=0    skip TestDiskMigration (the chart before issue 18, at commit LEGACY_CHART_COMMIT)
#   BOOT_TIMEOUT    seconds for one TCG boot with the image download (default 480)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../cluster/lib.sh
. "$repo/ci/cluster/lib.sh"

cluster_lock # the whole run: nobody else's up or down in between
E2E_CNIS=${E2E_CNIS:-calico-like bridge}
E2E_FULL_CNIS=${E2E_FULL_CNIS-calico-like}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-480}
NS=berth-e2e
REL=e2e
MARKER=berth-e2e-$RANDOM$RANDOM
CONSOLE_PASSWORD=berth-$RANDOM$RANDOM # the guest user's, for the serial console test only
OUT=$repo/out/e2e
mkdir -p "$OUT"
work=$(mktemp -d /tmp/berth-e2e.XXXXXX)
IMG_CACHE=$CLUSTER_DIR/e2e-image-cache
: >"$OUT/timings.tsv"

fail() { clog "FAIL: $*"; exit 1; }
phase_start=$SECONDS
phase() { # phase NAME: end the running phase under NAME
	printf '%s\t%s\t%s\n' "${CNI:-}" "$1" "$((SECONDS - phase_start))" >>"$OUT/timings.tsv"
	clog "phase ${CNI:-setup}/$1: $((SECONDS - phase_start))s"
	phase_start=$SECONDS
}
cleanup() {
	local rc=$?
	if [ -S "$CONTAINERD_SOCK" ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
		"$repo/ci/cluster/down" >/dev/null 2>&1 || clog "cluster down failed"
	fi
	if [ "${KEEP_CLUSTER:-0}" = 1 ]; then clog "kept: the cluster, the SSH key $work/id"; else rm -rf "$work" "$IMG_CACHE"; fi
	if [ "$rc" = 0 ]; then clog "PASS"; else clog "FAILED (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- what the test needs -----------------------------------------------------------------------
HELM=$("$repo/ci/tools/helm.sh" | tail -1)
GUEST=$("$repo/ci/testguest/build.sh" | tail -1)
[ -f "$GUEST" ] || fail "test guest: ci/testguest/build.sh printed '$GUEST', not a file"
if [ "${E2E_SKIP_IMAGES:-0}" != 1 ]; then
	make -C "$repo" --no-print-directory images >"$OUT/make-images.log" 2>&1 || fail "make images (log: $OUT/make-images.log)"
fi
compgen -G "$repo/out/images/*.oci.tar" >/dev/null || fail "no out/images/*.oci.tar: make images exported nothing"
ssh-keygen -q -t ed25519 -N '' -C berth-e2e -f "$work/id" </dev/null
# The web console's browser check (ci/console/web-console.mjs): playwright-core and Debian's Chromium.
command -v npm >/dev/null || fail "npm is not installed (ci/install-deps.sh: nodejs)"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || fail "no Chromium at ${CHROMIUM:-/usr/bin/chromium} (ci/install-deps.sh: chromium)"
(cd "$repo/ci/console" && timeout 300 npm ci --no-audit --no-fund --loglevel=error >"$OUT/npm-ci.log" 2>&1) ||
	fail "npm ci in ci/console (log: $OUT/npm-ci.log)"
(cd "$repo/e2e" && GOWORK=off go test -c -tags e2e -o "$work/cluster.test" ./cluster) || fail "build the e2e test"
# TestDiskMigration installs the chart as it was before issue 18 (a StatefulSet with volumeClaimTemplates).
LEGACY_CHART_COMMIT=${LEGACY_CHART_COMMIT:-54983df}
legacy_chart=
if [ "${E2E_LEGACY:-1}" = 1 ] && ! git -C "$repo" cat-file -e "$LEGACY_CHART_COMMIT^{commit}" 2>/dev/null; then
	# A shallow clone lacks the earlier chart: say so loudly; TestDiskMigration then skips.
	clog "WARNING: commit $LEGACY_CHART_COMMIT (the chart before issue 18) is not in this clone: TestDiskMigration is skipped"
elif [ "${E2E_LEGACY:-1}" = 1 ]; then
	mkdir -p "$work/legacy"
	git -C "$repo" archive "$LEGACY_CHART_COMMIT" chart | tar -x -C "$work/legacy" || fail "git archive $LEGACY_CHART_COMMIT chart"
	legacy_chart=$work/legacy/chart
fi
phase prerequisites

run_cni() {
	export CNI=$1
	local full=false
	if [[ " $E2E_FULL_CNIS " == *" $CNI "* ]]; then full=true; fi
	# A per-node image cache of this run only (hostPath), so the first boot really downloads.
	rm -rf "$IMG_CACHE"
	"$repo/ci/cluster/up" >/dev/null || fail "ci/cluster/up with CNI=$CNI"
	local toolbox url
	toolbox=$("$here/toolbox-image.sh" | tail -1)
	phase cluster-up

	kc delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null # a KEEP_CLUSTER run's
	kc create namespace "$NS" >/dev/null
	wait_for 30 "service account in $NS" kc -n "$NS" get serviceaccount default || fail "no default service account"
	# The HTTP server pod: serves the test guest's directory (hostPath, read-only) on 8080.
	url=$(serve_dir_pod "$NS" fileserver "$(dirname "$GUEST")" "$toolbox") || fail "fileserver pod not Ready"
	url="$url/$(basename "$GUEST")"
	sed -e "s|@IMG_URL@|$url|" -e "s|@IMG_TARGET@|berth-testguest.qcow2|" -e "s|@MARKER@|$MARKER|" -e "s|@CONSOLE_PASSWORD@|$CONSOLE_PASSWORD|" \
		-e "s|@IMG_CACHE@|$IMG_CACHE|" -e "s|@SSH_PUBKEY@|$(cat "$work/id.pub")|" "$here/values.yaml.in" >"$work/values.yaml"
	phase fileserver

	local run='^TestCluster$'
	if [ "$full" = true ]; then run='^(TestCluster|TestDisks|TestDiskMigration)$'; fi
	(cd "$repo/e2e/cluster" && run_go_test "$OUT/e2e-$CNI.log" "$work/cluster.test" -test.v -test.timeout 120m -test.run "${E2E_RUN:-$run}" \
		-kubeconfig "$KUBECONFIG_ADMIN" -helm "$HELM" -kubectl "$K8S_BIN/kubectl" -chart "$repo/chart" \
		-values "$work/values.yaml" -namespace "$NS" -release "$REL" -cni "$CNI" -full="$full" \
		-ssh-key "$work/id" -node-netns "/var/run/netns/$NODE_NS" -marker "$MARKER" -console-password "$CONSOLE_PASSWORD" \
		-fileserver fileserver -image-path "/$(basename "$GUEST")" -out "$OUT" -boot-timeout "${BOOT_TIMEOUT}s" \
		-serial-console "$here/serial-console.py" -web-console "$repo/ci/console/web-console.mjs" \
		-ctr "$(command -v ctr)" -containerd "$CONTAINERD_SOCK" -cluster-dir "$CLUSTER_DIR" -legacy-chart "$legacy_chart" 8>&-) ||
		fail "CNI=$CNI: the e2e test failed (output above)"
	phase_start=$SECONDS # the test wrote its own phases

	if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
		kc delete namespace "$NS" --wait=true --timeout=120s >/dev/null || true
		"$repo/ci/cluster/down" >/dev/null
		phase cluster-down
	fi
	clog "CNI=$CNI: all checks passed"
}

for c in $E2E_CNIS; do
	case $c in bridge | calico-like) ;; *) fail "E2E_CNIS: '$c' is not one of bridge, calico-like" ;; esac
	run_cni "$c"
done
