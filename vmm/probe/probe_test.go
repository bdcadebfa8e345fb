package probe

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/agent/agenttest"
	"github.com/berth-vm/berth/vmm/status"
)

const leaseLine = "1795648632 52:54:2f:66:76:20 127.0.0.1 berth-local ff:2f:66:76:20\n"

func TestReady(t *testing.T) {
	dir := t.TempDir()
	leases := filepath.Join(dir, "dnsmasq.leases")
	ip := netip.MustParseAddr("127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if _, err := Ready(ctx, leases, ip, 0, time.Time{}); err == nil || !strings.Contains(err.Error(), "no leases yet") {
		t.Errorf("no lease file: err = %v", err)
	}
	os.WriteFile(leases, []byte("0 52:54:00:00:00:01 127.0.0.2 other *\n"), 0o644)
	if _, err := Ready(ctx, leases, ip, 0, time.Time{}); err == nil || !strings.Contains(err.Error(), "not leased") {
		t.Errorf("lease of another address: err = %v", err)
	}
	os.WriteFile(leases, []byte("0 52:54:00:00:00:01 127.0.0.2 other *\n"+leaseLine), 0o644)
	msg, err := Ready(ctx, leases, ip, 0, time.Time{})
	if err != nil || !strings.Contains(msg, "52:54:2f:66:76:20") {
		t.Errorf("leased: %q, %v", msg, err)
	}

	// A lease written before the guest's current boot (a reboot, a new QEMU in the same pod) is not this boot's.
	old := time.Now().Add(-time.Minute)
	os.Chtimes(leases, old, old)
	if _, err := Ready(ctx, leases, ip, 0, old.Add(time.Second)); err == nil || !strings.Contains(err.Error(), "before the guest's current boot") {
		t.Errorf("a lease of an earlier boot: err = %v", err)
	}
	if _, err := Ready(ctx, leases, ip, 0, old.Add(-time.Second)); err != nil {
		t.Errorf("a lease of this boot: %v", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if _, err := Ready(ctx, leases, ip, port, time.Time{}); err != nil {
		t.Errorf("leased and port open: %v", err)
	}
	l.Close()
	if _, err := Ready(ctx, leases, ip, port, time.Time{}); err == nil || !strings.Contains(err.Error(), "does not accept") {
		t.Errorf("port closed: err = %v", err)
	}
}

// mainLeaseLine leases the default VM_IP: Main reads VM_IP as net-setup does,
// so no loopback address (TestReady dials one through Ready itself).
const mainLeaseLine = "1795648632 52:54:2f:66:76:20 192.168.254.2 berth-local ff:2f:66:76:20\n"

// running writes vmm's status file in dir: QEMU runs the guest.
func running(t *testing.T, dir string) {
	t.Helper()
	if err := status.Write(filepath.Join(dir, status.FileName), status.Status{QEMU: status.Running, Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

// TestReadyNeedsARunningGuest: probe ready fails (exit 1) until vmm's status
// file says QEMU runs the guest, and while QEMU has paused it (io-error: a
// full volume), whatever the lease says; a symlink or a FIFO there is refused
// and does not block.
func TestReadyNeedsARunningGuest(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "dnsmasq.leases"), []byte(mainLeaseLine), 0o644)
	env := stage.MapEnv(map[string]string{"BERTH_RUN_DIR": dir, "VM_IP": "192.168.254.2"})
	file := filepath.Join(dir, status.FileName)
	probe := func() (int, string) {
		var out, errb bytes.Buffer
		code := Main([]string{"ready"}, env, &out, &errb)
		return code, out.String() + errb.String()
	}
	elsewhere := filepath.Join(t.TempDir(), "status")
	status.Write(elsewhere, status.Status{QEMU: status.Running})
	steps := []struct {
		name  string
		setup func()
		code  int
		want  string
	}{
		{"no status yet", func() {}, 1, "has not reported QEMU's status yet"},
		{"starting", func() { status.Write(file, status.Status{QEMU: status.Starting, Reason: "QEMU is starting"}) }, 1, "QEMU is starting"},
		{"running", func() { status.Write(file, status.Status{QEMU: status.Running}) }, 0, "leased"},
		{"paused on a full volume", func() {
			status.Write(file, status.Status{QEMU: "io-error", Reason: "paused: the volume of disk data is full; vmm resumes the guest once it has room"})
		}, 1, "the volume of disk data is full"},
		{"paused by someone", func() { status.Write(file, status.Status{QEMU: "paused"}) }, 1, "paused by a QMP stop"},
		{"panicked", func() { status.Write(file, status.Status{QEMU: status.GuestPanicked}) }, 1, "the guest's kernel panicked"},
		{"powered off (ON_POWEROFF=stop)", func() {
			status.Write(file, status.Status{QEMU: status.PoweredOff, Reason: "the guest powered itself off and stays off (ON_POWEROFF=stop): start it again with `kubectl delete pod vm-0`"})
		}, 1, "kubectl delete pod vm-0"},
		{"running, lease of an earlier boot", func() { status.Write(file, status.Status{QEMU: status.Running, Boot: time.Now().Add(time.Hour)}) }, 1, "before the guest's current boot"},
		{"a symlink to a running status", func() { os.Remove(file); os.Symlink(elsewhere, file) }, 1, "symlink"},
		{"a FIFO", func() { os.Remove(file); syscall.Mkfifo(file, 0o644) }, 1, "FIFO"},
		{"not JSON", func() { os.Remove(file); os.WriteFile(file, []byte("running\n"), 0o644) }, 1, "invalid character"},
	}
	for _, st := range steps {
		st.setup()
		done := make(chan struct{})
		var code int
		var msg string
		go func() { code, msg = probe(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: probe ready hangs", st.name)
		}
		if code != st.code || !strings.Contains(msg, st.want) {
			t.Errorf("%s: exit %d, %q; want %d with %q", st.name, code, msg, st.code, st.want)
		}
	}
}

// TestReadyWhenAgent: READY_WHEN=agent is ready only when, beside the lease,
// the guest agent answers guest-ping on qga.sock within the probe's bound; a
// silent agent (none runs in the guest) is not ready and does not hang the
// probe; a symlink at qga.sock (to a real agent) is not followed. READY_WHEN
// lease and tcp never ask the agent.
func TestReadyWhenAgent(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "dnsmasq.leases"), []byte(mainLeaseLine), 0o644)
	running(t, dir)
	sock := filepath.Join(dir, "qga.sock")
	a := agenttest.Start(t)
	steps := []struct {
		name  string
		setup func()
		env   map[string]string
		code  int
		want  string
		asks  bool // the agent gets a connection
	}{
		{"no socket", func() {}, nil, 1, "does not answer guest-ping", false},
		{"a symlink to an agent", func() { os.Symlink(a.Path, sock) }, nil, 1, "a symlink", false},
		{"the agent answers", func() { os.Remove(sock); os.Rename(a.Path, sock) }, nil, 0, "the guest agent answers guest-ping", true},
		{"lease: the agent is not asked", func() {}, map[string]string{"READY_WHEN": "lease"}, 0, "leased", false},
		{"a silent agent", func() { a.Set(func(a *agenttest.Agent) { a.Silent = true }) }, nil, 1, "deadline exceeded", true},
		{"a silent agent, lease", func() {}, map[string]string{"READY_WHEN": "lease"}, 0, "leased", false},
	}
	for _, st := range steps {
		st.setup()
		m := map[string]string{"BERTH_RUN_DIR": dir, "VM_IP": "192.168.254.2", "READY_WHEN": "agent"}
		for k, v := range st.env {
			m[k] = v
		}
		var out, errb bytes.Buffer
		syncs := a.Count("guest-sync-delimited")
		start := time.Now()
		code := Main([]string{"ready"}, stage.MapEnv(m), &out, &errb)
		if msg := out.String() + errb.String(); code != st.code || !strings.Contains(msg, st.want) {
			t.Errorf("%s: exit %d, %q; want %d with %q", st.name, code, msg, st.code, st.want)
		}
		if asked := a.Count("guest-sync-delimited") > syncs; asked != st.asks {
			t.Errorf("%s: the agent was asked: %v, want %v", st.name, asked, st.asks)
		}
		if d := time.Since(start); d > Timeout+time.Second {
			t.Errorf("%s: the probe took %s, beyond its bound %s", st.name, d, Timeout)
		}
	}
}

// TestLivePoweredOff: with the guest powered off and vmm staying without QEMU
// (ON_POWEROFF=stop), probe live passes with no QMP socket at all (a restart
// would boot the guest); with any other status and no QEMU it fails.
func TestLivePoweredOff(t *testing.T) {
	dir := t.TempDir()
	env := stage.MapEnv(map[string]string{"BERTH_RUN_DIR": dir})
	file := filepath.Join(dir, status.FileName)
	for _, tc := range []struct {
		st   string
		code int
		want string
	}{
		{status.PoweredOff, 0, "powered off and vmm holds no QEMU on purpose"},
		{status.Running, 1, "qmp.sock"},
	} {
		status.Write(file, status.Status{QEMU: tc.st, Since: time.Now()})
		var out, errb bytes.Buffer
		code := Main([]string{"live"}, env, &out, &errb)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("status %s: exit %d, %q %q; want %d with %q", tc.st, code, out.String(), errb.String(), tc.code, tc.want)
		}
	}
}

func TestMainExitCodes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "dnsmasq.leases"), []byte(mainLeaseLine), 0o644)
	running(t, dir)
	env := func(kv ...string) stage.Env {
		m := map[string]string{"BERTH_RUN_DIR": dir, "VM_IP": "192.168.254.2"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return stage.MapEnv(m)
	}
	tests := []struct {
		args []string
		env  stage.Env
		want int
	}{
		{[]string{"ready"}, env(), 0},
		{[]string{"ready"}, env("VM_IP", "192.168.254.6"), 1},
		{[]string{"ready"}, env("VM_IP", "127.0.0.1"), 2},   // net-setup refuses it: no lease can ever come
		{[]string{"ready"}, env("VM_IP", "169.254.1.1"), 2}, // link-local, as above
		{[]string{"ready"}, env("VM_IP", "224.0.0.1"), 2},   // multicast, as above
		{[]string{"ready"}, env("VM_IP", "nope"), 2},
		{[]string{"live"}, env(), 1}, // no QMP socket
		{[]string{"dead"}, env(), 2},
		{nil, env(), 2},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		if got := Main(tt.args, tt.env, &out, &errb); got != tt.want {
			t.Errorf("probe %v: exit %d, want %d (stdout %q, stderr %q)", tt.args, got, tt.want, out.String(), errb.String())
		}
	}
}

// TestMainBadInput: bad arguments and bad variables are one line on stderr and
// exit 2; -h is the usage on stdout, exit 0.
func TestMainBadInput(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "dnsmasq.leases"), []byte(mainLeaseLine), 0o644)
	tests := []struct {
		args []string
		env  map[string]string
		want string // on stderr; "" for -h
	}{
		{nil, nil, "arguments"},
		{[]string{"dead"}, nil, "arguments"},
		{[]string{"ready", "live"}, nil, "arguments"},
		{[]string{"--", "ready"}, nil, "arguments"},
		{[]string{"ready"}, map[string]string{"VM_IP": "127.0.0.1\n"}, "VM_IP="},
		{[]string{"ready"}, map[string]string{"VM_IP": "127.0.0.1,x"}, "VM_IP="},
		{[]string{"ready"}, map[string]string{"READY_TCP_PORT": " 22"}, "READY_TCP_PORT="},
		{[]string{"ready"}, map[string]string{"READY_TCP_PORT": "22\n"}, "READY_TCP_PORT="},
		{[]string{"ready"}, map[string]string{"READY_WHEN": "ssh"}, "READY_WHEN="},
		{[]string{"ready"}, map[string]string{"READY_WHEN": "tcp"}, "READY_WHEN="}, // no READY_TCP_PORT
		{[]string{"ready"}, map[string]string{"READY_WHEN": "agent", "GUEST_AGENT": "false"}, "READY_WHEN="},
		{[]string{"ready"}, map[string]string{"GUEST_AGENT": "maybe"}, "GUEST_AGENT="},
		{[]string{"ready"}, map[string]string{"BERTH_RUN_DIR": "relative"}, "BERTH_RUN_DIR="},
		{[]string{"live"}, map[string]string{"BERTH_RUN_DIR": dir + "/../" + filepath.Base(dir)}, "BERTH_RUN_DIR="},
		{[]string{"live"}, map[string]string{"BERTH_RUN_DIR": dir + "\n"}, "BERTH_RUN_DIR="},
		{[]string{"-h"}, nil, ""},
	}
	for _, tt := range tests {
		m := map[string]string{"BERTH_RUN_DIR": dir, "VM_IP": "192.168.254.2"}
		for k, v := range tt.env {
			m[k] = v
		}
		var out, errb bytes.Buffer
		code := Main(tt.args, stage.MapEnv(m), &out, &errb)
		if tt.want == "" {
			if code != 0 || !strings.Contains(out.String(), "usage: vmm probe") || errb.Len() != 0 {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want the usage on stdout, exit 0", tt.args, code, out.String(), errb.String())
			}
			continue
		}
		if code != 2 || strings.Count(errb.String(), "\n") != 1 || !strings.Contains(errb.String(), tt.want) || out.Len() != 0 {
			t.Errorf("%q %q: exit %d, stderr %q; want 2 and one line naming %s", tt.args, tt.env, code, errb.String(), tt.want)
		}
	}
}

// TestLeasesNotFollowed: dnsmasq.leases is in the shared run volume. A symlink
// there (to a file that does list the lease) is not followed, and a FIFO
// neither blocks the probe nor counts: both are "not ready" (exit 1).
func TestLeasesNotFollowed(t *testing.T) {
	dir := t.TempDir()
	elsewhere := filepath.Join(t.TempDir(), "leases")
	os.WriteFile(elsewhere, []byte(mainLeaseLine), 0o644)
	leases := filepath.Join(dir, "dnsmasq.leases")
	running(t, dir)
	env := stage.MapEnv(map[string]string{"BERTH_RUN_DIR": dir, "VM_IP": "192.168.254.2"})
	run := func() (int, string) {
		done := make(chan struct{})
		var code int
		var errb bytes.Buffer
		go func() { code = Main([]string{"ready"}, env, io.Discard, &errb); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("probe ready hangs on dnsmasq.leases")
		}
		return code, errb.String()
	}
	os.Symlink(elsewhere, leases)
	if code, msg := run(); code != 1 || !strings.Contains(msg, "symlink") {
		t.Errorf("leases a symlink: exit %d, %q; want 1 naming the symlink", code, msg)
	}
	os.Remove(leases)
	if err := syscall.Mkfifo(leases, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, msg := run(); code != 1 || !strings.Contains(msg, "FIFO") {
		t.Errorf("leases a FIFO: exit %d, %q; want 1 naming the FIFO", code, msg)
	}
}
