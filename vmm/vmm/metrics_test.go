package vmm

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/config"
)

// TestStartMetrics: no METRICS_PORT, no server and a nil *vmMetrics whose
// hooks do nothing; with it, /metrics answers (before QEMU: qmp_up 0, the
// configured memory) until the context ends, and the port is free again.
func TestStartMetrics(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	env := stage.MapEnv(map[string]string{"GOMAXPROCS": "2"}) // the test process keeps its own
	m := startMetrics(t.Context(), log, env, config.Config{})
	if m != nil {
		t.Fatal("a collector without METRICS_PORT")
	}
	m.qemuStarted(1, time.Now()) // nil: nothing, no panic
	m.connected(nil)
	if m.reset() != nil {
		t.Error("a reset hook without METRICS_PORT")
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	c := config.Config{Name: "vm", Tap: "lo", Memory: 256 << 20, CPUs: 1, MetricsPort: port, RunDir: t.TempDir()}
	m = startMetrics(ctx, log, env, c)
	m.qemuStarted(1, time.Now())
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/metrics"
	var body string
	for i := 0; ; i++ {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if i == 100 {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"berth_qmp_up 0\n", "berth_vm_memory_bytes 2.68435456e+08\n", `berth_vm_network_bytes_total{direction="receive",interface="lo"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	cancel()
	for i := 0; ; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			l.Close()
			break
		}
		if i == 100 {
			t.Fatalf("the metrics port is still bound after the context ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
