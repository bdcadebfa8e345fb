package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"

	"github.com/berth-vm/berth/netsetup/dnsmasq"
	"github.com/berth-vm/berth/netsetup/plan"
	"github.com/berth-vm/berth/netsetup/rules"
)

// NetJSONName is the plan as applied, in the run dir.
const NetJSONName = stage.NetJSONName

// DevTun is the tun device of a container that has one.
const DevTun = "/dev/net/tun"

// Outputs are the rendered artifacts of a plan.
type Outputs struct {
	Plan    plan.Plan
	Rules   rules.Set
	Dnsmasq []byte
	NetJSON []byte
}

// Render renders everything net-setup writes, for the plan and backend.
func Render(p plan.Plan, backend string, runDir string) (Outputs, error) {
	set := rules.Build(p)
	p.Backend = backend
	p.Rules = set.Lines()
	conf, err := dnsmasq.Render(p, runDir)
	if err != nil {
		return Outputs{}, err
	}
	js, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return Outputs{}, fmt.Errorf("encode net.json: %w", err)
	}
	return Outputs{Plan: p, Rules: set, Dnsmasq: conf, NetJSON: append(js, '\n')}, nil
}

// Apply builds the plan in the current network namespace. Each step is
// idempotent; net.json is written last, so its presence means a full run.
// The caller runs Preflight first (setup.Run does): whatever it refuses,
// nothing has changed.
func Apply(ctx context.Context, log *slog.Logger, o Outputs, b Backend, runDir string) error {
	p := o.Plan
	if err := EnsureIPForward(IPForwardPath); err != nil {
		return err
	}
	if err := DisableBridgeNF(BridgeNFPath); errors.Is(err, ErrBridgeNFReadOnly) {
		log.Warn(err.Error())
	} else if err != nil {
		return err
	}
	node := filepath.Join(runDir, TunNodeName)
	if err := EnsureTunNode(node, p.TapUID, p.TapGID); err != nil {
		return err
	}
	tunPath := DevTun
	if _, err := os.Stat(DevTun); err != nil {
		tunPath = node
	}
	br, err := EnsureBridge(p)
	if err != nil {
		return err
	}
	if err := EnsureTap(p, br, tunPath); err != nil {
		return err
	}
	log.Info("links ready", "bridge", p.Bridge, "gateway", netip.PrefixFrom(p.VMGW, p.Subnet.Bits()), "tap", p.Tap,
		"owner", fmt.Sprintf("%d:%d", p.TapUID, p.TapGID), "mtu", p.MTU, "tunNode", node)
	if err := ApplyRules(ctx, b, o.Rules); err != nil {
		return err
	}
	log.Info("rules ready", "backend", b.Name, "podIP", p.PodIP, "vmIP", p.VMIP, "vncStaysInPod", !p.NoVNC)
	for _, f := range []struct {
		name string
		data []byte
	}{{dnsmasq.ConfName, o.Dnsmasq}, {NetJSONName, o.NetJSON}} {
		if err := WriteFileAtomic(filepath.Join(runDir, f.name), f.data, 0o644); err != nil {
			return err
		}
	}
	log.Info("wrote sidecar config", "dnsmasqConf", filepath.Join(runDir, dnsmasq.ConfName), "plan", filepath.Join(runDir, NetJSONName))
	return nil
}

// runFiles are the files net-setup writes in the run dir besides the tun node.
var runFiles = []string{dnsmasq.ConfName, NetJSONName}

// MaxRunFile bounds what net-setup reads back of its own files in the run dir
// (a few KiB when net-setup wrote them).
const MaxRunFile = 1 << 20

// Preflight is the validation that needs the live system, done before the
// first change: the run dir is a directory (or absent); dnsmasq.conf and
// net.json are absent or regular files, the tun node absent or the tun device
// (nothing in the run volume is followed through a symlink, a FIFO is never
// opened); the rendered dnsmasq.conf passes `dnsmasq --test`. Anything planted
// in the run dir is bad input naming BERTH_RUN_DIR, and is left as it is.
func Preflight(ctx context.Context, log *slog.Logger, o Outputs, runDir string) error {
	if err := stage.CheckVolumeDir("BERTH_RUN_DIR", runDir); err != nil {
		return err
	}
	for _, name := range runFiles {
		// net-setup's own files, written by its uid: a file of another user
		// there (planted by a container of the pod) is refused, not replaced.
		if err := fsutil.CheckOwnFileOf(filepath.Join(runDir, name), os.Geteuid()); err != nil {
			return runDirError(runDir, err)
		}
	}
	if err := CheckTunNode(filepath.Join(runDir, TunNodeName)); err != nil {
		return runDirError(runDir, err)
	}
	return validateDnsmasq(ctx, log, o.Dnsmasq)
}

// runDirError makes a refusal of something planted in the run dir bad input.
func runDirError(runDir string, err error) error {
	if errors.Is(err, fsutil.ErrNotOwnFile) {
		return stage.BadInput("BERTH_RUN_DIR", runDir, err.Error())
	}
	return err
}

// validateDnsmasq runs `dnsmasq --test` on the config, given on stdin (no
// temporary file in the run volume), when dnsmasq is installed here (it is in
// net-setup's image and in the tests).
func validateDnsmasq(ctx context.Context, log *slog.Logger, conf []byte) error {
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		log.Warn("dnsmasq is not installed here: dnsmasq.conf not validated with dnsmasq --test")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--test", "--conf-file=-")
	cmd.Stdin = bytes.NewReader(conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("dnsmasq --test refused the rendered config: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// readOwn reads one of net-setup's files in the run dir without following a
// symlink or blocking on a FIFO (fsutil.Open), at most MaxRunFile bytes; a
// missing file is nil, nil.
func readOwn(path string) ([]byte, error) {
	f, err := fsutil.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxRunFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxRunFile {
		return nil, fmt.Errorf("read %s: larger than %d bytes: not a file net-setup wrote", path, MaxRunFile)
	}
	return b, nil
}

// WriteFileAtomic writes data to path through a temp file, fsync and rename
// (common/fsutil), and leaves an identical file alone.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	if old, err := readOwn(path); err == nil && old != nil && bytes.Equal(old, data) {
		return nil
	}
	return fsutil.WriteFileAtomic(path, data, mode)
}

// Check compares the live namespace with the plan and returns every
// difference; none means --check passes.
func Check(o Outputs, b Backend, runDir string) ([]string, error) {
	p := o.Plan
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }

	if on, err := readSysctlBool(IPForwardPath); err != nil {
		return nil, err
	} else if !on {
		add("net.ipv4.ip_forward is 0")
	}
	if on, err := readSysctlBool(BridgeNFPath); err == nil && on {
		add("net.bridge.bridge-nf-call-iptables is 1: the VM cannot reach its own pod IP")
	}
	br, err := netlink.LinkByName(p.Bridge)
	switch {
	case err != nil:
		add("bridge %s is missing", p.Bridge)
	case br.Type() != "bridge":
		add("%s is a %s, not a bridge", p.Bridge, br.Type())
	default:
		a := br.Attrs()
		if a.Flags&net.FlagUp == 0 { // administratively: a bridge without a live port has no carrier
			add("bridge %s is down", p.Bridge)
		}
		if a.MTU != p.MTU {
			add("bridge %s has MTU %d, want %d", p.Bridge, a.MTU, p.MTU)
		}
		addrs, err := retryDump("addresses of "+p.Bridge, func() ([]netlink.Addr, error) { return netlink.AddrList(br, netlink.FAMILY_V4) })
		if err != nil {
			return nil, err
		}
		want := netip.PrefixFrom(p.VMGW, p.Subnet.Bits())
		if len(addrs) != 1 {
			add("bridge %s has %d IPv4 addresses, want only %s", p.Bridge, len(addrs), want)
		} else if got, _ := prefixOf(addrs[0]); got != want {
			add("bridge %s has %s, want %s", p.Bridge, got, want)
		}
		if on, err := txChecksum(p.Bridge); err != nil {
			return nil, err
		} else if on {
			add("bridge %s has TX checksum offload on", p.Bridge)
		}
	}
	tap, err := netlink.LinkByName(p.Tap)
	if err != nil {
		add("tap %s is missing", p.Tap)
	} else {
		t, ok := tap.(*netlink.Tuntap)
		switch {
		case !ok || t.Mode != netlink.TUNTAP_MODE_TAP:
			add("%s is a %s, not a tap", p.Tap, tap.Type())
		default:
			if int(t.Owner) != p.TapUID || int(t.Group) != p.TapGID {
				add("tap %s is owned by %d:%d, want %d:%d", p.Tap, t.Owner, t.Group, p.TapUID, p.TapGID)
			}
			if t.NonPersist {
				add("tap %s is not persistent", p.Tap)
			}
		}
		a := tap.Attrs()
		if br != nil && a.MasterIndex != br.Attrs().Index {
			add("tap %s is not attached to %s", p.Tap, p.Bridge)
		}
		if a.Flags&net.FlagUp == 0 {
			add("tap %s is down", p.Tap)
		}
		if a.MTU != p.MTU {
			add("tap %s has MTU %d, want %d", p.Tap, a.MTU, p.MTU)
		}
	}
	rd, err := CheckRules(b, o.Rules)
	if err != nil {
		return nil, err
	}
	diffs = append(diffs, rd...)
	for _, f := range []struct {
		name string
		data []byte
	}{{dnsmasq.ConfName, o.Dnsmasq}, {NetJSONName, o.NetJSON}} {
		path := filepath.Join(runDir, f.name)
		got, err := readOwn(path)
		switch {
		case errors.Is(err, fsutil.ErrNotOwnFile):
			add("%v", err)
		case err != nil:
			return nil, err
		case got == nil:
			add("%s is missing", path)
		case !bytes.Equal(got, f.data):
			add("%s differs from the plan", path)
		}
	}
	node := filepath.Join(runDir, TunNodeName)
	if err := CheckTunNode(node); err != nil {
		add("%v", err)
	} else if _, err := os.Lstat(node); err != nil {
		add("tun node %s is missing", node)
	}
	return diffs, nil
}
