package watch

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

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
