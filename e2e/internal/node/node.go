// Package node reaches the processes of the single-node cluster on this
// machine (ci/cluster/up): a container's first process through containerd
// (never by a process name), a child of a process, and the cluster's own
// daemons by their pid files (only when their command line names the
// cluster's state directory, so a reused pid is never signalled).
package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Containerd is the cluster's containerd (ctr at Ctr, its socket Address).
type Containerd struct {
	Ctr     string
	Address string
}

// TaskPid is the host pid of the running task of the container id
// (containerd://... or bare), through `ctr tasks ls`.
func (c Containerd) TaskPid(ctx context.Context, containerID string) (int, error) {
	id := strings.TrimPrefix(containerID, "containerd://")
	if id == "" {
		return 0, fmt.Errorf("no container id")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.Ctr, "--address", c.Address, "-n", "k8s.io", "tasks", "ls")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("ctr tasks ls: %w (%s)", err, strings.TrimSpace(stderr.String()))
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == id && f[2] == "RUNNING" {
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				return 0, fmt.Errorf("ctr tasks ls: pid %q of %s: %w", f[1], id, err)
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				return 0, fmt.Errorf("task %s: pid %d: %w", id, pid, err)
			}
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no running task %s", id)
}

// Comm is the process's name (/proc/PID/comm).
func Comm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Child is a child of pid whose name starts with prefix.
func Child(pid int, prefix string) (int, error) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			c, err := strconv.Atoi(f)
			if err == nil && strings.HasPrefix(Comm(c), prefix) {
				return c, nil
			}
		}
	}
	return 0, fmt.Errorf("no child of %d named %s*", pid, prefix)
}

// Ours reports whether pid is alive and its command line names dir.
func Ours(pid int, dir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(b, []byte(dir))
}

// Daemon is the pid recorded for the cluster daemon name under dir/pids.
func Daemon(dir, name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "pids", name))
	if err != nil {
		return 0, fmt.Errorf("pid of %s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pid of %s: %w", name, err)
	}
	return pid, nil
}
