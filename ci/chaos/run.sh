#!/usr/bin/env bash
# ci/chaos/run.sh (`make chaos`): Berth under faults, on the real single-node cluster (ci/cluster/up),
# with the chart and the images of `make images`. This script only brings things up: the cluster,
# the images, the namespace, the served directory (guest.qcow2 the test guest, swap.qcow2 a hard
# link of it, other.qcow2 an empty qcow2) and the paced HTTP server pod; the faults and every check
# are the Go test e2e/chaos (go test -tags e2e, client-go; docs/reliability.md lists them): four
# download faults, then kubelet restarted, dnsmasq killed, QEMU killed and the guest powering off on
# one long-lived VM; then the bad-input tests of the same package (TestChartRefuses, TestBadInput,
# TestLeastPrivilege: bad input through the chart and least privilege, live), which watch that VM
# as their good VM, with a second file server (files: guest.qcow2, parent.qcow2 and child.qcow2,
# a qcow2 backed by parent.qcow2). TestBadInput makes and deletes its own namespace and storage.
# Phases go to out/chaos/timings.tsv, results to out/chaos/results.tsv and out/chaos/results.md.
# The trap deletes the namespace, removes the caches and takes the cluster down unless KEEP_CLUSTER=1.
#   CHAOS_SKIP_IMAGES=1  use out/images/*.oci.tar as they are (no make images)
#   CHAOS_SKIP_BAD_INPUT=1  do not run the bad-input tests
#   CHAOS_RATE           the file server's pace per download (default 16Mi bytes/s)
#   CNI                  the cluster's CNI when it is started here (default: the running one, else bridge)
#   CHAOS_RUN            a -test.run pattern for the faults' run of the Go test (default ^TestFaults$;
#                        '^$' runs none: the bad-input tests then boot a good VM of their own)
# The whole script is one function, read before it runs: editing the file during a run is safe.
main() {
set -eEuo pipefail
trap 'clog "FAIL: line $LINENO: $BASH_COMMAND (exit $?)"' ERR
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../cluster/lib.sh
. "$repo/ci/cluster/lib.sh"
# shellcheck source=lib.sh
. "$here/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root"
cluster_lock
t_start=$SECONDS
CHAOS_RATE=${CHAOS_RATE:-16Mi}
CACHES=$CLUSTER_DIR/chaos-caches
BAD_INPUT_NS=berth-bad-input # TestBadInput's own namespace: it makes and deletes it
mkdir -p "$CHAOS_OUT"
: >"$CHAOS_OUT/timings.tsv"
: >"$CHAOS_OUT/results.tsv"
rm -f "$CHAOS_OUT/faults.txt" "$CHAOS_OUT/bad-input.tsv"

cleanup() {
	local rc=$?
	trap - ERR
	if [ "${KEEP_CLUSTER:-0}" = 1 ] && [ -S "$CONTAINERD_SOCK" ]; then
		kc delete namespace "$CHAOS_NS" "$BAD_INPUT_NS" --ignore-not-found --wait=true --timeout=180s >/dev/null 2>&1 ||
			clog "namespace $CHAOS_NS or $BAD_INPUT_NS not deleted" # TestBadInput deletes its own unless killed
	fi
	if [ -S "$CONTAINERD_SOCK" ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
		"$repo/ci/cluster/down" >/dev/null 2>&1 || clog "cluster down failed"
	fi
	if mountpoint -q "$CACHES/full" 2>/dev/null; then umount "$CACHES/full" 2>/dev/null || umount -l "$CACHES/full"; fi
	rm -rf "$CACHES"
	[ -z "${work:-}" ] || rm -rf "$work"
	clog "total $((SECONDS - t_start))s"
	if [ "$rc" = 0 ]; then clog "PASS"; else clog "FAILED (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- prerequisites and the cluster -------------------------------------------------------------
chaos_init faults
if [ -z "${CNI:-}" ]; then
	CNI=bridge
	[ -n "$(ls "$CLUSTER_DIR/pids" 2>/dev/null)" ] && [ -f "$CLUSTER_DIR/cni-mode" ] && CNI=$(cat "$CLUSTER_DIR/cni-mode")
fi
export CNI
"$repo/ci/cluster/up" >/dev/null || fail "ci/cluster/up (CNI=$CNI)"
load_images
(cd "$repo/e2e" && GOWORK=off go test -c -tags e2e -o "$work/chaos.test" ./chaos) || fail "build the chaos test"
kc delete namespace "$CHAOS_NS" --ignore-not-found --wait=true --timeout=180s >/dev/null # a kept run's
kc create namespace "$CHAOS_NS" >/dev/null
wait_for 30 "service account in $CHAOS_NS" kc -n "$CHAOS_NS" get serviceaccount default || fail "no default service account"
if mountpoint -q "$CACHES/full" 2>/dev/null; then umount -l "$CACHES/full"; fi
rm -rf "$CACHES"
mkdir -p "$CACHES"
srv=$work/srv
mkdir -p "$srv"
ln "$GUEST" "$srv/guest.qcow2" 2>/dev/null || cp "$GUEST" "$srv/guest.qcow2"
ln "$srv/guest.qcow2" "$srv/swap.qcow2"
qemu-img create -q -f qcow2 "$srv/other.qcow2" 2G
chmod -R a+rX "$srv"
FS=$(fileserver_pod fileserver "$srv" "$CHAOS_RATE")
phase setup

# --- the faults (the Go test) -------------------------------------------------------------------
chaos_test() { # chaos_test PATTERN FLAGS...: the test binary, from its package directory
	local pattern=$1 pattern_name
	pattern_name=$(tr -c 'A-Za-z0-9\n' _ <<<"$pattern")
	shift
	(cd "$repo/e2e/chaos" && run_go_test "$CHAOS_OUT/chaos-$pattern_name.log" "$work/chaos.test" -test.v -test.timeout 60m -test.run "$pattern" \
		-kubeconfig "$KUBECONFIG_ADMIN" -helm "$HELM" -chart "$repo/chart" -namespace "$CHAOS_NS" \
		-ssh-key "$work/id" -node-netns "/var/run/netns/$NODE_NS" -cluster-dir "$CLUSTER_DIR" \
		-ctr "$(command -v ctr)" -containerd "$CONTAINERD_SOCK" -out "$CHAOS_OUT" -boot-timeout "${BOOT_TIMEOUT}s" "$@" 8>&-)
}
chaos_test "${CHAOS_RUN:-^TestFaults$}" -fileserver fileserver -fileserver-url "$FS" -srv "$srv" -caches "$CACHES" \
	-rate "$CHAOS_RATE" -cluster-up "$repo/ci/cluster/up" || fail "the chaos test failed (output above)"
phase_start=$SECONDS # the test wrote its own phases

# --- bad input through the chart and least privilege (the same Go package, same cluster, lock) --
# They watch vm1 as their good VM (restart counts unchanged, Ready) when the faults left it running.
if [ "${CHAOS_SKIP_BAD_INPUT:-0}" != 1 ]; then
	bad=$work/bad-srv
	mkdir -p "$bad"
	ln "$GUEST" "$bad/guest.qcow2" 2>/dev/null || cp "$GUEST" "$bad/guest.qcow2"
	qemu-img create -q -f qcow2 "$bad/parent.qcow2" 64M
	qemu-img create -q -f qcow2 -b parent.qcow2 -F qcow2 "$bad/child.qcow2"
	chmod -R a+rX "$bad"
	files=$(fileserver_pod files "$bad")
	good=()
	if kc -n "$CHAOS_NS" get pod chaos-vm1-0 >/dev/null 2>&1; then good=(-good-pod "$CHAOS_NS/chaos-vm1-0"); fi
	chaos_test '^(TestChartRefuses|TestBadInputValuesRender|TestBadInput|TestLeastPrivilege)$' -bad-input-namespace "$BAD_INPUT_NS" \
		-bad-input-srv "$bad" -bad-input-url "$files" "${good[@]}" ||
		fail "the bad-input tests failed (output above)"
	phase_start=$SECONDS
fi

# --- summary -------------------------------------------------------------------------------------
{
	printf '| fault | checked afterwards | result | s |\n|---|---|---|---|\n'
	awk -F'\t' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }' "$CHAOS_OUT/results.tsv"
	printf '\n'
	if [ -f "$CHAOS_OUT/faults.txt" ]; then cat "$CHAOS_OUT/faults.txt"; fi # not when CHAOS_RUN left TestFaults out
} >"$CHAOS_OUT/results.md"
if [ -f "$CHAOS_OUT/faults.txt" ]; then clog "$(cat "$CHAOS_OUT/faults.txt")"; fi
}
main "$@"
