# shellcheck shell=bash
# ci/chaos/lib.sh: what the chaos scripts (ci/chaos/run.sh, ci/chaos/bad-input.sh) share, on top of
# ci/cluster/lib.sh (clog, kc, ctrn, innode, wait_for, cluster_lock, CLUSTER_DIR ...). Source it,
# then call chaos_init SUITE once (after cluster_lock). Everything here bounds its waits.
#
#   CHAOS_NS            the namespace (default berth-chaos); CHAOS_OUT out/chaos (timings.tsv, results.tsv)
#   work                a temporary directory of the run ($work/id: an ed25519 key, $work/id.pub)
#   HELM / helm ARGS    helm v3.22.0 (ci/tools/helm.sh) on the cluster, each call bounded (300 s)
#   GUEST               the test guest (ci/testguest/build.sh)
#   phase NAME          ends the running phase: "SUITE<TAB>NAME<TAB>seconds" into timings.tsv
#   result FAULT CHECKED RESULT   one row of results.tsv (fault, what was checked, PASS/...) + seconds
#   fail MSG            prints MSG, the pods, describe tails, every container's last log lines; exit 1
#   load_images         make images (unless CHAOS_SKIP_IMAGES=1), the toolbox image; TOOLBOX=its name
#   fileserver_pod NAME DIR [RATE]   an HTTP server pod serving DIR (hostPath, read-only), paced
#                       to RATE (e.g. 16Mi) per response; prints http://IP:8080
#   cstat POD CONTAINER the container's status JSON (init, sidecar or main container)
#   wait_container POD CONTAINER JQ SECONDS   until `cstatus | jq -e JQ` holds
#   wait_vm_ready POD [SECONDS]   Ready and SSH answering (BOOT_TIMEOUT, default 480 s)
#   ssh_vm IP CMD...    SSH from the node's network namespace as the guest's user `debian`
#   child_pid PID COMM_PREFIX   a child of PID whose comm starts with COMM_PREFIX
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
pod_ip() { kc -n "$CHAOS_NS" get pod "$1" -o jsonpath='{.status.podIP}'; }
cstat() { # cstat POD CONTAINER: the container's status JSON ({} when it has none yet)
	kc -n "$CHAOS_NS" get pod "$1" -o json 2>/dev/null |
		jq -c --arg c "$2" '[(.status.initContainerStatuses // [])[], (.status.containerStatuses // [])[] | select(.name == $c)][0] // {}'
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

child_pid() { # child_pid PID COMM_PREFIX
	local c
	# shellcheck disable=SC2013 # the children files hold pids separated by spaces: words, not lines
	for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
		case $(cat "/proc/$c/comm" 2>/dev/null) in "$2"*) echo "$c"; return 0 ;; esac
	done
	return 1
}
