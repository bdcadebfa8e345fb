package roottest

import (
	"os/exec"
	"strings"
	"testing"
)

// The Calico-shaped pod reaches the node's own address: the pod's only way
// out is 169.254.1.1, which nothing holds, so this passes only if the node
// proxy-ARPs for it on the pod's veth and routes the pod's /32 back to it.
func TestCalicoPodReachesNode(t *testing.T) {
	Require(t)
	node, delNode, err := NewNode()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(delNode)
	pod, hostIf, delPod, err := NewCalicoPod(node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(delPod)
	if out, err := exec.Command("ip", "netns", "exec", pod, "ping", "-c1", "-W3", NodeIP).CombinedOutput(); err != nil {
		t.Fatalf("ping %s from the pod: %v\n%s", NodeIP, err, out)
	}
	out, err := exec.Command("ip", "-n", pod, "neigh", "show", "169.254.1.1").Output()
	if err != nil || !strings.Contains(string(out), "lladdr") {
		t.Errorf("the pod has no neighbour entry for 169.254.1.1 (%v): %q", err, out)
	}
	if mtu, err := LinkMTU(pod, "eth0"); err != nil || mtu != 1450 {
		t.Errorf("pod eth0 MTU %d (%v), want 1450", mtu, err)
	}
	if hostIf == "" {
		t.Error("no host veth name")
	}
}
