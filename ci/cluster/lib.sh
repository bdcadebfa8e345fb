# shellcheck shell=bash
# Shared by ci/cluster/up, down, demo.sh and ci/e2e: where the single-node cluster lives.
# The "node" is a network namespace of its own (berth-node) joined to the machine by a veth
# (host 10.222.0.1 <-> node 10.222.0.2); every cluster process runs in it (nsenter --net, same
# mount namespace), so the pod network, kube-proxy's and the CNI's iptables rules never touch the
# machine's own network. The machine reaches pods through a route to 10.244.0.0/16 via the node.

# The version: ci/k8s-version, the one place that names it (build-k8s.sh and charttest read it).
K8S_VERSION=${K8S_VERSION:-$(cat "$(dirname "${BASH_SOURCE[0]}")/../k8s-version")}
CLUSTER_DIR=${BERTH_CLUSTER_DIR:-/var/lib/berth-cluster}
CLUSTER_RUN=/run/berth-cluster
NODE_NS=berth-node
HOST_IF=berth-node0
HOST_IP=10.222.0.1
NODE_IP=10.222.0.2
POD_NET=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/24
CLUSTER_DNS=10.96.0.10
CONTAINERD_SOCK=$CLUSTER_RUN/containerd/containerd.sock
KUBECONFIG_ADMIN=$CLUSTER_DIR/pki/admin.kubeconfig
K8S_BIN=/var/cache/berth/k8s/$K8S_VERSION/bin
PAUSE_IMAGE=localhost/berth/pause:0.1.0

# Storage (docs/cluster.md "Storage"): the CSI driver of ci/cluster/csi and its two sidecars, built
# from the Go module proxy by build-csi.sh into CSI_CACHE/<name>/<version>/bin.
CSI_DRIVER=csi.berth.dev
CSI_DIR=$CLUSTER_DIR/csi
CSI_SOCK=$CSI_DIR/csi.sock
CSI_CACHE=/var/cache/berth/csi
CSI_PROVISIONER_MODULE=github.com/kubernetes-csi/external-provisioner/v5
CSI_PROVISIONER_VERSION=v5.3.0
CSI_RESIZER_MODULE=github.com/kubernetes-csi/external-resizer
CSI_RESIZER_VERSION=v1.14.0
CSI_PROVISIONER_BIN=$CSI_CACHE/external-provisioner/$CSI_PROVISIONER_VERSION/bin/csi-provisioner
CSI_RESIZER_BIN=$CSI_CACHE/external-resizer/$CSI_RESIZER_VERSION/bin/csi-resizer

clog() { printf '%s %s: %s\n' "$(date -u +%H:%M:%S)" "${0##*/}" "$*" >&2; }
die() { clog "ERROR: $*"; exit 1; }

# innode CMD...: run CMD inside the node's network namespace (mounts stay the machine's).
innode() { nsenter --net="/var/run/netns/$NODE_NS" "$@"; }
kc() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
ctrn() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# ours PID: PID is alive and is one of ours (its command line names our state directory), so a
# recorded pid that the kernel reused for something else is never signalled.
ours() { [ -r "/proc/$1/cmdline" ] && grep -qF -- "$CLUSTER_DIR" <<<"$(tr '\0' ' ' <"/proc/$1/cmdline")"; }

# alive NAME: the process up started as NAME runs. stop NAME [SECONDS]: TERM it, wait, then KILL;
# only by the pid up recorded, never by name.
alive() { local p; p=$(cat "$CLUSTER_DIR/pids/$1" 2>/dev/null) && ours "$p"; }
stop() {
	local name=$1 limit=${2:-20} p i
	p=$(cat "$CLUSTER_DIR/pids/$name" 2>/dev/null) || return 0
	if ours "$p"; then
		kill -TERM "$p" 2>/dev/null
		for ((i = 0; i < limit * 5; i++)); do ours "$p" || break; sleep 0.2; done
		ours "$p" && { clog "$name (pid $p) ignored TERM: KILL"; kill -KILL "$p" 2>/dev/null; }
		clog "stopped $name"
	fi
	rm -f "$CLUSTER_DIR/pids/$name"
}

# wait_for SECONDS WHAT CMD...: poll CMD every second until it succeeds or SECONDS pass.
wait_for() {
	local limit=$1 what=$2 start=$SECONDS
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS - start >= limit)); then
			clog "timed out after ${limit}s waiting for $what"
			return 1
		fi
		sleep 1
	done
	clog "$what after $((SECONDS - start))s"
}

# cluster_lock: one user of the cluster at a time on this machine (up, down, the tests, the demo).
# The first caller takes an exclusive flock for its whole run and exports BERTH_CLUSTER_LOCKED, so
# the scripts it calls run under the same lock; anyone else waits (BERTH_CLUSTER_LOCK_WAIT seconds).
# Daemons started under the lock must not inherit its fd (start() in up closes fd 8).
cluster_lock() {
	[ "${BERTH_CLUSTER_LOCKED:-}" = "$$" ] && return 0
	[ -n "${BERTH_CLUSTER_LOCKED:-}" ] && [ -e "/proc/$BERTH_CLUSTER_LOCKED" ] && return 0
	mkdir -p /run/lock
	exec 8>/run/lock/berth-cluster.lock
	if ! flock -n 8; then
		clog "another run uses the cluster (lock /run/lock/berth-cluster.lock): waiting"
		timeout "${BERTH_CLUSTER_LOCK_WAIT:-3600}" flock 8 || die "timed out waiting for /run/lock/berth-cluster.lock"
	fi
	export BERTH_CLUSTER_LOCKED=$$
}

# serve_dir_pod NS NAME DIR IMAGE [RATE]: an HTTP server pod NAME in NS (IMAGE: the e2e toolbox
# image, ci/e2e/toolbox-image.sh) serving DIR of this machine (hostPath, read-only) on port 8080,
# each response paced to RATE bytes/s (default 0: not paced); waits (60 s) until it is Ready, then
# prints http://<pod IP>:8080. Used by the e2e test, make chaos and make demo.
serve_dir_pod() {
	local ns=$1 name=$2 dir=$3 image=$4 rate=${5:-0}
	kc -n "$ns" apply -f - >/dev/null <<YAML || return 1
apiVersion: v1
kind: Pod
metadata: {name: $name, labels: {app: $name}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: http
    image: $image
    imagePullPolicy: Never
    command: [/bin/fileserver, -listen, ":8080", -dir, /srv, -rate, "$rate"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
    securityContext: {runAsUser: 65534, runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
    volumeMounts: [{name: srv, mountPath: /srv, readOnly: true}]
  volumes: [{name: srv, hostPath: {path: $dir, type: Directory}}]
YAML
	kc -n "$ns" wait --for=condition=Ready "pod/$name" --timeout=60s >/dev/null || return 1
	echo "http://$(kc -n "$ns" get pod "$name" -o jsonpath='{.status.podIP}'):8080"
}

# run_go_test LOG CMD...: runs a Go test binary's command line, its output to stdout and to LOG;
# when it fails, ends with a digest of LOG (CI shows the end of the output: the failures, each
# test's own error lines, and the console of each VM pod that was not Ready, from the
# diagnostics), so a failure is understood from the last lines alone. Returns the test's status.
run_go_test() {
	local log=$1 rc=0
	shift
	"$@" 2>&1 | tee "$log" || rc=$?
	((rc == 0)) && return 0
	{
		echo "=== digest of $log (the full output is above)"
		grep -E -- '^\s*--- FAIL|^\s+[a-z_]+_test\.go:[0-9]+: ' "$log" | tail -n 40 || true
		awk '/^ *--- pod .*ready false/ { pod = 1; print; next }
			/^ *--- (pod|events)/ { pod = 0; vm = 0 }
			pod && /^ *\[[^]]*\/vm\]$/ { vm = 1; print; next }
			pod && /^ *\[/ { vm = 0 }
			vm { print }' "$log" | tail -n 60 || true
	} >&2
	return "$rc"
}
