#!/usr/bin/env bash
# make bench: run every ci/bench/<name>.sh (each bounded in time), then assemble
# docs/benchmarks.md and docs/benchmarks.png from what they wrote to out/bench/.
#
# Bench contract: a bench writes out/bench/<name>.md (a markdown section) and
# out/bench/<name>.tsv, one row a figure:
#   figure <TAB> baseline <TAB> ratio_min <TAB> ratio_median <TAB> ratio_max <TAB> goal
# Usage: ci/bench/run.sh [name ...]   (default: every bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=out/bench
mkdir -p "$out" docs
per_bench_timeout=${BENCH_TIMEOUT:-1200}

names=("$@")
if ((${#names[@]} == 0)); then
  for f in ci/bench/*.sh; do
    n=$(basename "$f" .sh)
    [ "$n" = run ] || [ "$n" = lib ] || names+=("$n")
  done
fi

failed=()
for n in "${names[@]}"; do
  echo "== bench $n (bounded to ${per_bench_timeout}s)"
  rm -f "$out/$n.md" "$out/$n.tsv"
  if ! timeout --kill-after=30 "$per_bench_timeout" "ci/bench/$n.sh"; then
    echo "bench $n failed or timed out" >&2
    failed+=("$n")
  fi
done

python3 ci/bench/assemble.py "$out" docs/benchmarks.md docs/benchmarks.png
echo "wrote docs/benchmarks.md and docs/benchmarks.png"
if ((${#failed[@]})); then
  echo "benches that failed: ${failed[*]}" >&2
  exit 1
fi
