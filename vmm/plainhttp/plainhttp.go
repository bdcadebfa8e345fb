// Package plainhttp serves one small read-only document (vmm's metrics) over
// HTTP/1.0 and HTTP/1.1, one request per connection, without net/http.
//
// net/http (with its HTTP/2, TLS and MIME code) is about 3.5 MiB of a
// static binary, and the kernel maps most of what a process links, so it
// would cost vmm more memory than the whole metrics feature may
// (docs/benchmarks.md, "Metrics"). A scraper needs a GET of one path and
// an answer with a length: that is what this serves. Every connection is
// bounded (the request head in size and time, the answer in time, the
// connections at once in number) and closed after its answer
// ("Connection: close"; Prometheus opens a new one for the next scrape).
package plainhttp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The bounds of a connection.
const (
	// MaxHeadBytes bounds the request line and headers together.
	MaxHeadBytes = 8 << 10
	// ReadTimeout bounds reading the request head.
	ReadTimeout = 5 * time.Second
	// MaxConns is how many connections are served at once; more are closed
	// at once (a scraper makes one at a time).
	MaxConns = 4
	// shutdownWait is how long Serve waits for answers under way once its
	// context ends.
	shutdownWait = 2 * time.Second
	// lingerTime is how long a refused request's connection is read after
	// the answer.
	lingerTime = 500 * time.Millisecond
)

// Server answers GET and HEAD of Path with Body's document.
type Server struct {
	Path        string
	ContentType string
	// Body makes the document of one request (ctx ends with the connection's
	// write deadline).
	Body func(ctx context.Context) []byte
	// WriteTimeout bounds making the body and writing the answer.
	WriteTimeout time.Duration
	Log          *slog.Logger
	// Answered, if set, is called after each answer of Body's document.
	Answered func()
}

// Serve accepts connections on l until ctx ends, then closes l and waits
// briefly for the answers under way. It returns nil after ctx ends, else
// the listener's error.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	var wg sync.WaitGroup
	slots := make(chan struct{}, MaxConns)
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				waitTimeout(&wg, shutdownWait)
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		select {
		case slots <- struct{}{}:
		default:
			s.Log.Debug("http: too many connections, closing one", "remote", c.RemoteAddr().String())
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			s.serveConn(ctx, c)
		}()
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(ReadTimeout)); err != nil {
		return
	}
	req, err := ReadRequest(bufio.NewReaderSize(io.LimitReader(c, MaxHeadBytes+1), 4096))
	deadline := time.Now().Add(s.WriteTimeout)
	if err := c.SetWriteDeadline(deadline); err != nil {
		return
	}
	var status int
	var body []byte
	header := ""
	switch {
	case err != nil:
		var he *Error
		if !errors.As(err, &he) {
			s.Log.Debug("http: read the request", "err", err, "remote", c.RemoteAddr().String())
			return // the client went away or was too slow: no one to answer
		}
		status, body = he.Status, []byte(he.Error()+"\n")
	case req.Path != s.Path:
		status, body = 404, []byte("not found: only "+s.Path+" is served\n")
	case req.Method != "GET" && req.Method != "HEAD":
		status, body, header = 405, []byte("method not allowed: GET or HEAD\n"), "Allow: GET, HEAD\r\n"
	default:
		bctx, cancel := context.WithDeadline(ctx, deadline)
		status, body, header = 200, s.Body(bctx), "Content-Type: "+s.ContentType+"\r\n"
		cancel()
	}
	if status != 200 {
		header = "Content-Type: text/plain; charset=utf-8\r\n" + header
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n", status, statusText(status), header, len(body))
	if req.Method != "HEAD" {
		b.Write(body)
	}
	if _, err := c.Write(b.Bytes()); err != nil {
		s.Log.Debug("http: write the answer", "err", err, "remote", c.RemoteAddr().String())
		return
	}
	if err != nil {
		lingerClose(c)
	} else if status == 200 && s.Answered != nil {
		s.Answered()
	}
}

// lingerClose keeps a refused request's connection open briefly after the
// answer, reading what the client still sends: closing a socket with
// unread data resets it, and the client would lose the answer (net/http
// does the same).
func lingerClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	if c.SetReadDeadline(time.Now().Add(lingerTime)) == nil {
		_, _ = io.CopyN(io.Discard, c, 256<<10)
	}
}

// Request is what is served from a request: its method and its target's
// path (the query, if any, is ignored).
type Request struct {
	Method string
	Path   string
}

// Error is a request this server refuses, with the status it answers.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return statusText(e.Status) + ": " + e.Reason }

func bad(format string, args ...any) error {
	return &Error{Status: 400, Reason: fmt.Sprintf(format, args...)}
}

// ReadRequest reads a request head (RFC 9112: the request line, then
// header fields up to an empty line; a bare LF is taken for CRLF) from r,
// which must end after MaxHeadBytes+1 bytes. A request with a body is
// refused: nothing served here takes one. Errors that are not *Error are
// the connection's own (closed, timed out).
func ReadRequest(r *bufio.Reader) (Request, error) {
	read := 0
	line := func() (string, error) {
		s, err := r.ReadString('\n')
		read += len(s)
		if read > MaxHeadBytes {
			return "", &Error{Status: 431, Reason: fmt.Sprintf("the request head is over %d bytes", MaxHeadBytes)}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && read > 0 {
				return "", bad("the request head ends early")
			}
			return "", err
		}
		return strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r"), nil
	}
	first, err := line()
	if err != nil {
		return Request{}, err
	}
	method, rest, ok1 := strings.Cut(first, " ")
	target, version, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !isToken(method) || target == "" || strings.ContainsAny(target, " \t\r") {
		return Request{}, bad("not an HTTP request line: %q", truncate(first))
	}
	switch version {
	case "HTTP/1.1", "HTTP/1.0":
	default:
		if !strings.HasPrefix(version, "HTTP/") {
			return Request{}, bad("not an HTTP request line: %q", truncate(first))
		}
		return Request{}, &Error{Status: 505, Reason: fmt.Sprintf("%s: HTTP/1.0 or HTTP/1.1 only", truncate(version))}
	}
	path, _, _ := strings.Cut(target, "?")
	if !strings.HasPrefix(path, "/") {
		return Request{}, bad("the target %q is not a path", truncate(target))
	}
	for {
		h, err := line()
		if err != nil {
			return Request{}, err
		}
		if h == "" {
			return Request{Method: method, Path: path}, nil
		}
		name, value, ok := strings.Cut(h, ":")
		if !ok || !isToken(name) {
			return Request{}, bad("not a header field: %q", truncate(h))
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "transfer-encoding":
			return Request{}, bad("a request with a body (Transfer-Encoding)")
		case "content-length":
			if n, err := strconv.ParseUint(value, 10, 63); err != nil || n > 0 {
				return Request{}, bad("a request with a body (Content-Length %q)", truncate(value))
			}
		}
	}
}

// isToken: RFC 9110's token (a method, a header field name).
func isToken(s string) bool {
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 431:
		return "Request Header Fields Too Large"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Status " + strconv.Itoa(code)
}
