package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/common/stagetest"
)

// rawImage returns n bytes of a raw disk image (any bytes are one) whose first
// bytes are not mistaken for another format.
func rawImage(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, "\xeb\x63\x90BERTHRAW") // a boot-sector-like start
	return b
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// server is a loopback HTTP server whose behaviour each test chooses per
// request; it counts requests.
type server struct {
	*httptest.Server
	handler func(n int, w http.ResponseWriter, r *http.Request) // n: 1-based GET number
	gets    atomic.Int32
	heads   atomic.Int32
	ranges  atomic.Int32
}

func newServer(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) *server {
	s := &server{handler: h}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		switch r.Method {
		case http.MethodHead:
			s.heads.Add(1)
		case http.MethodGet:
			n = int(s.gets.Add(1))
			if r.Header.Get("Range") != "" {
				s.ranges.Add(1)
			}
		}
		s.handler(n, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

var modTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// serveRange serves body with Range, If-Range and Last-Modified support.
func serveRange(w http.ResponseWriter, r *http.Request, body []byte, mod time.Time) {
	http.ServeContent(w, r, "image.raw", mod, bytes.NewReader(body))
}

// serveNoRange serves the whole body with 200 whatever the request says.
func serveNoRange(w http.ResponseWriter, r *http.Request, body []byte) {
	w.Header().Set("Accept-Ranges", "none")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.Header().Set("Last-Modified", modTime.Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}

// serveHalfThenDrop sends the headers of the whole body, half of it, and
// drops the connection.
func serveHalfThenDrop(w http.ResponseWriter, r *http.Request, body []byte, mod time.Time) {
	if r.Method == http.MethodHead {
		serveRange(w, r, body, mod)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.Header().Set("Last-Modified", mod.Format(http.TimeFormat))
	w.Header().Set("Accept-Ranges", "bytes")
	w.WriteHeader(http.StatusOK)
	w.Write(body[:len(body)/2])
	w.(http.Flusher).Flush()
	time.Sleep(100 * time.Millisecond) // the client hashes what it got so far
	panic(http.ErrAbortHandler)
}

func testLog(t *testing.T) (*slog.Logger, *bytes.Buffer) {
	var buf syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf.b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testApplier returns an Applier with short timeouts and backoffs (no timing is
// asserted: they only keep the tests short).
func testApplier(t *testing.T) *Applier {
	log, _ := testLog(t)
	s := NewApplier(log)
	s.DL.Backoff, s.DL.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	s.DL.IdleTimeout = 500 * time.Millisecond
	s.DL.ConnectTimeout = 2 * time.Second
	s.DL.ProgressEvery = 50 * time.Millisecond
	s.DL.Attempts = 4
	s.LockPoll = 10 * time.Millisecond
	return s
}

func testPlan(t *testing.T, url, pin string) Plan {
	dir := t.TempDir()
	env := map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": url, "IMG_TARGET": "base.img",
		"IMAGE_DIR": stagetest.VolumeDir(t, dir, "images"), "DISK_DIR": stagetest.VolumeDir(t, dir, "disk")}
	if pin != "" {
		env["IMG_SHA256"] = pin
	}
	p, err := FromEnv(stage.MapEnv(env), statFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{p.ImageDir, p.DiskDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// assertInPlace: the base in place is exactly want, recorded, and no temporary file is left.
func assertInPlace(t *testing.T, p Plan, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p.BasePath())
	if err != nil {
		t.Fatalf("base not in place: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("base in place has %d bytes, sha256 %s; want %d bytes, %s", len(got), sum(got), len(want), sum(want))
	}
	if rec, err := readRecord(p.base()); err != nil || rec != sum(want) {
		t.Errorf("record = %q, %v; want %s", rec, err, sum(want))
	}
	assertNoTemp(t, p)
}

func assertNoTemp(t *testing.T, p Plan) {
	t.Helper()
	for _, f := range []string{p.partPath(), p.partPath() + ".meta"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("temporary file %s left", f)
		}
	}
}

// assertNothingInPlace: a failure left no base (and no record) in place.
func assertNothingInPlace(t *testing.T, p Plan) {
	t.Helper()
	for _, f := range []string{p.BasePath(), p.RecordPath()} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s in place after a failure", f)
		}
	}
}

func TestDownloadCases(t *testing.T) {
	body := rawImage(1, 1<<20)
	other := rawImage(2, 1<<20)
	tests := []struct {
		name    string
		handler func(n int, w http.ResponseWriter, r *http.Request)
		pin     string
		want    []byte // nil: a clear error containing wantErr
		wantErr string
		// badInput: the error is an *stage.InputError (exit 2), not a failure (exit 1)
		badInput bool
		check    func(t *testing.T, s *server)
	}{
		{name: "with range support",
			handler: func(n int, w http.ResponseWriter, r *http.Request) { serveRange(w, r, body, modTime) },
			want:    body, pin: sum(body)},
		{name: "without range support",
			handler: func(n int, w http.ResponseWriter, r *http.Request) { serveNoRange(w, r, body) },
			want:    body},
		{name: "drop half-way then resume with Range",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					serveHalfThenDrop(w, r, body, modTime)
					return
				}
				serveRange(w, r, body, modTime)
			},
			want: body,
			check: func(t *testing.T, s *server) {
				if s.ranges.Load() != 1 {
					t.Errorf("%d Range requests, want 1 (the resume)", s.ranges.Load())
				}
			}},
		{name: "drop half-way, server without range support",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					serveHalfThenDrop(w, r, body, modTime)
					return
				}
				serveNoRange(w, r, body)
			},
			want: body},
		{name: "drop half-way, then another body without range support",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					serveHalfThenDrop(w, r, body, modTime)
					return
				}
				serveNoRange(w, r, other)
			},
			want: other},
		{name: "200 to a Range request restarts from zero",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					serveHalfThenDrop(w, r, body, modTime)
					return
				}
				if r.Method == http.MethodHead {
					serveRange(w, r, body, modTime) // advertises Accept-Ranges: bytes
					return
				}
				w.Header().Set("Last-Modified", modTime.Format(http.TimeFormat))
				serveNoRange(w, r, body) // but ignores the Range
			},
			want: body,
			check: func(t *testing.T, s *server) {
				if s.ranges.Load() < 1 {
					t.Errorf("no Range request was made: the case was not exercised")
				}
			}},
		{name: "200 to a Range request, no Content-Length, restarts from zero",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Last-Modified", modTime.Format(http.TimeFormat))
				if r.Method == http.MethodHead {
					w.Header().Set("Accept-Ranges", "bytes")
					return
				}
				// Chunked (no length): only the Range guard can tell the
				// appended body is wrong.
				end := len(body)
				if n == 1 {
					end = len(body) / 2
				}
				for off := 0; off < end; off += 64 << 10 {
					w.Write(body[off:min(off+64<<10, end)])
					w.(http.Flusher).Flush()
				}
				if n == 1 {
					panic(http.ErrAbortHandler)
				}
			},
			want: body},
		{name: "206 at the wrong offset restarts from zero",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					serveHalfThenDrop(w, r, body, modTime)
					return
				}
				if r.Header.Get("Range") != "" {
					w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(body)-1, len(body)))
					w.Header().Set("Content-Length", fmt.Sprint(len(body)))
					w.WriteHeader(http.StatusPartialContent)
					w.Write(body)
					return
				}
				serveRange(w, r, body, modTime)
			},
			want: body},
		{name: "500 then 200",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				if n <= 2 {
					http.Error(w, "busy", http.StatusInternalServerError)
					return
				}
				serveRange(w, r, body, modTime)
			},
			want: body},
		{name: "500 always",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				http.Error(w, "broken", http.StatusBadGateway)
			},
			wantErr: "giving up after 4 attempts"},
		{name: "404 is not retried, exit 2 naming IMG_SOURCE",
			handler:  func(n int, w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			wantErr:  `IMG_SOURCE="`,
			badInput: true,
			check: func(t *testing.T, s *server) {
				if s.gets.Load() != 1 {
					t.Errorf("%d GETs after a 404, want 1", s.gets.Load())
				}
			}},
		{name: "stall once then serve",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					stall(w, r, body)
					return
				}
				serveRange(w, r, body, modTime)
			},
			want: body},
		{name: "stall always",
			handler: func(n int, w http.ResponseWriter, r *http.Request) { stall(w, r, body) },
			wantErr: "no data for"},
		{name: "stall before the headers",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
			},
			wantErr: "timeout awaiting response headers"},
		{name: "different body on the second request (If-Range) restarts from zero",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					serveHalfThenDrop(w, r, body, modTime)
					return
				}
				serveRange(w, r, other, modTime.Add(time.Hour))
			},
			want: other},
		{name: "different body on the second request, pinned sha256",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					serveHalfThenDrop(w, r, body, modTime)
					return
				}
				serveRange(w, r, other, modTime.Add(time.Hour))
			},
			pin:     sum(body),
			wantErr: "the image was discarded"},
		{name: "an HTML error page with 200",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, "<!DOCTYPE html><html><body>Please log in</body></html>")
			},
			wantErr: "not a disk image"},
		{name: "short body",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				w.Write(body[:1000])
			},
			wantErr: "giving up"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.handler)
			p := testPlan(t, srv.URL+"/image.raw", tt.pin)
			s := testApplier(t)
			b, err := s.EnsureBase(context.Background(), p, p.SHA256, "IMG_SHA256")
			if tt.want != nil {
				if err != nil {
					t.Fatalf("EnsureBase: %v", err)
				}
				if b.SHA256 != sum(tt.want) || b.Image.Format != "raw" {
					t.Errorf("base = %+v", b)
				}
				assertInPlace(t, p, tt.want)
			} else {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if stage.IsBadInput(err) != tt.badInput {
					t.Errorf("bad input (exit 2) = %v, want %v: %v", stage.IsBadInput(err), tt.badInput, err)
				}
				assertNothingInPlace(t, p)
			}
			if tt.check != nil {
				tt.check(t, srv)
			}
		})
	}
}

// stall sends the headers and half of the body, then nothing until the client
// gives up.
func stall(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method == http.MethodHead {
		serveRange(w, r, body, modTime)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.Header().Set("Last-Modified", modTime.Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	w.Write(body[:len(body)/2])
	w.(http.Flusher).Flush()
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// TestResumeAcrossRestarts: a run killed half-way leaves a partial file; the
// next run (a new process: a new Applier) continues it with one Range request
// and fetches only the rest.
func TestResumeAcrossRestarts(t *testing.T) {
	body := rawImage(3, 1<<20)
	var sent atomic.Int64
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, n: &sent}
		if n == 1 {
			serveHalfThenDrop(cw, r, body, modTime)
			return
		}
		serveRange(cw, r, body, modTime)
	})
	p := testPlan(t, srv.URL+"/image.raw", "")
	s := testApplier(t)
	s.DL.Attempts = 1 // the first run gives up at once, like a killed container
	if _, err := s.EnsureBase(context.Background(), p, "", "IMG_SHA256"); err == nil {
		t.Fatal("first run succeeded, want a failure after the drop")
	}
	fi, err := os.Stat(p.partPath())
	if err != nil {
		t.Fatalf("no partial file kept for the next run: %v", err)
	}
	half := fi.Size()
	assertNothingInPlace(t, p)

	sent.Store(0)
	if _, err := testApplier(t).EnsureBase(context.Background(), p, "", "IMG_SHA256"); err != nil {
		t.Fatal(err)
	}
	assertInPlace(t, p, body)
	if got, want := sent.Load(), int64(len(body))-half; got != want {
		t.Errorf("second run received %d body bytes, want the %d remaining", got, want)
	}
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingWriter) Flush() { c.ResponseWriter.(http.Flusher).Flush() }

// TestConcurrentRunsDownloadOnce: runs on one target share the cache's lock:
// one downloads, the others wait and reuse the file.
func TestConcurrentRunsDownloadOnce(t *testing.T) {
	body := rawImage(4, 4<<20)
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		// Slow enough that the runs overlap.
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		for off := 0; off < len(body); off += 256 << 10 {
			w.Write(body[off : off+256<<10])
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
		}
	})
	p := testPlan(t, srv.URL+"/image.raw", "")
	const runs = 4
	var wg sync.WaitGroup
	errs := make([]error, runs)
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = testApplier(t).EnsureBase(context.Background(), p, "", "IMG_SHA256")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("run %d: %v", i, err)
		}
	}
	if g := srv.gets.Load(); g != 1 {
		t.Errorf("%d GETs for %d concurrent runs, want 1", g, runs)
	}
	assertInPlace(t, p, body)
}

// TestCachedBaseReused: a verified base in the cache is reused without any
// request; a corrupt one (content does not match its record) is fetched again.
func TestCachedBaseReused(t *testing.T) {
	body := rawImage(5, 1<<20)
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) { serveRange(w, r, body, modTime) })
	p := testPlan(t, srv.URL+"/image.raw", "")
	for range 2 {
		if _, err := testApplier(t).EnsureBase(context.Background(), p, "", "IMG_SHA256"); err != nil {
			t.Fatal(err)
		}
	}
	if g := srv.gets.Load(); g != 1 {
		t.Fatalf("%d GETs for two runs, want 1", g)
	}
	// Corrupt the cached file behind the record's back, later than the record
	// was written (its mtime is set an hour back: time passed).
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p.RecordPath(), hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p.BasePath(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.BasePath(), rawImage(6, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := testApplier(t).EnsureBase(context.Background(), p, "", "IMG_SHA256"); err != nil {
		t.Fatal(err)
	}
	if g := srv.gets.Load(); g != 2 {
		t.Errorf("%d GETs, want 2: the corrupt base must be fetched again", g)
	}
	assertInPlace(t, p, body)

	// A pin that differs from the cached verified base: never replaced, exit 2.
	_, err := testApplier(t).EnsureBase(context.Background(), p, sum(rawImage(7, 512)), "IMG_SHA256")
	if !stage.IsBadInput(err) {
		t.Errorf("pin of another image over a cached base: err = %v, want bad input", err)
	}
	assertInPlace(t, p, body)
}

// TestLocalWriteErrors: a full volume and a read-only volume give a clear
// error, no temporary file and nothing in place. Small tmpfs mounts (root)
// stand for the volumes. Permission denied is tested with the binary run as
// uid 65534 (cmd/image-fetch). An image whose size is known and does not fit
// is refused before anything is written; one of unknown size (no
// Content-Length) fills the volume and fails on the write.
func TestLocalWriteErrors(t *testing.T) {
	roottest.Require(t)
	body := rawImage(8, 1<<20)
	var chunked atomic.Bool
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if !chunked.Load() {
			serveRange(w, r, body, modTime)
			return
		}
		w.Header().Set("Last-Modified", modTime.Format(http.TimeFormat))
		for off := 0; off < len(body); off += 64 << 10 { // no Content-Length: chunked
			w.Write(body[off : off+64<<10])
			w.(http.Flusher).Flush()
		}
	})
	for _, c := range []struct {
		name, opts string
		chunked    bool
		wantErr    []string
	}{
		{"disk full, size known", "size=256k", false, []string{"no space left on device", "free, the image needs 1.0 MiB more (1.0 MiB in all); nothing was written"}},
		{"disk full, size unknown", "size=256k", true, []string{"no space left on device", "is full; the partial download was removed"}},
		{"read-only", "ro,size=4m", false, []string{"read-only file system"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			chunked.Store(c.chunked)
			p := testPlan(t, srv.URL+"/image.raw", "")
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", c.opts, "berth-test", p.ImageDir).CombinedOutput(); err != nil {
				t.Fatalf("mount tmpfs: %v: %s", err, out)
			}
			t.Cleanup(func() { exec.Command("umount", p.ImageDir).Run() })
			_, err := testApplier(t).EnsureBase(context.Background(), p, "", "IMG_SHA256")
			for _, want := range c.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v, want %q", err, want)
				}
			}
			if stage.IsBadInput(err) {
				t.Errorf("want exit 1, got bad input")
			}
			assertNothingInPlace(t, p)
			assertNoTemp(t, p)
			if srv.gets.Load() > 1 {
				t.Errorf("%d GETs: a local write error must not be retried", srv.gets.Load())
			}
			srv.gets.Store(0)
		})
	}
}

// TestNoSpaceForTheRest: a partial download whose rest does not fit is not
// continued (nothing more written, the partial file removed); checkSpace
// passes what fits and what has no known size.
func TestNoSpaceForTheRest(t *testing.T) {
	dir := t.TempDir()
	if err := checkSpace(dir, 1, 1); err != nil {
		t.Errorf("1 byte does not fit in %s: %v", dir, err)
	}
	if err := checkSpace(dir, -1, -1); err != nil {
		t.Errorf("unknown size refused: %v", err)
	}
	err := checkSpace(dir, 1<<62, 1<<62)
	var ns *noSpaceError
	if !errors.As(err, &ns) || !errors.Is(err, syscall.ENOSPC) || ns.Free <= 0 {
		t.Fatalf("4 EiB fit in %s: %v", dir, err)
	}
	roottest.Require(t)
	body := rawImage(9, 1<<20)
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) { serveRange(w, r, body, modTime) })
	p := testPlan(t, srv.URL+"/image.raw", "")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "berth-test", p.ImageDir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", p.ImageDir).Run() })
	// A first half as a crashed run leaves it, then a ballast: the rest no longer fits.
	part := p.partPath()
	if err := os.WriteFile(part, body[:len(body)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeMeta(part, partMeta{URL: urlKey(srv.URL + "/image.raw"), LastModified: modTime.Format(http.TimeFormat), Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.ImageDir, "ballast"), make([]byte, 400<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = testApplier(t).EnsureBase(context.Background(), p, "", "IMG_SHA256")
	if err == nil || !strings.Contains(err.Error(), "the image needs 0.5 MiB more (1.0 MiB in all); nothing was written") {
		t.Fatalf("err = %v, want the rest (0.5 MiB of 1.0 MiB) refused", err)
	}
	if srv.ranges.Load() == 0 {
		t.Errorf("the partial file was not offered for continuation (no Range request)")
	}
	assertNothingInPlace(t, p)
	assertNoTemp(t, p)
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 0-9/10", 0, 10, true},
		{"bytes 5-9/*", 5, -1, true},
		{"bytes 5-9/9", 0, 0, false},
		{"bytes 9-5/10", 0, 0, false},
		{"bytes */10", 0, 0, false},
		{"items 0-9/10", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		s, tot, err := parseContentRange(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (s != tt.start || tot != tt.total)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tt.in, s, tot, err)
		}
	}
}

// TestProgressLogged: a slow download logs progress lines with bytes, total,
// percent, rate and ETA (the intervals are shortened; no timing is asserted).
func TestProgressLogged(t *testing.T) {
	body := rawImage(10, 1<<20)
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		for off := 0; off < len(body); off += 64 << 10 {
			w.Write(body[off : off+64<<10])
			w.(http.Flusher).Flush()
			time.Sleep(30 * time.Millisecond)
		}
	})
	p := testPlan(t, srv.URL+"/image.raw", "")
	log, buf := testLog(t)
	s := testApplier(t)
	s.Log, s.DL.Log = log, log
	s.DL.IdleTimeout = 200 * time.Millisecond // watch ticks every ~50 ms
	s.DL.ProgressEvery = 100 * time.Millisecond
	if _, err := s.EnsureBase(context.Background(), p, "", "IMG_SHA256"); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "msg=downloading") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("no progress line in the log:\n%s", buf.String())
	}
	for _, want := range []string{"bytes=", "total=1048576", "percent=", "rate=", "eta="} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("progress line lacks %s: %s", want, lines[0])
		}
	}
}

// The HTTP path opens the partial file itself without following a symlink:
// a link planted at .<IMG_TARGET>.part between the stage's checks and the
// request (a race the up-front check cannot close) is refused, its target
// untouched, and no secret of the URL lands in .part.meta.
func TestDownloadNeverWritesThroughSymlinkedPart(t *testing.T) {
	body := rawImage(11, 256<<10)
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) { serveRange(w, r, body, modTime) })
	p := testPlan(t, srv.URL+"/image.raw?X-Amz-Signature=sekrit", "")
	victim := filepath.Join(t.TempDir(), "pet.qcow2")
	if err := os.WriteFile(victim, []byte("the pet disk"), 0o600); err != nil {
		t.Fatal(err)
	}
	part := p.partPath()
	if err := os.Symlink(victim, part); err != nil {
		t.Fatal(err)
	}
	s := testApplier(t)
	err := s.DL.attempt(context.Background(), p.Source, part, newDigest(), make([]byte, 64<<10))
	if !errors.Is(err, fsutil.ErrNotOwnFile) {
		t.Fatalf("attempt through a symlinked .part: %v, want ErrNotOwnFile", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "the pet disk" {
		t.Fatalf("the symlink's target was written: %q", b)
	}
	if fi, err := os.Lstat(part); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the planted link was not left alone: %v %v", fi, err)
	}

	// The same download into a real partial file: its .meta keeps a hash of the URL, not the URL.
	if err := os.Remove(part); err != nil {
		t.Fatal(err)
	}
	if err := s.DL.attempt(context.Background(), p.Source, part, newDigest(), make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(part + ".meta"); err == nil && strings.Contains(string(b), "sekrit") {
		t.Fatalf(".part.meta holds the URL's secret: %s", b)
	}
	if got, _ := os.ReadFile(part); !bytes.Equal(got, body) {
		t.Fatalf("downloaded %d bytes, want the %d of the body", len(got), len(body))
	}
}

func TestCheckRedirect(t *testing.T) {
	req := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name string
		via  []string
		to   string
		want string // "" = followed
	}{
		{"https to https", []string{"https://a.example/x"}, "https://b.example/x", ""},
		{"http to https", []string{"http://a.example/x"}, "https://b.example/x", ""},
		{"http to http", []string{"http://a.example/x"}, "http://b.example/x", ""},
		{"https to http", []string{"https://a.example/x"}, "http://b.example/x", "https:// to http://"},
		{"https, https, then http", []string{"https://a.example/x", "https://b.example/x"}, "http://c.example/x", "https:// to http://"},
		{"to file", []string{"http://a.example/x"}, "file:///etc/passwd", "only http:// and https://"},
		{"a loop", []string{"http://a.example/x", "http://b.example/x"}, "http://a.example/x", "loop"},
	}
	for _, tt := range tests {
		var via []*http.Request
		for _, v := range tt.via {
			via = append(via, req(v))
		}
		err := checkRedirect(req(tt.to), via)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want a refusal saying %q", tt.name, err, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 120 ", 120 * time.Second},
		{"-1", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		h := http.Header{}
		if tt.v != "" {
			h.Set("Retry-After", tt.v)
		}
		if got := retryAfter(h, now); got != tt.want {
			t.Errorf("Retry-After %q: %s, want %s", tt.v, got, tt.want)
		}
	}
}

// A 503 with Retry-After is retried after the server's wait (bounded by
// MaxBackoff), not the shorter backoff.
func TestRetryAfterHonoured(t *testing.T) {
	body := rawImage(12, 64<<10)
	var firstAt, secondAt atomic.Int64
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			serveRange(w, r, body, modTime)
			return
		}
		if firstAt.Load() == 0 {
			firstAt.Store(time.Now().UnixNano())
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		secondAt.CompareAndSwap(0, time.Now().UnixNano())
		serveRange(w, r, body, modTime)
	})
	p := testPlan(t, srv.URL+"/image.raw", "")
	s := testApplier(t)
	s.DL.Backoff, s.DL.MaxBackoff = 10*time.Millisecond, 5*time.Second
	if _, err := s.DL.Download(context.Background(), p.Source, p.partPath()); err != nil {
		t.Fatal(err)
	}
	gap := time.Duration(secondAt.Load() - firstAt.Load())
	t.Logf("second GET %s after the 503 (Retry-After: 1, backoff 10ms)", gap)
	if gap < 900*time.Millisecond {
		t.Errorf("retried %s after a 503 with Retry-After: 1: the server's wait was not honoured", gap)
	}
}

// TestCompletePartialFile: a run that ended after the last byte but before
// the rename leaves a whole partial file. The next run asks for the rest
// with Range and If-Range; a 416 "bytes */SIZE" for the same version means
// nothing is missing (no body byte is fetched, the file is hashed once); a
// changed version (If-Range fails: 200) is fetched again from zero.
func TestCompletePartialFile(t *testing.T) {
	body := rawImage(13, 1<<20)
	other := rawImage(14, 1<<20)
	for _, tt := range []struct {
		name      string
		serve     []byte
		mod       time.Time
		want      []byte
		wantBytes int64 // image bytes the server sends (in 2xx responses); -1: not checked
	}{
		{"same version", body, modTime, body, 0},
		{"changed version", other, modTime.Add(time.Hour), other, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var sent atomic.Int64
			srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
				serveRange(&okCounter{ResponseWriter: w, n: &sent}, r, tt.serve, tt.mod)
			})
			p := testPlan(t, srv.URL+"/image.raw", "")
			part := p.partPath()
			if err := os.WriteFile(part, body, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := writeMeta(part, partMeta{URL: urlKey(p.Source), LastModified: modTime.Format(http.TimeFormat), Size: int64(len(body))}); err != nil {
				t.Fatal(err)
			}
			b, err := testApplier(t).EnsureBase(context.Background(), p, "", "IMG_SHA256")
			if err != nil {
				t.Fatal(err)
			}
			if b.SHA256 != sum(tt.want) {
				t.Errorf("sha256 %s, want %s", b.SHA256, sum(tt.want))
			}
			assertInPlace(t, p, tt.want)
			if srv.ranges.Load() != 1 {
				t.Errorf("%d Range requests, want 1", srv.ranges.Load())
			}
			if got := sent.Load(); tt.wantBytes >= 0 && got != tt.wantBytes {
				t.Errorf("the server sent %d body bytes, want %d", got, tt.wantBytes)
			}
		})
	}
}

// okCounter counts the body bytes of 2xx responses (not an error's text).
type okCounter struct {
	http.ResponseWriter
	n    *atomic.Int64
	code int
}

func (c *okCounter) WriteHeader(code int) { c.code = code; c.ResponseWriter.WriteHeader(code) }

func (c *okCounter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	if c.code/100 == 2 {
		c.n.Add(int64(n))
	}
	return n, err
}
