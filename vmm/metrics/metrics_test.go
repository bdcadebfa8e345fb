package metrics

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/berth-vm/berth/vmm/promtext"
	"github.com/berth-vm/berth/vmm/qmp"
	"github.com/berth-vm/berth/vmm/qmptest"
)

// fakeHost writes a /proc with QEMU (pid 4242, two vCPU threads) and a
// /sys/class/net with tap0's counters.
func fakeHost(t testing.TB) (proc, sysNet string) {
	t.Helper()
	root := t.TempDir()
	write := func(path, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	proc, sysNet = filepath.Join(root, "proc"), filepath.Join(root, "net")
	// utime 300 + stime 200 ticks = 5 s; the command name has a space and a ')'.
	write(filepath.Join(proc, "4242", "stat"), "4242 (qemu-system-x86 (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 300 200 0 0 20 0 5 0 100 0 0\n")
	write(filepath.Join(proc, "4242", "statm"), "100000 25600 1000 1 0 2000 0\n")
	write(filepath.Join(proc, "4242", "task", "4250", "stat"), "4250 (CPU 0/TCG) R 1 4242 4242 0 -1 0 0 0 0 0 150 50 0 0 20 0 5 0 100 0 0\n")
	write(filepath.Join(proc, "4242", "task", "4251", "stat"), "4251 (CPU 1/TCG) R 1 4242 4242 0 -1 0 0 0 0 0 10 0 0 0 20 0 5 0 100 0 0\n")
	for f, v := range map[string]string{"rx_bytes": "1000", "tx_bytes": "2000", "rx_packets": "10", "tx_packets": "20", "rx_dropped": "0", "tx_dropped": "3"} {
		write(filepath.Join(sysNet, "tap0", "statistics", f), v+"\n")
	}
	return proc, sysNet
}

const blockstats = `[
 {"device": "disk0", "node-name": "#block123", "qdev": "/machine/peripheral-anon/device[1]/virtio-backend",
  "stats": {"rd_bytes": 4096, "wr_bytes": 8192, "rd_operations": 1, "wr_operations": 2, "flush_operations": 3,
            "rd_total_time_ns": 1500000000, "wr_total_time_ns": 250000000, "flush_total_time_ns": 1000}},
 {"device": "disk-data", "stats": {"rd_bytes": 1, "wr_bytes": 0, "rd_operations": 1, "wr_operations": 0, "flush_operations": 0,
            "rd_total_time_ns": 0, "wr_total_time_ns": 0, "flush_total_time_ns": 0}},
 {"device": "", "node-name": "#block999", "stats": {"rd_bytes": 77}}
]`

// scrape serves the collector on a loopback port and parses what a
// Prometheus would read.
func scrape(t *testing.T, c *Collector) map[string]*dto.MetricFamily {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	go func() { served <- Server(log, c).Serve(ctx, l) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve after shutdown: %v", err)
		}
	}()
	resp, err := http.Get("http://" + l.Addr().String() + Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", Path, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != string(expfmt.NewFormat(expfmt.TypeTextPlain)) {
		t.Errorf("Content-Type %q, want the client library's %q", ct, expfmt.NewFormat(expfmt.TypeTextPlain))
	}
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	problems, err := promlint.New(bytes.NewReader(text)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for name, mf := range mfs {
		if !descNames[name] {
			t.Errorf("%s served, not one of the collector's Descs", name)
		}
		if len(mf.GetMetric()) == 0 {
			t.Errorf("%s served without samples", name)
		}
	}
	return mfs
}

// descNames are the names of every metric a collector describes.
var descNames = func() map[string]bool {
	m := map[string]bool{}
	for _, d := range New(Sources{}).Descs() {
		m[d.Name] = true
	}
	return m
}()

// TestDescs: every description is one the format carries, named as
// Prometheus names (counters end in _total, units in the name).
func TestDescs(t *testing.T) {
	for _, d := range New(Sources{}).Descs() {
		if err := d.Check(); err != nil {
			t.Error(err)
		}
		if (d.Type == promtext.Counter) != strings.HasSuffix(d.Name, "_total") {
			t.Errorf("%s is a %s", d.Name, d.Type)
		}
	}
}

// value returns the value of family name's sample with labels (k=v pairs), and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func TestCollect(t *testing.T) {
	proc, sysNet := fakeHost(t)
	srv := qmptest.New(t, map[string]string{
		"query-status":     `{"status": "running", "singlestep": false, "running": true}`,
		"query-cpus-fast":  `[{"cpu-index": 0, "thread-id": 4250, "target": "x86_64"}, {"cpu-index": 1, "thread-id": 4251, "target": "x86_64"}]`,
		"query-blockstats": blockstats,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := qmp.Dial(ctx, srv.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	run := t.TempDir()
	leases := filepath.Join(run, "dnsmasq.leases")
	c := New(Sources{
		QMP: func() *qmp.Client { return client }, Proc: proc, SysNet: sysNet, Tap: "tap0",
		Disks:  map[string]string{"disk0": "root", "disk-data": "data"},
		Memory: 512 << 20, CPUs: 2, Leases: leases, VMIP: netip.MustParseAddr("192.168.254.2"),
	})
	start := time.Now().Add(-time.Minute)
	c.QEMUStarted(4242, start)

	// Before the lease: no boot times.
	mfs := scrape(t, c)
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"berth_qmp_up", nil, 1},
		{"berth_vm_run_state", []string{"state", "running"}, 1},
		{"berth_vm_memory_bytes", nil, 512 << 20},
		{"berth_vm_vcpus", nil, 2},
		{"berth_qemu_cpu_seconds_total", nil, 5},
		{"berth_qemu_resident_memory_bytes", nil, float64(25600 * os.Getpagesize())},
		{"berth_vm_vcpu_seconds_total", []string{"vcpu", "0"}, 2},
		{"berth_vm_vcpu_seconds_total", []string{"vcpu", "1"}, 0.1},
		{"berth_vm_block_bytes_total", []string{"drive", "disk0", "disk", "root", "op", "read"}, 4096},
		{"berth_vm_block_bytes_total", []string{"drive", "disk0", "disk", "root", "op", "write"}, 8192},
		{"berth_vm_block_ops_total", []string{"drive", "disk0", "op", "flush"}, 3},
		{"berth_vm_block_ops_total", []string{"drive", "disk0", "op", "write"}, 2},
		{"berth_vm_block_time_seconds_total", []string{"drive", "disk0", "op", "read"}, 1.5},
		{"berth_vm_block_time_seconds_total", []string{"drive", "disk0", "op", "write"}, 0.25},
		{"berth_vm_block_bytes_total", []string{"drive", "disk-data", "disk", "data", "op", "read"}, 1},
		{"berth_vm_network_bytes_total", []string{"interface", "tap0", "direction", "receive"}, 1000},
		{"berth_vm_network_bytes_total", []string{"interface", "tap0", "direction", "transmit"}, 2000},
		{"berth_vm_network_packets_total", []string{"direction", "transmit"}, 20},
		{"berth_vm_network_drops_total", []string{"direction", "transmit"}, 3},
		{"berth_vm_guest_resets_total", nil, 0},
		{"berth_qemu_start_time_seconds", nil, unix(start)},
		{"berth_vm_boot_start_time_seconds", nil, unix(start)},
	} {
		got, ok := value(mfs, tt.name, tt.labels...)
		if !ok || got != tt.want {
			t.Errorf("%s%v = %v (present %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	if n := len(mfs["berth_vm_block_ops_total"].GetMetric()); n != 6 {
		t.Errorf("%d block op series, want 6 (two drives × read, write, flush; the node without a drive id left out)", n)
	}
	for _, absent := range []string{"berth_vm_boot_lease_seconds", "berth_vm_boot_ready_seconds"} {
		if _, ok := value(mfs, absent); ok {
			t.Errorf("%s reported before any lease", absent)
		}
	}

	// The lease comes 20 s after the boot: lease and ready (no READY_TCP_PORT) are 20 s.
	if err := os.WriteFile(leases, []byte("0 52:54:00:12:34:56 192.168.254.2 vm *\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	leaseAt := start.Add(20 * time.Second)
	if err := os.Chtimes(leases, leaseAt, leaseAt); err != nil {
		t.Fatal(err)
	}
	mfs = scrape(t, c)
	for _, name := range []string{"berth_vm_boot_lease_seconds", "berth_vm_boot_ready_seconds"} {
		if got, ok := value(mfs, name); !ok || got < 19.99 || got > 20.01 {
			t.Errorf("%s = %v (present %v), want 20", name, got, ok)
		}
	}

	// A reset: a new boot, the old lease does not count, the reset is counted.
	c.GuestReset(time.Now())
	srv.Set("query-status", `{"status": "paused", "running": false}`)
	mfs = scrape(t, c)
	if got, _ := value(mfs, "berth_vm_guest_resets_total"); got != 1 {
		t.Errorf("resets = %v, want 1", got)
	}
	if _, ok := value(mfs, "berth_vm_boot_lease_seconds"); ok {
		t.Error("a lease of the boot before the reset is reported for the new one")
	}
	if got, ok := value(mfs, "berth_vm_run_state", "state", "paused"); !ok || got != 1 || len(mfs["berth_vm_run_state"].GetMetric()) != 1 {
		t.Errorf("run state after pause: %v", mfs["berth_vm_run_state"])
	}
}

// TestCollectWithoutQEMU: before QEMU starts and while QMP does not answer,
// the scrape works, says qmp_up 0 and reports nothing it could not read.
func TestCollectWithoutQEMU(t *testing.T) {
	proc, sysNet := fakeHost(t)
	for _, tt := range []struct {
		name    string
		started bool
		client  func() *qmp.Client
	}{
		{"not started", false, func() *qmp.Client { return nil }},
		{"no connection yet", true, func() *qmp.Client { return nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := New(Sources{QMP: tt.client, Proc: proc, SysNet: sysNet, Tap: "tap0", Memory: 1 << 30, CPUs: 1})
			if tt.started {
				c.QEMUStarted(4242, time.Now())
			}
			mfs := scrape(t, c)
			if got, ok := value(mfs, "berth_qmp_up"); !ok || got != 0 {
				t.Errorf("qmp_up = %v (present %v), want 0", got, ok)
			}
			for _, absent := range []string{"berth_vm_run_state", "berth_vm_block_bytes_total", "berth_vm_vcpu_seconds_total"} {
				if _, ok := mfs[absent]; ok {
					t.Errorf("%s reported without QMP", absent)
				}
			}
			if _, ok := value(mfs, "berth_vm_network_bytes_total", "direction", "receive"); !ok {
				t.Error("the tap's counters are missing: they need no QEMU")
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	for _, tt := range []struct {
		line string
		want float64 // -1: an error
	}{
		{"1 (qemu) S 1 1 1 0 -1 0 0 0 0 0 100 50 0 0 20 0 1 0 1 0 0", 1.5},
		{"1 (a) b) c) S 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 1 0 0", 0.02},
		{"1 (qemu) S 1 1 1", -1},
		{"1 qemu S 1 1 1 0 -1 0 0 0 0 0 100 50", -1},
		{"1 (qemu) S 1 1 1 0 -1 0 0 0 0 0 x 50 0", -1},
		{"", -1},
	} {
		got, err := parseStatCPU(tt.line)
		if tt.want < 0 {
			if err == nil {
				t.Errorf("parseStatCPU(%q) = %v, want an error", tt.line, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseStatCPU(%q) = %v, %v; want %v", tt.line, got, err, tt.want)
		}
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add("1 (qemu) S 1 1 1 0 -1 0 0 0 0 0 100 50 0 0 20 0 1 0 1 0 0")
	f.Add("1 ())) S")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseStatCPU(s)
		if err == nil && (v < 0 || !strings.Contains(s, ")")) {
			t.Fatalf("parseStatCPU(%q) = %v", s, v)
		}
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
