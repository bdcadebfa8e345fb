# The benches' arithmetic (source it). Not a bench itself: run.sh skips it. lib.sh sources it; the
# benches built on ci/local-pod.sh (boot, memory) and fetch.sh source it directly.
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

# tsv_row FIGURE BASELINE MIN MEDIAN MAX GOAL >> out/bench/NAME.tsv
tsv_row() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@"; }
