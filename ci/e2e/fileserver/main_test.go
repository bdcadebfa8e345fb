package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, rate int64) (*httptest.Server, *bytes.Buffer, []byte) {
	t.Helper()
	dir := t.TempDir()
	body := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	if err := os.WriteFile(filepath.Join(dir, "img.qcow2"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	srv := httptest.NewServer(newHandler(dir, rate, slog.New(slog.NewTextHandler(&logs, nil))))
	t.Cleanup(srv.Close)
	return srv, &logs, body
}

func TestRangeIsServedAndLogged(t *testing.T) {
	srv, logs, body := serve(t, 0)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/img.qcow2", nil)
	req.Header.Set("Range", "bytes=1000-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, body[1000:]) {
		t.Fatalf("status %d, %d bytes; want 206 and %d bytes", resp.StatusCode, len(got), len(body)-1000)
	}
	if resp.Header.Get("Last-Modified") == "" {
		t.Error("no Last-Modified: image-fetch could not resume")
	}
	srv.Close() // waits for the handler: its log line is written after the body
	line := logs.String()
	for _, want := range []string{"method=GET path=/img.qcow2 ", `range="bytes=1000-"`, "status=206", "bytes=261144"} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
}

func TestOnlyGetAndHead(t *testing.T) {
	srv, _, _ := serve(t, 0)
	resp, err := http.Post(srv.URL+"/img.qcow2", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d, want 405", resp.StatusCode)
	}
}

// The pacing sleeps: 256 KiB at 1 MiB/s cannot arrive in less than ~250 ms (a lower bound only).
func TestRateLimits(t *testing.T) {
	srv, _, body := serve(t, 1<<20)
	start := time.Now()
	resp, err := http.Get(srv.URL + "/img.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("got %d bytes, want the whole file", len(got))
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("256 KiB at 1 MiB/s took %s: not paced", el)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1000": 1000, "16Mi": 16 << 20, "512Ki": 512 << 10, "1Gi": 1 << 30} {
		if got, err := parseRate(in); err != nil || got != want {
			t.Errorf("parseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1.5Mi", "16MB"} {
		if _, err := parseRate(bad); err == nil {
			t.Errorf("parseRate(%q): no error", bad)
		}
	}
}
