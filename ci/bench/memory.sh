#!/usr/bin/env bash
# Bench "memory": per-VM memory beyond the guest's RAM. The test guest (ci/testguest/build.sh) boots
# with 512 MiB under TCG through Berth's stages (ci/local-pod.sh up: e2e/localpod); once it
# answers SSH and cloud-init is done, read VmRSS of QEMU, vmm and dnsmasq, and split QEMU's RSS into
# the guest's RAM mapping and QEMU's own memory (/proc/<pid>/smaps).
#
# Figure (out/bench/memory.{md,tsv}):
#   Berth's per-VM overhead (QEMU without guest RAM + vmm + dnsmasq) / KubeVirt's documented
#   virt-launcher overhead for the same VM (GetMemoryOverhead: 253 MiB for 512 MiB, 1 vCPU)  goal < 1,
#   with TCG's translation buffer (this machine) and without it (what KVM, KubeVirt's case, has)
# BENCH_RUNS (2) boots. Every wait is bounded (SSH: BENCH_BOOT_TIMEOUT, 300 s).
#
# Then the tb-size curve (out/bench/memory-curve.tsv, a table in memory.md): the same guest, size and
# vCPU, booted by plain QEMU (user networking, NoCloud seed, as ci/testguest/qemu-user.sh) with
# -accel tcg,thread=multi,tb-size=T for T in BENCH_TB_SIZES (32 64 128 256 1024: QEMU's default), each in a memory cgroup
# of its own (v2, or v1 where the memory controller is there, as on these machines), no limit:
# boot-to-SSH, QEMU's CPU time until then, steady RSS (smaps split as above) and the cgroup's usage;
# then the guest fills its RAM (head -c RAM /dev/zero | tail: tail holds it all) and the cgroup's
# peak is read again: QEMU's overhead beyond guest RAM when the guest uses all of it, the figure
# vmm's tb-size choice and the chart's memoryOverhead are sized by (vmm/qemu/tcg.go).
# BENCH_MEMORY_PARTS ("berth curve") picks the parts to run.
set -euo pipefail
# lib.sh for its helpers (stats.sh, bench_machine); not its bench_init: this bench has its own cleanup.
# shellcheck source=ci/bench/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"
BENCH=memory
bench_machine vmm common ci/testguest ci/local-pod.sh e2e/localpod
RUNS=${BENCH_RUNS:-2}
PARTS=${BENCH_MEMORY_PARTS:-berth curve}
TB_SIZES=${BENCH_TB_SIZES:-32 64 128 256 1024}
CURVE_RUNS=${BENCH_CURVE_RUNS:-1}
BOOT_TIMEOUT=${BENCH_BOOT_TIMEOUT:-300}
GUEST_MIB=512
VCPUS=1
mkdir -p "$OUT"
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
[[ $(id -u) == 0 ]] || fail "run as root (network namespaces)"
STATE=$(mktemp -u /run/berth-bench-memory.XXXXXX) # ci/local-pod.sh up writes it, down removes it
CURVE_QPID='' CURVE_CG='' CURVE_WORK='' # the curve's QEMU, its cgroup and files, while they exist
cleanup() {
  [[ -f $STATE ]] && "$BENCH_REPO/ci/local-pod.sh" down "$STATE"
  if [[ -n $CURVE_QPID ]]; then
    kill "$CURVE_QPID" 2>/dev/null || true
    wait "$CURVE_QPID" 2>/dev/null || true
  fi
  [[ -n $CURVE_CG ]] && rmdir "$CURVE_CG" 2>/dev/null
  [[ -n $CURVE_WORK ]] && rm -rf "$CURVE_WORK"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# gssh CMD: CMD in the guest, from the node netns to the pod IP (the state's key).
gssh() {
  ip netns exec "$NODE_NS" timeout 150 ssh -i "$KEY" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=5 -o BatchMode=yes "debian@$POD_IP" "$@"
}

# tcg_rss PID: Rss (KiB) of TCG's translation buffer: the anonymous mapping of the size vmm gives
# QEMU (-accel tcg,tb-size=MiB; a guard page less). 0 when not found (KVM, or no tb-size given).
tcg_rss() {
  local tb
  tb=$(tr '\0' '\n' <"/proc/$1/cmdline" | grep -o 'tb-size=[0-9]*' | head -1 | cut -d= -f2)
  [[ -n $tb ]] || { echo 0; return; }
  awk -v want=$((tb * 1024)) '
    /^[0-9a-f]+-[0-9a-f]+ / { path = $6; size = 0; next }
    /^Size:/ { size = $2; next }
    /^Rss:/ { if (path == "" && size <= want && size >= want - 64 && !done) { rss = $2; done = 1 } }
    END { print rss + 0 }' "/proc/$1/smaps"
}
# berth_part: BENCH_RUNS boots through Berth's stages; rows and a section in memory.{tsv,md}.
berth_part() {
  qemu_rss=() guest_rss=() tcg=() qemu_own=() qemu_kvm=() vmm_rss=() dns_rss=() berth=() berth_kvm=() ssh_s=()
  for ((run = 1; run <= RUNS; run++)); do
    # The pod's vm container with the bench's guest size: 512 MiB and 1 vCPU.
    VM_MEMORY=${GUEST_MIB}Mi VM_CPUS=$VCPUS BOOT_TIMEOUT=$BOOT_TIMEOUT "$BENCH_REPO/ci/local-pod.sh" up "$STATE" >/dev/null
    # shellcheck source=/dev/null
    source "$STATE"
    ssh_s+=("$BOOT_TO_SSH_S")
    gssh 'timeout 120 cloud-init status --wait' >/dev/null 2>&1 || log "cloud-init not done within 120 s; measuring anyway"
    sleep 5
    qpid=$(pgrep -P "$VMM_PID" -f qemu-system || true)
    [[ -n $qpid ]] || fail "no QEMU child of vmm ($VMM_PID)"
    q=$(rss_kib "$qpid") g=$(guest_ram_rss "$qpid" "$GUEST_MIB") t=$(tcg_rss "$qpid") v=$(rss_kib "$VMM_PID") d=$(rss_kib "$DNSMASQ_PID")
    ((g > 0)) || fail "found no guest-RAM mapping of ${GUEST_MIB} MiB in QEMU's smaps"
    qemu_rss+=("$q") guest_rss+=("$g") tcg+=("$t") qemu_own+=($((q - g))) qemu_kvm+=($((q - g - t))) vmm_rss+=("$v") dns_rss+=("$d")
    berth+=($((q - g + v + d))) berth_kvm+=($((q - g - t + v + d)))
    log "run $run: SSH after ${ssh_s[-1]} s; QEMU RSS $q KiB (guest RAM mapping $g KiB, TCG buffer $t KiB, own $((q - g)) KiB), vmm $v KiB, dnsmasq $d KiB"
    "$BENCH_REPO/ci/local-pod.sh" down "$STATE"
  done

  # KubeVirt's figure for the same VM (512 MiB, 1 vCPU, a graphics device, no VFIO/SEV/TPM), from
  # GetMemoryOverhead (kubevirt/kubevirt pkg/virt-controller/services/renderresources.go):
  #   page tables guest/512 + virt-launcher-monitor 25 + virt-launcher 100 + virtlogd 25 + virtqemud 40
  #   + qemu 30 + 8 per vCPU + 8 IOThread + 16 video RAM (MiB)
  KV_MIB=$(awk -v g=$GUEST_MIB -v c=$VCPUS 'BEGIN { printf "%d", g / 512 + 25 + 100 + 25 + 40 + 30 + 8 * c + 8 + 16 }')
  KV_KIB=$((KV_MIB * 1024))
  rs=() rk=()
  for b in "${berth[@]}"; do rs+=("$(awk -v a="$b" -v k=$KV_KIB 'BEGIN { printf "%.3f", a / k }')"); done
  for b in "${berth_kvm[@]}"; do rk+=("$(awk -v a="$b" -v k=$KV_KIB 'BEGIN { printf "%.3f", a / k }')"); done
  read -r r1 r2 r3 < <(fstats 3 "${rs[@]}")
  read -r k1 k2 k3 < <(fstats 3 "${rk[@]}")
  {
    printf "Berth per VM beyond guest RAM, TCG (its translation buffer included) / KubeVirt's\tKubeVirt GetMemoryOverhead: %s MiB\t%s\t%s\t%s\t< 1\n" "$KV_MIB" "$r1" "$r2" "$r3"
    printf "Berth per VM beyond guest RAM, without TCG's buffer (as under KVM) / KubeVirt's\tKubeVirt GetMemoryOverhead: %s MiB\t%s\t%s\t%s\t< 1\n" "$KV_MIB" "$k1" "$k2" "$k3"
  } >>"$OUT/memory.tsv"

  row() { # LABEL V(KiB)... → MiB row
    local l=$1 m=()
    shift
    for v in "$@"; do m+=("$(mib "$v")"); done
    read -r x y z < <(fstats 1 "${m[@]}")
    echo "| $l | $x | $y | $z |"
  }
  read -r _ s2 _ < <(fstats 1 "${ssh_s[@]}")
  cat >>"$OUT/memory.md" <<EOF
## Memory per VM beyond the guest's RAM

**What.** The test guest (ci/testguest/build.sh: Debian 12, cloud-init) booted through Berth's
stages exactly as ci/local-pod.sh (e2e/localpod) runs them (net-setup → image-fetch → seed-iso → dnsmasq → vmm,
network namespaces shaped like a Calico pod), with **${GUEST_MIB} MiB and $VCPUS vCPU under TCG**,
$RUNS boots. Once the guest answered SSH (after $s2 s, median) and \`cloud-init status --wait\`
returned, plus 5 s: VmRSS of QEMU, vmm and dnsmasq (/proc/<pid>/status) — what keeps running in the
pod; the init containers have exited. QEMU's RSS is split with /proc/<pid>/smaps into its guest-RAM
mapping (the largest anonymous mapping of at least ${GUEST_MIB} MiB: the guest's memory, paid by any
VM runtime), TCG's translation buffer (the anonymous mapping of the \`tb-size\` vmm gives QEMU under
TCG; it does not exist under KVM) and the rest: QEMU's own memory (code, libraries, device state).

| process (MiB) | min | median | max |
|---|---|---|---|
$(row 'QEMU, whole RSS' "${qemu_rss[@]}")
$(row 'QEMU, guest RAM mapping (resident part)' "${guest_rss[@]}")
$(row 'QEMU, TCG translation buffer (resident part)' "${tcg[@]}")
$(row 'QEMU, own memory without TCG buffer (RSS − guest RAM − TCG buffer)' "${qemu_kvm[@]}")
$(row 'vmm' "${vmm_rss[@]}")
$(row 'dnsmasq' "${dns_rss[@]}")
$(row '**Berth per VM beyond guest RAM, TCG** (QEMU − guest RAM + vmm + dnsmasq)' "${berth[@]}")
$(row '**Berth per VM beyond guest RAM, without TCG buffer** (as under KVM)' "${berth_kvm[@]}")

**Baseline: KubeVirt.** KubeVirt sizes the virt-launcher pod as guest memory plus
\`GetMemoryOverhead\` (kubevirt/kubevirt, pkg/virt-controller/services/renderresources.go; the
constants in pkg/virt-controller/services/template.go): page tables (guest memory / 512) +
virt-launcher-monitor 25 Mi + virt-launcher 100 Mi + virtlogd 25 Mi + virtqemud 40 Mi + QEMU 30 Mi
("the \`ps\` RSS for qemu, minus the RAM of its (stressed) guest, minus the virtual page table")
+ 8 Mi per vCPU + 8 Mi for the IOThread + 16 Mi video RAM when a graphics device is attached (the
default). For this VM (${GUEST_MIB} MiB, $VCPUS vCPU, graphics): **$KV_MIB MiB**. Red Hat documents the
same formula for OpenShift Virtualization ("Memory overhead per virtual machine ≈ (0.002 × requested
memory) + 218 MiB + 8 MiB × (number of vCPUs) + 16 MiB × (number of graphics devices)",
openshift-docs modules/virt-cluster-resource-requirements.adoc), ≈ $(awk -v g=$GUEST_MIB -v c=$VCPUS 'BEGIN { printf "%.0f", 0.002 * g + 218 + 8 * c + 16 }') MiB here.

| figure | min | median | max | goal |
|---|---|---|---|---|
| **Berth beyond guest RAM under TCG / KubeVirt's $KV_MIB MiB** | $r1 | $r2 | $r3 | < 1 |
| **Berth beyond guest RAM without TCG's buffer (as under KVM) / KubeVirt's $KV_MIB MiB** | $k1 | $k2 | $k3 | < 1 |

Caveats: KubeVirt's figure is a reservation (measured \`ps\` RSS rounded up, shared libraries counted
again in every process) for KVM, Berth's is measured RSS. Under TCG (these machines) QEMU's translation
buffer (the \`tb-size\` vmm chose from the container's memory limit, here none: the largest,
common/podmem.MaxTBSize) is resident in full and dominates Berth's overhead; the curve below is how
small it can be; KubeVirt runs TCG only as a fallback
(useEmulation) with the same formula. The KVM-like row subtracts that buffer; it is an estimate, not
a KVM measurement (KVM does not work here). Size the pod's memory as guest memory + this overhead +
headroom (the chart's values).
EOF
}

stats_in() { # stats of the values on stdin, one a line
  local v
  mapfile -t v
  stats "${v[@]}"
}
# curve_boot TB WORK: boot the test guest with plain QEMU at tb-size TB in a fresh memory cgroup;
# sets CURVE_RESULT to "ssh_s cpu_s qemu_rss guest_rss tcg_rss cg_usage cg_anon fill_rss fill_peak
# fill_anon" (KiB). Not in a subshell: the EXIT trap must know the QEMU and the cgroup.
curve_boot() {
  local tb=$1 work=$2 cg port start deadline q g t u a secs cpu fq fp fa
  cg=$CG_ROOT/berth-bench-tb$tb-$$ # stats.sh's memory hierarchy (CG_ROOT, CG_V)
  mkdir "$cg"
  CURVE_CG=$cg
  rm -f "$work/disk.qcow2" "$work/console.log"
  qemu-img create -q -f qcow2 -F qcow2 -b "$GUEST_IMAGE" "$work/disk.qcow2"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  start=$(date +%s.%N)
  # The shell puts itself into the cgroup, then becomes QEMU: QEMU's every page is charged there.
  # The options are vmm's for TCG (vmm/qemu/args.go) with user networking instead of the tap.
  sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" qemu-system-x86_64 -name "tb$tb" -nodefaults -no-user-config \
    -display none -machine q35 -accel "tcg,thread=multi,tb-size=$tb" -cpu max -smp "$VCPUS" -m "${GUEST_MIB}M" \
    -drive "if=none,id=disk0,file=$work/disk.qcow2,format=qcow2" -device virtio-blk-pci,drive=disk0,bootindex=0 \
    -drive "if=none,id=seed,file=$work/seed.iso,format=raw,media=cdrom,readonly=on" \
    -device virtio-scsi-pci,id=scsi0 -device scsi-cd,bus=scsi0.0,drive=seed \
    -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=net0 \
    -device virtio-rng-pci -serial "file:$work/console.log" &
  CURVE_QPID=$!
  psh() { timeout 150 ssh -i "$work/id" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=3 -o BatchMode=yes debian@127.0.0.1 "$@"; }
  deadline=$(($(date +%s) + BOOT_TIMEOUT))
  until psh true 2>/dev/null; do
    kill -0 "$CURVE_QPID" 2>/dev/null || { tail -20 "$work/console.log" >&2; fail "QEMU at tb-size $tb exited"; }
    (($(date +%s) < deadline)) || { tail -20 "$work/console.log" >&2; fail "no SSH within ${BOOT_TIMEOUT}s at tb-size $tb"; }
    sleep 1
  done
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  cpu=$(proc_cpu_s "$CURVE_QPID")
  psh 'timeout 120 cloud-init status --wait' >/dev/null 2>&1 || log "cloud-init not done within 120 s at tb-size $tb; measuring anyway"
  sleep 5
  q=$(rss_kib "$CURVE_QPID") g=$(guest_ram_rss "$CURVE_QPID" "$GUEST_MIB") t=$(tcg_rss "$CURVE_QPID") u=$(cg_kib "$cg" usage) a=$(cg_anon_kib "$cg")
  # The guest fills its RAM: tail keeps the whole of a line (no newline in /dev/zero) in memory;
  # the guest's own OOM killer ends it once the guest's RAM is full. Every guest page is then touched.
  psh "head -c ${GUEST_MIB}M /dev/zero | tail >/dev/null; free -m" >&2 || true
  sleep 5
  kill -0 "$CURVE_QPID" 2>/dev/null || fail "QEMU at tb-size $tb died while its guest filled its RAM"
  # SSH answers again (bounded; a loaded machine is slow to give the guest's sshd its turn).
  deadline=$(($(date +%s) + 180))
  until psh true 2>/dev/null; do
    kill -0 "$CURVE_QPID" 2>/dev/null || fail "QEMU at tb-size $tb died after its guest filled its RAM"
    (($(date +%s) < deadline)) || fail "the guest at tb-size $tb does not answer within 180 s after filling its RAM"
    sleep 2
  done
  fq=$(rss_kib "$CURVE_QPID") fp=$(cg_kib "$cg" peak) fa=$(cg_anon_kib "$cg")
  psh 'sudo systemctl poweroff' 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$CURVE_QPID" 2>/dev/null || break; sleep 1; done
  kill "$CURVE_QPID" 2>/dev/null || true
  wait "$CURVE_QPID" 2>/dev/null || true
  CURVE_QPID=
  rmdir "$cg"
  CURVE_CG=
  CURVE_RESULT="$secs $cpu $q $g $t $u $a $fq $fp $fa"
}

# curve_part: the tb-size curve; raw rows in out/bench/memory/curve.tsv, a table in memory.md, and
# for every tb-size a row: QEMU beyond guest RAM when the guest fills it / the chart's memoryOverhead.
curve_part() {
  [[ -n $CG_V ]] || fail "no memory cgroup hierarchy (v2 with the memory controller, or v1's memory) to measure in"
  GUEST_IMAGE=$("$BENCH_REPO/ci/testguest/build.sh" | tail -1)
  [[ -f $GUEST_IMAGE ]] || fail "ci/testguest/build.sh printed no image"
  local work overhead_mib tb run r rows=() raw
  work=$(mktemp -d /tmp/berth-bench-curve.XXXXXX)
  CURVE_WORK=$work
  ssh-keygen -q -t ed25519 -N '' -f "$work/id" -C berth-bench
  printf 'instance-id: tbcurve\nlocal-hostname: tbcurve\n' >"$work/meta-data"
  # ed25519 host keys only, as in the boot bench: RSA's random prime search would be most of the
  # CPU column's spread.
  printf '#cloud-config\nssh_genkeytypes: [ed25519]\nssh_authorized_keys:\n  - %s\n' "$(cat "$work/id.pub")" >"$work/user-data"
  genisoimage -quiet -output "$work/seed.iso" -volid cidata -joliet -rock "$work/user-data" "$work/meta-data"
  local vmm_tb
  vmm_tb=$(awk '$1 == "MaxTBSize" && $2 == "=" { print $3; exit }' "$BENCH_REPO/common/podmem/podmem.go")
  [[ $vmm_tb =~ ^[0-9]+$ ]] || fail "no MaxTBSize in common/podmem/podmem.go"
  overhead_mib=$(awk '$1 == "memoryOverhead:" { sub(/Mi$/, "", $2); print $2; exit }' "$BENCH_REPO/chart/values.yaml")
  [[ $overhead_mib =~ ^[0-9]+$ ]] || fail "chart/values.yaml: no memoryOverhead in Mi"
  mkdir -p "$OUT/memory"
  raw=$OUT/memory/curve.tsv
  printf 'tb_mib\trun\tssh_s\tqemu_cpu_s\tqemu_rss_kib\tguest_rss_kib\ttcg_rss_kib\tcg_usage_kib\tcg_anon_kib\tfill_qemu_rss_kib\tfill_cg_peak_kib\tfill_cg_anon_kib\n' >"$raw"
  # Rounds of every tb-size in turn: the machine's load drifts over a round, not within one size.
  for ((run = 1; run <= CURVE_RUNS; run++)); do
    for tb in $TB_SIZES; do
      curve_boot "$tb" "$work"
      r=$CURVE_RESULT
      printf '%s\t%s\t%s\n' "$tb" "$run" "${r// /$'\t'}" >>"$raw"
      log "curve tb-size $tb run $run: $r"
    done
  done
  rm -rf "$work"
  CURVE_WORK=
  # Per tb-size: min/median/max of each column (MiB; beyond-RAM figures subtract the guest's size).
  for tb in $TB_SIZES; do
    # col C [SUB_KIB [DIV]]: column C of this tb-size's rows, minus SUB_KIB, divided by DIV (1024: MiB).
    col() { awk -F'\t' -v tb="$tb" -v c="$1" -v s="${2:-0}" -v d="${3:-1024}" 'NR > 1 && $1 == tb { printf "%.1f\n", ($c - s) / d }' "$raw"; }
    # rng ...: "median (min–max)" of col ...; dif A B: median of column A − column B (MiB).
    rng() { read -r a m b < <(col "$@" | stats_in); if [[ $a == "$b" ]]; then printf '%s' "$m"; else printf '%s (%s–%s)' "$m" "$a" "$b"; fi; }
    dif() { read -r _ m _ < <(awk -F'\t' -v tb="$tb" -v a="$1" -v b="$2" 'NR > 1 && $1 == tb { printf "%.1f\n", ($a - $b) / 1024 }' "$raw" | stats_in); printf '%s' "$m"; }
    rows+=("| $tb | $(rng 3 0 1) | $(rng 4 0 1) | $(rng 5) | $(rng 7) | $(dif 5 6) | $(rng 10) | $(rng 11 $((GUEST_MIB * 1024))) | $(rng 12 $((GUEST_MIB * 1024))) |")
    read -r p1 p2 p3 < <(col 11 $((GUEST_MIB * 1024)) | stats_in)
    # The goal is the chart's for the tb-size vmm gives a pod the default limit leaves room for
    # (common/podmem's MaxTBSize); the other sizes are the curve, shown.
    local goal='' what=''
    ((tb == vmm_tb)) && goal='< 1' what=" (vmm's choice)"
    tsv_row "QEMU beyond guest RAM, guest fills its RAM, TCG tb-size=$tb$what / chart memoryOverhead" \
      "chart/values.yaml memoryOverhead: ${overhead_mib}Mi" "$(ratio "$p1" "$overhead_mib")" "$(ratio "$p2" "$overhead_mib")" "$(ratio "$p3" "$overhead_mib")" "$goal" >>"$OUT/memory.tsv"
  done
  cat >>"$OUT/memory.md" <<EOF

### TCG translation buffer: tb-size against boot time and memory

**What.** The same test guest (${GUEST_MIB} MiB, $VCPUS vCPU, TCG) booted by plain QEMU with vmm's TCG options
(\`-machine q35 -accel tcg,thread=multi,tb-size=T -cpu max\`; user networking instead of the tap, so
no vmm or dnsmasq here) in a memory cgroup of its own (cgroup v$CG_V, no limit), $CURVE_RUNS boot(s) per
size, the sizes in turn. Boot-to-SSH from QEMU's start; QEMU's CPU time (user+sys) until then, which
the shared machine's load disturbs less (the guest makes only an ed25519 host key, as in the boot
bench; 1024 MiB is QEMU's own default, what plain QEMU uses when no tb-size is given). Steady: after \`cloud-init status --wait\` + 5 s. Then the
guest fills its RAM (\`head -c ${GUEST_MIB}M /dev/zero | tail\`: tail holds it all until the guest's
own OOM killer ends it), and the cgroup's peak (v2 memory.peak, v1 memory.max_usage_in_bytes) is
read: what the pod's memory limit must hold. Raw rows: out/bench/memory/curve.tsv.

| tb-size (MiB) | boot-to-SSH (s) | QEMU CPU to SSH (s) | QEMU RSS steady (MiB) | TCG buffer resident (MiB) | QEMU RSS − guest RAM mapping, steady (MiB) | QEMU RSS after fill (MiB) | **cgroup peak after fill − guest RAM (MiB)** | cgroup anon after fill − guest RAM (MiB) |
|---|---|---|---|---|---|---|---|---|
$(printf '%s\n' "${rows[@]}")

The ratio rows divide the cgroup's peak beyond guest RAM by the chart's default memoryOverhead
(${overhead_mib}Mi): below 1, a guest that fills its RAM fits the pod's limit. The peak counts page
cache too (the overlay's writes), which the kernel reclaims before it kills; the anon column is what
it cannot reclaim.
EOF
}

: >"$OUT/memory.md"
: >"$OUT/memory.tsv"
for part in $PARTS; do
  case $part in
  berth) berth_part ;;
  curve) curve_part ;;
  *) fail "BENCH_MEMORY_PARTS: unknown part '$part' (berth, curve)" ;;
  esac
done
{ echo; bench_machine_line; } >>"$OUT/memory.md"
log "wrote $OUT/memory.md and $OUT/memory.tsv"
cat "$OUT/memory.tsv"
