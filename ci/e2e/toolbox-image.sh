#!/usr/bin/env bash
# ci/e2e/toolbox-image.sh: build the end-to-end tests' helper image (no registry here) and import it
# into the cluster's containerd: FROM scratch + Debian's busybox (with its libraries) + fileserver,
# a static Go HTTP file server. Tagged localhost/berth/e2e-toolbox:0.1.0; rebuilt only when its
# inputs change. Prints the image name.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../cluster/lib.sh
. "$repo/ci/cluster/lib.sh"
IMAGE=localhost/berth/e2e-toolbox:0.1.0
out=$repo/out/e2e
mkdir -p "$out"

sum=$( (cat "$here"/fileserver/*.go "$here/toolbox-image.sh"; sha256sum /bin/busybox) | sha256sum | cut -c1-16)
tar=$out/e2e-toolbox-$sum.oci.tar
if [ ! -f "$tar" ]; then
	ctx=$(mktemp -d)
	trap 'rm -rf "$ctx"' EXIT
	(cd "$here/fileserver" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ctx/fileserver" .)
	mkdir -p "$ctx/root/bin" "$ctx/root/lib64" "$ctx/root/lib/x86_64-linux-gnu" "$ctx/root/tmp" "$ctx/root/srv"
	cp /bin/busybox "$ctx/root/bin/"
	for lib in $(ldd /bin/busybox | grep -o '/lib[^ ]*'); do cp -L "$lib" "$ctx/root$lib"; done
	for app in $(/bin/busybox --list); do [ "$app" = busybox ] || ln -sf busybox "$ctx/root/bin/$app"; done
	mv "$ctx/fileserver" "$ctx/root/bin/fileserver"
	printf 'FROM scratch\nCOPY root/ /\nENV PATH=/bin\nCMD ["/bin/sh"]\n' >"$ctx/Containerfile"
	timeout 300 podman build -q -t "$IMAGE" "$ctx" >/dev/null
	rm -f "$out"/e2e-toolbox-*.oci.tar
	timeout 120 podman save -q --format oci-archive -o "$tar.tmp" "$IMAGE"
	mv "$tar.tmp" "$tar"
fi
if [ -S "$CONTAINERD_SOCK" ]; then
	"$repo/ci/cluster/load-images" "$tar"
fi
echo "$IMAGE"
