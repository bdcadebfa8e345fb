package apply

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/netsetup/plan"
)

// EnsureBridge makes the bridge exist, with exactly the gateway address, the
// pod's MTU and TX checksum offload off, and up. A bridge left by an earlier
// (maybe crashed) run is reused; a link of that name net-setup did not make
// (Build refuses it first) is refused here too, never changed.
func EnsureBridge(p plan.Plan) (netlink.Link, error) {
	br, err := netlink.LinkByName(p.Bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("look up bridge %s: %w", p.Bridge, err)
		}
		if br, err = makeBridge(p); err != nil {
			return nil, err
		}
	}
	if err := checkOwn(br, "BRIDGE", plan.KindBridge, stage.BridgeAlias); err != nil {
		return nil, err
	}
	if br.Attrs().MTU != p.MTU {
		if err := netlink.LinkSetMTU(br, p.MTU); err != nil {
			return nil, fmt.Errorf("set MTU %d on %s: %w", p.MTU, p.Bridge, err)
		}
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: p.VMGW.AsSlice(), Mask: net.CIDRMask(p.Subnet.Bits(), 32)}}
	addrs, err := retryDump("addresses of "+p.Bridge, func() ([]netlink.Addr, error) { return netlink.AddrList(br, netlink.FAMILY_V4) })
	if err != nil {
		return nil, err
	}
	for _, a := range addrs { // an earlier run's other VM_GW
		if !a.Equal(*gw) {
			if err := netlink.AddrDel(br, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return nil, fmt.Errorf("remove old address %s from %s: %w", a.IPNet, p.Bridge, err)
			}
		}
	}
	if err := netlink.AddrReplace(br, gw); err != nil {
		return nil, fmt.Errorf("set address %s on %s: %w", gw.IPNet, p.Bridge, err)
	}
	if err := setTxChecksum(p.Bridge, false); err != nil {
		return nil, err
	}
	if err := noIPv6(br); err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("set %s up: %w", p.Bridge, err)
	}
	return br, nil
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

// checkOwn refuses a link that is not of net-setup's kind with its alias:
// the last guard before changing it (Build refused it already).
func checkOwn(l netlink.Link, envVar, kind, alias string) error {
	a := l.Attrs()
	if l.Type() == kind && a.Alias == alias {
		return nil
	}
	return stage.BadInputf(envVar, a.Name, "names an existing link that net-setup did not make (%s, ifalias %q; net-setup's have %s, ifalias %q): it is left as it is",
		l.Type(), a.Alias, kind, alias)
}

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE of linux/if_link.h (not in x/sys/unix).
const in6AddrGenModeNone = 1

// noIPv6 keeps a link of Berth's without IPv6 addresses: no link-local address is generated
// (addrgenmode none, through netlink: no writable /proc/sys needed) and any there is removed.
// The VM's network is IPv4 only; an IPv6 link-local address on the bridge would let the guest
// reach pod services listening on [::], past BERTH-INPUT (docs/security.md). A pod without
// IPv6 has nothing to remove.
func noIPv6(l netlink.Link) error {
	name := l.Attrs().Name
	if err := netlink.LinkSetIP6AddrGenMode(l, in6AddrGenModeNone); err != nil &&
		!errors.Is(err, unix.EAFNOSUPPORT) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("set addrgenmode none on %s: %w", name, err)
	}
	addrs, err := retryDump("IPv6 addresses of "+name, func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_V6) })
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if err := netlink.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove IPv6 address %s from %s: %w", a.IPNet, name, err)
		}
	}
	return nil
}

// TunFlags are the flags of Berth's tap: a single-queue tap without packet
// info; vmm attaches with the same ones (it may add IFF_VNET_HDR).
const TunFlags = unix.IFF_TAP | unix.IFF_NO_PI

// EnsureTap makes the persistent tap exist, owned by the QEMU uid and gid,
// enslaved to the bridge with the pod's MTU, and up. tunPath is the tun
// device node to use (/dev/net/tun, or the one made in the run dir). A tap of
// net-setup's of the wrong shape is re-made; a link of that name net-setup
// did not make is refused (Build refused it first), never changed.
func EnsureTap(p plan.Plan, br netlink.Link, tunPath string) error {
	l, err := netlink.LinkByName(p.Tap)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
	case err != nil:
		return fmt.Errorf("look up tap %s: %w", p.Tap, err)
	default:
		if err := checkOwn(l, "TAP", plan.KindTap, stage.TapAlias); err != nil {
			return err
		}
		if t, ok := l.(*netlink.Tuntap); !ok || t.Mode != netlink.TUNTAP_MODE_TAP || t.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 {
			// net-setup's, but not a single-queue tap (a tun, multi-queue): re-make
			// it, it cannot be attached the way vmm does.
			if err := netlink.LinkDel(l); err != nil {
				return fmt.Errorf("remove %s (net-setup's, but not a single-queue tap): %w", p.Tap, err)
			}
		}
	}
	if err := persistTap(p, tunPath); err != nil {
		return err
	}
	tap, err := netlink.LinkByName(p.Tap)
	if err != nil {
		return fmt.Errorf("look up tap %s: %w", p.Tap, err)
	}
	if tap.Attrs().MTU != p.MTU {
		if err := netlink.LinkSetMTU(tap, p.MTU); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", p.MTU, p.Tap, err)
		}
	}
	if tap.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMaster(tap, br); err != nil {
			return fmt.Errorf("attach %s to %s: %w", p.Tap, p.Bridge, err)
		}
	}
	if err := noIPv6(tap); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(tap); err != nil {
		return fmt.Errorf("set %s up: %w", p.Tap, err)
	}
	return nil
}

// persistTap creates (or re-attaches to) the tap through the tun device, marks
// it with stage.TapAlias, and sets owner, group and, last, persistence; all of
// these are idempotent. Until TUNSETPERSIST the tap lives only as long as this
// descriptor: a run killed before it leaves no tap at all, so a persistent tap
// named TAP that net-setup made always carries the mark.
func persistTap(p plan.Plan, tunPath string) error {
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s to create tap %s: %w", tunPath, p.Tap, err)
	}
	defer unix.Close(fd)
	req, err := unix.NewIfreq(p.Tap)
	if err != nil {
		return fmt.Errorf("create tap %s: %w", p.Tap, err)
	}
	req.SetUint16(TunFlags)
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

// TunNodeName is the tun device node net-setup makes in the run dir for a vm
// container that has no /dev/net/tun (docs/design.md, "Devices and privilege").
const TunNodeName = stage.TunNodeName

// tunDev is the tun device's number (Documentation/admin-guide/devices.txt).
var tunDev = unix.Mkdev(10, 200)

// CheckTunNode returns nil when nothing is at path or path is a character
// device 10:200 (not through a symlink), and an error wrapping
// fsutil.ErrNotOwnFile for anything else — a symlink, a FIFO, a directory, a
// regular file, another device: not net-setup's node, left as it is. Chowning
// a planted node of another device to the QEMU uid would hand QEMU that device.
func CheckTunNode(path string) error {
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat tun node %s: %w", path, err)
	}
	return checkTunStat(path, &st)
}

func checkTunStat(path string, st *unix.Stat_t) error {
	var found string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if st.Rdev == tunDev {
			return nil
		}
		found = fmt.Sprintf("the character device %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	case unix.S_IFBLK:
		found = fmt.Sprintf("the block device %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	case unix.S_IFLNK:
		found = "a symlink"
	case unix.S_IFIFO:
		found = "a FIFO"
	case unix.S_IFDIR:
		found = "a directory"
	case unix.S_IFSOCK:
		found = "a socket"
	case unix.S_IFREG:
		found = "a regular file"
	default:
		found = "not a device node"
	}
	return fmt.Errorf("%s is %s, not the tun device node (c 10:200): %w; refusing to use it (left as it is; remove it if it is not yours)",
		path, found, fsutil.ErrNotOwnFile)
}

// EnsureTunNode makes path a character device 10:200 owned by uid:gid, mode
// 0600. An existing node with the right device is fixed up; anything else at
// path is refused (CheckTunNode) and left alone. The owner and mode are set
// through a descriptor opened with O_PATH|O_NOFOLLOW and checked to be the
// node, so a symlink or another file swapped in meanwhile is never changed.
func EnsureTunNode(path string, uid, gid int) error {
	if err := CheckTunNode(path); err != nil {
		return err
	}
	if err := unix.Mknod(path, unix.S_IFCHR|0o600, int(tunDev)); err != nil && !errors.Is(err, unix.EEXIST) {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("make tun node %s: %w (net-setup needs CAP_MKNOD, or give the vm container /dev/net/tun through a device plugin)", path, err)
		}
		return fmt.Errorf("make tun node %s: %w", path, err)
	}
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open tun node %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat tun node %s: %w", path, err)
	}
	if err := checkTunStat(path, &st); err != nil {
		return err
	}
	if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("chown tun node %s to %d:%d: %w", path, uid, gid, err)
	}
	// fchmod does not take an O_PATH descriptor, and fchmodat ignores
	// AT_EMPTY_PATH before Linux 6.6: chmod the descriptor's own inode
	// through /proc (the magic link resolves to it, never to a path).
	if err := unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), 0o600); err != nil {
		return fmt.Errorf("chmod tun node %s: %w", path, err)
	}
	return nil
}

// IPForwardPath is the sysctl that must be 1 for the NAT to forward.
const IPForwardPath = "/proc/sys/net/ipv4/ip_forward"

// EnsureIPForward sets net.ipv4.ip_forward=1 in this netns unless it already
// is (a pod sysctl may have set it while /proc/sys stays read-only).
func EnsureIPForward(path string) error {
	on, err := readSysctlBool(path)
	if err != nil {
		return err
	}
	if on {
		return nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		if errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return fmt.Errorf("set net.ipv4.ip_forward=1: %w: /proc/sys is read-only in this container; "+
				"run net-setup with securityContext.privileged: true (the chart's default), or set the pod's "+
				"securityContext.sysctls net.ipv4.ip_forward=1 with the kubelet flag --allowed-unsafe-sysctls=net.ipv4.ip_forward", err)
		}
		return fmt.Errorf("set net.ipv4.ip_forward=1: %w", err)
	}
	return nil
}

func readSysctlBool(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return false, fmt.Errorf("read %s: %q is not a number", path, b)
	}
	return n != 0, nil
}

// BridgeNFPath is br_netfilter's switch for this netns; it exists only when
// the node has loaded br_netfilter (most Kubernetes nodes have).
const BridgeNFPath = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// ErrBridgeNFReadOnly says bridged traffic still passes iptables and /proc/sys
// is read-only: everything works but the VM reaching its own pod IP (hairpin).
var ErrBridgeNFReadOnly = errors.New("net.bridge.bridge-nf-call-iptables is 1 and /proc/sys is read-only: " +
	"the VM cannot reach its own pod IP (hairpin); run net-setup privileged to fix it")

// DisableBridgeNF turns off iptables for bridged frames in this netns. With
// br_netfilter on, the hairpin DNAT happens at the bridge, which then sends
// the VM's own packet straight back to it, unanswerable; with it off the
// packet is routed, DNATed and SNATed as planned. Only the pod's netns is
// touched.
func DisableBridgeNF(path string) error {
	on, err := readSysctlBool(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // br_netfilter is not loaded
	}
	if err != nil || !on {
		return err
	}
	if err := os.WriteFile(path, []byte("0\n"), 0o644); err != nil {
		if errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return ErrBridgeNFReadOnly
		}
		return fmt.Errorf("set net.bridge.bridge-nf-call-iptables=0: %w", err)
	}
	return nil
}
