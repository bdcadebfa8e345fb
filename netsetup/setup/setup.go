// Package setup is net-setup's sequence: environment → plan → print, check or
// apply. cmd/net-setup only wires it to stage.Main.
package setup

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/netsetup/apply"
	"github.com/berth-vm/berth/netsetup/plan"
	"github.com/berth-vm/berth/netsetup/resolv"
)

// Run is net-setup's body.
func Run(r stage.Run) error {
	cfg, err := plan.ConfigFromEnv(r.Env)
	if err != nil {
		return err
	}
	rc, err := readResolv(cfg.Resolv)
	if err != nil {
		return err
	}
	for _, d := range rc.Dropped {
		r.Log.Warn("left out of the VM's DNS settings", "from", cfg.Resolv, "entry", d)
	}
	facts, err := apply.ReadFacts()
	if err != nil {
		return err
	}
	p, err := plan.Build(cfg, facts, rc)
	if err != nil {
		return err
	}
	backend, err := apply.DetectBackend(r.Ctx, cfg.Backend)
	if err != nil {
		return err
	}
	out, err := apply.Render(p, backend.Name, cfg.RunDir)
	if err != nil {
		return err
	}
	r.Log.Info("plan", "podIface", p.PodIface, "podIP", p.PodIP, "mtu", p.MTU, "vmIP", p.VMIP, "vmGW", p.VMGW,
		"bridge", p.Bridge, "tap", p.Tap, "noVNC", p.NoVNC, "nameservers", p.Nameservers, "search", p.Search,
		"iptables", backend.Cmd)
	switch {
	case r.DryRun:
		return printPlan(r.Stdout, out, cfg.RunDir)
	case r.Check:
		diffs, err := apply.Check(out, backend, cfg.RunDir)
		if err != nil {
			return err
		}
		for _, d := range diffs {
			fmt.Fprintln(r.Stdout, "differs:", d)
		}
		if len(diffs) > 0 {
			return fmt.Errorf("live network differs from the plan in %d places", len(diffs))
		}
		fmt.Fprintln(r.Stdout, "net-setup: the live network matches the plan")
		return nil
	}
	return apply.Apply(r.Ctx, r.Log, out, backend, cfg.RunDir)
}

func readResolv(path string) (resolv.Config, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return resolv.Config{}, stage.BadInput("RESOLV_CONF", path, "must be the pod's resolv.conf (file not found)")
	}
	if err != nil {
		return resolv.Config{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	return resolv.Parse(f)
}

func printPlan(w io.Writer, o apply.Outputs, runDir string) error {
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
