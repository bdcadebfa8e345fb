# shellcheck shell=bash
# ci/chaos/lib.sh: what the chaos scripts (ci/chaos/run.sh, ci/chaos/bad-input.sh) share, on top of
# ci/cluster/lib.sh (clog, kc, ctrn, innode, wait_for, cluster_lock, CLUSTER_DIR ...). Source it,
# then call chaos_init SUITE once (after cluster_lock). Everything here bounds its waits.
#
#   CHAOS_NS            the namespace (default berth-chaos); CHAOS_OUT out/chaos (timings.tsv, results.tsv)
#   work                a temporary directory of the run ($work/id: an ed25519 key, $work/id.pub)
#   HELM / helm ARGS    helm v3.22.0 (ci/tools/helm.sh) on the cluster, each call bounded (300 s)
#   GUEST, GUEST_SHA    the test guest (ci/testguest/build.sh) and its sha256
#   phase NAME          ends the running phase: "SUITE<TAB>NAME<TAB>seconds" into timings.tsv
#   result FAULT CHECKED RESULT   one row of results.tsv (fault, what was checked, PASS/...) + seconds
#   fail MSG            prints MSG, the pods, describe tails, every container's last log lines; exit 1
#   load_images         make images (unless CHAOS_SKIP_IMAGES=1), the toolbox image; TOOLBOX=its name
#   fileserver_pod NAME DIR [RATE]   an HTTP server pod serving DIR (hostPath, read-only), paced
#                       to RATE (e.g. 16Mi) per response; prints http://IP:8080
#   served_requests POD PATH   the server pod's log lines for PATH (method=... range="..." status=...)
#   vm_values VM URL TARGET CACHE [SHA256] [EXTRA_YAML]   one vms.<VM> entry of the values (2 vCPU,
#                       1Gi, 4Gi disk, shutdownTimeout 30, hostPath cache CACHE, the run's SSH key);
#                       EXTRA_YAML: more keys of the VM, indented by 4 spaces
#   pod_ip POD, pod_uid POD
#   cstat POD CONTAINER the container's status JSON (init, sidecar or main container)
#   wait_pod_new POD OLD_UID SECONDS   the pod exists again with another uid
#   wait_container POD CONTAINER JQ SECONDS   until `cstatus | jq -e JQ` holds
#   wait_vm_ready POD [SECONDS]   Ready and SSH answering (BOOT_TIMEOUT, default 480 s)
#   ssh_vm IP CMD...    SSH from the node's network namespace as the guest's user `debian`
#   task_pid POD CONTAINER   the host pid of the container's first process (through containerd)
#   child_pid PID COMM_PREFIX   a child of PID whose comm starts with COMM_PREFIX
#   pv_dir POD          the host directory of the pod's disk PVC (local PV)
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
	GUEST_SHA=$(sha256sum "$GUEST" | cut -d' ' -f1)
	phase_start=$SECONDS
}
helm() { timeout 300 "$HELM" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

phase() {
	printf '%s\t%s\t%s\n' "$CHAOS_SUITE" "$1" "$((SECONDS - phase_start))" >>"$CHAOS_OUT/timings.tsv"
	clog "phase $CHAOS_SUITE/$1: $((SECONDS - phase_start))s"
	phase_start=$SECONDS
}
result() {
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$((SECONDS - phase_start))" >>"$CHAOS_OUT/results.tsv"
	clog "$3: $1 ($2)"
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
served_requests() { kc -n "$CHAOS_NS" logs "$1" 2>/dev/null | grep -F " path=$2 " || true; }

vm_values() { # vm_values VM URL TARGET CACHE [SHA256] [EXTRA_YAML (indented 4)]
	cat <<YAML
  $1:
    image:
      source: "$2"
      target: "$3"
YAML
	[ -z "${5:-}" ] || printf '      sha256: "%s"\n' "$5"
	cat <<YAML
    cpus: 2
    memory: 1Gi
    diskSize: 4Gi
    class_name: berth-local
    imageCache:
      mode: hostPath
      hostPath: "$4"
    shutdownTimeout: 30
    sshAuthorizedKeys:
      - "$(cat "$work/id.pub")"
    userData: |
      #cloud-config
      manage_etc_hosts: true
${6:-}
YAML
}

pod_ip() { kc -n "$CHAOS_NS" get pod "$1" -o jsonpath='{.status.podIP}'; }
pod_uid() { kc -n "$CHAOS_NS" get pod "$1" -o jsonpath='{.metadata.uid}' 2>/dev/null || true; }
cstat() { # cstat POD CONTAINER: the container's status JSON ({} when it has none yet)
	kc -n "$CHAOS_NS" get pod "$1" -o json 2>/dev/null |
		jq -c --arg c "$2" '[(.status.initContainerStatuses // [])[], (.status.containerStatuses // [])[] | select(.name == $c)][0] // {}'
}

wait_pod_new() { # wait_pod_new POD OLD_UID SECONDS
	local u start=$SECONDS
	while ((SECONDS - start < $3)); do
		u=$(pod_uid "$1")
		[ -n "$u" ] && [ "$u" != "$2" ] && return 0
		sleep 1
	done
	fail "pod $1: no new pod (old uid $2) within $3 s"
}
wait_container() { # wait_container POD CONTAINER JQ SECONDS: until the status satisfies JQ
	local start=$SECONDS said=$SECONDS
	until cstat "$1" "$2" | jq -e "$3" >/dev/null 2>&1; do
		((SECONDS - start >= $4)) && return 1
		if ((SECONDS - said >= 20)); then
			said=$SECONDS
			clog "waiting for $1/$2 ($3): $(cstat "$1" "$2" | jq -c '{state, lastState, restartCount}')"
		fi
		sleep 1
	done
}

ssh_vm() {
	local ip=$1
	shift
	innode timeout 60 ssh -i "$work/id" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o ConnectTimeout=5 -o LogLevel=ERROR "debian@$ip" "$*" </dev/null
}
wait_vm_ready() { # wait_vm_ready POD [SECONDS]
	local pod=$1 limit=${2:-$BOOT_TIMEOUT} start=$SECONDS said=$SECONDS
	until [ "$(kc -n "$CHAOS_NS" get pod "$pod" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; do
		((SECONDS - start >= limit)) && fail "$pod: not Ready within ${limit}s"
		if ((SECONDS - said >= 20)); then
			said=$SECONDS
			clog "waiting for $pod to be Ready: $(kc -n "$CHAOS_NS" get pod "$pod" --no-headers 2>/dev/null)"
		fi
		sleep 1
	done
	wait_for 120 "$pod: SSH" ssh_vm "$(pod_ip "$pod")" true || fail "$pod Ready but SSH does not answer"
}

task_pid() { # task_pid POD CONTAINER: through containerd, never by a process name
	local id pid
	id=$(cstat "$1" "$2" | jq -r '.containerID // empty' | sed 's|^containerd://||')
	[ -n "$id" ] || return 1
	pid=$(ctrn tasks ls 2>/dev/null | awk -v id="$id" '$1 == id && $3 == "RUNNING" { print $2 }')
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
	echo "$pid"
}
child_pid() { # child_pid PID COMM_PREFIX
	local c
	# shellcheck disable=SC2013 # the children files hold pids separated by spaces: words, not lines
	for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
		case $(cat "/proc/$c/comm" 2>/dev/null) in "$2"*) echo "$c"; return 0 ;; esac
	done
	return 1
}
pv_dir() { # pv_dir POD: the local path of the PV behind the pod's disk PVC
	local pvc pv
	pvc=$(kc -n "$CHAOS_NS" get pod "$1" -o json | jq -r '[.spec.volumes[] | .persistentVolumeClaim.claimName // empty][0]')
	pv=$(kc -n "$CHAOS_NS" get pvc "$pvc" -o jsonpath='{.spec.volumeName}')
	kc get pv "$pv" -o jsonpath='{.spec.local.path}'
}
