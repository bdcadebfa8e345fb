#!/usr/bin/env bash
# Bench "demo": cold and warm `make demo` on the local cluster (ci/cluster/demo-bench.sh writes
# out/bench/demo.{md,tsv}). Takes the cluster down when it is done.
set -euo pipefail
exec "$(dirname "$(readlink -f "$0")")/../cluster/demo-bench.sh" "$@"
