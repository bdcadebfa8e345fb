#!/usr/bin/env bash
# Bench "fetch": bin/image-fetch downloading a 512 MiB image from a loopback HTTP server, against
# `curl -o` of the same file from the same server, alternating, in the same run; and a download cut
# at 50 % then continued by a second image-fetch process (a container restart).
#
# Figures (out/bench/fetch.{md,tsv}, contract in the team guide):
#   image-fetch wall time / curl -o wall time                          goal <= 1.05
#   bytes sent by the server after the cut / bytes still missing       goal 1.0 (2.0 = restarted from zero)
# BENCH_RUNS (default 7) alternating pairs; BENCH_SIZE_MIB (default 512). Every wait is bounded.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
RUNS=${BENCH_RUNS:-7}
SIZE_MIB=${BENCH_SIZE_MIB:-512}
OUT=$REPO/out/bench
BIN=$REPO/bin/image-fetch
mkdir -p "$OUT"
export PATH=/usr/local/go/bin:$PATH

log() { echo "fetch bench: $*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
# shellcheck source=ci/bench/stats.sh
source "$(dirname "$(readlink -f "$0")")/stats.sh"

command -v curl >/dev/null || fail "curl missing (ci/install-deps.sh)"
command -v qemu-img >/dev/null || fail "qemu-img missing (ci/install-deps.sh)"
if [[ ! -x $BIN ]]; then
  log "building $BIN"
  (cd "$REPO/init" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN" ./cmd/image-fetch)
fi

# Work dir on disk (not tmpfs), like a node's hostPath cache.
WORK=$(mktemp -d /var/tmp/berth-bench-fetch.XXXXXX)
SRV_PID=
cleanup() {
  if [[ -n $SRV_PID ]]; then
    kill "$SRV_PID" 2>/dev/null || true
    wait "$SRV_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The loopback server: Go's http.ServeContent (Range, If-Range, Last-Modified, sendfile) over one
# file. GET /cut/<tag>/<name>: the first GET of that path sends half the body, then drops the
# connection and writes $WORK/cut-<tag>. Every request is logged with the body bytes it sent.
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
	"strings"
	"sync"
	"sync/atomic"
)

type counter struct {
	http.ResponseWriter
	n atomic.Int64
}

func (c *counter) Write(b []byte) (int, error) { n, err := c.ResponseWriter.Write(b); c.n.Add(int64(n)); return n, err }
func (c *counter) Flush()                      { c.ResponseWriter.(http.Flusher).Flush() }

func main() {
	file, work := os.Args[1], os.Args[2]
	f, err := os.Open(file)
	if err != nil {
		panic(err)
	}
	fi, _ := f.Stat()
	var mu sync.Mutex
	cut := map[string]bool{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &counter{ResponseWriter: w}
		defer func() {
			fmt.Fprintf(os.Stderr, "REQ %s %s range=%q bytes=%d\n", r.Method, r.URL.Path, r.Header.Get("Range"), c.n.Load())
		}()
		body := io.NewSectionReader(f, 0, fi.Size()) // *io.SectionReader: ServeContent can Seek
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
				buf := make([]byte, 1<<20)
				for sent := int64(0); sent < fi.Size()/2; {
					n, _ := body.Read(buf[:min(int64(len(buf)), fi.Size()/2-sent)])
					c.Write(buf[:n])
					sent += int64(n)
				}
				c.Flush()
				os.WriteFile(filepath.Join(work, "cut-"+tag), nil, 0o644)
				panic(http.ErrAbortHandler)
			}
		}
		http.ServeContent(c, r, "image.raw", fi.ModTime(), body)
	}))
}
EOF
log "building the loopback server"
(cd "$WORK/srv" && GOWORK=off CGO_ENABLED=0 go build -o server .) || fail "server build"

# A raw image: any bytes are one. Random bytes, so nothing compresses and nothing is sparse.
IMG=$WORK/www/image.raw
head -c $((SIZE_MIB << 20)) /dev/urandom >"$IMG"
SIZE=$(stat -c %s "$IMG")
"$WORK/srv/server" "$IMG" "$WORK" >"$WORK/port" 2>"$WORK/server.log" &
SRV_PID=$!
for ((i = 0; i < 100; i++)); do [[ -s $WORK/port ]] && break; sleep 0.05; done
PORT=$(head -1 "$WORK/port")
[[ -n $PORT ]] || fail "server did not start"
URL=http://127.0.0.1:$PORT
curl -fsS -o /dev/null --max-time 60 "$URL/image.raw" || fail "server does not serve"  # warm the page cache

fetch_env() { # fetch_env DIR SOURCE: sets FETCH_ENV (makes DIR's images and disk: the volumes no stage creates)
  mkdir -p "$1/images" "$1/disk"
  FETCH_ENV=(env -i PATH="$PATH" VM_NAME=bench IMG_SOURCE="$2" IMG_TARGET=image.raw
    IMAGE_DIR="$1/images" DISK_DIR="$1/disk" TERMINATION_LOG="$1/termination-log")
}

# 1. image-fetch vs curl -o, alternating (which one goes first alternates too), fresh dirs each time.
time_fetch() { # DIR
  local t0
  sync
  t0=$(now_ms)
  fetch_env "$1" "$URL/image.raw"
  timeout 300 "${FETCH_ENV[@]}" "$BIN" >"$1/fetch.log" 2>&1 || { cat "$1/fetch.log" >&2; fail "image-fetch failed"; }
  t_fetch+=($(($(now_ms) - t0)))
}
time_curl() { # DIR
  local t0
  sync
  t0=$(now_ms)
  timeout 300 curl -fsS --max-time 300 -o "$1/curl/image.raw" "$URL/image.raw" || fail "curl failed"
  t_curl+=($(($(now_ms) - t0)))
}
t_fetch=() t_curl=() ratios=()
for ((run = 1; run <= RUNS; run++)); do
  d=$WORK/run$run
  mkdir -p "$d/curl"
  if ((run % 2)); then time_fetch "$d"; time_curl "$d"; else time_curl "$d"; time_fetch "$d"; fi
  cmp -s "$d/images/image.raw" "$IMG" || fail "image-fetch's file differs from the source"
  ratios+=("$(ratio "${t_fetch[-1]}" "${t_curl[-1]}")")
  log "run $run: image-fetch ${t_fetch[-1]} ms, curl -o ${t_curl[-1]} ms, ratio ${ratios[-1]}"
  rm -rf "$d"
done

# 2. Cut at 50 %, the process is stopped (SIGTERM, as a container restart), a new one continues.
resume=()
for ((run = 1; run <= RUNS; run++)); do
  d=$WORK/resume$run
  mkdir -p "$d"
  src="$URL/cut/r$run/image.raw"
  before=$(wc -l <"$WORK/server.log")
  fetch_env "$d" "$src"
  "${FETCH_ENV[@]}" "$BIN" >"$d/fetch1.log" 2>&1 &
  pid=$!
  for ((i = 0; i < 600; i++)); do [[ -e $WORK/cut-r$run ]] && break; sleep 0.05; done
  [[ -e $WORK/cut-r$run ]] || fail "the server never cut the download"
  sleep 0.2 # let the client write what it received
  kill -TERM "$pid" 2>/dev/null || true
  if wait "$pid"; then fail "image-fetch succeeded despite the cut"; fi
  part=$(stat -c %s "$d/images/.image.raw.part" 2>/dev/null || echo 0)
  timeout 300 "${FETCH_ENV[@]}" "$BIN" >"$d/fetch2.log" 2>&1 || { cat "$d/fetch2.log" >&2; fail "second image-fetch failed"; }
  cmp -s "$d/images/image.raw" "$IMG" || fail "resumed file differs from the source"
  # Body bytes the server sent for this path: the first request (cut) and all after it.
  tail -n +$((before + 1)) "$WORK/server.log" | grep " /cut/r$run/" >"$d/reqs"
  first=$(awk -F'bytes=' 'NR==1 {print $2}' "$d/reqs")
  after=$(awk -F'bytes=' 'NR>1 {s+=$2} END {print s+0}' "$d/reqs")
  missing=$((SIZE - first))
  resume+=("$(ratio "$after" "$missing")")
  log "resume run $run: cut after $first bytes (partial file $part), then $after bytes sent for $missing missing: ratio ${resume[-1]}"
  rm -rf "$d"
done

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
read -r r_min r_med r_max < <(fstats 3 "${ratios[@]}")
read -r f_min f_med f_max < <(stats "${t_fetch[@]}")
read -r c_min c_med c_max < <(stats "${t_curl[@]}")
read -r s_min s_med s_max < <(fstats 3 "${resume[@]}")

{
  printf 'image-fetch %s MiB / curl -o\tcurl -o, same loopback server\t%s\t%s\t%s\t<= 1.05\n' "$SIZE_MIB" "$r_min" "$r_med" "$r_max"
  printf 'resume after a 50 %% cut: bytes sent / bytes missing\tthe bytes still missing\t%s\t%s\t%s\t1.0\n' "$s_min" "$s_med" "$s_max"
} >"$OUT/fetch.tsv"

cat >"$OUT/fetch.md" <<EOF
## Image fetch: download of a $SIZE_MIB MiB image

**What.** \`bin/image-fetch\` fetching a $SIZE_MIB MiB raw image (random bytes: any bytes are a valid
raw image, so the qemu-img check accepts it) from a loopback Go HTTP server (\`http.ServeContent\`,
Range support) into a fresh IMAGE_DIR and DISK_DIR on disk, against \`curl -o\` of the same URL into
the same disk, $RUNS pairs in the same run, alternating which goes first; \`sync\` before each; the
file is in the server's page cache.

**What is timed.** image-fetch's whole run, from exec to exit: the download (grab, 1 MiB buffer),
fsync of the file, its sha256 (computed while the file is written), \`qemu-img info\`, the rename into place with its \`.sha256\` record,
and the pet overlay (\`qemu-img create\`, its JSON record). curl -o only downloads (no fsync,
no hash). The figure is the price of a verified, crash-safe image against a bare download.

**Resume.** The server sends the first GET of a path only up to 50 %, then drops the connection;
the running image-fetch is stopped with SIGTERM (a container restart) and a new one is started on
the same directories. Figure: body bytes the server sent after the cut (all requests) / bytes still
missing after the cut. 1.0 = only the rest was fetched; 2.0 would be a restart from zero.

| figure | min | median | max | goal |
|---|---|---|---|---|
| image-fetch (ms) | $f_min | $f_med | $f_max | |
| curl -o (ms) | $c_min | $c_med | $c_max | |
| ratio image-fetch / curl -o | $r_min | $r_med | $r_max | ≤ 1.05 |
| resume: bytes sent after the cut / bytes missing | $s_min | $s_med | $s_max | 1.0 |

Absolute times on these shared 2-core machines are noise; the ratios are the result (load average
at the end of the run: $LOAD; with other agents' builds on the same disk and cores the time ratio
spreads widely around 1: read the median).
EOF
log "wrote $OUT/fetch.md and $OUT/fetch.tsv"
cat "$OUT/fetch.tsv"
