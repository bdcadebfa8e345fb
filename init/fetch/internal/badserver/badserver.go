// Package badserver is an HTTP(S) server on loopback that misbehaves in one
// chosen way (a Mode), for tests of image-fetch against servers that lie or
// stall. It records every request it sees.
package badserver

import (
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mode is how the server misbehaves.
type Mode string

// The modes. "Cut" is: the headers of the whole body, half of it, then the
// connection is dropped.
const (
	Good         Mode = "good"          // serves the file (Range, If-Range, ETag)
	ShortLength  Mode = "short-length"  // Content-Length is half the file, and exactly that half is sent
	Drip         Mode = "drip"          // whole-file headers, then one byte every DripEvery
	Stall        Mode = "stall"         // whole-file headers, then nothing until the client goes
	RedirectLoop Mode = "redirect-loop" // /x -> /x-loop -> /x -> ...
	RedirectFile Mode = "redirect-file" // 302 to file:///etc/passwd
	WrongRange   Mode = "wrong-range"   // first GET cut; a Range request gets 206 with a Content-Range from 0
	ChangedETag  Mode = "changed-etag"  // first GET cut serving Old (ETag "v1"); from then on the file (ETag "v2")
	Gzip         Mode = "gzip"          // Content-Encoding: gzip whatever the client accepts
	Unavailable  Mode = "503-then-ok"   // the first Failures GETs are 503, then the file
	HeadRefused  Mode = "head-refused"  // HEAD is 403; first GET cut, then the file
	NotFound     Mode = "404"           // 404 to everything
	CutOnce      Mode = "cut-once"      // first GET cut, then the file
	HugeLength   Mode = "huge-length"   // Content-Length 1 PiB, then nothing
)

// Request is what the server saw of one request.
type Request struct {
	Method, Path, Range, IfRange string
}

func (r Request) String() string {
	s := r.Method + " " + r.Path
	if r.Range != "" {
		s += " Range:" + r.Range
	}
	if r.IfRange != "" {
		s += " If-Range:" + r.IfRange
	}
	return s
}

// Server serves Body at any path, misbehaving as Mode says.
type Server struct {
	URL       string // base URL, no trailing slash
	Mode      Mode
	Body      []byte        // the file served
	Old       []byte        // ChangedETag: the version served first
	DripEvery time.Duration // Drip: time between bytes
	Failures  int           // Unavailable: how many GETs get 503

	srv  *httptest.Server
	mu   sync.Mutex
	reqs []Request
	gets int
}

// New starts a server on 127.0.0.1 (TLS with a self-signed certificate when
// tls is set). Close it when done.
func New(mode Mode, body []byte, tls bool) *Server {
	s := &Server{Mode: mode, Body: body, DripEvery: 100 * time.Millisecond, Failures: 2}
	if mode == ChangedETag {
		s.Old = bytes.Clone(body)
		s.Old[len(body)/4] ^= 0xff // differs inside the half the first GET sends
	}
	h := http.HandlerFunc(s.serve)
	if tls {
		s.srv = httptest.NewTLSServer(h)
	} else {
		s.srv = httptest.NewServer(h)
	}
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.CloseClientConnections(); s.srv.Close() }

// CertPEM is the TLS server's self-signed certificate, PEM-encoded.
func (s *Server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// Certificate is the TLS server's certificate.
func (s *Server) Certificate() *x509.Certificate { return s.srv.Certificate() }

// Requests returns the requests seen so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, Request{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"), IfRange: r.Header.Get("If-Range")})
	if r.Method == http.MethodGet {
		s.gets++
	}
	gets := s.gets
	s.mu.Unlock()

	body, etag := s.Body, `"v2"`
	switch s.Mode {
	case Good:
	case ShortLength:
		half := s.Body[:len(s.Body)/2]
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Length", strconv.Itoa(len(half)))
		if r.Method == http.MethodGet {
			w.Write(half)
		}
		return
	case Drip:
		drip(w, r, body, etag, s.DripEvery)
		return
	case Stall:
		headers(w, len(body), etag)
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	case RedirectLoop:
		to := r.URL.Path + "-loop"
		if p, ok := strings.CutSuffix(r.URL.Path, "-loop"); ok {
			to = p
		}
		http.Redirect(w, r, to, http.StatusFound)
		return
	case RedirectFile:
		w.Header().Set("Location", "file:///etc/passwd")
		w.WriteHeader(http.StatusFound)
		return
	case WrongRange:
		if r.Method == http.MethodGet && gets == 1 {
			cut(w, body, etag)
			return
		}
		if r.Header.Get("Range") != "" && r.Method == http.MethodGet {
			headers(w, len(body), etag)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(body)-1, len(body)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(body)
			return
		}
	case ChangedETag:
		if r.Method == http.MethodGet && gets == 1 {
			cut(w, s.Old, `"v1"`)
			return
		}
	case Gzip:
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(body)
		zw.Close()
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Length", strconv.Itoa(zb.Len()))
		if r.Method == http.MethodGet {
			w.Write(zb.Bytes())
		}
		return
	case Unavailable:
		if r.Method == http.MethodGet && gets <= s.Failures {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
	case HeadRefused:
		if r.Method == http.MethodHead {
			http.Error(w, "no HEAD here", http.StatusForbidden)
			return
		}
		if gets == 1 {
			cut(w, body, etag)
			return
		}
	case NotFound:
		http.NotFound(w, r)
		return
	case CutOnce:
		if r.Method == http.MethodGet && gets == 1 {
			cut(w, body, etag)
			return
		}
	case HugeLength:
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Length", strconv.FormatInt(1<<50, 10))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	}
	w.Header().Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

func headers(w http.ResponseWriter, n int, etag string) {
	w.Header().Set("ETag", etag)
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", strconv.Itoa(n))
}

// cut sends the headers of the whole body, half of it, and drops the connection.
func cut(w http.ResponseWriter, body []byte, etag string) {
	headers(w, len(body), etag)
	w.WriteHeader(http.StatusOK)
	w.Write(body[:len(body)/2])
	w.(http.Flusher).Flush()
	time.Sleep(100 * time.Millisecond) // the client writes what it got
	panic(http.ErrAbortHandler)
}

// drip serves body (from the Range start, if any) one byte every every.
func drip(w http.ResponseWriter, r *http.Request, body []byte, etag string, every time.Duration) {
	from := 0
	if rng, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
		if a, _, ok := strings.Cut(rng, "-"); ok {
			if n, err := strconv.Atoi(a); err == nil && n < len(body) && (r.Header.Get("If-Range") == "" || r.Header.Get("If-Range") == etag) {
				from = n
			}
		}
	}
	headers(w, len(body)-from, etag)
	status := http.StatusOK
	if from > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(body)-1, len(body)))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	if r.Method != http.MethodGet {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for i := from; i < len(body); i++ {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		if _, err := w.Write(body[i : i+1]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
	}
}
