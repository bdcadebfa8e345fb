package roottest

import (
	"encoding/json"
	"fmt"
	"os/exec"
)

// NodeIP is the node's own address in a namespace made by NewNode: on lo, as
// a Calico node holds its tunnel or host address, so a pod reaches the node at
// an address that is not on the pod's veth.
const NodeIP = "10.244.0.1"

// NewNode adds a fresh namespace shaped like a Kubernetes node for
// Calico-shaped pods: NodeIP/32 on lo, IPv4 forwarding on, and an uplink (a
// veth standing in for the node's NIC, 10.255.255.1/30) holding the default
// route via 10.255.255.2. The uplink matters: the kernel proxy-ARPs for
// 169.254.1.1 on a pod's veth only because the node routes that address out
// another interface. The caller deletes it with del.
func NewNode() (node string, del func(), err error) {
	node, del, err = NewNetns("bnode-")
	if err != nil {
		return "", nil, err
	}
	if err := run(node, "addr add "+NodeIP+"/32 dev lo",
		"link add uplink type veth peer name uplink-peer",
		"addr add 10.255.255.1/30 dev uplink", "link set uplink up", "link set uplink-peer up",
		"route add default via 10.255.255.2"); err != nil {
		del()
		return "", nil, err
	}
	if err := sysctl(node, "net.ipv4.ip_forward=1"); err != nil {
		del()
		return "", nil, err
	}
	return node, del, nil
}

// NewCalicoPod is NewPod(node) with the node's side as Calico's felix wires a
// pod's host veth (cali<hash>; ci/cluster/cni/berth-routed does the same):
// proxy_arp=1 and proxy_delay=0 on it, so it answers ARP for 169.254.1.1 at
// once, and the route PodIP/32 dev <veth> scope link, without an address on
// the veth. node is a namespace made by NewNode; only one pod of a node may be
// a Calico pod (they all have PodIP). hostIf is the veth's name in node.
func NewCalicoPod(node string) (pod, hostIf string, del func(), err error) {
	pod, del, err = NewPod(node)
	if err != nil {
		return "", "", nil, err
	}
	if hostIf, err = peerName(pod, node); err != nil {
		del()
		return "", "", nil, err
	}
	if err := sysctl(node, "net.ipv4.conf."+hostIf+".proxy_arp=1", "net.ipv4.neigh."+hostIf+".proxy_delay=0"); err != nil {
		del()
		return "", "", nil, err
	}
	if err := run(node, "route add "+PodIP+"/32 dev "+hostIf+" scope link"); err != nil {
		del()
		return "", "", nil, err
	}
	return pod, hostIf, del, nil
}

// peerName is the name, in node, of the other end of the pod's eth0 veth
// (found by its ifindex, so it does not depend on how NewPod names it).
func peerName(pod, node string) (string, error) {
	var eth0 []struct {
		LinkIndex int `json:"link_index"`
	}
	if err := ipJSON(pod, &eth0, "link", "show", "dev", "eth0"); err != nil {
		return "", err
	}
	if len(eth0) != 1 || eth0[0].LinkIndex == 0 {
		return "", fmt.Errorf("netns %s: eth0 has no veth peer", pod)
	}
	var links []struct {
		IfIndex int    `json:"ifindex"`
		Name    string `json:"ifname"`
	}
	if err := ipJSON(node, &links, "link", "show"); err != nil {
		return "", err
	}
	for _, l := range links {
		if l.IfIndex == eth0[0].LinkIndex {
			return l.Name, nil
		}
	}
	return "", fmt.Errorf("netns %s: no link with ifindex %d (the peer of %s's eth0)", node, eth0[0].LinkIndex, pod)
}

// LinkMTU is the MTU of the link dev in the namespace ns.
func LinkMTU(ns, dev string) (int, error) {
	var link []struct {
		MTU int `json:"mtu"`
	}
	if err := ipJSON(ns, &link, "link", "show", "dev", dev); err != nil {
		return 0, err
	}
	if len(link) != 1 {
		return 0, fmt.Errorf("netns %s: no link %s", ns, dev)
	}
	return link[0].MTU, nil
}

func ipJSON(ns string, v any, args ...string) error {
	out, err := exec.Command("ip", append([]string{"-n", ns, "-j"}, args...)...).Output()
	if err != nil {
		return fmt.Errorf("ip -n %s -j %v: %w", ns, args, err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("ip -n %s -j %v: %w", ns, args, err)
	}
	return nil
}

func sysctl(ns string, settings ...string) error {
	args := append([]string{"netns", "exec", ns, "sysctl", "-qw"}, settings...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("netns %s: sysctl %v: %v: %s", ns, settings, err, out)
	}
	return nil
}
