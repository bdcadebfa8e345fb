#!/usr/bin/env bash
# Bench "boot": the whole Berth pod locally (ci/local-pod.sh up: e2e/localpod) against the same
# test guest started by hand with plain QEMU user networking (ci/testguest/qemu-user.sh), same run.
#
# Figures (out/bench/boot.{md,tsv}, contract in the team guide):
#   boot-to-SSH through Berth / boot-to-SSH plain QEMU          goal <= 1.05
#   Berth stages, first stage's start -> QEMU exec, warm caches  against the 300 ms goal (ratio < 1)
#   RSS of vmm + dnsmasq (guest running)                          against the 15 MiB goal (ratio < 1)
# Runs BENCH_RUNS (3) alternating pairs; every wait is bounded; no assertion on time.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
# shellcheck source=ci/bench/stats.sh
source "$REPO/ci/bench/stats.sh"
RUNS=${BENCH_RUNS:-3}
OUT=$REPO/out/bench
mkdir -p "$OUT"
log() { printf '%s boot bench: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}
[[ $(id -u) == 0 ]] || fail "run as root (network namespaces)"
GUEST_IMAGE=$("$REPO/ci/testguest/build.sh" | tail -1)
[[ -f $GUEST_IMAGE ]] || fail "ci/testguest/build.sh printed no image"
STATE=$(mktemp -u /run/berth-bench-boot.XXXXXX) # ci/local-pod.sh up writes it, down removes it
trap '[[ -f $STATE ]] && "$REPO/ci/local-pod.sh" down "$STATE"' EXIT
trap 'exit 130' INT TERM

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

berth_ssh=() base_ssh=() stage_ms=() rss=() rss_vmm=() rss_dns=()
for ((run = 1; run <= RUNS; run++)); do
  # Baseline: plain QEMU, user networking, same image, same vCPUs and memory.
  s=$("$REPO/ci/testguest/qemu-user.sh" "$GUEST_IMAGE" | tail -1)
  base_ssh+=("${s#boot_to_ssh_seconds=}")

  # Berth: a fresh pod (first boot of a new overlay, like the baseline's). Same guest, same work: the
  # baseline boots the image at its own size, so Berth's overlay keeps that size too (DISK_SIZE
  # empty; local-pod grows it to 4Gi by default, and the guest's growpart + resize2fs then cost ~30 s
  # of TCG time that plain QEMU never spends). Same stages and environment otherwise.
  DISK_SIZE='' "$REPO/ci/local-pod.sh" up "$STATE" >/dev/null
  # shellcheck source=/dev/null
  source "$STATE"
  berth_ssh+=("$BOOT_TO_SSH_S")
  rss_vmm+=("$(rss_kib "$VMM_PID")")
  rss_dns+=("$(rss_kib "$DNSMASQ_PID")")
  rss+=($((${rss_vmm[-1]} + ${rss_dns[-1]})))

  # Warm start on the same disk dir and caches (the pod restarted): stages' start -> QEMU exec.
  DISK_SIZE='' "$REPO/ci/local-pod.sh" warm-restart "$STATE"
  # shellcheck source=/dev/null
  source "$STATE"
  stage_ms+=("$STAGES_TO_QEMU_EXEC_MS")
  "$REPO/ci/local-pod.sh" down "$STATE"
  log "run $run: boot-to-SSH berth ${berth_ssh[-1]}s, plain ${base_ssh[-1]}s; stages->QEMU exec ${stage_ms[-1]} ms; RSS vmm ${rss_vmm[-1]} KiB, dnsmasq ${rss_dns[-1]} KiB"
done

ratios=()
for ((i = 0; i < RUNS; i++)); do ratios+=("$(ratio "${berth_ssh[i]}" "${base_ssh[i]}")"); done
read -r r_min r_med r_max < <(stats "${ratios[@]}")
read -r b_min b_med b_max < <(stats "${berth_ssh[@]}")
read -r p_min p_med p_max < <(stats "${base_ssh[@]}")
read -r s_min s_med s_max < <(stats "${stage_ms[@]}")
read -r m_min m_med m_max < <(stats "${rss[@]}")
read -r v_min v_med v_max < <(stats "${rss_vmm[@]}")
read -r d_min d_med d_max < <(stats "${rss_dns[@]}")

{
  printf 'boot-to-SSH: Berth / plain QEMU\tplain QEMU user networking, same guest\t%s\t%s\t%s\t<= 1.05\n' "$r_min" "$r_med" "$r_max"
  printf 'stages start -> QEMU exec (warm)\tgoal 300 ms\t%s\t%s\t%s\t< 1\n' "$(ratio "$s_min" 300)" "$(ratio "$s_med" 300)" "$(ratio "$s_max" 300)"
  printf 'RSS vmm + dnsmasq\tgoal 15 MiB\t%s\t%s\t%s\t< 1\n' "$(ratio "$m_min" 15360)" "$(ratio "$m_med" 15360)" "$(ratio "$m_max" 15360)"
} >"$OUT/boot.tsv"

cat >"$OUT/boot.md" <<EOF
## Boot: the whole pod locally vs plain QEMU

**What.** The test guest (ci/testguest/build.sh, Debian 12, cloud-init) booted through Berth's stages
in network namespaces shaped like a Calico pod (ci/local-pod.sh: net-setup → image-fetch → seed-iso →
dnsmasq → vmm, TCG, 2 vCPUs, 1 GiB), against the same image booted by hand with plain QEMU user
networking (ci/testguest/qemu-user.sh: TCG, 2 vCPUs, 1 GiB, NoCloud seed, SSH forwarded), alternating,
$RUNS pairs in the same run. Both are first boots of a fresh overlay.

**How.** Boot-to-SSH: from vmm's (or QEMU's) start until \`ssh true\` succeeds, polled every second.
Stages → QEMU exec: a second start of the same pod (warm image cache, existing overlay and run dir):
from net-setup's start until vmm has a qemu-system child (polled every 5 ms). RSS: VmRSS of vmm and of
dnsmasq while the guest runs (QEMU itself is the guest's memory plus its own and is not counted here).

| figure | min | median | max | goal |
|---|---|---|---|---|
| boot-to-SSH, Berth (s) | $b_min | $b_med | $b_max | |
| boot-to-SSH, plain QEMU (s) | $p_min | $p_med | $p_max | |
| ratio Berth / plain | $r_min | $r_med | $r_max | ≤ 1.05 |
| stages start → QEMU exec, warm (ms) | $s_min | $s_med | $s_max | < 300 |
| RSS vmm (KiB) | $v_min | $v_med | $v_max | |
| RSS dnsmasq (KiB) | $d_min | $d_med | $d_max | |
| RSS vmm + dnsmasq (KiB) | $m_min | $m_med | $m_max | < 15360 |

Absolute times on these shared 2-core machines are noise; the ratio is the result.
EOF
log "wrote $OUT/boot.md and $OUT/boot.tsv"
cat "$OUT/boot.tsv"
