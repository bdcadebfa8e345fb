package host

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// MakeExt4 makes an ext4 filesystem on file with mkfs.ext4's defaults (/etc/mke2fs.conf): the
// root directory owned by root, mode 0755, lost+found, 5 % of the blocks reserved for root.
func MakeExt4(ctx context.Context, file string) error {
	_, err := Run(ctx, "mkfs.ext4", "-q", file)
	return err
}

// Ext4Bytes is the size of the ext4 filesystem on path (a file or a device): its block count
// times its block size, from dumpe2fs -h.
func Ext4Bytes(ctx context.Context, path string) (int64, error) {
	out, err := Run(ctx, "dumpe2fs", "-h", path)
	if err != nil {
		return 0, err
	}
	return ParseExt4Bytes(out)
}

// ParseExt4Bytes reads "Block count:" and "Block size:" from dumpe2fs -h's output.
func ParseExt4Bytes(dumpe2fs string) (int64, error) {
	var count, size int64
	for _, line := range strings.Split(dumpe2fs, "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch strings.TrimSpace(key) {
		case "Block count":
			dst = &count
		case "Block size":
			dst = &size
		default:
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("dumpe2fs: %s: %q is not a number", strings.TrimSpace(key), strings.TrimSpace(value))
		}
		*dst = n
	}
	if count <= 0 || size <= 0 {
		return 0, fmt.Errorf("dumpe2fs: no block count and block size in its output")
	}
	return count * size, nil
}

// GrowExt4Offline grows the unmounted ext4 filesystem on file to the file's size: e2fsck -f -p
// first, as resize2fs requires.
func GrowExt4Offline(ctx context.Context, file string) error {
	cmd := exec.CommandContext(ctx, "e2fsck", "-f", "-p", file)
	out, err := cmd.CombinedOutput()
	// e2fsck: 0 clean, 1 errors corrected; anything else needs a person.
	if exit, ok := err.(*exec.ExitError); err != nil && (!ok || exit.ExitCode() > 1) {
		return fmt.Errorf("e2fsck -f -p %s: %w: %s", file, err, strings.TrimSpace(string(out)))
	}
	_, err = Run(ctx, "resize2fs", file)
	return err
}

// GrowExt4Online grows the mounted ext4 filesystem on dev to dev's size (resize2fs on a mounted
// filesystem: the kernel's EXT4_IOC_RESIZE_FS, which needs CAP_SYS_RESOURCE).
func GrowExt4Online(ctx context.Context, dev string) error {
	_, err := Run(ctx, "resize2fs", dev)
	return err
}
