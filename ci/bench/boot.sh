#!/usr/bin/env bash
# Bench "boot": the whole Berth pod locally (ci/local-pod.sh up: e2e/localpod) against the same
# test guest started by hand with plain QEMU user networking (ci/testguest/qemu-user.sh), same run.
#
# Figures (out/bench/boot.{md,tsv}; ci/bench/boot_report.py writes them from the raw figures):
#   QEMU CPU time (user+sys) until SSH answers, Berth / plain        goal <= 1.02
#   boot-to-SSH wall time, Berth / plain                              goal <= 1.05
#   the guest's own view of both boots (systemd-analyze, cloud-init analyze, dhclient), phase by
#   phase, to show that no phase is Berth's alone
#   Berth stages, first stage's start -> QEMU exec, warm caches       against the 300 ms goal (ratio < 1)
#   RSS of vmm + dnsmasq (guest running)                              against the 15 MiB goal (ratio < 1)
# Runs BENCH_RUNS (5) pairs, the order alternating (plain first, then Berth first) so that a drift in
# the machine's load weighs on both; every wait is bounded; no assertion on time.
# Both guests generate only the SSH host keys BENCH_BOOT_HOST_KEYS (ed25519; empty: the image's
# default rsa, ecdsa, ed25519). RSA's random prime search under TCG varies by ~10 s from boot to boot,
# more than every other phase together: with it the bench cannot tell 2 % apart.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
# shellcheck source=ci/bench/lib.sh
source "$REPO/ci/bench/lib.sh"
BENCH=boot
RUNS=${BENCH_RUNS:-5}
export SSH_HOST_KEY_TYPES=${BENCH_BOOT_HOST_KEYS-ed25519} BENCH_BOOT_HOST_KEYS=${BENCH_BOOT_HOST_KEYS-ed25519}
mkdir -p "$OUT"
[[ $(id -u) == 0 ]] || fail "run as root (network namespaces)"
GUEST_IMAGE=$("$REPO/ci/testguest/build.sh" | tail -1)
[[ -f $GUEST_IMAGE ]] || fail "ci/testguest/build.sh printed no image"
bench_machine init vmm netsetup common e2e/localpod ci/testguest
GUESTS=$OUT/boot/guest # the guest reports, one file a boot: plain-N.txt, berth-N.txt
rm -rf "$GUESTS"
mkdir -p "$GUESTS"
RAW=$OUT/boot/raw.tsv # not out/bench/*.tsv: those are the benches' figures
printf 'run\tside\tboot_to_ssh_s\tqemu_cpu_s\tstages_to_qemu_ms\trss_vmm_kib\trss_dnsmasq_kib\n' >"$RAW"
STATE=$(mktemp -u /run/berth-bench-boot.XXXXXX) # ci/local-pod.sh up writes it, down removes it
trap '[[ -f $STATE ]] && "$REPO/ci/local-pod.sh" down "$STATE"' EXIT
trap 'exit 130' INT TERM


# plain RUN: the baseline, plain QEMU with user networking, same image, vCPUs and memory.
plain() {
  local out cpu secs
  out=$(GUEST_REPORT="$GUESTS/plain-$1.txt" "$REPO/ci/testguest/qemu-user.sh" "$GUEST_IMAGE" | tail -2)
  cpu=$(sed -n 's/^qemu_cpu_seconds=//p' <<<"$out")
  secs=$(sed -n 's/^boot_to_ssh_seconds=//p' <<<"$out")
  [[ -n $cpu && -n $secs ]] || fail "qemu-user.sh printed no figures: $out"
  printf '%s\tplain\t%s\t%s\t\t\t\n' "$1" "$secs" "$cpu" >>"$RAW"
  log "run $1: plain QEMU: SSH after ${secs}s, QEMU CPU ${cpu}s"
}

# berth RUN: a fresh pod (first boot of a new overlay, like the baseline's). Same guest, same work:
# the baseline boots the image at its own size, so Berth's overlay keeps that size too (DISK_SIZE
# empty; local-pod grows it to 4Gi by default, and the guest's growpart + resize2fs then cost ~30 s
# of TCG time that plain QEMU never spends). Then a warm start on the same disk dir and caches (the
# pod restarted): stages' start -> QEMU exec.
berth() {
  local vmm_kib dns_kib
  DISK_SIZE='' "$REPO/ci/local-pod.sh" up "$STATE" >/dev/null
  # shellcheck source=/dev/null
  source "$STATE"
  vmm_kib=$(rss_kib "$VMM_PID") dns_kib=$(rss_kib "$DNSMASQ_PID")
  ip netns exec "$NODE_NS" ssh -i "$KEY" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=30 -o BatchMode=yes "debian@$POD_IP" 'timeout 300 sh -s' \
    <"$REPO/ci/testguest/guest-report.sh" >"$GUESTS/berth-$1.txt" || fail "guest report (Berth, run $1)"
  DISK_SIZE='' "$REPO/ci/local-pod.sh" warm-restart "$STATE"
  # shellcheck source=/dev/null
  source "$STATE"
  "$REPO/ci/local-pod.sh" down "$STATE"
  printf '%s\tberth\t%s\t%s\t%s\t%s\t%s\n' "$1" "$BOOT_TO_SSH_S" "$QEMU_CPU_S" "$STAGES_TO_QEMU_EXEC_MS" "$vmm_kib" "$dns_kib" >>"$RAW"
  log "run $1: Berth: SSH after ${BOOT_TO_SSH_S}s, QEMU CPU ${QEMU_CPU_S}s; stages->QEMU exec ${STAGES_TO_QEMU_EXEC_MS} ms; RSS vmm ${vmm_kib} KiB, dnsmasq ${dns_kib} KiB"
}

for ((run = 1; run <= RUNS; run++)); do
  # Separate statements, not `a && b`: errexit holds inside each.
  if ((run % 2)); then
    plain "$run"
    berth "$run"
  else
    berth "$run"
    plain "$run"
  fi
done

/usr/bin/python3 "$REPO/ci/bench/boot_report.py" "$RAW" "$GUESTS" "$OUT/boot.md" "$OUT/boot.tsv" "$(bench_machine_line)"
log "wrote $OUT/boot.md and $OUT/boot.tsv"
cat "$OUT/boot.tsv"
