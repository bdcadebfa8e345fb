#!/usr/bin/env bash
# ci/cluster/demo-bench.sh: time `make demo` (ci/cluster/demo.sh) cold and warm on this machine and
# write out/bench/demo.md and out/bench/demo.tsv (the bench contract of ci/bench/run.sh).
#   cold: no cluster (ci/cluster/demo.sh down first), the demo's base image not in the node's image
#         cache: cluster up, images loaded, the test guest served, helm install, TCG boot, SSH.
#   warm: demo down again (cluster down), then demo: the same, with the image already in the
#         node's cache (no download) and containerd's imported images kept.
#   again: demo once more while it runs (everything kept, helm upgrade --install changes nothing).
# The Kubernetes binaries, `make images` output and the test guest are built before timing (their
# cold build times are in docs/cluster.md, docs/images.md, docs/testguest.md). Never asserts times.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
OUT=$repo/out/bench
mkdir -p "$OUT"
CACHE=${DEMO_IMAGE_CACHE:-/var/lib/berth/images}
unset KUBECONFIG # the local cluster, always

"$here/build-k8s.sh" >/dev/null
make -C "$repo" --no-print-directory images >/dev/null
"$repo/ci/testguest/build.sh" >/dev/null

run() { # run LABEL: one demo, timed; its output in out/bench/demo-LABEL.log
	local t=$SECONDS
	"$here/demo.sh" >"$OUT/demo-$1.log" 2>&1 || { clog "demo ($1) failed: $OUT/demo-$1.log"; tail -20 "$OUT/demo-$1.log" >&2; exit 1; }
	echo $((SECONDS - t))
}
trap '"$here/demo.sh" down >/dev/null 2>&1 || true' EXIT

"$here/demo.sh" down >/dev/null 2>&1
rm -f "$CACHE/berth-testguest.qcow2" "$CACHE/berth-testguest.qcow2.sha256"
cold=$(run cold)
clog "cold make demo: ${cold}s"
t=$SECONDS
"$here/demo.sh" down >/dev/null 2>&1
down=$((SECONDS - t))
warm=$(run warm)
again=$(run again)
clog "warm make demo: ${warm}s; again while it runs: ${again}s; demo-down ${down}s"
ratio=$(awk -v w="$warm" -v c="$cold" 'BEGIN { printf "%.3f", w / c }')

{
	echo "## make demo (a real single-node cluster, TCG guest)"
	echo
	echo "\`make demo\` = \`ci/cluster/demo.sh\`: \`ci/cluster/up\`, the images imported, the test guest served by"
	echo "a pod, \`helm install\` of chart/examples/demo.yaml, the VM Ready (its SSH port answers), one SSH."
	echo "Measured by \`ci/cluster/demo-bench.sh\` on $(date -u +%F), 2 shared cores, the guest under TCG."
	echo
	echo "| run | what it starts from | seconds |"
	echo "|---|---|---|"
	echo "| cold | no cluster, the base image not in the node's cache (downloaded by image-fetch) | $cold |"
	echo "| warm | no cluster (after \`make demo-down\`), the base image cached on the node | $warm |"
	echo "| again | the demo still running (\`helm upgrade --install\` changes nothing) | $again |"
	echo "| \`make demo-down\` | | $down |"
	echo
	echo "Not included (built once, cached): the Kubernetes binaries (\`ci/cluster/build-k8s.sh\`, ~6 min"
	echo "on 2 idle cores), \`make images\` and the test guest. Cold and warm differ only by the image"
	echo "download (177 MiB from a pod on the same node, under a second): most of either run is the TCG"
	echo "boot of the guest (~40-60 s) and \`ci/cluster/up\` (~10 s)."
} >"$OUT/demo.md"
printf 'make demo warm / cold\tcold make demo (no cluster, empty image cache): %ss\t%s\t%s\t%s\t< 1\n' \
	"$cold" "$ratio" "$ratio" "$ratio" >"$OUT/demo.tsv"
cat "$OUT/demo.md"
