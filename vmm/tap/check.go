package tap

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/berth-vm/berth/common/stage"
)

// Owner is who vmm runs as: the tap must be owned by Owner.UID (net-setup's
// TAP_UID) and its group, if it has one, must be one of Owner.GIDs.
type Owner struct {
	UID  uint32
	GIDs []uint32 // the effective gid and the supplementary groups
}

// Self is the Owner of this process.
func Self() (Owner, error) {
	o := Owner{UID: uint32(os.Geteuid()), GIDs: []uint32{uint32(os.Getegid())}}
	groups, err := os.Getgroups()
	if err != nil {
		return o, fmt.Errorf("supplementary groups: %w", err)
	}
	for _, g := range groups {
		o.GIDs = append(o.GIDs, uint32(g))
	}
	return o, nil
}

// Link is what Check found: the tap net-setup made, by ifindex.
type Link struct {
	Name   string
	Index  int
	Bridge string
}

// noOwner is the kernel's "no owner/group set" (INVALID_UID, -1).
const noOwner = ^uint32(0)

// Check looks the tap up over netlink and returns it if it is the tap
// net-setup made for this vmm: a tap (not a tun, a veth, a bridge, ...),
// carrying stage.TapAlias, persistent, owned by owner, enslaved to a bridge
// carrying stage.BridgeAlias, and up. Anything else is an *stage.InputError
// naming TAP and every problem found: the pod's network namespace outlives
// the container, nothing but net-setup changes these, so restarting vmm does
// not help. A failing netlink query is a plain error (exit 1).
func Check(name string, owner Owner) (Link, error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return Link{}, stage.BadInput("TAP", name, "no such network interface in this network namespace: "+
			"net-setup makes the tap (an init container, before vmm); vmm never creates one")
	}
	if err != nil {
		return Link{}, fmt.Errorf("look up tap %s: %w", name, err)
	}
	var master netlink.Link
	if idx := l.Attrs().MasterIndex; idx != 0 {
		if master, err = netlink.LinkByIndex(idx); err != nil {
			return Link{}, fmt.Errorf("look up the master (ifindex %d) of %s: %w", idx, name, err)
		}
	}
	if p := Problems(l, master, owner); len(p) > 0 {
		return Link{}, stage.BadInputf("TAP", name, "%s: vmm attaches only to the persistent tap net-setup made for this uid (net-setup --check says what is wrong)", strings.Join(p, "; "))
	}
	return Link{Name: name, Index: l.Attrs().Index, Bridge: master.Attrs().Name}, nil
}

// Problems lists what is wrong with link as the tap net-setup made (master is
// its master, nil when none). Pure: the table test feeds it links.
func Problems(link, master netlink.Link, owner Owner) []string {
	t, ok := link.(*netlink.Tuntap)
	if !ok {
		return []string{fmt.Sprintf("is a %s, not a tap", kind(link))}
	}
	if t.Mode != netlink.TUNTAP_MODE_TAP {
		return []string{"is a tun (IP-level) device, not a tap"}
	}
	var p []string
	a := link.Attrs()
	if a.Alias != stage.TapAlias {
		p = append(p, fmt.Sprintf("its ifalias is %q, not %q: net-setup did not make it", a.Alias, stage.TapAlias))
	}
	if t.NonPersist {
		p = append(p, "is not persistent (a transient tap, not net-setup's)")
	}
	switch {
	case t.Owner == noOwner:
		p = append(p, fmt.Sprintf("has no owner, vmm runs as uid %d (net-setup's TAP_UID)", owner.UID))
	case t.Owner != owner.UID:
		p = append(p, fmt.Sprintf("is owned by uid %d, vmm runs as uid %d (net-setup's TAP_UID must be the vm container's uid)", t.Owner, owner.UID))
	}
	if t.Group != noOwner && !slices.Contains(owner.GIDs, t.Group) {
		p = append(p, fmt.Sprintf("has group %d, not one of vmm's groups %v (net-setup's TAP_GID)", t.Group, owner.GIDs))
	}
	switch {
	case master == nil:
		p = append(p, "is on no bridge (net-setup enslaves it to its bridge)")
	case master.Type() != "bridge":
		p = append(p, fmt.Sprintf("is enslaved to %s, a %s, not a bridge", master.Attrs().Name, kind(master)))
	case master.Attrs().Alias != stage.BridgeAlias:
		p = append(p, fmt.Sprintf("is on bridge %s whose ifalias is %q, not %q: not net-setup's bridge", master.Attrs().Name, master.Attrs().Alias, stage.BridgeAlias))
	}
	if a.Flags&net.FlagUp == 0 {
		p = append(p, "is down (net-setup sets it up)")
	}
	return p
}

// kind names a link's type for a message.
func kind(l netlink.Link) string {
	if t, ok := l.(*netlink.Tuntap); ok && t.Mode == netlink.TUNTAP_MODE_TUN {
		return "tun"
	}
	if l.Type() == "device" {
		return "physical or loopback device"
	}
	return l.Type()
}

// Recheck confirms that f, attached by name, is attached to the very link
// Check looked at: the kernel reports the name and IFF_PERSIST for the
// attached device (a tap TUNSETIFF just made would not be persistent) and the
// name still has the checked ifindex. A difference means the link was replaced
// between the check and the attach: a race, a plain error (exit 1).
func Recheck(f *os.File, want Link) error {
	name, flags, err := attached(f)
	if err != nil {
		return err
	}
	if name != want.Name || flags&iffPersist == 0 {
		return fmt.Errorf("attached to %q (flags %#x), not the persistent tap %s that was checked: it changed meanwhile", name, flags, want.Name)
	}
	l, err := netlink.LinkByName(want.Name)
	if err != nil {
		return fmt.Errorf("look up tap %s after attaching: %w", want.Name, err)
	}
	if l.Attrs().Index != want.Index {
		return fmt.Errorf("tap %s has ifindex %d after attaching, %d when checked: it was replaced meanwhile", want.Name, l.Attrs().Index, want.Index)
	}
	return nil
}
