package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"

	"github.com/berth-vm/berth/netsetup/dnsmasq"
	"github.com/berth-vm/berth/netsetup/plan"
	"github.com/berth-vm/berth/netsetup/rules"
)

// NetJSONName is the plan as applied, in the run dir.
const NetJSONName = stage.NetJSONName

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

// A step is a group of resources Apply ensures in order, and what it logs
// when they are ready.
type step struct {
	resources []resource
	ready     func(log *slog.Logger)
}

// steps are what net-setup owns, in the order Apply ensures it: the links
// (with the sysctls and the tun node they need), the iptables chains, the run
// volume's files.
func steps(o Outputs, b Backend, runDir string) []step {
	p := o.Plan
	node := filepath.Join(runDir, TunNodeName)
	return []step{
		{
			resources: []resource{ipForward(), bridgeNF(), tunNode{path: node, uid: p.TapUID, gid: p.TapGID},
				bridge{plan: p}, tap{plan: p, tunNode: node}},
			ready: func(log *slog.Logger) {
				log.Info("links ready", "bridge", p.Bridge, "gateway", netip.PrefixFrom(p.VMGW, p.Subnet.Bits()), "tap", p.Tap,
					"owner", fmt.Sprintf("%d:%d", p.TapUID, p.TapGID), "mtu", p.MTU, "tunNode", node)
			},
		},
		{
			resources: chainSets(b, o.Rules),
			ready: func(log *slog.Logger) {
				log.Info("rules ready", "backend", b.Name, "podIP", p.PodIP, "vmIP", p.VMIP, "vncStaysInPod", !p.NoVNC)
			},
		},
		{
			resources: runFiles(o, runDir),
			ready: func(log *slog.Logger) {
				log.Info("wrote sidecar config", "dnsmasqConf", filepath.Join(runDir, dnsmasq.ConfName), "plan", filepath.Join(runDir, NetJSONName))
			},
		},
	}
}

// Apply builds the plan in the current network namespace: it ensures each
// resource in order, each fixing only what differs, so a second Apply
// changes nothing; net.json is written last, so its presence means a full
// run. The caller runs Preflight first (setup's plan does): whatever it
// refuses, nothing has changed.
func Apply(ctx context.Context, log *slog.Logger, o Outputs, b Backend, runDir string) error {
	for _, s := range steps(o, b, runDir) {
		for _, r := range s.resources {
			if err := r.ensure(ctx, log); err != nil {
				return err
			}
		}
		s.ready(log)
	}
	return nil
}

// Check compares the live namespace and run volume with the plan and returns
// every difference, resource by resource; none means --check passes.
func Check(o Outputs, b Backend, runDir string) ([]string, error) {
	var out []string
	for _, s := range steps(o, b, runDir) {
		for _, r := range s.resources {
			d, err := r.diff()
			if err != nil {
				return nil, err
			}
			out = append(out, d...)
		}
	}
	return out, nil
}

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
	for _, name := range []string{dnsmasq.ConfName, NetJSONName} {
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

// errTooLarge is a file in the run dir larger than net-setup writes: it
// differs from the plan, and Apply replaces it.
var errTooLarge = errors.New("not a file net-setup wrote")

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
		return nil, fmt.Errorf("read %s: larger than %d bytes: %w", path, MaxRunFile, errTooLarge)
	}
	return b, nil
}
