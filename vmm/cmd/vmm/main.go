// Command vmm runs the VM: it builds QEMU's command line from the environment
// and supervises qemu-system-x86_64 as its child (docs/vmm.md).
package main

import (
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/config"
	"github.com/berth-vm/berth/vmm/vmm"
)

func main() {
	stage.Main(stage.Spec{
		Name: "vmm",
		Summary: "Runs the VM: builds QEMU's command line from the environment and runs qemu-system-x86_64 as its\n" +
			"child (console on stdout, QMP on $BERTH_RUN_DIR/qmp.sock); SIGTERM powers the guest down over ACPI.\n" +
			"`vmm probe ready` and `vmm probe live` are the pod's exec probes.",
		Vars: config.Vars,
	}, vmm.Run)
}
