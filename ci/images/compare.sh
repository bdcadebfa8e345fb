#!/usr/bin/env bash
# ci/images/compare.sh: measure what Berth's trimmed vmm image is compared with, on this machine,
# from the same Debian release (bookworm), since no registry is reachable to pull the peers:
#   debian-qemu   debian:bookworm-slim + `apt-get install --no-install-recommends qemu-system-x86`
#                 (the straightforward image a Containerfile without trimming gives)
#   qemux-like    debian:bookworm-slim + the apt packages qemus/qemu's Dockerfile installs
#                 (github.com/qemus/qemu, Dockerfile: qemu-system-x86, qemu-utils, ovmf, swtpm,
#                 nginx, dnsmasq, iptables, ...; its qemu-system-modules-spice is part of bookworm's
#                 qemu-system-x86); without its noVNC, passt and Python venv, so a
#                 lower bound of the real qemux/qemu image
#   debian-novnc  debian:bookworm-slim + `apt-get install --no-install-recommends novnc websockify`
#                 (what the novnc image holds, untrimmed: with nodejs, numpy, ... from the Depends)
# Writes out/images/compare.tsv: name<TAB>bytes (podman's uncompressed image size).
# Needs the base image ci/images/build.sh makes and apt through the network. About 2 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
OUT=$repo/out/images
DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
mkdir -p "$OUT"
podman image exists "$DEBIAN_IMAGE" || "$here/build.sh" dnsmasq >/dev/null # makes the base
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
build() { # build NAME PACKAGES...
	local name=$1
	shift
	printf 'FROM %s\nRUN apt-get update -qq && apt-get install -y -qq --no-install-recommends %s >/dev/null && rm -rf /var/lib/apt/lists/*\n' \
		"$DEBIAN_IMAGE" "$*" >"$ctx/Containerfile.$name"
	timeout 1200 nice podman build -q -f "$ctx/Containerfile.$name" -t "localhost/berth-compare/$name:latest" "$ctx" >/dev/null
	printf '%s\t%s\n' "$name" "$(podman image inspect --format '{{.Size}}' "localhost/berth-compare/$name:latest")"
}
{
	build debian-qemu qemu-system-x86
	build qemux-like bc jq xxd tini wget 7zip curl ovmf fdisk nginx swtpm procps ethtool iptables iproute2 \
		dnsmasq xz-utils apt-utils dos2unix net-tools e2fsprogs qemu-utils genisoimage inotify-tools \
		netcat-openbsd ca-certificates qemu-system-x86
	build debian-novnc novnc websockify
} >"$OUT/compare.tsv.tmp"
mv "$OUT/compare.tsv.tmp" "$OUT/compare.tsv"
cat "$OUT/compare.tsv"
