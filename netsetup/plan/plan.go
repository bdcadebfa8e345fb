package plan

import (
	"fmt"
	"net/netip"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/netsetup/resolv"
)

// Link is what net-setup needs to know about one of the pod's interfaces.
type Link struct {
	Name     string
	Kind     string // netlink's link type: "bridge", "tuntap", "veth", "macvlan", "device" (loopback, a NIC)...
	Alias    string // IFLA_IFALIAS: stage.BridgeAlias or stage.TapAlias on the links net-setup made
	Loopback bool
	MTU      int
	Addrs    []netip.Prefix // IPv4 and IPv6, as configured
}

// Kinds of the links net-setup makes, as Link.Kind names them.
const (
	KindBridge = "bridge"
	KindTap    = "tuntap"
)

// IsBerthBridge reports whether l is a bridge net-setup made.
func (l Link) IsBerthBridge() bool { return l.Kind == KindBridge && l.Alias == stage.BridgeAlias }

// IsBerthTap reports whether l is a tun device net-setup made (maybe of the
// wrong shape, which net-setup may re-make).
func (l Link) IsBerthTap() bool { return l.Kind == KindTap && l.Alias == stage.TapAlias }

// MaxMTU is the largest MTU a bridge or a tap takes (ETH_MAX_MTU).
const MaxMTU = 65535

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
	// MetricsPort is vmm's metrics port, kept in the pod (0: none).
	MetricsPort int `json:"metricsPort,omitempty"`
	// Nameservers and Search are what the VM gets from dnsmasq.
	Nameservers []netip.Addr `json:"nameservers"`
	Search      []string     `json:"search"`
	Backend     string       `json:"iptablesBackend,omitempty"`
	Rules       []string     `json:"rules,omitempty"`
}

// Build combines the configuration, the pod's facts and its resolv.conf into
// the plan. Everything about the pod's links is checked here, before anything
// changes: the pod interface is a real, non-loopback interface with a global
// IPv4 address; BRIDGE and TAP are not it and, when they exist already, are
// links net-setup made (their ifalias says so). Errors are bad input (exit 2).
func Build(c Config, f Facts, r resolv.Config) (Plan, error) {
	links := map[string]*Link{}
	var names []string
	for i := range f.Links {
		names = append(names, f.Links[i].Name)
		links[f.Links[i].Name] = &f.Links[i]
	}
	iface, from := c.PodIface, ""
	if iface == "" {
		for _, rt := range f.Routes {
			if rt.Dst.Bits() == 0 && rt.Link != "" {
				iface = rt.Link
				break
			}
		}
		if iface == "" {
			return Plan{}, stage.BadInput("POD_IFACE", "", "is unset and the pod has no IPv4 default route: set it to the interface whose address the VM takes over")
		}
		from = " (POD_IFACE is unset: this is the default route's interface)"
		switch iface {
		case c.Bridge:
			return Plan{}, stage.BadInputf("BRIDGE", c.Bridge, "is the pod's own interface (it has the default route): choose another name; net-setup never touches the pod's interface")
		case c.Tap:
			return Plan{}, stage.BadInputf("TAP", c.Tap, "is the pod's own interface (it has the default route): choose another name; net-setup never touches the pod's interface")
		}
	}
	link := links[iface]
	if link == nil {
		return Plan{}, stage.BadInputf("POD_IFACE", iface, "no such interface in the pod (it has %v)%s", names, from)
	}
	if link.Loopback {
		return Plan{}, stage.BadInputf("POD_IFACE", iface, "is the loopback interface: must be the pod's network interface (it has %v)%s", names, from)
	}
	if link.IsBerthBridge() || link.IsBerthTap() {
		return Plan{}, stage.BadInputf("POD_IFACE", iface, "is a link net-setup made (ifalias %q), not the pod's interface%s", link.Alias, from)
	}
	var pod netip.Prefix
	for _, a := range link.Addrs {
		if IsGlobal4(a.Addr()) {
			pod = a
			break
		}
	}
	if !pod.IsValid() {
		return Plan{}, stage.BadInputf("POD_IFACE", iface, "has no global IPv4 address to hand to the VM (it has %v; IPv6-only pods are not supported)%s", link.Addrs, from)
	}
	if mtu := link.MTU; mtu < 576 || mtu > MaxMTU {
		return Plan{}, stage.BadInputf("POD_IFACE", iface, "has MTU %d: the VM's bridge and tap take 576 (IPv4's minimum) to %d%s", mtu, MaxMTU, from)
	}
	for _, own := range []struct {
		name, value string
		ours        func(Link) bool
		what        string
	}{
		{"BRIDGE", c.Bridge, Link.IsBerthBridge, "a bridge with ifalias " + fmt.Sprintf("%q", stage.BridgeAlias)},
		{"TAP", c.Tap, Link.IsBerthTap, "a tap with ifalias " + fmt.Sprintf("%q", stage.TapAlias)},
	} {
		l := links[own.value]
		if l == nil || own.ours(*l) {
			continue
		}
		return Plan{}, stage.BadInputf(own.name, own.value, "names an existing link that net-setup did not make (%s): net-setup changes only its own links (%s); choose a name the pod does not use",
			describe(*l), own.what)
	}
	if err := checkOverlap(c, pod, f); err != nil {
		return Plan{}, err
	}
	return Plan{
		PodIface: iface, PodIP: pod.Addr(), PodPrefix: pod, MTU: link.MTU,
		VMIP: c.VMIP, VMGW: c.VMGW, Subnet: c.Subnet,
		Bridge: c.Bridge, Tap: c.Tap, TapUID: c.TapUID, TapGID: c.TapGID, NoVNC: c.NoVNC, MetricsPort: c.MetricsPort,
		Nameservers: r.Nameservers, Search: r.Search,
	}, nil
}

// IsGlobal4 reports whether a is an IPv4 address a VM can take over: not
// loopback, link-local, multicast or unspecified.
func IsGlobal4(a netip.Addr) bool { return stage.IsHostIPv4(a) }

// describe names a link for a refusal: its kind and its ifalias.
func describe(l Link) string {
	kind := l.Kind
	if l.Loopback {
		kind = "loopback"
	}
	if kind == "" {
		kind = "unknown kind"
	}
	if l.Alias == "" {
		return kind + ", no ifalias"
	}
	return fmt.Sprintf("%s, ifalias %q", kind, l.Alias)
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
