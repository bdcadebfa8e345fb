package datadisk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/diskroom"
	"github.com/berth-vm/berth/init/imgcheck"
	"golang.org/x/sys/unix"
)

// Depth says how far Observe looks at a qcow2 file.
type Depth int

const (
	// Header reads the file's header only (--dry-run: no qemu-img).
	Header Depth = iota
	// QemuImg also validates `qemu-img info -f qcow2` (Apply, --check).
	QemuImg
)

// CheckVolume refuses a Filesystem disk whose volume directory
// (DATA_DISK_DIR/<name>) is missing, a symlink or not a directory: exit 2
// naming DATA_DISKS (the chart mounts each disk's volume there).
func (p Plan) CheckVolume(d disks.Disk) error {
	if d.Block() {
		return nil
	}
	err := stage.CheckVolumeDir(DirVar, d.VolumeDir(p.Dir))
	var ie *stage.InputError
	if errors.As(err, &ie) {
		return stage.BadInputf(disks.Var, p.Value, "disk %s: its volume directory %s %s", d.Name, d.VolumeDir(p.Dir), ie.Allowed)
	}
	return err
}

// Observe reads what is at disk d's path, never following a symlink and never
// blocking on a FIFO. The error is for a state that could not be read (a
// volume that cannot be statfs'ed, qemu-img that did not run or answer); a
// file that is not the disk is State.Wrong.
func (p Plan) Observe(ctx context.Context, d disks.Disk, depth Depth, timeout time.Duration) (State, error) {
	if d.Block() {
		return observeDevice(p.Path(d))
	}
	path := p.Path(d)
	fit, err := diskroom.Measure(d.VolumeDir(p.Dir), path, d.Format, d.Bytes)
	if err != nil {
		return State{}, fmt.Errorf("data disk %s: %w", d.Name, err)
	}
	s := State{Fit: fit}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return s, nil
	} else if err != nil {
		return State{}, fmt.Errorf("data disk %s: %w", d.Name, err)
	}
	s.Found = true
	wrong := func(err error) (State, error) {
		var nof *fsutil.NotOwnFileError
		if errors.As(err, &nof) {
			s.Wrong = nof.Found
			return s, nil
		}
		return State{}, fmt.Errorf("data disk %s: %w", d.Name, err)
	}
	// A file of another uid is not one image-fetch made (nor one QEMU, as
	// this uid, could open for writing).
	if err := fsutil.CheckOwnFileOf(path, os.Geteuid()); err != nil {
		return wrong(err)
	}
	f, err := fsutil.Open(path)
	if err != nil {
		return wrong(err)
	}
	hdr := make([]byte, 64<<10)
	n, rerr := io.ReadFull(f, hdr)
	fi, serr := f.Stat()
	f.Close()
	if rerr != nil && !errors.Is(rerr, io.ErrUnexpectedEOF) && !errors.Is(rerr, io.EOF) {
		return State{}, fmt.Errorf("data disk %s: read %s: %w", d.Name, path, rerr)
	}
	if serr != nil {
		return State{}, fmt.Errorf("data disk %s: %w", d.Name, serr)
	}
	hdr = hdr[:n]
	if d.Format == imgcheck.Raw {
		// A raw disk's bytes are the guest's: whatever they look like (the
		// guest may write a qcow2 header into its own disk), QEMU opens the
		// file with format=raw and never probes it.
		s.Size = uint64(fi.Size())
		return s, nil
	}
	format, err := imgcheck.SniffFormat(hdr, fi.Size())
	switch {
	case err != nil:
		s.Wrong = "a file refused as a qcow2 disk (" + err.Error() + ")"
		return s, nil
	case format != imgcheck.QCOW2:
		s.Wrong = "not a qcow2 file (no qcow2 header: raw data)"
		return s, nil
	}
	// The virtual size: the header's big-endian size at byte 24 (SniffFormat
	// parsed the header, so it is there).
	s.Size = binary.BigEndian.Uint64(hdr[24:32])
	if depth == Header {
		return s, nil
	}
	if err := fsutil.CheckOwnFile(path); err != nil { // qemu-img follows symlinks
		return wrong(err)
	}
	out, err := imgcheck.Info(ctx, path, imgcheck.QCOW2, timeout)
	var refused *imgcheck.RefusedError
	if errors.As(err, &refused) {
		s.Wrong = "a file qemu-img refuses as a qcow2 disk (" + refused.Reason + ")"
		return s, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("data disk %s: %w", d.Name, err)
	}
	img, err := imgcheck.CheckInfo(out, imgcheck.QCOW2)
	if err != nil {
		s.Wrong = "a qcow2 a disk must not be (" + err.Error() + ")"
		return s, nil
	}
	s.Size = img.VirtualSize
	return s, nil
}

// observeDevice reads a Block disk's device: a block device (not a symlink
// to one, not a regular file) and its size (BLKGETSIZE64). It is opened
// read-only and nothing is written to it.
func observeDevice(path string) (State, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("block disk %s: %w", path, err)
	}
	s := State{Found: true}
	if m := fi.Mode(); m&fs.ModeDevice == 0 || m&fs.ModeCharDevice != 0 {
		s.Wrong = fsutil.Describe(m)
		if m&fs.ModeCharDevice != 0 {
			s.Wrong = "a character device"
		}
		return s, nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return State{}, fmt.Errorf("block disk: open %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return State{}, fmt.Errorf("block disk: stat %s: %w", path, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFBLK { // swapped since the lstat
		s.Wrong = "not a block device"
		return s, nil
	}
	size, err := unix.IoctlGetUint64(fd, unix.BLKGETSIZE64)
	if err != nil {
		return State{}, fmt.Errorf("block disk %s: BLKGETSIZE64: %w", path, err)
	}
	s.Size = size
	return s, nil
}
