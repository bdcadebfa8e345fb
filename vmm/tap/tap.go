// Package tap attaches to the persistent tap device net-setup made and returns
// the open file, which vmm hands to QEMU (-netdev tap,fd=3). QEMU itself then
// needs no privilege and no /dev/net/tun of its own.
package tap

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/tuntap"
)

// Flags as net-setup creates the tap: a TAP (Ethernet frames) without the
// packet-information header, single queue. Attaching must use the same type
// and queue mode; VNET_HDR may differ per attachment (the kernel stores the
// attaching file's choice), and with it QEMU gets checksum and segmentation
// offloads (QEMU reads the flag back with TUNGETIFF when given fd=).
const (
	BaseFlags = tuntap.Flags
	VnetHdr   = tuntap.VnetHdr
)

// Devices lists the tun clone devices to try, in order: /dev/net/tun (a
// device plugin or a privileged container gives it), then fallback, the node
// net-setup makes in the run volume owned by the QEMU uid (a container whose
// /dev/net/tun is missing or not opened by this uid).
func Devices(fallback string) []string { return []string{"/dev/net/tun", fallback} }

// TunMajor and TunMinor are the tun clone device's numbers (/dev/net/tun is 10:200).
const (
	TunMajor = 10
	TunMinor = 200
)

// ErrNotTunDevice is wrapped when a tun node is a symlink or not char 10:200.
var ErrNotTunDevice = errors.New("not the tun device")

// iffPersist is IFF_PERSIST as TUNGETIFF reports it.
const iffPersist = tuntap.Persist

// Open opens dev (a tun clone device) and attaches it to the existing tap
// name with flags. The file is close-on-exec; ExtraFiles passes it anyway.
//
// dev may be the node net-setup made in the run volume, which other containers
// share: it is opened without following a symlink and must be the tun clone
// device (char 10:200), so a planted symlink or another device never becomes
// QEMU's network. TUNSETIFF creates a tap when none of that name exists and
// the caller has CAP_NET_ADMIN (vmm as root): the ioctl runs on a thread
// without CAP_NET_ADMIN in its effective set, so it can only attach to an
// existing tap this uid owns, never make a transient one on no bridge.
func Open(dev, name string, flags uint16) (*os.File, error) {
	if len(name) >= unix.IFNAMSIZ || name == "" {
		return nil, fmt.Errorf("tap name %q: must be 1 to %d characters", name, unix.IFNAMSIZ-1)
	}
	req, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("tap name %q: %w", name, err)
	}
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("open %s: it is a symlink, %w: refusing to follow it", dev, ErrNotTunDevice)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dev, err)
	}
	if err := isTunDevice(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open %s: %w", dev, err)
	}
	req.SetUint16(flags)
	if err := withoutNetAdmin(func() error { return unix.IoctlIfreq(fd, unix.TUNSETIFF, req) }); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach to tap %s (TUNSETIFF %#x on %s): %w%s", name, flags, dev, err, hint(err))
	}
	// O_NONBLOCK guarded the open; QEMU sets the mode it wants on its copy.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), dev+":"+name), nil
}

// isTunDevice checks an open file is the tun clone device, char 10:200.
func isTunDevice(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != TunMajor || unix.Minor(st.Rdev) != TunMinor {
		return fmt.Errorf("%w (want a character device %d:%d, found mode %#o, device %d:%d)",
			ErrNotTunDevice, TunMajor, TunMinor, st.Mode&unix.S_IFMT, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return nil
}

// withoutNetAdmin runs f on an OS thread of its own whose effective
// capabilities lack CAP_NET_ADMIN (capabilities are per thread). The thread
// is never handed back to the Go scheduler: it ends with the goroutine.
func withoutNetAdmin(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- fmt.Errorf("capget: %w", err)
			return
		}
		if data[0].Effective&(1<<unix.CAP_NET_ADMIN) != 0 {
			data[0].Effective &^= 1 << unix.CAP_NET_ADMIN
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				errc <- fmt.Errorf("drop CAP_NET_ADMIN before TUNSETIFF: %w", err)
				return
			}
		}
		errc <- f()
	}()
	return <-errc
}

func hint(err error) string {
	switch {
	case errors.Is(err, unix.EPERM):
		return " (no such tap, or it is not this uid's: vmm never creates one; net-setup's TAP_UID/TAP_GID)"
	case errors.Is(err, unix.EBUSY):
		return " (another process is attached to it: a QEMU still running?)"
	case errors.Is(err, unix.EINVAL):
		return " (the tap exists with other flags, or is not a tap)"
	}
	return ""
}

// Attach attaches to the tap through the first of devs that works, with
// VNET_HDR when the kernel accepts it. It returns the file, the device used and
// whether VNET_HDR is on; on failure the error lists every attempt.
func Attach(devs []string, name string) (*os.File, string, bool, error) {
	var errs []error
	for _, dev := range devs {
		if f, err := Open(dev, name, BaseFlags|VnetHdr); err == nil {
			return f, dev, true, nil
		}
		f, err := Open(dev, name, BaseFlags)
		if err == nil {
			return f, dev, false, nil
		}
		errs = append(errs, err)
	}
	if _, err := net.InterfaceByName(name); err != nil {
		return nil, "", false, fmt.Errorf("no network interface %s in this network namespace: net-setup makes the tap (%w)", name, errors.Join(errs...))
	}
	return nil, "", false, errors.Join(errs...)
}

// Flags returns the flags of the attached tap (TUNGETIFF).
func Flags(f *os.File) (uint16, error) {
	_, flags, err := attached(f)
	return flags, err
}

// attached returns the name and flags of the device f is attached to (TUNGETIFF).
func attached(f *os.File) (string, uint16, error) {
	req, err := unix.NewIfreq("")
	if err != nil {
		return "", 0, fmt.Errorf("TUNGETIFF: %w", err)
	}
	if err := unix.IoctlIfreq(int(f.Fd()), unix.TUNGETIFF, req); err != nil {
		return "", 0, fmt.Errorf("TUNGETIFF: %w", err)
	}
	return req.Name(), req.Uint16(), nil
}
