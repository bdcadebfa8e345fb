#!/usr/bin/env bash
# ci/e2e/cluster-test.sh: Berth end to end on a real single-node Kubernetes (ci/cluster/up), for each
# CNI setup in E2E_CNIS (default "bridge calico-like"): helm install the chart with one VM booting
# the test guest, which image-fetch downloads from an HTTP server pod in the cluster; then:
#   pod Ready; SSH from the node to the pod IP with the key from the values; hostname = the VM's
#   name; the user-data marker; resolv.conf search domains = the pod's; the guest console in
#   `kubectl logs -c vm`; a login and a command on the serial console through `kubectl attach -it`,
#   then Ctrl-P Ctrl-Q leaves the VM running; `kubectl port-forward` 5900 answers RFB; TCP 5900 on
#   the pod IP does not reach the guest; the web console (noVNC in Chromium through `kubectl
#   port-forward` 6080) is Connected and shows the guest's screen; a file survives `kubectl delete
#   pod` with a clean ACPI power-off in the console and no second download; `helm upgrade` changing
#   memory restarts the VM with the new memory and the same disk; a second VM in the release gets
#   its own pod IP and disk and shares the base image; `helm test`; `helm uninstall` keeps the PVCs.
# Every wait is bounded; phase timings go to stderr and out/e2e/timings.tsv; the trap always
# uninstalls, deletes the namespace and takes the cluster down (KEEP_CLUSTER=1 keeps it up).
set -eEuo pipefail
# No `cmd | grep -q` under pipefail: grep -q stops reading at the first match, and a writer that is
# still writing then dies of SIGPIPE and fails a passing check; `grep ... >/dev/null` reads it all.
trap 'clog "FAIL: line $LINENO: $BASH_COMMAND (exit $?)"' ERR
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../cluster/lib.sh
. "$repo/ci/cluster/lib.sh"
# shellcheck source=web-console.sh
. "$here/web-console.sh"

cluster_lock # the whole run: nobody else's up or down in between
E2E_CNIS=${E2E_CNIS:-calico-like bridge}
# The CNIs that get the whole scenario; the others get install, boot, the guest checks, console,
# VNC, helm test and uninstall (TCG boots take 1-2 min each: the full scenario boots four times).
E2E_FULL_CNIS=${E2E_FULL_CNIS-calico-like} # set and empty: no CNI gets the whole scenario
BOOT_TIMEOUT=${BOOT_TIMEOUT:-480} # one TCG boot with image download; 35-60 s when the machine is idle
NS=berth-e2e
REL=e2e
MARKER=berth-e2e-$RANDOM$RANDOM
CONSOLE_PASSWORD=berth-$RANDOM$RANDOM # the guest user's, for the serial console test only
OUT=$repo/out/e2e
mkdir -p "$OUT"
work=$(mktemp -d /tmp/berth-e2e.XXXXXX)
IMG_CACHE=$CLUSTER_DIR/e2e-image-cache
: >"$OUT/timings.tsv"
pf_pid=""

fail() {
	clog "FAIL: $*"
	{
		kc -n "$NS" get pods -o wide
		for p in $(kc -n "$NS" get pods -o name 2>/dev/null); do
			kc -n "$NS" describe "$p" | tail -25
			kc -n "$NS" logs "$p" --all-containers --tail=30 --prefix 2>/dev/null
		done
	} >&2 2>/dev/null || true
	exit 1
}
phase_start=$SECONDS
phase() { # phase NAME: end the running phase under NAME
	printf '%s\t%s\t%s\n' "${CNI:-}" "$1" "$((SECONDS - phase_start))" >>"$OUT/timings.tsv"
	clog "phase ${CNI:-setup}/$1: $((SECONDS - phase_start))s"
	phase_start=$SECONDS
}
cleanup() {
	local rc=$?
	[ -z "$pf_pid" ] || kill "$pf_pid" 2>/dev/null || true
	if [ -S "$CONTAINERD_SOCK" ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
		"$repo/ci/cluster/down" >/dev/null 2>&1 || clog "cluster down failed"
	fi
	if [ "${KEEP_CLUSTER:-0}" = 1 ]; then clog "kept: the cluster, the SSH key $work/id"; else rm -rf "$work"; fi
	[ "${KEEP_CLUSTER:-0}" = 1 ] || rm -rf "$IMG_CACHE"
	if [ "$rc" = 0 ]; then clog "PASS"; else clog "FAILED (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- what the test needs: helm, the images, the test guest, the helper image --------------------
[ -f "$repo/chart/Chart.yaml" ] || fail "chart/Chart.yaml missing: the chart has not landed"
[ -x "$repo/ci/tools/helm.sh" ] || fail "ci/tools/helm.sh missing: the helm builder has not landed"
HELM=$("$repo/ci/tools/helm.sh" | tail -1)
helm() { timeout 300 "$HELM" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
GUEST=$("$repo/ci/testguest/build.sh" | tail -1)
[ -f "$GUEST" ] || fail "test guest: ci/testguest/build.sh printed '$GUEST', not a file"
if [ "${E2E_SKIP_IMAGES:-0}" != 1 ]; then
	make -C "$repo" --no-print-directory images >"$OUT/make-images.log" 2>&1 || fail "make images (log: $OUT/make-images.log)"
fi
compgen -G "$repo/out/images/*.oci.tar" >/dev/null || fail "no out/images/*.oci.tar: make images exported nothing"
ssh-keygen -q -t ed25519 -N '' -C berth-e2e -f "$work/id" </dev/null
web_console_prepare
phase prerequisites

ssh_vm() { # ssh_vm IP CMD...: SSH from the node (its network namespace) as the test guest's user (SSH_TIMEOUT s, 60)
	local ip=$1
	shift
	innode timeout "${SSH_TIMEOUT:-60}" ssh -i "$work/id" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o ConnectTimeout=5 -o LogLevel=ERROR "debian@$ip" "$*" </dev/null
}
vm_pod() { # vm_pod VM: the name of the pod running VM (it runs in container "vm" with VM_NAME, or is <...>VM-0)
	kc -n "$NS" get pods -o json | jq -r --arg vm "$1" '.items[]
		| select(.metadata.deletionTimestamp == null)
		| select(([.spec.containers[] | select(.name == "vm") | .env[]? | select(.name == "VM_NAME") | .value] | index($vm))
			or (.metadata.name | test("(^|-)" + $vm + "-0$")))
		| .metadata.name' | head -1
}
vm_name() { # vm_name POD: the VM_NAME the pod's vm container runs with (default: the pod's hostname)
	local n
	n=$(kc -n "$NS" get pod "$1" -o json | jq -r '[.spec.containers[] | select(.name == "vm") | .env[]? | select(.name == "VM_NAME") | .value][0] // empty')
	echo "${n:-$1}"
}
pod_ip() { kc -n "$NS" get pod "$1" -o jsonpath='{.status.podIP}'; }
wait_vm_ready() { # wait_vm_ready VM [OLD_UID]: a pod of VM (not OLD_UID) Ready and SSH answering
	local vm=$1 old=${2:-} start=$SECONDS pod="" said=$SECONDS
	while ((SECONDS - start < BOOT_TIMEOUT)); do
		pod=$(vm_pod "$vm")
		if [ -n "$pod" ] && [ "$(kc -n "$NS" get pod "$pod" -o jsonpath='{.metadata.uid}')" != "$old" ] &&
			[ "$(kc -n "$NS" get pod "$pod" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; then
			break
		fi
		if ((SECONDS - said >= 15)); then
			said=$SECONDS
			clog "waiting for $vm: $(kc -n "$NS" get pods --no-headers 2>/dev/null | tr '\n' ';')"
		fi
		sleep 1
		pod=""
	done
	[ -n "$pod" ] || fail "$vm: no Ready pod within ${BOOT_TIMEOUT}s"
	local ip
	ip=$(pod_ip "$pod")
	wait_for 120 "$vm: SSH at $ip" ssh_vm "$ip" true || fail "$vm: pod $pod Ready but SSH at $ip does not answer"
	echo "$pod"
}
image_gets() { # how many times the HTTP server pod served the guest image (GET)
	kc -n "$NS" logs fileserver 2>/dev/null | grep -c "method=GET path=/$(basename "$GUEST")" || true
}

# full_scenario: (uses run_cni's pod, ip, gets, uid, pvc1, pvc2)
full_scenario() {
	# 3. a file survives kubectl delete pod; clean ACPI shutdown; no second download.
	ssh_vm "$ip" "echo $MARKER-persist | sudo tee /var/tmp/persist >/dev/null && sync" || fail "write a file in the guest"
	uid=$(kc -n "$NS" get pod "$pod" -o jsonpath='{.metadata.uid}')
	# kubectl itself in the background (not the kc function: $! would be a subshell, kubectl orphaned)
	"$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" -n "$NS" logs -f "$pod" -c vm --since=1s >"$work/console-shutdown.txt" 2>/dev/null 8>&- &
	local logs_pid=$!
	kc -n "$NS" delete pod "$pod" --wait=true --timeout=180s >/dev/null || fail "kubectl delete pod $pod"
	kill "$logs_pid" 2>/dev/null || true; wait "$logs_pid" 2>/dev/null || true
	grep -qE 'reboot: Power down|System is powered off|Power-Off|powering off' "$work/console-shutdown.txt" ||
		fail "no clean ACPI shutdown in the console before the pod went (see $work/console-shutdown.txt)"
	phase delete-pod
	pod=$(wait_vm_ready vm1 "$uid")
	ip=$(pod_ip "$pod")
	ssh_vm "$ip" cat /var/tmp/persist | grep -x "$MARKER-persist" >/dev/null || fail "the file did not survive kubectl delete pod"
	[ "$(image_gets)" = "$gets" ] || fail "the image was downloaded again after the pod was recreated ($gets -> $(image_gets) GETs)"
	phase reboot-vm1

	# 4. helm upgrade changing memory: restarted with the new memory, same disk.
	uid=$(kc -n "$NS" get pod "$pod" -o jsonpath='{.metadata.uid}')
	helm upgrade "$REL" "$repo/chart" -n "$NS" -f "$work/values.yaml" --set vms.vm1.memory=1536Mi >/dev/null || fail "helm upgrade"
	pod=$(wait_vm_ready vm1 "$uid")
	ip=$(pod_ip "$pod")
	local memkb
	memkb=$(ssh_vm "$ip" "awk '/MemTotal/ { print \$2 }' /proc/meminfo")
	((memkb > 1300 * 1024 && memkb <= 1536 * 1024)) || fail "after helm upgrade the guest has MemTotal ${memkb} kB, expected 1536 MiB"
	ssh_vm "$ip" cat /var/tmp/persist | grep -x "$MARKER-persist" >/dev/null || fail "the disk changed across helm upgrade"
	phase upgrade-memory

	# 5. a second VM in the same release: own pod IP, own disk, the same downloaded base image.
	cat >"$work/values2.yaml" <<YAML
vms:
  vm2:
$(sed -n '/^  vm1:$/,$p' "$work/values.yaml" | tail -n +2)
YAML
	helm upgrade "$REL" "$repo/chart" -n "$NS" -f "$work/values.yaml" -f "$work/values2.yaml" --set vms.vm1.memory=1536Mi >/dev/null ||
		fail "helm upgrade adding vm2"
	local pod2 ip2
	pod2=$(wait_vm_ready vm2)
	ip2=$(pod_ip "$pod2")
	[ "$ip2" != "$ip" ] || fail "vm2 has vm1's pod IP $ip"
	[ "$(ssh_vm "$ip2" hostname)" = "$(vm_name "$pod2")" ] || fail "vm2 hostname"
	ssh_vm "$ip2" 'test ! -e /var/tmp/persist' || fail "vm2 sees vm1's file: the disks are shared"
	pvc2=$(kc -n "$NS" get pod "$pod2" -o json | jq -r '[.spec.volumes[] | .persistentVolumeClaim.claimName // empty][0]')
	{ [ -n "$pvc1" ] && [ -n "$pvc2" ] && [ "$pvc1" != "$pvc2" ]; } || fail "PVCs: vm1 '$pvc1', vm2 '$pvc2'"
	[ "$(image_gets)" = "$gets" ] || fail "vm2 downloaded the base image again ($gets -> $(image_gets) GETs)"
	phase second-vm
}

run_cni() {
	export CNI=$1
	# A per-node image cache of this run only (hostPath), so the first boot really downloads.
	rm -rf "$IMG_CACHE"
	"$repo/ci/cluster/up" >/dev/null || fail "ci/cluster/up with CNI=$CNI"
	toolbox=$("$here/toolbox-image.sh" | tail -1)
	phase cluster-up

	kc delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null # a KEEP_CLUSTER run's
	kc create namespace "$NS" >/dev/null
	wait_for 30 "service account in $NS" kc -n "$NS" get serviceaccount default || fail "no default service account"
	# The HTTP server pod: serves the test guest's directory (hostPath, read-only) on 8080.
	local url
	url=$(serve_dir_pod "$NS" fileserver "$(dirname "$GUEST")" "$toolbox") || fail "fileserver pod not Ready"
	url="$url/$(basename "$GUEST")"
	sed -e "s|@IMG_URL@|$url|" -e "s|@IMG_TARGET@|berth-testguest.qcow2|" -e "s|@MARKER@|$MARKER|" -e "s|@CONSOLE_PASSWORD@|$CONSOLE_PASSWORD|" \
		-e "s|@IMG_CACHE@|$IMG_CACHE|" -e "s|@SSH_PUBKEY@|$(cat "$work/id.pub")|" "$here/values.yaml.in" >"$work/values.yaml"
	phase fileserver

	# 1. install, boot, SSH.
	helm install "$REL" "$repo/chart" -n "$NS" -f "$work/values.yaml" >"$OUT/helm-install-$CNI.txt" || fail "helm install"
	local pod ip
	pod=$(wait_vm_ready vm1)
	ip=$(pod_ip "$pod")
	phase boot-vm1
	clog "vm1 runs in pod $pod at $ip"
	case $CNI in
	calico-like) kc -n "$NS" get pod "$pod" -o jsonpath='{.status.podIP}' | grep '^10\.244\.1\.' >/dev/null || fail "calico-like pod IP $ip not in 10.244.1.0/24" ;;
	bridge) grep -q '^10\.244\.0\.' <<<"$ip" || fail "bridge pod IP $ip not in 10.244.0.0/24" ;;
	esac
	local vmname got
	vmname=$(vm_name "$pod")
	got=$(ssh_vm "$ip" hostname) || fail "ssh hostname"
	[ "$got" = "$vmname" ] || fail "hostname: guest says '$got', the VM is '$vmname'"
	# ssh outlasts the guest's own wait (a loaded machine: cloud-init's final stage came after 60 s).
	SSH_TIMEOUT=150 ssh_vm "$ip" 'timeout 120 cloud-init status --wait >/dev/null; cat /var/tmp/berth-e2e-marker' | grep -x "$MARKER" >/dev/null ||
		fail "user-data marker $MARKER not in the guest's /var/tmp/berth-e2e-marker"
	local podsearch guestsearch
	# The pod's search domains as the kubelet writes them for every ClusterFirst pod of the namespace
	# (the Berth images have no cat: read them in the fileserver pod beside it).
	podsearch=$(kc -n "$NS" exec fileserver -- cat /etc/resolv.conf | awk '$1 == "search" { $1 = ""; print substr($0, 2) }') ||
		fail "read the pod's resolv.conf"
	[ -n "$podsearch" ] || fail "the pod's resolv.conf has no search line"
	# dhclient writes the names of option 119 as FQDNs (a trailing dot): the same names to the resolver.
	guestsearch=$(ssh_vm "$ip" cat /etc/resolv.conf | awk '$1 == "search" { $1 = ""; print substr($0, 2) }' | sed 's/\. / /g; s/\.$//')
	[ "$guestsearch" = "$podsearch" ] || fail "guest search domains '$guestsearch', the pod's '$podsearch'; the guest's resolv.conf:
$(ssh_vm "$ip" 'ls -l /etc/resolv.conf; cat /etc/resolv.conf; ls /var/lib/dhcp/; cat /var/lib/dhcp/*.leases; ls /etc/network/interfaces.d; cat /etc/network/interfaces.d/*' 2>&1)"
	grep -q "^$NS.svc.cluster.local " <<<"$guestsearch " || fail "guest search domains '$guestsearch' lack $NS.svc.cluster.local"
	phase guest-checks

	# 2. console, VNC through port-forward, and not on the pod IP.
	kc -n "$NS" logs "$pod" -c vm >"$work/console1.txt"
	grep -qE 'Linux version|login:|Debian GNU/Linux|cloud-init' "$work/console1.txt" ||
		fail "kubectl logs -c vm shows no guest console output"
	local port=$((20000 + RANDOM % 20000)) banner
	"$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" -n "$NS" port-forward "pod/$pod" "$port:5900" >"$work/pf.log" 2>&1 8>&- &
	pf_pid=$!
	wait_for 20 "port-forward on $port" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" || fail "port-forward did not listen"
	banner=$(timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; head -c 12 <&3" | tr -d '\n' || true)
	kill "$pf_pid" 2>/dev/null || true; wait "$pf_pid" 2>/dev/null || true; pf_pid=""
	[[ $banner == RFB\ 00?.00? ]] || fail "port-forward to 5900: expected an RFB banner, got '$banner'"
	# TCP 5900 on the pod IP stays in the pod (QEMU's VNC listens on 127.0.0.1 only): with a server
	# in the guest on 5900 and on 5901, 5901 answers from the pod IP (the control) and 5900 does not.
	# shellcheck disable=SC2016 # the loop runs in the guest: its $p is the guest shell's
	ssh_vm "$ip" 'for p in 5900 5901; do mkdir -p /tmp/www$p && echo guest-$p >/tmp/www$p/index.html || exit 1;
		setsid python3 -m http.server $p --directory /tmp/www$p >/dev/null 2>&1 </dev/null & done' ||
		fail "start HTTP servers on 5900/5901 in the guest"
	wait_for 30 "guest's 5901 through the pod IP" innode curl -fsS --max-time 3 "http://$ip:5901/" ||
		fail "TCP 5901 on the pod IP does not reach the guest (DNAT of every other port)"
	ssh_vm "$ip" 'python3 -c "import urllib.request as u; print(u.urlopen(\"http://127.0.0.1:5900/\", timeout=3).read().decode())"' |
		grep -x guest-5900 >/dev/null || fail "the guest's own server on 5900 does not answer in the guest"
	banner=$(innode curl -sS --max-time 5 "http://$ip:5900/" 2>&1 || true)
	[[ $banner != *guest-5900* ]] || fail "TCP 5900 on the pod IP reached the guest"
	banner=$(innode timeout 5 bash -c "exec 3<>/dev/tcp/$ip/5900 && head -c 12 <&3" 2>/dev/null || true)
	[[ $banner != RFB* ]] || fail "TCP 5900 on the pod IP reached QEMU's VNC (VNC_LISTEN should be 127.0.0.1)"
	phase console-vnc
	# 2a. the web console (console.web.enabled): noVNC in Chromium through port-forward 6080.
	web_console "$pod"
	phase web-console

	# 2b. the interactive serial console (console.serial.interactive): kubectl attach -it, log in,
	# a command answered, logout, detach; then the VM still runs (same container, no restart) and
	# `kubectl logs` shows the session too.
	local restarts marker=serial-$RANDOM$RANDOM
	restarts=$(kc -n "$NS" get pod "$pod" -o jsonpath='{.status.containerStatuses[?(@.name=="vm")].restartCount}')
	CONSOLE_PASSWORD=$CONSOLE_PASSWORD timeout 400 "$here/serial-console.py" --transcript "$OUT/serial-console-$CNI.txt" --marker "$marker" -- \
		"$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" -n "$NS" attach -it "$pod" -c vm 8>&- ||
		fail "the serial console through kubectl attach (transcript: $OUT/serial-console-$CNI.txt)"
	sleep 2
	[ "$(kc -n "$NS" get pod "$pod" -o jsonpath='{.status.containerStatuses[?(@.name=="vm")].restartCount}')" = "$restarts" ] ||
		fail "the vm container restarted after kubectl attach detached"
	ssh_vm "$ip" true || fail "the VM does not answer SSH after kubectl attach detached"
	kc -n "$NS" logs "$pod" -c vm --tail=200 | grep "$marker-42" >/dev/null || fail "kubectl logs -c vm lacks the serial session's answer $marker-42"
	phase serial-console

	local gets uid pvc1 pvc2=""
	gets=$(image_gets)
	[ "$gets" -ge 1 ] || fail "the HTTP server pod served no GET of the image: image-fetch did not download from it"
	pvc1=$(kc -n "$NS" get pod "$pod" -o json | jq -r '[.spec.volumes[] | .persistentVolumeClaim.claimName // empty][0]')
	if [[ " $E2E_FULL_CNIS " == *" $CNI "* ]]; then
		full_scenario
	else
		clog "CNI=$CNI: short scenario (E2E_FULL_CNIS=$E2E_FULL_CNIS): no delete-pod, upgrade, second VM"
	fi
	# 6. helm test; helm uninstall keeps the PVCs.
	helm test "$REL" -n "$NS" --timeout 180s >"$OUT/helm-test-$CNI.txt" 2>&1 || fail "helm test (see $OUT/helm-test-$CNI.txt)"
	phase helm-test
	helm uninstall "$REL" -n "$NS" --wait --timeout 240s >/dev/null || fail "helm uninstall"
	wait_for 120 "VM pods gone" bash -c "[ -z \"\$($K8S_BIN/kubectl --kubeconfig $KUBECONFIG_ADMIN -n $NS get pods -o name | grep -v fileserver)\" ]" ||
		fail "pods left after helm uninstall"
	kc -n "$NS" get pvc "$pvc1" ${pvc2:+"$pvc2"} >/dev/null || fail "helm uninstall removed a PVC"
	[ -z "$(kc -n "$NS" get statefulsets,configmaps,serviceaccounts -l "app.kubernetes.io/instance=$REL" -o name)" ] ||
		fail "helm uninstall left objects of the release"
	phase uninstall

	kc delete namespace "$NS" --wait=true --timeout=120s >/dev/null || true
	"$repo/ci/cluster/down" >/dev/null
	phase cluster-down
	clog "CNI=$CNI: all checks passed"
}

for c in $E2E_CNIS; do
	case $c in bridge | calico-like) ;; *) fail "E2E_CNIS: '$c' is not one of bridge, calico-like" ;; esac
	run_cni "$c"
done
