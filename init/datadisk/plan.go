// Package datadisk is image-fetch's part for the VM's data disks (DATA_DISKS,
// common/disks): each Filesystem disk is created when missing (qemu-img
// create, a temporary name linked into place: never overwritten), grown when
// smaller than its size and its volume has room, and never shrunk; each Block
// disk is checked to be a block device at least its size, and never written.
//
// The decision for one disk is Decide, pure: what is there now (a State,
// read by Observe without following symlinks) and the spec give an Action or
// a refusal (exit 2 naming DATA_DISKS).
package datadisk

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/diskroom"
)

// DirVar is the variable naming the directory the Filesystem disks' volumes
// are mounted under.
const DirVar = "DATA_DISK_DIR"

// Vars are the variables the data disks read, for -h.
func Vars() []stage.Var {
	return []stage.Var{
		{Name: disks.Var, Help: "data disks: a JSON array of {name, size, volumeMode, format, bus, cache, discard} (optional; common/disks)"},
		{Name: DirVar, Default: disks.DefaultDir, Help: "where each Filesystem data disk's volume is mounted, at <dir>/<name> (absolute, clean path)"},
	}
}

// Plan is the data disks to ensure.
type Plan struct {
	// Value is DATA_DISKS as written, for messages.
	Value string
	Disks []disks.Disk
	// Dir is DATA_DISK_DIR.
	Dir string
	// BlockDir is where the Block disks' devices are: disks.BlockDir in a pod;
	// tests point it elsewhere (there is no variable for it).
	BlockDir string
}

// FromEnv reads DATA_DISKS and DATA_DISK_DIR; errors are exit 2.
func FromEnv(env stage.Env) (Plan, error) {
	p := Plan{BlockDir: disks.BlockDir}
	p.Value, _ = env.Lookup(disks.Var)
	var err error
	if p.Disks, err = disks.Parse(p.Value); err != nil {
		return Plan{}, err
	}
	if p.Dir, err = env.Path(DirVar, disks.DefaultDir); err != nil {
		return Plan{}, err
	}
	return p, nil
}

// Path is where disk d is: the file on its volume, or its block device.
func (p Plan) Path(d disks.Disk) string {
	if d.Block() {
		return filepath.Join(p.BlockDir, d.Name)
	}
	return d.Path(p.Dir)
}

// tmpPath is the name a new disk file is made under before it is linked into place.
func (p Plan) tmpPath(d disks.Disk) string {
	dir, name := filepath.Split(p.Path(d))
	return filepath.Join(dir, "."+name+".tmp")
}

// String prints the plan for --dry-run.
func (p Plan) String() string {
	if len(p.Disks) == 0 {
		return "data:     none (DATA_DISKS is empty)\n"
	}
	var b strings.Builder
	for _, d := range p.Disks {
		fmt.Fprintf(&b, "data:     %s: %s (%s, %s = %d bytes, %s)\n", d.Name, p.Path(d), d.Format, d.Size, d.Bytes, d.VolumeMode)
	}
	return b.String()
}

// Action is what Apply does to one disk.
type Action int

const (
	// Keep: the disk is there at its size.
	Keep Action = iota
	// Create the missing file (the volume has room).
	Create
	// Grow the smaller file to its size (the volume has room).
	Grow
	// GrowLater: the file is smaller than its size but its volume has no
	// room for it: kept as it is, with a warning; vmm grows it once there is.
	GrowLater
	// UseDevice: the Block disk's device is at least its size.
	UseDevice
)

func (a Action) String() string {
	return [...]string{"kept", "created", "grown", "growth deferred", "device used as it is"}[a]
}

// State is what is at a disk's path now (Observe).
type State struct {
	// Found: something is at the path.
	Found bool
	// Wrong says why what is there is not this disk ("" when it is): a
	// symlink, a FIFO, another format, a qcow2 with a backing file, a
	// regular file where a device belongs...
	Wrong string
	// Size is the disk's virtual size (a file) or the device's size (Block).
	Size uint64
	// Fit is the volume's room for the disk at its size (Filesystem only).
	Fit diskroom.Fit
}

// Decide is what to do with disk d found in state s, or a refusal (exit 2
// naming DATA_DISKS; value is its text). Nothing is ever shrunk, overwritten
// or written to on a Block device.
func Decide(value string, d disks.Disk, path string, s State) (Action, error) {
	refuse := func(format string, args ...any) error {
		return stage.BadInputf(disks.Var, value, "disk %s: "+format, append([]any{d.Name}, args...)...)
	}
	if d.Block() {
		switch {
		case !s.Found:
			return 0, refuse("%s does not exist: a Block disk is its PVC's device, mapped there by volumeDevices", path)
		case s.Wrong != "":
			return 0, refuse("%s is %s, not the block device of a Block volume: refused, left as it is", path, s.Wrong)
		case s.Size < d.Bytes:
			return 0, refuse("the device %s is %d bytes (%s), smaller than its size %s = %d bytes: give it a larger volume (a device is never written by image-fetch)", path, s.Size, diskroom.IEC(s.Size), d.Size, d.Bytes)
		}
		return UseDevice, nil
	}
	switch {
	case !s.Found && !s.Fit.OK():
		return 0, refuse("%s cannot be created: the volume is smaller than the disk needs: %s (give the PVC more room)", path, s.Fit)
	case !s.Found:
		return Create, nil
	case s.Wrong != "":
		return 0, refuse("%s is %s, not a %s disk of image-fetch's: refused, left as it is (move it away if it is not the disk)", path, s.Wrong, d.Format)
	case s.Size > d.Bytes:
		return 0, refuse("size %s is %d bytes, smaller than the disk %s's %d bytes: disks are never shrunk", d.Size, d.Bytes, path, s.Size)
	case s.Size == d.Bytes:
		return Keep, nil
	case !s.Fit.OK():
		return GrowLater, nil
	}
	return Grow, nil
}
