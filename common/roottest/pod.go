package roottest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// PodIP is the pod's address in a namespace made by Pod.
const PodIP = "10.244.7.5"

// Netns adds a fresh network namespace named prefix plus a random suffix,
// with lo up, deleted (its processes killed first) when the test ends.
func Netns(t testing.TB, prefix string) string {
	t.Helper()
	ns, del, err := NewNetns(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(del)
	return ns
}

// NewNetns is Netns for a namespace that outlives one test (a pool): the
// caller deletes it with del.
func NewNetns(prefix string) (ns string, del func(), err error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	ns = prefix + hex.EncodeToString(b)
	if err := run("", "netns", "add", ns); err != nil {
		return "", nil, err
	}
	del = func() { KillNetnsProcesses(ns); _ = exec.Command("ip", "netns", "del", ns).Run() }
	if err := run(ns, "link set lo up"); err != nil {
		del()
		return "", nil, err
	}
	return ns, del, nil
}

// Pod adds a fresh namespace shaped like a Calico pod's: eth0, one end of a
// veth whose other end is in the namespace node (made by the caller with
// Netns, shared by many pods), with PodIP/32 and a default route via
// 169.254.1.1 onlink. Only the pod's side is configured: what net-setup
// reads (the default route's interface, its address and MTU) is all there.
func Pod(t testing.TB, node string) string {
	t.Helper()
	ns, del, err := NewPod(node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(del)
	return ns
}

// NewPod is Pod for a namespace that outlives one test: the caller deletes it with del.
func NewPod(node string) (pod string, del func(), err error) {
	pod, del, err = NewNetns("bpod-")
	if err != nil {
		return "", nil, err
	}
	peer := PodPeer(pod)
	if err := run(node, "link add "+peer+" mtu 1450 type veth peer name eth0 mtu 1450 netns "+pod, "link set "+peer+" up"); err != nil {
		del()
		return "", nil, err
	}
	if err := run(pod, "addr add "+PodIP+"/32 dev eth0", "link set eth0 up",
		"route add 169.254.1.1 dev eth0 scope link", "route add default via 169.254.1.1 dev eth0 onlink"); err != nil {
		del()
		return "", nil, err
	}
	return pod, del, nil
}

// IPBatch runs ip(8) commands in the namespace ns in one process (ip -batch;
// a line may quote an argument with double quotes).
func IPBatch(t testing.TB, ns string, cmds ...string) {
	t.Helper()
	if err := run(ns, cmds...); err != nil {
		t.Fatal(err)
	}
}

// IP runs ip(8) with args and fails the test on error.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// run: with ns "", one ip command given as args; else ip -n ns -batch of cmds.
func run(ns string, cmds ...string) error {
	if ns == "" {
		if out, err := exec.Command("ip", cmds...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(cmds, " "), err, out)
		}
		return nil
	}
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -n %s -batch: %v: %s\n%s", ns, err, out, strings.Join(cmds, "\n"))
	}
	return nil
}
