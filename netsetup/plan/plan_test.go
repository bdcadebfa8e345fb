package plan

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/netsetup/resolv"
)

// Bad inputs tried, each must be exit 2 naming the variable: VM_IP/VM_GW not
// IPv4 (IPv6, garbage), loopback, link-local, multicast, not in one /30, equal,
// network or broadcast address; BRIDGE/TAP over 15 bytes, with '/', spaces,
// '=', ',' or a newline, equal to each other; POD_IFACE equal to BRIDGE;
// TAP_UID/TAP_GID not a number, negative, 2^32-1; NO_VNC not a boolean;
// METRICS_PORT VNC's 5900 or below 1024;
// IPTABLES_BACKEND unknown.
func TestFromEnvBadInput(t *testing.T) {
	tests := []struct {
		env  map[string]string
		name string // the variable the error must name
	}{
		{map[string]string{"VM_IP": "fd00::2"}, "VM_IP"},
		{map[string]string{"VM_IP": "192.168.254"}, "VM_IP"},
		{map[string]string{"VM_IP": "127.0.0.2", "VM_GW": "127.0.0.1"}, "VM_IP"},
		{map[string]string{"VM_IP": "169.254.0.2", "VM_GW": "169.254.0.1"}, "VM_IP"},
		{map[string]string{"VM_IP": "224.0.0.2", "VM_GW": "224.0.0.1"}, "VM_IP"},
		{map[string]string{"VM_GW": "10.0.0.1"}, "VM_GW"},
		{map[string]string{"VM_GW": "192.168.254.2"}, "VM_GW"},
		{map[string]string{"VM_GW": "192.168.254.3"}, "VM_GW"},
		{map[string]string{"VM_GW": "192.168.254.0"}, "VM_GW"},
		{map[string]string{"VM_IP": "192.168.254.3", "VM_GW": "192.168.254.2"}, "VM_IP"},
		{map[string]string{"VM_IP": "192.168.254.4", "VM_GW": "192.168.254.5"}, "VM_IP"},
		{map[string]string{"VM_GW": "x"}, "VM_GW"},
		{map[string]string{"BRIDGE": "a-very-long-bridge"}, "BRIDGE"},
		{map[string]string{"BRIDGE": "br/0"}, "BRIDGE"},
		{map[string]string{"TAP": "tap 0"}, "TAP"},
		{map[string]string{"TAP": "tap0\ninterface=eth0"}, "TAP"},
		{map[string]string{"TAP": "t=1"}, "TAP"},
		{map[string]string{"TAP": ".."}, "TAP"},
		{map[string]string{"TAP": "br0"}, "TAP"},
		{map[string]string{"POD_IFACE": "br0"}, "POD_IFACE"},
		{map[string]string{"POD_IFACE": "eth,0"}, "POD_IFACE"},
		{map[string]string{"TAP_UID": "qemu"}, "TAP_UID"},
		{map[string]string{"TAP_UID": "-1"}, "TAP_UID"},
		{map[string]string{"TAP_UID": "4294967295"}, "TAP_UID"},
		{map[string]string{"TAP_GID": "1.5"}, "TAP_GID"},
		{map[string]string{"NO_VNC": "maybe"}, "NO_VNC"},
		{map[string]string{"METRICS_PORT": "5900"}, "METRICS_PORT"},
		{map[string]string{"METRICS_PORT": "80"}, "METRICS_PORT"},
		{map[string]string{"IPTABLES_BACKEND": "ipfw"}, "IPTABLES_BACKEND"},
		// issue 15: injection- and path-shaped values of every variable.
		{map[string]string{"VM_IP": " 192.168.254.2"}, "VM_IP"},
		{map[string]string{"VM_IP": "192.168.254.2\n"}, "VM_IP"},
		{map[string]string{"VM_IP": "::ffff:192.168.254.2"}, "VM_IP"},
		{map[string]string{"VM_IP": "192.168.254.2/30"}, "VM_IP"},
		{map[string]string{"VM_IP": "0.0.0.2", "VM_GW": "0.0.0.1"}, "VM_IP"},
		{map[string]string{"VM_IP": "240.0.0.2", "VM_GW": "240.0.0.1"}, "VM_IP"},
		{map[string]string{"VM_GW": "１９２.168.254.1"}, "VM_GW"},
		{map[string]string{"TAP": "--"}, "TAP"},
		{map[string]string{"TAP": "-i"}, "TAP"},
		{map[string]string{"TAP": ".tap"}, "TAP"},
		{map[string]string{"TAP": "täp0"}, "TAP"},
		{map[string]string{"BRIDGE": "all"}, "BRIDGE"},
		{map[string]string{"BRIDGE": "default"}, "BRIDGE"},
		{map[string]string{"BRIDGE": "br0 "}, "BRIDGE"},
		{map[string]string{"BRIDGE": "br+"}, "BRIDGE"},
		{map[string]string{"POD_IFACE": "--"}, "POD_IFACE"},
		{map[string]string{"POD_IFACE": "eth0\n"}, "POD_IFACE"},
		{map[string]string{"POD_IFACE": "tap0"}, "TAP"},
		{map[string]string{"TAP_UID": "107\n--"}, "TAP_UID"},
		{map[string]string{"TAP_UID": "0x6b"}, "TAP_UID"},
		{map[string]string{"TAP_UID": "+107"}, "TAP_UID"},
		{map[string]string{"TAP_UID": "99999999999"}, "TAP_UID"},
		{map[string]string{"TAP_GID": "１０７"}, "TAP_GID"},
		{map[string]string{"IPTABLES_BACKEND": "nft "}, "IPTABLES_BACKEND"},
		{map[string]string{"IPTABLES_BACKEND": "NFT"}, "IPTABLES_BACKEND"},
		{map[string]string{"RESOLV_CONF": "resolv.conf"}, "RESOLV_CONF"},
		{map[string]string{"BERTH_RUN_DIR": "/run/a,b"}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "/run/a#b"}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "/run/a b"}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "/run/a\ndhcp-range=1"}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "/run/a=b"}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "/run/\"b\""}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "/run/bérth"}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "run/berth"}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "/"}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "/run/berth/"}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "/run//berth"}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "/run/../etc"}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "/run/./berth"}, "BERTH_RUN_DIR"},
		{map[string]string{"BERTH_RUN_DIR": "/" + strings.Repeat("r", MaxRunDirLen)}, "BERTH_RUN_DIR"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.env[tt.name], func(t *testing.T) {
			_, err := FromEnv(stage.MapEnv(tt.env))
			if !stage.IsBadInput(err) {
				t.Fatalf("err = %v, want a bad input", err)
			}
			if !strings.Contains(err.Error(), tt.name) {
				t.Fatalf("error %q does not name %s", err, tt.name)
			}
		})
	}
}

func TestFromEnvDefaults(t *testing.T) {
	c, err := FromEnv(stage.MapEnv(map[string]string{"TAP_UID": "65534"}))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		VMIP: netip.MustParseAddr(stage.DefaultVMIP), VMGW: netip.MustParseAddr(stage.DefaultVMGW),
		Subnet: netip.MustParsePrefix("192.168.254.0/30"), Bridge: "br0", Tap: "tap0",
		TapUID: 65534, TapGID: 65534, Resolv: "/etc/resolv.conf", Backend: "auto", RunDir: "/run/berth",
	}
	if c != want {
		t.Fatalf("config = %+v\nwant %+v", c, want)
	}
	// Swapped roles within the /30 are fine.
	if _, err := FromEnv(stage.MapEnv(map[string]string{"VM_IP": "10.9.0.1", "VM_GW": "10.9.0.2"})); err != nil {
		t.Fatal(err)
	}
	// The edges of what is allowed stay allowed.
	for _, env := range []map[string]string{
		{"BERTH_RUN_DIR": "/var/run/berth-1.x_Y"},
		{"BERTH_RUN_DIR": "/" + strings.Repeat("r", MaxRunDirLen-1)},
		{"TAP": "tap0.5", "BRIDGE": "B_r-0"},
		{"TAP": "0123456789abcde"},
		{"TAP_UID": "0", "TAP_GID": "4294967294"},
		{"RESOLV_CONF": "/run/pod,1/resolv.conf"}, // a comma is a path's: only the content reaches dnsmasq.conf
	} {
		if _, err := FromEnv(stage.MapEnv(env)); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
}

func calico() Facts {
	return Facts{
		Links: []Link{
			{Name: "lo", Kind: "device", Loopback: true, MTU: 65536, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
			{Name: "eth0", Kind: "veth", MTU: 1450, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00::5/128"), netip.MustParsePrefix("10.244.7.5/32")}},
		},
		Routes: []Route{
			{Dst: netip.MustParsePrefix("0.0.0.0/0"), Link: "eth0"},
			{Dst: netip.MustParsePrefix("169.254.1.1/32"), Link: "eth0"},
		},
	}
}

func bridgeCNI() Facts {
	return Facts{
		Links: []Link{
			{Name: "lo", MTU: 65536},
			{Name: "eth0", MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("10.88.0.7/16")}},
			{Name: "br0", Kind: KindBridge, Alias: stage.BridgeAlias, MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.254.1/30")}}, // an earlier run
			{Name: "tap0", Kind: KindTap, Alias: stage.TapAlias, MTU: 1500},
		},
		Routes: []Route{
			{Dst: netip.MustParsePrefix("0.0.0.0/0"), Link: "eth0"},
			{Dst: netip.MustParsePrefix("10.88.0.0/16"), Link: "eth0"},
			{Dst: netip.MustParsePrefix("192.168.254.0/30"), Link: "br0"},
		},
	}
}

func withLink(f Facts, l Link) Facts {
	f.Links = append(f.Links, l)
	return f
}

// withRoute puts the default route on link.
func withRoute(f Facts, link string) Facts {
	f.Routes = append([]Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Link: link}}, f.Routes[1:]...)
	return f
}

func TestBuild(t *testing.T) {
	def, _ := FromEnv(stage.MapEnv(nil))
	rc := resolv.Config{Nameservers: []netip.Addr{netip.MustParseAddr("10.96.0.10")}, Search: []string{"cluster.local"}}
	tests := []struct {
		name    string
		env     map[string]string
		facts   Facts
		podIP   string
		mtu     int
		badVar  string // non-empty: a bad input naming it
		errText string // non-empty: another error containing it
	}{
		{name: "calico /32", facts: calico(), podIP: "10.244.7.5", mtu: 1450},
		{name: "bridge /16, re-run", facts: bridgeCNI(), podIP: "10.88.0.7", mtu: 1500},
		{name: "explicit iface", env: map[string]string{"POD_IFACE": "eth0"}, facts: calico(), podIP: "10.244.7.5", mtu: 1450},
		{name: "unknown iface", env: map[string]string{"POD_IFACE": "net1"}, facts: calico(), badVar: "POD_IFACE"},
		{name: "overlaps pod address", env: map[string]string{"VM_IP": "10.244.7.6", "VM_GW": "10.244.7.5"}, facts: calico(), badVar: "VM_IP"},
		{name: "overlaps pod route", env: map[string]string{"VM_IP": "10.88.200.2", "VM_GW": "10.88.200.1"}, facts: bridgeCNI(), badVar: "VM_IP"},
		{name: "no default route", facts: Facts{Links: calico().Links}, badVar: "POD_IFACE"},
		{name: "ipv6 only", facts: Facts{Links: []Link{{Name: "eth0", MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00::5/64")}}},
			Routes: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Link: "eth0"}}}, badVar: "POD_IFACE"},
		// issue 15: the pod's own interface, loopback, and links net-setup did not make.
		{name: "POD_IFACE=lo", env: map[string]string{"POD_IFACE": "lo"}, facts: calico(), badVar: "POD_IFACE"},
		{name: "default route on lo", facts: withRoute(calico(), "lo"), badVar: "POD_IFACE"},
		{name: "only a link-local address", facts: Facts{Links: []Link{{Name: "eth0", MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("169.254.3.3/16")}}},
			Routes: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Link: "eth0"}}}, badVar: "POD_IFACE"},
		{name: "MTU above a bridge's", env: map[string]string{"POD_IFACE": "big"}, facts: withLink(calico(), Link{Name: "big", Kind: "veth", MTU: 65536,
			Addrs: []netip.Prefix{netip.MustParsePrefix("10.5.0.2/24")}}), badVar: "POD_IFACE"},
		{name: "POD_IFACE is Berth's bridge", env: map[string]string{"POD_IFACE": "br0", "BRIDGE": "br1"}, facts: bridgeCNI(), badVar: "POD_IFACE"},
		{name: "TAP=eth0, POD_IFACE unset", env: map[string]string{"TAP": "eth0"}, facts: calico(), badVar: "TAP"},
		{name: "BRIDGE=eth0, POD_IFACE unset", env: map[string]string{"BRIDGE": "eth0"}, facts: calico(), badVar: "BRIDGE"},
		{name: "TAP=lo", env: map[string]string{"TAP": "lo"}, facts: calico(), badVar: "TAP"},
		{name: "BRIDGE=lo", env: map[string]string{"BRIDGE": "lo"}, facts: calico(), badVar: "BRIDGE"},
		{name: "TAP a Multus NIC", env: map[string]string{"TAP": "net1"}, facts: withLink(calico(), Link{Name: "net1", Kind: "macvlan", MTU: 1500}), badVar: "TAP"},
		{name: "TAP a tap not Berth's", facts: withLink(calico(), Link{Name: "tap0", Kind: KindTap, MTU: 1500}), badVar: "TAP"},
		{name: "TAP a tap with another alias", facts: withLink(calico(), Link{Name: "tap0", Kind: KindTap, Alias: "qemu's", MTU: 1500}), badVar: "TAP"},
		{name: "TAP Berth's bridge", env: map[string]string{"TAP": "br0", "BRIDGE": "br1"}, facts: bridgeCNI(), badVar: "TAP"},
		{name: "TAP a veth with Berth's tap alias", facts: withLink(calico(), Link{Name: "tap0", Kind: "veth", Alias: stage.TapAlias, MTU: 1500}), badVar: "TAP"},
		{name: "BRIDGE a bridge not Berth's", facts: withLink(calico(), Link{Name: "br0", Kind: KindBridge, MTU: 1500}), badVar: "BRIDGE"},
		{name: "BRIDGE a tap of Berth's", env: map[string]string{"BRIDGE": "tap0", "TAP": "tap1"}, facts: bridgeCNI(), badVar: "BRIDGE"},
		{name: "BRIDGE a veth", env: map[string]string{"BRIDGE": "cali1"}, facts: withLink(calico(), Link{Name: "cali1", Kind: "veth", MTU: 1500}), badVar: "BRIDGE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := def
			if tt.env != nil {
				var err error
				if c, err = FromEnv(stage.MapEnv(tt.env)); err != nil {
					t.Fatal(err)
				}
			}
			p, err := Build(c, tt.facts, rc)
			switch {
			case tt.badVar != "":
				if !stage.IsBadInput(err) || !strings.Contains(err.Error(), tt.badVar) {
					t.Fatalf("err = %v, want a bad input naming %s", err, tt.badVar)
				}
				return
			case tt.errText != "":
				if err == nil || stage.IsBadInput(err) || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v, want an error containing %q", err, tt.errText)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if p.PodIP.String() != tt.podIP || p.MTU != tt.mtu || p.PodIface != "eth0" {
				t.Fatalf("plan = %+v, want pod IP %s MTU %d on eth0", p, tt.podIP, tt.mtu)
			}
			if len(p.Nameservers) != 1 || len(p.Search) != 1 {
				t.Fatalf("resolv not carried: %+v", p)
			}
		})
	}
}
