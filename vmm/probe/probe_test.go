package probe

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/stage"
)

const leaseLine = "1795648632 52:54:2f:66:76:20 127.0.0.1 berth-local ff:2f:66:76:20\n"

func TestReady(t *testing.T) {
	dir := t.TempDir()
	leases := filepath.Join(dir, "dnsmasq.leases")
	ip := netip.MustParseAddr("127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if _, err := Ready(ctx, leases, ip, 0); err == nil || !strings.Contains(err.Error(), "no leases yet") {
		t.Errorf("no lease file: err = %v", err)
	}
	os.WriteFile(leases, []byte("0 52:54:00:00:00:01 127.0.0.2 other *\n"), 0o644)
	if _, err := Ready(ctx, leases, ip, 0); err == nil || !strings.Contains(err.Error(), "not leased") {
		t.Errorf("lease of another address: err = %v", err)
	}
	os.WriteFile(leases, []byte("0 52:54:00:00:00:01 127.0.0.2 other *\n"+leaseLine), 0o644)
	msg, err := Ready(ctx, leases, ip, 0)
	if err != nil || !strings.Contains(msg, "52:54:2f:66:76:20") {
		t.Errorf("leased: %q, %v", msg, err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if _, err := Ready(ctx, leases, ip, port); err != nil {
		t.Errorf("leased and port open: %v", err)
	}
	l.Close()
	if _, err := Ready(ctx, leases, ip, port); err == nil || !strings.Contains(err.Error(), "does not accept") {
		t.Errorf("port closed: err = %v", err)
	}
}

func TestMainExitCodes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "dnsmasq.leases"), []byte(leaseLine), 0o644)
	env := func(kv ...string) stage.Env {
		m := map[string]string{"BERTH_RUN_DIR": dir, "VM_IP": "127.0.0.1"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return stage.MapEnv(m)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	tests := []struct {
		args []string
		env  stage.Env
		want int
	}{
		{[]string{"ready"}, env(), 0},
		{[]string{"ready"}, env("READY_TCP_PORT", port), 0},
		{[]string{"ready"}, env("VM_IP", "127.0.0.9"), 1},
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
