# shellcheck shell=bash
# ci/chaos/lib.sh: what ci/chaos/run.sh brings things up with, on top of
# ci/cluster/lib.sh (clog, kc, ctrn, innode, wait_for, cluster_lock, CLUSTER_DIR ...). Source it,
# then call chaos_init SUITE once (after cluster_lock). Everything here bounds its waits.
#
#   CHAOS_NS            the namespace (default berth-chaos); CHAOS_OUT out/chaos (timings.tsv, results.tsv)
#   work                a temporary directory of the run ($work/id: an ed25519 key, $work/id.pub)
#   HELM / helm ARGS    helm v3.22.0 (ci/tools/helm.sh) on the cluster, each call bounded (300 s)
#   GUEST               the test guest (ci/testguest/build.sh)
#   phase NAME          ends the running phase: "SUITE<TAB>NAME<TAB>seconds" into timings.tsv
#   fail MSG            prints MSG, the pods, describe tails, every container's last log lines; exit 1
#   load_images         make images (unless CHAOS_SKIP_IMAGES=1), the toolbox image; TOOLBOX=its name
#   fileserver_pod NAME DIR [RATE]   an HTTP server pod serving DIR (hostPath, read-only), paced
#                       to RATE (e.g. 16Mi) per response; prints http://IP:8080
# Under `set -o pipefail`, test output with `grep -q PATTERN <<<"$(kc ...)"`, not `kc ... | grep -q`:
# grep -q quitting at the first match can make kubectl die of SIGPIPE and fail a passing check.

CHAOS_NS=${CHAOS_NS:-berth-chaos}
CHAOS_OUT=${CHAOS_OUT:-$repo/out/chaos}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-480}
CHAOS_SUITE=""

chaos_init() { # chaos_init SUITE: work dir, SSH key, helm, the test guest; truncates nothing
	CHAOS_SUITE=$1
	mkdir -p "$CHAOS_OUT"
	work=$(mktemp -d /tmp/berth-chaos.XXXXXX)
	chmod 0755 "$work"
	ssh-keygen -q -t ed25519 -N '' -C "berth-chaos" -f "$work/id" </dev/null
	[ -x "$repo/ci/tools/helm.sh" ] || fail "ci/tools/helm.sh missing"
	HELM=$("$repo/ci/tools/helm.sh" | tail -1)
	GUEST=$("$repo/ci/testguest/build.sh" | tail -1)
	[ -f "$GUEST" ] || fail "test guest: ci/testguest/build.sh printed '$GUEST', not a file"
	phase_start=$SECONDS
}
helm() { timeout 300 "$HELM" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

phase() {
	printf '%s\t%s\t%s\n' "$CHAOS_SUITE" "$1" "$((SECONDS - phase_start))" >>"$CHAOS_OUT/timings.tsv"
	clog "phase $CHAOS_SUITE/$1: $((SECONDS - phase_start))s"
	phase_start=$SECONDS
}
fail() {
	clog "FAIL: $*"
	{
		kc -n "$CHAOS_NS" get pods -o wide
		for p in $(kc -n "$CHAOS_NS" get pods -o name 2>/dev/null); do
			echo "--- $p"
			kc -n "$CHAOS_NS" describe "$p" | sed -n '/^Init Containers:/,$p' | grep -E '^  [a-z]|State|Reason|Message|Exit Code|Restart Count|Ready' | head -60
			kc -n "$CHAOS_NS" describe "$p" | sed -n '/^Events:/,$p' | tail -12
			kc -n "$CHAOS_NS" logs "$p" --all-containers --tail=15 --prefix 2>/dev/null
		done
	} >&2 2>/dev/null || true
	exit 1
}

load_images() {
	if [ "${CHAOS_SKIP_IMAGES:-0}" != 1 ]; then
		make -C "$repo" --no-print-directory images >"$CHAOS_OUT/make-images.log" 2>&1 || fail "make images (log: $CHAOS_OUT/make-images.log)"
		"$repo/ci/cluster/load-images" "$repo"/out/images/*.oci.tar >/dev/null 2>&1 || fail "load-images"
	fi
	compgen -G "$repo/out/images/*.oci.tar" >/dev/null || fail "no out/images/*.oci.tar: run make images"
	TOOLBOX=$("$repo/ci/e2e/toolbox-image.sh" | tail -1)
}

fileserver_pod() { # fileserver_pod NAME DIR [RATE]: ci/cluster/lib.sh's serve_dir_pod in CHAOS_NS
	serve_dir_pod "$CHAOS_NS" "$1" "$2" "$TOOLBOX" "${3:-0}" || fail "fileserver pod $1 not Ready"
}
