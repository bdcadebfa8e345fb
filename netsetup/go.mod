module github.com/berth-vm/berth/netsetup

go 1.26

require (
	github.com/berth-vm/berth/common v0.0.0
	github.com/coreos/go-iptables v0.8.0
	github.com/vishvananda/netlink v1.3.1
	golang.org/x/sys v0.47.0
)

require github.com/vishvananda/netns v0.0.5 // indirect

replace github.com/berth-vm/berth/common => ../common
