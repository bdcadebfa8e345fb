#!/usr/bin/env bash
# Boot a guest image by hand with plain QEMU: TCG, user networking (SSH forwarded to 127.0.0.1), a
# NoCloud seed ISO made with genisoimage, a throwaway overlay so the image itself is never written.
# This is the baseline Berth is measured against (ci/bench/boot.sh) and the first proof that the test
# guest boots (docs/testguest.md).
#
#   ci/testguest/qemu-user.sh [IMAGE]     default IMAGE: the one ci/testguest/build.sh prints
#
# Waits (bounded) until SSH answers, checks hostname and the runcmd marker, powers the guest off and
# prints `qemu_cpu_seconds=C` (QEMU's user+sys CPU time when SSH first answered) and
# `boot_to_ssh_seconds=N` as the last two lines. Env: VM_CPUS (2), VM_MEMORY_MIB (1024),
# BOOT_TIMEOUT (300 s), GUEST_REPORT=FILE writes the guest's own view of its boot there
# (ci/testguest/guest-report.sh, after cloud-init finished), SSH_HOST_KEY_TYPES (empty: the image's
# default; else cloud-init's ssh_genkeytypes, as ci/local-pod.sh takes it), KEEP=1 keeps the guest
# running and prints the ssh command instead.
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
img=${1:-$("$here/build.sh" | tail -1)}
[[ -f $img ]] || { echo "qemu-user: no image at $img" >&2; exit 2; }
cpus=${VM_CPUS:-2}
mem=${VM_MEMORY_MIB:-1024}
timeout=${BOOT_TIMEOUT:-300}
name=tg-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')

work=$(mktemp -d /tmp/berth-qemu-user.XXXXXX)
qpid=
cleanup() {
  [[ -n $qpid ]] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
  rm -rf "$work"
}
if [[ ${KEEP:-0} != 1 ]]; then trap cleanup EXIT; fi

ssh-keygen -q -t ed25519 -N '' -f "$work/id" -C berth-test
cat >"$work/meta-data" <<EOF
instance-id: $name
local-hostname: $name
EOF
cat >"$work/user-data" <<EOF
#cloud-config
ssh_authorized_keys:
  - $(cat "$work/id.pub")
runcmd:
  - [ sh, -c, 'echo berth-runcmd-ok > /var/lib/berth-marker' ]
EOF
if [[ -n ${SSH_HOST_KEY_TYPES:-} ]]; then
  [[ $SSH_HOST_KEY_TYPES =~ ^(rsa|ecdsa|ed25519)(,(rsa|ecdsa|ed25519))*$ ]] ||
    { echo "qemu-user: SSH_HOST_KEY_TYPES=$SSH_HOST_KEY_TYPES: want a comma-separated list of rsa, ecdsa, ed25519" >&2; exit 2; }
  echo "ssh_genkeytypes: [${SSH_HOST_KEY_TYPES//,/, }]" >>"$work/user-data"
fi
genisoimage -quiet -output "$work/seed.iso" -volid cidata -joliet -rock "$work/user-data" "$work/meta-data"
qemu-img create -q -f qcow2 -F qcow2 -b "$img" "$work/disk.qcow2"

# A free port for SSH on 127.0.0.1.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start=$(date +%s.%N)
qemu-system-x86_64 -name "$name" -nodefaults -display none -accel tcg -cpu max \
  -smp "$cpus" -m "$mem" \
  -drive "file=$work/disk.qcow2,format=qcow2,if=virtio" \
  -drive "file=$work/seed.iso,format=raw,media=cdrom,readonly=on" \
  -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=net0 \
  -serial "file:$work/console.log" &
qpid=$!

sshc=(ssh -i "$work/id" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o LogLevel=ERROR -o ConnectTimeout=3 -o BatchMode=yes debian@127.0.0.1)
deadline=$(($(date +%s) + timeout))
until "${sshc[@]}" true 2>/dev/null; do
  kill -0 "$qpid" 2>/dev/null || { tail -20 "$work/console.log" >&2; echo "qemu-user: QEMU exited" >&2; exit 1; }
  (($(date +%s) < deadline)) || { tail -20 "$work/console.log" >&2; echo "qemu-user: no SSH within ${timeout}s" >&2; exit 1; }
  sleep 1
done
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
# utime + stime (fields 14, 15; QEMU's command name has no spaces) in clock ticks.
cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$qpid/stat")
echo "qemu-user: SSH answered after ${secs}s" >&2

if [[ ${KEEP:-0} == 1 ]]; then
  echo "qemu-user: guest left running (QEMU pid $qpid, files in $work): ${sshc[*]}" >&2
  echo "qemu_cpu_seconds=$cpu"
  echo "boot_to_ssh_seconds=$secs"
  exit 0
fi
got=$("${sshc[@]}" hostname)
[[ $got == "$name" ]] || { echo "qemu-user: hostname is '$got', want '$name'" >&2; exit 1; }
"${sshc[@]}" 'timeout 120 cloud-init status --wait' >/dev/null || { echo "qemu-user: cloud-init did not finish cleanly" >&2; exit 1; }
marker=$("${sshc[@]}" 'cat /var/lib/berth-marker') || marker=
[[ $marker == berth-runcmd-ok ]] || { echo "qemu-user: runcmd marker missing" >&2; exit 1; }
if [[ -n ${GUEST_REPORT:-} ]]; then
  "${sshc[@]}" 'timeout 300 sh -s' <"$here/guest-report.sh" >"$GUEST_REPORT" || { echo "qemu-user: guest report failed" >&2; exit 1; }
fi
"${sshc[@]}" 'sudo systemctl poweroff' 2>/dev/null || true
for _ in $(seq 60); do kill -0 "$qpid" 2>/dev/null || break; sleep 1; done
if kill -0 "$qpid" 2>/dev/null; then echo "qemu-user: guest did not power off within 60 s" >&2; exit 1; fi
wait "$qpid" || true
qpid=
echo "qemu-user: ok (hostname $got, runcmd ran, powered off)" >&2
echo "qemu_cpu_seconds=$cpu"
echo "boot_to_ssh_seconds=$secs"
