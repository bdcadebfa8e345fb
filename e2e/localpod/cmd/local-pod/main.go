// Command local-pod brings the whole Berth pod up without Kubernetes and
// leaves it running (package localpod; ci/local-pod.sh and `make demo-local`
// run it), and takes it down again:
//
//	local-pod up [STATE]            start the pod, wait for SSH, write STATE, print the SSH command
//	local-pod warm-restart [STATE]  stop vmm, run the pod's start again on the same disk (dnsmasq keeps
//	                                running); record the ms from net-setup's start to QEMU's exec
//	local-pod down [STATE]          stop vmm (SIGTERM, bounded), remove the namespaces and the work dir
//
// STATE (default /run/berth-local-pod.state) holds KEY='value' lines a shell can source: WORK,
// NODE_NS, POD_NS, POD_IP, KEY, VM_NAME, VMM_PID, DNSMASQ_PID, CONSOLE, SHUTDOWN_TIMEOUT,
// BOOT_TO_SSH_S, QEMU_PID, QEMU_CPU_S (QEMU's user+sys CPU seconds when SSH first answered) and,
// after warm-restart, STAGES_TO_QEMU_EXEC_MS. The pod's settings come from the environment
// (localpod.FromEnv: VM_NAME, VM_CPUS, VM_MEMORY, DISK_SIZE, SHUTDOWN_TIMEOUT, BOOT_TIMEOUT,
// HTTP_PORT, VM_UID, BERTH_BIN) and BERTH_REPO (default: the working directory).
// Exit 2 on bad usage or a bad variable, 1 on failure (an `up` that fails removes what it made).
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-vm/berth/e2e/localpod"
)

const defaultState = "/run/berth-local-pod.state"

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		usage()
	}
	state := defaultState
	if len(os.Args) == 3 {
		state = os.Args[2]
	}
	repo := os.Getenv("BERTH_REPO")
	if repo == "" {
		repo, _ = os.Getwd()
	}
	cfg, err := localpod.FromEnv(repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "local-pod: "+err.Error())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var run func(context.Context, localpod.Config, string) error
	switch os.Args[1] {
	case "up":
		run = up
	case "warm-restart":
		run = warmRestart
	case "down":
		run = down
	default:
		usage()
	}
	if err := run(ctx, cfg, state); err != nil {
		slog.Error("local-pod "+os.Args[1], "err", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: local-pod up|warm-restart|down [STATE]")
	os.Exit(2)
}

func logf(format string, args ...any) { slog.Info(fmt.Sprintf(format, args...)) }

func up(ctx context.Context, cfg localpod.Config, state string) (err error) {
	if _, err := os.Lstat(state); err == nil {
		return fmt.Errorf("a local pod is already up (%s): run 'ci/local-pod.sh down' first", state)
	}
	p, err := localpod.Start(ctx, cfg, logf)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if err := p.Stages(ctx, "up"); err != nil {
		return err
	}
	if err := p.WaitSSH(ctx, "up"); err != nil {
		return err
	}
	boot := p.Timings[len(p.Timings)-1].D
	if err := writeState(state, true, map[string]string{
		"WORK": p.Work, "NODE_NS": p.NodeNS, "POD_NS": p.PodNS, "POD_IP": localpod.PodIP, "KEY": p.Key,
		"VM_NAME": p.VMName, "VMM_PID": strconv.Itoa(p.VMM.Pid), "DNSMASQ_PID": strconv.Itoa(p.Dnsmasq.Pid),
		"CONSOLE": p.ConsoleLog("up"), "SHUTDOWN_TIMEOUT": strconv.Itoa(int(p.ShutdownTimeout / time.Second)),
		"BOOT_TO_SSH_S": fmt.Sprintf("%.2f", boot.Seconds()), "QEMU_PID": strconv.Itoa(p.QEMUPid()),
		"QEMU_CPU_S": fmt.Sprintf("%.2f", p.QEMUCPU.Seconds()),
	}); err != nil {
		return err
	}
	p.PrintTimings(os.Stderr)
	fmt.Printf(`
Berth local pod is up: VM '%s' has the pod IP %s (pod netns %s, node netns %s).
  SSH:      %s
  console:  tail -f %s
  stop:     ci/local-pod.sh down
`, p.VMName, localpod.PodIP, p.PodNS, p.NodeNS, p.SSHCommand(), p.ConsoleLog("up"))
	return nil
}

func warmRestart(ctx context.Context, cfg localpod.Config, state string) error {
	s, err := readState(state)
	if err != nil {
		return err
	}
	vmm, _ := strconv.Atoi(s["VMM_PID"])
	if err := localpod.StopPid(ctx, vmm, cfg.ShutdownTimeout+15*time.Second); err != nil {
		return err
	}
	p := localpod.Reattach(cfg, s["WORK"], s["NODE_NS"], s["POD_NS"])
	t0 := time.Now()
	if err := p.InitStages(ctx, "warm"); err != nil {
		return err
	}
	if err := p.StartVMM("warm"); err != nil {
		return err
	}
	// QEMU's exec: vmm has a qemu-system child (polled every 5 ms, 20 s at most).
	deadline := time.Now().Add(20 * time.Second)
	for p.QEMUPid() == 0 {
		if time.Now().After(deadline) || p.VMM.Exited() {
			return errors.New("vmm started no QEMU within 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ms := time.Since(t0).Milliseconds()
	logf("warm restart: net-setup's start to QEMU's exec %d ms", ms)
	s["VMM_PID"], s["CONSOLE"], s["STAGES_TO_QEMU_EXEC_MS"] = strconv.Itoa(p.VMM.Pid), p.ConsoleLog("warm"), strconv.FormatInt(ms, 10)
	return writeState(state, false, s)
}

func down(ctx context.Context, cfg localpod.Config, state string) error {
	s, err := readState(state)
	if errors.Is(err, os.ErrNotExist) {
		logf("nothing is up (%s does not exist)", state)
		return nil
	}
	if err != nil {
		return err
	}
	vmm, _ := strconv.Atoi(s["VMM_PID"])
	limit, _ := strconv.Atoi(s["SHUTDOWN_TIMEOUT"])
	if err := localpod.StopPid(ctx, vmm, time.Duration(limit+10)*time.Second); err != nil {
		logf("%v; killing it", err)
	}
	localpod.TearDown(s["WORK"], s["POD_NS"], s["NODE_NS"])
	if err := os.Remove(state); err != nil {
		return err
	}
	logf("down: removed %s, %s and %s", s["NODE_NS"], s["POD_NS"], s["WORK"])
	return nil
}

// stateKeys are the state's keys, in the order written.
var stateKeys = []string{"WORK", "NODE_NS", "POD_NS", "POD_IP", "KEY", "VM_NAME", "VMM_PID", "DNSMASQ_PID",
	"CONSOLE", "SHUTDOWN_TIMEOUT", "BOOT_TO_SSH_S", "QEMU_PID", "QEMU_CPU_S", "STAGES_TO_QEMU_EXEC_MS"}

// writeState writes s as KEY='value' lines: with excl, to a new file only
// (never through a symlink); else replacing path by rename.
func writeState(path string, excl bool, s map[string]string) error {
	var b strings.Builder
	for _, k := range stateKeys {
		v, ok := s[k]
		if !ok {
			continue
		}
		if strings.ContainsAny(v, "'\n") {
			return fmt.Errorf("state %s: %s=%q cannot be written as a shell word", path, k, v)
		}
		fmt.Fprintf(&b, "%s='%s'\n", k, v)
	}
	target := path
	if !excl {
		target = path + ".new"
		_ = os.Remove(target)
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("state %s: %w", target, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state %s: %w", target, err)
	}
	if !excl {
		return os.Rename(target, path)
	}
	return nil
}

func readState(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		m[k] = strings.Trim(v, "'")
	}
	if m["WORK"] == "" || m["NODE_NS"] == "" || m["POD_NS"] == "" {
		return nil, fmt.Errorf("state %s: no WORK, NODE_NS or POD_NS", path)
	}
	return m, sc.Err()
}
