// Package probe implements `vmm probe ready` and `vmm probe live`, the pod's
// exec probes, and `vmm probe banner`, the chart's helm test (banner.go).
// They print one line and exit 0 (yes) or 1 (no); bad usage is 2.
// Unlike the stage itself they never write the termination log: a failing
// probe is not why a container ended.
package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/agent"
	"github.com/berth-vm/berth/vmm/config"
	"github.com/berth-vm/berth/vmm/qmp"
	"github.com/berth-vm/berth/vmm/status"
)

// Timeout bounds each probe (kubelet's default probe timeout is 1 s; set
// timeoutSeconds above this).
const Timeout = 2 * time.Second

// Usage is the probe's help (vmm probe -h).
const Usage = "usage: vmm probe ready|live|banner\n" +
	"  ready: the guest runs (vmm's status file says QEMU is running, not paused on a full volume),\n" +
	"         dnsmasq leased VM_IP (and, with READY_TCP_PORT, the guest accepts on that port)\n" +
	"         since the guest's current boot (a lease of an earlier boot does not count);\n" +
	"         READY_WHEN=tcp needs READY_TCP_PORT, READY_WHEN=agent also the guest agent answering\n" +
	"         guest-ping on $BERTH_RUN_DIR/qga.sock\n" +
	"  live:  QEMU answers query-status on $BERTH_RUN_DIR/qmp.sock in a state the guest can go on from\n" +
	"         (not internal-error, not a kernel panic left unreset); or the guest powered off with ON_POWEROFF=stop\n" +
	"Reads BERTH_RUN_DIR, VM_IP, READY_TCP_PORT, READY_WHEN and GUEST_AGENT as vmm does; exit 0 yes, 1 no, 2 bad input.\n" +
	"  banner: a TCP service's first line (the chart's helm test: vmm probe banner -h)\n"

// Main runs a probe; args are what follows "probe". Bad arguments or a bad
// variable are one line on stderr and exit 2.
func Main(args []string, env stage.Env, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprint(stdout, Usage)
		return stage.ExitOK
	}
	if len(args) > 0 && args[0] == "banner" {
		return bannerMain(args[1:], stdout, stderr)
	}
	if len(args) != 1 || (args[0] != "ready" && args[0] != "live") {
		fmt.Fprintf(stderr, "vmm probe: bad input: arguments %q: want exactly one of ready, live, or banner and its arguments (vmm probe -h)\n", args)
		return stage.ExitBadInput
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var msg string
	runDir, err := config.RunDir(env)
	if err != nil {
		fmt.Fprintf(stderr, "vmm probe %s: bad input: %s\n", args[0], oneLine(err))
		return stage.ExitBadInput
	}
	if args[0] == "live" {
		msg, err = Live(ctx, filepath.Join(runDir, stage.QMPSocketName), filepath.Join(runDir, status.FileName))
	} else {
		var re readyVars
		var st status.Status
		re, err = readyEnv(env)
		if err == nil {
			st, err = GuestRuns(filepath.Join(runDir, status.FileName))
		}
		if err == nil {
			msg, err = Ready(ctx, filepath.Join(runDir, stage.DnsmasqLeasesName), re.ip, re.port, st.Boot)
		}
		if err == nil && re.when == config.ReadyAgent {
			var amsg string
			amsg, err = AgentAnswers(ctx, filepath.Join(runDir, stage.AgentSocketName))
			msg += ", " + amsg
		}
	}
	if err != nil {
		kind := ""
		if stage.IsBadInput(err) {
			kind = "bad input: "
		}
		fmt.Fprintf(stderr, "vmm probe %s: %s%s\n", args[0], kind, oneLine(err))
		return stage.ExitCode(err)
	}
	fmt.Fprintf(stdout, "vmm probe %s: %s\n", args[0], msg)
	return stage.ExitOK
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }

// readyVars are the variables probe ready reads.
type readyVars struct {
	ip   netip.Addr
	port int
	when string
}

// readyEnv reads VM_IP, READY_TCP_PORT, GUEST_AGENT and READY_WHEN exactly as vmm does.
func readyEnv(env stage.Env) (readyVars, error) {
	var r readyVars
	var err error
	if r.ip, err = config.VMIP(env); err != nil {
		return r, err
	}
	if r.port, err = config.ReadyTCPPort(env); err != nil {
		return r, err
	}
	agent, err := config.GuestAgent(env)
	if err != nil {
		return r, err
	}
	r.when, err = config.ReadyWhen(env, agent)
	return r, err
}

// AgentAnswers: the guest agent on sock answers guest-ping within ctx (the
// probe's Timeout): READY_WHEN=agent.
func AgentAnswers(ctx context.Context, sock string) (string, error) {
	c, err := agent.Dial(ctx, sock)
	if err == nil {
		defer c.Close()
		err = c.Ping(ctx)
	}
	if err != nil {
		return "", fmt.Errorf("the guest agent does not answer guest-ping (READY_WHEN=agent; is qemu-guest-agent installed and running in the guest?): %w", err)
	}
	return "the guest agent answers guest-ping", nil
}

// MaxLeases bounds what is read of the lease file (a /30 has one lease).
const MaxLeases = 1 << 20

// Live: QEMU answers query-status on sock, in a run state the guest can go
// on from (status.Live: not internal-error, not a panic vmm has not reset);
// or vmm's status file (statusFile) says the guest powered itself off and vmm
// stays without QEMU on purpose (ON_POWEROFF=stop): a restart would boot it.
func Live(ctx context.Context, sock, statusFile string) (string, error) {
	if s, err := status.Read(statusFile); err == nil && s.QEMU == status.PoweredOff {
		return "the guest is powered off and vmm holds no QEMU on purpose (ON_POWEROFF=stop) since " + s.Since.UTC().Format(time.RFC3339), nil
	} else if stage.IsBadInput(err) {
		return "", err
	}
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		return "", err
	}
	defer c.Close()
	st, err := c.QueryStatus(ctx)
	if err != nil {
		return "", err
	}
	if live, why := status.Live(st.Status); !live {
		return "", fmt.Errorf("QEMU answers, status %s: %s", st.Status, why)
	}
	if st.Status != status.Running {
		return "QEMU answers, status " + st.Status + " (" + status.Why(st.Status) + "; not ready, but the container must not restart)", nil
	}
	return "QEMU answers, status " + st.Status, nil
}

// GuestRuns: vmm's status file says QEMU runs the guest, and returns it. A
// guest QEMU paused (a full volume: io-error), panicked, powered off or not
// started is not ready; the file is read as the lease file is (no symlink, no
// FIFO, bounded).
func GuestRuns(path string) (status.Status, error) {
	s, err := status.Read(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, fmt.Errorf("vmm has not reported QEMU's status yet (%s does not exist)", path)
	}
	if err != nil {
		return s, err
	}
	if s.QEMU != status.Running {
		why := s.Reason
		if why == "" {
			why = status.Why(s.QEMU)
		}
		return s, fmt.Errorf("the guest is not running since %s: %s", s.Since.UTC().Format(time.RFC3339), why)
	}
	return s, nil
}

// Ready: the lease file lists ip, written since boot (the guest's current
// boot began; zero: not checked), and (port > 0) ip:port accepts a TCP
// connection. dnsmasq rewrites the file whenever it grants or renews a
// lease, so a file older than the boot holds only a lease of an earlier
// boot: the guest (rebooted, reset, or a new QEMU in the same pod) has not
// brought its network up yet.
func Ready(ctx context.Context, leases string, ip netip.Addr, port int, boot time.Time) (string, error) {
	mac, written, err := leased(leases, ip)
	if err != nil {
		return "", err
	}
	if !boot.IsZero() && written.Before(boot) {
		return "", fmt.Errorf("%s was leased to %s before the guest's current boot (lease file written %s, boot %s): the guest has not taken its lease again yet",
			ip, mac, written.UTC().Format(time.RFC3339), boot.UTC().Format(time.RFC3339))
	}
	msg := fmt.Sprintf("%s leased to %s", ip, mac)
	if port == 0 {
		return msg, nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(port)).String())
	if err != nil {
		return "", fmt.Errorf("%s, but TCP port %d does not accept: %w", msg, port, err)
	}
	conn.Close()
	return msg + ", TCP " + strconv.Itoa(port) + " accepts", nil
}

// leased finds ip in a dnsmasq lease file ("expiry mac ip hostname clientid").
// The file is in the shared run volume: it is opened without following a
// symlink and without blocking on a FIFO, must be a regular file, and at most
// MaxLeases bytes of it are read.
func leased(path string, ip netip.Addr) (mac string, written time.Time, err error) {
	f, err := fsutil.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", written, fmt.Errorf("no leases yet (%s does not exist)", path)
	}
	if err != nil {
		return "", written, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", written, fmt.Errorf("stat %s: %w", path, err)
	}
	written = fi.ModTime()
	sc := bufio.NewScanner(io.LimitReader(f, MaxLeases))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == ip.String() {
			return fields[1], written, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", written, fmt.Errorf("read %s: %w", path, err)
	}
	return "", written, fmt.Errorf("%s not leased yet (not in %s)", ip, path)
}
