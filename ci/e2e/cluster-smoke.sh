#!/usr/bin/env bash
# ci/e2e/cluster-smoke.sh: for each CNI setup in E2E_CNIS (default "bridge calico-like"): bring the
# cluster up from nothing, run ci/e2e/smoke.sh, take it down and check nothing of it is left.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../cluster/lib.sh
. "$repo/ci/cluster/lib.sh"
cluster_lock
trap '"$repo/ci/cluster/down" >/dev/null 2>&1' EXIT
for cni in ${E2E_CNIS:-bridge calico-like}; do
	t=$SECONDS
	CNI=$cni "$repo/ci/cluster/up" >/dev/null
	clog "CNI=$cni: up in $((SECONDS - t))s"
	"$here/smoke.sh"
	before=$(cat "$CLUSTER_DIR"/pids/*)
	CNI=$cni "$repo/ci/cluster/up" >/dev/null # idempotent: a second up changes nothing
	sleep 2 # a process that a second up disturbed (e.g. kube-proxy seeing its config rewritten) exits
	after=$(for f in "$CLUSTER_DIR"/pids/*; do p=$(cat "$f"); ours "$p" && echo "$p"; done)
	[ "$before" = "$after" ] || { clog "FAIL: a second up restarted processes: pids '$before' -> '$after'"; exit 1; }
	"$repo/ci/cluster/down" >/dev/null
	left=$(
		ip netns list | grep -w "$NODE_NS" || true
		ip link show "$HOST_IF" 2>/dev/null || true
		grep -F "$CLUSTER_DIR/" /proc/self/mounts || true
		for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' 2>/dev/null <"$f" | grep -F -- "$CLUSTER_DIR" || true; done
	)
	[ -z "$left" ] || { clog "FAIL: left after down: $left"; exit 1; }
	clog "CNI=$cni: smoke passed, down left nothing ($((SECONDS - t))s)"
done
