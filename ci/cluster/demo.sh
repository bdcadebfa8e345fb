#!/usr/bin/env bash
# ci/cluster/demo.sh [up|down]: `make demo` / `make demo-down`.
#   up (default): with a reachable $KUBECONFIG, helm install chart/examples/demo.yaml there. Otherwise
#     ci/cluster/up (a single-node cluster on this machine), make images and load them, build the
#     test guest and serve it from an HTTP server pod, helm install chart/examples/demo.yaml with the
#     image source pointed at that pod and a fresh SSH key; wait with a progress line; SSH once;
#     print the SSH, serial console, web console and VNC commands (and the consoles' password).
#   down: helm uninstall and delete the namespace; on the local cluster, ci/cluster/down.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
cluster_lock
NS=${DEMO_NAMESPACE:-berth-demo}
REL=${DEMO_RELEASE:-demo}
VALUES=$repo/chart/examples/demo.yaml
DEMO_DIR=$CLUSTER_DIR/demo
BOOT_TIMEOUT=${BOOT_TIMEOUT:-600}
t0=$SECONDS

# kubectl: the cluster's own build, else one on PATH, else build it (ci/cluster/build-k8s.sh).
if [ -x "$K8S_BIN/kubectl" ]; then KUBECTL=$K8S_BIN/kubectl
elif command -v kubectl >/dev/null; then KUBECTL=$(command -v kubectl)
else KUBECTL=$("$here/build-k8s.sh" | tail -1)/kubectl; fi
external() { [ -n "${KUBECONFIG:-}" ] && [ "$KUBECONFIG" != "$KUBECONFIG_ADMIN" ] &&
	timeout 10 "$KUBECTL" --kubeconfig "$KUBECONFIG" get --raw /readyz >/dev/null 2>&1; }
KCFG=$KUBECONFIG_ADMIN
k() { "$KUBECTL" --kubeconfig "$KCFG" -n "$NS" "$@"; }

if [ "${1:-up}" = down ]; then
	if external; then KCFG=$KUBECONFIG; fi
	if [ -f "$KCFG" ] && timeout 10 "$KUBECTL" --kubeconfig "$KCFG" get --raw /readyz >/dev/null 2>&1; then
		HELM=$("$repo/ci/tools/helm.sh" | tail -1)
		timeout 300 "$HELM" --kubeconfig "$KCFG" -n "$NS" uninstall "$REL" --wait >/dev/null 2>&1 || true
		timeout 120 "$KUBECTL" --kubeconfig "$KCFG" delete namespace "$NS" --wait=true >/dev/null 2>&1 || true
	fi
	if [ "$KCFG" = "$KUBECONFIG_ADMIN" ]; then "$here/down"; fi
	clog "demo down"
	exit 0
fi

[ -f "$VALUES" ] || die "$VALUES missing"
[ -x "$repo/ci/tools/helm.sh" ] || die "ci/tools/helm.sh missing"
HELM=$("$repo/ci/tools/helm.sh" | tail -1)
mkdir -p "$DEMO_DIR"
[ -f "$DEMO_DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C berth-demo -f "$DEMO_DIR/id_ed25519" </dev/null
# The VM names: the keys indented by two spaces under the top-level "vms:" of the values file.
vms=$(awk '/^[^ #]/ { in_vms = ($0 ~ /^vms:/) } in_vms && /^  [a-z0-9][-a-z0-9]*:/ { sub(/:.*/, ""); sub(/^ +/, ""); printf "%s ", $0 }' "$VALUES")
[ -n "$vms" ] || die "$VALUES names no VM under vms:"
set_args=()
for vm in $vms; do
	set_args+=(--set-json "vms.$vm.sshAuthorizedKeys=[\"$(cat "$DEMO_DIR/id_ed25519.pub")\"]")
done

if external; then
	KCFG=$KUBECONFIG
	clog "installing into the cluster of KUBECONFIG=$KUBECONFIG"
	"$KUBECTL" --kubeconfig "$KCFG" create namespace "$NS" >/dev/null 2>&1 || true
else
	clog "no reachable KUBECONFIG: a single-node cluster on this machine (ci/cluster/up)"
	"$here/up" >/dev/null
	clog "make images"
	make -C "$repo" --no-print-directory images >"$CLUSTER_DIR/logs/make-images.log" 2>&1 ||
		die "make images failed: $CLUSTER_DIR/logs/make-images.log"
	"$here/load-images" "$repo"/out/images/*.oci.tar
	guest=$("$repo/ci/testguest/build.sh" | tail -1)
	toolbox=$("$repo/ci/e2e/toolbox-image.sh" | tail -1)
	kc create namespace "$NS" >/dev/null 2>&1 || true
	wait_for 30 "service account" kc -n "$NS" get serviceaccount default
	url="$(serve_dir_pod "$NS" images "$(dirname "$guest")" "$toolbox")/$(basename "$guest")" || die "the image server pod is not Ready"
	for vm in $vms; do set_args+=(--set "vms.$vm.image.source=$url" --set "vms.$vm.image.target=berth-testguest.qcow2"); done
	# A password for the guest's user, for logging in on the consoles (SSH stays key-only: cloud-init
	# leaves sshd's PasswordAuthentication as the image has it). The user-data is demo.yaml's plus it.
	[ -s "$DEMO_DIR/console-password" ] || (umask 077 && head -c 12 /dev/urandom | base64 | tr -d '/+=' >"$DEMO_DIR/console-password")
	userdata=$(awk '/^    userData: \|/ { on = 1; next } on && /^      / { print; next } on { exit }' "$VALUES")
	[ -n "$userdata" ] || die "no userData block in $VALUES"
	{
		echo "vms:"
		for vm in $vms; do
			printf '  %s:\n    userData: |\n%s\n      password: "%s"\n      chpasswd: {expire: false}\n' \
				"$vm" "$userdata" "$(cat "$DEMO_DIR/console-password")"
		done
	} >"$DEMO_DIR/console-values.yaml"
	set_args+=(-f "$DEMO_DIR/console-values.yaml")
	clog "the VM image comes from the test guest served in the cluster: $url"
fi

timeout 300 "$HELM" --kubeconfig "$KCFG" -n "$NS" upgrade --install "$REL" "$repo/chart" -f "$VALUES" "${set_args[@]}" >/dev/null
clog "helm install $REL (chart/examples/demo.yaml) into namespace $NS"

# Progress: one line, rewritten, until every VM pod is Ready.
start=$SECONDS
while :; do
	status=$(k get pods -l "app.kubernetes.io/instance=$REL" --no-headers 2>/dev/null | awk '{ printf "%s %s %s  ", $1, $2, $3 }')
	ready=$(k get pods -l "app.kubernetes.io/instance=$REL" -o json 2>/dev/null |
		jq '[.items[] | select(.status.conditions[]? | select(.type == "Ready" and .status == "True"))] | length')
	printf '\r\033[K[%3ds] %s' "$((SECONDS - start))" "${status:-waiting for pods}" >&2
	[ "${ready:-0}" -ge "$(wc -w <<<"$vms")" ] && break
	if ((SECONDS - start > BOOT_TIMEOUT)); then
		echo >&2
		k get pods -o wide >&2
		die "the VM was not Ready within ${BOOT_TIMEOUT}s (kubectl -n $NS describe pod; kubectl -n $NS logs <pod> --all-containers)"
	fi
	sleep 2
done
echo >&2

pods=$(k get pods -l "app.kubernetes.io/instance=$REL" -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.podIP}{"\n"}{end}')
sshopts="-i $DEMO_DIR/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
first_ip=$(awk 'NR == 1 { print $2 }' <<<"$pods")
if [ "$KCFG" = "$KUBECONFIG_ADMIN" ]; then
	# shellcheck disable=SC2086
	wait_for 180 "SSH answers at $first_ip" timeout 20 ssh $sshopts -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR "debian@$first_ip" true ||
		die "SSH to $first_ip did not answer"
	# shellcheck disable=SC2086
	clog "SSH once: $(ssh $sshopts -o BatchMode=yes -o LogLevel=ERROR "debian@$first_ip" 'echo "$(hostname): $(uname -sr), up $(cut -d. -f1 /proc/uptime)s"')"
fi
kcmd="kubectl"
[ "$KCFG" = "$KUBECONFIG_ADMIN" ] && kcmd="$KUBECTL --kubeconfig $KCFG"
echo
echo "Berth demo ready in $((SECONDS - t0))s (namespace $NS, release $REL)."
while read -r pod ip; do
	[ -n "$pod" ] || continue
	echo
	echo "VM pod $pod at $ip"
	echo "  SSH:     ssh $sshopts debian@$ip"
	echo "  console: $kcmd -n $NS logs -f $pod -c vm"
	echo "  serial:  $kcmd -n $NS attach -it $pod -c vm   # Enter for the login prompt, Ctrl-P Ctrl-Q detaches"
	echo "  web:     $kcmd -n $NS port-forward pod/$pod 6080   # then open http://localhost:6080/vnc.html"
	echo "  VNC:     $kcmd -n $NS port-forward pod/$pod 5900:5900   # then a VNC viewer on localhost:5900"
	[ ! -s "$DEMO_DIR/console-password" ] || [ "$KCFG" != "$KUBECONFIG_ADMIN" ] ||
		echo "  login on the consoles: debian / $(cat "$DEMO_DIR/console-password")"
done <<<"$pods"
echo
echo "Remove it: make demo-down   (ci/cluster/demo.sh down)"
