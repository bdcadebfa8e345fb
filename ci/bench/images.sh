#!/usr/bin/env bash
# Bench "images": the size of every Berth image (`make images`: podman's local images
# ghcr.io/berth-vm/<name>:0.1.0 and out/images/<name>.oci.tar), against
#   the 15 MB goal for the Go stages' images (net-setup, image-fetch, seed-iso)    goal < 1
#   vmm against images that run QEMU the usual ways: KubeVirt's virt-launcher (published sizes,
#   cited) and qemux/qemu (a lower bound built here from the same Debian by ci/images/compare.sh,
#   out/images/compare.tsv, when present)                                           goal < 1
# An image that is not built is reported as missing; the bench does not fail for it.
# Sizes: podman's image size (uncompressed, what a node stores) and the OCI archive (compressed
# layers, about what a registry transfers). 1 MB = 10^6 bytes.
set -euo pipefail
# shellcheck source=ci/bench/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"
bench_init images
bench_machine images init vmm netsetup common
TAG=${BERTH_TAG:-0.1.0}
IMAGES=(net-setup image-fetch seed-iso dnsmasq vmm)
GO_STAGES=" net-setup image-fetch seed-iso "
declare -A CARRIES=([net-setup]="Go + iptables + dnsmasq" [image-fetch]="Go + qemu-img" [seed-iso]="Go only")
# KubeVirt virt-launcher, published sizes (uncompressed, `docker images`):
#   745 MB  v0.33.0, kubevirt/kubevirt issue #4423 ("how to reduce size of kubevirt component images?", 2020-10-27)
#   ~600 MB after kubevirt/kubevirt PR #4703 (rmohr in issue #4565, 2021-01-14: "roughly 600M instead of 800M")
LAUNCHER_MB=600

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
size_of() { # NAME → "image-bytes archive-bytes" (- when missing)
  local n=$1 img=- tar=-
  if command -v podman >/dev/null && podman image exists "ghcr.io/berth-vm/$n:$TAG" 2>/dev/null; then
    img=$(podman image inspect --format '{{.Size}}' "ghcr.io/berth-vm/$n:$TAG")
  elif [[ -f $BENCH_REPO/out/images/sizes.tsv ]]; then # written by ci/images/build.sh
    img=$(awk -F'\t' -v n="$n" '$1 == n {print $2}' "$BENCH_REPO/out/images/sizes.tsv")
    img=${img:--}
  fi
  [[ -f $BENCH_REPO/out/images/$n.oci.tar ]] && tar=$(stat -c %s "$BENCH_REPO/out/images/$n.oci.tar")
  echo "$img $tar"
}
rows=() missing=()
: >"$OUT/images.tsv"
for n in "${IMAGES[@]}"; do
  read -r img tar < <(size_of "$n")
  if [[ $img == - && $tar == - ]]; then
    missing+=("$n")
    rows+=("| $n | missing | missing | | |")
    continue
  fi
  goal="" verdict=""
  if [[ $GO_STAGES == *" $n "* && $img != - ]]; then
    r=$(ratio "$img" 15000000)
    tsv_row "image $n (${CARRIES[$n]}, uncompressed) / 15 MB" "the goal for Go stage images, 15 MB" "$r" "$r" "$r" "< 1" >>"$OUT/images.tsv"
    goal="< 15 MB"
    verdict=$(awk -v r="$r" 'BEGIN { print (r < 1) ? "met" : "not met" }')
  fi
  rows+=("| $n | $(if [[ $img == - ]]; then echo missing; else mb "$img"; fi) | $(if [[ $tar == - ]]; then echo missing; else mb "$tar"; fi) | $goal | $verdict |")
done

vmm_img=$(size_of vmm | cut -d' ' -f1)
cmp_rows=()
if [[ $vmm_img != - ]]; then
  r=$(ratio "$vmm_img" $((LAUNCHER_MB * 1000000)))
  tsv_row "image vmm / KubeVirt virt-launcher ($LAUNCHER_MB MB)" "virt-launcher, published size" "$r" "$r" "$r" "< 1" >>"$OUT/images.tsv"
  cmp_rows+=("| KubeVirt virt-launcher (published, ~$LAUNCHER_MB MB) | $r |")
  qx=$(awk -F'\t' '$1 == "qemux-like" {print $2}' "$BENCH_REPO/out/images/compare.tsv" 2>/dev/null || true)
  if [[ -n $qx ]]; then
    r=$(ratio "$vmm_img" "$qx")
    tsv_row "image vmm / qemux/qemu-like ($(mb "$qx") MB, built here)" "qemux/qemu's packages on the same Debian (lower bound)" "$r" "$r" "$r" "< 1" >>"$OUT/images.tsv"
    cmp_rows+=("| qemux/qemu's apt packages on bookworm-slim (built here, $(mb "$qx") MB; a lower bound of qemux/qemu) | $r |")
  fi
  dq=$(awk -F'\t' '$1 == "debian-qemu" {print $2}' "$BENCH_REPO/out/images/compare.tsv" 2>/dev/null || true)
  if [[ -n $dq ]]; then
    r=$(ratio "$vmm_img" "$dq")
    tsv_row "image vmm / bookworm-slim + qemu-system-x86 ($(mb "$dq") MB)" "untrimmed QEMU image, same Debian" "$r" "$r" "$r" "< 1" >>"$OUT/images.tsv"
    cmp_rows+=("| bookworm-slim + apt qemu-system-x86 (built here, $(mb "$dq") MB) | $r |")
  fi
fi

missing_note=''
if ((${#missing[@]})); then missing_note=" **Missing (not built, run \`make images\`):** ${missing[*]}."; fi
cat >"$OUT/images.md" <<EOF
## Image sizes

**What.** Every image \`make images\` builds (ghcr.io/berth-vm/<name>:$TAG): podman's image size
(uncompressed, what a node stores) and the OCI archive out/images/<name>.oci.tar (compressed layers,
about what a registry transfers). 1 MB = 10⁶ bytes.$missing_note

| image | uncompressed (MB) | OCI archive (MB) | goal | met |
|---|---|---|---|---|
$(printf '%s\n' "${rows[@]}")

The Go stages' goal is < 15 MB uncompressed. net-setup carries iptables (nft and legacy) and
dnsmasq for \`dnsmasq --test\`; image-fetch carries qemu-img with its libraries and the CA bundle; seed-iso is the Go
binary alone. dnsmasq is Debian's dnsmasq alone; vmm is vmm + QEMU trimmed to what Berth uses.

**vmm against other ways to ship QEMU** (ratio = vmm's uncompressed size / theirs):

| baseline | vmm / baseline |
|---|---|
$( ((${#cmp_rows[@]})) && printf '%s\n' "${cmp_rows[@]}" || echo "| (vmm image missing) | |")

Sources: KubeVirt's virt-launcher was 745 MB in v0.33.0 (kubevirt/kubevirt issue #4423, 2020) and
"roughly 600M instead of 800M" after PR #4703 (kubevirt/kubevirt issue #4565, 2021); the ratio uses
600 MB. qemux/qemu's published size could not be fetched here (no registry access); the figure is
ci/images/compare.sh's image with qemux/qemu's Dockerfile apt packages on the same bookworm-slim,
without its noVNC, passt and Python parts — a lower bound of the real image.

$(bench_machine_line)
EOF
log "wrote $OUT/images.md and $OUT/images.tsv"
cat "$OUT/images.tsv"
