// Command pause is the sandbox ("pause") container of Berth's CI cluster: it holds the pod's
// namespaces, reaps orphaned children (it is PID 1 when the pod shares its PID namespace) and
// exits on SIGINT or SIGTERM. No registry is reachable here, so containerd's sandbox_image is
// this binary in a FROM-scratch image built by ci/cluster/up.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
