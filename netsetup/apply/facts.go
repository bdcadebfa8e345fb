// Package apply reads the pod's network and builds, checks and reports the
// plan in the live network namespace: links, sysctls, tun node, iptables and
// the sidecar's files, one type per resource (resource.go) whose ensure and
// diff share one statement of each property. Every ensure is safe to repeat.
package apply

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/netsetup/plan"
)

// dumpRetries bounds the retries of a netlink dump that the kernel
// interrupted because the tables changed under it.
const dumpRetries = 5

// retryDump repeats a netlink dump while it reports ErrDumpInterrupted.
func retryDump[T any](what string, f func() (T, error)) (T, error) {
	var v T
	var err error
	for i := 0; i < dumpRetries; i++ {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return v, fmt.Errorf("list %s: %w", what, err)
	}
	return v, nil
}

// ReadFacts lists the current netns's links, addresses and IPv4 main-table routes.
func ReadFacts() (plan.Facts, error) {
	links, err := retryDump("links", netlink.LinkList)
	if err != nil {
		return plan.Facts{}, err
	}
	var f plan.Facts
	names := map[int]string{}
	for _, l := range links {
		a := l.Attrs()
		names[a.Index] = a.Name
		addrs, err := retryDump("addresses of "+a.Name, func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return plan.Facts{}, err
		}
		pl := plan.Link{Name: a.Name, Kind: l.Type(), Alias: a.Alias, Loopback: a.Flags&net.FlagLoopback != 0, MTU: a.MTU}
		for _, ad := range addrs {
			if p, ok := prefixOf(ad); ok {
				pl.Addrs = append(pl.Addrs, p)
			}
		}
		f.Links = append(f.Links, pl)
	}
	routes, err := retryDump("routes", func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return plan.Facts{}, err
	}
	for _, r := range routes {
		if r.Table != 0 && r.Table != unix.RT_TABLE_MAIN {
			continue
		}
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if r.Dst != nil {
			ones, _ := r.Dst.Mask.Size()
			a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
			if !ok {
				continue
			}
			dst = netip.PrefixFrom(a, ones)
		}
		f.Routes = append(f.Routes, plan.Route{Dst: dst, Link: names[r.LinkIndex]})
	}
	return f, nil
}

func prefixOf(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}
