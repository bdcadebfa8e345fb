package watch

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Usage is statfs(2) of a volume: Total its size, Avail what it still gives
// QEMU's uid (f_bavail: not the blocks ext4 keeps for root), Used what is
// taken (f_blocks - f_bfree, root's reserve not counted as used).
type Usage struct {
	Total, Avail, Used uint64
}

// volumeUsage is statfs of the filesystem holding dir.
func volumeUsage(dir string) (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Usage{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	return Usage{Total: st.Blocks * bs, Avail: st.Bavail * bs, Used: (st.Blocks - st.Bfree) * bs}, nil
}

// fileUsed is what a disk file takes on its volume (st_blocks × 512), never
// through a symlink.
func fileUsed(path string) (uint64, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file", path)
	}
	return uint64(st.Blocks) * 512, nil
}

// deviceSize is a block device's size now (a grown volume's device is larger).
func deviceSize(path string) (uint64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", path, err)
	}
	return uint64(n), nil
}
