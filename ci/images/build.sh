#!/usr/bin/env bash
# ci/images/build.sh [NAME...]: `make images`. Builds Berth's container images from images/<NAME>/Containerfile
# with podman, tags them ghcr.io/berth-vm/<NAME>:<version> and exports each as an OCI archive
# out/images/<NAME>.oci.tar (for `ctr -n k8s.io images import`, see ci/cluster/load-images).
# NAME: net-setup image-fetch seed-iso vmm dnsmasq novnc (default: all six).
#
# The Containerfiles use two base images, exactly as a user with a registry builds them:
#   docker.io/library/debian:bookworm-slim    (apt installs the runtime packages into a build stage)
#   docker.io/library/golang:1.26-bookworm    (compiles the static Go binary)
# Each is used when podman already has it, else pulled, else (no registry, as on CI here) made
# locally under the same name from Debian's packages: mmdebstrap --variant=minbase (the tarball
# cached in /var/cache/berth/images), and for Go, that rootfs plus the host's /usr/local/go (the
# official image's layout: GOPATH=/go, PATH with /usr/local/go/bin). The runtime stages reach
# Debian's apt mirror. The Go build stage does not reach the network: the host downloads the
# modules (go mod download, through its own proxy settings) and the build reads them from the host's
# module cache mounted read-only, as GOPROXY=file:///hostmod/cache/download (go.sum still checks
# every module). With GOPROXY_NETWORK=1 the build stage uses the Go module proxy itself instead.
#   IMAGE_PREFIX   default ghcr.io/berth-vm
#   IMAGE_VERSION  default 0.1.0 (the chart's appVersion)
#   PULL_BASES     1 (default): try `podman pull` of a missing base first; 0: go straight to mmdebstrap
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PATH=/usr/local/go/bin:$PATH

PREFIX=${IMAGE_PREFIX:-ghcr.io/berth-vm}
VERSION=${IMAGE_VERSION:-0.1.0}
DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
GO_IMAGE=docker.io/library/golang:1.26-bookworm
CACHE=${BERTH_CACHE:-/var/cache/berth}/images
OUT=$repo/out/images
GOMODCACHE_HOST=$(go env GOMODCACHE)
ALL=(net-setup image-fetch seed-iso vmm dnsmasq novnc)

log() { printf 'images: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

command -v podman >/dev/null || die "podman is not installed (ci/install-deps.sh)"
mkdir -p "$CACHE" "$OUT"
exec 9>"$CACHE/.lock"
flock 9 # one build at a time on this machine: concurrent callers wait, then reuse

# module NAME: the Go module whose cmd/NAME the image holds ("" for none).
module() {
	case $1 in
	net-setup) echo netsetup ;;
	image-fetch | seed-iso) echo init ;;
	vmm) echo vmm ;;
	dnsmasq | novnc) echo "" ;;
	*) die "unknown image '$1' (one of: ${ALL[*]})" ;;
	esac
}

try_pull() {
	[ "${PULL_BASES:-1}" = 1 ] || return 1
	timeout 60 podman pull -q "$1" >/dev/null 2>&1
}

ensure_debian() {
	podman image exists "$DEBIAN_IMAGE" && return 0
	try_pull "$DEBIAN_IMAGE" && { log "pulled $DEBIAN_IMAGE"; return 0; }
	local tar=$CACHE/debian-bookworm-minbase.tar
	if [ ! -f "$tar" ] || [ ! -s "$tar" ]; then
		log "no registry: making $DEBIAN_IMAGE with mmdebstrap --variant=minbase (about 30 s)"
		command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (ci/install-deps.sh)"
		# --format=tar: mmdebstrap picks the format from the file name, and "x.tar.tmp" would be a
		# directory. A directory left where the tarball belongs (by that mistake) goes too.
		local tmp=$CACHE/.debian-bookworm-minbase.tmp.tar
		rm -rf "$tmp" "$tar"
		timeout 900 nice mmdebstrap --quiet --format=tar --variant=minbase --include=ca-certificates \
			--aptopt='Acquire::Retries "3"' bookworm "$tmp" http://deb.debian.org/debian ||
			die "mmdebstrap bookworm"
		mv "$tmp" "$tar"
	fi
	podman import -q --change 'CMD ["bash"]' "$tar" "$DEBIAN_IMAGE" >/dev/null || die "podman import $tar"
	log "imported $DEBIAN_IMAGE from $tar"
}

ensure_go() {
	podman image exists "$GO_IMAGE" && return 0
	try_pull "$GO_IMAGE" && { log "pulled $GO_IMAGE"; return 0; }
	local goroot gover ctx
	goroot=$(go env GOROOT)
	gover=$(go env GOVERSION)
	case $gover in go1.26*) ;; *) die "the host's Go is $gover; $GO_IMAGE needs go1.26.x in /usr/local/go" ;; esac
	log "no registry: making $GO_IMAGE from $DEBIAN_IMAGE and the host's $gover ($goroot)"
	ctx=$(mktemp -d "$CACHE/.go-ctx.XXXXXX")
	cp -a "$goroot" "$ctx/go"
	cat >"$ctx/Containerfile" <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates git >/dev/null && rm -rf /var/lib/apt/lists/*
COPY go /usr/local/go
ENV GOLANG_VERSION=${gover#go} GOTOOLCHAIN=local GOPATH=/go PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /go/src /go/bin && chmod -R 1777 /go
WORKDIR /go
LABEL org.opencontainers.image.description="Local stand-in for the official golang image, made by berth ci/images/build.sh from Debian packages and $gover"
EOF
	timeout 900 podman build -q -t "$GO_IMAGE" "$ctx" >/dev/null || { rm -rf "$ctx"; die "build $GO_IMAGE"; }
	rm -rf "$ctx"
}

# context NAME DIR: the build context of one image: only what its Containerfile copies.
context() {
	local name=$1 dir=$2 mod
	mod=$(module "$name")
	mkdir -p "$dir/images"
	cp "$repo/images/collect.sh" "$dir/images/"
	if [ -n "$mod" ]; then
		cp -a "$repo/common" "$repo/$mod" "$dir/"
		find "$dir" -name testdata -type d -prune -exec rm -rf {} + # tests' data is not built
	fi
}

build() {
	local name=$1 ref=$PREFIX/$1:$VERSION ctx t0=$SECONDS mod goargs=()
	ctx=$(mktemp -d)
	context "$name" "$ctx"
	mod=$(module "$name")
	if [ -n "$mod" ] && [ "${GOPROXY_NETWORK:-0}" != 1 ]; then
		(cd "$repo/$mod" && GOWORK=off go mod download) || die "go mod download in $mod"
		goargs=(--volume "$GOMODCACHE_HOST:/hostmod:ro" --build-arg "GOPROXY=file:///hostmod/cache/download")
	fi
	log "build $ref"
	if ! timeout 1800 nice podman build --layers -f "$repo/images/$name/Containerfile" -t "$ref" \
		--build-arg "GO_IMAGE=$GO_IMAGE" --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
		"${goargs[@]}" "$ctx" >"$OUT/$name.build.log" 2>&1; then
		rm -rf "$ctx"
		tail -30 "$OUT/$name.build.log" >&2
		die "podman build $name (log: $OUT/$name.build.log)"
	fi
	rm -rf "$ctx"
	rm -f "$OUT/$name.oci.tar.tmp"
	timeout 300 podman save -q --format oci-archive -o "$OUT/$name.oci.tar.tmp" "$ref" || die "podman save $ref"
	mv "$OUT/$name.oci.tar.tmp" "$OUT/$name.oci.tar"
	local size
	size=$(podman image inspect --format '{{.Size}}' "$ref")
	printf '%s\t%s\t%s\n' "$name" "$size" "$(stat -c %s "$OUT/$name.oci.tar")" >>"$OUT/sizes.tsv.tmp"
	log "$ref: $((size / 1024)) KiB uncompressed, archive $((($(stat -c %s "$OUT/$name.oci.tar")) / 1024)) KiB, $((SECONDS - t0)) s"
}

names=("$@")
((${#names[@]})) || names=("${ALL[@]}")
for n in "${names[@]}"; do module "$n" >/dev/null; done
ensure_debian
for n in "${names[@]}"; do [ -n "$(module "$n")" ] && { ensure_go; break; }; done
rm -f "$OUT/sizes.tsv.tmp"
for n in "${names[@]}"; do build "$n"; done
# sizes.tsv: name, image size (bytes, uncompressed, as podman reports it), OCI archive size
if [ -f "$OUT/sizes.tsv" ]; then
	awk -F'\t' 'NR == FNR { new[$1] = 1; print; next } !($1 in new)' "$OUT/sizes.tsv.tmp" "$OUT/sizes.tsv" | sort >"$OUT/sizes.tsv.new"
else
	sort "$OUT/sizes.tsv.tmp" >"$OUT/sizes.tsv.new"
fi
mv "$OUT/sizes.tsv.new" "$OUT/sizes.tsv"
rm -f "$OUT/sizes.tsv.tmp"
log "done: $(printf '%s ' "${names[@]}")-> $OUT/*.oci.tar"
