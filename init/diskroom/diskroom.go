// Package diskroom says whether a disk file fits its volume once the guest
// has written all of it: the rule image-fetch applies before it creates or
// grows a disk (the pet overlay and every Filesystem data disk), and vmm
// before it grows one online (common/disks: Usage, FullAllocation, Room).
package diskroom

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/berth-vm/berth/common/disks"
)

// Fit is what a volume gives a disk file and what the file needs.
type Fit struct {
	Dir   string // the volume's directory (statfs)
	Avail uint64 // f_bavail × f_frsize: what the volume still gives a user that is not root
	Used  uint64 // st_blocks × 512 of the disk file now (0 for a new one)
	Need  uint64 // disks.FullAllocation of the format at the wanted size
}

// OK says whether the volume holds the disk at full allocation.
func (f Fit) OK() bool { return disks.Room(f.Avail, f.Used, f.Need) }

// Gives is what the volume gives the file in all: what is free and what the
// file takes already.
func (f Fit) Gives() uint64 { return f.Avail + f.Used }

// String names both figures, for the refusal and the warning.
func (f Fit) String() string {
	return fmt.Sprintf("the volume at %s gives the disk %d bytes (%s: %s free to non-root users + %s the file takes), it needs %d bytes (%s) once the guest has written all of it",
		f.Dir, f.Gives(), IEC(f.Gives()), IEC(f.Avail), IEC(f.Used), f.Need, IEC(f.Need))
}

// Measure is the Fit of the disk file at path (which may not exist yet) of
// format ("qcow2" or "raw") at size bytes, on the volume holding dir. path is
// read with lstat only (never followed).
func Measure(dir, path, format string, size uint64) (Fit, error) {
	avail, _, err := disks.Usage(dir)
	if err != nil {
		return Fit{}, err
	}
	f := Fit{Dir: dir, Avail: avail, Need: disks.FullAllocation(format, size)}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return f, nil
	case err != nil:
		return Fit{}, fmt.Errorf("stat %s: %w", path, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() {
		f.Used = uint64(st.Blocks) * 512
	}
	return f, nil
}

// IEC prints a byte count in binary units (KiB, MiB, GiB, TiB), one decimal.
func IEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i])
}
