// Package agenttest is a fake qemu-guest-agent on a unix socket, for fast
// tests of vmm/agent's callers: it speaks the agent's protocol (0xFF
// resynchronisation, guest-sync-delimited, one JSON reply a line), answers the
// commands Berth uses from its fields, and can misbehave as a real channel
// does (stale bytes of an earlier client, no answer at all).
package agenttest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Agent is the fake's behaviour and state; set the fields before connecting.
type Agent struct {
	// Path is the socket's path.
	Path string

	mu sync.Mutex
	// OSInfo and Interfaces are the answers to guest-get-osinfo and
	// guest-network-get-interfaces (JSON; empty: Debian's and one eth0).
	OSInfo, Interfaces string
	// Stale is written to each new connection before anything else: what an
	// earlier client left unread (replies, half a reply, delimiters).
	Stale string
	// Silent: read commands, never answer (a guest whose agent does not run).
	Silent bool
	// Slow delays each reply but guest-sync-delimited's (a loaded guest).
	Slow time.Duration
	// Frozen is the file systems' state (guest-fsfreeze-*).
	Frozen bool
	// Calls counts the commands received, by name.
	Calls map[string]int
}

// Start serves a fake agent on a socket in a temporary directory until the test ends.
func Start(t testing.TB) *Agent {
	t.Helper()
	a := &Agent{Path: filepath.Join(t.TempDir(), "qga.sock"), Calls: map[string]int{}}
	l, err := net.Listen("unix", a.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go a.serve(c)
		}
	}()
	return a
}

// Set changes the agent's fields under its lock (the server reads them).
func (a *Agent) Set(f func(a *Agent)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

// Count is how many times cmd was received.
func (a *Agent) Count(cmd string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.Calls[cmd]
}

func (a *Agent) serve(c net.Conn) {
	defer c.Close()
	a.mu.Lock()
	stale := a.Stale
	a.mu.Unlock()
	if stale != "" {
		if _, err := c.Write([]byte(stale)); err != nil {
			return
		}
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		line = bytes.TrimLeft(line, "\xff") // the client's flush byte
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if json.Unmarshal(line, &req) != nil {
			reply(c, "", map[string]any{"error": map[string]string{"class": "GenericError", "desc": "JSON parse error"}})
			continue
		}
		a.mu.Lock()
		a.Calls[req.Execute]++
		silent, slow := a.Silent, a.Slow
		a.mu.Unlock()
		if silent {
			continue
		}
		if req.Execute != "guest-sync-delimited" {
			time.Sleep(slow)
		}
		pre, ans := a.answer(req.Execute, req.Arguments)
		if err := reply(c, pre, ans); err != nil {
			return
		}
	}
}

func reply(c net.Conn, pre string, v any) error {
	b, _ := json.Marshal(v)
	_, err := c.Write(append(append([]byte(pre), b...), '\n'))
	return err
}

func errReply(class, desc string) map[string]any {
	return map[string]any{"error": map[string]string{"class": class, "desc": desc}}
}

// answer is the reply to one command, and what goes before it (the
// delimiter of guest-sync-delimited).
func (a *Agent) answer(cmd string, args json.RawMessage) (string, any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ret := func(v any) map[string]any { return map[string]any{"return": v} }
	raw := func(s string) map[string]any { return map[string]any{"return": json.RawMessage(s)} }
	switch cmd {
	case "guest-sync-delimited":
		var p struct {
			ID json.Number `json:"id"`
		}
		if json.Unmarshal(args, &p) != nil {
			return "", errReply("GenericError", "bad id")
		}
		return "\xff", raw(p.ID.String())
	case "guest-ping":
		return "", ret(map[string]any{})
	case "guest-get-osinfo":
		if a.OSInfo != "" {
			return "", raw(a.OSInfo)
		}
		return "", raw(DebianOSInfo)
	case "guest-network-get-interfaces":
		if a.Interfaces != "" {
			return "", raw(a.Interfaces)
		}
		return "", raw(OneNIC)
	case "guest-fsfreeze-freeze":
		if a.Frozen {
			return "", errReply("GenericError", "Command guest-fsfreeze-freeze has been disabled: the agent is in frozen state")
		}
		a.Frozen = true
		return "", ret(2)
	case "guest-fsfreeze-thaw":
		n := 0
		if a.Frozen {
			n = 2
		}
		a.Frozen = false
		return "", ret(n)
	case "guest-fsfreeze-status":
		if a.Frozen {
			return "", ret("frozen")
		}
		return "", ret("thawed")
	}
	return "", errReply("CommandNotFound", "The command "+cmd+" has not been found")
}

// DebianOSInfo is guest-get-osinfo as Debian 12's agent answers it.
const DebianOSInfo = `{"name":"Debian GNU/Linux","kernel-release":"6.1.0-28-cloud-amd64","version":"12 (bookworm)",` +
	`"pretty-name":"Debian GNU/Linux 12 (bookworm)","version-id":"12","kernel-version":"#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)",` +
	`"machine":"x86_64","id":"debian"}`

// OneNIC is guest-network-get-interfaces with the loopback and one eth0.
const OneNIC = `[{"name":"lo","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"127.0.0.1","prefix":8},` +
	`{"ip-address-type":"ipv6","ip-address":"::1","prefix":128}],"hardware-address":"00:00:00:00:00:00"},` +
	`{"name":"eth0","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"192.168.254.2","prefix":30},` +
	`{"ip-address-type":"ipv6","ip-address":"fe80::5054:ff:fe12:3456","prefix":64}],"hardware-address":"52:54:00:12:34:56"}]`
