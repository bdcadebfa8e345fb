// Command net-setup is the pod's first init container: it builds the bridge,
// the tap, the NAT that gives the VM the pod's IP, and the dnsmasq config.
package main

import (
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/netsetup/plan"
	"github.com/berth-vm/berth/netsetup/setup"
)

func main() {
	stage.Legacy(stage.Spec{
		Name: "net-setup",
		Summary: "Builds the VM's network inside the pod's network namespace (docs/design.md): bridge BRIDGE " +
			"with VM_GW/30, persistent tap TAP owned by TAP_UID, NAT of the pod IP to VM_IP (all but TCP 5900 " +
			"unless NO_VNC), $BERTH_RUN_DIR/dnsmasq.conf and net.json. --dry-run prints the plan; --check " +
			"exits 0 only when the live state matches it.",
		Vars:  plan.Vars(),
		Check: true,
	}, setup.Run)
}
