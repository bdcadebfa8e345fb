#!/usr/bin/env bash
# Bench "nat": the data path node → pod IP → net-setup's DNAT → the VM's address, against the same
# endpoint reached by a plain route without NAT, in the same namespaces, alternating, same run.
#
# Figures (out/bench/nat.{md,tsv}):
#   iperf3 TCP throughput, NAT / plain route                     goal >= 0.9
#   iperf3 UDP achieved rate at a fixed offered rate, NAT / plain goal >= 0.9 (loss in the table)
#   added round trip (TCP connect + 1 byte), NAT − plain, / 20 µs goal < 1
#   1-byte ping-pong on one connection, NAT / plain              (shown, no goal)
# BENCH_RUNS (7) pairs; BENCH_SECONDS (3) per iperf3 run; BENCH_UDP_RATE (100M). Every wait is bounded.
set -euo pipefail
# shellcheck source=ci/bench/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"
bench_init nat
bench_machine netsetup
RUNS=${BENCH_RUNS:-7}
SECS=${BENCH_SECONDS:-3}
UDP_RATE=${BENCH_UDP_RATE:-100M}
CONNS=${BENCH_RTT_CONNS:-2000}
PINGS=${BENCH_RTT_PINGS:-5000}
[[ $(id -u) == 0 ]] || fail "run as root (network namespaces)"
command -v iperf3 >/dev/null || fail "iperf3 missing (ci/install-deps.sh)"
build_rtt

pod_netns
pod_files
net_setup "$WORK/run" >"$WORK/net-setup.log" 2>&1 || { cat "$WORK/net-setup.log" >&2; fail "net-setup failed"; }
vm_netns
# The baseline route: the node reaches VM_IP straight through the pod (which forwards: net-setup set
# ip_forward), no DNAT (Berth's DNAT matches only the pod IP). Replies take the same way back as the
# NAT path's (VM → br0 → pod's default route → node). Same veths, bridge, conntrack and chains.
ip -n "$NODE_NS" route add "$VM_IP/32" via "$POD_IP" dev "$NODE_IF" onlink src "$NODE_IP"

in_node() { ip netns exec "$NODE_NS" "$@"; }
ip netns exec "$VM_NS" iperf3 -s -p 5201 >"$WORK/iperf3-server.log" 2>&1 &
BENCH_PIDS+=($!)
ip netns exec "$VM_NS" "$RTT" serve :7000 >"$WORK/rtt-server.log" 2>&1 &
BENCH_PIDS+=($!)
wait_tcp "$NODE_NS" "$POD_IP" 5201 10
wait_tcp "$NODE_NS" "$VM_IP" 5201 10
wait_tcp "$NODE_NS" "$POD_IP" 7000 10
# Prove the NAT path really is NAT: a connection to the pod IP shows up DNATed in the pod's conntrack.
in_node "$RTT" connect -n 1 -warmup 0 "$POD_IP:7000" >/dev/null
grep -q "dst=$POD_IP .* src=$VM_IP " <<<"$(ip netns exec "$POD_NS" conntrack -L -p tcp --dport 7000 --orig-dst "$POD_IP" 2>/dev/null)" ||
  fail "no DNAT entry for $POD_IP:7000 → $VM_IP in the pod's conntrack"

# jq-free JSON reads with python3 (stdlib only).
iperf_tcp() { # DEST → Mbit/s received
  in_node timeout $((SECS + 20)) iperf3 -c "$1" -p 5201 -t "$SECS" -O 1 -J >"$WORK/ip.json" || { cat "$WORK/ip.json" >&2; fail "iperf3 TCP to $1"; }
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["end"]; print("%.1f" % (e["sum_received"]["bits_per_second"]/1e6))' "$WORK/ip.json"
}
iperf_udp() { # DEST → "Mbit/s-received lost-percent"
  in_node timeout $((SECS + 20)) iperf3 -c "$1" -p 5201 -u -b "$UDP_RATE" -l 1350 -w 4M -t "$SECS" -J >"$WORK/ip.json" || { cat "$WORK/ip.json" >&2; fail "iperf3 UDP to $1"; }
  python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["end"]
s = e.get("sum_received") or e["sum"]
lost = e["sum"].get("lost_percent", s.get("lost_percent", 0))
print("%.1f %.3f" % (s["bits_per_second"] / 1e6, lost))' "$WORK/ip.json"
}
# rtt_pair MODE N: NAT and plain-route round trips alternating in one process (ci/bench/rtt), so a
# busy moment of the shared machine hits both alike; sets NAT_P50 and PLAIN_P50 (µs medians).
rtt_pair() {
  local out a=$POD_IP:7000 b=$VM_IP:7000
  ((run % 2)) || { a=$VM_IP:7000 b=$POD_IP:7000; }
  out=$(in_node timeout 300 "$RTT" "$1" -n "$2" "$a" "$b") || fail "rtt $1: $out"
  grep -q " fail=[1-9]" <<<"$out" && fail "rtt $1 lost round trips: $out"
  NAT_P50=$(awk -v a="addr=$POD_IP:7000" '$1 == a {sub("p50_us=", "", $6); print $6}' <<<"$out")
  PLAIN_P50=$(awk -v a="addr=$VM_IP:7000" '$1 == a {sub("p50_us=", "", $6); print $6}' <<<"$out")
  [[ -n $NAT_P50 && -n $PLAIN_P50 ]] || fail "rtt $1: unexpected output: $out"
}

measure() { # PATH_NAME DEST: iperf3 TCP and UDP, appended to the PATH_NAME arrays
  local p=$1 d=$2 u
  eval "${p}_tcp+=(\"$(iperf_tcp "$d")\")"
  u=$(iperf_udp "$d")
  eval "${p}_udp+=(\"${u% *}\") ${p}_loss+=(\"${u#* }\")"
}

nat_tcp=() nat_udp=() nat_loss=() nat_conn=() nat_ping=()
plain_tcp=() plain_udp=() plain_loss=() plain_conn=() plain_ping=()
r_tcp=() r_udp=() added=() r_ping=()
for ((run = 1; run <= RUNS; run++)); do
  if ((run % 2)); then measure nat "$POD_IP"; measure plain "$VM_IP"; else measure plain "$VM_IP"; measure nat "$POD_IP"; fi
  rtt_pair connect "$CONNS"
  nat_conn+=("$NAT_P50") plain_conn+=("$PLAIN_P50")
  rtt_pair pingpong "$PINGS"
  nat_ping+=("$NAT_P50") plain_ping+=("$PLAIN_P50")
  r_tcp+=("$(ratio "${nat_tcp[-1]}" "${plain_tcp[-1]}")")
  r_udp+=("$(ratio "${nat_udp[-1]}" "${plain_udp[-1]}")")
  added+=("$(calc "${nat_conn[-1]} - ${plain_conn[-1]}")")
  r_ping+=("$(ratio "${nat_ping[-1]}" "${plain_ping[-1]}")")
  log "run $run: TCP ${nat_tcp[-1]}/${plain_tcp[-1]} Mbit/s; UDP ${nat_udp[-1]}/${plain_udp[-1]} Mbit/s (loss ${nat_loss[-1]}/${plain_loss[-1]} %);" \
    "connect+1B p50 ${nat_conn[-1]}/${plain_conn[-1]} µs; ping-pong p50 ${nat_ping[-1]}/${plain_ping[-1]} µs (NAT/plain)"
done
# The DNAT entries prove the NAT path was taken all along; count them for the record.
dnat_entries=$(ip netns exec "$POD_NS" conntrack -L --orig-dst "$POD_IP" 2>/dev/null | grep -c "src=$VM_IP" || true)

read -r t1 t2 t3 < <(fstats 3 "${r_tcp[@]}")
read -r u1 u2 u3 < <(fstats 3 "${r_udp[@]}")
read -r a1 a2 a3 < <(fstats 1 "${added[@]}")
read -r p1 p2 p3 < <(fstats 3 "${r_ping[@]}")
{
  tsv_row "TCP throughput, NAT / plain route" "same endpoint by a plain route, no NAT" "$t1" "$t2" "$t3" ">= 0.9"
  tsv_row "UDP rate at $UDP_RATE offered, NAT / plain" "same endpoint by a plain route, no NAT" "$u1" "$u2" "$u3" ">= 0.9"
  tsv_row "added round trip (connect + 1 byte) / 20 µs" "goal: 20 µs added over the plain route" \
    "$(ratio "$a1" 20)" "$(ratio "$a2" 20)" "$(ratio "$a3" 20)" "< 1"
  tsv_row "1-byte ping-pong round trip, NAT / plain" "same endpoint by a plain route, no NAT" "$p1" "$p2" "$p3" ""
} >"$OUT/nat.tsv"

row() { # LABEL DIGITS GOAL V...
  local l=$1 d=$2 g=$3
  shift 3
  read -r x y z < <(fstats "$d" "$@")
  echo "$l|$x|$y|$z|$g"
}
cat >"$OUT/nat.md" <<EOF
## NAT data path: node → pod IP → VM, against a plain route

**What.** Three network namespaces: a "node", a Calico-shaped "pod" (eth0 = $POD_IP/32, MTU $POD_MTU,
default via 169.254.1.1 onlink; the node proxy-ARPs on its veth and routes the /32 to it) with the
real \`bin/net-setup\` applied (bridge, tap, Berth's iptables chains), and a "vm" namespace on the
pod's br0 through a veth, standing in for the guest ($VM_IP/30 via $VM_GW) so the guest's CPU is not
the bottleneck. Servers (iperf3, ci/bench/rtt) run in the vm namespace, clients in the node.

**NAT path:** node → $POD_IP (the pod IP) → net-setup's DNAT → $VM_IP. **Baseline (plain route):**
the same namespaces, the node routes $VM_IP/32 via the pod, which forwards it to br0 without any
address translation (Berth's DNAT matches only the pod IP). Both paths cross the same veths, bridge,
forwarding, connection tracking and filter/mangle chains, so the ratio isolates the NAT itself.
Checked: connections to the pod IP appear DNATed to $VM_IP in the pod's conntrack
($dnat_entries such entries at the end).

**How.** $RUNS runs, alternating which path goes first. Each: iperf3 TCP for ${SECS} s after 1 s of
slow start left out (received rate) and iperf3 UDP at $UDP_RATE offered, 1350-byte datagrams, 4 MiB socket buffers (so a receiver that
waits for a shared CPU does not overflow its buffer), ${SECS} s (received rate and loss),
on each path; then $CONNS × (TCP connect + 1 byte there and back + close) and $PINGS × 1-byte
ping-pong on one connection per path (ci/bench/rtt, Go), the two paths alternating round trip by
round trip in one process, so load on the shared machine hits both alike; medians per run. Added
round trip = NAT median − plain median (connect + 1 byte: the SYN, the data and the FIN all cross
the NAT).

$(md_table \
  "$(row 'TCP NAT (Mbit/s)' 1 '' "${nat_tcp[@]}")" \
  "$(row 'TCP plain route (Mbit/s)' 1 '' "${plain_tcp[@]}")" \
  "$(row '**TCP ratio NAT / plain**' 3 '≥ 0.9' "${r_tcp[@]}")" \
  "$(row "UDP NAT, $UDP_RATE offered (Mbit/s received)" 1 '' "${nat_udp[@]}")" \
  "$(row "UDP plain route, $UDP_RATE offered (Mbit/s received)" 1 '' "${plain_udp[@]}")" \
  "$(row 'UDP loss NAT (%)' 3 '' "${nat_loss[@]}")" \
  "$(row 'UDP loss plain route (%)' 3 '' "${plain_loss[@]}")" \
  "$(row '**UDP ratio NAT / plain**' 3 '≥ 0.9' "${r_udp[@]}")" \
  "$(row 'connect + 1 byte, NAT, median (µs)' 1 '' "${nat_conn[@]}")" \
  "$(row 'connect + 1 byte, plain route, median (µs)' 1 '' "${plain_conn[@]}")" \
  "$(row '**added round trip (µs)**' 1 '< 20' "${added[@]}")" \
  "$(row '1-byte ping-pong, NAT, median (µs)' 1 '' "${nat_ping[@]}")" \
  "$(row '1-byte ping-pong, plain route, median (µs)' 1 '' "${plain_ping[@]}")" \
  "$(row 'ping-pong ratio NAT / plain' 3 '' "${r_ping[@]}")")

Absolute rates and times on these shared machines are noise (veth throughput is CPU-bound and the
CPUs are shared); the ratios, measured back to back, are the result.

$(bench_machine_line)
EOF
log "wrote $OUT/nat.md and $OUT/nat.tsv"
cat "$OUT/nat.tsv"
