#!/usr/bin/env bash
# Idempotent set-up of everything Berth's build, tests, demo and benchmarks need on Debian 12, as root.
# Safe to run again: apt installs only what is missing, Go tools are installed once per version.
set -euo pipefail

# One package a line; add what a new test needs here, nowhere else.
PACKAGES=(
  # build
  make git ca-certificates curl jq openssl
  # make lint (shellcheck over every shell script)
  shellcheck
  # network data path (net-setup and its tests)
  iproute2 iptables nftables dnsmasq-base busybox isc-dhcp-client ethtool conntrack socat netcat-openbsd
  # images and guests (image-fetch, seed-iso, vmm)
  qemu-utils qemu-system-x86 genisoimage xorriso cloud-init python3-yaml
  # test guest builder
  mmdebstrap extlinux syslinux-common e2fsprogs fdisk dosfstools
  # firmware (UEFI, Secure Boot, TPM): OVMF and swtpm for vmm's tests on the host; mtools writes the
  # test guests' EFI system partitions, grub's BIOS and EFI modules make the installer ISO
  # (grub-mkrescue); tpm2-tools reads the host side of a TPM test
  ovmf swtpm swtpm-tools tpm2-tools mtools grub-common grub-pc-bin grub-efi-amd64-bin sbsigntool
  # container images
  podman buildah skopeo uidmap fuse-overlayfs
  # the single-node cluster (ci/cluster)
  containerd runc etcd-server containernetworking-plugins
  # end-to-end and benchmarks
  openssh-client iperf3 time python3-matplotlib iputils-ping
  # the web console's browser test (ci/console: playwright-core from npm drives Debian's Chromium)
  chromium nodejs
)

export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${PACKAGES[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *'install ok installed'* ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: apt installing: ${missing[*]}"
  # No service of these packages may start on the host: tests start what they need themselves.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go tools, pinned, from the Go module proxy.
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH
STATICCHECK_VERSION=0.8.2 # staticcheck 2026.2.2
if [[ $(staticcheck -version 2>/dev/null || true) != *"(${STATICCHECK_VERSION})"* ]]; then
  echo "install-deps: go install staticcheck@v$STATICCHECK_VERSION"
  go install "honnef.co/go/tools/cmd/staticcheck@v$STATICCHECK_VERSION"
fi
