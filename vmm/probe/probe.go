// Package probe implements `vmm probe ready` and `vmm probe live`, the pod's
// exec probes. They print one line and exit 0 (yes) or 1 (no); bad usage is 2.
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

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/qmp"
)

// Timeout bounds each probe (kubelet's default probe timeout is 1 s; set
// timeoutSeconds above this).
const Timeout = 2 * time.Second

// Main runs a probe; args are what follows "probe".
func Main(args []string, env stage.Env, stdout, stderr io.Writer) int {
	if len(args) != 1 || (args[0] != "ready" && args[0] != "live") {
		fmt.Fprintln(stderr, "usage: vmm probe ready|live\n"+
			"  ready: dnsmasq leased VM_IP (and, with READY_TCP_PORT, the guest accepts on that port)\n"+
			"  live:  QEMU answers query-status on $BERTH_RUN_DIR/qmp.sock")
		return stage.ExitBadInput
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var msg string
	var err error
	runDir := env.RunDir()
	if args[0] == "live" {
		msg, err = Live(ctx, filepath.Join(runDir, stage.QMPSocketName))
	} else {
		var ip netip.Addr
		var port int
		ip, port, err = readyEnv(env)
		if err == nil {
			msg, err = Ready(ctx, filepath.Join(runDir, stage.DnsmasqLeasesName), ip, port)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmm probe %s: %v\n", args[0], err)
		return stage.ExitCode(err)
	}
	fmt.Fprintf(stdout, "vmm probe %s: %s\n", args[0], msg)
	return stage.ExitOK
}

func readyEnv(env stage.Env) (netip.Addr, int, error) {
	s := env.String("VM_IP", "192.168.254.2")
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is4() {
		return ip, 0, stage.BadInput("VM_IP", s, "must be an IPv4 address")
	}
	port, err := env.Int("READY_TCP_PORT", 0, 1, 65535)
	return ip, port, err
}

// Live: QEMU runs and its QMP answers query-status.
func Live(ctx context.Context, sock string) (string, error) {
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		return "", err
	}
	defer c.Close()
	st, err := c.QueryStatus(ctx)
	if err != nil {
		return "", err
	}
	return "QEMU answers, status " + st.Status, nil
}

// Ready: the lease file lists ip, and (port > 0) ip:port accepts a TCP connection.
func Ready(ctx context.Context, leases string, ip netip.Addr, port int) (string, error) {
	mac, err := leased(leases, ip)
	if err != nil {
		return "", err
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
func leased(path string, ip netip.Addr) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no leases yet (%s does not exist)", path)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == ip.String() {
			return fields[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return "", fmt.Errorf("%s not leased yet (not in %s)", ip, path)
}
