// Package disks is the contract for a VM's data disks (vms.<name>.disks in the
// chart): the DATA_DISKS list the chart writes and image-fetch and vmm read,
// where each disk lives inside the pod, and how much volume a disk needs when
// the guest has written all of it. The pet root disk keeps its own variables
// (DISK_DIR, DISK_SIZE); FullAllocation and Room apply to it as well.
package disks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/berth-vm/berth/common/quantity"
	"github.com/berth-vm/berth/common/stage"
)

// The variable that carries the list, and where the disks are in the pod.
const (
	// Var is the environment variable: a JSON array of Disk.
	Var = "DATA_DISKS"
	// DefaultDir: a Filesystem disk's volume is mounted at DefaultDir/<name>
	// (the chart mounts Berth's own subdirectory of the volume there) and the
	// disk is the file <name>.qcow2 or <name>.raw in it.
	DefaultDir = "/var/lib/berth/disks"
	// BlockDir: a Block disk is the device BlockDir/<name> (volumeDevices).
	BlockDir = "/dev/berth"
	// RootSerial is the pet root disk's serial (/dev/disk/by-id/virtio-root);
	// no data disk may take it.
	RootSerial = "root"
	// MaxNameLen: the name is the disk's serial, and virtio-blk carries at
	// most 20 bytes of serial (VIRTIO_BLK_ID_BYTES).
	MaxNameLen = 20
	// MaxSize is the largest disk (qcow2's own limit, as DISK_SIZE's).
	MaxSize = 2048 << 40
)

// The allowed values, the first of each being the default.
var (
	VolumeModes = []string{"Filesystem", "Block"}
	Formats     = []string{"qcow2", "raw"}
	Buses       = []string{"virtio-blk", "virtio-scsi"}
	Caches      = []string{"none", "writeback", "writethrough", "directsync"}
	Discards    = []string{"unmap", "ignore"}
)

// Disk is one data disk.
type Disk struct {
	// Name is the disk's serial: the guest finds it at
	// /dev/disk/by-id/virtio-<name> (virtio-blk) or
	// /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_<name> (virtio-scsi).
	Name string `json:"name"`
	// Size is the disk's virtual size (common/quantity: bytes or Ki, Mi, Gi, Ti).
	Size string `json:"size"`
	// VolumeMode: Filesystem (a file on the volume) or Block (the volume's
	// block device passed to QEMU as it is).
	VolumeMode string `json:"volumeMode,omitempty"`
	// Format of the file on a Filesystem volume: qcow2 or raw. A Block disk is raw.
	Format string `json:"format,omitempty"`
	// Bus: virtio-blk or virtio-scsi.
	Bus string `json:"bus,omitempty"`
	// Cache: QEMU's cache mode for the disk.
	Cache string `json:"cache,omitempty"`
	// Discard: unmap (the guest's TRIM frees space on the volume) or ignore.
	Discard string `json:"discard,omitempty"`

	// Bytes is Size in bytes (set by Parse).
	Bytes uint64 `json:"-"`
}

var nameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// AllowedName says what a disk's name may be, for errors.
const AllowedName = "a DNS label of at most 20 characters (a-z, 0-9, '-', starting with a letter): it is the disk's serial"

// Parse reads the DATA_DISKS value: a JSON array of disks, unknown keys
// refused, defaults filled in, every field checked. An empty value is no data
// disks. Errors are stage.BadInput naming DATA_DISKS.
func Parse(value string) ([]Disk, error) {
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(value)))
	dec.DisallowUnknownFields()
	var list []Disk
	if err := dec.Decode(&list); err != nil {
		return nil, stage.BadInputf(Var, value, "is not a JSON array of disks {name, size, volumeMode, format, bus, cache, discard}: %v", err)
	}
	if dec.More() {
		return nil, stage.BadInputf(Var, value, "holds more than one JSON value")
	}
	seen := map[string]bool{}
	for i := range list {
		d := &list[i]
		if err := d.check(); err != nil {
			return nil, stage.BadInputf(Var, value, "disk %d: %v", i, err)
		}
		if seen[d.Name] {
			return nil, stage.BadInputf(Var, value, "disk %d: the name %q is taken by another disk (names are serials: each is one disk)", i, d.Name)
		}
		seen[d.Name] = true
	}
	return list, nil
}

func (d *Disk) check() error {
	if len(d.Name) > MaxNameLen || !nameRE.MatchString(d.Name) {
		return fmt.Errorf("name %q: want %s", d.Name, AllowedName)
	}
	if d.Name == RootSerial {
		return fmt.Errorf("name %q is the root disk's serial", d.Name)
	}
	n, err := quantity.ParseBytes(d.Size)
	if err != nil {
		return fmt.Errorf("size: %v", err)
	}
	if n == 0 || n%512 != 0 || n > MaxSize {
		return fmt.Errorf("size %q: want a multiple of 512 bytes from 512 to 2048Ti", d.Size)
	}
	d.Bytes = n
	if d.VolumeMode == "Block" {
		if d.Format != "" && d.Format != "raw" {
			return fmt.Errorf("format %q: a Block disk is the device itself (raw)", d.Format)
		}
		d.Format = "raw"
	}
	for _, f := range []struct {
		name  string
		value *string
		allow []string
	}{
		{"volumeMode", &d.VolumeMode, VolumeModes},
		{"format", &d.Format, Formats},
		{"bus", &d.Bus, Buses},
		{"cache", &d.Cache, Caches},
		{"discard", &d.Discard, Discards},
	} {
		if *f.value == "" {
			*f.value = f.allow[0]
		}
		if !contains(f.allow, *f.value) {
			return fmt.Errorf("%s %q: want one of %s", f.name, *f.value, strings.Join(f.allow, ", "))
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Block says whether the disk is the volume's block device.
func (d Disk) Block() bool { return d.VolumeMode == "Block" }

// Path is where the disk is inside the pod: the file on its Filesystem
// volume (mounted at dir/<name>, dir being DefaultDir unless a stage is told
// otherwise), or the Block device under BlockDir.
func (d Disk) Path(dir string) string {
	if d.Block() {
		return filepath.Join(BlockDir, d.Name)
	}
	return filepath.Join(dir, d.Name, d.Name+"."+d.Format)
}

// VolumeDir is the directory of a Filesystem disk's volume.
func (d Disk) VolumeDir(dir string) string { return filepath.Join(dir, d.Name) }
