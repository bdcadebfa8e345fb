// Package metrics is vmm's Prometheus collector: at scrape time it asks
// QEMU over vmm's own QMP connection (the run state, block I/O per disk, the
// vCPU threads), reads /proc (QEMU's and its vCPU threads' CPU time, QEMU's
// resident memory) and /sys (the tap's counters), and reports what vmm saw
// of the guest's boots (resets, time to the first DHCP lease and to ready).
// Every name starts with berth_; there are no Go runtime or process metrics
// (they cost vmm memory and say nothing of the VM). It is written in
// Prometheus' text format by package promtext, not by the client library
// (see there why).
package metrics

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-vm/berth/vmm/probe"
	"github.com/berth-vm/berth/vmm/promtext"
	"github.com/berth-vm/berth/vmm/qmp"
	"github.com/berth-vm/berth/vmm/status"
)

// ScrapeTimeout bounds the QMP commands of one scrape (they wait their turn
// on vmm's connection behind the watch's).
const ScrapeTimeout = 3 * time.Second

// ClockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture QEMU runs x86_64 guests on.
const ClockTicks = 100

// Sources is what the collector reads.
type Sources struct {
	// QMP returns vmm's own connection to QEMU, nil while there is none.
	QMP func() *qmp.Client
	// Proc and SysNet are /proc and /sys/class/net (tests give others).
	Proc, SysNet string
	// Tap is the tap QEMU's network is on (its counters are the guest's traffic).
	Tap string
	// Disks names QEMU's drives (query-blockstats' device) by the disk's
	// name (its serial: root, a data disk's name, seed).
	Disks map[string]string
	// Memory (bytes) and CPUs are the guest's, as configured.
	Memory uint64
	CPUs   int
	// Leases is dnsmasq's lease file, VMIP the guest's address and
	// ReadyPort READY_TCP_PORT (0: none), as `vmm probe ready` reads them.
	Leases    string
	VMIP      netip.Addr
	ReadyPort int
}

// Collector gathers the metrics of one VM.
type Collector struct {
	src Sources
	d   descs

	mu        sync.Mutex
	pid       int       // QEMU's, 0 before it starts
	qemuStart time.Time // when vmm started QEMU
	boot      time.Time // when the guest's current boot began
	resets    uint64    // guest resets in this QEMU
	leaseAt   time.Time // the current boot's first DHCP lease, as first seen (zero: not yet)
	readyAt   time.Time // the current boot's first ready, as first seen (zero: not yet)
}

// New returns a collector of src.
func New(src Sources) *Collector {
	if src.Proc == "" {
		src.Proc = "/proc"
	}
	if src.SysNet == "" {
		src.SysNet = "/sys/class/net"
	}
	return &Collector{src: src, d: newDescs()}
}

// QEMUStarted records QEMU's process and start: the guest's first boot.
func (c *Collector) QEMUStarted(pid int, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pid, c.qemuStart, c.boot = pid, at, at
	c.leaseAt, c.readyAt = time.Time{}, time.Time{}
}

// GuestReset records a reset of the guest in the same QEMU (a reboot, vmm's
// reset after a panic), seen by vmm's watch at at: a new boot.
func (c *Collector) GuestReset(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resets++
	c.boot = at
	c.leaseAt, c.readyAt = time.Time{}, time.Time{}
}

func gauge(name, help string, labels ...string) *promtext.Desc {
	return &promtext.Desc{Name: "berth_" + name, Help: help, Type: promtext.Gauge, Labels: labels}
}

func counter(name, help string, labels ...string) *promtext.Desc {
	return &promtext.Desc{Name: "berth_" + name, Help: help, Type: promtext.Counter, Labels: labels}
}

// descs are the metrics' descriptions, made once per collector.
type descs struct {
	qmpUp, runState, memory, cpus, vcpuSeconds, qemuCPU, qemuRSS, qemuStart, bootStart, bootLease, bootReady, resets, blkBytes, blkOps, blkTime, tapBytes, tapPkts, tapDrops *promtext.Desc
}

func newDescs() descs {
	block := []string{"drive", "disk", "op"}
	return descs{
		qmpUp:       gauge("qmp_up", "1 when QEMU answered this scrape's query-status on vmm's own QMP connection, else 0."),
		runState:    gauge("vm_run_state", "The guest's run state as QEMU's query-status names it (running, paused, io-error, guest-panicked, ...): 1 for the current one.", "state"),
		memory:      gauge("vm_memory_bytes", "The guest's memory as configured (VM_MEMORY)."),
		cpus:        gauge("vm_vcpus", "The guest's virtual CPUs as configured (VM_CPUS)."),
		vcpuSeconds: counter("vm_vcpu_seconds_total", "CPU time of each vCPU thread of QEMU (query-cpus-fast thread ids, /proc/<pid>/task/<tid>/stat user+system).", "vcpu"),
		qemuCPU:     counter("qemu_cpu_seconds_total", "CPU time of the whole QEMU process, user+system (vCPUs, emulation, I/O threads)."),
		qemuRSS:     gauge("qemu_resident_memory_bytes", "QEMU's resident memory (/proc/<pid>/statm): the guest's touched RAM and QEMU's own."),
		qemuStart:   gauge("qemu_start_time_seconds", "When vmm started QEMU, Unix time."),
		bootStart:   gauge("vm_boot_start_time_seconds", "When the guest's current boot began (QEMU's start, or its last reset), Unix time."),
		bootLease:   gauge("vm_boot_lease_seconds", "Seconds from the current boot's start to the guest's first DHCP lease of it (the lease file's time as first seen after the boot); absent until then."),
		bootReady:   gauge("vm_boot_ready_seconds", "Seconds from the current boot's start to ready as `vmm probe ready` means it (running, leased, READY_TCP_PORT accepting); with READY_TCP_PORT as seen by a scrape, so as precise as the scrape interval; absent until then."),
		resets:      counter("vm_guest_resets_total", "Resets of the guest in this QEMU seen by vmm's watch (reboots, vmm's resets after a panic); a restart of the container starts it at 0 again."),
		blkBytes:    counter("vm_block_bytes_total", "Bytes the guest read or wrote on a disk (query-blockstats).", block...),
		blkOps:      counter("vm_block_ops_total", "Read, write and flush requests the guest made on a disk (query-blockstats).", block...),
		blkTime:     counter("vm_block_time_seconds_total", "Time the guest's read, write and flush requests on a disk took, summed (query-blockstats).", block...),
		tapBytes:    counter("vm_network_bytes_total", "Bytes through the VM's tap: receive is what the guest sent, transmit what it was sent (/sys/class/net/<tap>/statistics).", "interface", "direction"),
		tapPkts:     counter("vm_network_packets_total", "Packets through the VM's tap, as vm_network_bytes_total.", "interface", "direction"),
		tapDrops:    counter("vm_network_drops_total", "Packets the tap dropped, as vm_network_bytes_total (transmit drops: the guest did not take them fast enough).", "interface", "direction"),
	}
}

func (d descs) all() []*promtext.Desc {
	return []*promtext.Desc{d.qmpUp, d.runState, d.memory, d.cpus, d.vcpuSeconds, d.qemuCPU, d.qemuRSS, d.qemuStart, d.bootStart, d.bootLease, d.bootReady, d.resets, d.blkBytes, d.blkOps, d.blkTime, d.tapBytes, d.tapPkts, d.tapDrops}
}

// tapDirections are the tap's counters' directions and sysfs prefixes.
func tapDirections() [2][2]string { return [2][2]string{{"receive", "rx"}, {"transmit", "tx"}} }

// Descs are every metric's description.
func (c *Collector) Descs() []*promtext.Desc { return c.d.all() }

// Gather makes one scrape (ctx bounds its QMP commands, with
// ScrapeTimeout). What cannot be read (no QEMU yet, QMP slow) is left out,
// never reported as a zero.
func (c *Collector) Gather(ctx context.Context) *promtext.Set {
	set := &promtext.Set{}
	c.gather(ctx, set.Add)
	return set
}

func (c *Collector) gather(ctx context.Context, add func(*promtext.Desc, float64, ...string)) {
	c.mu.Lock()
	pid, qemuStart, boot, resets := c.pid, c.qemuStart, c.boot, c.resets
	c.mu.Unlock()
	add(c.d.memory, float64(c.src.Memory))
	add(c.d.cpus, float64(c.src.CPUs))
	if tap := c.src.Tap; tap != "" {
		for _, d := range tapDirections() {
			for _, m := range []struct {
				desc *promtext.Desc
				file string
			}{{c.d.tapBytes, "_bytes"}, {c.d.tapPkts, "_packets"}, {c.d.tapDrops, "_dropped"}} {
				if n, err := readUint(filepath.Join(c.src.SysNet, tap, "statistics", d[1]+m.file)); err == nil {
					add(m.desc, float64(n), tap, d[0])
				}
			}
		}
	}
	if pid == 0 {
		add(c.d.qmpUp, 0)
		return
	}
	add(c.d.qemuStart, unix(qemuStart))
	add(c.d.bootStart, unix(boot))
	add(c.d.resets, float64(resets))
	procDir := filepath.Join(c.src.Proc, strconv.Itoa(pid))
	if t, err := cpuSeconds(filepath.Join(procDir, "stat")); err == nil {
		add(c.d.qemuCPU, t)
	}
	if rss, err := residentBytes(filepath.Join(procDir, "statm")); err == nil {
		add(c.d.qemuRSS, float64(rss))
	}

	ctx, cancel := context.WithTimeout(ctx, ScrapeTimeout)
	defer cancel()
	client := (*qmp.Client)(nil)
	if c.src.QMP != nil {
		client = c.src.QMP()
	}
	if client == nil {
		add(c.d.qmpUp, 0)
		return
	}
	st, err := client.QueryStatus(ctx)
	if err != nil {
		add(c.d.qmpUp, 0)
		return
	}
	add(c.d.qmpUp, 1)
	add(c.d.runState, 1, st.Status)
	c.boots(ctx, st.Status, boot, add)

	var cpus []struct {
		Index  int `json:"cpu-index"`
		Thread int `json:"thread-id"`
	}
	if err := client.Query(ctx, "query-cpus-fast", &cpus); err == nil {
		seen := map[int]bool{} // single-threaded TCG runs every vCPU on one thread: counted once, for the first
		for _, cpu := range cpus {
			if seen[cpu.Thread] || cpu.Thread <= 0 {
				continue
			}
			seen[cpu.Thread] = true
			if t, err := cpuSeconds(filepath.Join(procDir, "task", strconv.Itoa(cpu.Thread), "stat")); err == nil {
				add(c.d.vcpuSeconds, t, strconv.Itoa(cpu.Index))
			}
		}
	}

	var blocks []blockStats
	if err := client.Query(ctx, "query-blockstats", &blocks); err == nil {
		for _, b := range blocks {
			if b.Device == "" {
				continue // a node without a drive id: not one of vmm's disks
			}
			disk := c.src.Disks[b.Device]
			if disk == "" {
				disk = b.Device
			}
			s := b.Stats
			for _, op := range []struct {
				name       string
				bytes, ops uint64
				ns         uint64
			}{{"read", s.RdBytes, s.RdOps, s.RdNs}, {"write", s.WrBytes, s.WrOps, s.WrNs}, {"flush", 0, s.FlushOps, s.FlushNs}} {
				if op.name != "flush" {
					add(c.d.blkBytes, float64(op.bytes), b.Device, disk, op.name)
				}
				add(c.d.blkOps, float64(op.ops), b.Device, disk, op.name)
				add(c.d.blkTime, float64(op.ns)/1e9, b.Device, disk, op.name)
			}
		}
	}
}

// boots reports the current boot's time to its first lease and to ready,
// looking for them (as `vmm probe ready` does) until both were seen.
func (c *Collector) boots(ctx context.Context, state string, boot time.Time, add func(*promtext.Desc, float64, ...string)) {
	c.mu.Lock()
	leaseAt, readyAt := c.leaseAt, c.readyAt
	c.mu.Unlock()
	if leaseAt.IsZero() && c.src.Leases != "" {
		if _, err := probe.Ready(ctx, c.src.Leases, c.src.VMIP, 0, boot); err == nil {
			if fi, err := os.Stat(c.src.Leases); err == nil {
				leaseAt = fi.ModTime()
			}
		}
	}
	if readyAt.IsZero() && !leaseAt.IsZero() && state == status.Running {
		if c.src.ReadyPort == 0 {
			readyAt = leaseAt
		} else if _, err := probe.Ready(ctx, c.src.Leases, c.src.VMIP, c.src.ReadyPort, boot); err == nil {
			readyAt = time.Now()
		}
	}
	c.mu.Lock()
	if c.boot.Equal(boot) { // no reset came meanwhile
		c.leaseAt, c.readyAt = leaseAt, readyAt
	}
	c.mu.Unlock()
	if !leaseAt.IsZero() {
		add(c.d.bootLease, leaseAt.Sub(boot).Seconds())
	}
	if !readyAt.IsZero() {
		add(c.d.bootReady, readyAt.Sub(boot).Seconds())
	}
}

// blockStats is one entry of query-blockstats.
type blockStats struct {
	Device string `json:"device"`
	Stats  struct {
		RdBytes  uint64 `json:"rd_bytes"`
		WrBytes  uint64 `json:"wr_bytes"`
		RdOps    uint64 `json:"rd_operations"`
		WrOps    uint64 `json:"wr_operations"`
		FlushOps uint64 `json:"flush_operations"`
		RdNs     uint64 `json:"rd_total_time_ns"`
		WrNs     uint64 `json:"wr_total_time_ns"`
		FlushNs  uint64 `json:"flush_total_time_ns"`
	} `json:"stats"`
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// readUint reads a file holding one decimal number (a sysfs counter).
func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// cpuSeconds reads user+system CPU time from a /proc stat file (a process's
// or a thread's).
func cpuSeconds(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU parses utime and stime (fields 14 and 15) of a /proc stat
// line. The command name (field 2, in parentheses) may hold spaces and
// parentheses itself: the fields are counted after its last ')'.
func parseStatCPU(s string) (float64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 { // state is field 3, stime field 15
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(f))
	}
	utime, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat utime: %w", err)
	}
	stime, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat stime: %w", err)
	}
	return float64(utime+stime) / ClockTicks, nil
}

// residentBytes reads the resident set (field 2, pages) of a statm file.
func residentBytes(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("statm: %d fields, want at least 2", len(f))
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("statm resident: %w", err)
	}
	return pages * uint64(os.Getpagesize()), nil
}
