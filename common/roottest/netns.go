package roottest

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// KillNetnsProcesses SIGKILLs every process left in the named network
// namespace (`ip netns pids`), never the calling test process: a goroutine
// that locked its thread and entered the netns may have been running on the
// main thread, which Go wedges rather than ends, and /proc/PID/ns/net reports
// the main thread's namespace, so the test itself can be listed.
func KillNetnsProcesses(ns string) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
