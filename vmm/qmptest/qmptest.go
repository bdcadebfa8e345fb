// Package qmptest is a fake QEMU monitor for table tests: it serves QMP on a
// unix socket the way QEMU does (greeting, qmp_capabilities, one reply per
// command, with the command's id) from a table of canned replies.
package qmptest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"path/filepath"
	"sync"
	"testing"
)

// Greeting is QEMU 7.2's QMP greeting.
const Greeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}`

// Server answers each command with Replies[command]: a JSON value sent as
// {"return": value}, or, for a command not in the table, QEMU's
// CommandNotFound error. Events are sent before every reply.
type Server struct {
	// Path is the socket to dial (qmp.Dial).
	Path string

	mu      sync.Mutex
	replies map[string]string
	events  []string
	seen    []string
}

// New serves replies on a socket in t's temporary directory until the test ends.
func New(t testing.TB, replies map[string]string) *Server {
	t.Helper()
	s := &Server{Path: filepath.Join(t.TempDir(), "qmp.sock"), replies: replies}
	l, err := net.Listen("unix", s.Path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		s.mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			conns = append(conns, c)
			s.mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); s.serve(c) }()
		}
	}()
	return s
}

// Set replaces the reply to cmd ("" removes it: CommandNotFound).
func (s *Server) Set(cmd, reply string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reply == "" {
		delete(s.replies, cmd)
		return
	}
	s.replies[cmd] = reply
}

// Event queues an event (e.g. `{"event": "RESET", "data": {"guest": true}}`)
// to be sent before the next reply.
func (s *Server) Event(ev string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, ev)
}

// Seen returns the commands received so far, qmp_capabilities included.
func (s *Server) Seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	w := bufio.NewWriter(c)
	send := func(line string) bool {
		_, err := w.WriteString(line + "\n")
		return err == nil && w.Flush() == nil
	}
	if !send(Greeting) {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var req struct {
			Execute string          `json:"execute"`
			ID      json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(line, &req); err != nil {
			return
		}
		id := string(req.ID)
		if id == "" {
			id = "null"
		}
		s.mu.Lock()
		s.seen = append(s.seen, req.Execute)
		reply, ok := s.replies[req.Execute]
		events := s.events
		s.events = nil
		s.mu.Unlock()
		if req.Execute == "qmp_capabilities" {
			reply, ok, events = "{}", true, nil
		}
		reply = compact(reply)
		for _, ev := range events {
			if !send(compact(ev)) {
				return
			}
		}
		out := `{"return": ` + reply + `, "id": ` + id + `}`
		if !ok {
			out = `{"error": {"class": "CommandNotFound", "desc": "The command ` + req.Execute + ` has not been found"}, "id": ` + id + `}`
		}
		if !send(out) {
			return
		}
	}
}

// compact puts a JSON value on one line, as QEMU sends every message (a
// table may write it over several).
func compact(v string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(v)); err != nil {
		return v // not JSON: sent as it is, for tests of bad replies
	}
	return b.String()
}
