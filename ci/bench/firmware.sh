#!/usr/bin/env bash
# Bench "firmware": what FIRMWARE=uefi, SECURE_BOOT=true and TPM=true cost at boot, against SeaBIOS,
# same run. Plain QEMU (TCG, 1 vCPU, 768 MiB, no network, no seed: the guest's cloud-init falls
# back to its None datasource), the machine and devices vmm gives each case:
#   bios      the generic-kernel test guest (MBR, extlinux), SeaBIOS           (the baseline)
#   uefi      the UEFI test guest (GPT, ESP, shim, GRUB), OVMF_CODE_4M.fd, a copy of OVMF_VARS_4M.fd
#   secure    the same, OVMF_CODE_4M.secboot.fd, q35 smm=on, secure pflash, OVMF_VARS_4M.ms.fd
#   tpm       secure plus swtpm's tpm-crb: what TPM=true adds (swtpm's control channel is a unix
#             socket here, one end of a socket pair under vmm: the same channel)
# Both guests are the same root file system and kernel (build-uefi.sh moves the generic guest onto
# GPT), so the difference is firmware and bootloader. Each boot gets a fresh overlay and store.
# Figures (ratios against bios, same run): time from QEMU's start to the kernel's first line
# ("Linux version": firmware and bootloader), and to the login prompt on ttyS0 (the whole boot).
# BENCH_RUNS (3) rounds, the order rotating; every wait is bounded; no assertion on time.
set -euo pipefail
# shellcheck source=ci/bench/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
bench_init firmware
RUNS=${BENCH_RUNS:-3}
BOOT_TIMEOUT=${BENCH_BOOT_TIMEOUT:-600}
[[ $(id -u) == 0 ]] || fail "run as root (the test guests' build)"
OVMF=/usr/share/OVMF
for f in OVMF_CODE_4M.fd OVMF_CODE_4M.secboot.fd OVMF_VARS_4M.fd OVMF_VARS_4M.ms.fd; do
  [[ -f $OVMF/$f ]] || fail "$OVMF/$f missing: ci/install-deps.sh installs ovmf"
done
command -v swtpm >/dev/null || fail "swtpm missing: ci/install-deps.sh installs it"
BIOS_IMAGE=$(TESTGUEST_KERNEL=generic "$REPO/ci/testguest/build.sh" | tail -1)
UEFI_IMAGE=$("$REPO/ci/testguest/build-uefi.sh" | tail -1)
[[ -f $BIOS_IMAGE && -f $UEFI_IMAGE ]] || fail "the test guests' builds printed no image"
bench_machine ci/testguest ci/bench/firmware.sh
RAW=$OUT/firmware.raw.tsv
printf 'run\tcase\tkernel_s\tlogin_s\n' >"$RAW"

# boot CASE RUN: one boot; appends the two figures to $RAW.
boot() {
  local c=$1 run=$2 dir=$WORK/$1-$2 image=$UEFI_IMAGE t0 kernel_ms='' login_ms='' qpid tpid=''
  mkdir -p "$dir"
  local args=(-nodefaults -no-user-config -display none -accel tcg -smp 1 -m 768M -cpu max
    -serial "file:$dir/console" -monitor none)
  case $c in
  bios)
    image=$BIOS_IMAGE
    args+=(-machine q35)
    ;;
  uefi)
    cp "$OVMF/OVMF_VARS_4M.fd" "$dir/vars.fd"
    args+=(-machine q35 -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF/OVMF_CODE_4M.fd"
      -drive "if=pflash,format=raw,unit=1,file=$dir/vars.fd")
    ;;
  secure | tpm)
    cp "$OVMF/OVMF_VARS_4M.ms.fd" "$dir/vars.fd"
    args+=(-machine "q35,smm=on" -global "driver=cfi.pflash01,property=secure,value=on"
      -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF/OVMF_CODE_4M.secboot.fd"
      -drive "if=pflash,format=raw,unit=1,file=$dir/vars.fd")
    ;;
  esac
  if [[ $c == tpm ]]; then
    mkdir -p "$dir/tpm"
    swtpm socket --tpm2 --tpmstate "dir=$dir/tpm" --ctrl "type=unixio,path=$dir/tpm.sock" --terminate &
    tpid=$!
    BENCH_PIDS+=("$tpid")
    for _ in $(seq 50); do [[ -S $dir/tpm.sock ]] && break; sleep 0.1; done
    args+=(-chardev "socket,id=tpm0ctrl,path=$dir/tpm.sock" -tpmdev "emulator,id=tpm0,chardev=tpm0ctrl"
      -device "tpm-crb,tpmdev=tpm0")
  fi
  qemu-img create -q -f qcow2 -b "$image" -F qcow2 "$dir/disk.qcow2"
  args+=(-drive "if=none,id=disk,file=$dir/disk.qcow2,format=qcow2" -device "virtio-blk-pci,drive=disk")
  : >"$dir/console"
  t0=$(now_ms)
  qemu-system-x86_64 "${args[@]}" &
  qpid=$!
  BENCH_PIDS+=("$qpid")
  while (($(now_ms) - t0 < BOOT_TIMEOUT * 1000)); do
    kill -0 "$qpid" 2>/dev/null || fail "$c run $run: QEMU ended; console: $(tail -c 500 "$dir/console")"
    if [[ -z $kernel_ms ]] && grep -aqF 'Linux version' "$dir/console"; then kernel_ms=$(($(now_ms) - t0)); fi
    if grep -aqE '(^|[^a-z])login: ' "$dir/console"; then
      login_ms=$(($(now_ms) - t0))
      break
    fi
    sleep 0.2
  done
  kill "$qpid" 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
  if [[ -n $tpid ]]; then
    kill "$tpid" 2>/dev/null || true
    wait "$tpid" 2>/dev/null || true
  fi
  [[ -n $kernel_ms && -n $login_ms ]] || fail "$c run $run: no login prompt within ${BOOT_TIMEOUT}s; console: $(tail -c 500 "$dir/console")"
  printf '%s\t%s\t%s\t%s\n' "$run" "$c" "$(calc "$kernel_ms / 1000")" "$(calc "$login_ms / 1000")" >>"$RAW"
  log "run $run, $c: kernel after $(calc "$kernel_ms / 1000") s, login prompt after $(calc "$login_ms / 1000") s"
  rm -rf "$dir"
}

cases=(bios uefi secure tpm)
for ((run = 1; run <= RUNS; run++)); do
  for ((i = 0; i < ${#cases[@]}; i++)); do
    boot "${cases[$(((i + run - 1) % ${#cases[@]}))]}" "$run"
  done
done

# col CASE FIELD: that case's values, one per run, in run order.
col() { awk -F'\t' -v c="$1" -v f="$2" 'NR > 1 && $2 == c { print $f }' "$RAW"; }
rows=() tsv=()
for what in kernel login; do
  f=3 label="QEMU start to the kernel's first line (firmware, bootloader)"
  [[ $what == login ]] && f=4 label="QEMU start to the login prompt (the whole boot)"
  mapfile -t base < <(col bios "$f")
  read -r bmin bmed bmax < <(fstats 1 "${base[@]}")
  rows+=("$label, bios (s) | $bmin | $bmed | $bmax | ")
  for c in uefi secure tpm; do
    mapfile -t v < <(col "$c" "$f")
    r=()
    for ((k = 0; k < ${#v[@]}; k++)); do r+=("$(ratio "${v[$k]}" "${base[$k]}")"); done
    read -r rmin rmed rmax < <(stats "${r[@]}")
    read -r vmin _ vmax < <(fstats 1 "${v[@]}")
    rows+=("$label, $c / bios ($c: ${vmin}–${vmax} s) | $rmin | $rmed | $rmax | ")
    tsv+=("$(tsv_row "$what: $c / bios" "bios" "$rmin" "$rmed" "$rmax" "")")
  done
done
printf '%s\n' "${tsv[@]}" >"$OUT/firmware.tsv"
{
  echo "## Firmware: UEFI, Secure Boot and the TPM at boot"
  echo
  echo "Measured $(date -u +%Y-%m-%d) by \`ci/bench/firmware.sh\`: plain QEMU under TCG (1 vCPU, 768 MiB), $RUNS rounds, the"
  echo "order rotating. bios is the generic-kernel test guest on SeaBIOS; uefi, secure and tpm are the same root"
  echo "file system and kernel on GPT behind shim and GRUB, on OVMF, OVMF's Secure Boot build (q35 with SMM) and"
  echo "that with swtpm's tpm-crb. Ratios are per round, against that round's bios boot. No goal: this is what"
  echo "the choice costs (docs/vmm.md, \"Firmware\")."
  echo
  md_table "${rows[@]}"
  echo
  bench_machine_line
} >"$OUT/firmware.md"
cat "$OUT/firmware.md"
