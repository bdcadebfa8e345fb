package vmm

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/podmem"
	"github.com/berth-vm/berth/common/quantity"
	"github.com/berth-vm/berth/common/roottest"
)

// memCgroup is a memory cgroup made for a test: v2 where the unified
// hierarchy has the memory controller, else v1's memory hierarchy.
type memCgroup struct {
	dir string
	v2  bool
}

// newMemCgroup makes a child cgroup with memory limit limit, removed after the
// test (once its processes are gone); the test is skipped where none can be made.
func newMemCgroup(t *testing.T, limit uint64) *memCgroup {
	t.Helper()
	var cg memCgroup
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(" "+strings.TrimSpace(string(b))+" ", " memory ") {
		cg = memCgroup{dir: "/sys/fs/cgroup/berth-vmmtest-" + randomID(), v2: true}
		os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+memory"), 0)
	} else if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err == nil {
		cg = memCgroup{dir: "/sys/fs/cgroup/memory/berth-vmmtest-" + randomID()}
	} else {
		t.Skip("no memory cgroup hierarchy here (neither v2 with the memory controller nor v1's memory): cannot limit vmm as the pod does")
	}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		t.Skipf("cannot create a memory cgroup here: %v", err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.Remove(cg.dir) == nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("cgroup %s not removed (processes left?)", cg.dir)
	})
	file := "memory.limit_in_bytes"
	if cg.v2 {
		file = "memory.max"
	}
	if err := os.WriteFile(filepath.Join(cg.dir, file), []byte(strconv.FormatUint(limit, 10)), 0); err != nil {
		t.Fatalf("set %s: %v", file, err)
	}
	return &cg
}

// mount is the shell that mounts the cgroup's hierarchy at /sys/fs/cgroup (in a mount namespace
// whose /sys is fresh: ip netns exec's).
func (cg *memCgroup) mount() string {
	if cg.v2 {
		return "mount -t cgroup2 cgroup2 /sys/fs/cgroup"
	}
	return "mount -t tmpfs cgroup /sys/fs/cgroup && mkdir /sys/fs/cgroup/memory && mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory"
}

func (cg *memCgroup) procs() string { return filepath.Join(cg.dir, "cgroup.procs") }

// oomKills is how many processes the kernel killed for the cgroup's limit.
func (cg *memCgroup) oomKills(t *testing.T) int {
	t.Helper()
	file := "memory.oom_control" // v1: "oom_kill N" (kernel 4.13 and later)
	if cg.v2 {
		file = "memory.events"
	}
	for line := range strings.Lines(readFile(filepath.Join(cg.dir, file))) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok && k == "oom_kill" {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("no oom_kill count in %s/%s", cg.dir, file)
	return 0
}

// peak is the most memory the cgroup has held, bytes.
func (cg *memCgroup) peak() uint64 {
	file := "memory.max_usage_in_bytes"
	if cg.v2 {
		file = "memory.peak"
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(readFile(filepath.Join(cg.dir, file))), 10, 64)
	return n
}

// chartMemoryOverhead is the chart's default vm.memoryOverhead (chart/values.yaml).
func chartMemoryOverhead(t *testing.T) uint64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s+memoryOverhead:\s*(\S+)`).FindStringSubmatch(readFile("../../chart/values.yaml"))
	if m == nil {
		t.Fatal("chart/values.yaml: no memoryOverhead")
	}
	b, err := quantity.ParseBytes(m[1])
	if err != nil {
		t.Fatalf("chart/values.yaml memoryOverhead %q: %v", m[1], err)
	}
	return b
}

// fillGuestMiB is the guest's RAM in TestBinaryGuestFillsRAM.
const fillGuestMiB = 512

// fillRAMUserData has the guest fill its RAM once it has booted: tail keeps a
// whole line in memory, and /dev/zero has no newline, so tail grows until the
// guest's own OOM killer ends it; every page of the guest's RAM is then touched.
const fillRAMUserData = `#cloud-config
runcmd:
  - [sh, -c, "echo BERTH-FILL-START >/dev/ttyS0; head -c 512M /dev/zero | tail >/dev/null; echo BERTH-FILL-DONE $(free -m | awk '/^Mem:/ {print $2}') >/dev/ttyS0"]
`

// TestBinaryGuestFillsRAM: vmm runs in a memory cgroup limited as the pod's vm
// container is (guest memory + the chart's default memoryOverhead), under TCG;
// it finds the limit and sizes tb-size to it; the guest fills all its RAM; QEMU
// is not OOM-killed (the cgroup counts no OOM kill, vmm still runs), the guest
// answers afterwards (probe ready), and SIGTERM still powers it down.
func TestBinaryGuestFillsRAM(t *testing.T) {
	roottest.Require(t)
	needQEMU(t)
	guest := uint64(fillGuestMiB) << 20
	limit := guest + chartMemoryOverhead(t)
	cg := newMemCgroup(t, limit)
	p := newPod(t)
	p.cgroupProcs, p.cgroupMount = cg.procs(), cg.mount()
	image := testGuest(t, p)
	seedWith(t, p, fillRAMUserData)
	p.chown(t)
	startDnsmasq(t, p)

	env := p.env("ACCEL=tcg", "VM_CPUS=1", "VM_MEMORY="+strconv.Itoa(fillGuestMiB)+"Mi", "NO_VNC=true", "SHUTDOWN_TIMEOUT=60",
		"READY_TCP_PORT=22", "IMAGE_DIR="+filepath.Dir(image))
	start := time.Now()
	v := p.start(t, "fill", env)
	alive := func() {
		t.Helper()
		select {
		case <-v.done:
			t.Fatalf("vmm exited (OOM kills in the cgroup: %d): %v\nstderr:\n%s\nconsole end:\n%s", cg.oomKills(t), v.err, readFile(v.stderr), tail(readFile(v.console), 2000))
		default:
		}
	}
	until(t, 60*time.Second, "vmm logs its tb-size", func() bool { alive(); return strings.Contains(readFile(v.stderr), "TCG translation buffer") })
	want := fmt.Sprintf("tb_size=%dMi", podmem.PlanTB(limit, guest).MiB)
	if st := readFile(v.stderr); !strings.Contains(st, want) || !strings.Contains(st, cg.dir) {
		t.Errorf("vmm did not size tb-size to the cgroup's limit %d MiB (%s): want %s and the limit's file named:\n%s", limit>>20, cg.dir, want, st)
	}
	if strings.Contains(readFile(v.stderr), "level=WARN msg=\"the memory limit is too small") {
		t.Errorf("vmm warns the chart's default limit is too small:\n%s", readFile(v.stderr))
	}
	until(t, 900*time.Second, "the guest begins to fill its RAM", func() bool { alive(); return strings.Contains(readFile(v.console), "BERTH-FILL-START") })
	t.Logf("filling from %s after start", time.Since(start).Round(time.Second))
	until(t, 600*time.Second, "the guest has filled its RAM", func() bool { alive(); return strings.Contains(readFile(v.console), "BERTH-FILL-DONE") })
	t.Logf("filled %s after start; the cgroup's peak: %d MiB of the %d MiB limit, %d MiB beyond guest RAM",
		time.Since(start).Round(time.Second), cg.peak()>>20, limit>>20, (cg.peak()-min(cg.peak(), guest))>>20)
	until(t, 300*time.Second, "probe ready after the fill", func() bool {
		alive()
		c, _ := p.probe(t, env, "ready")
		return c == 0
	})
	alive()
	if n := cg.oomKills(t); n != 0 {
		t.Errorf("the cgroup counts %d OOM kills", n)
	}
	v.cmd.Process.Signal(syscall.SIGTERM)
	if code := v.exit(t, 120*time.Second); code != 0 {
		t.Errorf("SIGTERM: exit %d; stderr:\n%s", code, readFile(v.stderr))
	}
	t.Logf("vmm's log:\n%s", readFile(v.stderr))
}
