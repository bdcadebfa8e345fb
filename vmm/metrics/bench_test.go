package metrics

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/berth-vm/berth/vmm/qmp"
	"github.com/berth-vm/berth/vmm/qmptest"
)

// BenchmarkScrape: one scrape's body (gather and encode)
// against the fake QEMU: its time and, what vmm's RSS depends on, its
// allocations.
func BenchmarkScrape(b *testing.B) {
	proc, sysNet := fakeHost(b)
	srv := qmptest.New(b, map[string]string{
		"query-status":     `{"status": "running", "running": true}`,
		"query-cpus-fast":  `[{"cpu-index": 0, "thread-id": 4250}, {"cpu-index": 1, "thread-id": 4251}]`,
		"query-blockstats": blockstats,
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := qmp.Dial(ctx, srv.Path)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	c := New(Sources{QMP: func() *qmp.Client { return client }, Proc: proc, SysNet: sysNet, Tap: "tap0",
		Disks: map[string]string{"disk0": "root"}, Memory: 1 << 30, CPUs: 2})
	c.QEMUStarted(4242, time.Now())
	body := Server(slog.New(slog.NewTextHandler(io.Discard, nil)), c).Body
	b.ReportAllocs()
	for b.Loop() {
		if len(body(ctx)) == 0 {
			b.Fatal("an empty scrape")
		}
	}
}
