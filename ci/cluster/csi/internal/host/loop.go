package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoopFor is the loop device (/dev/loopN) whose backing file is file, or "" when there is none.
// The kernel's own record is read (/sys/block/loopN/loop/backing_file, the full path), not
// losetup's listing, which truncates long names.
func LoopFor(file string) (string, error) {
	return loopFor("/sys/block", file)
}

func loopFor(sysBlock, file string) (string, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", fmt.Errorf("listing loop devices: %w", err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "loop", "backing_file"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // not attached
		}
		if err != nil {
			return "", fmt.Errorf("reading %s's backing file: %w", e.Name(), err)
		}
		if strings.TrimSuffix(string(b), "\n") == file {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", nil
}

// AttachLoop returns file's loop device, attaching a free one when it has none.
func AttachLoop(ctx context.Context, file string) (string, error) {
	dev, err := LoopFor(file)
	if err != nil || dev != "" {
		return dev, err
	}
	out, err := Run(ctx, "losetup", "--find", "--show", file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// RefreshLoop makes dev take its backing file's new size (losetup -c).
func RefreshLoop(ctx context.Context, dev string) error {
	_, err := Run(ctx, "losetup", "--set-capacity", dev)
	return err
}

// DetachLoop detaches dev; the kernel defers it while something still holds the device open.
func DetachLoop(ctx context.Context, dev string) error {
	_, err := Run(ctx, "losetup", "--detach", dev)
	return err
}
