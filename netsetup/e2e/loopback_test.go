package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestLoopbackServicesUnreachable (docs/security.md): the pod's services bound to 127.0.0.1 —
// QEMU's VNC on 5900, the web console on 6080 (QMP is a unix socket, no address at all) — are
// not reachable through net-setup's NAT: not by the guest at its gateway (VM_GW) or at the pod
// IP, not by the node at the pod IP. On top, net-setup's BERTH-INPUT keeps the guest from any
// pod service whatever it binds (DHCP, ICMP and replies pass). Controls: the node reaches a
// listener on the pod IP, and with BERTH-INPUT flushed the guest reaches the non-loopback
// listeners but still not the loopback ones — each layer holds on its own.
func TestLoopbackServicesUnreachable(t *testing.T) {
	for _, s := range []shape{calico, bridgeCNI} {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, s)
			e.mustNetSetup(nil)
			e.background(e.pod, "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file="+e.runDir+"/dnsmasq.conf")
			e.attachVM()

			// No IPv6 on Berth's links: no link-local address on the bridge the guest could use to
			// reach pod services on [::] past the IPv4 filter; an address left there is removed.
			noV6 := func() {
				t.Helper()
				for _, dev := range []string{"br0", "tap0"} {
					if got := strings.TrimSpace(e.run(e.pod, "ip", "-6", "-o", "addr", "show", "dev", dev)); got != "" {
						t.Errorf("IPv6 on %s: %s", dev, got)
					}
				}
			}
			noV6()
			e.ip("-n", e.pod, "-6", "addr", "add", "fd00::1/64", "dev", "br0")
			e.mustNetSetup(nil)
			noV6()

			// net-setup never lets packets from outside reach 127.0.0.0/8 (route_localnet).
			for _, dev := range []string{"all", "br0", "eth0"} {
				if got := strings.TrimSpace(e.run(e.pod, "sysctl", "-n", "net.ipv4.conf."+dev+".route_localnet")); got != "0" {
					t.Errorf("route_localnet on %s = %s in the pod: 127.0.0.1 would be routable from the bridge", dev, got)
				}
			}

			// The pod's loopback services, and the guest's own server on 6080 (the pod IP's 6080
			// is the guest's: every port but 5900 is DNATed to the VM).
			for _, l := range []struct {
				port int
				name string
			}{{5900, "vnc"}, {6080, "webconsole"}} {
				e.background(e.pod, "socat", fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", l.port), "SYSTEM:echo "+l.name)
				e.expectWho(e.pod, "TCP", "127.0.0.1", l.port, l.name) // the listener is up
			}
			e.listen(e.vm, "vm", []int{6080}, nil)

			unreachable := func(from, addr string, port int, service string) {
				t.Helper()
				if got, _ := e.who(from, "TCP", addr, port); got == service {
					t.Errorf("%s reached the pod's loopback %s at %s:%d", from, service, addr, port)
				}
			}
			unreachable(e.vm, vmGW, 5900, "vnc")
			unreachable(e.vm, vmGW, 6080, "webconsole")
			unreachable(e.vm, e.podIP, 5900, "vnc")
			unreachable(e.vm, e.podIP, 6080, "webconsole")
			unreachable(e.node, e.podIP, 5900, "vnc")
			unreachable(e.node, e.podIP, 6080, "webconsole")
			// 6080 on the pod IP is the guest's own port (hairpin from the VM, DNAT from the node).
			e.expectWho(e.vm, "TCP", e.podIP, 6080, "vm")
			e.expectWho(e.node, "TCP", e.podIP, 6080, "vm")

			// Pod -> guest connections work (their replies pass BERTH-INPUT: vmm's readiness probe).
			e.expectWho(e.pod, "TCP", vmIP, 6080, "vm")
			if got, _ := e.try(e.vm, "ping", "-c1", "-W2", vmGW); !strings.Contains(got, "1 received") {
				t.Errorf("the VM cannot ping its gateway: %q", got)
			}

			// A pod service on all addresses: the node reaches it at the pod IP:5900 (the VNC
			// exception keeps 5900 in the pod), the guest does not at VM_GW (BERTH-INPUT drops it).
			e.background(e.pod, "socat", "TCP-LISTEN:5910,fork,reuseaddr", "SYSTEM:echo any")
			e.background(e.pod, "socat", "TCP-LISTEN:5900,bind="+e.podIP+",fork,reuseaddr", "SYSTEM:echo podip")
			e.expectWho(e.node, "TCP", e.podIP, 5900, "podip")
			e.expectWho(e.pod, "TCP", vmGW, 5910, "any")
			unreachable(e.vm, vmGW, 5910, "any")
			unreachable(e.vm, e.podIP, 5900, "podip")

			// Control: without Berth's input filter the same paths reach the non-loopback
			// listeners — and still not the loopback ones; net-setup puts the filter back.
			e.run(e.pod, "iptables", "-F", "BERTH-INPUT")
			e.expectWho(e.vm, "TCP", vmGW, 5910, "any")
			e.expectWho(e.vm, "TCP", e.podIP, 5900, "podip")
			unreachable(e.vm, vmGW, 5900, "vnc")
			unreachable(e.vm, vmGW, 6080, "webconsole")
			e.mustNetSetup(nil)
			unreachable(e.vm, vmGW, 5910, "any")
			e.expectWho(e.pod, "TCP", "127.0.0.1", 5900, "vnc")
		})
	}
}
