package apply

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/common/tuntap"
	"github.com/berth-vm/berth/netsetup/plan"
)

// tap is the VM's tap TAP: a persistent single-queue tap made by net-setup
// (it carries stage.TapAlias), owned by the QEMU uid and gid, attached to the
// bridge with the pod's MTU, without IPv6 addresses, and up. A tap of
// net-setup's of the wrong shape is re-made; a link of that name net-setup did
// not make is refused (plan.Build refused it first), never changed.
type tap struct {
	plan plan.Plan
	// tunNode is the tun device node in the run dir, used to make the tap
	// when the container has no /dev/net/tun.
	tunNode string
}

func (t tap) what() string { return "tap " + t.plan.Tap }

func (t tap) ensure(context.Context, *slog.Logger) error {
	p := t.plan
	l, err := lookup(p.Tap, t.what())
	if err != nil {
		return err
	}
	if l != nil {
		if err := checkOwn(l, "TAP", plan.KindTap, stage.TapAlias); err != nil {
			return err
		}
		if shapeDiff(l) != "" {
			// net-setup's, but not a single-queue tap (a tun, multi-queue): re-make
			// it, it cannot be attached the way vmm does.
			if err := netlink.LinkDel(l); err != nil {
				return fmt.Errorf("remove %s (net-setup's, but not a single-queue tap): %w", p.Tap, err)
			}
			l = nil
		}
	}
	if l == nil {
		if err := t.persist(); err != nil {
			return err
		}
		if l, err = lookup(p.Tap, t.what()); err != nil || l == nil {
			return fmt.Errorf("make tap %s: %w", p.Tap, cmp.Or(err, errors.New("gone after TUNSETIFF")))
		}
		if d := shapeDiff(l); d != "" {
			return fmt.Errorf("make tap %s: %s", p.Tap, d)
		}
	}
	return repair(t.properties(l))
}

func (t tap) diff() ([]string, error) {
	p := t.plan
	l, err := lookup(p.Tap, t.what())
	if err != nil || l == nil {
		return []string{t.what() + " is missing"}, err
	}
	if d := shapeDiff(l); d != "" {
		return []string{d}, nil
	}
	if d := ownDiff(l, plan.KindTap, stage.TapAlias); d != "" {
		return []string{p.Tap + " " + d}, nil
	}
	return diffs(t.properties(l))
}

// shapeDiff says how l is not a single-queue tap, the only kind vmm attaches
// to ("" when it is one).
func shapeDiff(l netlink.Link) string {
	name := l.Attrs().Name
	switch tt, ok := l.(*netlink.Tuntap); {
	case !ok || tt.Mode != netlink.TUNTAP_MODE_TAP:
		return fmt.Sprintf("%s is a %s, not a tap", name, l.Type())
	case tt.Flags&netlink.TUNTAP_MULTI_QUEUE != 0:
		return fmt.Sprintf("tap %s is multi-queue, want a single-queue tap", name)
	}
	return ""
}

// properties are the tap's, in the order ensure fixes them. l is a tap
// (shapeDiff is "").
func (t tap) properties(l netlink.Link) []property {
	p := t.plan
	tt := l.(*netlink.Tuntap)
	return []property{
		{
			differs: func() (string, error) {
				if int(tt.Owner) != p.TapUID || int(tt.Group) != p.TapGID {
					return fmt.Sprintf("%s is owned by %d:%d, want %d:%d", t.what(), tt.Owner, tt.Group, p.TapUID, p.TapGID), nil
				}
				return "", nil
			},
			fix: t.persist,
		},
		{
			differs: func() (string, error) {
				if tt.NonPersist {
					return t.what() + " is not persistent", nil
				}
				return "", nil
			},
			fix: t.persist,
		},
		mtuProperty(l, t.what(), p.MTU),
		{
			differs: func() (string, error) {
				br, err := netlink.LinkByName(p.Bridge)
				if err == nil && l.Attrs().MasterIndex == br.Attrs().Index {
					return "", nil
				}
				return fmt.Sprintf("%s is not attached to %s", t.what(), p.Bridge), nil
			},
			fix: func() error {
				br, err := netlink.LinkByName(p.Bridge)
				if err != nil {
					return fmt.Errorf("look up bridge %s: %w", p.Bridge, err)
				}
				if err := netlink.LinkSetMaster(l, br); err != nil {
					return fmt.Errorf("attach %s to %s: %w", p.Tap, p.Bridge, err)
				}
				return nil
			},
		},
		noIPv6Property(l, t.what()),
		upProperty(l, t.what()),
	}
}

// DevTun is the tun device of a container that has one.
const DevTun = "/dev/net/tun"

// persist creates (or re-attaches to) the tap through the tun device
// (/dev/net/tun, else the node in the run dir), marks it with
// stage.TapAlias, and sets owner, group and, last, persistence; all of these
// are idempotent. Until TUNSETPERSIST the tap lives only as long as this
// descriptor: a run killed before it leaves no tap at all, so a persistent tap
// named TAP that net-setup made always carries the mark.
func (t tap) persist() error {
	p := t.plan
	tunPath := DevTun
	if _, err := os.Stat(DevTun); err != nil {
		tunPath = t.tunNode
	}
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s to create tap %s: %w", tunPath, p.Tap, err)
	}
	defer unix.Close(fd)
	req, err := unix.NewIfreq(p.Tap)
	if err != nil {
		return fmt.Errorf("create tap %s: %w", p.Tap, err)
	}
	req.SetUint16(tuntap.Flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, req); err != nil {
		return fmt.Errorf("create tap %s: %w", p.Tap, err)
	}
	l, err := netlink.LinkByName(p.Tap)
	if err != nil {
		return fmt.Errorf("look up tap %s: %w", p.Tap, err)
	}
	switch l.Attrs().Alias {
	case stage.TapAlias:
	case "": // just made by TUNSETIFF
		if err := netlink.LinkSetAlias(l, stage.TapAlias); err != nil {
			return fmt.Errorf("mark tap %s as net-setup's (ifalias): %w", p.Tap, err)
		}
	default: // appeared since the check: someone else's
		return checkOwn(l, "TAP", plan.KindTap, stage.TapAlias)
	}
	for _, c := range []struct {
		what string
		req  uint
		val  int
	}{
		{"owner", unix.TUNSETOWNER, p.TapUID},
		{"group", unix.TUNSETGROUP, p.TapGID},
		{"persist", unix.TUNSETPERSIST, 1},
	} {
		if err := unix.IoctlSetInt(fd, c.req, c.val); err != nil {
			return fmt.Errorf("set %s of tap %s to %d: %w", c.what, p.Tap, c.val, err)
		}
	}
	return nil
}
