package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/vmm/agent"
	"github.com/berth-vm/berth/vmm/agent/agenttest"
)

func dial(t *testing.T, a *agenttest.Agent) *agent.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := agent.Dial(ctx, a.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCommands: each command against the fake agent, in the order a backup
// calls them, the freeze state followed through.
func TestCommands(t *testing.T) {
	a := agenttest.Start(t)
	c := dial(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	o, err := c.OSInfo(ctx)
	if err != nil || o.ID != "debian" || o.String() != "Debian GNU/Linux 12 (bookworm), kernel 6.1.0-28-cloud-amd64, x86_64" {
		t.Errorf("osinfo: %+v %q %v", o, o.String(), err)
	}
	ifs, err := c.Interfaces(ctx)
	if got, want := agent.Addresses(ifs), []string{"eth0=192.168.254.2/30", "eth0=fe80::5054:ff:fe12:3456/64"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("addresses: %q %v, want %q", got, err, want)
	}
	steps := []struct {
		name string
		do   func() (any, error)
		want any
		err  bool
	}{
		{"status before", func() (any, error) { return c.FreezeStatus(ctx) }, agent.Thawed, false},
		{"freeze", func() (any, error) { return c.Freeze(ctx) }, 2, false},
		{"status frozen", func() (any, error) { return c.FreezeStatus(ctx) }, agent.Frozen, false},
		{"freeze again", func() (any, error) { return c.Freeze(ctx) }, 0, true},
		{"thaw", func() (any, error) { return c.Thaw(ctx) }, 2, false},
		{"status thawed", func() (any, error) { return c.FreezeStatus(ctx) }, agent.Thawed, false},
		{"thaw again", func() (any, error) { return c.Thaw(ctx) }, 0, false},
	}
	for _, s := range steps {
		got, err := s.do()
		if s.err {
			var ae *agent.Error
			if !errors.As(err, &ae) || ae.Class != "GenericError" {
				t.Errorf("%s: %v, want the agent's GenericError", s.name, err)
			}
			continue
		}
		if err != nil || got != s.want {
			t.Errorf("%s: %v %v, want %v", s.name, got, err, s.want)
		}
	}
	if err := c.Execute(ctx, "guest-exec", nil, nil); err == nil || !strings.Contains(err.Error(), "CommandNotFound") || !strings.Contains(err.Error(), "guest-exec") {
		t.Errorf("unknown command: %v, want CommandNotFound naming it", err)
	}
}

// TestSyncSkipsStale: what an earlier client left in the channel (a reply
// never read, half of one, the delimiter and reply of its own sync) does not
// pass for an answer: after Dial the first reply read is the command's own.
func TestSyncSkipsStale(t *testing.T) {
	for name, stale := range map[string]string{
		"a reply":           `{"return": 2}` + "\n",
		"half a reply":      `{"return": {"name": "Windo`,
		"an earlier sync":   "\xff" + `{"return": 12345}` + "\n",
		"sync then garbage": "\xff" + `{"return": 1}` + "\n\xff" + `{"error": {"class": "GenericError", "desc": "x"}}` + "\n{{{\n",
		"binary":            "\x00\x01\x02\xfe",
	} {
		t.Run(name, func(t *testing.T) {
			a := agenttest.Start(t)
			a.Set(func(a *agenttest.Agent) { a.Stale = stale })
			c := dial(t, a)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := c.FreezeStatus(ctx)
			if err != nil || s != agent.Thawed {
				t.Errorf("status after stale %q: %q %v, want thawed", stale, s, err)
			}
		})
	}
}

// TestDeadline: an agent that does not answer (none runs in the guest) ends
// in the context's deadline, named, not a hang.
func TestDeadline(t *testing.T) {
	a := agenttest.Start(t)
	a.Set(func(a *agenttest.Agent) { a.Silent = true })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := agent.Dial(ctx, a.Path)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "sync") || !strings.Contains(err.Error(), a.Path) {
		t.Errorf("silent agent: %v, want a deadline naming the sync and the socket", err)
	}

	// A command in a connection whose agent goes silent: the command's own deadline.
	b := agenttest.Start(t)
	c := dial(t, b)
	b.Set(func(a *agenttest.Agent) { a.Silent = true })
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if err := c.Ping(ctx2); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "guest-ping") {
		t.Errorf("silent ping: %v, want a deadline naming guest-ping", err)
	}
}

// TestDialRefusesSymlink: a symlink planted at the socket's path (to the
// real socket) is refused: the run volume is shared.
func TestDialRefusesSymlink(t *testing.T) {
	a := agenttest.Start(t)
	link := filepath.Join(t.TempDir(), "qga.sock")
	if err := os.Symlink(a.Path, link); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := agent.Dial(ctx, link); !errors.Is(err, fsutil.ErrNotOwnFile) {
		t.Errorf("symlink: %v, want a refusal", err)
	}
	if n := a.Count("guest-sync-delimited"); n != 0 {
		t.Errorf("the agent behind the symlink got %d syncs", n)
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		line, want string
		class      string // an *Error of this class
		bad        bool
	}{
		{line: `{"return": {}}`, want: `{}`},
		{line: `{"return": 3}` + "\n", want: `3`},
		{line: `  {"return": "frozen"}  `, want: `"frozen"`},
		{line: `{"return": null}`, bad: true}, // null is no return value
		{line: `{"error": {"class": "GenericError", "desc": "no"}}`, class: "GenericError"},
		{line: `{"return": 1, "error": {"class": "X", "desc": "y"}}`, bad: true},
		{line: `{}`, bad: true},
		{line: `[]`, bad: true},
		{line: `{"return":`, bad: true},
		{line: "\xff", bad: true},
		{line: ``, bad: true},
	}
	for _, tt := range tests {
		ret, err := agent.ParseReply([]byte(tt.line))
		var ae *agent.Error
		switch {
		case tt.class != "":
			if !errors.As(err, &ae) || ae.Class != tt.class {
				t.Errorf("%q: %v, want error class %s", tt.line, err, tt.class)
			}
		case tt.bad:
			if err == nil || errors.As(err, &ae) {
				t.Errorf("%q: %s %v, want a parse error", tt.line, ret, err)
			}
		default:
			if err != nil || string(ret) != tt.want {
				t.Errorf("%q: %s %v, want %s", tt.line, ret, err, tt.want)
			}
		}
	}
}

// FuzzParseReply: any line gives a return value that is valid JSON, or an
// error; never both, never a panic.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{`{"return": {}}`, `{"error": {"class": "GenericError", "desc": "x"}}`, `{"return": [1,2]}`, "\xff{}", `{"return":null,"error":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		ret, err := agent.ParseReply(line)
		if err != nil {
			if ret != nil {
				t.Fatalf("%q: both %s and %v", line, ret, err)
			}
			return
		}
		if !json.Valid(ret) {
			t.Fatalf("%q: return %q is not JSON", line, ret)
		}
	})
}
