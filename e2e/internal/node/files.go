package node

import (
	"fmt"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

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
