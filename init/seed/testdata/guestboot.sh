#!/usr/bin/env bash
# Manual proof that a real guest takes a seed written by seed-iso: boots Berth's test guest
# (ci/testguest/build.sh) under plain QEMU (TCG, user networking) with the seed.iso as its CD-ROM,
# then checks through SSH what the guest kernel and cloud-init made of it: hostname, datasource,
# instance id, runcmd, authorized key, the ISO's names as the kernel's iso9660 driver shows them
# (through Rock Ridge, which Linux prefers to the image's Joliet tree).
# Not part of `go test` (about 70-90 s under TCG); the vmm end-to-end test is the automated proof.
#
#   init/seed/testdata/guestboot.sh [configdrive|nocloud]
#
# Needs root (the test guest build), qemu-system-x86_64, ssh. Bounded: BOOT_TIMEOUT (240 s).
set -euo pipefail
fmt=${1:-configdrive}
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
repo=$(cd "$here/../../.." && pwd)
img=$("$repo/ci/testguest/build.sh" | tail -1)
work=$(mktemp -d /tmp/berth-seed-boot.XXXXXX)
qpid=
cleanup() {
  [[ -n $qpid ]] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$repo/init" && CGO_ENABLED=0 go build -o "$work/seed-iso" ./cmd/seed-iso)
ssh-keygen -q -t ed25519 -N '' -f "$work/id" -C berth-seed-test
mkdir -p "$work/run"
printf '#cloud-config\nruncmd:\n  - [ sh, -c, "echo seed-runcmd-ok > /var/lib/berth-marker" ]\n' >"$work/userdata"
VM_NAME=seedvm-$fmt SEED_FORMAT=$fmt USERDATA=$work/userdata METADATA=$work/none \
  SSH_AUTHORIZED_KEYS="$(cat "$work/id.pub")" BERTH_RUN_DIR=$work/run "$work/seed-iso"
qemu-img create -q -f qcow2 -F qcow2 -b "$img" "$work/disk.qcow2"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
qemu-system-x86_64 -nodefaults -display none -accel tcg -cpu max -smp 2 -m 1024 \
  -drive "file=$work/disk.qcow2,format=qcow2,if=virtio" \
  -drive "file=$work/run/seed.iso,format=raw,media=cdrom,readonly=on" \
  -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=net0 \
  -serial "file:$work/console.log" &
qpid=$!
want_ds='DataSourceConfigDrive .*source=/dev/sr0'
[[ $fmt == nocloud ]] && want_ds='DataSourceNoCloud \[seed=/dev/sr0\]'
sshc=(ssh -i "$work/id" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o LogLevel=ERROR -o ConnectTimeout=3 -o BatchMode=yes debian@127.0.0.1)
deadline=$(($(date +%s) + ${BOOT_TIMEOUT:-240}))
until "${sshc[@]}" true 2>/dev/null; do
  kill -0 "$qpid" 2>/dev/null || { tail -30 "$work/console.log" >&2; echo "guestboot: QEMU exited" >&2; exit 1; }
  (($(date +%s) < deadline)) || { tail -40 "$work/console.log" >&2; echo "guestboot: no SSH in time" >&2; exit 1; }
  sleep 2
done
"${sshc[@]}" "set -e
  test \"\$(hostname)\" = seedvm-$fmt
  timeout 120 sudo cloud-init status --wait --long
  status=\$(sudo cloud-init status --long)
  grep -q '$want_ds' <<<\"\$status\"
  grep -qx seed-runcmd-ok /var/lib/berth-marker
  grep -q berth-seed-test ~/.ssh/authorized_keys
  echo instance-id: \$(sudo cat /var/lib/cloud/data/instance-id)
  sudo blkid /dev/sr0
  sudo mount -o ro /dev/sr0 /mnt && find /mnt -exec stat -c '%A %n' {} +
  # the kernel uses the Rock Ridge tree (modes as written: r--r--r--), not the Joliet one (r-xr-xr-x)
  test \"\$(stat -c %a \$(find /mnt -type f | head -1))\" = 444
  sudo umount /mnt
  sudo dmesg | grep -i 'ISO 9660 Extensions' | sort -u"
"${sshc[@]}" 'sudo poweroff' 2>/dev/null || true
echo "guestboot: $fmt seed taken by the guest"
