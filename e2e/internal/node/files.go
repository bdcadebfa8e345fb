package node

import (
	"fmt"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Volume is what statfs(2) says of a mounted filesystem, in bytes: its size,
// what is free, and what an unprivileged user (QEMU's uid) may still use
// (free minus root's reserve).
type Volume struct {
	Size, Free, Avail uint64
}

// Statfs reads the filesystem that holds path.
func Statfs(path string) (Volume, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return Volume{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(fs.Frsize)
	return Volume{Size: fs.Blocks * bs, Free: fs.Bfree * bs, Avail: fs.Bavail * bs}, nil
}

// InContainer is path as a process of pid sees it (its mount namespace's
// root, /proc/PID/root): a volume mounted in a container is read from the
// node without entering it.
func InContainer(pid int, path string) string {
	return filepath.Join("/proc", strconv.Itoa(pid), "root", path)
}

// Allocated is the space path's file takes on its filesystem (st_blocks of
// 512 bytes), not its apparent size.
func Allocated(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return uint64(st.Blocks) * 512, nil
}
