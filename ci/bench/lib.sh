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

bench_cleanup() {
  set +e
  local ns pids p
  for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for ns in "${BENCH_NS[@]}"; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [[ -n $pids ]] && kill $pids 2>/dev/null
  done
  for _ in $(seq 30); do
    pids=$(for ns in "${BENCH_NS[@]}"; do ip netns pids "$ns" 2>/dev/null; done)
    [[ -z $pids ]] && break
    sleep 0.1
  done
  [[ -n $pids ]] && kill -9 $pids 2>/dev/null
  for ns in "${BENCH_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  [[ -n ${WORK:-} && -d $WORK && ${KEEP_WORK:-0} != 1 ]] && rm -rf "$WORK"
  return 0
}

# ---------------------------------------------------------------- a Calico-shaped pod with net-setup

POD_IP=${POD_IP:-10.244.7.5}
NODE_IP=${NODE_IP:-10.244.0.1}
POD_MTU=${POD_MTU:-1450}
VM_IP=192.168.254.2
VM_GW=192.168.254.1

# pod_netns: a "node" and a Calico-shaped "pod" netns (as ci/local-pod.sh and netsetup/e2e):
#   node: NODE_IP on lo, an uplink veth holding the default route (so proxy ARP answers for
#     169.254.1.1), ip_forward, proxy_arp on the pod's veth, a /32 route to the pod IP.
#   pod: eth0 = POD_IP/32, MTU POD_MTU, default via 169.254.1.1 onlink.
# Sets NODE_NS, POD_NS (registered for cleanup).
pod_netns() {
  local id
  id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
  NODE_NS=bbnode-$id POD_NS=bbpod-$id
  ip netns add "$NODE_NS" && BENCH_NS+=("$NODE_NS")
  ip netns add "$POD_NS" && BENCH_NS+=("$POD_NS")
  ip -n "$NODE_NS" link set lo up
  ip -n "$POD_NS" link set lo up
  ip -n "$NODE_NS" addr add "$NODE_IP/32" dev lo
  ip -n "$NODE_NS" link add uplink type veth peer name uplink-peer
  ip -n "$NODE_NS" addr add 10.255.255.1/30 dev uplink
  ip -n "$NODE_NS" link set uplink up
  ip -n "$NODE_NS" link set uplink-peer up
  ip -n "$NODE_NS" route add default via 10.255.255.2
  ip netns exec "$NODE_NS" sysctl -qw net.ipv4.ip_forward=1
  ip -n "$NODE_NS" link add calipod0 mtu "$POD_MTU" type veth peer name eth0 mtu "$POD_MTU" netns "$POD_NS"
  ip netns exec "$NODE_NS" sysctl -qw net.ipv4.conf.calipod0.proxy_arp=1 net.ipv4.neigh.calipod0.proxy_delay=0
  ip -n "$NODE_NS" link set calipod0 up
  ip -n "$NODE_NS" route add "$POD_IP/32" dev calipod0 scope link src "$NODE_IP"
  ip -n "$POD_NS" addr add "$POD_IP/32" dev eth0
  ip -n "$POD_NS" link set eth0 up
  ip -n "$POD_NS" route add 169.254.1.1 dev eth0 scope link
  ip -n "$POD_NS" route add default via 169.254.1.1 dev eth0 onlink
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
  VM_NS=bbvm-${NODE_NS#bbnode-}
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
