#!/usr/bin/env bash
# Bench "disk": which cache/aio mode a data disk gets by default, per volume mode. fio in the test
# guest (TCG) against data disks given to QEMU with Berth's drive options, each paired with the
# same kind of disk given with plain QEMU's defaults (-drive file=...,if=virtio: cache=writeback,
# aio=threads), in the same guest, back to back.
#
#   Filesystem: a qcow2 file (qemu-img create, sparse, as image-fetch makes it) on a real ext4
#     (mkfs.ext4 on a loop device, mounted: what a CSI Filesystem volume is), for
#     cache=none aio=threads, cache=none aio=native, cache=writeback aio=threads, and
#     cache=none aio=io_uring when this QEMU has it.
#   Block: a raw loop device (a zero-filled file, so every block exists, as on a real device), for
#     cache=none aio=native and cache=none aio=threads.
# Loop devices use direct I/O on their backing file (losetup --direct-io=on), so the host's page
# cache sits only where QEMU's cache mode puts it, as on a real disk.
#
# Per disk and run, in a region of its own (BENCH_DISK_REGION_MIB, 256, at run × region, so every
# run writes fresh clusters: the first write of a sparse qcow2 allocates): 4k randwrite, 1M
# sequential write over the region, 4k randread, all iodepth 16, direct=1, libaio,
# BENCH_FIO_SECONDS (5) each. BENCH_RUNS (3) rounds; the pair's order alternates between rounds.
# Figures: Berth / plain per disk, metric and run (out/bench/disk.{md,tsv}), written by
# ci/bench/disk_report.py, which also picks the default per volume mode (its docstring says how).
# Wall time: the guest's boot (2 to 8 minutes under TCG on a loaded machine; BENCH_BOOT_TIMEOUT,
# 900 s) and 3 to 4 minutes a run (6 pairs): 11 and 14 minutes here with the defaults (5.5 with
# BENCH_RUNS=1 BENCH_FIO_SECONDS=2). `ci/bench/run.sh` without "disk" in its list skips it.
#
# Berth's options are vmm's own: ci/bench/diskargs renders each disk with vmm/qemu.Args (DATA_DISKS
# defaults, the pod's paths), the aio swapped for the mode measured. vmm's current choice per volume
# mode (vmm/qemu/aio.go) is marked in the figures.
set -euo pipefail
# shellcheck source=ci/bench/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"
bench_init disk
bench_machine vmm init common ci/testguest
[[ $(id -u) == 0 ]] || fail "run as root (loop devices, mount)"
RUNS=${BENCH_RUNS:-3}
FIO_SECONDS=${BENCH_FIO_SECONDS:-5}
REGION_MIB=${BENCH_DISK_REGION_MIB:-256}
BOOT_TIMEOUT=${BENCH_BOOT_TIMEOUT:-900}
DISK_MIB=$((RUNS * REGION_MIB))
for t in qemu-system-x86_64 qemu-img losetup mkfs.ext4 mount genisoimage ssh ssh-keygen python3 go; do
  command -v "$t" >/dev/null || fail "$t not found: run ci/install-deps.sh"
done

QPID='' MNT='' LOOP='' LOOPS=()
disk_cleanup() {
  set +e
  if [[ -n $QPID ]]; then
    kill "$QPID" 2>/dev/null
    wait "$QPID" 2>/dev/null
  fi
  [[ -S $WORK/ssh.sock ]] && ssh -o ControlPath="$WORK/ssh.sock" -O exit bench 2>/dev/null
  [[ -n $MNT ]] && mountpoint -q "$MNT" && { umount "$MNT" || umount -l "$MNT"; }
  local l
  for l in "${LOOPS[@]}"; do losetup -d "$l"; done
  bench_cleanup
}
trap disk_cleanup EXIT

# loop_attach FILE: a loop device on FILE with direct I/O to it (buffered when the backing file
# system refuses O_DIRECT: logged). Sets LOOP and appends it to LOOPS (so not in a $(...) subshell:
# the cleanup must see it).
loop_attach() {
  if ! LOOP=$(losetup -f --show --direct-io=on "$1" 2>/dev/null); then
    LOOP=$(losetup -f --show "$1") || fail "losetup $1"
    log "loop $LOOP on $1: direct I/O refused, buffered"
  fi
  LOOPS+=("$LOOP")
}

# Which aio modes this QEMU has: io_uring needs liburing at build time (and a kernel and seccomp
# profile that allow it).
has_aio() {
  local f=$WORK/aio-probe.raw
  [[ -f $f ]] || truncate -s 1M "$f"
  echo '{"execute":"qmp_capabilities"}{"execute":"quit"}' |
    timeout 30 qemu-system-x86_64 -machine none -nodefaults -display none -qmp stdio \
      -drive "if=none,id=p,file=$f,format=raw,cache=none,aio=$1" >/dev/null 2>&1
}

# The disks: id | volume mode | cache | aio. The id is the serial's tail (b-<id> Berth, p-<id> plain).
CONFIGS=(
  "fs-none-threads|Filesystem|none|threads"
  "fs-none-native|Filesystem|none|native"
  "fs-wb-threads|Filesystem|writeback|threads"
)
if has_aio io_uring; then
  CONFIGS+=("fs-none-uring|Filesystem|none|io_uring")
else
  log "this QEMU has no aio=io_uring: not measured"
fi
CONFIGS+=(
  "blk-none-native|Block|none|native"
  "blk-none-threads|Block|none|threads"
)

(cd "$REPO/ci/bench/diskargs" && GOWORK=off CGO_ENABLED=0 go build -trimpath -o "$WORK/diskargs" .) ||
  fail "build ci/bench/diskargs (vmm/qemu's data disks)"
# berth_disk NAME MODE CACHE AIO [DEVICE]: vmm's -drive and -device for the data disk NAME (a
# Filesystem disk at $MNT/NAME/NAME.qcow2, a Block disk at DEVICE), with AIO. Sets DRIVE, DEVICE,
# VMM_AIO (what vmm itself chooses for this disk).
berth_disk() {
  local out k v
  out=$("$WORK/diskargs" -dir "$MNT" -aio "$4" ${5:+-block-device "$5"} \
    -disk "{\"name\":\"$1\",\"size\":\"${DISK_MIB}Mi\",\"volumeMode\":\"$2\",\"cache\":\"$3\"}") ||
    fail "diskargs for $1"
  while IFS='=' read -r k v; do
    case $k in
    drive) DRIVE=$v ;;
    device) DEVICE=$v ;;
    vmm-aio) VMM_AIO=$v ;;
    esac
  done <<<"$out"
}

# Storage: an ext4 volume on a loop device, and for each Block disk a zero-filled file on a loop.
log "storage: ext4 on a loop device; qcow2 files of ${DISK_MIB} MiB; Block loops of ${DISK_MIB} MiB"
truncate -s $((12 * DISK_MIB + 1024))M "$WORK/volume.img"
loop_attach "$WORK/volume.img"
# No lazy init: ext4lazyinit would write inode tables in the background during the runs.
mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$LOOP"
MNT=$WORK/volume
mkdir -p "$MNT"
mount "$LOOP" "$MNT"

# Each disk's name is its serial: b-<id> with Berth's options, p-<id> with plain QEMU's
# (-drive file=PATH,if=virtio, written as if=none and its virtio-blk-pci so it has a serial: the same
# device and defaults). A Filesystem disk is where the pod has it: <volume>/<name>/<name>.qcow2.
drive_args=() described=()
for c in "${CONFIGS[@]}"; do
  IFS='|' read -r id mode cache aio <<<"$c"
  for side in b p; do
    name=$side-$id dev=''
    if [[ $mode == Filesystem ]]; then
      mkdir -p "$MNT/$name"
      path=$MNT/$name/$name.qcow2 format=qcow2
      qemu-img create -q -f qcow2 "$path" "${DISK_MIB}M"
    else
      dd if=/dev/zero of="$WORK/$name.raw" bs=1M count="$DISK_MIB" conv=fsync status=none
      loop_attach "$WORK/$name.raw"
      dev=$LOOP path=$LOOP format=raw
    fi
    if [[ $side == b ]]; then
      berth_disk "$name" "$mode" "$cache" "$aio" "$dev"
      described+=("$id|$side|$mode|$cache|$aio|$VMM_AIO|-drive $DRIVE")
    else
      DRIVE="if=none,id=plain-$name,file=$path,format=$format"
      DEVICE="virtio-blk-pci,drive=plain-$name,serial=$name"
      described+=("$id|$side|$mode|writeback|threads||-drive $DRIVE")
    fi
    drive_args+=(-drive "$DRIVE" -device "$DEVICE")
  done
done
printf '%s\n' "${described[@]}" >"$WORK/disks.txt"

# The guest: the test guest on a throwaway overlay, a NoCloud seed, SSH forwarded to loopback.
GUEST_IMAGE=$("$BENCH_REPO/ci/testguest/build.sh" | tail -1)
[[ -f $GUEST_IMAGE ]] || fail "ci/testguest/build.sh printed no image"
qemu-img create -q -f qcow2 -F qcow2 -b "$GUEST_IMAGE" "$WORK/root.qcow2"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/id" -C berth-bench
printf 'instance-id: bench-disk\nlocal-hostname: bench-disk\n' >"$WORK/meta-data"
# One host key type: each key costs seconds of emulated CPU.
printf '#cloud-config\nssh_genkeytypes: [ed25519]\nssh_authorized_keys:\n  - %s\n' "$(cat "$WORK/id.pub")" >"$WORK/user-data"
genisoimage -quiet -output "$WORK/seed.iso" -volid cidata -joliet -rock "$WORK/user-data" "$WORK/meta-data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

log "booting the test guest (TCG, 2 vCPUs, 1 GiB) with $((${#drive_args[@]} / 4)) data disks"
qemu-system-x86_64 -name bench-disk -nodefaults -no-user-config -display none -machine q35 \
  -accel tcg,thread=multi,tb-size=256 -cpu max -smp 2 -m 1024 \
  -drive "if=none,id=root,file=$WORK/root.qcow2,format=qcow2" -device virtio-blk-pci,drive=root,bootindex=0 \
  -drive "if=none,id=seed,file=$WORK/seed.iso,format=raw,readonly=on" -device virtio-blk-pci,drive=seed \
  -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=net0 \
  -device virtio-rng-pci \
  "${drive_args[@]}" \
  -serial "file:$WORK/console.log" &
QPID=$!

# One SSH connection for all the calls (ControlMaster): a key exchange costs seconds of emulated CPU.
gssh() {
  timeout "${GSSH_TIMEOUT:-120}" ssh -i "$WORK/id" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=5 -o BatchMode=yes \
    -o ControlMaster=auto -o ControlPath="$WORK/ssh.sock" -o ControlPersist=1200 debian@127.0.0.1 "$@"
}
deadline=$(($(date +%s) + BOOT_TIMEOUT))
until GSSH_TIMEOUT=10 gssh true 2>/dev/null; do
  kill -0 "$QPID" 2>/dev/null || { tail -20 "$WORK/console.log" >&2; fail "QEMU exited"; }
  (($(date +%s) < deadline)) || { tail -20 "$WORK/console.log" >&2; fail "no SSH within ${BOOT_TIMEOUT} s"; }
  sleep 2
done
log "guest answers SSH"
gssh 'command -v fio' >/dev/null || fail "no fio in the test guest (ci/testguest/build.sh installs it)"
gssh 'fio --version' >"$WORK/fio-version"

# fio_disk SERIAL RUN: the three jobs on the guest's disk SERIAL in run RUN's region (JSON on stdout).
fio_disk() {
  local dev=/dev/disk/by-id/virtio-$1 offset=$((($2 - 1) * REGION_MIB))
  GSSH_TIMEOUT=$((6 * FIO_SECONDS + 120)) gssh sudo fio --output-format=json --filename="$dev" \
    --ioengine=libaio --direct=1 --iodepth=16 --offset="${offset}M" --size="${REGION_MIB}M" \
    --name=randwrite-4k --rw=randwrite --bs=4k --time_based --runtime="$FIO_SECONDS" \
    --name=write-1M --stonewall --rw=write --bs=1M --runtime=$((3 * FIO_SECONDS)) \
    --name=randread-4k --stonewall --rw=randread --bs=4k --time_based --runtime="$FIO_SECONDS"
}

mkdir -p "$WORK/fio"
for ((run = 1; run <= RUNS; run++)); do
  for c in "${CONFIGS[@]}"; do
    id=${c%%|*}
    sides=(b p)
    ((run % 2 == 0)) && sides=(p b)
    for side in "${sides[@]}"; do
      fio_disk "$side-$id" "$run" >"$WORK/fio/$run-$side-$id.json" || fail "fio on $side-$id (run $run)"
    done
    log "run $run: $id done"
  done
done
gssh 'sudo dmesg' >"$WORK/guest-dmesg.txt" 2>/dev/null || true
if grep -Ei 'I/O error|blk_update_request' "$WORK/guest-dmesg.txt" >&2; then fail "the guest logged I/O errors"; fi

python3 "$BENCH_REPO/ci/bench/disk_report.py" "$WORK" "$OUT" --runs "$RUNS" --fio-seconds "$FIO_SECONDS" \
  --region-mib "$REGION_MIB" --qemu "$(qemu-system-x86_64 --version | head -1)"
bench_machine_line >>"$OUT/disk.md"
log "wrote $OUT/disk.md and $OUT/disk.tsv"
cat "$OUT/disk.tsv"
