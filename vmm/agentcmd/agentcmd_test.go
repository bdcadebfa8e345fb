package agentcmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/agent/agenttest"
)

// TestParse: good invocations and their bounds; every bad one is an
// InputError naming what is at fault.
func TestParse(t *testing.T) {
	env := func(kv ...string) stage.Env {
		m := map[string]string{"BERTH_RUN_DIR": "/run/berth"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return stage.MapEnv(m)
	}
	good := []struct {
		args    []string
		cmd     string
		timeout time.Duration
	}{
		{[]string{"ping"}, Ping, DefaultTimeout},
		{[]string{"osinfo"}, OSInfo, DefaultTimeout},
		{[]string{"freeze"}, Freeze, FreezeTimeout},
		{[]string{"thaw"}, Thaw, DefaultTimeout},
		{[]string{"status"}, Status, DefaultTimeout},
		{[]string{"-timeout", "2m", "freeze"}, Freeze, 2 * time.Minute},
		{[]string{"-timeout=500ms", "ping"}, Ping, 500 * time.Millisecond},
	}
	for _, tt := range good {
		r, err := Parse(tt.args, env())
		if err != nil || r.Command != tt.cmd || r.Timeout != tt.timeout || r.Socket != "/run/berth/qga.sock" {
			t.Errorf("%q: %+v %v, want %s bounded by %s on /run/berth/qga.sock", tt.args, r, err, tt.cmd, tt.timeout)
		}
	}
	bad := []struct {
		args []string
		env  stage.Env
		want string // the message starts with it
	}{
		{nil, env(), "arguments="},
		{[]string{"snapshot"}, env(), "arguments="},
		{[]string{"freeze", "thaw"}, env(), "arguments="},
		{[]string{"FREEZE"}, env(), "arguments="},
		{[]string{"-x", "ping"}, env(), "arguments="},
		{[]string{"-timeout", "soon", "ping"}, env(), "-timeout="},
		{[]string{"-timeout", "0s", "ping"}, env(), "-timeout="},
		{[]string{"-timeout", "-1s", "ping"}, env(), "-timeout="},
		{[]string{"-timeout", "2h", "ping"}, env(), "-timeout="},
		{[]string{"ping"}, env("GUEST_AGENT", "false"), "GUEST_AGENT="},
		{[]string{"ping"}, env("GUEST_AGENT", "nope"), "GUEST_AGENT="},
		{[]string{"ping"}, env("BERTH_RUN_DIR", "relative"), "BERTH_RUN_DIR="},
		{[]string{"ping"}, env("BERTH_RUN_DIR", "/run/berth,x"), "BERTH_RUN_DIR="},
	}
	for _, tt := range bad {
		_, err := Parse(tt.args, tt.env)
		if !stage.IsBadInput(err) || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line of bad input starting %s", tt.args, err, tt.want)
		}
	}
}

// TestMain: each command against the fake agent, with its line and exit
// code; the agent's refusal and its silence are exit 1, bad input 2, -h 0.
func TestMainCommands(t *testing.T) {
	a := agenttest.Start(t)
	dir := filepath.Dir(a.Path)
	env := stage.MapEnv(map[string]string{"BERTH_RUN_DIR": dir})
	steps := []struct {
		args []string
		code int
		want string // on stdout when 0, else on stderr
	}{
		{[]string{"ping"}, 0, "vmm agent ping: the guest agent answers\n"},
		{[]string{"osinfo"}, 0, "vmm agent osinfo: Debian GNU/Linux 12 (bookworm), kernel 6.1.0-28-cloud-amd64, x86_64\n"},
		{[]string{"status"}, 0, "vmm agent status: thawed\n"},
		{[]string{"freeze"}, 0, "vmm agent freeze: froze 2 file systems"},
		{[]string{"status"}, 0, "vmm agent status: frozen\n"},
		{[]string{"freeze"}, 1, "frozen already"},
		{[]string{"thaw"}, 0, "vmm agent thaw: thawed 2 file systems\n"},
		{[]string{"status"}, 0, "vmm agent status: thawed\n"},
		{[]string{"-h"}, 0, "usage: vmm agent"},
		{[]string{"backup"}, 2, "vmm agent: bad input: arguments="},
	}
	for _, st := range steps {
		var out, errb bytes.Buffer
		code := Main(st.args, env, &out, &errb)
		got := out.String()
		if st.code != 0 {
			got = errb.String()
		}
		if code != st.code || !strings.Contains(got, st.want) || strings.Count(got, "\n") != 1 && st.args[0] != "-h" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d with %q", st.args, code, out.String(), errb.String(), st.code, st.want)
		}
	}

	a.Set(func(a *agenttest.Agent) { a.Silent = true })
	var out, errb bytes.Buffer
	start := time.Now()
	if code := Main([]string{"-timeout", "300ms", "ping"}, env, &out, &errb); code != 1 || !strings.Contains(errb.String(), "deadline exceeded") || !strings.Contains(errb.String(), "qemu-guest-agent") {
		t.Errorf("silent agent: exit %d, stderr %q; want 1, a deadline and a hint", code, errb.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("silent agent: %s, far beyond -timeout 300ms", d)
	}

	// A run dir that is not the volume's directory (the agent behind a symlink still answers).
	file, link := filepath.Join(t.TempDir(), "file"), filepath.Join(t.TempDir(), "link")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{"missing": filepath.Join(dir, "nope"), "a file": file, "a symlink": link} {
		errb.Reset()
		code := Main([]string{"ping"}, stage.MapEnv(map[string]string{"BERTH_RUN_DIR": bad}), &out, &errb)
		if code != 2 || !strings.HasPrefix(errb.String(), "vmm agent: bad input: BERTH_RUN_DIR=") || !strings.Contains(errb.String(), map[string]string{"missing": "does not exist", "a file": "not a directory", "a symlink": "is a symlink"}[name]) {
			t.Errorf("BERTH_RUN_DIR %s: exit %d, stderr %q; want 2 naming BERTH_RUN_DIR and why", name, code, errb.String())
		}
	}

	os.Remove(a.Path) // no channel at all (QEMU not running)
	errb.Reset()
	if code := Main([]string{"ping"}, env, &out, &errb); code != 1 || !strings.Contains(errb.String(), "qga.sock") || !strings.Contains(errb.String(), "QEMU is not running") {
		t.Errorf("no socket: exit %d, stderr %q; want 1 naming the socket", code, errb.String())
	}
}
