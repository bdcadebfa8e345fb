// Command fileserver serves one directory read-only over HTTP (GET and HEAD, ranges, Last-Modified)
// and logs every request (method, path, Range header, status, bytes sent). Berth's end-to-end test
// runs it as a pod so image-fetch downloads the test guest over the pod network for real; the chaos
// test (ci/chaos/run.sh) throttles it with -rate so a download can be interrupted half-way.
//
//	fileserver [-listen :8080] [-dir /srv] [-rate 16Mi]
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to listen on")
	dir := flag.String("dir", "/srv", "directory to serve")
	rateText := flag.String("rate", "0", "bytes per second per response body, e.g. 16Mi, 512Ki, 1000000 (0: unlimited)")
	flag.Parse()
	rate, err := parseRate(*rateText)
	if err != nil {
		slog.Error("-rate", "value", *rateText, "err", err)
		os.Exit(2)
	}
	if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
		slog.Error("serve directory", "dir", *dir, "err", err)
		os.Exit(2)
	}
	srv := &http.Server{Addr: *listen, Handler: newHandler(*dir, rate, slog.Default()), ReadHeaderTimeout: 10 * time.Second}
	slog.Info("serving", "dir", *dir, "listen", *listen, "rate_bytes_per_s", rate)
	if err := srv.ListenAndServe(); err != nil {
		slog.Error("listen", "err", err)
		os.Exit(1)
	}
}

// newHandler serves dir read-only, each response body at most rate bytes/s (0: unlimited), and
// logs one line per request. The line starts "method=GET path=/..." (ci/e2e/cluster-test.sh
// counts downloads with it).
func newHandler(dir string, rate int64, log *slog.Logger) http.Handler {
	files := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		start := time.Now()
		cw := &countingWriter{ResponseWriter: w, rate: rate, start: start, status: http.StatusOK}
		files.ServeHTTP(cw, r)
		log.Info("request", "method", r.Method, "path", r.URL.Path, "range", r.Header.Get("Range"),
			"if_range", r.Header.Get("If-Range"), "status", cw.status, "bytes", cw.n,
			"remote", r.RemoteAddr, "duration", time.Since(start))
	})
}

// countingWriter records the status and the body bytes, and paces the body to rate bytes/s.
// It has no ReadFrom on purpose: the file server then writes in 32 KiB chunks, which are paced.
type countingWriter struct {
	http.ResponseWriter
	rate   int64
	start  time.Time
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.rate <= 0 {
		n, err := c.ResponseWriter.Write(p)
		c.n += int64(n)
		return n, err
	}
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), 32<<10)]
		// Sleep until the bytes sent so far are within the rate.
		if ahead := time.Duration(float64(c.n)/float64(c.rate)*float64(time.Second)) - time.Since(c.start); ahead > 0 {
			time.Sleep(ahead)
		}
		n, err := c.ResponseWriter.Write(chunk)
		c.n += int64(n)
		written += n
		if err != nil {
			return written, err
		}
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[n:]
	}
	return written, nil
}

// parseRate parses "16Mi", "512Ki", "1Gi" or a plain number of bytes per second.
func parseRate(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if v, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = v, m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a whole number of bytes per second, optionally with Ki, Mi or Gi")
	}
	return n * mult, nil
}
