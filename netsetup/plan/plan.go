package plan

import (
	"fmt"
	"net/netip"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/netsetup/resolv"
)

// Link is what net-setup needs to know about one of the pod's interfaces.
type Link struct {
	Name  string
	MTU   int
	Addrs []netip.Prefix // IPv4 and IPv6, as configured
}

// Route is one IPv4 route of the pod's main table.
type Route struct {
	Dst  netip.Prefix // 0.0.0.0/0 for the default route
	Link string
}

// Facts is the pod's network as net-setup found it before changing anything.
type Facts struct {
	Links  []Link
	Routes []Route
}

// Plan is everything net-setup builds; net.json is this, as JSON.
type Plan struct {
	PodIface  string       `json:"podIface"`
	PodIP     netip.Addr   `json:"podIP"`
	PodPrefix netip.Prefix `json:"podPrefix"`
	MTU       int          `json:"mtu"`
	VMIP      netip.Addr   `json:"vmIP"`
	VMGW      netip.Addr   `json:"vmGW"`
	Subnet    netip.Prefix `json:"subnet"`
	Bridge    string       `json:"bridge"`
	Tap       string       `json:"tap"`
	TapUID    int          `json:"tapUID"`
	TapGID    int          `json:"tapGID"`
	NoVNC     bool         `json:"noVNC"`
	// Nameservers and Search are what the VM gets from dnsmasq.
	Nameservers []netip.Addr `json:"nameservers"`
	Search      []string     `json:"search"`
	Backend     string       `json:"iptablesBackend,omitempty"`
	Rules       []string     `json:"rules,omitempty"`
}

// Build combines the configuration, the pod's facts and its resolv.conf into
// the plan. Errors about the configuration are bad input (exit 2).
func Build(c Config, f Facts, r resolv.Config) (Plan, error) {
	iface := c.PodIface
	if iface == "" {
		for _, rt := range f.Routes {
			if rt.Dst.Bits() == 0 && rt.Link != "" && rt.Link != c.Bridge {
				iface = rt.Link
				break
			}
		}
		if iface == "" {
			return Plan{}, fmt.Errorf("the pod has no IPv4 default route: set POD_IFACE to the interface whose address the VM takes over")
		}
	}
	var link *Link
	var names []string
	for i := range f.Links {
		names = append(names, f.Links[i].Name)
		if f.Links[i].Name == iface {
			link = &f.Links[i]
		}
	}
	if link == nil {
		return Plan{}, stage.BadInputf("POD_IFACE", iface, "no such interface in the pod (it has %v)", names)
	}
	var pod netip.Prefix
	for _, a := range link.Addrs {
		if a.Addr().Is4() && !a.Addr().IsLinkLocalUnicast() {
			pod = a
			break
		}
	}
	if !pod.IsValid() {
		return Plan{}, fmt.Errorf("interface %s has no IPv4 address to hand to the VM (IPv6-only pods are not supported)", iface)
	}
	if err := checkOverlap(c, pod, f); err != nil {
		return Plan{}, err
	}
	mtu := link.MTU
	if mtu < 576 {
		return Plan{}, fmt.Errorf("interface %s has MTU %d, below IPv4's 576", iface, mtu)
	}
	return Plan{
		PodIface: iface, PodIP: pod.Addr(), PodPrefix: pod, MTU: mtu,
		VMIP: c.VMIP, VMGW: c.VMGW, Subnet: c.Subnet,
		Bridge: c.Bridge, Tap: c.Tap, TapUID: c.TapUID, TapGID: c.TapGID, NoVNC: c.NoVNC,
		Nameservers: r.Nameservers, Search: r.Search,
	}, nil
}

// checkOverlap refuses a VM subnet that collides with the pod's own address
// or any route the pod has (except the bridge's own, from an earlier run).
func checkOverlap(c Config, pod netip.Prefix, f Facts) error {
	if c.Subnet.Overlaps(pod) {
		return stage.BadInputf("VM_IP", c.VMIP.String(), "its /30 %s overlaps the pod's address %s: choose another /30", c.Subnet, pod)
	}
	for _, rt := range f.Routes {
		if rt.Dst.Bits() == 0 || rt.Link == c.Bridge {
			continue
		}
		if c.Subnet.Overlaps(rt.Dst) {
			return stage.BadInputf("VM_IP", c.VMIP.String(), "its /30 %s overlaps the pod's route to %s via %s: choose another /30", c.Subnet, rt.Dst, rt.Link)
		}
	}
	return nil
}
