package roottest

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// NodeIP is the node's own address in a pair made by RoutedPod.
const NodeIP = "10.244.0.1"

// RoutedPod adds a fresh namespace node and a Pod in it, with the node's side
// routed as a Calico node's: proxy ARP and a /32 route to PodIP on the pod's
// host veth (PodPeer), NodeIP on lo, forwarding on, and an uplink holding the
// default route (proxy ARP answers for 169.254.1.1 only when the node routes
// it elsewhere). Traffic then flows between the pod and the node as on a real
// Calico node. Both are deleted when the test ends.
func RoutedPod(t testing.TB) (node, pod string) {
	t.Helper()
	node, pod, del, err := NewRoutedPod()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(del)
	return node, pod
}

// NewRoutedPod is RoutedPod for namespaces that outlive one test: the caller
// deletes both with del.
func NewRoutedPod() (node, pod string, del func(), err error) {
	node, delNode, err := NewNetns("bnode-")
	if err != nil {
		return "", "", nil, err
	}
	pod, delPod, err := NewPod(node)
	if err != nil {
		delNode()
		return "", "", nil, err
	}
	del = func() { delPod(); delNode() }
	peer := PodPeer(pod)
	if err := run(node, "addr add "+NodeIP+"/32 dev lo", "route add "+PodIP+"/32 dev "+peer,
		"link add uplink type veth peer name uplink-peer", "addr add 10.255.255.1/30 dev uplink",
		"link set uplink up", "link set uplink-peer up", "route add default via 10.255.255.2"); err != nil {
		del()
		return "", "", nil, err
	}
	if out, err := exec.Command("ip", "netns", "exec", node, "sysctl", "-qw",
		"net.ipv4.conf."+peer+".proxy_arp=1", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		del()
		return "", "", nil, fmt.Errorf("sysctl in %s: %v: %s", node, err, out)
	}
	return node, pod, del, nil
}

// PodPeer is the name, in its node namespace, of the host end of the veth of
// a pod made by Pod or NewPod: 9 bytes, unique in the node.
func PodPeer(pod string) string { return "p" + strings.TrimPrefix(pod, "bpod-") }
