#!/usr/bin/env bash
# Bench "density": N test-guest VMs (256 MiB, 1 vCPU, TCG) in ONE helm release (what a user of the
# chart does: one release, many vms.<name>), installed at once on the local single-node cluster
# (ci/cluster/up), for N in BENCH_DENSITY_N (default "1 4 8 16"); in the same run, per N, the
# baseline: N plain QEMU boots of the same guest started at once (ci/testguest/qemu-user.sh,
# VM_CPUS=1 VM_MEMORY_MIB=256, in parallel), the TCG CPU work itself. Order alternates per N.
#
# Per N: time from `helm install` until every VM pod is Ready (the vm container's readiness: the
# guest accepts on TCP 22; the Ready conditions' lastTransitionTime) against the time until every
# plain QEMU answers `ssh true`; memory beyond guest RAM per VM once all are Ready (the pod's memory
# cgroup: usage − 256 MiB, and usage − page cache − QEMU's resident guest-RAM mapping); the node's
# memory (MemTotal − MemAvailable) before and after; failures (a pod not Ready within the bound, or
# any container restart); image downloads (GETs of the guest in the file server pod's log: the node's
# image cache, emptied before each N, must make it 1 for N VMs).
#
# Figures (out/bench/density.{md,tsv}, contract in ci/bench/run.sh):
#   N VMs at once: time to all Ready / time to all SSH of N plain QEMU     per N, shown (the goal is
#                                                                           that it does not grow with N)
#   per-VM memory beyond guest RAM at N / at N=1                           per N > 1, goal <= 1.1
#   N VMs: QEMU CPU time to Ready, all VMs / plain QEMUs' to SSH           per N, shown (the same guest
#   N VMs: node CPU time until all Ready / until all plain SSH             work, and where the rest goes)
#   failures / VMs started (all N)                                         goal 0
#   image downloads per install                                            goal 1.0
# Stops increasing N (and says so) when MemAvailable would fall under 2 GiB (N × the pod's memory
# limit, 544 MiB). Every wait is bounded (all Ready, and all plain SSH: BENCH_DENSITY_READY_TIMEOUT,
# default 300 + 120 × N s: on 2 cores 8 plain boots at once took 612 s). The cluster is brought up
# when it is not running, and then taken down again at the end (BENCH_DENSITY_KEEP_CLUSTER=1 keeps
# it); the release, its namespace and its image cache always go. Root. Never asserts timings.
set -euo pipefail
# shellcheck source=ci/bench/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"
# shellcheck source=ci/cluster/lib.sh
source "$BENCH_REPO/ci/cluster/lib.sh"
bench_init density
[[ $(id -u) == 0 ]] || fail "run as root (the cluster, its cgroups)"
read -r -a NS_LIST <<<"${BENCH_DENSITY_N:-1 4 8 16}"
GUEST_MIB=256
POD_LIMIT_MIB=544 # the pod's memory limit: vm 256 MiB + the default memoryOverhead 256Mi, dnsmasq 32Mi
FLOOR_MIB=2048    # MemAvailable never planned below this
NS=berth-bench-density
REL=density
CACHE=$CLUSTER_DIR/density-image-cache
unset KUBECONFIG # the local cluster, always

bench_machine chart init vmm netsetup common images
load1() { cut -d' ' -f1 /proc/loadavg; }
mem_kib() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
node_used_mib() { awk '/^MemTotal:/ { t = $2 } /^MemAvailable:/ { a = $2 } END { printf "%d", (t - a) / 1024 }' /proc/meminfo; }
mib_of_kib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

cluster_lock # the whole run: nobody else's up, down or test in between
was_up=0
alive kube-apiserver && alive kubelet && was_up=1
PLAIN_PGIDS=() # the plain QEMU boots' process groups while they run

cleanup() {
  set +e
  local p
  for p in "${PLAIN_PGIDS[@]}"; do plain_stop "$p"; done
  if [[ -S $CONTAINERD_SOCK && -n ${HELM:-} ]]; then
    timeout 300 "$HELM" --kubeconfig "$KUBECONFIG_ADMIN" -n "$NS" uninstall "$REL" --wait >/dev/null 2>&1
    timeout 180 "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" delete namespace "$NS" --ignore-not-found --wait=true >/dev/null 2>&1
  fi
  rm -rf "$CACHE"
  if ((was_up == 0)) && [[ ${BENCH_DENSITY_KEEP_CLUSTER:-0} != 1 ]]; then
    "$BENCH_REPO/ci/cluster/down" >/dev/null 2>&1 || log "ci/cluster/down failed"
  fi
  bench_cleanup
}
trap cleanup EXIT

# --- what the bench needs (built or reused before any timing) -----------------------------------
HELM=$("$BENCH_REPO/ci/tools/helm.sh" | tail -1)
GUEST=$("$BENCH_REPO/ci/testguest/build.sh" | tail -1)
[[ -f $GUEST ]] || fail "ci/testguest/build.sh printed '$GUEST', not a file"
# The guest's own virtual size as the pet disk's: no growpart + resize2fs in Berth's guests, which
# plain QEMU (an overlay of the image's size) never does (the boot bench's reasoning).
DISK_MIB=$(($(qemu-img info --output=json "$GUEST" | jq '.["virtual-size"]') / 1048576))
log "make images"
make -C "$BENCH_REPO" --no-print-directory images >"$WORK/make-images.log" 2>&1 ||
  fail "make images failed: $(tail -5 "$WORK/make-images.log")"
"$BENCH_REPO/ci/cluster/up" >/dev/null # loads out/images/*.oci.tar into containerd
TOOLBOX=$("$BENCH_REPO/ci/e2e/toolbox-image.sh" | tail -1)
kc delete namespace "$NS" --ignore-not-found --wait=true --timeout=180s >/dev/null
kc create namespace "$NS" >/dev/null
wait_for 30 "service account in $NS" kc -n "$NS" get serviceaccount default || fail "no default service account in $NS"
URL=$(serve_dir_pod "$NS" images "$(dirname "$GUEST")" "$TOOLBOX") || fail "the image server pod is not Ready"
IMG_PATH=/$(basename "$GUEST")
URL+=$IMG_PATH
ssh-keygen -q -t ed25519 -N '' -C berth-density -f "$WORK/id" </dev/null
downloads_so_far() { kc -n "$NS" logs images 2>/dev/null | grep -c -- "method=GET path=$IMG_PATH " || true; }

# values_for N: one release, N VMs vm01..vmNN; everything shared in vmDefaults.
values_for() {
  cat <<EOF
vmDefaults:
  image: {source: "$URL", target: berth-testguest.qcow2}
  cpus: 1
  memory: ${GUEST_MIB}Mi
  accel: tcg
  diskSize: ${DISK_MIB}Mi
  class_name: berth-csi
  imageCache: {mode: hostPath, hostPath: "$CACHE"}
  shutdownTimeout: 10
  sshAuthorizedKeys: ["$(cat "$WORK/id.pub")"]
vms:
EOF
  local i
  for ((i = 1; i <= $1; i++)); do printf '  vm%02d: {}\n' "$i"; done
}

# pods_json: the release's VM pods.
pods_json() { kc -n "$NS" get pods -l "app.kubernetes.io/instance=$REL,app.kubernetes.io/component=vm" -o json; }
ready_count() { jq '[.items[] | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))] | length'; }

# pod_cgroup UID: the pod's memory cgroup directory (the kubelet's cgroupfs layout).
pod_cgroup() {
  find "$CG_ROOT/kubepods" -maxdepth 2 -type d \( -name "pod$1" -o -name "pod${1//-/_}" \) -print -quit 2>/dev/null
}
# cgroup_qemu CG: the pid of the qemu-system process in CG or below it (nothing when there is none).
cgroup_qemu() {
  local f p
  while read -r f; do
    while read -r p; do
      if [[ $(cat "/proc/$p/comm" 2>/dev/null) == qemu-system* ]]; then
        echo "$p"
        return 0
      fi
    done <"$f"
  done < <(find "$1" -name cgroup.procs)
  return 0
}

# note_ready_cpu JSON: for each VM pod in JSON that is Ready and not yet noted, its QEMU's CPU time
# and its pod cgroup's (stages, vmm, dnsmasq, the probes' execs and QEMU) now, into B_QCPU and B_PCPU.
# Read when the poll first sees the pod Ready: up to a poll (5 s) after its Ready transition.
note_ready_cpu() {
  local p uid cg q
  while read -r p uid; do
    [[ -n ${B_QCPU[$p]:-} ]] && continue
    cg=$(pod_cgroup "$uid") q=''
    [[ -n $cg ]] && q=$(cgroup_qemu "$cg")
    [[ -n $q ]] || { log "pod $p is Ready but its QEMU was not found (cgroup '$cg')"; continue; }
    B_QCPU[$p]=$(proc_cpu_s "$q") B_PCPU[$p]=$(cg_cpu_s "$cg")
  done < <(jq -r '.items[] | select(any(.status.conditions[]?; .type == "Ready" and .status == "True")) | "\(.metadata.name) \(.metadata.uid)"' <<<"$1")
}

# berth_run N: install N VMs at once, wait (bounded) until all are Ready, measure, uninstall.
# Sets B_READY_S, B_FAIL, B_DOWNLOADS, B_USED0, B_USED1, B_POD_USAGE (KiB list), B_POD_OWN (KiB list),
# and CPU seconds from the install until the poll saw all Ready: B_NODE_CPU (the whole node),
# B_KUBEPODS_CPU (every pod's cgroup), B_QEMU_CPU (the VMs' QEMUs, each at its Ready), B_PODS_CPU (the
# VM pods' cgroups, each at its Ready).
declare -A B_QCPU B_PCPU
berth_run() {
  local n=$1 bound=$2 t0 json ready=0 p uid cg usage file g q nb0 kp0
  rm -rf "$CACHE" # an empty node cache: the first VM downloads, the others must wait for it
  values_for "$n" >"$WORK/values-$n.yaml"
  local gets0
  gets0=$(downloads_so_far)
  B_USED0=$(node_used_mib)
  B_QCPU=() B_PCPU=()
  nb0=$(node_busy_s) kp0=$(cg_cpu_s "$CG_ROOT/kubepods")
  t0=$(now_ms)
  timeout 300 "$HELM" --kubeconfig "$KUBECONFIG_ADMIN" -n "$NS" install "$REL" "$BENCH_REPO/chart" -f "$WORK/values-$n.yaml" >/dev/null ||
    fail "helm install of $n VMs"
  while :; do
    json=$(pods_json) && ready=$(ready_count <<<"$json") && note_ready_cpu "$json"
    ((ready >= n)) && break
    if (($(now_ms) - t0 > bound * 1000)); then
      log "N=$n: only $ready of $n VMs Ready after ${bound}s"
      kc -n "$NS" get pods -o wide >&2 || true
      break
    fi
    sleep 5 # the poll's own cost (kubectl, the API server) is CPU the VMs would use: not more often
  done
  B_NODE_CPU=$(calc "$(node_busy_s) - $nb0") B_KUBEPODS_CPU=$(calc "$(cg_cpu_s "$CG_ROOT/kubepods") - $kp0")
  B_QEMU_CPU=$(sum_of "${B_QCPU[@]}") B_PODS_CPU=$(sum_of "${B_PCPU[@]}")
  json=$(pods_json)
  # The time to all Ready: the latest Ready transition (the API server's clock: this machine's).
  local last
  last=$(jq -r '[.items[] | .status.conditions[]? | select(.type == "Ready" and .status == "True") | .lastTransitionTime] | max // empty' <<<"$json")
  if ((ready >= n)) && [[ -n $last ]]; then
    B_READY_S=$(calc "$(date -d "$last" +%s) - $t0 / 1000")
  else
    B_READY_S=nan
  fi
  # Failures: not Ready in the bound, or any restart of any container (init containers too).
  B_FAIL=$(jq --argjson n "$n" '($n - ([.items[] | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))] | length))
    + ([.items[] | select(([(.status.containerStatuses // [])[], (.status.initContainerStatuses // [])[] | .restartCount] | add // 0) > 0)] | length)' <<<"$json")
  B_USED1=$(node_used_mib)
  B_POD_USAGE=() B_POD_OWN=()
  while read -r p uid; do
    cg=$(pod_cgroup "$uid")
    [[ -n $cg ]] || { log "N=$n: no memory cgroup for pod $p ($uid)"; continue; }
    usage=$(cg_kib "$cg" usage) file=$(cg_stat_kib "$cg" file)
    q=$(cgroup_qemu "$cg")
    g=0
    [[ -n $q ]] && g=$(guest_ram_rss "$q" "$GUEST_MIB")
    ((g > 0)) || log "N=$n: pod $p: no QEMU guest-RAM mapping found (QEMU pid '${q}'): its figure without page cache counts the guest's RAM"
    B_POD_USAGE+=("$usage")
    # beyond guest RAM without page cache: what the pod holds besides the guest's resident RAM
    B_POD_OWN+=($((usage - file - g)))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$p" "$usage" "$file" "$g" "$((usage - file - g))" \
      "$(jq -r --arg p "$p" '.items[] | select(.metadata.name == $p) | .status.conditions[]? | select(.type == "Ready") | .lastTransitionTime' <<<"$json")" \
      >>"$OUT/density/pods.tsv"
  done < <(jq -r '.items[] | "\(.metadata.name) \(.metadata.uid)"' <<<"$json")
  B_DOWNLOADS=$(($(downloads_so_far) - gets0))
  local when="after ${B_READY_S}s"
  [[ $B_READY_S == nan ]] && when="not all within ${bound}s"
  log "N=$n Berth: all Ready $when, failures $B_FAIL, downloads $B_DOWNLOADS, node used ${B_USED0} -> ${B_USED1} MiB"
  log "N=$n Berth CPU s: node $B_NODE_CPU, all pods $B_KUBEPODS_CPU, VM pods $B_PODS_CPU, their QEMUs $B_QEMU_CPU"
  # Down again: the release, then its disks (the PVCs outlive a release by design).
  timeout 600 "$HELM" --kubeconfig "$KUBECONFIG_ADMIN" -n "$NS" uninstall "$REL" --wait --timeout 540s >/dev/null ||
    fail "helm uninstall of $n VMs"
  kc -n "$NS" delete pvc -l "app.kubernetes.io/instance=$REL" --wait=true --timeout=300s >/dev/null ||
    fail "deleting the release's PVCs"
  kc -n "$NS" wait --for=delete pod -l "app.kubernetes.io/instance=$REL,app.kubernetes.io/component=vm" --timeout=300s >/dev/null 2>&1 || true
}

# plain_stop PGID: end a plain boot's process group (qemu-user.sh with KEEP=1 leaves QEMU running
# in it) and remove its files (the work directory named by QEMU's disk).
plain_stop() {
  local pg=$1 pids p d i
  mapfile -t pids < <(pgrep -g "$pg" || true)
  for p in "${pids[@]}"; do
    d=$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | sed -n 's|^file=\(/tmp/berth-qemu-user\.[^/,]*\)/disk\.qcow2,.*|\1|p' | head -1)
    [[ -n $d ]] && echo "$d" >>"$WORK/plain-dirs"
  done
  kill -TERM -- "-$pg" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do pgrep -g "$pg" >/dev/null || break; sleep 0.2; done
  kill -KILL -- "-$pg" 2>/dev/null || true
}

# plain_run N: N plain QEMU boots at once; sets P_SSH_S (all answered), P_FAIL, and CPU seconds until
# the last answered: P_NODE_CPU (the whole node), P_QEMU_CPU (the QEMUs, each when its SSH answered).
plain_run() {
  local n=$1 bound=$2 t0 i pg e rc max=0 nb0 qcpu=()
  rm -f "$WORK"/plain-*
  nb0=$(node_busy_s)
  t0=$(now_ms)
  for ((i = 1; i <= n; i++)); do
    (
      # its own process group (setsid), so the QEMU it leaves running is ended with it
      setsid env KEEP=1 VM_CPUS=1 VM_MEMORY_MIB=$GUEST_MIB BOOT_TIMEOUT="$bound" \
        "$BENCH_REPO/ci/testguest/qemu-user.sh" "$GUEST" >"$WORK/plain-$i.out" 2>"$WORK/plain-$i.err" 8>&- &
      echo $! >"$WORK/plain-$i.pgid"
      rc=0
      wait $! || rc=$?
      echo "$rc $(now_ms)" >"$WORK/plain-$i.end"
    ) 8>&- &
  done
  for ((i = 1; i <= n; i++)); do
    for ((e = 0; e < 50; e++)); do [[ -s $WORK/plain-$i.pgid ]] && break; sleep 0.1; done
    PLAIN_PGIDS+=("$(cat "$WORK/plain-$i.pgid")")
  done
  wait
  P_NODE_CPU=$(calc "$(node_busy_s) - $nb0")
  P_FAIL=0
  for ((i = 1; i <= n; i++)); do
    read -r rc e <"$WORK/plain-$i.end"
    if ((rc != 0)); then
      P_FAIL=$((P_FAIL + 1))
      log "N=$n plain boot $i failed: $(tail -3 "$WORK/plain-$i.err" | tr '\n' ' ')"
    fi
    ((e > max)) && max=$e
    qcpu+=("$(sed -n 's/^qemu_cpu_seconds=//p' "$WORK/plain-$i.out")")
  done
  P_QEMU_CPU=$(sum_of "${qcpu[@]}")
  P_SSH_S=nan
  ((P_FAIL == 0)) && P_SSH_S=$(calc "($max - $t0) / 1000")
  for pg in "${PLAIN_PGIDS[@]}"; do plain_stop "$pg"; done
  PLAIN_PGIDS=()
  if [[ -f $WORK/plain-dirs ]]; then
    while read -r e; do rm -rf "$e"; done <"$WORK/plain-dirs"
    rm -f "$WORK/plain-dirs"
  fi
  local when="after ${P_SSH_S}s"
  [[ $P_SSH_S == nan ]] && when="not all within ${bound}s"
  log "N=$n plain QEMU: all answered SSH $when, failures $P_FAIL"
  log "N=$n plain CPU s: node $P_NODE_CPU, the QEMUs $P_QEMU_CPU"
}

# --- the runs ---------------------------------------------------------------------------------
mkdir -p "$OUT/density" # raw rows beside the bench's own density.{md,tsv}, which run.sh assembles
printf 'n\tpod\tcg_usage_kib\tcg_file_kib\tguest_ram_rss_kib\tbeyond_guest_no_cache_kib\tready_at\n' >"$OUT/density/pods.tsv"
rows=() stopped='' all_fail=0 all_vms=0 downloads=() idx=0
declare -A R_B R_P R_FAIL R_PFAIL R_DL R_U0 R_U1 R_USAGE R_OWN R_LOAD R_BOUND R_CPU
for n in "${NS_LIST[@]}"; do
  avail=$(($(mem_kib MemAvailable) / 1024))
  if ((avail - n * POD_LIMIT_MIB < FLOOR_MIB)); then
    stopped="N=$n not run: MemAvailable $avail MiB − $n × $POD_LIMIT_MIB MiB would fall under $FLOOR_MIB MiB"
    log "$stopped"
    break
  fi
  bound=${BENCH_DENSITY_READY_TIMEOUT:-$((300 + 120 * n))}
  R_LOAD[$n]=$(load1) R_BOUND[$n]=$bound
  if ((idx % 2 == 0)); then
    berth_run "$n" "$bound"
    plain_run "$n" "$bound"
  else
    plain_run "$n" "$bound"
    berth_run "$n" "$bound"
  fi
  idx=$((idx + 1))
  R_B[$n]=$B_READY_S R_P[$n]=$P_SSH_S R_FAIL[$n]=$B_FAIL R_PFAIL[$n]=$P_FAIL R_DL[$n]=$B_DOWNLOADS R_U0[$n]=$B_USED0 R_U1[$n]=$B_USED1
  R_CPU[$n]="$B_NODE_CPU $B_KUBEPODS_CPU $B_PODS_CPU $B_QEMU_CPU $P_NODE_CPU $P_QEMU_CPU"
  all_fail=$((all_fail + B_FAIL)) all_vms=$((all_vms + n))
  downloads+=("$B_DOWNLOADS")
  beyond=()
  for u in "${B_POD_USAGE[@]}"; do beyond+=($((u - GUEST_MIB * 1024))); done
  R_USAGE[$n]="nan nan nan" R_OWN[$n]="nan nan nan"
  ((${#beyond[@]})) && R_USAGE[$n]=$(stats "${beyond[@]}")
  ((${#B_POD_OWN[@]})) && R_OWN[$n]=$(stats "${B_POD_OWN[@]}")
  rows+=("$n")
done
((${#rows[@]})) || fail "no N was run${stopped:+ ($stopped)}"
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the figures -------------------------------------------------------------------------------
first=${rows[0]}
read -r _ own1 _ <<<"${R_OWN[$first]}"
ratio1=$(ratio "${R_B[$first]}" "${R_P[$first]}")
tsv=() md=() cpu_md=()
for n in "${rows[@]}"; do
  r=$(ratio "${R_B[$n]}" "${R_P[$n]}")
  [[ ${R_B[$n]} == nan || ${R_P[$n]} == nan ]] && r=nan
  # not all within the bound: no ratio (the failures row counts them; the table says so)
  [[ $r == nan ]] || tsv+=("$(tsv_row "N=$n VMs at once: time to all Ready / time to all SSH of $n plain QEMU" "$n plain QEMU boots started at once, same guest, 1 vCPU, 256 MiB" "$r" "$r" "$r" "")")
  read -r o_min o_med o_max <<<"${R_OWN[$n]}"
  read -r u_min u_med u_max <<<"${R_USAGE[$n]}"
  growth=$(ratio "$r" "$ratio1")
  [[ $r == nan || $ratio1 == nan ]] && growth=nan
  if [[ $n != "$first" ]]; then
    tsv+=("$(tsv_row "N=$n: per-VM memory beyond guest RAM (no page cache) / at N=$first" "the same figure at N=$first ($(mib_of_kib "$own1") MiB)" "$(ratio "$o_min" "$own1")" "$(ratio "$o_med" "$own1")" "$(ratio "$o_max" "$own1")" "<= 1.1")")
  fi
  b_cell=${R_B[$n]} p_cell=${R_P[$n]}
  [[ $b_cell == nan ]] && b_cell="not all in ${R_BOUND[$n]}"
  [[ $p_cell == nan ]] && p_cell="not all in ${R_BOUND[$n]}"
  [[ $r == nan ]] && r="—"
  [[ $growth == nan ]] && growth="—"
  read -r c_node c_pods c_vmpods c_qemu c_pnode c_pqemu <<<"${R_CPU[$n]}"
  r_qemu=$(ratio "$c_qemu" "$c_pqemu") r_node=$(ratio "$c_node" "$c_pnode") # one install per N: min = median = max
  tsv+=("$(tsv_row "N=$n: QEMU CPU time to Ready, all VMs / plain QEMUs' to SSH" "$n plain QEMU boots started at once (their CPU time when SSH answered)" "$r_qemu" "$r_qemu" "$r_qemu" "")")
  tsv+=("$(tsv_row "N=$n: node CPU time until all Ready / until all plain SSH" "the node's busy CPU time while $n plain QEMU boots ran" "$r_node" "$r_node" "$r_node" "")")
  cpu_md+=("| $n | $c_node | $c_pnode | $r_node | $c_qemu | $c_pqemu | $r_qemu | $(calc "($c_vmpods - $c_qemu) / $n") | $(calc "$c_pods - $c_vmpods") | $(calc "$c_node - $c_pods") | $(calc "$c_node - $c_qemu") / $(calc "$c_pnode - $c_pqemu") |")
  md+=("| $n | ${R_LOAD[$n]} | $b_cell | $p_cell | $r | $growth | $(mib_of_kib "$u_min") / $(mib_of_kib "$u_med") / $(mib_of_kib "$u_max") | $(mib_of_kib "$o_min") / $(mib_of_kib "$o_med") / $(mib_of_kib "$o_max") | ${R_U0[$n]} → ${R_U1[$n]} ($(calc "(${R_U1[$n]} - ${R_U0[$n]}) / $n" | cut -d. -f1)) | ${R_FAIL[$n]} (plain: ${R_PFAIL[$n]}) | ${R_DL[$n]} |")
done
read -r d_min d_med d_max < <(stats "${downloads[@]}")
tsv+=("$(tsv_row "failures (not Ready in the bound, or a restart) / VMs started, all N" "the $all_vms VMs started" "$(ratio "$all_fail" "$all_vms")" "$(ratio "$all_fail" "$all_vms")" "$(ratio "$all_fail" "$all_vms")" "0")")
tsv+=("$(tsv_row "image downloads per install of N VMs (N = ${rows[*]})" "one download" "$d_min" "$d_med" "$d_max" "1.0")")
printf '%s\n' "${tsv[@]}" >"$OUT/density.tsv"

{
  cat <<EOF
## Density: N VMs on one node, against N plain QEMU boots

**What.** N test-guest VMs (ci/testguest/build.sh; 256 MiB, 1 vCPU, TCG, the chart's default
memoryOverhead, so a pod limit of $POD_LIMIT_MIB MiB; the pet disk on \`berth-csi\` at the image's own
size, $DISK_MIB MiB) in **one** helm release (\`vms.vm01\` … \`vms.vmNN\`, the shared settings in
\`vmDefaults\`: how a user puts many VMs in one release), installed at once on the local single-node
cluster (ci/cluster/up), the image served by a pod in the cluster into an image cache emptied before
each N. Baseline, same run: N plain QEMU boots of the same guest started at once
(ci/testguest/qemu-user.sh, VM_CPUS=1 VM_MEMORY_MIB=256, TCG, user networking): the TCG CPU work itself.
The order of the two alternates per N. Chart and stages at commit $BENCH_COMMIT (\`ci/bench/density.sh\`).

**How.** All Ready: from \`helm install\` (no \`--wait\`) to the latest of the VM pods' Ready
transitions (the vm container is Ready when the guest accepts on TCP 22); plain: until the last
\`ssh true\` succeeded. Growth = that ratio at N / at N=$first: ≤ 1 means Berth's time grows no faster
than the TCG work. Memory, once all are Ready, per pod from its memory cgroup (cgroup v$CG_V): usage
− 256 MiB, and **usage − page cache − QEMU's resident guest-RAM mapping** (what the pod holds beyond
the guest's RAM: QEMU's own memory with the TCG buffer, vmm, dnsmasq; the page cache is left out
because the kernel charges the downloaded image and the disk reads to whichever pod touched them
first). Just after boot a guest has not touched all of its RAM, so usage − 256 MiB understates what a
busy guest's pod holds (ci/bench/memory.sh fills the RAM). Node memory: MemTotal − MemAvailable
before the install and once all are Ready (per VM in brackets). Failures: a VM pod not Ready within
the bound (${BENCH_DENSITY_READY_TIMEOUT:-300 + 120 × N} s) or any container restart (plain: qemu-user.sh failing). Downloads: GETs of the image in
the server pod's log. One install per N; min / median / max are over the N pods.

| N | load (1 min) at start | all Ready, Berth (s) | all SSH, plain (s) | Berth / plain | growth vs N=$first | usage − 256 MiB, min / median / max (MiB) | beyond guest RAM, no page cache, min / median / max (MiB) | node used MiB before → after (per VM) | failures | image downloads |
|---|---|---|---|---|---|---|---|---|---|---|
EOF
  printf '%s\n' "${md[@]}"
  echo
  [[ -z $stopped ]] || echo "Stopped increasing N: $stopped."
  [[ -z $stopped ]] || echo
  cat <<EOF
**Where the CPU goes** (CPU seconds, user + sys). Node: the machine's busy time (/proc/stat) from
\`helm install\` until the poll (every 5 s) saw all Ready, and for plain from the first start until
the last SSH answered. QEMU: each VM's QEMU when the poll first saw its pod Ready (/proc/PID/stat),
each plain QEMU when its SSH answered (qemu-user.sh). VM pod beyond QEMU: the pod's cgroup (cgroup
v$CG_V) less its QEMU: init containers, vmm, dnsmasq and the probes' execs. Other pods: the image
server and the cluster's own pods. Outside pods: kubelet, containerd, the API server, etcd, the
scheduler and controllers, and the bench's poll (kubectl).

| N | node, Berth | node, plain | Berth / plain | QEMUs, Berth | QEMUs, plain | Berth / plain | per VM pod beyond QEMU | other pods | outside pods | node − QEMUs, Berth / plain |
|---|---|---|---|---|---|---|---|---|---|---|
EOF
  printf '%s\n' "${cpu_md[@]}"
  echo
  cat <<EOF
Per pod: out/bench/density/pods.tsv. Machine: $(nproc) × $BENCH_CPU, $(($(mem_kib MemTotal) / 1024)) MiB; load
average $BENCH_LOAD0 at the start, $LOAD1 at the end (a shared machine: absolute times are noise, read the
ratios and their growth).
EOF
} >"$OUT/density.md"
log "wrote $OUT/density.md and $OUT/density.tsv"
cat "$OUT/density.md"
