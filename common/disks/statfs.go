package disks

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Usage is statfs(2) of the filesystem holding dir: avail is what it still
// gives a user that is not root (f_bavail × f_frsize: ext4's reserved 5 % are
// not counted), total its size (f_blocks × f_frsize). avail is the first
// argument of Room.
func Usage(dir string) (avail, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	frsize := uint64(st.Frsize)
	if frsize == 0 {
		frsize = uint64(st.Bsize)
	}
	return st.Bavail * frsize, st.Blocks * frsize, nil
}
