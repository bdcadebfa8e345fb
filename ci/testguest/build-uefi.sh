#!/usr/bin/env bash
# Build (or reuse) the UEFI variant of Berth's test guest: the generic-kernel test guest
# (TESTGUEST_KERNEL=generic ci/testguest/build.sh) moved onto a GPT disk with an EFI System Partition
# holding Debian's signed shim and GRUB, so that under OVMF Secure Boot (Microsoft keys enrolled) the
# whole chain is verified: firmware -> shim (Microsoft UEFI CA) -> GRUB (Debian's key, in shim) ->
# kernel (Debian's key, checked by GRUB through shim's protocol).
#
# Contract (docs/testguest.md, same as build.sh): the LAST line of stdout is the qcow2's absolute
# path; everything else goes to stderr. The image is cached under
# $BERTH_CACHE/testguest/uefi-<hash>/ and reused; concurrent runs build once (flock), the result
# appears atomically (rename) or not at all.
#
# Disk: GPT, partition 1 the ESP (FAT32, 64 MiB, EF00): EFI/BOOT/BOOTX64.EFI (shim),
# EFI/BOOT/grubx64.efi, grub.cfg in EFI/debian/ (the signed GRUB's built-in prefix) and EFI/BOOT/
# (its fallback, $cmdpath); partition 2 the base's root ext4 (same label and UUID, same fstab), shrunk
# with resize2fs only as far as needed for the ESP to fit in the same virtual size.
#
# Needs root (build.sh does; the cache). Env: BERTH_CACHE (default /var/cache/berth),
# TESTGUEST_UEFI_BOOTLOADER (signed, the default: Debian's signed GRUB, boots under Secure Boot; or
# unsigned: a GRUB made here with grub-mkimage, which shim must refuse under Secure Boot; part of the
# hash and of the file's name), TESTGUEST_LOCK_WAIT (seconds to wait for a concurrent build, default
# 1800). TESTGUEST_DISK_SIZE is passed on to build.sh (the base's size is this disk's size).
set -euo pipefail

BOOTLOADER=${TESTGUEST_UEFI_BOOTLOADER:-signed}
case $BOOTLOADER in
  signed | unsigned) ;;
  *)
    echo "testguest-uefi: error: TESTGUEST_UEFI_BOOTLOADER=$BOOTLOADER: want signed or unsigned" >&2
    exit 2
    ;;
esac
NAME=debian-12-testguest-uefi-$BOOTLOADER.qcow2
ESP_MIB=64
SHIM=/usr/lib/shim/shimx64.efi.signed
SIGNED_GRUB=/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed
# The unsigned GRUB's modules: what grub.cfg below uses, built in (no insmod from the ESP).
GRUB_MODULES="part_gpt part_msdos fat ext2 normal configfile search search_fs_uuid search_label
search_fs_file linux gzio serial terminal echo test boot all_video efi_gop"
GUID_ESP=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
GUID_LINUX=0FC63DAF-8483-4772-8E79-3D69D8477DE4

log() { echo "testguest-uefi: $*" >&2; }
die() { echo "testguest-uefi: error: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (the base's build and the cache need it)"
for t in qemu-img python3 sfdisk mkfs.vfat mmd mcopy e2fsck resize2fs debugfs dumpe2fs flock sha256sum \
  apt-get apt-cache dpkg-deb; do
  command -v "$t" >/dev/null || die "$t not found: run ci/install-deps.sh"
done
if [[ $BOOTLOADER == unsigned ]]; then
  command -v grub-mkimage >/dev/null || die "grub-mkimage not found: install grub-efi-amd64-bin"
  [[ -d /usr/lib/grub/x86_64-efi ]] || die "/usr/lib/grub/x86_64-efi missing: install grub-efi-amd64-bin"
fi

self=$(readlink -f "${BASH_SOURCE[0]}")
here=$(dirname "$self")

# The base: the generic-kernel test guest (cached by build.sh; built first if it is not).
base=$(TESTGUEST_KERNEL=generic "$here/build.sh" | tail -1)
[[ -f $base ]] || die "build.sh gave no image (last line: '$base')"

# Package versions: the ones apt would download now (pinned below, so hash and content agree).
candidate() {
  local v
  v=$(apt-cache policy "$1" | awk '$1 == "Candidate:" { print $2 }')
  [[ -n $v && $v != "(none)" ]] || die "no candidate version of $1: run apt-get update"
  echo "$v"
}
shim_ver=$(candidate shim-signed)
if [[ $BOOTLOADER == signed ]]; then
  grub_ver=$(candidate grub-efi-amd64-signed)
else
  grub_ver=bin-$(dpkg-query -W -f='${Version}' grub-efi-amd64-bin)
fi

# The inputs: this script (layout, grub.cfg), the bootloader variant and the packages' versions, the
# base image (its path holds build.sh's hash; size and mtime change when it is rebuilt).
hash=$( {
  cat "$self"
  echo "bootloader=$BOOTLOADER shim=$shim_ver grub=$grub_ver"
  echo "base=$base $(stat -c '%s %Y' "$base")"
} | sha256sum | cut -c1-16)
dir=${BERTH_CACHE:-/var/cache/berth}/testguest/uefi-$hash
out=$dir/$NAME

# shellcheck source=ci/testguest/cache.sh
. "$here/cache.sh"
cache_take "$dir" "$out" "uefi-$hash"

cache_work "$dir"

start=$(date +%s)
log "building $NAME from $base (shim-signed $shim_ver, grub $grub_ver) in $work"

# 1. The bootloaders, from Debian's packages (apt checks them against the signed archive); extracted
#    into the work dir, never installed on the host.
mkdir -p "$work/debs" "$work/x"
pkgs=("shim-signed=$shim_ver")
[[ $BOOTLOADER == signed ]] && pkgs+=("grub-efi-amd64-signed=$grub_ver")
log "apt-get download ${pkgs[*]}"
(cd "$work/debs" && apt-get download -q -o APT::Sandbox::User=root "${pkgs[@]}" >&2)
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/x"; done
[[ -f $work/x$SHIM ]] || die "$SHIM not in shim-signed $shim_ver"
if [[ $BOOTLOADER == signed ]]; then
  [[ -f $work/x$SIGNED_GRUB ]] || die "$SIGNED_GRUB not in grub-efi-amd64-signed $grub_ver"
  cp "$work/x$SIGNED_GRUB" "$work/grubx64.efi"
  # Debian's signed GRUB has the prefix /EFI/debian built in (its memdisk grub.cfg then sources
  # $prefix/grub.cfg, else $cmdpath/grub.cfg). Make sure that is still so.
  n=$(grep -c -a -F /EFI/debian "$work/grubx64.efi" || true)
  [[ $n -gt 0 ]] || die "the signed GRUB has no /EFI/debian prefix: check it with strings"
else
  # shellcheck disable=SC2086 # the module list is meant to split
  grub-mkimage -O x86_64-efi -p /EFI/debian -o "$work/grubx64.efi" $GRUB_MODULES
fi

# 2. The base's root file system, out of its MBR disk.
qemu-img convert -f qcow2 -O raw "$base" "$work/base.raw"
disk_bytes=$(stat -c %s "$work/base.raw")
read -r pstart psize < <(sfdisk -J "$work/base.raw" | python3 -c \
  'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"][0]; print(p["start"], p["size"])')
dd if="$work/base.raw" of="$work/root.img" bs=1M skip=$((pstart * 512)) count=$((psize * 512)) \
  iflag=skip_bytes,count_bytes conv=sparse status=none
rm -f "$work/base.raw"
[[ $(stat -c %s "$work/root.img") == $((psize * 512)) ]] || die "root partition copy has the wrong size"
fs_label=$(dumpe2fs -h "$work/root.img" 2>/dev/null | awk -F': *' '$1 == "Filesystem volume name" { print $2 }')
fs_uuid=$(dumpe2fs -h "$work/root.img" 2>/dev/null | awk -F': *' '$1 == "Filesystem UUID" { print $2 }')
fs_bsize=$(dumpe2fs -h "$work/root.img" 2>/dev/null | awk -F': *' '$1 == "Block size" { print $2 }')
fs_blocks=$(dumpe2fs -h "$work/root.img" 2>/dev/null | awk -F': *' '$1 == "Block count" { print $2 }')
[[ -n $fs_uuid && -n $fs_bsize && -n $fs_blocks ]] || die "the base's root partition is not ext2/3/4"
log "root fs: label '$fs_label', UUID $fs_uuid, $fs_blocks blocks of $fs_bsize"

# The kernel, initrd and command line the base boots with (its extlinux.conf), read without mounting.
ls_boot=$(debugfs -R 'ls -p /boot' "$work/root.img" 2>/dev/null | awk -F/ 'NF > 5 { print $6 }')
kernel=$(grep -E '^vmlinuz-' <<<"$ls_boot" | sort -V | tail -1 || true)
kver=${kernel#vmlinuz-}
if [[ -z $kernel ]] || ! grep -qx -F "initrd.img-$kver" <<<"$ls_boot"; then
  die "no vmlinuz-*/initrd.img-* pair in the root fs's /boot"
fi
cmdline=$(debugfs -R 'cat /boot/extlinux/extlinux.conf' "$work/root.img" 2>/dev/null |
  awk '$1 == "append" { $1 = ""; sub(/^ +/, ""); print; exit }')
[[ -n $cmdline ]] || die "no append line in the base's /boot/extlinux/extlinux.conf"
rootarg=
read -r -a words <<<"$cmdline"
for w in "${words[@]}"; do
  if [[ $w == root=* ]]; then rootarg=${w#root=}; fi
done
case $rootarg in
  LABEL=*) [[ ${rootarg#LABEL=} == "$fs_label" ]] || die "root=$rootarg but the fs label is '$fs_label'" ;;
  UUID=*) [[ ${rootarg#UUID=} == "$fs_uuid" ]] || die "root=$rootarg but the fs UUID is $fs_uuid" ;;
  *) die "root=$rootarg: want LABEL= or UUID= (partition names change on the new disk)" ;;
esac
log "kernel $kernel, command line: $cmdline"

# 3. The GPT layout, same virtual size: ESP from 1 MiB, root after it up to 1 MiB before the end (the
#    backup GPT). The root fs is shrunk (resize2fs keeps label, UUID and every file) only if needed.
sectors=$((disk_bytes / 512))
esp_start=2048
esp_size=$((ESP_MIB * 2048))
root_start=$((esp_start + esp_size))
root_size=$((sectors - root_start - 2048))
root_blocks=$((root_size * 512 / fs_bsize))
if ((fs_blocks > root_blocks)); then
  log "shrinking the root fs from $fs_blocks to $root_blocks blocks to make room for the ESP"
  rc=0
  e2fsck -f -y "$work/root.img" >&2 || rc=$?
  ((rc <= 1)) || die "e2fsck of the root fs failed ($rc)"
  resize2fs "$work/root.img" "$root_blocks" >&2
else
  root_size=$((fs_blocks * fs_bsize / 512))
fi

truncate -s "$disk_bytes" "$work/disk.raw"
sfdisk --quiet "$work/disk.raw" >&2 <<EOF
label: gpt
start=$esp_start, size=$esp_size, type=$GUID_ESP, name="EFI System"
start=$root_start, size=$root_size, type=$GUID_LINUX, name="root"
EOF

# 4. The ESP.
cat >"$work/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
set default=0
search --no-floppy --fs-uuid --set=root $fs_uuid
menuentry "Debian 12 test guest ($kver)" {
  linux /boot/$kernel $cmdline
  initrd /boot/initrd.img-$kver
}
EOF
mkfs.vfat -F 32 -s 1 -n ESP -C "$work/esp.img" $((ESP_MIB * 1024)) >&2
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT ::/EFI/debian
mcopy -i "$work/esp.img" "$work/x$SHIM" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$work/esp.img" "$work/grubx64.efi" ::/EFI/BOOT/grubx64.efi
mcopy -i "$work/esp.img" "$work/grub.cfg" ::/EFI/debian/grub.cfg
mcopy -i "$work/esp.img" "$work/grub.cfg" ::/EFI/BOOT/grub.cfg

# 5. Both partitions into the disk, then a compressed qcow2 renamed into place (atomic).
dd if="$work/esp.img" of="$work/disk.raw" bs=1M seek=$((esp_start * 512)) oflag=seek_bytes \
  conv=notrunc,sparse status=none
dd if="$work/root.img" of="$work/disk.raw" bs=1M seek=$((root_start * 512)) oflag=seek_bytes \
  count=$((root_size * 512)) iflag=count_bytes conv=notrunc,sparse status=none
rm -f "$work/root.img" "$work/esp.img"
sfdisk -d "$work/disk.raw" >&2
qemu-img convert -c -f raw -O qcow2 "$work/disk.raw" "$work/$NAME"
mv "$work/$NAME" "$out"
total=$(($(date +%s) - start))
size=$(stat -c %s "$out")
log "built $out: $((size / 1024 / 1024)) MiB, ${total}s"
printf 'built_seconds=%s\nbytes=%s\nkernel=%s\nbootloader=%s\nshim=%s\ngrub=%s\nbase=%s\nroot_uuid=%s\n' \
  "$total" "$size" "$kver" "$BOOTLOADER" "$shim_ver" "$grub_ver" "$base" "$fs_uuid" >"$dir/build.info"
echo "$out"
