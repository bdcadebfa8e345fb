// Package tap attaches to the persistent tap device net-setup made and returns
// the open file, which vmm hands to QEMU (-netdev tap,fd=3). QEMU itself then
// needs no privilege and no /dev/net/tun of its own.
package tap

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Flags as net-setup creates the tap: a TAP (Ethernet frames) without the
// packet-information header, single queue. Attaching must use the same type
// and queue mode; VNET_HDR may differ per attachment (the kernel stores the
// attaching file's choice), and with it QEMU gets checksum and segmentation
// offloads (QEMU reads the flag back with TUNGETIFF when given fd=).
const (
	BaseFlags = unix.IFF_TAP | unix.IFF_NO_PI
	VnetHdr   = unix.IFF_VNET_HDR
)

// Devices lists the tun clone devices to try, in order: /dev/net/tun (a
// device plugin or a privileged container gives it), then fallback, the node
// net-setup makes in the run volume owned by the QEMU uid (a container whose
// /dev/net/tun is missing or not opened by this uid).
func Devices(fallback string) []string { return []string{"/dev/net/tun", fallback} }

// Open opens dev (a tun clone device) and attaches it to the existing tap
// name with flags. The file is close-on-exec; ExtraFiles passes it anyway.
func Open(dev, name string, flags uint16) (*os.File, error) {
	if len(name) >= unix.IFNAMSIZ || name == "" {
		return nil, fmt.Errorf("tap name %q: must be 1 to %d characters", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dev, err)
	}
	req, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap name %q: %w", name, err)
	}
	req.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, req); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach to tap %s (TUNSETIFF %#x on %s): %w%s", name, flags, dev, err, hint(err))
	}
	return os.NewFile(uintptr(fd), dev+":"+name), nil
}

func hint(err error) string {
	switch {
	case errors.Is(err, unix.EPERM):
		return " (the tap's owner must be this uid: net-setup's TAP_UID/TAP_GID)"
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
	req, err := unix.NewIfreq("")
	if err != nil {
		return 0, fmt.Errorf("TUNGETIFF: %w", err)
	}
	if err := unix.IoctlIfreq(int(f.Fd()), unix.TUNGETIFF, req); err != nil {
		return 0, fmt.Errorf("TUNGETIFF: %w", err)
	}
	return req.Uint16(), nil
}
