package vmm

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/quantity"
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
