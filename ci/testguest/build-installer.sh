#!/usr/bin/env bash
# Build (or reuse) Berth's test installer: a tiny BIOS-bootable OS *installer* ISO made from Debian's
# packages only, for the end-to-end test of "install an OS from an ISO onto a blank disk". Booted as
# a CD (El Torito, GRUB), its kernel's busybox initramfs writes a "system image" it carries onto
# /dev/vda (virtio-blk), checks it, and reboots; the system it wrote then boots from that disk alone
# (no CD needed) and stays up until an ACPI power-button press, which powers it off.
#
# Contract (docs/testguest.md, same as build.sh): the LAST line of stdout is the ISO's absolute path;
# everything else goes to stderr. The ISO is cached under $BERTH_CACHE/testguest/installer-<hash>/
# and reused; concurrent runs build once (flock), the result appears atomically (rename) or not at
# all.
#
# Console lines (ttyS0, 115200), exactly:
#   berth-installer: writing the system to /dev/vda
#   berth-installer: installed, rebooting                      (then reboot -f: a reset)
#   berth-installer: error: ...                                (instead, on failure; then poweroff -f)
#   berth-installed: booted from disk                          (the installed system, acpid listening)
#   berth-installed: power button, powering off                (on an ACPI power-button press)
#
# Both the ISO and the system image are hybrid images made by grub-mkrescue (i386-pc only): ISO 9660
# with GRUB as the El Torito boot image and GRUB's boot_hybrid.img in the MBR, so the same bytes boot
# as a CD and, written to a disk, from that disk (SeaBIOS, virtio-blk). Nothing is mounted, no loop
# device. The kernel is Debian's generic linux-image-amd64: vmm attaches ISOs on SATA (AHCI), which
# the cloud kernel has no driver for (virtio_blk, virtio_pci, ahci, sr_mod, isofs, the ACPI button
# and evdev are modules there: they go into the initramfs with their dependencies and are insmod'ed),
# busybox from busybox-static; both fetched with apt-get download and unpacked in the work dir, never
# installed on the host.
#
# Needs root (the cache, as build.sh). Env: BERTH_CACHE (default /var/cache/berth),
# TESTGUEST_LOCK_WAIT (seconds to wait for a concurrent build, default 1800).
set -euo pipefail

NAME=berth-test-installer.iso
KERNEL_META=linux-image-amd64
GRUB_DIR=/usr/lib/grub/i386-pc
# The kernel's command line, both systems. No `quiet`: the kernel's log is the test's best witness
# when something fails, and it costs well under a second under TCG.
CMDLINE="console=ttyS0,115200"
# The installer needs the disk (virtio-blk behind virtio-pci) and its CD (SATA as vmm attaches ISOs,
# virtio-scsi too; sr, ISO 9660), where the system image is; the installed system the power button (ACPI button -> input device ->
# evdev, which busybox acpid reads).
INSTALLER_MODULES="virtio_pci virtio_blk ahci virtio_scsi sr_mod isofs"
SYSTEM_MODULES="button evdev"
# GRUB modules on the ISOs (and their dependencies): what the grub.cfg below and grub-mkrescue's
# embedded config (search --fs-uuid) use; every part_* is added below (GRUB's search loads all the
# partition maps in partmap.lst and prints an error for each one missing).
GRUB_MODULES="normal configfile linux search search_fs_uuid iso9660 biosdisk serial terminal echo test"

log() { echo "testguest-installer: $*" >&2; }
die() { echo "testguest-installer: error: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (the cache)"
for t in grub-mkrescue xorriso busybox gzip md5sum flock sha256sum apt-get apt-cache dpkg-deb dpkg-query; do
  command -v "$t" >/dev/null || die "$t not found: run ci/install-deps.sh"
done
for f in boot_hybrid.img cdboot.img linux.mod; do
  [[ -f $GRUB_DIR/$f ]] || die "$GRUB_DIR/$f missing: run ci/install-deps.sh (grub-pc-bin)"
done
for f in "$GRUB_DIR"/part_*.mod; do
  f=${f##*/}
  GRUB_MODULES+=" ${f%.mod}"
done

self=$(readlink -f "${BASH_SOURCE[0]}")
here=$(dirname "$self")

# Package versions: the ones apt would download now (pinned below, so hash and content agree). One
# apt-cache policy for both (each call reads all the package lists: most of a warm run's time).
read -r meta_ver bb_ver < <(apt-cache policy "$KERNEL_META" busybox-static | awk -v k="$KERNEL_META:" '
  /^[^ ]/ { p = $1 }
  $1 == "Candidate:" { c[p] = $2 }
  END { print (c[k] == "" ? "(none)" : c[k]), (c["busybox-static:"] == "" ? "(none)" : c["busybox-static:"]) }') || true
[[ -n ${meta_ver:-} && $meta_ver != "(none)" ]] || die "no candidate version of $KERNEL_META: run apt-get update"
[[ -n ${bb_ver:-} && $bb_ver != "(none)" ]] || die "no candidate version of busybox-static: run apt-get update"
# The metapackage depends on exactly one kernel package, pinned: "linux-image-6.1.0-N-amd64 (= V)".
read -r kpkg kver_pkg < <(apt-cache show "$KERNEL_META=$meta_ver" |
  awk -F': ' '$1 == "Depends" { print $2; exit }' | tr ',' '\n' |
  sed -n 's/^ *\(linux-image-[^ ]*\) (= \([^)]*\)).*/\1 \2/p' | head -1) || true
[[ -n ${kpkg:-} && -n ${kver_pkg:-} ]] || die "cannot tell which kernel package $KERNEL_META $meta_ver depends on"
grub_ver=$(dpkg-query -W -f='${Version}' grub-pc-bin)
xorriso_ver=$(dpkg-query -W -f='${Version}' xorriso)

# The inputs: this script (the two inits, the grub.cfg, the layout), the packages' versions and the
# host's GRUB and xorriso, which write the boot code.
hash=$( {
  cat "$self"
  echo "kernel=$kpkg=$kver_pkg busybox=$bb_ver grub-pc-bin=$grub_ver xorriso=$xorriso_ver"
} | sha256sum | cut -c1-16)
dir=${BERTH_CACHE:-/var/cache/berth}/testguest/installer-$hash
out=$dir/$NAME

# shellcheck source=ci/testguest/cache.sh
. "$here/cache.sh"
cache_take "$dir" "$out" "installer-$hash"

cache_work "$dir"

start=$(date +%s)
log "building $NAME ($kpkg $kver_pkg, busybox-static $bb_ver, grub-pc-bin $grub_ver) in $work"

# 1. Kernel, modules and busybox from Debian's packages (apt checks them against the signed
#    archive), unpacked in the work dir.
mkdir -p "$work/debs" "$work/x"
log "apt-get download $kpkg=$kver_pkg busybox-static=$bb_ver"
(cd "$work/debs" && apt-get download -q -o APT::Sandbox::User=root "$kpkg=$kver_pkg" "busybox-static=$bb_ver" >&2)
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/x"; done
rm -rf "$work/debs"
vmlinuz=$(find "$work/x/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -1)
[[ -n $vmlinuz ]] || die "no /boot/vmlinuz-* in $kpkg"
kver=${vmlinuz##*/vmlinuz-}
kmods=$work/x/lib/modules/$kver
[[ -d $kmods/kernel ]] || die "no /lib/modules/$kver in $kpkg"
busybox=$work/x/bin/busybox
[[ -f $busybox ]] || die "no /bin/busybox in busybox-static $bb_ver"

# Module file by module name (file names may spell _ as -); .ko only: Debian 12 does not compress
# them (CONFIG_MODULE_COMPRESS_NONE), checked here so a change is loud.
declare -A ko=()
while IFS= read -r -d '' f; do
  n=${f##*/}
  n=${n%.ko}
  ko[${n//-/_}]=$f
done < <(find "$kmods/kernel" -name '*.ko' -print0)
((${#ko[@]} > 0)) || die "no uncompressed .ko modules under $kmods (compressed modules: add a decompressor)"
builtin_mod() { grep -q -E "/${1//_/[-_]}\.ko\$" "$kmods/modules.builtin"; }
# mod_deps NAME: NAME's module dependencies, from the .ko's modinfo (depends=a,b).
mod_deps() { tr '\0' '\n' <"${ko[$1]}" | sed -n 's/^depends=//p' | tr ',' ' '; }
# add_modules LIST DIR: each module of LIST and its dependencies, dependencies first, copied into
# DIR/lib/modules and listed in load order in DIR/lib/modules/load (built-in ones are skipped).
add_modules() {
  local list=$1 dst=$2/lib/modules
  mkdir -p "$dst"
  : >"$dst/load"
  local -A seen=()
  visit() {
    local m=${1//-/_} d
    [[ -z ${seen[$m]:-} ]] || return 0
    seen[$m]=1
    if [[ -z ${ko[$m]:-} ]]; then
      builtin_mod "$m" || die "module $m: neither built in nor a .ko in $kpkg"
      return 0
    fi
    for d in $(mod_deps "$m"); do visit "$d"; done
    cp "${ko[$m]}" "$dst/$m.ko"
    echo "$m" >>"$dst/load"
  }
  local m
  for m in $list; do visit "$m"; done
  log "modules in ${2##*/}: $(tr '\n' ' ' <"$dst/load")"
}

# A busybox initramfs skeleton: /bin/busybox (its applets linked at boot), the usual mount points.
skeleton() {
  mkdir -p "$1"/{bin,dev,proc,sys,etc,tmp,var/log,var/run}
  cp "$busybox" "$1/bin/busybox"
  ln -s busybox "$1/bin/sh"
}
# cpio_gz DIR OUT: DIR as a gzip'd newc initramfs (host busybox's cpio; the files are root's).
cpio_gz() {
  (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | busybox cpio -o -H newc 2>/dev/null) | gzip -9n >"$2"
  [[ -s $2 ]] || die "empty initramfs $2"
}
# grub_iso TREE OUT: a hybrid (CD and disk) BIOS-bootable ISO of TREE, GRUB on the serial console.
grub_iso() {
  mkdir -p "$1/boot/grub"
  cat >"$1/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
set default=0
menuentry "$3" {
  linux /boot/vmlinuz $CMDLINE
  initrd /boot/initrd.gz
}
EOF
  grub-mkrescue -d "$GRUB_DIR" --install-modules="$GRUB_MODULES" --fonts= --locales= --themes= \
    -o "$2" "$1" -V "$4" 2>"$work/grub-mkrescue.log" ||
    { cat "$work/grub-mkrescue.log" >&2; die "grub-mkrescue $2 failed"; }
  # A real ISO 9660 image (image-fetch checks this) with GRUB's MBR in front.
  [[ $(dd if="$2" bs=1 skip=$((0x8001)) count=5 status=none) == CD001 ]] || die "$2: no CD001 at 0x8001"
  [[ $(od -An -tx1 -j510 -N2 "$2" | tr -d ' ') == 55aa ]] || die "$2: no MBR boot signature"
}
# iso_uuid ISO: GRUB's UUID of an ISO 9660 image, the volume modification date (PVD bytes 830..846),
# which grub-mkrescue's embedded config searches for (search --fs-uuid).
iso_uuid() { dd if="$1" bs=1 skip=$((0x8000 + 830)) count=16 status=none; }

# 2. The installed system: busybox init that prints its marker once acpid listens, then stays up.
sysroot=$work/system-root
skeleton "$sysroot"
add_modules "$SYSTEM_MODULES" "$sysroot"
cat >"$sysroot/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
exec </dev/console >/dev/console 2>&1
while read -r m; do
  insmod "/lib/modules/$m.ko" || echo "berth-installed: warning: insmod $m failed"
done </lib/modules/load
# The power button's input device (LNXPWRBN, from the ACPI button driver) as /dev/input/event*:
# acpid opens event0, event1, ... as they are when it starts.
power_button() {
  for e in /sys/class/input/event*; do
    grep -qs '^Power Button$' "$e/device/name" && [ -c "/dev/input/${e##*/}" ] && return 0
  done
  return 1
}
i=0
while ! power_button && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
power_button || echo "berth-installed: warning: no power button input device"
acpid -l /dev/console || echo "berth-installed: warning: acpid did not start"
echo "berth-installed: booted from disk"
while :; do sleep 3600; done
EOF
mkdir -p "$sysroot/etc/acpi/PWRF"
# busybox acpid maps KEY_POWER to "PWRF/00000080" and runs /etc/acpi/PWRF/00000080.
cat >"$sysroot/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "berth-installed: power button, powering off" >/dev/console
sync
poweroff -f
EOF
chmod 0755 "$sysroot/init" "$sysroot/etc/acpi/PWRF/00000080"
systree=$work/system-iso
mkdir -p "$systree/boot"
cp "$vmlinuz" "$systree/boot/vmlinuz"
cpio_gz "$sysroot" "$systree/boot/initrd.gz"
grub_iso "$systree" "$work/system.img" "Berth test system (installed)" BERTH_SYSTEM
sys_done=$(date +%s)
sys_bytes=$(stat -c %s "$work/system.img")
sys_md5=$(md5sum "$work/system.img" | cut -d' ' -f1)
log "system image: $sys_bytes bytes, md5 $sys_md5"

# 3. The installer: busybox init that finds its CD (any /dev/sr* with berth/system.img.gz: the test
#    may attach a seed CD too), writes the system image onto /dev/vda, reads it back, reboots. The
#    image is a file on the CD, not in the initramfs: GRUB reads through the BIOS, slowly under TCG,
#    so it loads only the kernel and a small initramfs; Linux reads the image.
instroot=$work/installer-root
skeleton "$instroot"
mkdir -p "$instroot/cdrom"
add_modules "$INSTALLER_MODULES" "$instroot"
cat >"$instroot/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
exec </dev/console >/dev/console 2>&1
set -o pipefail
fail() {
  echo "berth-installer: error: $*"
  sync
  poweroff -f
  while :; do sleep 1; done
}
while read -r m; do
  insmod "/lib/modules/$m.ko" || fail "insmod $m failed"
done </lib/modules/load
# The CD holding the system image (SCSI scanning is asynchronous: retry for 10 s).
find_cd() {
  for d in /dev/sr*; do
    [ -b "$d" ] || continue
    mount -t iso9660 -o ro "$d" /cdrom 2>/dev/null || continue
    [ -f /cdrom/berth/system.img.gz ] && [ -f /cdrom/berth/system.img.info ] && return 0
    umount /cdrom
  done
  return 1
}
i=0
until [ -b /dev/vda ] && find_cd; do
  [ $i -lt 100 ] || fail "no /dev/vda or no CD with berth/system.img.gz after 10 s"
  usleep 100000
  i=$((i + 1))
done
read -r bytes md5 </cdrom/berth/system.img.info
disk=$(blockdev --getsize64 /dev/vda) || fail "cannot read the size of /dev/vda"
[ "$disk" -ge "$bytes" ] || fail "/dev/vda has $disk bytes, the system needs $bytes"
echo "berth-installer: writing the system to /dev/vda"
gunzip -c /cdrom/berth/system.img.gz | dd of=/dev/vda bs=1M 2>/dev/null || fail "writing /dev/vda failed"
sync
blockdev --flushbufs /dev/vda
echo 3 >/proc/sys/vm/drop_caches
got=$(head -c "$bytes" /dev/vda | md5sum | cut -d' ' -f1) || fail "reading /dev/vda back failed"
[ "$got" = "$md5" ] || fail "/dev/vda reads back as md5 $got, wrote $md5"
umount /cdrom
echo "berth-installer: installed, rebooting"
reboot -f
while :; do sleep 1; done
EOF
chmod 0755 "$instroot/init"
isotree=$work/installer-iso
mkdir -p "$isotree/boot" "$isotree/berth"
cp "$vmlinuz" "$isotree/boot/vmlinuz"
gzip -9n -c "$work/system.img" >"$isotree/berth/system.img.gz"
echo "$sys_bytes $sys_md5" >"$isotree/berth/system.img.info"
cpio_gz "$instroot" "$isotree/boot/initrd.gz"
# grub-mkrescue's UUID is the build time in seconds: the installer's must differ from the system's,
# else GRUB booted from the installed disk may find (and boot) the CD if it is still attached.
while (($(date +%s) <= sys_done)); do sleep 0.2; done
grub_iso "$isotree" "$work/$NAME" "Berth test installer" BERTH_INSTALLER
[[ $(iso_uuid "$work/$NAME") != "$(iso_uuid "$work/system.img")" ]] ||
  die "the installer and the system image have the same ISO UUID"

# 4. Renamed into place (atomic: readers see all of it or nothing).
mv "$work/$NAME" "$out"
total=$(($(date +%s) - start))
size=$(stat -c %s "$out")
log "built $out: $((size / 1024 / 1024)) MiB, ${total}s (system image $((sys_bytes / 1024 / 1024)) MiB)"
printf 'built_seconds=%s\nbytes=%s\nkernel=%s\nkernel_package=%s=%s\nbusybox=%s\nsystem_bytes=%s\nsystem_md5=%s\n' \
  "$total" "$size" "$kver" "$kpkg" "$kver_pkg" "$bb_ver" "$sys_bytes" "$sys_md5" >"$dir/build.info"
echo "$out"
