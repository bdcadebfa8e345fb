// Command vmm runs the VM: it builds QEMU's command line from the environment
// and supervises qemu-system-x86_64 as its child (docs/vmm.md).
package main

import (
	"os"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/agentcmd"
	"github.com/berth-vm/berth/vmm/kvm"
	"github.com/berth-vm/berth/vmm/probe"
	"github.com/berth-vm/berth/vmm/vmm"
)

func main() {
	kvm.ChildMain() // the KVM probe re-executes vmm; in that child this runs the test guest and exits
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		os.Exit(probe.Main(os.Args[2:], stage.OSEnv(), os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		os.Exit(agentcmd.Main(os.Args[2:], stage.OSEnv(), os.Stdout, os.Stderr))
	}
	stage.Main(vmm.Stage())
}
