#!/usr/bin/env bash
# ci/chaos/run.sh (`make chaos`): Berth under faults, on the real single-node cluster (ci/cluster/up),
# with the chart and the images of `make images`. Each fault is followed by the check of what must
# hold afterwards (docs/reliability.md lists them and the measured results):
#   download faults (no guest boots for them; the hostPath image caches are directories here):
#     the pod deleted during the image download -> the new pod continues the partial file (Range
#       from where the old one stopped); the cache never holds anything but the verified image under
#       the target name
#     two VMs starting at once with the same image on one node -> one download
#     the URL starts serving another image -> an existing pet disk is refused with a clear error,
#       never paired with it; a pinned IMG_SHA256 keeps the right one
#     the image volume (a small tmpfs with a ballast file) fills up -> a clear message in
#       `kubectl describe pod`, no partial file left, and success once the ballast is deleted
#   guest faults, in sequence on one long-lived VM (three boots in all):
#     kubelet restarted -> the VM untouched (same boot_id, no container restart), data there
#     dnsmasq sidecar killed -> restarted, the guest keeps its address and renews its lease
#     QEMU SIGKILLed -> the container restarts, the guest boots again from the same pet disk, data intact
#     the guest powers itself off -> the pod starts it again, same disk, data intact
# then ci/chaos/bad-input.sh when it exists (same cluster, same lock).
# Every wait is bounded; phases go to out/chaos/timings.tsv, results to out/chaos/results.tsv and
# out/chaos/results.md. The trap deletes the namespace, unmounts the tmpfs, removes the caches and
# takes the cluster down unless KEEP_CLUSTER=1.
#   CHAOS_SKIP_IMAGES=1  use out/images/*.oci.tar as they are (no make images)
#   CHAOS_SKIP_BAD_INPUT=1  do not run ci/chaos/bad-input.sh
#   CHAOS_RATE           the file server's pace per download (default 16Mi bytes/s)
#   CNI                  the cluster's CNI when it is started here (default: the running one, else bridge)
# (`kc ... | grep -q` is never used: with pipefail, grep -q quitting early makes kubectl's SIGPIPE
# the pipeline's status.)
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
FULL=$CACHES/full # the tmpfs mount point
mkdir -p "$CHAOS_OUT"
: >"$CHAOS_OUT/timings.tsv"
: >"$CHAOS_OUT/results.tsv"
faults=0 data_checks=0
bg_pids=()

cleanup() {
	local rc=$? p
	trap - ERR
	for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	if [ "${KEEP_CLUSTER:-0}" = 1 ] && [ -S "$CONTAINERD_SOCK" ]; then
		kc delete namespace "$CHAOS_NS" --ignore-not-found --wait=true --timeout=180s >/dev/null 2>&1 || clog "namespace $CHAOS_NS not deleted"
	fi
	if [ -S "$CONTAINERD_SOCK" ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
		"$repo/ci/cluster/down" >/dev/null 2>&1 || clog "cluster down failed"
	fi
	mountpoint -q "$FULL" 2>/dev/null && { umount "$FULL" 2>/dev/null || umount -l "$FULL"; }
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
GUEST_SIZE=$(stat -c %s "$GUEST")
if [ -z "${CNI:-}" ]; then
	CNI=bridge
	[ -n "$(ls "$CLUSTER_DIR/pids" 2>/dev/null)" ] && [ -f "$CLUSTER_DIR/cni-mode" ] && CNI=$(cat "$CLUSTER_DIR/cni-mode")
fi
export CNI
"$repo/ci/cluster/up" >/dev/null || fail "ci/cluster/up (CNI=$CNI)"
load_images
kc delete namespace "$CHAOS_NS" --ignore-not-found --wait=true --timeout=180s >/dev/null # a kept run's
kc create namespace "$CHAOS_NS" >/dev/null
wait_for 30 "service account in $CHAOS_NS" kc -n "$CHAOS_NS" get serviceaccount default || fail "no default service account"
mountpoint -q "$FULL" 2>/dev/null && umount -l "$FULL"
rm -rf "$CACHES"
mkdir -p "$CACHES/vm1" "$CACHES/pair" "$FULL"
# The served directory: guest.qcow2 (the test guest), swap.qcow2 (the test guest, later replaced by
# another image under the same name), other.qcow2 (that other image: an empty qcow2).
srv=$work/srv
mkdir -p "$srv"
ln "$GUEST" "$srv/guest.qcow2" 2>/dev/null || cp "$GUEST" "$srv/guest.qcow2"
ln "$srv/guest.qcow2" "$srv/swap.qcow2"
qemu-img create -q -f qcow2 "$srv/other.qcow2" 2G
OTHER_SHA=$(sha256sum "$srv/other.qcow2" | cut -d' ' -f1)
chmod -R a+rX "$srv"
FS=$(fileserver_pod fileserver "$srv" "$CHAOS_RATE")
phase setup
clog "cluster up (CNI=$CNI), file server at $FS paced to $CHAOS_RATE/s; the guest is $GUEST_SIZE bytes, sha256 $GUEST_SHA"

# --- fault: the pod deleted during the image download -----------------------------------------
TARGET=berth-testguest.qcow2
{ echo "vms:"; vm_values vm1 "$FS/guest.qcow2" "$TARGET" "$CACHES/vm1"; } >"$work/vm1.yaml"
helm install chaos "$repo/chart" -n "$CHAOS_NS" -f "$work/vm1.yaml" >/dev/null || fail "helm install chaos"
VM1=chaos-vm1-0
base=$CACHES/vm1/berth-images/$TARGET part=$CACHES/vm1/berth-images/.$TARGET.part
# The target name only ever holds the whole, verified image (checked at every poll).
check_cache() {
	local s
	if [ -e "$base" ]; then
		s=$(stat -c %s "$base" 2>/dev/null || echo gone)
		[ "$s" = "$GUEST_SIZE" ] || [ "$s" = gone ] || fail "the cache holds $base with $s bytes, not the whole image ($GUEST_SIZE)"
	fi
}
start=$SECONDS
while :; do
	check_cache
	sz=$(stat -c %s "$part" 2>/dev/null || echo 0)
	((sz * 100 >= GUEST_SIZE * 30)) && break
	[ -e "$base" ] && fail "the download finished before it could be interrupted (CHAOS_RATE=$CHAOS_RATE is too fast)"
	((SECONDS - start < 180)) || fail "the download did not reach 30 % within 180 s ($sz bytes)"
	sleep 0.2
done
uid=$(pod_uid "$VM1")
kc -n "$CHAOS_NS" delete pod "$VM1" --wait=true --timeout=120s >/dev/null || fail "delete pod $VM1 during the download"
kept=$(stat -c %s "$part" 2>/dev/null || echo 0)
check_cache
[ -e "$base" ] && fail "the base is in place although its download was interrupted"
clog "pod deleted at $sz bytes downloaded; the partial file kept $kept bytes"
wait_pod_new "$VM1" "$uid" 90
start=$SECONDS
until cstat "$VM1" image-fetch | jq -e '.state.terminated.exitCode == 0' >/dev/null; do
	check_cache
	((SECONDS - start < 240)) || fail "the new pod's image-fetch did not finish within 240 s"
	sleep 0.3
done
check_cache
{ [ "$(cut -d' ' -f1 "$base.sha256")" = "$GUEST_SHA" ] && [ "$(sha256sum "$base" | cut -d' ' -f1)" = "$GUEST_SHA" ]; } ||
	fail "the cached base or its record is not the guest image (sha256 $GUEST_SHA)"
{ [ ! -e "$part" ] && [ ! -e "$part.meta" ]; } || fail "a partial file is left in the cache: $(ls -la "$CACHES/vm1/berth-images")"
gets=$(served_requests fileserver /guest.qcow2 | grep 'method=GET' || true)
served=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^bytes=/) { sub("bytes=", "", $i); s += $i } } END { print s + 0 }' <<<"$gets")
resumed_at=$(grep 'status=206' <<<"$gets" | grep -o 'range="bytes=[0-9]*-"' | grep -o '[0-9][0-9]*' | head -1 || true)
if [ "$kept" -gt 0 ]; then
	[ "${resumed_at:-}" = "$kept" ] || fail "the new pod did not continue the partial file of $kept bytes (206 from ${resumed_at:-none}); requests:
$gets"
	how="continued with Range from byte $kept (${kept} of $GUEST_SIZE kept)"
else
	[ "$(grep -c 'status=200' <<<"$gets")" = 2 ] || fail "no partial file was kept and the download was not restarted cleanly: $gets"
	how="restarted from zero (no partial file kept)"
fi
((served < GUEST_SIZE * 3 / 2)) || fail "the server sent $served bytes for a $GUEST_SIZE-byte image: the download started over"
grep -q 'continuing partial download' <<<"$(kc -n "$CHAOS_NS" logs "$VM1" -c image-fetch)" || [ "$kept" = 0 ] ||
	fail "image-fetch's log does not say it continued the partial download"
faults=$((faults + 1))
result "pod deleted during the image download" "new pod $how; $served bytes sent in all for $GUEST_SIZE; the target name only ever held the whole verified image; no .part left" PASS
phase download-interrupted
# vm1 boots now, in the background of the next (download) faults.

# --- fault: two VMs on one node starting at once with the same image ---------------------------
# No guest boots for the download faults: accel kvm makes vmm exit 2 here (KVM does not work).
NOBOOT="    accel: kvm"
{
	echo "vms:"
	vm_values pet "$FS/swap.qcow2" swap.qcow2 "$CACHES/pair" "" "$NOBOOT"
	vm_values pinned "$FS/swap.qcow2" swap.qcow2 "$CACHES/pair" "$GUEST_SHA" "$NOBOOT"
} >"$work/pair.yaml"
helm install pair "$repo/chart" -n "$CHAOS_NS" -f "$work/pair.yaml" >/dev/null || fail "helm install pair"
for p in pair-pet-0 pair-pinned-0; do
	wait_container "$p" image-fetch '.state.terminated.exitCode == 0' 240 || fail "$p: image-fetch did not succeed within 240 s"
done
swapgets=$(served_requests fileserver /swap.qcow2 | grep -c 'method=GET' || true)
[ "$swapgets" = 1 ] || fail "two VMs starting at once downloaded the image $swapgets times: $(served_requests fileserver /swap.qcow2)"
waited=0
for p in pair-pet-0 pair-pinned-0; do
	grep -q 'waiting for another image-fetch' <<<"$(kc -n "$CHAOS_NS" logs "$p" -c image-fetch)" && waited=$((waited + 1))
done
[ "$waited" = 1 ] || fail "expected one image-fetch to wait for the other's download, $waited did (did they start at once?)"
for v in pet pinned; do
	d=$(pv_dir "pair-$v-0")
	[ "$(jq -r .sha256 "$d/$v.json")" = "$GUEST_SHA" ] || fail "pair-$v-0: the pet disk record $d/$v.json names another base"
done
[ "$(sha256sum "$CACHES/pair/berth-images/swap.qcow2" | cut -d' ' -f1)" = "$GUEST_SHA" ] || fail "the shared cache holds another image"
faults=$((faults + 1))
result "two VMs start at once with the same image" "1 GET for 2 pods; one image-fetch waited on the cache lock and reused the verified file; both pet disks record the guest's sha256" PASS
phase concurrent-download

# --- fault: the URL starts serving another image ------------------------------------------------
ln -f "$srv/other.qcow2" "$srv/swap.new" && mv -f "$srv/swap.new" "$srv/swap.qcow2"
# While the node's cache holds the verified base, a restart keeps it.
uid=$(pod_uid pair-pinned-0)
kc -n "$CHAOS_NS" delete pod pair-pinned-0 --wait=true --timeout=60s >/dev/null
wait_pod_new pair-pinned-0 "$uid" 60
wait_container pair-pinned-0 image-fetch '.state.terminated.exitCode == 0' 120 || fail "pinned VM restarted after the URL changed: image-fetch failed"
[ "$(served_requests fileserver /swap.qcow2 | grep -c 'method=GET')" = 1 ] || fail "the pinned VM downloaded again although its base is cached"
# The node loses its cache (as when the pod moves to another node): the existing pet disks refuse
# the new image; a new VM pinned by IMG_SHA256 (vm fresh) refuses it too.
rm -f "$CACHES/pair/berth-images/swap.qcow2" "$CACHES/pair/berth-images/swap.qcow2.sha256"
for p in pair-pet-0 pair-pinned-0; do
	uid=$(pod_uid "$p")
	kc -n "$CHAOS_NS" delete pod "$p" --wait=true --timeout=60s >/dev/null
	wait_pod_new "$p" "$uid" 60
done
{ cat "$work/pair.yaml"; vm_values fresh "$FS/swap.qcow2" swap.qcow2 "$CACHES/pair" "$GUEST_SHA" "$NOBOOT"; } >"$work/pair3.yaml"
helm upgrade pair "$repo/chart" -n "$CHAOS_NS" -f "$work/pair3.yaml" >/dev/null || fail "helm upgrade pair (adding vm fresh)"
declare -A want=(
	[pair-pet-0]="the pet disk /var/lib/berth/disk/pet.json wants $GUEST_SHA"
	[pair-pinned-0]="the pet disk /var/lib/berth/disk/pinned.json wants $GUEST_SHA"
	[pair-fresh-0]="IMG_SHA256 wants $GUEST_SHA")
for p in pair-pet-0 pair-pinned-0 pair-fresh-0; do
	wait_container "$p" image-fetch '(.lastState.terminated.exitCode // .state.terminated.exitCode) == 1' 120 ||
		fail "$p: image-fetch did not refuse the other image within 120 s"
	msg=$(cstat "$p" image-fetch | jq -r '.lastState.terminated.message // .state.terminated.message')
	[[ $msg == *"sha256 of $FS/swap.qcow2 is $OTHER_SHA"*"${want[$p]}"*"discarded"* ]] ||
		fail "$p: the termination message does not say why: $msg"
	grep -qF "${want[$p]}" <<<"$(kc -n "$CHAOS_NS" describe pod "$p")" || fail "$p: kubectl describe pod does not show the reason"
	# The VM never started on the other base: the pod never got past image-fetch.
	cstat "$p" vm | jq -e '(.restartCount // 0) == 0 and (.state.running == null) and (.lastState.terminated == null)' >/dev/null ||
		fail "$p: the vm container ran after image-fetch refused the base"
	if [ -e "$CACHES/pair/berth-images/swap.qcow2" ]; then fail "the cache holds swap.qcow2 after a refusal: $(sha256sum "$CACHES/pair/berth-images/swap.qcow2")"; fi
	clog "$p refused: $msg"
done
fresh_dir=$(pv_dir pair-fresh-0)
[ ! -e "$fresh_dir/fresh.qcow2" ] || fail "a pet disk was made for vm fresh on the wrong image"
if grep -q '\.part' <<<"$(ls -A "$CACHES/pair/berth-images")"; then fail "a partial file is left: $(ls -la "$CACHES/pair/berth-images")"; fi
# The URL serves the right image again: all three recover on their own (the init container's retry).
ln -f "$srv/guest.qcow2" "$srv/swap.new" && mv -f "$srv/swap.new" "$srv/swap.qcow2"
for p in pair-pet-0 pair-pinned-0 pair-fresh-0; do
	wait_container "$p" image-fetch '.state.terminated.exitCode == 0' 180 || fail "$p: did not recover when the right image was served again"
done
[ "$(sha256sum "$CACHES/pair/berth-images/swap.qcow2" | cut -d' ' -f1)" = "$GUEST_SHA" ] || fail "after recovery the cache holds another image"
[ "$(jq -r .sha256 "$fresh_dir/fresh.json")" = "$GUEST_SHA" ] || fail "vm fresh's pet disk names another base"
data_checks=$((data_checks + 2))
faults=$((faults + 1))
result "the image URL serves another image" "cached base kept on restart (no GET); cache lost: both existing pet disks refused it ('sha256 ... is <other>, the pet disk ... wants <guest>'), a new VM pinned by IMG_SHA256 refused it ('IMG_SHA256 wants'), exit 1, vm container never started, nothing in the cache, no pet disk on it; all recovered when the right image was served again" PASS
phase image-changed
helm uninstall pair -n "$CHAOS_NS" --wait --timeout 120s >/dev/null || fail "helm uninstall pair"

# --- fault: the image volume fills up during the download -------------------------------------
# A tmpfs just larger than the image stands for the node's image volume; once the download is
# under way, a ballast file takes all but 4 MiB of what is left.
mount -t tmpfs -o "size=$((GUEST_SIZE / 1048576 + 16))m,mode=0755" berth-chaos-full "$FULL"
{ echo "vms:"; vm_values full "$FS/guest.qcow2" "$TARGET" "$FULL" "" "$NOBOOT"; } >"$work/full.yaml"
helm install full "$repo/chart" -n "$CHAOS_NS" -f "$work/full.yaml" >/dev/null || fail "helm install full"
start=$SECONDS
# The chart keeps the cache in its own subdirectory of the hostPath.
FULLC=$FULL/berth-images
until [ "$(stat -c %s "$FULLC/.$TARGET.part" 2>/dev/null || echo 0)" -ge $((GUEST_SIZE / 5)) ]; do
	((SECONDS - start < 180)) || fail "the download to the tmpfs did not reach 20 % within 180 s"
	sleep 0.2
done
part_ino=$(stat -c %i "$FULLC/.$TARGET.part")
fallocate -l $(($(stat -f -c '%a * %S' "$FULL") - 4 * 1048576)) "$FULL/ballast"
wait_container full-full-0 image-fetch '(.lastState.terminated.exitCode // .state.terminated.exitCode) == 1' 180 ||
	fail "image-fetch did not fail on the full volume within 180 s"
msg=$(cstat full-full-0 image-fetch | jq -r '.lastState.terminated.message // .state.terminated.message')
[[ $msg == *"no space left on device"* ]] || fail "the termination message does not say the volume is full: $msg"
grep -q 'no space left on device' <<<"$(kc -n "$CHAOS_NS" describe pod full-full-0)" || fail "kubectl describe pod does not show 'no space left on device'"
# The failed attempt removed its partial file: that inode is gone (the init container is retried
# at once, so a retry's own file may be there), and no retry continued a partial file (Range).
if grep -qx "$part_ino" <<<"$(find "$FULLC" -mindepth 1 -maxdepth 1 -printf '%i\n')"; then fail "the partial file of the failed download is left: $(ls -lai "$FULLC")"; fi
[ "$(served_requests fileserver /guest.qcow2 | grep -c 'range="bytes=')" = 1 ] ||
	fail "a retry continued a partial file on the full volume: $(served_requests fileserver /guest.qcow2)"
first=$(kc -n "$CHAOS_NS" logs full-full-0 -c image-fetch --previous 2>/dev/null | grep -m1 -o 'error: .*no space left on device.*' || true)
clog "full volume: $msg${first:+ (an earlier attempt: $first)}"
rm -f "$FULL/ballast"
wait_container full-full-0 image-fetch '.state.terminated.exitCode == 0' 240 || fail "image-fetch did not succeed after space was freed"
[ "$(sha256sum "$FULLC/$TARGET" | cut -d' ' -f1)" = "$GUEST_SHA" ] || fail "after freeing space the cache holds another image"
faults=$((faults + 1))
result "the image volume fills up during the download" "'no space left on device' in kubectl describe pod ($msg); the failed attempt's partial file removed (its inode gone, no retry sent a Range); success once the ballast was deleted" PASS
phase image-volume-full
helm uninstall full -n "$CHAOS_NS" --wait --timeout 120s >/dev/null || fail "helm uninstall full"
wait_for 60 "full-full-0 gone" bash -c "! $K8S_BIN/kubectl --kubeconfig $KUBECONFIG_ADMIN -n $CHAOS_NS get pod full-full-0" || true
umount "$FULL" 2>/dev/null || umount -l "$FULL"

# --- the long-lived VM: data in, then the guest faults ------------------------------------------
wait_vm_ready "$VM1"
IP=$(pod_ip "$VM1")
ssh_vm "$IP" 'sudo sh -c "head -c 8M /dev/urandom >/var/tmp/chaos.bin && sha256sum /var/tmp/chaos.bin >/var/tmp/chaos.sha && sync"' ||
	fail "write the data file in the guest"
DATA_SHA=$(ssh_vm "$IP" "cut -d' ' -f1 /var/tmp/chaos.sha")
boot_id() { ssh_vm "$IP" cat /proc/sys/kernel/random/boot_id; }
BOOT=$(boot_id)
# The pet disk on the node (the PV's directory): the same file (inode) and record after every fault.
PET=$(pv_dir "$VM1")/vm1
PET_ID="$(stat -c %i "$PET.qcow2") $(sha256sum <"$PET.json")"
data_ok() { # data_ok WHEN: the file written before the faults is there, whole, on the same pet disk
	[ "$(ssh_vm "$IP" sha256sum /var/tmp/chaos.bin | cut -d' ' -f1)" = "$DATA_SHA" ] || fail "data lost $1: /var/tmp/chaos.bin differs or is gone"
	[ "$(stat -c %i "$PET.qcow2") $(sha256sum <"$PET.json")" = "$PET_ID" ] || fail "$1: the pet disk $PET.qcow2 or its record changed"
	data_checks=$((data_checks + 1))
}
restarts() { cstat "$VM1" "$1" | jq -r '.restartCount // 0'; }
clog "vm1 at $IP, boot_id $BOOT, 8 MiB written (sha256 $DATA_SHA)"
phase boot-vm1

# kubelet restarted (SIGKILL, then ci/cluster/up starts it again, as it started it).
vm_restarts=$(restarts vm)
uid=$(pod_uid "$VM1")
kpid=$(cat "$CLUSTER_DIR/pids/kubelet")
ours "$kpid" || fail "the kubelet pid $kpid is not the cluster's"
kill -KILL "$kpid"
not_ours() { ! ours "$1"; }
wait_for 20 "kubelet $kpid gone" not_ours "$kpid" || fail "kubelet did not die"
"$repo/ci/cluster/up" >/dev/null || fail "ci/cluster/up after killing the kubelet"
[ "$(cat "$CLUSTER_DIR/pids/kubelet")" != "$kpid" ] || fail "the kubelet was not restarted"
wait_for 60 "node Ready" kc wait --for=condition=Ready node --all --timeout=2s || fail "node not Ready after the kubelet restart"
# 20 s for the new kubelet to sync the pod (and to restart anything it would restart), watched.
for _ in $(seq 20); do
	[ "$(pod_uid "$VM1")" = "$uid" ] || fail "the pod was replaced after the kubelet restart"
	[ "$(restarts vm)" = "$vm_restarts" ] || fail "the vm container restarted after the kubelet restart"
	sleep 1
done
wait_vm_ready "$VM1" 60
[ "$(boot_id)" = "$BOOT" ] || fail "the guest rebooted after the kubelet restart"
data_ok "after the kubelet restart"
faults=$((faults + 1))
result "kubelet restarted" "same pod, no container restart, same guest boot_id, data intact" PASS
phase kubelet-restart

# dnsmasq sidecar killed.
dn_restarts=$(restarts dnsmasq)
dpid=$(task_pid "$VM1" dnsmasq) || fail "no running dnsmasq task"
[ "$(cat "/proc/$dpid/comm")" = dnsmasq ] || fail "pid $dpid is $(cat "/proc/$dpid/comm"), not dnsmasq"
kill -KILL "$dpid"
wait_container "$VM1" dnsmasq ".restartCount > $dn_restarts and .state.running != null" 120 || fail "dnsmasq was not restarted"
wait_for 30 "dnsmasq running" task_pid "$VM1" dnsmasq || fail "dnsmasq task not running"
# A DHCP exchange from the guest with the new dnsmasq (a one-shot dhclient that changes nothing:
# -sf /bin/true; its own lease file), then the guest's address, boot and data.
iface=$(ssh_vm "$IP" "ip -o -4 addr show | awk '/192\\.168\\.254\\./ { print \$2; exit }'")
[ -n "$iface" ] || fail "the guest has no 192.168.254.x address after the dnsmasq restart"
dh=$(ssh_vm "$IP" "sudo timeout 40 dhclient -1 -v -sf /bin/true -pf /run/chaos-dhclient.pid -lf /run/chaos-dhclient.leases $iface 2>&1; sudo dhclient -x -sf /bin/true -pf /run/chaos-dhclient.pid 2>/dev/null; true")
grep -q 'DHCPACK of 192.168.254.2' <<<"$dh" || fail "the guest got no DHCPACK from the restarted dnsmasq: $dh"
grep -q 'DHCPACK.*192.168.254.2' <<<"$(kc -n "$CHAOS_NS" logs "$VM1" -c dnsmasq)" || fail "the restarted dnsmasq logged no DHCPACK"
[ "$(ssh_vm "$IP" "ip -o -4 addr show dev $iface | awk '{ print \$4 }'")" = 192.168.254.2/30 ] || fail "the guest's address changed"
wait_vm_ready "$VM1" 60
[ "$(restarts vm)" = "$vm_restarts" ] || fail "the vm container restarted when dnsmasq was killed"
[ "$(boot_id)" = "$BOOT" ] || fail "the guest rebooted when dnsmasq was killed"
data_ok "after the dnsmasq kill"
faults=$((faults + 1))
result "dnsmasq sidecar killed" "restarted (restartCount $dn_restarts -> $(restarts dnsmasq)); the guest renewed 192.168.254.2 from the new dnsmasq (DHCPACK); same boot_id; pod Ready" PASS
phase dnsmasq-kill

# QEMU SIGKILLed.
vpid=$(task_pid "$VM1" vm) || fail "no running vm task"
qpid=$(child_pid "$vpid" qemu-system) || fail "no QEMU child of vmm (pid $vpid)"
kill -KILL "$qpid"
wait_container "$VM1" vm ".restartCount > $vm_restarts" 60 || fail "the vm container did not restart after QEMU was killed"
msg=$(cstat "$VM1" vm | jq -r '.lastState.terminated.message // empty')
[[ $msg == *"exited unexpectedly (signal: killed)"* ]] || fail "the vm container's termination message: '$msg'"
vm_restarts=$(restarts vm)
wait_vm_ready "$VM1"
[ "$(pod_uid "$VM1")" = "$uid" ] || fail "the pod was replaced after the QEMU kill"
B2=$(boot_id)
[ "$B2" != "$BOOT" ] || fail "the guest did not boot again after QEMU was killed"
data_ok "after the QEMU kill"
BOOT=$B2
faults=$((faults + 1))
result "QEMU killed (SIGKILL)" "vm container restarted in the same pod ('$msg'), a new boot from the same pet disk (its inode and record unchanged on the node), data intact" PASS
phase qemu-kill

# The guest powers itself off.
ssh_vm "$IP" 'sudo systemctl poweroff' || true
wait_container "$VM1" vm ".restartCount > $vm_restarts" 120 || fail "the vm container did not restart after the guest powered off"
cstat "$VM1" vm | jq -e '.lastState.terminated.exitCode == 0' >/dev/null ||
	fail "vmm did not exit 0 on the guest's power-off: $(cstat "$VM1" vm | jq -c .lastState)"
grep -qE 'reboot: Power down|System is powered off' <<<"$(kc -n "$CHAOS_NS" logs "$VM1" -c vm --previous)" ||
	fail "the previous console shows no power-off"
wait_vm_ready "$VM1"
[ "$(pod_uid "$VM1")" = "$uid" ] || fail "the pod was replaced after the guest powered off"
[ "$(boot_id)" != "$BOOT" ] || fail "the guest did not boot again after its power-off"
data_ok "after the guest's power-off"
faults=$((faults + 1))
result "the guest powers itself off" "vmm exit 0 ('reboot: Power down' on the console), the container restarted in the same pod, a new boot, the same pet disk (inode, record), data intact" PASS
phase guest-poweroff

# --- bad input through the chart (another suite, same cluster, same lock) ---------------------
# It watches vm1 as its good VM (restart counts unchanged, Ready) instead of booting one.
if [ -x "$here/bad-input.sh" ] && [ "${CHAOS_SKIP_BAD_INPUT:-0}" != 1 ]; then
	KEEP_CLUSTER=1 BAD_INPUT_GOOD_POD="$CHAOS_NS/$VM1" "$here/bad-input.sh" || fail "ci/chaos/bad-input.sh failed"
fi

# --- summary -------------------------------------------------------------------------------------
{
	printf '| fault | checked afterwards | result | s |\n|---|---|---|---|\n'
	awk -F'\t' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }' "$CHAOS_OUT/results.tsv"
	printf '\nFaults survived: %d of 8. Data checks after a fault: %d, data lost: 0.\n' "$faults" "$data_checks"
} >"$CHAOS_OUT/results.md"
clog "faults survived: $faults of 8; data checks $data_checks, data lost 0"
}
main "$@"
