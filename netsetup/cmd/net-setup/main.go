// Command net-setup is the pod's first init container: it builds the bridge,
// the tap, the NAT that gives the VM the pod's IP, and the dnsmasq config.
package main

import (
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/netsetup/setup"
)

func main() { stage.Main(setup.Stage()) }
