#!/usr/bin/env bash
# Bench "fetch": image-fetch downloading a raw image over HTTP, in the same run as three baselines on
# the same server and disk, runs alternating (the order rotates each run):
#   curl -o                                   the bare download (no hash, no fsync)
#   curl -o F && sync F                       the bare download made durable (fsync of F: what
#                                             image-fetch must do before it calls the image whole)
#   curl -o F && sha256sum F && sync          the same work as image-fetch, in three passes
# for a 512 MiB and a 2 GiB image (random bytes); a server paced to 50 MiB/s (both must be
# link-bound); and a download cut at 50 % then continued by a second image-fetch process.
#
# Figures (out/bench/fetch.{md,tsv}, contract in ci/bench/run.sh):
#   image-fetch / curl -o                              512 MiB, 2 GiB   goal <= 1.05
#   image-fetch / curl -o && sync F                    512 MiB, 2 GiB   shown (the fsync's share)
#   image-fetch / curl -o && sha256sum && sync         512 MiB, 2 GiB   goal <= 0.9
#   image-fetch / curl -o at 50 MiB/s                  512 MiB          goal 1.0
#   bytes sent by the server after the cut / bytes still missing        goal 1.0 (2.0 = from zero)
# The server runs in the node netns of lib.sh's pod_netns, the clients in its pod netns (a Calico-
# shaped veth, as a real pod reaches a server). BENCH_RUNS (default 7) runs of each; BENCH_SIZES_MIB
# (default "512 2048"); BENCH_PACED_MIBS (default 50, the paced server's MiB/s). Root (namespaces).
set -euo pipefail
# shellcheck source=ci/bench/lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"
bench_init fetch
RUNS=${BENCH_RUNS:-7}
read -r -a SIZES <<<"${BENCH_SIZES_MIB:-512 2048}"
PACED=${BENCH_PACED_MIBS:-50}
PORT=8091
[[ $(id -u) == 0 ]] || fail "run as root (network namespaces)"
command -v curl >/dev/null || fail "curl missing (ci/install-deps.sh)"
command -v qemu-img >/dev/null || fail "qemu-img missing (ci/install-deps.sh)"

bench_machine init common

# image-fetch built from this tree (what is measured is the source at $BENCH_COMMIT, not a stale bin/).
BIN=$WORK/image-fetch
(cd "$BENCH_REPO/init" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN" ./cmd/image-fetch) ||
  fail "build image-fetch"

# The server: Go's http.ServeContent (Range, If-Range, Last-Modified; sendfile) over the files of
# $WORK/www. GET /paced/<name>: the same, at most PACED MiB/s. GET /cut/<tag>/<name>: the first GET
# of that path sends half the body, then drops the connection and writes $WORK/cut-<tag>. Every
# request is logged with the body bytes it sent.
mkdir -p "$WORK/srv" "$WORK/www"
cat >"$WORK/srv/go.mod" <<'EOF'
module benchsrv

go 1.22
EOF
cat >"$WORK/srv/main.go" <<'EOF'
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type counter struct {
	http.ResponseWriter
	n atomic.Int64
}

func (c *counter) Write(b []byte) (int, error) { n, err := c.ResponseWriter.Write(b); c.n.Add(int64(n)); return n, err }
func (c *counter) Flush()                      { c.ResponseWriter.(http.Flusher).Flush() }

// ReadFrom keeps net/http's sendfile path (ServeContent copies into an io.ReaderFrom).
func (c *counter) ReadFrom(r io.Reader) (int64, error) {
	n, err := c.ResponseWriter.(io.ReaderFrom).ReadFrom(r)
	c.n.Add(n)
	return n, err
}

// paced writes at most rate bytes/s from its first write on, in 64 KiB steps
// (it has no ReadFrom: no sendfile, every byte goes through Write).
type paced struct {
	http.ResponseWriter
	c     *counter
	rate  float64
	start time.Time
	sent  int64
}

func (p *paced) Write(b []byte) (int, error) {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	done := 0
	for done < len(b) {
		n, err := p.c.Write(b[done:min(len(b), done+64<<10)])
		done += n
		p.sent += int64(n)
		if err != nil {
			return done, err
		}
		time.Sleep(time.Until(p.start.Add(time.Duration(float64(p.sent) / p.rate * float64(time.Second)))))
	}
	return done, nil
}

func main() {
	addr, www, work := os.Args[1], os.Args[2], os.Args[3]
	mibs, _ := strconv.ParseFloat(os.Args[4], 64)
	var mu sync.Mutex
	cut := map[string]bool{}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		panic(err)
	}
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &counter{ResponseWriter: w}
		defer func() {
			fmt.Fprintf(os.Stderr, "REQ %s %s range=%q bytes=%d\n", r.Method, r.URL.Path, r.Header.Get("Range"), c.n.Load())
		}()
		f, err := os.Open(filepath.Join(www, filepath.Base(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, _ := f.Stat()
		if strings.HasPrefix(r.URL.Path, "/paced/") {
			http.ServeContent(&paced{ResponseWriter: w, c: c, rate: mibs * (1 << 20)}, r, fi.Name(), fi.ModTime(), f)
			return
		}
		if tag, ok := strings.CutPrefix(r.URL.Path, "/cut/"); ok && r.Method == http.MethodGet {
			tag = filepath.Dir(tag)
			mu.Lock()
			first := !cut[tag]
			cut[tag] = true
			mu.Unlock()
			if first {
				w.Header().Set("Content-Length", fmt.Sprint(fi.Size()))
				w.Header().Set("Last-Modified", fi.ModTime().UTC().Format(http.TimeFormat))
				w.Header().Set("Accept-Ranges", "bytes")
				io.Copy(c, io.LimitReader(f, fi.Size()/2))
				c.Flush()
				os.WriteFile(filepath.Join(work, "cut-"+tag), nil, 0o644)
				panic(http.ErrAbortHandler)
			}
		}
		http.ServeContent(c, r, fi.Name(), fi.ModTime(), f)
	}))
}
EOF
log "building the server"
(cd "$WORK/srv" && GOWORK=off CGO_ENABLED=0 go build -o server .) || fail "server build"

# Random bytes: nothing compresses, nothing is sparse; any bytes are a valid raw image.
for s in "${SIZES[@]}"; do
  head -c $((s << 20)) /dev/urandom >"$WORK/www/image-$s.raw"
done

pod_netns
ip netns exec "$NODE_NS" setsid "$WORK/srv/server" "$NODE_IP:$PORT" "$WORK/www" "$WORK" "$PACED" \
  >/dev/null 2>"$WORK/server.log" </dev/null &
BENCH_PIDS+=($!)
wait_tcp "$POD_NS" "$NODE_IP" "$PORT" 15
URL=http://$NODE_IP:$PORT
IN_POD=(ip netns exec "$POD_NS")
for s in "${SIZES[@]}"; do # warm the server's page cache
  "${IN_POD[@]}" curl -fsS -o /dev/null --max-time 120 "$URL/image-$s.raw" || fail "the server does not serve"
done

fetch_env() { # fetch_env DIR SOURCE: sets FETCH_ENV (makes DIR's images and disk: the volumes no stage creates)
  mkdir -p "$1/images" "$1/disk"
  FETCH_ENV=(env -i PATH="$PATH" VM_NAME=bench IMG_SOURCE="$2" IMG_TARGET=image.raw
    IMAGE_DIR="$1/images" DISK_DIR="$1/disk" TERMINATION_LOG="$1/termination-log")
}

# One timed contender: run_<name> DIR URL, its time in ms on stdout. Each starts after a sync, in a
# fresh DIR on disk (like a node's hostPath cache), the source in the server's page cache.
run_fetch() {
  fetch_env "$1" "$2"
  timeout 600 "${IN_POD[@]}" "${FETCH_ENV[@]}" "$BIN" >"$1/fetch.log" 2>&1 || { cat "$1/fetch.log" >&2; fail "image-fetch failed"; }
  cmp -s "$1/images/image.raw" "$3" || fail "image-fetch's file differs from the source"
}
run_curl() {
  timeout 600 "${IN_POD[@]}" curl -fsS -o "$1/curl.raw" "$2" || fail "curl failed"
}
run_curlsync() {
  # shellcheck disable=SC2016 # the inner script's own $1 and $2
  timeout 600 "${IN_POD[@]}" bash -c 'curl -fsS -o "$1" "$2" && sync "$1"' _ "$1/curlsync.raw" "$2" ||
    fail "curl && sync failed"
}
run_curlsum() {
  # shellcheck disable=SC2016 # the inner script's own $1 and $2
  timeout 600 "${IN_POD[@]}" bash -c 'curl -fsS -o "$1" "$2" && sha256sum "$1" >"$1.sha256" && sync' _ "$1/curlsum.raw" "$2" ||
    fail "curl && sha256sum && sync failed"
}
timed() { # timed NAME DIR URL SRC: appends the time to t_NAME
  local t0
  sync
  t0=$(now_ms)
  "run_$1" "$2" "$3" "$4"
  local -n acc=t_$1
  acc+=($(($(now_ms) - t0)))
}

# measure LABEL URL SRC CONTENDER...: RUNS runs, the order rotated each run; sets t_<contender>.
measure() {
  local label=$1 url=$2 src=$3 run i d
  shift 3
  local who=("$@") n=$# c
  for ((run = 0; run < RUNS; run++)); do
    d=$WORK/run
    rm -rf "$d"
    mkdir -p "$d"
    for ((i = 0; i < n; i++)); do timed "${who[(run + i) % n]}" "$d" "$url" "$src"; done
    local line="$label run $((run + 1)):"
    for c in "${who[@]}"; do line+=" ${NAMES[$c]} $(last "$c") ms,"; done
    log "$line"
  done
  rm -rf "$WORK/run"
}

last() { local -n l=t_$1; echo "${l[-1]}"; }       # last NAME: its latest time
tstats() { local -n l=t_$1; stats "${l[@]}"; }     # tstats NAME: "min median max" of its times
declare -A NAMES=([fetch]="image-fetch" [curl]="curl -o" [curlsync]="curl -o && sync F" [curlsum]="curl -o && sha256sum && sync")

# ratios NAME_A NAME_B: per-run ratios t_A[i] / t_B[i], "min median max".
ratios() {
  local -n a=t_$1 b=t_$2
  local r=() i
  for i in "${!a[@]}"; do r+=("$(ratio "${a[i]}" "${b[i]}")"); done
  fstats 3 "${r[@]}"
}

tsv=() md=() runs_md=()
# runs_rows LABEL CONTENDER...: one markdown row per run, each contender's time (ms) in that run.
runs_rows() {
  local label=$1 i c row
  shift
  local -n first=t_$1
  for i in "${!first[@]}"; do
    row="| $label | $((i + 1)) |"
    for c in "$@"; do
      local -n t=t_$c
      row+=" ${t[i]} |"
    done
    runs_md+=("$row")
  done
}
for s in "${SIZES[@]}"; do
  # shellcheck disable=SC2034 # read and filled through namerefs (timed, last, tstats, ratios)
  t_fetch=() t_curl=() t_curlsync=() t_curlsum=()
  measure "$s MiB" "$URL/image-$s.raw" "$WORK/www/image-$s.raw" fetch curl curlsync curlsum
  read -r a b c < <(ratios fetch curl)
  tsv+=("$(tsv_row "image-fetch $s MiB / curl -o" "curl -o, same server" "$a" "$b" "$c" "<= 1.05")")
  md+=("ratio image-fetch / curl -o, $s MiB|$a|$b|$c|≤ 1.05")
  read -r a b c < <(ratios fetch curlsync)
  tsv+=("$(tsv_row "image-fetch $s MiB / curl -o && sync F" "curl -o, then fsync of the file (the download made durable), same server" "$a" "$b" "$c" "")")
  md+=("ratio image-fetch / curl -o && sync F, $s MiB|$a|$b|$c|")
  read -r a b c < <(ratios fetch curlsum)
  tsv+=("$(tsv_row "image-fetch $s MiB / curl -o && sha256sum && sync" "curl -o && sha256sum && sync, same server" "$a" "$b" "$c" "<= 0.9")")
  md+=("ratio image-fetch / curl -o && sha256sum && sync, $s MiB|$a|$b|$c|≤ 0.9")
  for c in fetch curl curlsync curlsum; do
    read -r a b x < <(tstats "$c")
    md+=("${NAMES[$c]}, $s MiB (ms)|$a|$b|$x|")
  done
  runs_rows "$s MiB" fetch curl curlsync curlsum
done

# Paced: the smallest image, at PACED MiB/s: both must take size / rate.
s=${SIZES[0]}
# shellcheck disable=SC2034 # as above
t_fetch=() t_curl=()
measure "$s MiB at $PACED MiB/s" "$URL/paced/image-$s.raw" "$WORK/www/image-$s.raw" fetch curl
read -r a b c < <(ratios fetch curl)
tsv+=("$(tsv_row "image-fetch / curl -o, $s MiB at $PACED MiB/s" "curl -o, same paced server" "$a" "$b" "$c" "1.0")")
md+=("ratio image-fetch / curl -o, $s MiB at $PACED MiB/s|$a|$b|$c|1.0")
read -r a b c < <(tstats fetch)
md+=("image-fetch, $s MiB at $PACED MiB/s (ms; link time $((s * 1000 / PACED)))|$a|$b|$c|")
read -r a b c < <(tstats curl)
md+=("curl -o, $s MiB at $PACED MiB/s (ms)|$a|$b|$c|")

# Cut at 50 %, the process is stopped (SIGTERM, as a container restart), a new one continues.
resume=()
for ((run = 1; run <= RUNS; run++)); do
  d=$WORK/resume$run
  mkdir -p "$d"
  before=$(wc -l <"$WORK/server.log")
  fetch_env "$d" "$URL/cut/r$run/image-$s.raw"
  "${IN_POD[@]}" "${FETCH_ENV[@]}" "$BIN" >"$d/fetch1.log" 2>&1 &
  pid=$!
  for ((i = 0; i < 600; i++)); do [[ -e $WORK/cut-r$run ]] && break; sleep 0.05; done
  [[ -e $WORK/cut-r$run ]] || fail "the server never cut the download"
  sleep 0.2 # let the client write what it received
  kill -TERM "$pid" 2>/dev/null || true
  if wait "$pid"; then fail "image-fetch succeeded despite the cut"; fi
  part=$(stat -c %s "$d/images/.image.raw.part" 2>/dev/null || echo 0)
  timeout 300 "${IN_POD[@]}" "${FETCH_ENV[@]}" "$BIN" >"$d/fetch2.log" 2>&1 || { cat "$d/fetch2.log" >&2; fail "second image-fetch failed"; }
  cmp -s "$d/images/image.raw" "$WORK/www/image-$s.raw" || fail "resumed file differs from the source"
  # Body bytes the server sent for this path: the first request (cut) and all after it.
  tail -n +$((before + 1)) "$WORK/server.log" | awk -v p="/cut/r$run/" 'index($0, p)' >"$d/reqs"
  first=$(awk -F'bytes=' 'NR==1 {print $2}' "$d/reqs")
  after=$(awk -F'bytes=' 'NR>1 {s+=$2} END {print s+0}' "$d/reqs")
  missing=$(($(stat -c %s "$WORK/www/image-$s.raw") - first))
  resume+=("$(ratio "$after" "$missing")")
  log "resume run $run: cut after $first bytes (partial file $part), then $after bytes sent for $missing missing: ratio ${resume[-1]}"
  rm -rf "$d"
done
read -r a b c < <(fstats 3 "${resume[@]}")
tsv+=("$(tsv_row "resume after a 50 % cut: bytes sent / bytes missing" "the bytes still missing" "$a" "$b" "$c" "1.0")")
md+=("resume: bytes sent after the cut / bytes missing|$a|$b|$c|1.0")

LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%s\n' "${tsv[@]}" >"$OUT/fetch.tsv"
{
  cat <<EOF
## Image fetch: image-fetch against curl

**What.** image-fetch (built from commit $BENCH_COMMIT) fetching a raw image of $(printf '%s MiB, ' "${SIZES[@]}" | sed 's/, $//')
(random bytes: any bytes are a valid raw image) from a Go HTTP server (\`http.ServeContent\`: Range,
sendfile; the file in its page cache) in a node netns, the client in a Calico-shaped pod netns (veth,
MTU $POD_MTU), into a fresh directory on disk, against three baselines on the same server and disk: \`curl -o\`
(the bare download: no hash, no fsync), \`curl -o F && sync F\` (the download made durable: image-fetch
fsyncs the image before it calls it whole, so that a crash never leaves a truncated image in the cache)
and \`curl -o F && sha256sum F && sync\` (the same work as image-fetch, in three passes). $RUNS runs of each, the order rotated each run; \`sync\` before each.
Ratios are per run (the contenders of one run ran back to back), then min/median/max.

**What is timed.** image-fetch's whole run, from exec to exit: the download with the sha256 computed
in the write path (1 MiB buffer, one pass, nothing read back; writeback started every 8 MiB), the fsync
of the file, \`qemu-img info\` and \`check\`, the rename into place with its \`.sha256\` record, and
the pet overlay (\`qemu-img create\`, its JSON record).

**Paced.** The same server sending at most $PACED MiB/s (the link-bound case of a real mirror): both
must take the link time; ratio 1.0.

**Resume.** The server sends the first GET of a path only up to 50 %, then drops the connection;
the running image-fetch is stopped with SIGTERM (a container restart) and a new one is started on
the same directories (it hashes the half on disk once, then fetches the rest with Range). Figure:
body bytes the server sent after the cut / bytes still missing. 1.0 = only the rest was fetched.

EOF
  md_table "${md[@]}"
  cat <<EOF

Every run (ms; the contenders of a run in the rotated order, back to back). A contender that is
several times slower than in the run before is the disk, not the contender: read the ratios per run.

| image | run | image-fetch | curl -o | curl -o && sync F | curl -o && sha256sum && sync |
|---|---|---|---|---|---|
EOF
  printf '%s\n' "${runs_md[@]}"
  cat <<EOF

Machine: $(nproc) × $BENCH_CPU; load average $BENCH_LOAD0 at the start, $LOAD1 at the end (a shared machine:
other jobs' builds use the same cores and disk, so absolute times are noise; read the ratios).
EOF
} >"$OUT/fetch.md"
log "wrote $OUT/fetch.md and $OUT/fetch.tsv"
cat "$OUT/fetch.tsv"
