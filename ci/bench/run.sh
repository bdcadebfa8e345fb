#!/usr/bin/env bash
# make bench: run every ci/bench/<name>.sh (each bounded in time), then assemble
# docs/benchmarks.md and docs/benchmarks.png from what they wrote to out/bench/.
#
# Bench contract: a bench writes out/bench/<name>.md (a markdown section) and
# out/bench/<name>.tsv, one row a figure:
#   figure <TAB> baseline <TAB> ratio_min <TAB> ratio_median <TAB> ratio_max <TAB> goal
# A bench that fails or times out leaves out/bench/<name>.failed; the others still run and the
# document is still written (it lists the failures). Results of benches not named in this run are
# kept from their last run (each section says when it was measured).
# Usage: ci/bench/run.sh [name ...]   (default: every bench; lib.sh and stats.sh are the benches'
# helpers; the bench "demo" is ci/cluster/demo-bench.sh)
# Each bench is bounded: BENCH_TIMEOUT (s) for all, else its own default below (boot, memory, disk and
# firmware boot real guests under TCG: on a loaded shared machine one boot takes minutes; density boots 1 + 4 + 8 +
# 16 VMs through the cluster and as many plain QEMUs, and brings the cluster up).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=out/bench
mkdir -p "$out" docs
timeout_of() {
  if [ -n "${BENCH_TIMEOUT:-}" ]; then echo "$BENCH_TIMEOUT"; return; fi
  case $1 in
  boot) echo 2700 ;;
  memory) echo 2700 ;;
  disk) echo 2400 ;;
  firmware) echo 3600 ;;
  density) echo 7200 ;;
  *) echo 1200 ;;
  esac
}

# script_of NAME: the bench's script: ci/bench/NAME.sh, except "demo" (make demo on the local
# cluster), which lives with the cluster scripts.
script_of() {
  case $1 in
  demo) echo ci/cluster/demo-bench.sh ;;
  *) echo "ci/bench/$1.sh" ;;
  esac
}

names=("$@")
if ((${#names[@]} == 0)); then
  for f in ci/bench/*.sh; do
    n=$(basename "$f" .sh)
    [ "$n" = run ] || [ "$n" = lib ] || [ "$n" = stats ] || names+=("$n")
  done
  names+=(demo)
fi

failed=()
for n in "${names[@]}"; do
  script=$(script_of "$n")
  [ -x "$script" ] || { echo "no bench $script" >&2; exit 2; }
  per_bench_timeout=$(timeout_of "$n")
  echo "== bench $n (bounded to ${per_bench_timeout}s)"
  rm -f "$out/$n.md" "$out/$n.tsv" "$out/$n.failed"
  t0=$(date +%s)
  rc=0
  timeout --kill-after=30 "$per_bench_timeout" "$script" || rc=$?
  if ((rc != 0)); then
    why="exit $rc after $(($(date +%s) - t0)) s"
    ((rc == 124 || rc == 137)) && why="timed out after ${per_bench_timeout} s"
    echo "bench $n failed: $why" >&2
    echo "$why ($(date -u '+%Y-%m-%d %H:%M UTC'))" >"$out/$n.failed"
    failed+=("$n")
  fi
done

# The assembler needs matplotlib for the PNG: prefer the system python3 (python3-matplotlib) over
# whatever python3 comes first in PATH.
py=python3
for p in /usr/bin/python3 python3; do
  if "$p" -c 'import matplotlib' 2>/dev/null; then py=$p; break; fi
done
"$py" ci/bench/assemble.py "$out" docs/benchmarks.md docs/benchmarks.png
echo "wrote docs/benchmarks.md and docs/benchmarks.png"
if ((${#failed[@]})); then
  echo "benches that failed: ${failed[*]}" >&2
  exit 1
fi
