#!/usr/bin/env bash
# Bench "conntrack": 10,000 short TCP connections from the node through net-setup's NAT to the
# endpoint in the "vm" netns (the namespaces of nat.sh), none may fail; against the same 10,000 to
# the same endpoint by a plain route without NAT, alternating, same run.
#
# Figures (out/bench/conntrack.{md,tsv}):
#   successful connections / attempted, through the NAT           goal 1.0
#   conntrack drop + early_drop + insert_failed in the pod / attempts goal 0
#   wall time of the 10,000 through the NAT / by the plain route   (shown, no goal)
# BENCH_RUNS (3) pairs; BENCH_CONNS (10000); BENCH_CONC (8) concurrent clients. Bounded waits.
set -euo pipefail
# shellcheck source=ci/bench/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"
bench_init conntrack
bench_machine netsetup
RUNS=${BENCH_RUNS:-3}
CONNS=${BENCH_CONNS:-10000}
CONC=${BENCH_CONC:-8}
[[ $(id -u) == 0 ]] || fail "run as root (network namespaces)"
command -v conntrack >/dev/null || fail "conntrack missing (ci/install-deps.sh)"
build_rtt

pod_netns
pod_files
net_setup "$WORK/run" >"$WORK/net-setup.log" 2>&1 || { cat "$WORK/net-setup.log" >&2; fail "net-setup failed"; }
vm_netns
ip -n "$NODE_NS" route add "$VM_IP/32" via "$POD_IP" dev "$NODE_IF" onlink src "$NODE_IP" # the plain route (nat.sh)
# The client (node netns, ours) closes first and keeps TIME_WAIT: give it the whole port range so
# RUNS × CONNS connections to one address fit.
ip netns exec "$NODE_NS" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
ip netns exec "$VM_NS" "$RTT" serve :7000 >"$WORK/rtt-server.log" 2>&1 &
BENCH_PIDS+=($!)
wait_tcp "$NODE_NS" "$POD_IP" 7000 10
wait_tcp "$NODE_NS" "$VM_IP" 7000 10

# ct_bad: drop + early_drop + insert_failed summed over CPUs in the pod netns (conntrack -S).
ct_bad() {
  ip netns exec "$POD_NS" conntrack -S | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^(drop|early_drop|insert_failed)=/) {split($i, a, "="); s += a[2]}} END {print s + 0}'
}
ct_count() { ip netns exec "$POD_NS" conntrack -C; }

burst() { # DEST → the rtt summary line
  ip netns exec "$NODE_NS" timeout 600 "$RTT" connect -n "$CONNS" -c "$CONC" -warmup 0 -timeout 5s "$1:7000" 2>>"$WORK/errors.log" ||
    fail "rtt connect to $1 did not finish"
}
field() { sed -E "s/.* $1=([0-9.]+).*/\\1/" <<<"$2"; }

ok=() bad=() t_nat=() t_plain=() r_time=() p99_nat=() max_nat=() entries=()
nat_burst() {
  local b0 c0 l
  b0=$(ct_bad)
  c0=$(ct_count)
  l=$(burst "$POD_IP")
  ok+=("$(ratio "$(field ok "$l")" "$CONNS" 5)")
  bad+=("$(ratio $(($(ct_bad) - b0)) "$CONNS" 5)")
  entries+=($(($(ct_count) - c0)))
  t_nat+=("$(field wall_ms "$l")")
  p99_nat+=("$(field p99_us "$l")")
  max_nat+=("$(field max_us "$l")")
  log "NAT: $l; conntrack drops/insert_failed +$(($(ct_bad) - b0)), entries +${entries[-1]}"
}
plain_burst() {
  local l
  l=$(burst "$VM_IP")
  [[ $(field fail "$l") == 0 ]] || log "plain route lost connections too: $l"
  t_plain+=("$(field wall_ms "$l")")
  log "plain: $l"
}
for ((run = 1; run <= RUNS; run++)); do
  if ((run % 2)); then nat_burst; plain_burst; else plain_burst; nat_burst; fi
  r_time+=("$(ratio "${t_nat[-1]}" "${t_plain[-1]}")")
done
max_ct=$(cat /proc/sys/net/netfilter/nf_conntrack_max 2>/dev/null || echo '?')

read -r o1 o2 o3 < <(fstats 5 "${ok[@]}")
read -r d1 d2 d3 < <(fstats 5 "${bad[@]}")
read -r r1 r2 r3 < <(fstats 3 "${r_time[@]}")
{
  tsv_row "$CONNS short TCP connections through the NAT: succeeded / attempted" "the attempts" "$o1" "$o2" "$o3" "1.0"
  tsv_row "conntrack drops + insert_failed in the pod / attempts" "the attempts" "$d1" "$d2" "$d3" "0"
  tsv_row "$CONNS connections: wall time NAT / plain route" "same endpoint by a plain route, no NAT" "$r1" "$r2" "$r3" ""
} >"$OUT/conntrack.tsv"

row() { # LABEL DIGITS GOAL V...
  local l=$1 d=$2 g=$3
  shift 3
  read -r x y z < <(fstats "$d" "$@")
  echo "$l|$x|$y|$z|$g"
}
cat >"$OUT/conntrack.md" <<EOF
## Connection tracking: $CONNS short TCP connections through the NAT

**What.** The namespaces of the NAT bench (node, Calico-shaped pod with the real net-setup, a vm
netns on br0). $CONNS TCP connections from the node to the pod IP ($CONC at a time), each: connect
(through net-setup's DNAT), 1 byte there and back, close (the client closes first, a normal FIN; each
connection leaves a TIME_WAIT entry in the pod's conntrack table). Baseline: the same $CONNS to the
same endpoint by the plain route without NAT (see the NAT bench), alternating, $RUNS pairs. The
connection-tracking table is not flushed between runs: it holds up to $((RUNS * CONNS * 2)) entries
at the end (nf_conntrack_max here: $max_ct).

**Counted.** Successes reported by the client (ci/bench/rtt; a dial or round trip that fails or takes
more than 5 s counts as a failure), and the pod's \`conntrack -S\` counters drop, early_drop and
insert_failed, before and after each NAT burst.

$(md_table \
  "$(row '**succeeded / attempted, NAT**' 5 '1.0' "${ok[@]}")" \
  "$(row '**conntrack drop + early_drop + insert_failed / attempts**' 5 '0' "${bad[@]}")" \
  "$(row "growth of the pod's conntrack table per NAT burst (new entries − expired ones)" 0 '' "${entries[@]}")" \
  "$(row 'p99 connect + 1 byte, NAT (µs)' 1 '' "${p99_nat[@]}")" \
  "$(row 'slowest connection, NAT (µs; ≥ 1 s would be a retransmitted SYN)' 1 '' "${max_nat[@]}")" \
  "$(row "wall time of $CONNS, NAT (ms)" 0 '' "${t_nat[@]}")" \
  "$(row "wall time of $CONNS, plain route (ms)" 0 '' "${t_plain[@]}")" \
  "$(row 'wall time ratio NAT / plain' 3 '' "${r_time[@]}")")

Client errors: $( [[ -s $WORK/errors.log ]] && head -3 "$WORK/errors.log" | tr '\n' ' ' || echo none).

$(bench_machine_line)
EOF
log "wrote $OUT/conntrack.md and $OUT/conntrack.tsv"
cat "$OUT/conntrack.tsv"
