package tap

import (
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/berth-vm/berth/common/stage"
)

// TestProblems: every way a link can differ from net-setup's tap is named;
// net-setup's tap has none.
func TestProblems(t *testing.T) {
	me := Owner{UID: 65534, GIDs: []uint32{65534, 107}}
	good := func() *netlink.Tuntap {
		return &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "tap0", Alias: stage.TapAlias, Flags: net.FlagUp, MasterIndex: 2},
			Mode: netlink.TUNTAP_MODE_TAP, Owner: 65534, Group: 65534}
	}
	bridge := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0", Alias: stage.BridgeAlias}}
	with := func(f func(*netlink.Tuntap)) *netlink.Tuntap { l := good(); f(l); return l }
	tests := []struct {
		name   string
		link   netlink.Link
		master netlink.Link
		want   []string // substrings, one problem each; nil: none
	}{
		{"net-setup's tap", good(), bridge, nil},
		{"group unset", with(func(l *netlink.Tuntap) { l.Group = noOwner }), bridge, nil},
		{"supplementary group", with(func(l *netlink.Tuntap) { l.Group = 107 }), bridge, nil},
		{"veth", &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tap0"}}, nil, []string{"is a veth, not a tap"}},
		{"dummy", &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "tap0"}}, nil, []string{"is a dummy, not a tap"}},
		{"bridge", &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "tap0"}}, nil, []string{"is a bridge, not a tap"}},
		{"tun", with(func(l *netlink.Tuntap) { l.Mode = netlink.TUNTAP_MODE_TUN }), bridge, []string{"tun (IP-level)"}},
		{"no alias", with(func(l *netlink.Tuntap) { l.Alias = "" }), bridge, []string{`ifalias is ""`}},
		{"other alias", with(func(l *netlink.Tuntap) { l.Alias = "cni" }), bridge, []string{`ifalias is "cni"`}},
		{"transient", with(func(l *netlink.Tuntap) { l.NonPersist = true }), bridge, []string{"not persistent"}},
		{"no owner", with(func(l *netlink.Tuntap) { l.Owner = noOwner }), bridge, []string{"has no owner"}},
		{"root's", with(func(l *netlink.Tuntap) { l.Owner = 0 }), bridge, []string{"owned by uid 0, vmm runs as uid 65534"}},
		{"other group", with(func(l *netlink.Tuntap) { l.Group = 5 }), bridge, []string{"has group 5"}},
		{"no bridge", good(), nil, []string{"on no bridge"}},
		{"master not a bridge", good(), &netlink.Bond{LinkAttrs: netlink.LinkAttrs{Name: "bond0"}}, []string{"enslaved to bond0, a bond"}},
		{"someone else's bridge", good(), &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "cni0"}}, []string{"bridge cni0 whose ifalias"}},
		{"down", with(func(l *netlink.Tuntap) { l.LinkAttrs.Flags = 0 }), bridge, []string{"is down"}},
		{"everything", with(func(l *netlink.Tuntap) { l.Alias, l.NonPersist, l.Owner, l.LinkAttrs.Flags = "", true, 0, 0 }), nil,
			[]string{"ifalias", "persistent", "owned by", "no bridge", "down"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Problems(tt.link, tt.master, me)
			if len(got) != len(tt.want) {
				t.Fatalf("problems %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
