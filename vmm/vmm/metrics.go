package vmm

import (
	"context"
	"log/slog"
	"runtime/debug"
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

// MetricsMemoryLimit is the Go runtime's soft memory limit vmm sets when it
// serves metrics (unless GOMEMLIMIT says otherwise): each scrape makes some
// garbage, and with the default GOGC alone the heap grows to the runtime's
// 4 MiB minimum goal before the first collection, memory that stays vmm's
// (ci/bench/metrics.sh: about +4 MiB RssAnon after the scrapes without a
// limit, +1.5 MiB with this one, for about 1 ms more CPU per scrape; 12 MiB
// was no better than none). vmm's live heap is far below it, so the limit
// only makes collections come earlier and freed pages go back to the kernel.
const MetricsMemoryLimit = 8 << 20

// startMetrics serves /metrics on METRICS_PORT until ctx ends (nil, and no
// server, when it is unset). A port that cannot be bound is logged, not
// fatal: the VM runs without its metrics.
func startMetrics(ctx context.Context, log *slog.Logger, env stage.Env, c config.Config) *vmMetrics {
	if c.MetricsPort == 0 {
		return nil
	}
	if _, set := env.Lookup("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(MetricsMemoryLimit)
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
	reg, err := metrics.Registry(m.collector)
	if err != nil {
		log.Error("no metrics", "err", err)
		return m
	}
	go func() {
		if err := metrics.Serve(ctx, log, c.MetricsPort, metrics.Handler(log, reg)); err != nil {
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
