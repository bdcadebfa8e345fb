package disks

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Usage is statfs(2) of a disk's volume, in bytes: Total its size
// (f_blocks), Avail what it still gives a user that is not root (f_bavail:
// ext4's reserved 5 % are not counted; QEMU and image-fetch are not root) and
// Used what is taken (f_blocks - f_bfree). Avail is the first argument of Room.
type Usage struct {
	Total, Avail, Used uint64
}

// VolumeUsage is Usage of the filesystem holding dir.
func VolumeUsage(dir string) (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Usage{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	frsize := uint64(st.Frsize)
	if frsize == 0 {
		frsize = uint64(st.Bsize)
	}
	return Usage{Total: st.Blocks * frsize, Avail: st.Bavail * frsize, Used: (st.Blocks - st.Bfree) * frsize}, nil
}
