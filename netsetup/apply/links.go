package apply

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/stage"
)

// The properties the bridge and the tap share. what names the link in a
// difference: "bridge br0", "tap tap0".

// ownDiff says how l is not a link net-setup made of kind with alias ("" when
// it is one): the last guard before changing it (plan.Build refused it
// already).
func ownDiff(l netlink.Link, kind, alias string) string {
	a := l.Attrs()
	if l.Type() == kind && a.Alias == alias {
		return ""
	}
	return fmt.Sprintf("names an existing link that net-setup did not make (%s, ifalias %q; net-setup's have %s, ifalias %q): it is left as it is",
		l.Type(), a.Alias, kind, alias)
}

// checkOwn refuses, as bad input naming envVar, a link that is not of
// net-setup's kind with its alias.
func checkOwn(l netlink.Link, envVar, kind, alias string) error {
	if d := ownDiff(l, kind, alias); d != "" {
		return stage.BadInput(envVar, l.Attrs().Name, d)
	}
	return nil
}

// lookup returns the link of that name, nil when there is none; what names
// it in an error ("bridge br0").
func lookup(name, what string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", what, err)
	}
	return l, nil
}

// mtuProperty: the link has the pod's MTU.
func mtuProperty(l netlink.Link, what string, mtu int) property {
	return property{
		differs: func() (string, error) {
			if got := l.Attrs().MTU; got != mtu {
				return fmt.Sprintf("%s has MTU %d, want %d", what, got, mtu), nil
			}
			return "", nil
		},
		fix: func() error {
			if err := netlink.LinkSetMTU(l, mtu); err != nil {
				return fmt.Errorf("set MTU %d on %s: %w", mtu, l.Attrs().Name, err)
			}
			return nil
		},
	}
}

// upProperty: the link is administratively up (a bridge without a live port
// has no carrier, and a tap none until QEMU opens it).
func upProperty(l netlink.Link, what string) property {
	return property{
		differs: func() (string, error) {
			if l.Attrs().Flags&net.FlagUp == 0 {
				return what + " is down", nil
			}
			return "", nil
		},
		fix: func() error {
			if err := netlink.LinkSetUp(l); err != nil {
				return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
			}
			return nil
		},
	}
}

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE of linux/if_link.h (not in x/sys/unix).
const in6AddrGenModeNone = 1

// noIPv6Property keeps a link of Berth's without IPv6 addresses: it has none,
// and generates no link-local one (addrgenmode none, set through netlink: no
// writable /proc/sys needed). The VM's network is IPv4 only; an IPv6
// link-local address on the bridge or the tap would let the guest reach pod
// services listening on [::], past BERTH-INPUT (docs/security.md). A pod
// without IPv6 has nothing to remove.
func noIPv6Property(l netlink.Link, what string) property {
	name := l.Attrs().Name
	list := func() ([]netlink.Addr, error) {
		return retryDump("IPv6 addresses of "+name, func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_V6) })
	}
	return property{
		differs: func() (string, error) {
			addrs, err := list()
			if err != nil {
				return "", err
			}
			if len(addrs) > 0 {
				var s []string
				for _, a := range addrs {
					s = append(s, a.IPNet.String())
				}
				return fmt.Sprintf("%s has IPv6 address %s, want none", what, strings.Join(s, ", ")), nil
			}
			mode, err := addrGenMode(name)
			if err != nil {
				return "", err
			}
			if mode >= 0 && mode != in6AddrGenModeNone {
				return fmt.Sprintf("%s has IPv6 addrgenmode %d, want none (%d): it would make a link-local address", what, mode, in6AddrGenModeNone), nil
			}
			return "", nil
		},
		fix: func() error {
			if err := netlink.LinkSetIP6AddrGenMode(l, in6AddrGenModeNone); err != nil &&
				!errors.Is(err, unix.EAFNOSUPPORT) && !errors.Is(err, unix.EOPNOTSUPP) {
				return fmt.Errorf("set addrgenmode none on %s: %w", name, err)
			}
			addrs, err := list()
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if err := netlink.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
					return fmt.Errorf("remove IPv6 address %s from %s: %w", a.IPNet, name, err)
				}
			}
			return nil
		},
	}
}

// addrGenMode reads the link's IPv6 address generation mode in this netns
// (netlink's IFLA_INET6_ADDR_GEN_MODE, which the sysctl shows; reading works
// on a read-only /proc/sys); -1 when the link has no IPv6 configuration (a
// kernel or netns without IPv6).
func addrGenMode(name string) (int, error) {
	path := "/proc/sys/net/ipv6/conf/" + name + "/addr_gen_mode"
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %q is not a number", path, b)
	}
	return n, nil
}

func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// ethtool TX checksum: off on the bridge, so DHCP replies that dnsmasq sends
// on it leave with a full checksum (some guests drop partial ones).
const (
	ethtoolGTxCsum = 0x16
	ethtoolSTxCsum = 0x17
)

type ethtoolValue struct {
	Cmd  uint32
	Data uint32
}

type ifreqData struct {
	Name [unix.IFNAMSIZ]byte
	Data uintptr
	_    [16]byte
}

func ethtool(name string, v *ethtoolValue) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var req ifreqData
	copy(req.Name[:], name)
	req.Data = uintptr(unsafe.Pointer(v))
	return ioctlPtr(fd, unix.SIOCETHTOOL, unsafe.Pointer(&req))
}

func setTxChecksum(name string, on bool) error {
	v := ethtoolValue{Cmd: ethtoolSTxCsum}
	if on {
		v.Data = 1
	}
	if err := ethtool(name, &v); err != nil {
		return fmt.Errorf("turn TX checksum offload off on %s: %w", name, err)
	}
	return nil
}

func txChecksum(name string) (bool, error) {
	v := ethtoolValue{Cmd: ethtoolGTxCsum}
	if err := ethtool(name, &v); err != nil {
		return false, fmt.Errorf("read TX checksum offload of %s: %w", name, err)
	}
	return v.Data != 0, nil
}
