package apply

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/netsetup/plan"
)

// bridge is the VM's bridge BRIDGE: made by net-setup (it carries
// stage.BridgeAlias), with the pod's MTU, exactly the gateway address
// VM_GW/30, TX checksum offload off, no IPv6 address, and up. A bridge left by
// an earlier (maybe crashed) run is reused; a link of that name net-setup did
// not make (plan.Build refuses it first) is refused here too, never changed.
type bridge struct{ plan plan.Plan }

func (b bridge) what() string { return "bridge " + b.plan.Bridge }

func (b bridge) ensure(context.Context, *slog.Logger) error {
	p := b.plan
	br, err := lookup(p.Bridge, b.what())
	if err == nil && br == nil {
		br, err = makeBridge(p)
	}
	if err != nil {
		return err
	}
	if err := checkOwn(br, "BRIDGE", plan.KindBridge, stage.BridgeAlias); err != nil {
		return err
	}
	return repair(b.properties(br))
}

func (b bridge) diff() ([]string, error) {
	p := b.plan
	br, err := lookup(p.Bridge, b.what())
	switch {
	case err != nil:
		return nil, err
	case br == nil:
		return []string{b.what() + " is missing"}, nil
	case br.Type() != plan.KindBridge:
		return []string{fmt.Sprintf("%s is a %s, not a bridge", p.Bridge, br.Type())}, nil
	}
	if d := ownDiff(br, plan.KindBridge, stage.BridgeAlias); d != "" {
		return []string{p.Bridge + " " + d}, nil
	}
	return diffs(b.properties(br))
}

// properties are the bridge's, in the order ensure fixes them: the MTU and
// the address before it is up, IPv6 off before it is up.
func (b bridge) properties(br netlink.Link) []property {
	p := b.plan
	gw := netip.PrefixFrom(p.VMGW, p.Subnet.Bits())
	addrs := func() ([]netlink.Addr, error) {
		return retryDump("addresses of "+p.Bridge, func() ([]netlink.Addr, error) { return netlink.AddrList(br, netlink.FAMILY_V4) })
	}
	return []property{
		mtuProperty(br, b.what(), p.MTU),
		{ // exactly the gateway address: an earlier run's other VM_GW goes
			differs: func() (string, error) {
				live, err := addrs()
				if err != nil {
					return "", err
				}
				if len(live) != 1 {
					return fmt.Sprintf("%s has %d IPv4 addresses, want only %s", b.what(), len(live), gw), nil
				}
				if got, _ := prefixOf(live[0]); got != gw {
					return fmt.Sprintf("%s has %s, want %s", b.what(), got, gw), nil
				}
				return "", nil
			},
			fix: func() error {
				want := &netlink.Addr{IPNet: &net.IPNet{IP: gw.Addr().AsSlice(), Mask: net.CIDRMask(gw.Bits(), 32)}}
				live, err := addrs()
				if err != nil {
					return err
				}
				for _, a := range live {
					if !a.Equal(*want) {
						if err := netlink.AddrDel(br, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
							return fmt.Errorf("remove old address %s from %s: %w", a.IPNet, p.Bridge, err)
						}
					}
				}
				if err := netlink.AddrReplace(br, want); err != nil {
					return fmt.Errorf("set address %s on %s: %w", want.IPNet, p.Bridge, err)
				}
				return nil
			},
		},
		{ // TX checksum offload off
			differs: func() (string, error) {
				on, err := txChecksum(p.Bridge)
				if err != nil || !on {
					return "", err
				}
				return b.what() + " has TX checksum offload on", nil
			},
			fix: func() error { return setTxChecksum(p.Bridge, false) },
		},
		noIPv6Property(br, b.what()),
		upProperty(br, b.what()),
	}
}

// BridgeTempPrefix starts the name a new bridge has until it carries
// stage.BridgeAlias.
const BridgeTempPrefix = "berth-"

// makeBridge creates the bridge under a temporary name, marks it with
// stage.BridgeAlias and only then renames it to BRIDGE (the kernel ignores an
// ifalias given at creation): a link named BRIDGE made by net-setup always
// carries the mark, so a run killed at any point never leaves a bridge the
// next run would have to refuse. A run killed before the rename leaves a down,
// address-less bridge named berth-XXXXXXXX, which nothing uses.
func makeBridge(p plan.Plan) (netlink.Link, error) {
	if err := removeTempBridges(); err != nil {
		return nil, err
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("create bridge %s: %w", p.Bridge, err)
	}
	tmp := BridgeTempPrefix + hex.EncodeToString(rnd[:])
	attrs := netlink.NewLinkAttrs()
	attrs.Name = tmp
	attrs.MTU = p.MTU
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		return nil, fmt.Errorf("create bridge %s (as %s): %w", p.Bridge, tmp, err)
	}
	l, err := netlink.LinkByName(tmp)
	if err == nil {
		if err = netlink.LinkSetAlias(l, stage.BridgeAlias); err == nil {
			err = netlink.LinkSetName(l, p.Bridge)
		}
		if err != nil {
			_ = netlink.LinkDel(l) // our own, unused: no half-made bridge stays behind
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create bridge %s (as %s): %w", p.Bridge, tmp, err)
	}
	br, err := netlink.LinkByName(p.Bridge)
	if err != nil {
		return nil, fmt.Errorf("look up bridge %s: %w", p.Bridge, err)
	}
	return br, nil
}

// isTempBridgeName reports whether name is one makeBridge gives a new bridge
// before its rename: BridgeTempPrefix and 8 hex digits, a name reserved to
// net-setup (docs/net-setup.md).
func isTempBridgeName(name string) bool {
	rest, ok := strings.CutPrefix(name, BridgeTempPrefix)
	if !ok || len(rest) != 8 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil
}

// removeTempBridges deletes what a run killed inside makeBridge left: a
// bridge of a reserved temporary name, with no alias but Berth's, no port and
// down. So a re-run after a crash at any point converges to a clean run's
// state.
func removeTempBridges() error {
	links, err := retryDump("links", netlink.LinkList)
	if err != nil {
		return err
	}
	for _, l := range links {
		a := l.Attrs()
		if l.Type() != plan.KindBridge || !isTempBridgeName(a.Name) || (a.Alias != "" && a.Alias != stage.BridgeAlias) || a.Flags&net.FlagUp != 0 {
			continue
		}
		ports := 0
		for _, o := range links {
			if o.Attrs().MasterIndex == a.Index {
				ports++
			}
		}
		if ports > 0 {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("remove %s, left by a net-setup killed while making the bridge: %w", a.Name, err)
		}
	}
	return nil
}
