package vmm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/qcow2"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/config"
)

// checkDataDisks checks every data disk is what QEMU may open, as checkDisk
// does for the pet overlay: a Filesystem disk is a regular file (never a
// symlink) in its volume's directory (a directory, never a symlink); a qcow2
// one names no backing file or external data file and is not encrypted, so
// QEMU opens that one file and nothing else. A Block disk is a block device
// at disks.BlockDir/<name>, not a symlink to one. Anything else is exit 2
// naming DATA_DISKS and the stage (or the pod's spec) that provides the disk.
func checkDataDisks(c config.Config) error {
	for _, d := range c.DataDisks {
		if err := checkDataDisk(c, d); err != nil {
			return err
		}
	}
	return nil
}

func checkDataDisk(c config.Config, d disks.Disk) error {
	path := d.Path(c.DataDiskDir)
	bad := func(format string, args ...any) error {
		return stage.BadInputf(disks.Var, c.DataDisksText, "disk %q: %s: "+format, append([]any{d.Name, path}, args...)...)
	}
	if d.Block() {
		if p := blockDeviceProblem(path); p != "" {
			return bad("%s", p)
		}
		return nil
	}
	dir := d.VolumeDir(c.DataDiskDir)
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return bad("its volume %s is not mounted (DATA_DISK_DIR/<name>)", dir)
	case err != nil:
		return fmt.Errorf("data disk %s: %w", d.Name, err)
	case !fi.IsDir():
		return bad("its volume %s is %s, not a directory (refused, left as it is)", dir, fsutil.Describe(fi.Mode()))
	}
	if err := config.OwnFile(path); err != nil {
		return bad("%v: image-fetch makes it; run image-fetch first", err)
	}
	if d.Format != "qcow2" {
		return nil
	}
	h, err := qcow2.Read(path)
	switch {
	case err != nil:
		return bad("%v", err)
	case h.HasBackingFile():
		return bad("has a backing file %q: a data disk is one self-contained file", h.BackingFile)
	case h.HasDataFile():
		return bad("has an external data file: a data disk is one self-contained file")
	case h.Encrypted():
		return bad("is encrypted")
	}
	return nil
}

// blockDeviceProblem says why path is not a block device QEMU may open ("" if it is one).
func blockDeviceProblem(path string) string {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such device: a Block disk is the pod's volumeDevices entry at " + path
	case err != nil:
		return err.Error()
	case fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0:
		return "is " + describeDevice(fi.Mode()) + ", not a block device (refused, left as it is)"
	}
	return ""
}

func describeDevice(m fs.FileMode) string {
	if m&fs.ModeCharDevice != 0 {
		return "a character device"
	}
	return fsutil.Describe(m)
}
