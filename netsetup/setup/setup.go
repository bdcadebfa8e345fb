// Package setup is net-setup's stage: environment → plan → print, check or
// apply (stage.Drive). cmd/net-setup only hands Stage to stage.Main.
package setup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/netsetup/apply"
	"github.com/berth-vm/berth/netsetup/plan"
	"github.com/berth-vm/berth/netsetup/resolv"
)

// Stage is net-setup: its -h, and the plan it makes from the environment and
// the pod's live network.
func Stage() stage.Stage {
	return stage.Stage{
		Spec: stage.Spec{
			Name: "net-setup",
			Summary: "Builds the VM's network inside the pod's network namespace (docs/design.md): bridge BRIDGE " +
				"with VM_GW/30, persistent tap TAP owned by TAP_UID, NAT of the pod IP to VM_IP (all but TCP 5900 " +
				"unless NO_VNC, and TCP METRICS_PORT when set), $BERTH_RUN_DIR/dnsmasq.conf and net.json. --dry-run prints the plan; --check " +
				"exits 0 only when the live state matches it.",
			Vars: plan.Vars(),
		},
		Plan: makePlan,
	}
}

// netPlan is net-setup's plan: what it renders, for which iptables backend
// and run dir. It is a stage.Plan.
type netPlan struct {
	out     apply.Outputs
	backend apply.Backend
	runDir  string
}

// makePlan reads the environment, the pod's resolv.conf and its links and
// routes, and decides everything; nothing changes. Before an apply it also
// runs the preflight validation that needs the live system (the run dir's
// contents, dnsmasq --test), so bad input is found before the first change.
func makePlan(r stage.Run) (stage.Plan, error) {
	cfg, err := plan.FromEnv(r.Env)
	if err != nil {
		return nil, err
	}
	rc, err := readResolv(cfg.Resolv)
	if err != nil {
		return nil, err
	}
	for _, d := range rc.Dropped {
		r.Log.Warn("left out of the VM's DNS settings", "from", cfg.Resolv, "entry", d)
	}
	facts, err := apply.ReadFacts()
	if err != nil {
		return nil, err
	}
	p, err := plan.Build(cfg, facts, rc)
	if err != nil {
		return nil, err
	}
	backend, err := apply.DetectBackend(r.Ctx, cfg.Backend)
	if err != nil {
		return nil, err
	}
	out, err := apply.Render(p, backend.Name, cfg.RunDir)
	if err != nil {
		return nil, err
	}
	if !r.DryRun && !r.Check {
		// The last validation, before the first change (and before the plan
		// is logged: bad input is one line).
		if err := apply.Preflight(r.Ctx, r.Log, out, cfg.RunDir); err != nil {
			return nil, err
		}
	}
	r.Log.Info("plan", "podIface", p.PodIface, "podIP", p.PodIP, "mtu", p.MTU, "vmIP", p.VMIP, "vmGW", p.VMGW,
		"bridge", p.Bridge, "tap", p.Tap, "noVNC", p.NoVNC, "nameservers", p.Nameservers, "search", p.Search,
		"iptables", backend.Cmd)
	return netPlan{out: out, backend: backend, runDir: cfg.RunDir}, nil
}

// Check returns what differs between the live network and run volume and the
// plan, one line per property of a resource.
func (n netPlan) Check(stage.Run) ([]string, error) { return apply.Check(n.out, n.backend, n.runDir) }

// Apply builds the plan; a second Apply changes nothing.
func (n netPlan) Apply(r stage.Run) error {
	return apply.Apply(r.Ctx, r.Log, n.out, n.backend, n.runDir)
}

// MaxResolvConf bounds how much of RESOLV_CONF is read: a pod's resolv.conf
// is a few hundred bytes (glibc uses at most 3 nameservers and 6 search domains).
const MaxResolvConf = 64 << 10

// readResolv reads the pod's resolv.conf. It may be a symlink (it is on many
// hosts) but must end at a regular file: a directory, a FIFO (which would
// block), a device or a file over MaxResolvConf is bad input naming RESOLV_CONF,
// and so is a missing file (a pod always has one: the path is wrong).
func readResolv(path string) (resolv.Config, error) {
	bad := func(format string, args ...any) error { return stage.BadInputf("RESOLV_CONF", path, format, args...) }
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return resolv.Config{}, bad("must be the pod's resolv.conf (file not found)")
	case err != nil:
		return resolv.Config{}, fmt.Errorf("RESOLV_CONF: %w", err)
	case !fi.Mode().IsRegular():
		return resolv.Config{}, bad("must be the pod's resolv.conf, a regular file (it is %s)", fsutil.Describe(fi.Mode()))
	}
	// O_NONBLOCK: should a FIFO be swapped in after the Stat, the open does
	// not wait for a writer; the type is checked again on the descriptor.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return resolv.Config{}, fmt.Errorf("RESOLV_CONF: %w", err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return resolv.Config{}, fmt.Errorf("RESOLV_CONF: %w", err)
	} else if !fi.Mode().IsRegular() {
		return resolv.Config{}, bad("must be the pod's resolv.conf, a regular file (it is %s)", fsutil.Describe(fi.Mode()))
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxResolvConf+1))
	if err != nil {
		return resolv.Config{}, fmt.Errorf("RESOLV_CONF: read %s: %w", path, err)
	}
	if len(b) > MaxResolvConf {
		return resolv.Config{}, bad("must be the pod's resolv.conf, at most %d bytes", MaxResolvConf)
	}
	return resolv.Parse(bytes.NewReader(b))
}

// Print writes the plan for --dry-run: net.json, dnsmasq.conf, the
// iptables-restore input of each table and the links.
func (n netPlan) Print(w io.Writer) error {
	o, runDir := n.out, n.runDir
	var b strings.Builder
	fmt.Fprintf(&b, "# net-setup --dry-run: nothing was changed.\n# %s/%s:\n%s\n", runDir, apply.NetJSONName, o.NetJSON)
	fmt.Fprintf(&b, "# %s/dnsmasq.conf:\n%s\n", runDir, o.Dnsmasq)
	for _, t := range o.Rules.Tables() {
		fmt.Fprintf(&b, "# iptables-restore --noflush (%s):\n%s\n", t, o.Rules.Restore(t))
	}
	fmt.Fprintf(&b, "# links: bridge %s %s/%d mtu %d; tap %s owner %d:%d mtu %d; tun node %s/tun; net.ipv4.ip_forward=1\n",
		o.Plan.Bridge, o.Plan.VMGW, o.Plan.Subnet.Bits(), o.Plan.MTU, o.Plan.Tap, o.Plan.TapUID, o.Plan.TapGID, o.Plan.MTU, runDir)
	_, err := io.WriteString(w, b.String())
	return err
}
