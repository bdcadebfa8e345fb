package roottest

import (
	"strings"
	"testing"
)

// RoutedPod is NewNode with a NewCalicoPod on it, for one test: a Calico
// node's routing (proxy ARP, a /32 route to PodIP on the pod's host veth,
// NodeIP on lo, forwarding, an uplink holding the default route), so traffic
// flows between the pod and the node as on a real Calico node. Both are
// deleted when the test ends.
func RoutedPod(t testing.TB) (node, pod string) {
	t.Helper()
	node, delNode, err := NewNode()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(delNode)
	pod, _, delPod, err := NewCalicoPod(node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(delPod)
	return node, pod
}

// PodPeer is the name, in its node namespace, of the host end of the veth of
// a pod made by Pod or NewPod: 9 bytes, unique in the node.
func PodPeer(pod string) string { return "p" + strings.TrimPrefix(pod, "bpod-") }
