package apply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sysctl is one boolean sysctl of the pod's network namespace that the plan
// needs at a value.
type sysctl struct {
	name string // net.ipv4.ip_forward
	path string // under /proc/sys
	want bool
	why  string // what the wrong value breaks, for --check ("" when obvious)
	// optional: a missing sysctl is fine (its module is not loaded).
	optional bool
	// readOnly says what a read-only /proc/sys means: the error Apply
	// fails with, or, with warnOnly, the warning it logs before going on.
	readOnly string
	warnOnly bool
}

// IPForwardPath is the sysctl that must be 1 for the NAT to forward.
const IPForwardPath = "/proc/sys/net/ipv4/ip_forward"

// ipForward: net.ipv4.ip_forward=1 in this netns, set unless it already is (a
// pod sysctl may have set it while /proc/sys stays read-only).
func ipForward() sysctl {
	return sysctl{
		name: "net.ipv4.ip_forward", path: IPForwardPath, want: true,
		readOnly: "/proc/sys is read-only in this container; " +
			"run net-setup with securityContext.privileged: true (the chart's default), or set the pod's " +
			"securityContext.sysctls net.ipv4.ip_forward=1 with the kubelet flag --allowed-unsafe-sysctls=net.ipv4.ip_forward",
	}
}

// BridgeNFPath is br_netfilter's switch for this netns; it exists only when
// the node has loaded br_netfilter (most Kubernetes nodes have).
const BridgeNFPath = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// bridgeNF: iptables off for bridged frames in this netns. With br_netfilter
// on, the hairpin DNAT happens at the bridge, which then sends the VM's own
// packet straight back to it, unanswerable; with it off the packet is routed,
// DNATed and SNATed as planned. Only the pod's netns is touched. Read-only, it
// is a warning: everything works but the hairpin.
func bridgeNF() sysctl {
	return sysctl{
		name: "net.bridge.bridge-nf-call-iptables", path: BridgeNFPath, want: false,
		why: "the VM cannot reach its own pod IP", optional: true, warnOnly: true,
		readOnly: "net.bridge.bridge-nf-call-iptables is 1 and /proc/sys is read-only: " +
			"the VM cannot reach its own pod IP (hairpin); run net-setup privileged to fix it",
	}
}

func (s sysctl) differs() (string, error) {
	on, err := readSysctlBool(s.path)
	if s.optional && errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil || on == s.want {
		return "", err
	}
	d := fmt.Sprintf("%s is %d", s.name, boolInt(on))
	if s.why != "" {
		d += ": " + s.why
	}
	return d, nil
}

func (s sysctl) diff() ([]string, error) {
	return diffs([]property{{differs: s.differs}})
}

func (s sysctl) ensure(_ context.Context, log *slog.Logger) error {
	return repair([]property{{differs: s.differs, fix: func() error {
		err := os.WriteFile(s.path, []byte(strconv.Itoa(boolInt(s.want))+"\n"), 0o644)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
			if s.warnOnly {
				log.Warn(s.readOnly)
				return nil
			}
			return fmt.Errorf("set %s=%d: %w: %s", s.name, boolInt(s.want), err, s.readOnly)
		}
		return fmt.Errorf("set %s=%d: %w", s.name, boolInt(s.want), err)
	}}})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func readSysctlBool(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return false, fmt.Errorf("read %s: %q is not a number", path, b)
	}
	return n != 0, nil
}
