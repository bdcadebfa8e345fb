// Package tuntap holds what net-setup, which makes the VM's persistent tap, and
// vmm, which attaches QEMU to it, must agree on about /dev/net/tun.
package tuntap

import "golang.org/x/sys/unix"

const (
	// Flags are the tap's TUNSETIFF flags: a tap (ethernet frames) without the
	// packet-information header. net-setup makes the tap with them, and vmm
	// attaches with them (adding VnetHdr when vhost-net is used); TUNGETIFF
	// reports them back.
	Flags = unix.IFF_TAP | unix.IFF_NO_PI
	// VnetHdr is the flag vmm adds for vhost-net.
	VnetHdr = unix.IFF_VNET_HDR
	// Persist is IFF_PERSIST as TUNGETIFF reports it on a persistent tap
	// (TUNSETPERSIST sets it; TUNSETIFF does not take it).
	Persist = 0x0800
)
