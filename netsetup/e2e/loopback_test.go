package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestLoopbackServicesUnreachable (docs/security.md): the pod's services bound to 127.0.0.1 —
// QEMU's VNC on 5900, the web console on 6080 (QMP is a unix socket, no address at all) — are
// not reachable through net-setup's NAT: not by the guest at its gateway (VM_GW) or at the pod
// IP, not by the node at the pod IP. Controls prove each path works for a listener that is not
// on loopback, so the refusals come from the loopback binding, not from a broken test path.
func TestLoopbackServicesUnreachable(t *testing.T) {
	for _, s := range []shape{calico, bridgeCNI} {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, s)
			e.mustNetSetup(nil)
			e.background(e.pod, "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file="+e.runDir+"/dnsmasq.conf")
			e.attachVM()

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

			// Controls: the same paths reach pod listeners that are not on loopback.
			e.background(e.pod, "socat", "TCP-LISTEN:5910,fork,reuseaddr", "SYSTEM:echo any")
			e.expectWho(e.vm, "TCP", vmGW, 5910, "any")
			e.background(e.pod, "socat", "TCP-LISTEN:5900,bind="+e.podIP+",fork,reuseaddr", "SYSTEM:echo podip")
			e.expectWho(e.vm, "TCP", e.podIP, 5900, "podip")
			e.expectWho(e.node, "TCP", e.podIP, 5900, "podip")
			// ... while the loopback listeners still answer inside the pod and still nowhere else.
			e.expectWho(e.pod, "TCP", "127.0.0.1", 5900, "vnc")
			unreachable(e.vm, vmGW, 5900, "vnc")
		})
	}
}
