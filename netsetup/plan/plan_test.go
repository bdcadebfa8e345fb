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
// IPTABLES_BACKEND unknown.
func TestConfigFromEnvBadInput(t *testing.T) {
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
		{map[string]string{"IPTABLES_BACKEND": "ipfw"}, "IPTABLES_BACKEND"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.env[tt.name], func(t *testing.T) {
			_, err := ConfigFromEnv(stage.MapEnv(tt.env))
			if !stage.IsBadInput(err) {
				t.Fatalf("err = %v, want a bad input", err)
			}
			if !strings.Contains(err.Error(), tt.name) {
				t.Fatalf("error %q does not name %s", err, tt.name)
			}
		})
	}
}

func TestConfigFromEnvDefaults(t *testing.T) {
	c, err := ConfigFromEnv(stage.MapEnv(map[string]string{"TAP_UID": "65534"}))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		VMIP: netip.MustParseAddr(DefaultVMIP), VMGW: netip.MustParseAddr(DefaultVMGW),
		Subnet: netip.MustParsePrefix("192.168.254.0/30"), Bridge: "br0", Tap: "tap0",
		TapUID: 65534, TapGID: 65534, Resolv: "/etc/resolv.conf", Backend: "auto", RunDir: "/run/berth",
	}
	if c != want {
		t.Fatalf("config = %+v\nwant %+v", c, want)
	}
	// Swapped roles within the /30 are fine.
	if _, err := ConfigFromEnv(stage.MapEnv(map[string]string{"VM_IP": "10.9.0.1", "VM_GW": "10.9.0.2"})); err != nil {
		t.Fatal(err)
	}
}

func calico() Facts {
	return Facts{
		Links: []Link{
			{Name: "lo", MTU: 65536, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
			{Name: "eth0", MTU: 1450, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00::5/128"), netip.MustParsePrefix("10.244.7.5/32")}},
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
			{Name: "br0", MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.254.1/30")}}, // an earlier run
		},
		Routes: []Route{
			{Dst: netip.MustParsePrefix("0.0.0.0/0"), Link: "eth0"},
			{Dst: netip.MustParsePrefix("10.88.0.0/16"), Link: "eth0"},
			{Dst: netip.MustParsePrefix("192.168.254.0/30"), Link: "br0"},
		},
	}
}

func TestBuild(t *testing.T) {
	def, _ := ConfigFromEnv(stage.MapEnv(nil))
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
		{name: "no default route", facts: Facts{Links: calico().Links}, errText: "no IPv4 default route"},
		{name: "ipv6 only", facts: Facts{Links: []Link{{Name: "eth0", MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00::5/64")}}},
			Routes: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Link: "eth0"}}}, errText: "no IPv4 address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := def
			if tt.env != nil {
				var err error
				if c, err = ConfigFromEnv(stage.MapEnv(tt.env)); err != nil {
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
