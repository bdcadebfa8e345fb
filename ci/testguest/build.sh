#!/usr/bin/env bash
# Build (or reuse) Berth's test guest: a small Debian 12 cloud-init qcow2 made from Debian's packages
# only, with mmdebstrap. It boots from the disk alone (extlinux in the MBR), takes its network by DHCP
# on the first NIC (cloud-init renders ifupdown config), reads a config-drive or NoCloud seed and runs
# sshd. Default user: debian.
#
# Contract (docs/testguest.md): the LAST line of stdout is the qcow2's absolute path; everything else
# goes to stderr. The image is cached under $BERTH_CACHE/testguest/<hash of this script>/ and reused;
# concurrent runs build once (flock), the result appears atomically (rename) or not at all.
#
# Needs root (loop device and mount). Env: BERTH_CACHE (default /var/cache/berth),
# TESTGUEST_DISK_SIZE (virtual disk size, default 2G; part of the hash), TESTGUEST_KERNEL (cloud,
# the default: Debian's small cloud kernel; or generic: linux-image-amd64, which has the drivers the
# cloud kernel leaves out, e.g. the i6300esb watchdog; part of the hash and of the file's name),
# TESTGUEST_LOCK_WAIT (seconds to wait for a concurrent build, default 1800).
set -euo pipefail

SUITE=bookworm
DISK_SIZE=${TESTGUEST_DISK_SIZE:-2G}
KERNEL=${TESTGUEST_KERNEL:-cloud}
case $KERNEL in
  cloud) KERNEL_PACKAGE=linux-image-cloud-amd64 NAME=debian-12-testguest.qcow2 ;;
  generic) KERNEL_PACKAGE=linux-image-amd64 NAME=debian-12-testguest-generic.qcow2 ;;
  *) echo "testguest: error: TESTGUEST_KERNEL=$KERNEL: want cloud or generic" >&2; exit 2 ;;
esac
# fio: ci/bench/disk.sh measures the data disks with it inside the guest. qemu-guest-agent: vmm's
# `vmm agent` and READY_WHEN=agent; its udev rule starts qemu-guest-agent.service when the virtio
# port org.qemu.guest_agent.0 appears (no enabling needed). tpm2-tools: vmm's TPM test writes the
# TPM's NV storage and reads it back after a restart (/dev/tpmrm0, Debian's tpm_crb driver).
PACKAGES=$KERNEL_PACKAGE,systemd-sysv,udev,cloud-init,cloud-guest-utils,openssh-server,ifupdown,isc-dhcp-client,sudo,extlinux,iproute2,netbase,ca-certificates,dbus,fio,qemu-guest-agent,tpm2-tools

log() { echo "testguest: $*" >&2; }
die() { echo "testguest: error: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (loop device and mount)"
for t in mmdebstrap sfdisk mkfs.ext4 losetup extlinux qemu-img flock sha256sum; do
  command -v "$t" >/dev/null || die "$t not found: run ci/install-deps.sh"
done
[[ -f /usr/lib/EXTLINUX/mbr.bin ]] || die "/usr/lib/EXTLINUX/mbr.bin missing: install extlinux"

self=$(readlink -f "${BASH_SOURCE[0]}")
# The inputs: this script (package list, configuration written into the image), the disk size and
# the kernel. (cache.sh, sourced below, is how the cache is kept, not what is in the image.)
hash=$( { cat "$self"; echo "disk=$DISK_SIZE"; echo "kernel=$KERNEL"; } | sha256sum | cut -c1-16)
root=${BERTH_CACHE:-/var/cache/berth}/testguest
dir=$root/$hash
out=$dir/$NAME

# shellcheck source=ci/testguest/cache.sh
. "$(dirname "$self")/cache.sh"
cache_take "$dir" "$out" "$hash"

work=$(mktemp -d "$dir/.build.XXXXXX")
mnt=$work/mnt
loop=
cleanup() {
  set +e
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || umount -l "$mnt"; fi
  [[ -n $loop ]] && losetup -d "$loop"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
log "building $NAME ($SUITE, $DISK_SIZE) in $work"

# 1. Root file system from Debian's packages, with the machine's own apt sources.
log "mmdebstrap ($PACKAGES)"
# shellcheck disable=SC2016 # the hook's "$1" is mmdebstrap's, expanded by it
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  "$SUITE" "$work/rootfs.tar" >&2
t_rootfs=$(($(date +%s) - start))

# 2. A raw disk: one bootable ext4 partition labelled root (MBR, starting at 1 MiB).
truncate -s "$DISK_SIZE" "$work/disk.raw"
echo 'start=2048, type=83, bootable' | sfdisk --quiet "$work/disk.raw" >&2
read -r pstart psize < <(sfdisk -J "$work/disk.raw" | python3 -c \
  'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"][0]; print(p["start"], p["size"])')
# No udev here, so `losetup -P` makes no partition nodes: attach the partition by offset.
loop=$(losetup -f --show -o $((pstart * 512)) --sizelimit $((psize * 512)) "$work/disk.raw")
mkfs.ext4 -q -L root -E lazy_itable_init=0,lazy_journal_init=0 "$loop" >&2
mkdir -p "$mnt"
mount "$loop" "$mnt"
tar -C "$mnt" --numeric-owner --xattrs --xattrs-include='*' -xpf "$work/rootfs.tar"

# 3. Configuration: what makes it a cloud guest.
# shellcheck disable=SC2012 # kernel file names: no spaces or newlines
kver=$(basename "$(ls "$mnt"/boot/vmlinuz-* | sort -V | tail -1)" | sed 's/^vmlinuz-//')
[[ -n $kver && -f $mnt/boot/initrd.img-$kver ]] || die "kernel or initrd missing in the root fs"
cat >"$mnt/etc/fstab" <<'EOF'
LABEL=root / ext4 defaults,errors=remount-ro 0 1
EOF
cat >"$mnt/etc/network/interfaces" <<'EOF'
# cloud-init writes the guest's network config (DHCP on the first NIC) into interfaces.d.
auto lo
iface lo inet loopback
source /etc/network/interfaces.d/*
EOF
cat >"$mnt/etc/cloud/cloud.cfg.d/90-berth.cfg" <<'EOF'
# Read the seed from a local disk only: never probe network metadata services.
datasource_list: [ ConfigDrive, NoCloud, None ]
# sudo resolves the hostname quietly.
manage_etc_hosts: true
# minbase has no locales package: leave the locale alone (else cloud-init's locale module fails and
# `cloud-init status` reports an error).
locale: false
EOF
echo debian >"$mnt/etc/hostname"
: >"$mnt/etc/machine-id" # each guest makes its own on first boot
rm -f "$mnt/var/lib/dbus/machine-id"
mkdir -p "$mnt/boot/extlinux"
cat >"$mnt/boot/extlinux/extlinux.conf" <<EOF
default debian
timeout 1
prompt 0
label debian
  kernel /boot/vmlinuz-$kver
  initrd /boot/initrd.img-$kver
  append root=LABEL=root ro console=tty0 console=ttyS0,115200 net.ifnames=0
EOF
extlinux --install "$mnt/boot/extlinux" >&2
rm -rf "$mnt"/var/cache/apt/*.bin "$mnt"/var/lib/apt/lists/* "$mnt"/var/log/*.log
fstrim "$mnt" 2>/dev/null || true
umount "$mnt"
losetup -d "$loop"
loop=
dd if=/usr/lib/EXTLINUX/mbr.bin of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none

# 4. Compressed qcow2, renamed into place (atomic: readers see all of it or nothing).
qemu-img convert -c -f raw -O qcow2 "$work/disk.raw" "$work/$NAME"
mv "$work/$NAME" "$out"
total=$(($(date +%s) - start))
size=$(stat -c %s "$out")
log "built $out: $((size / 1024 / 1024)) MiB, ${total}s (rootfs ${t_rootfs}s)"
printf 'built_seconds=%s\nrootfs_seconds=%s\nbytes=%s\nkernel=%s\n' "$total" "$t_rootfs" "$size" "$kver" >"$dir/build.info"
echo "$out"
