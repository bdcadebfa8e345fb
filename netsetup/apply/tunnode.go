package apply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
)

// TunNodeName is the tun device node net-setup makes in the run dir for a vm
// container that has no /dev/net/tun (docs/design.md, "Devices and privilege").
const TunNodeName = stage.TunNodeName

// tunDev is the tun device's number (Documentation/admin-guide/devices.txt),
// and tunMode the node's permissions: only the QEMU uid opens it.
var tunDev = unix.Mkdev(10, 200)

const tunMode = 0o600

// tunNode is the tun device node in the run dir: a character device 10:200
// owned by the QEMU uid and gid, mode 0600. Anything else at its path (a
// symlink, a FIFO, another device) is refused and left as it is.
type tunNode struct {
	path     string
	uid, gid int
}

func (n tunNode) diff() ([]string, error) {
	var st unix.Stat_t
	err := unix.Lstat(n.path, &st)
	switch {
	case errors.Is(err, unix.ENOENT):
		return []string{fmt.Sprintf("tun node %s is missing", n.path)}, nil
	case err != nil:
		return nil, fmt.Errorf("stat tun node %s: %w", n.path, err)
	}
	if err := checkTunStat(n.path, &st); err != nil {
		return []string{err.Error()}, nil
	}
	var out []string
	if int(st.Uid) != n.uid || int(st.Gid) != n.gid {
		out = append(out, fmt.Sprintf("tun node %s is owned by %d:%d, want %d:%d", n.path, st.Uid, st.Gid, n.uid, n.gid))
	}
	if perm := st.Mode & 0o7777; perm != tunMode {
		out = append(out, fmt.Sprintf("tun node %s has mode %04o, want %04o", n.path, perm, tunMode))
	}
	return out, nil
}

// ensure fixes what diff finds: it makes the node, or sets its owner and
// mode through a descriptor opened with O_PATH|O_NOFOLLOW and checked to be
// the node, so a symlink or another file swapped in meanwhile is never
// changed.
func (n tunNode) ensure(context.Context, *slog.Logger) error {
	if err := CheckTunNode(n.path); err != nil {
		return err
	}
	d, err := n.diff()
	if err != nil || len(d) == 0 {
		return err
	}
	if err := unix.Mknod(n.path, unix.S_IFCHR|tunMode, int(tunDev)); err != nil && !errors.Is(err, unix.EEXIST) {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("make tun node %s: %w (net-setup needs CAP_MKNOD, or give the vm container /dev/net/tun through a device plugin)", n.path, err)
		}
		return fmt.Errorf("make tun node %s: %w", n.path, err)
	}
	fd, err := unix.Open(n.path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open tun node %s: %w", n.path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat tun node %s: %w", n.path, err)
	}
	if err := checkTunStat(n.path, &st); err != nil {
		return err
	}
	if err := unix.Fchownat(fd, "", n.uid, n.gid, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("chown tun node %s to %d:%d: %w", n.path, n.uid, n.gid, err)
	}
	// fchmod does not take an O_PATH descriptor, and fchmodat ignores
	// AT_EMPTY_PATH before Linux 6.6: chmod the descriptor's own inode
	// through /proc (the magic link resolves to it, never to a path).
	if err := unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), tunMode); err != nil {
		return fmt.Errorf("chmod tun node %s: %w", n.path, err)
	}
	return nil
}

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
	default:
		found = fsutil.Describe(fsutil.StatMode(st))
	}
	return fmt.Errorf("%s is %s, not the tun device node (c 10:200): %w; refusing to use it (left as it is; remove it if it is not yours)",
		path, found, fsutil.ErrNotOwnFile)
}
