// Command calico-pod makes and removes the test fixture of common/roottest
// for shell callers (ci/bench): a node namespace (roottest.NewNode) and a
// Calico-shaped pod namespace on it (roottest.NewCalicoPod).
//
//	calico-pod add          make both; print NODE_NS=, POD_NS=, NODE_IF= (the pod's veth in the node),
//	                        POD_IP=, NODE_IP= and POD_MTU= lines
//	calico-pod del NS...    kill what runs in each namespace, then delete it
//
// Root only. Exit 2 on bad usage, 1 on failure (nothing is left behind).
package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"

	"github.com/berth-vm/berth/common/roottest"
)

const usage = "usage: calico-pod add | calico-pod del NS..."

func main() {
	args := os.Args[1:]
	switch {
	case len(args) == 1 && args[0] == "add":
		if err := add(); err != nil {
			slog.Error("calico-pod add", "err", err)
			os.Exit(1)
		}
	case len(args) > 1 && args[0] == "del":
		for _, ns := range args[1:] {
			if strings.ContainsAny(ns, "/ \t\n") || strings.HasPrefix(ns, ".") {
				fmt.Fprintf(os.Stderr, "calico-pod: NS %q: want a network namespace name (no '/', no spaces)\n", ns)
				os.Exit(2)
			}
		}
		for _, ns := range args[1:] {
			roottest.KillNetnsProcesses(ns)
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				slog.Error("calico-pod del", "netns", ns, "err", err, "out", strings.TrimSpace(string(out)))
				os.Exit(1)
			}
		}
	default:
		fmt.Fprintln(os.Stderr, "calico-pod: "+usage)
		os.Exit(2)
	}
}

func add() error {
	node, delNode, err := roottest.NewNode()
	if err != nil {
		return err
	}
	pod, hostIf, delPod, err := roottest.NewCalicoPod(node)
	if err != nil {
		delNode()
		return err
	}
	mtu, err := roottest.LinkMTU(pod, "eth0")
	if err != nil {
		delPod()
		delNode()
		return err
	}
	fmt.Printf("NODE_NS=%s\nPOD_NS=%s\nNODE_IF=%s\nPOD_IP=%s\nNODE_IP=%s\nPOD_MTU=%d\n", node, pod, hostIf, roottest.PodIP, roottest.NodeIP, mtu)
	return nil
}
