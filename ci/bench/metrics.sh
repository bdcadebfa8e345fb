#!/usr/bin/env bash
# Bench "metrics": what METRICS_PORT costs vmm. vmm runs as in a pod (the real bin/net-setup in a
# Calico-shaped pod netns, a blank qcow2 as the pet disk, ACCEL=tcg, 128 MiB, NO_VNC; QEMU boots
# no guest: SeaBIOS finds nothing to boot, so the figures are vmm's own) in three ways, alternating,
# BENCH_RUNS (3) times each:
#   main:  vmm built from METRICS_BASELINE (default 2e284c5: main just before the metrics were
#          merged; no metrics code linked in: the vmm before metrics),
#   off:   this vmm without METRICS_PORT,
#   on:    this vmm with METRICS_PORT=19100, scraped BENCH_SCRAPES (200) times from the node netns
#          (curl to the pod IP, one connection per scrape, as Prometheus' first scrape of a target).
# After BENCH_IDLE (10) s idle (and, for "on", after the scrapes and again BENCH_IDLE s): VmRSS
# and RssAnon of vmm (/proc/<pid>/status); vmm's CPU time (utime + stime) over the scrapes / their
# number = vmm's CPU per scrape; vmm's CPU over an idle BENCH_IDLE s.
#
# Figures (out/bench/metrics.{md,tsv}):
#   vmm RSS, metrics on and scraped, − today's vmm (main) / 1 MiB                  goal < 1
#   vmm RSS, metrics on / off (the same binary)                                       shown
#   vmm CPU per scrape / 5 ms                                                         goal < 1
# Every wait is bounded.
set -euo pipefail
# shellcheck source=ci/bench/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"
bench_init metrics
bench_machine vmm common ci/bench/metrics.sh
RUNS=${BENCH_RUNS:-3}
SCRAPES=${BENCH_SCRAPES:-200}
IDLE=${BENCH_IDLE:-10}
PORT=19100
[[ $(id -u) == 0 ]] || fail "run as root (network namespaces)"
for c in qemu-img qemu-system-x86_64 curl setpriv; do command -v "$c" >/dev/null || fail "$c missing"; done
VMM=$(bench_bin vmm)
bench_bin net-setup >/dev/null

# The vmm before metrics: main just before they were merged (a commit, not the branch: main holds
# the metrics now), its vmm and common built the way `make build` builds.
BASELINE=${METRICS_BASELINE:-2e284c5c139ab5eac2cd7527753f89919d74e5a0}
BASE=$WORK/main
mkdir -p "$BASE"
git -C "$BENCH_REPO" archive "$BASELINE" vmm common | tar -x -C "$BASE"
(cd "$BASE/vmm" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BASE/bin/vmm" ./cmd/vmm) || fail "build main's vmm"
log "load at start: $BENCH_LOAD0"

pod_netns
pod_files
RUN=$WORK/run DISK=$WORK/disk IMAGES=$WORK/images
mkdir -p "$RUN" "$DISK" "$IMAGES"
ip netns exec "$POD_NS" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VM_NAME=bench BERTH_RUN_DIR="$RUN" \
  RESOLV_CONF="$WORK/config/resolv.conf" TAP_UID=65534 TAP_GID=65534 METRICS_PORT=$PORT \
  TERMINATION_LOG="$RUN/termination-log" "$(bench_bin net-setup)" >"$WORK/net-setup.log" 2>&1 || {
  tail -20 "$WORK/net-setup.log" >&2
  fail "net-setup with METRICS_PORT=$PORT"
}
qemu-img create -q -f qcow2 "$DISK/bench.qcow2" 64M
truncate -s 64K "$RUN/seed.iso"
chown -R 65534:65534 "$RUN" "$DISK" "$IMAGES"

# kib PID FIELD: a field of /proc/PID/status in KiB.
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
# ticks PID: utime + stime of PID in clock ticks.
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

VMM_PID='' QEMU_PID=''
stop_vmm() {
  [[ -n $VMM_PID ]] || return 0
  kill -9 "$VMM_PID" 2>/dev/null || true # QEMU dies with it (PR_SET_PDEATHSIG)
  wait "$VMM_PID" 2>/dev/null || true
  VMM_PID=''
  local i
  for ((i = 0; i < 50; i++)); do
    if [[ -z $QEMU_PID ]] || ! kill -0 "$QEMU_PID" 2>/dev/null; then
      QEMU_PID=''
      return 0
    fi
    sleep 0.1
  done
  fail "QEMU ($QEMU_PID) outlived vmm"
}
trap 'stop_vmm; bench_cleanup' EXIT

# start_vmm BINARY EXTRA_ENV...: vmm as the pod runs it, in the background; waits until QEMU runs.
start_vmm() {
  local bin=$1 i
  shift
  : >"$WORK/vmm.log"
  ip netns exec "$POD_NS" setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    VM_NAME=bench BERTH_RUN_DIR="$RUN" DISK_DIR="$DISK" IMAGE_DIR="$IMAGES" ACCEL=tcg VM_CPUS=1 VM_MEMORY=128Mi NO_VNC=true \
    SHUTDOWN_TIMEOUT=1 TERMINATION_LOG="$RUN/termination-log" "$@" "$bin" >"$WORK/vmm.log" 2>&1 &
  VMM_PID=$!
  for ((i = 0; i < 300; i++)); do
    if grep -F -e 'msg="QMP answers"' "$WORK/vmm.log" >/dev/null; then
      # setpriv and env exec: $VMM_PID is vmm itself.
      [[ $(cat "/proc/$VMM_PID/comm") == vmm ]] || fail "pid $VMM_PID is $(cat "/proc/$VMM_PID/comm"), not vmm"
      QEMU_PID=$(pgrep -P "$VMM_PID" || true)
      QEMU_PID=${QEMU_PID%%$'\n'*}
      return 0
    fi
    kill -0 "$VMM_PID" 2>/dev/null || {
      tail -20 "$WORK/vmm.log" >&2
      fail "vmm exited"
    }
    sleep 0.1
  done
  tail -20 "$WORK/vmm.log" >&2
  fail "QEMU did not answer QMP within 30 s"
}

scrape() { ip netns exec "$NODE_NS" curl -sf --max-time 5 -o "$1" "http://$POD_IP:$PORT/metrics"; }

main_rss=() main_anon=() main_idle=() off_rss=() off_anon=() off_idle=() on_rss=() on_anon=() on_idle=() scrape_ms=() added=() onoff=()
for ((run = 1; run <= RUNS; run++)); do
  for v in main off on; do
    case $v in
    main) start_vmm "$BASE/bin/vmm" ;;
    off) start_vmm "$VMM" ;;
    on) start_vmm "$VMM" METRICS_PORT=$PORT ;;
    esac
    sleep "$IDLE"
    if [[ $v == on ]]; then
      scrape "$WORK/first.prom" || fail "the first scrape failed (vmm log: $WORK/vmm.log)"
      t0=$(ticks "$VMM_PID")
      for ((i = 0; i < SCRAPES; i++)); do scrape /dev/null || fail "scrape $i failed"; done
      t1=$(ticks "$VMM_PID")
      scrape_ms+=("$(calc "($t1 - $t0) * 1000 / $TCK / $SCRAPES")")
      sleep "$IDLE"
    fi
    t0=$(ticks "$VMM_PID")
    sleep "$IDLE"
    t1=$(ticks "$VMM_PID")
    eval "${v}_rss+=(\"$(kib "$VMM_PID" VmRSS)\") ${v}_anon+=(\"$(kib "$VMM_PID" RssAnon)\") ${v}_idle+=(\"$(calc "($t1 - $t0) * 1000 / $TCK / $IDLE")\")"
    stop_vmm
  done
  added+=("$(calc "(${on_rss[-1]} - ${main_rss[-1]}) / 1024")")
  onoff+=("$(ratio "${on_rss[-1]}" "${off_rss[-1]}")")
  log "run $run: VmRSS KiB main ${main_rss[-1]} (anon ${main_anon[-1]}), off ${off_rss[-1]} (anon ${off_anon[-1]}), on ${on_rss[-1]} (anon ${on_anon[-1]});" \
    "CPU per scrape ${scrape_ms[-1]} ms; idle CPU ms/s main ${main_idle[-1]} off ${off_idle[-1]} on ${on_idle[-1]}; load $(cut -d' ' -f1-3 /proc/loadavg)"
done
series=$(grep -c '^berth_' "$WORK/first.prom" || true)
size_main=$(stat -c %s "$BASE/bin/vmm") size_this=$(stat -c %s "$VMM")

{
  read -r a b c < <(fstats 3 "${added[@]}")
  tsv_row "vmm RSS, metrics on and scraped, − today's vmm (main) / 1 MiB" "goal: 1 MiB added" "$a" "$b" "$c" "< 1"
  read -r a b c < <(fstats 3 "${onoff[@]}")
  tsv_row "vmm RSS, metrics on / off (the same binary)" "this vmm without METRICS_PORT" "$a" "$b" "$c" ""
  r=()
  for s in "${scrape_ms[@]}"; do r+=("$(ratio "$s" 5)"); done
  read -r a b c < <(fstats 3 "${r[@]}")
  tsv_row "vmm CPU per scrape / 5 ms" "goal: 5 ms" "$a" "$b" "$c" "< 1"
} >"$OUT/metrics.tsv"

row() { # LABEL DIGITS V...
  local l=$1 d=$2
  shift 2
  read -r x y z < <(fstats "$d" "$@")
  echo "$l|$x|$y|$z|"
}
mibs() { local v; for v in "$@"; do awk -v k="$v" 'BEGIN { printf "%.2f\n", k / 1024 }'; done; }
m() { mapfile -t M < <(mibs "$@"); }
{
  cat <<EOF
## Metrics: what METRICS_PORT costs vmm

What METRICS_PORT costs vmm (ci/bench/metrics.sh). vmm runs as in a pod (the real net-setup in a
Calico-shaped pod netns with METRICS_PORT=$PORT, a blank qcow2, ACCEL=tcg, 128 MiB, NO_VNC; QEMU
boots no guest, so the figures are vmm's own) three ways, alternating, $RUNS runs each: **main**
(vmm of commit ${BASELINE:0:7}, main just before the metrics were merged: no metrics code), **off** (this vmm, no METRICS_PORT),
**on** (METRICS_PORT=$PORT, scraped $SCRAPES times from the node netns with curl, one connection
each). RSS after ${IDLE} s idle (on: after the scrapes and ${IDLE} s more). A scrape is $series series.

Where the RSS goes: vmm writes the text format itself (vmm/promtext) and answers the scrape with
a small HTTP/1.1 server of its own (vmm/plainhttp), so neither Prometheus' client library nor
\`net/http\` is linked in (with them the binary was 9.1 MiB and VmRSS +6.1 MiB, most of it the
kernel mapping a bigger binary's pages): the binary is $(mibs "$((size_this / 1024))") MiB against main's $(mibs "$((size_main / 1024))") MiB. What is
left is RssAnon: the heap of a scrape's garbage (about 50 KiB) and what the Go runtime keeps for
its collections. vmm collects after each answer with one P (GOMAXPROCS=1 while serving metrics,
vmm/vmm/metrics.go): without that the heap grows to the runtime's 4 MiB minimum goal and stays
(+1.5 MiB), and with a P per core each collection cost 4.5 ms of CPU.

EOF
  m "${main_rss[@]}"
  md_table "$(row 'VmRSS main (MiB)' 2 "${M[@]}")" \
    "$(m "${off_rss[@]}"; row 'VmRSS off (MiB)' 2 "${M[@]}")" \
    "$(m "${on_rss[@]}"; row 'VmRSS on, scraped (MiB)' 2 "${M[@]}")" \
    "$(m "${main_anon[@]}"; row 'RssAnon main (MiB)' 2 "${M[@]}")" \
    "$(m "${off_anon[@]}"; row 'RssAnon off (MiB)' 2 "${M[@]}")" \
    "$(m "${on_anon[@]}"; row 'RssAnon on, scraped (MiB)' 2 "${M[@]}")" \
    "$(row '**RSS added: on − main (MiB)**' 2 "${added[@]}")" \
    "$(row '**vmm CPU per scrape (ms)**' 2 "${scrape_ms[@]}")" \
    "$(row 'vmm CPU idle, main (ms/s)' 2 "${main_idle[@]}")" \
    "$(row 'vmm CPU idle, off (ms/s)' 2 "${off_idle[@]}")" \
    "$(row 'vmm CPU idle, on (ms/s)' 2 "${on_idle[@]}")"
  echo
  bench_machine_line
} >"$OUT/metrics.md"
cat "$OUT/metrics.md"
