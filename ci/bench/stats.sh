# The benches' arithmetic and memory readings (source it). Not a bench itself: run.sh skips it.
# lib.sh sources it; the benches built on ci/local-pod.sh (boot, memory) and fetch.sh source it
# directly.
now_ms() { date +%s%3N; }
now_ns() { date +%s%N; }

# stats V...: "min median max" (median of an even count: mean of the middle two).
stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%s %s %s\n", v[1], m, v[NR]}'; }
# fstats DIGITS V...: stats rounded to DIGITS decimals.
fstats() {
  local d=$1
  shift
  stats "$@" | awk -v d="$d" '{printf "%.*f %.*f %.*f\n", d, $1, d, $2, d, $3}'
}
# ratio A B [DIGITS]: A / B.
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-3}" 'BEGIN { if (b == 0) print "nan"; else printf "%.*f", d, a / b }'; }
# calc EXPR: awk arithmetic, e.g. calc "3.5 - 1.25".
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }

# sum_of VALUE...: their sum, 2 decimals (nothing given: 0).
sum_of() { printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.2f", s }'; }
# tsv_row FIGURE BASELINE MIN MEDIAN MAX GOAL >> out/bench/NAME.tsv
tsv_row() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@"; }

# ---------------------------------------------------------------- memory: cgroups and QEMU's smaps

# rss_kib PID: VmRSS of PID, KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# The memory cgroup hierarchy: v2 where the unified hierarchy has the memory controller, else v1's
# memory hierarchy (these machines: the kernel mounts both, memory on v1). CG_V empty: neither.
CG_ROOT='' CG_V=''
if [[ -f /sys/fs/cgroup/cgroup.controllers ]] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  CG_ROOT=/sys/fs/cgroup CG_V=2
elif [[ -f /sys/fs/cgroup/memory/memory.usage_in_bytes ]]; then
  CG_ROOT=/sys/fs/cgroup/memory CG_V=1
fi
cg_file() { # KIND: the file of the cgroup version for usage, peak or stat
  case $CG_V:$1 in
  2:usage) echo memory.current ;; 1:usage) echo memory.usage_in_bytes ;;
  2:peak) echo memory.peak ;; 1:peak) echo memory.max_usage_in_bytes ;;
  2:stat) echo memory.stat ;; 1:stat) echo memory.stat ;;
  esac
}
# cg_kib CG KIND: usage or peak of CG (its descendants included), KiB.
cg_kib() { awk '{ printf "%d", $1 / 1024 }' "$1/$(cg_file "$2")"; }
# cg_stat_kib CG anon|file: CG's anonymous memory (what reclaim cannot drop) or page cache, its
# descendants included (v2 anon, file; v1 total_rss, total_cache), KiB.
cg_stat_kib() {
  local key=$2
  [[ $CG_V == 1 ]] && case $2 in anon) key=total_rss ;; file) key=total_cache ;; esac
  awk -v k="$key" '$1 == k { printf "%d", $2 / 1024 }' "$1/memory.stat"
}
cg_anon_kib() { cg_stat_kib "$1" anon; }

# guest_ram_rss PID MIB: Rss (KiB) of QEMU's guest-RAM mapping for a guest of MIB MiB: the smallest
# anonymous mapping at least that size (QEMU maps the RAM block in one piece, maybe padded for
# alignment; TCG's translation buffer, a guard page short of its tb-size, is larger only when tb-size
# is above the guest's RAM, and then the RAM block is the smaller one). 0 when none is found.
guest_ram_rss() {
  awk -v want=$(($2 * 1024)) '
    /^[0-9a-f]+-[0-9a-f]+ / { path = $6; size = 0; next }
    /^Size:/ { size = $2; next }
    /^Rss:/ { if (path == "" && size >= want && (best == 0 || size < best)) { best = size; rss = $2 } }
    END { print rss + 0 }' "/proc/$1/smaps"
}

# ---------------------------------------------------------------- CPU time
# proc_cpu_s PID: the process's CPU time so far, user + sys (/proc/PID/stat fields 14 and 15, read
# after the command name, which may hold spaces), seconds; nothing when the process is gone.
proc_cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || true
}
# node_busy_s: CPU seconds every core of the machine has spent busy since boot (/proc/stat's cpu line:
# user nice system irq softirq steal; guest time is inside user).
node_busy_s() {
  awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}
# cg_cpu_s MEMCG: CPU seconds used so far by the cgroup whose memory-hierarchy directory is MEMCG
# (v2: the same directory's cpu.stat; v1: the same path in the cpuacct hierarchy); nothing when gone.
cg_cpu_s() {
  if ((CG_V == 2)); then
    awk '$1 == "usage_usec" { printf "%.2f", $2 / 1e6 }' "$1/cpu.stat" 2>/dev/null || true
  else
    awk '{ printf "%.2f", $1 / 1e9 }' "/sys/fs/cgroup/cpuacct${1#"$CG_ROOT"}/cpuacct.usage" 2>/dev/null || true
  fi
}
