package plainhttp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve runs a Server on a loopback port until the test ends.
func serve(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Path: "/metrics", ContentType: "text/plain; version=0.0.4; charset=utf-8",
		Body:         func(context.Context) []byte { return []byte("berth_up 1\n") },
		WriteTimeout: 5 * time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve after its context ended: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return l.Addr().String()
}

// TestGet: net/http's client (what Go scrapers use) reads the document.
func TestGet(t *testing.T) {
	addr := serve(t)
	for _, path := range []string{"/metrics", "/metrics?x=1"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(b) != "berth_up 1\n" || resp.Header.Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" || !resp.Close {
			t.Errorf("GET %s: %s %q %v, %q, close %v", path, resp.Status, b, err, resp.Header.Get("Content-Type"), resp.Close)
		}
	}
}

// TestRaw: what raw requests are answered.
func TestRaw(t *testing.T) {
	addr := serve(t)
	for _, tt := range []struct {
		name, req string
		want      string // the status line, "" for none (the connection is closed)
		body      bool
	}{
		{"get", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK", true},
		{"http/1.0, bare LF", "GET /metrics HTTP/1.0\n\n", "HTTP/1.1 200 OK", true},
		{"head", "HEAD /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK", false},
		{"another path", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found", true},
		{"a prefix of the path", "GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found", true},
		{"post", "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 Method Not Allowed", true},
		{"a body", "GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 400 Bad Request", true},
		{"chunked", "GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 400 Bad Request", true},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported", true},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", "HTTP/1.1 400 Bad Request", true},
		{"a folded header", "GET /metrics HTTP/1.1\r\nA: b\r\n c\r\n\r\n", "HTTP/1.1 400 Bad Request", true},
		{"a huge head", "GET /metrics HTTP/1.1\r\nX: " + strings.Repeat("a", MaxHeadBytes) + "\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large", true},
		{"a head cut short", "GET /metrics HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 400 Bad Request", true},
		{"nothing", "", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, tt.req); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			status, rest, _ := strings.Cut(string(b), "\r\n")
			if status != tt.want {
				t.Fatalf("status %q, want %q; answer:\n%s", status, tt.want, b)
			}
			if tt.want == "" {
				return
			}
			_, body, _ := strings.Cut(rest, "\r\n\r\n")
			if got := body != ""; got != tt.body {
				t.Errorf("body %q, want one: %v", body, tt.body)
			}
			if !strings.Contains(rest, "Connection: close\r\n") || !strings.Contains(rest, "Content-Length: ") {
				t.Errorf("no Connection: close or Content-Length:\n%s", b)
			}
		})
	}
}

// TestSlowClient: a client that sends nothing is dropped after ReadTimeout,
// and does not keep the others out.
func TestSlowClient(t *testing.T) {
	if testing.Short() {
		t.Skip("waits ReadTimeout")
	}
	addr := serve(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := c.SetReadDeadline(time.Now().Add(ReadTimeout + 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := c.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("the silent connection read %d, %v: want it closed by the server", n, err)
	}
	t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
}

// TestTooManyConns: past MaxConns at once, a connection is closed at once.
func TestTooManyConns(t *testing.T) {
	addr := serve(t)
	for i := 0; i < MaxConns; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(200 * time.Millisecond) // the server accepts them
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(ReadTimeout / 2)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("connection %d read %d, %v: want it closed", MaxConns+1, n, err)
	}
}

func TestReadRequest(t *testing.T) {
	for _, tt := range []struct {
		in     string
		want   Request
		status int // 0: no error
	}{
		{"GET /metrics HTTP/1.1\r\n\r\n", Request{"GET", "/metrics"}, 0},
		{"GET /metrics?a=b HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n", Request{"GET", "/metrics"}, 0},
		{"GET /m HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Request{"GET", "/m"}, 0},
		{"GET /m HTTP/1.1\r\nContent-Length: x\r\n\r\n", Request{}, 400},
		{"GET http://h/m HTTP/1.1\r\n\r\n", Request{}, 400},
		{"GET /m HTTP/3\r\n\r\n", Request{}, 505},
		{"GET /m FTP/1\r\n\r\n", Request{}, 400},
		{"GET  /m HTTP/1.1\r\n\r\n", Request{}, 400},
		{"GET /m HTTP/1.1 x\r\n\r\n", Request{}, 505},
		{"G(T /m HTTP/1.1\r\n\r\n", Request{}, 400},
		{"GET /m HTTP/1.1\r\n: v\r\n\r\n", Request{}, 400},
		{"GET /m HTTP/1.1\r\nna me: v\r\n\r\n", Request{}, 400},
	} {
		got, err := ReadRequest(bufio.NewReader(strings.NewReader(tt.in)))
		var he *Error
		switch {
		case tt.status == 0 && (err != nil || got != tt.want):
			t.Errorf("ReadRequest(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		case tt.status != 0 && (!errors.As(err, &he) || he.Status != tt.status):
			t.Errorf("ReadRequest(%q) = %+v, %v; want status %d", tt.in, got, err, tt.status)
		}
	}
}

// FuzzReadRequest: any bytes give a request whose method is a token and
// whose path is a path, or an error; never more than the head is read.
func FuzzReadRequest(f *testing.F) {
	f.Add("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	f.Add("HEAD / HTTP/1.0\n\n")
	f.Add("GET /m HTTP/1.1\r\nContent-Length: 00\r\n\r\nbody")
	f.Fuzz(func(t *testing.T, in string) {
		r := bufio.NewReader(io.LimitReader(strings.NewReader(in), MaxHeadBytes+1))
		req, err := ReadRequest(r)
		if err != nil {
			return
		}
		if !isToken(req.Method) || !strings.HasPrefix(req.Path, "/") || strings.ContainsAny(req.Path, " ?\r\n") {
			t.Fatalf("ReadRequest(%q) = %+v", in, req)
		}
		if !strings.Contains(in, "\n\n") && !strings.Contains(in, "\n\r\n") {
			t.Fatalf("ReadRequest(%q) = %+v without an empty line ending the head", in, req)
		}
	})
}
