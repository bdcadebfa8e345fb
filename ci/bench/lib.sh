# Shared helpers of the benches (source it: `source "$(dirname "$0")/lib.sh"`). Not a bench itself:
# run.sh skips it. Contract of a bench (team guide): write out/bench/<name>.md (a markdown section)
# and out/bench/<name>.tsv, one row a figure:
#   figure <TAB> baseline <TAB> ratio_min <TAB> ratio_median <TAB> ratio_max <TAB> goal
# Goals are written as "< 1", "<= 1.05", ">= 0.9", "1.0" (equal) or "" (shown, no goal).
#
# Network benches make their own namespaces (random suffix) and always remove them (bench_cleanup,
# installed as the EXIT trap by bench_init). They never touch the host's network.

BENCH_REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
REPO=${REPO:-$BENCH_REPO}
OUT=$BENCH_REPO/out/bench
export PATH=/usr/local/go/bin:$PATH:/usr/sbin:/sbin

# bench_init NAME: log prefix, work dir, cleanup trap; sets BENCH, WORK, OUT.
bench_init() {
  BENCH=$1
  mkdir -p "$OUT"
  WORK=$(mktemp -d "/var/tmp/berth-bench-$BENCH.XXXXXX")
  chmod 755 "$WORK"
  BENCH_NS=() BENCH_PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

log() { printf '%s %s bench: %s\n' "$(date -u +%H:%M:%S)" "$BENCH" "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}
# shellcheck source=ci/bench/stats.sh
source "$BENCH_REPO/ci/bench/stats.sh"

# bench_bin NAME: path of bin/NAME; fails with the fix when `make build` has not run.
bench_bin() {
  local b=$BENCH_REPO/bin/$1
  [[ -x $b ]] || fail "$b missing: run make build first"
  echo "$b"
}

# build_rtt: the TCP round-trip tool (ci/bench/rtt, its own module) into $WORK/rtt.
build_rtt() {
  (cd "$BENCH_REPO/ci/bench/rtt" && GOWORK=off CGO_ENABLED=0 go build -trimpath -o "$WORK/rtt" .) || fail "build ci/bench/rtt"
  RTT=$WORK/rtt
}

# netns_pids NS...: the pids of the processes in the namespaces, one a line.
netns_pids() {
  local ns
  for ns in "$@"; do ip netns pids "$ns" 2>/dev/null; done
}

bench_cleanup() {
  set +e
  local ns pids p
  for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  mapfile -t pids < <(netns_pids "${BENCH_NS[@]}")
  ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null
  for _ in $(seq 30); do
    mapfile -t pids < <(netns_pids "${BENCH_NS[@]}")
    ((${#pids[@]})) || break
    sleep 0.1
  done
  ((${#pids[@]})) && kill -9 "${pids[@]}" 2>/dev/null
  for ns in "${BENCH_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  [[ -n ${WORK:-} && -d $WORK && ${KEEP_WORK:-0} != 1 ]] && rm -rf "$WORK"
  return 0
}

# ---------------------------------------------------------------- a Calico-shaped pod with net-setup

VM_IP=192.168.254.2
VM_GW=192.168.254.1

# pod_netns: the node and the Calico-shaped pod netns of common/roottest (NewNode, NewCalicoPod;
# made by its command calico-pod), the same fixture as e2e/localpod and the Go root tests:
#   node: NODE_IP on lo, an uplink veth holding the default route (so proxy ARP answers for
#     169.254.1.1), ip_forward, proxy_arp on the pod's veth NODE_IF, a /32 route to the pod IP.
#   pod: eth0 = POD_IP/32, MTU POD_MTU, default via 169.254.1.1 onlink.
# Sets NODE_NS, POD_NS, NODE_IF, POD_IP, NODE_IP, POD_MTU (the namespaces registered for cleanup).
pod_netns() {
  if [[ ! -x $WORK/calico-pod ]]; then
    (cd "$BENCH_REPO/common" && CGO_ENABLED=0 go build -trimpath -o "$WORK/calico-pod" ./roottest/cmd/calico-pod) ||
      fail "build common/roottest/cmd/calico-pod"
  fi
  local out k v
  out=$("$WORK/calico-pod" add) || fail "calico-pod add"
  while IFS='=' read -r k v; do
    case $k in
    NODE_NS | POD_NS | NODE_IF | POD_IP | NODE_IP | POD_MTU) printf -v "$k" '%s' "$v" ;;
    esac
  done <<<"$out"
  BENCH_NS+=("$NODE_NS" "$POD_NS")
}

# pod_files: the pod's resolv.conf under $WORK/config.
pod_files() {
  mkdir -p "$WORK/config"
  printf 'nameserver 10.96.0.10\nnameserver 10.96.0.11\nsearch berth-test.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' \
    >"$WORK/config/resolv.conf"
}

# net_setup RUN_DIR [ARGS...]: the real bin/net-setup in the pod netns, the env ci/local-pod.sh gives it.
net_setup() {
  local run=$1
  shift
  mkdir -p "$run"
  ip netns exec "$POD_NS" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VM_NAME=bench BERTH_RUN_DIR="$run" \
    RESOLV_CONF="$WORK/config/resolv.conf" TAP_UID=65534 TAP_GID=65534 TERMINATION_LOG="$run/termination-log" \
    "$(bench_bin net-setup)" "$@"
}

# vm_netns: a "vm" netns on the pod's br0 through a veth, standing in for the guest (so the guest's
# CPU is not the bottleneck): VM_IP/30 via VM_GW, MTU POD_MTU. Sets VM_NS.
vm_netns() {
  VM_NS=bbvm-${POD_NS#bpod-}
  ip netns add "$VM_NS" && BENCH_NS+=("$VM_NS")
  ip -n "$VM_NS" link set lo up
  ip -n "$POD_NS" link add vmport mtu "$POD_MTU" type veth peer name eth0 mtu "$POD_MTU" netns "$VM_NS"
  ip -n "$POD_NS" link set vmport master br0 up
  ip -n "$VM_NS" addr add "$VM_IP/30" dev eth0
  ip -n "$VM_NS" link set eth0 up
  ip -n "$VM_NS" route add default via "$VM_GW"
}

# wait_tcp NS ADDR PORT SECONDS: until a TCP connect from NS succeeds (bounded).
wait_tcp() {
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    ip netns exec "$1" timeout 1 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "nothing accepts on $2:$3 from $1 within $4 s"
}

# bench_md_table ROWS...: rows are "label|min|median|max|goal" → a markdown table.
md_table() {
  echo "| figure | min | median | max | goal |"
  echo "|---|---|---|---|---|"
  local r
  for r in "$@"; do echo "| ${r//|/ | } |"; done
}

# bench_machine PATH...: what every bench records. Sets BENCH_COMMIT (HEAD, marked when PATHs have
# uncommitted changes), BENCH_CPU (model name) and BENCH_LOAD0 (load average now).
# bench_machine_line: the closing "Machine:" sentence of a bench's section (load at start and end).
bench_machine() {
  BENCH_COMMIT=$(git -C "$BENCH_REPO" rev-parse --short HEAD)
  git -C "$BENCH_REPO" diff --quiet HEAD -- "$@" || BENCH_COMMIT+=" (with uncommitted changes)"
  BENCH_CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  BENCH_LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
}
bench_machine_line() {
  printf 'Machine: %s × %s; commit %s; load average %s at the start, %s at the end (a shared machine:\nabsolute times are noise, read the ratios).\n' \
    "$(nproc)" "$BENCH_CPU" "$BENCH_COMMIT" "$BENCH_LOAD0" "$(cut -d' ' -f1-3 /proc/loadavg)"
}
