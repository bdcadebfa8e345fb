// Package testplan builds the plan the golden tests of rules and dnsmasq
// render: a Calico-shaped pod's (the e2e tests run the bridge CNI's shape too,
// against the real binary).
package testplan

import (
	"net/netip"
	"strings"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/netsetup/plan"
	"github.com/berth-vm/berth/netsetup/resolv"
)

// ResolvConf is a Kubernetes pod's resolv.conf.
const ResolvConf = "search berth-test.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"

// Calico returns the plan for a Calico-shaped pod (10.244.7.5/32, MTU 1450).
func Calico(env map[string]string, resolvConf string) (plan.Plan, error) {
	return build(env, resolvConf, plan.Facts{
		Links: []plan.Link{{Name: "eth0", MTU: 1450, Addrs: []netip.Prefix{netip.MustParsePrefix("10.244.7.5/32")}}},
		Routes: []plan.Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Link: "eth0"},
			{Dst: netip.MustParsePrefix("169.254.1.1/32"), Link: "eth0"}},
	})
}

func build(env map[string]string, resolvConf string, f plan.Facts) (plan.Plan, error) {
	c, err := plan.FromEnv(stage.MapEnv(env))
	if err != nil {
		return plan.Plan{}, err
	}
	rc, err := resolv.Parse(strings.NewReader(resolvConf))
	if err != nil {
		return plan.Plan{}, err
	}
	return plan.Build(c, f, rc)
}
