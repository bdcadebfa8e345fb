package vmm

import (
	"context"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/config"
	"github.com/berth-vm/berth/vmm/metrics"
	"github.com/berth-vm/berth/vmm/qemu"
	"github.com/berth-vm/berth/vmm/qmp"
	"github.com/berth-vm/berth/vmm/watch"
)

// vmMetrics is vmm's side of METRICS_PORT: the collector, told of QEMU's
// start and the guest's resets, and vmm's own QMP connection it shares with
// the watch (qmp.Client takes turns). A nil *vmMetrics (no METRICS_PORT)
// does nothing.
type vmMetrics struct {
	collector *metrics.Collector
	client    atomic.Pointer[qmp.Client]
}

// MetricsProcs is the GOMAXPROCS vmm runs with when it serves metrics
// (unless GOMAXPROCS says otherwise), and vmm collects its garbage after
// each scrape. A scrape makes about 50 KiB of garbage, and the Go runtime
// lets the heap grow to 4 MiB before it collects and then keeps the pages
// it freed: after a few hundred scrapes vmm held 1.5 MiB more than without
// metrics (ci/bench/metrics.sh; a soft memory limit of 8 MiB, GOGC=25 or
// GOGC=10 changed nothing, a 6 MiB limit saved a little, 5 MiB thrashed).
// A collection after each answer keeps the heap at one scrape's garbage,
// but with a P per core it cost 4.5 ms of CPU (the mark workers of every P
// woken for a heap of a few hundred KiB); with one P, 0.4 ms. vmm
// supervises, it does not compute: one P is all it uses.
const MetricsProcs = 1

// startMetrics serves /metrics on METRICS_PORT until ctx ends (nil, and no
// server, when it is unset). A port that cannot be bound is logged, not
// fatal: the VM runs without its metrics.
func startMetrics(ctx context.Context, log *slog.Logger, env stage.Env, c config.Config) *vmMetrics {
	if c.MetricsPort == 0 {
		return nil
	}
	if _, set := env.Lookup("GOMAXPROCS"); !set {
		runtime.GOMAXPROCS(MetricsProcs)
	}
	m := &vmMetrics{}
	names := map[string]string{qemu.SeedDrive: "seed"}
	for _, d := range watch.Disks(c) {
		names[d.Drive] = d.Name
	}
	m.collector = metrics.New(metrics.Sources{
		QMP: m.client.Load, Tap: c.Tap, Disks: names, Memory: c.Memory, CPUs: c.CPUs,
		Leases: c.Leases(), VMIP: c.VMIP, ReadyPort: c.ReadyTCPPort,
	})
	go func() {
		srv := metrics.Server(log, m.collector)
		srv.Answered = runtime.GC // see MetricsProcs
		if err := metrics.Serve(ctx, log, c.MetricsPort, srv); err != nil {
			log.Error("no metrics: the VM runs without them", "err", err, "metrics_port", c.MetricsPort)
		}
	}()
	return m
}

func (m *vmMetrics) qemuStarted(pid int, at time.Time) {
	if m != nil {
		m.collector.QEMUStarted(pid, at)
	}
}

// connected shares vmm's own QMP connection with the collector (nil: it ended).
func (m *vmMetrics) connected(c *qmp.Client) {
	if m != nil {
		m.client.Store(c)
	}
}

// reset is the watch's Reset: nil without metrics.
func (m *vmMetrics) reset() func(time.Time) {
	if m == nil {
		return nil
	}
	return m.collector.GuestReset
}
