#!/usr/bin/env bash
# ci/chaos/bad-input.sh: bad input through the chart (issue 10, docs/reliability.md "Bad input
# through the chart"). Every value the chart refuses is refused by helm itself (values.schema.json
# or a template check), with a message naming the key; every value the chart accepts but a stage
# refuses gives the VM's pod a container that exits 2 with a termination message naming the
# variable and the value (read with kubectl's jsonpath from lastState.terminated, i.e. refused again
# after the restart). All bad VMs are in one release with one good VM, which boots and stays
# Ready with no container restarted: no other VM is affected.
#
#   ci/chaos/bad-input.sh                 standalone: cluster up, its own namespace, cluster down
#   KEEP_CLUSTER=1 ci/chaos/bad-input.sh  leave the cluster up (ci/chaos/run.sh calls it so)
#   CHAOS_SKIP_IMAGES=1                   use out/images/*.oci.tar as they are (no make images)
#   BAD_INPUT_GOOD_POD=NS/POD             a running VM pod to watch instead of booting a good VM here
#                                         (its restart counts must not change, it stays Ready)
#   BAD_INPUT_NS                          the namespace (default berth-bad-input)
# Writes out/chaos/bad-input.tsv (case, value, refused by, container, exit, message) and rows of
# out/chaos/results.tsv / timings.tsv through ci/chaos/lib.sh. Every wait is bounded.
set -eEuo pipefail
trap 'clog "FAIL: line $LINENO: $BASH_COMMAND (exit $?)"' ERR
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../cluster/lib.sh
. "$repo/ci/cluster/lib.sh"
CHAOS_NS=${BAD_INPUT_NS:-berth-bad-input} # its own namespace, also under run.sh
# shellcheck source=lib.sh
. "$here/lib.sh"

cluster_lock
# Keep the CNI the cluster runs with (ci/cluster/up would switch to its default, taking it down).
if [ -z "${CNI:-}" ] && [ -f "$CLUSTER_DIR/cni-mode" ]; then
	CNI=$(cat "$CLUSTER_DIR/cni-mode")
	export CNI
fi
REL=bad
SC=berth-bad-input # a StorageClass and PVs of this run only: the shared pool stays for the others
IMG_CACHE=$CLUSTER_DIR/bad-input-image-cache
GOOD_POD=${BAD_INPUT_GOOD_POD:-}
TSV=$CHAOS_OUT/bad-input.tsv
pvdir=""

cleanup() {
	local rc=$?
	trap - ERR
	if [ -S "$CONTAINERD_SOCK" ] && kc get namespace "$CHAOS_NS" >/dev/null 2>&1; then
		kc delete namespace "$CHAOS_NS" --wait=true --timeout=180s >/dev/null 2>&1 || clog "namespace $CHAOS_NS not deleted"
	fi
	if [ -S "$CONTAINERD_SOCK" ]; then
		kc delete pv -l berth.dev/bad-input=true --wait=true --timeout=60s >/dev/null 2>&1 || true
		kc delete storageclass "$SC" --ignore-not-found >/dev/null 2>&1 || true
	fi
	[ -z "$pvdir" ] || rm -rf "$pvdir"
	rm -rf "$IMG_CACHE"
	if [ -S "$CONTAINERD_SOCK" ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
		"$repo/ci/cluster/down" >/dev/null 2>&1 || clog "cluster down failed"
	fi
	[ -z "${work:-}" ] || rm -rf "$work"
	if [ "$rc" = 0 ]; then clog "PASS"; else clog "FAILED (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

chaos_init bad-input
"$repo/ci/cluster/up" >/dev/null || fail "ci/cluster/up"
if [ -n "$GOOD_POD" ]; then
	CHAOS_SKIP_IMAGES=1 load_images # the caller (ci/chaos/run.sh) built and imported them
else
	load_images
	# The cluster may have been up with older images (KEEP_CLUSTER): import the current ones.
	"$repo/ci/cluster/load-images" "$repo"/out/images/{net-setup,image-fetch,seed-iso,dnsmasq,vmm}.oci.tar >/dev/null 2>&1 ||
		fail "load-images"
fi
phase cluster-up

printf 'case\tvalue\trefused by\tcontainer\texit\tmessage\n' >"$TSV"
tried=0
refused=0
record() { # record CASE VALUE BY CONTAINER EXIT MESSAGE
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TSV"
	refused=$((refused + 1))
	result "bad input: $1" "refused by $3${4:+ ($4, exit $5)}" PASS
}

# --- 1. what helm itself refuses (the schema or a template check), with the key in the message ----
helm_refuses() { # helm_refuses CASE VALUE WANT YAML: helm template fails naming WANT (YAML: vms.v's lines)
	local out
	tried=$((tried + 1))
	printf 'vms:\n  v:\n%s' "$4" >"$work/case.yaml"
	grep -q '^    image:' "$work/case.yaml" || printf '    image: {source: http://files.example/guest.qcow2}\n' >>"$work/case.yaml"
	if out=$(helm template "$REL" "$repo/chart" -f "$work/case.yaml" 2>&1 >/dev/null); then
		fail "$1: helm accepted $2"
	fi
	out=$(tr '\n' ' ' <<<"$out" | sed 's/  */ /g')
	grep -qF -- "$3" <<<"$out" || fail "$1: helm refused $2 without naming $3: $out"
	local by="chart template"
	[[ $out == *"values don't meet the specifications of the schema"* ]] && by=schema
	record "$1" "$2" "helm ($by)" "" "" "${out:0:300}"
}
helm_refuses "image.target '..'" ".." "target" "    image: {source: http://files.example/guest.qcow2, target: \"..\"}
"
helm_refuses "image.target with a path" "../etc/passwd" "target" "    image: {source: http://files.example/guest.qcow2, target: ../etc/passwd}
"
helm_refuses "image.source ftp://" "ftp://files.example/guest.qcow2" "source" "    image: {source: \"ftp://files.example/guest.qcow2\"}
"
helm_refuses "image.source file://" "file:///etc/shadow" "source" "    image: {source: \"file:///etc/shadow\"}
"
helm_refuses "vmIP not an address" "192.168.254.300" "vmIP" "    vmIP: 192.168.254.300
"
helm_refuses "vmIP equal to vmGW" "10.0.0.1" "vmIP and vmGW" "    vmIP: 10.0.0.1
    vmGW: 10.0.0.1
"
helm_refuses "VNC beyond loopback without a password" "vnc.listen 10.0.0.5" "passwordSecret" "    vnc: {listen: 10.0.0.5}
"
# The chart refuses these itself now (issue 16: what a stage would refuse is refused before install).
helm_refuses "memory below vmm's 128Mi" "64Mi" "memory" "    memory: 64Mi
"
helm_refuses "memory with a decimal suffix" "8G" "memory" "    memory: 8G
"
helm_refuses "an SSH key that is not base64" "ssh-ed25519 not-base64!! me@laptop" "sshAuthorizedKeys" "    sshAuthorizedKeys: [\"ssh-ed25519 not-base64!! me@laptop\"]
"
phase helm-refusals

# --- 2. what the stages refuse: one bad VM each, one release with a good VM ----------------------
kc delete namespace "$CHAOS_NS" --ignore-not-found --wait=true --timeout=180s >/dev/null || fail "delete old namespace"
kc create namespace "$CHAOS_NS" >/dev/null
wait_for 30 "service account in $CHAOS_NS" kc -n "$CHAOS_NS" get serviceaccount default || fail "no default service account"

# The served directory: the test guest (hard link) and a qcow2 with a backing file beside its base.
srv=$work/srv
mkdir -p "$srv"
ln "$GUEST" "$srv/guest.qcow2" 2>/dev/null || cp "$GUEST" "$srv/guest.qcow2"
qemu-img create -q -f qcow2 "$srv/parent.qcow2" 64M
qemu-img create -q -f qcow2 -b parent.qcow2 -F qcow2 "$srv/child.qcow2"
chmod 0644 "$srv"/*.qcow2
info=$(qemu-img info "$srv/child.qcow2")
grep -q '^backing file: parent.qcow2' <<<"$info" || fail "child.qcow2 has no backing file: $info"
url=$(fileserver_pod files "$srv")

# Cases: VM name | container that refuses | message pattern (ERE) | values lines (indented 4) | value.
cases=(
	"vmip-broadcast|net-setup|VM_IP=\"192\\.168\\.254\\.3\"|    vmIP: 192.168.254.3|vmIP 192.168.254.3 (the /30's broadcast)"
	"vmgw-other-net|net-setup|VM_GW=\"192\\.168\\.254\\.5\".*/30|    vmGW: 192.168.254.5|vmGW 192.168.254.5 (not in vmIP's /30)"
	"userdata-yaml|seed-iso|USERDATA=\"/userdata\".*YAML|    userData: \"#cloud-config\\\\nusers: [unclosed\\\\n\"|userData '#cloud-config / users: [unclosed'"
	"target-dotdot-url|image-fetch|IMG_TARGET=\"\\.\\.\"|    image: {source: \"@URL@/..\", target: \"\"}|image.source @URL@/.. (base name '..')"
	"target-dotdot-env|image-fetch|IMG_TARGET=\"\\.\\.\"|    stages: {imageFetch: {extraEnv: [{name: IMG_TARGET, value: \"..\"}]}}|IMG_TARGET '..' (stages.imageFetch.extraEnv)"
	"scheme-ftp-env|image-fetch|IMG_SOURCE=\"ftp://|    stages: {imageFetch: {extraEnv: [{name: IMG_SOURCE, value: \"ftp://files.example/guest.qcow2\"}]}}|IMG_SOURCE ftp://... (stages.imageFetch.extraEnv)"
	"url-no-host|image-fetch|IMG_SOURCE=\"http:///guest\\.qcow2\"|    image: {source: \"http:///guest.qcow2\", target: \"\"}|image.source http:///guest.qcow2 (no host)"
	"backing-file|image-fetch|IMG_SOURCE=\"http://[^\"]*/child\\.qcow2\".*backing file|    image: {source: \"@URL@/child.qcow2\", target: child.qcow2}|a qcow2 with a backing file (served)"
	"disk-smaller-than-base|image-fetch|DISK_SIZE=\"1Gi\".*smaller than the base|    diskSize: 1Gi|diskSize 1Gi (the test guest's virtual size is 2Gi)"
	"vnc-env|vm|VNC_LISTEN=\"0\\.0\\.0\\.0\".*VNC_PASSWORD_FILE|    stages: {vmm: {extraEnv: [{name: VNC_LISTEN, value: 0.0.0.0}]}}|VNC_LISTEN 0.0.0.0 without a password (stages.vmm.extraEnv)"
)

nvm=${#cases[@]}
[ -n "$GOOD_POD" ] || nvm=$((nvm + 1))
# This run's PVs (local directories) behind its own StorageClass.
pvdir=$CLUSTER_DIR/bad-input-pv
rm -rf "$pvdir"
node=$(kc get nodes -o jsonpath='{.items[0].metadata.name}')
{
	printf 'apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: %s}\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\nreclaimPolicy: Retain\n' "$SC"
	for i in $(seq 1 "$nvm"); do
		mkdir -p "$pvdir/$i" && chmod 0777 "$pvdir/$i"
		printf -- '---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {name: bad-input-%s, labels: {berth.dev/bad-input: "true"}}\nspec:\n  capacity: {storage: 8Gi}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  storageClassName: %s\n  local: {path: %s}\n  nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [%s]}]}]}}\n' \
			"$i" "$SC" "$pvdir/$i" "$node"
	done
} | kc apply -f - >/dev/null || fail "storage class and PVs"

if [ -n "$GOOD_POD" ]; then
	good_ns=${GOOD_POD%%/*} good_pod=${GOOD_POD#*/}
	good_restarts() { kc -n "$good_ns" get pod "$good_pod" -o json | jq -c '[(.status.initContainerStatuses // [])[], .status.containerStatuses[] | {(.name): .restartCount}] | add'; }
	good_before=$(good_restarts) || fail "BAD_INPUT_GOOD_POD $GOOD_POD: no such pod"
fi

# The values: every VM small (the bad ones never boot), the run's own image cache and PVs.
rm -rf "$IMG_CACHE"
{
	cat <<YAML
vmDefaults:
  class_name: $SC
  diskSize: 4Gi
  memory: 128Mi
  memoryOverhead: 64Mi
  cpuRequestPerCPU: 10m
  shutdownTimeout: 10
  imageCache: {mode: hostPath, hostPath: "$IMG_CACHE"}
  image: {source: "$url/guest.qcow2", target: berth-testguest.qcow2}
tests: {enabled: false}
vms:
YAML
	if [ -z "$GOOD_POD" ]; then
		cat <<YAML
  good:
    cpus: 2
    memory: 1Gi
    memoryOverhead: 256Mi
    diskSize: 4Gi
    sshAuthorizedKeys: ["$(cat "$work/id.pub")"]
YAML
	fi
	for c in "${cases[@]}"; do
		IFS='|' read -r vm _ _ yaml _ <<<"$c"
		printf '  %s:\n' "$vm"
		printf '%b\n' "$yaml" | sed -e "s|@URL@|$url|g"
	done
} >"$work/values.yaml"
helm install "$REL" "$repo/chart" -n "$CHAOS_NS" -f "$work/values.yaml" >"$CHAOS_OUT/bad-input-helm-install.txt" 2>&1 ||
	fail "helm install (values: $(cat "$work/values.yaml"); $(cat "$CHAOS_OUT/bad-input-helm-install.txt"))"
phase install

# Each bad VM: the named container exits 2, is restarted and refuses again (lastState), and its
# termination message (kubectl jsonpath) names the variable and the value.
for c in "${cases[@]}"; do
	IFS='|' read -r vm ctr pattern _ value <<<"$c"
	value=${value//@URL@/$url}
	tried=$((tried + 1))
	pod=$REL-$vm-0
	wait_container "$pod" "$ctr" '.lastState.terminated.exitCode == 2' 300 ||
		fail "$vm ($value): $ctr did not exit 2 twice within 300 s: $(cstat "$pod" "$ctr")"
	kind=initContainerStatuses
	[ "$ctr" = vm ] && kind=containerStatuses
	msg=$(kc -n "$CHAOS_NS" get pod "$pod" -o jsonpath="{.status.${kind}[?(@.name==\"$ctr\")].lastState.terminated.message}")
	grep -qE -- "$pattern" <<<"$msg" || fail "$vm ($value): $ctr's termination message does not match /$pattern/: '$msg'"
	# Nothing after the refusing stage ran: a later init container never started.
	later=$(kc -n "$CHAOS_NS" get pod "$pod" -o json | jq -r --arg c "$ctr" '[.status.initContainerStatuses[] | .name] as $n |
		[.status.initContainerStatuses[] | select(.name as $x | ($n | index($x)) > ($n | index($c)))
		 | select(.state.running or .state.terminated or .lastState.terminated) | .name] | join(",")')
	[ "$ctr" = vm ] || [ -z "$later" ] || fail "$vm: containers after $ctr ran: $later"
	record "$vm" "$value" "$ctr" "$ctr" 2 "$(tr '\n' ' ' <<<"$msg" | sed 's/ *$//')"
done
phase stage-refusals

# No other VM affected: the good VM is Ready, SSH answers, no container of it ever restarted.
if [ -z "$GOOD_POD" ]; then
	wait_vm_ready "$REL-good-0"
	restarts=$(kc -n "$CHAOS_NS" get pod "$REL-good-0" -o json | jq '[(.status.initContainerStatuses // [])[], .status.containerStatuses[] | .restartCount] | add')
	[ "$restarts" = 0 ] || fail "the good VM's containers restarted $restarts times"
	name=$(ssh_vm "$(pod_ip "$REL-good-0")" hostname) || fail "SSH to the good VM"
	[ "$name" = good ] || fail "the good VM's hostname is '$name'"
	result "bad input: no other VM affected" "the good VM of the same release Ready, SSH, 0 restarts" PASS
else
	good_after=$(good_restarts)
	[ "$good_after" = "$good_before" ] || fail "$GOOD_POD restarted containers: $good_before -> $good_after"
	[ "$(kc -n "$good_ns" get pod "$good_pod" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] ||
		fail "$GOOD_POD is not Ready any more"
	result "bad input: no other VM affected" "$GOOD_POD Ready, restart counts unchanged $good_after" PASS
fi
# ... and the bad VMs still refuse (each still waiting in its failing container, none Ready).
for c in "${cases[@]}"; do
	IFS='|' read -r vm ctr _ <<<"$c"
	[ "$(kc -n "$CHAOS_NS" get pod "$REL-$vm-0" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" != True ] ||
		fail "$vm is Ready with a bad value"
done
phase good-vm

# --- 3. least privilege, live (docs/security.md): the running VM's processes as the kernel sees them
# QEMU: uid/gid vmUID (the vm container's runAsUser) in all four fields, no capability at all (effective, permitted, bounding),
# no_new_privs; dnsmasq: dropped to nobody, NET_ADMIN (bit 12) its only effective capability; no
# service-account token in any container's filesystem.
status_field() { awk -v f="$2:" '$1 == f { $1 = ""; print substr($0, 2) }' "/proc/$1/status"; }
live_privileges() { # live_privileges NS POD
	local ns=$1 pod=$2 id pid qemu c uid
	uid=$(kc -n "$ns" get pod "$pod" -o json | jq -r '.spec.containers[] | select(.name == "vm") | .securityContext.runAsUser')
	cpid() { # cpid CONTAINER: the host pid of the container's first process, through containerd
		id=$(kc -n "$ns" get pod "$pod" -o json | jq -r --arg c "$1" '[(.status.initContainerStatuses // [])[], .status.containerStatuses[] | select(.name == $c) | .containerID][0] // empty' | sed 's|^containerd://||')
		[ -n "$id" ] && ctrn tasks ls 2>/dev/null | awk -v id="$id" '$1 == id && $3 == "RUNNING" { print $2 }'
	}
	pid=$(cpid vm) || pid=
	[ -n "$pid" ] || fail "$pod: no running vm container task"
	qemu=$(child_pid "$pid" qemu) || fail "$pod: no QEMU child of vmm (pid $pid)"
	for p in "$pid" "$qemu"; do
		[ "$(status_field "$p" Uid | tr -s '\t ' ' ')" = "$uid $uid $uid $uid" ] || fail "$pod: pid $p ($(cat /proc/"$p"/comm)) runs as uid $(status_field "$p" Uid)"
		[ "$(status_field "$p" Gid | tr -s '\t ' ' ')" = "$uid $uid $uid $uid" ] || fail "$pod: pid $p runs as gid $(status_field "$p" Gid)"
		for f in CapEff CapPrm CapBnd CapAmb; do
			[ "$(status_field "$p" $f)" = 0000000000000000 ] || fail "$pod: pid $p ($(cat /proc/"$p"/comm)) has $f $(status_field "$p" $f)"
		done
		[ "$(status_field "$p" NoNewPrivs)" = 1 ] || fail "$pod: pid $p without no_new_privs"
	done
	pid=$(cpid dnsmasq) || pid=
	[ -n "$pid" ] || fail "$pod: no running dnsmasq task"
	[ "$(status_field "$pid" Uid | tr -s '\t ' ' ')" = "65534 65534 65534 65534" ] || fail "$pod: dnsmasq runs as uid $(status_field "$pid" Uid)"
	[ "$(status_field "$pid" CapEff)" = 0000000000001000 ] || fail "$pod: dnsmasq's effective capabilities $(status_field "$pid" CapEff), want NET_ADMIN only (0x1000)"
	for c in vm dnsmasq; do
		pid=$(cpid "$c")
		[ ! -e "/proc/$pid/root/var/run/secrets/kubernetes.io/serviceaccount" ] || fail "$pod/$c: a service-account token is mounted"
	done
	result "least privilege, live" "$pod: vmm and QEMU uid/gid $uid, no capabilities, no_new_privs; dnsmasq nobody with NET_ADMIN only; no token" PASS
}
if [ -z "$GOOD_POD" ]; then
	live_privileges "$CHAOS_NS" "$REL-good-0"
else
	live_privileges "$good_ns" "$good_pod"
fi
phase live-privileges

[ "$refused" = "$tried" ] || fail "tried $tried bad inputs, $refused refused"
clog "bad inputs tried: $tried, refused: $refused ($(grep -c 'helm (' "$TSV") by helm, $((refused - $(grep -c 'helm (' "$TSV"))) by a stage); see $TSV"
