package datadisk

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/berth-vm/berth/common/stage"
)

// Check compares every disk with the plan and changes nothing: one line per
// difference (a missing disk or volume, a file that is not the disk, a size
// other than the disk's, a device smaller than it). The error is for a state
// that could not be read.
func (p Plan) Check(ctx context.Context, timeout time.Duration) ([]string, error) {
	var diffs []string
	for _, d := range p.Disks {
		path := p.Path(d)
		if err := p.CheckVolume(d); err != nil {
			if !stage.IsBadInput(err) {
				return nil, err
			}
			diffs = append(diffs, fmt.Sprintf("data disk %s: its volume directory %s is not there (%v)", d.Name, d.VolumeDir(p.Dir), err))
			continue
		}
		s, err := p.Observe(ctx, d, QemuImg, timeout)
		if err != nil {
			return nil, err
		}
		switch {
		case !s.Found:
			diffs = append(diffs, fmt.Sprintf("data disk %s: %s does not exist", d.Name, path))
		case s.Wrong != "":
			diffs = append(diffs, fmt.Sprintf("data disk %s: %s is %s", d.Name, path, s.Wrong))
		case d.Block() && s.Size < d.Bytes:
			diffs = append(diffs, fmt.Sprintf("data disk %s: the device %s is %d bytes, smaller than its size %s = %d bytes", d.Name, path, s.Size, d.Size, d.Bytes))
		case !d.Block() && s.Size != d.Bytes:
			diffs = append(diffs, fmt.Sprintf("data disk %s: %s is %d bytes, its size in %s is %s = %d bytes", d.Name, path, s.Size, "DATA_DISKS", d.Size, d.Bytes))
		}
	}
	return diffs, nil
}

// Describe prints, for --dry-run, what is at each disk's path and what Apply
// would do, reading only (headers and statfs; no qemu-img).
func (p Plan) Describe(ctx context.Context, w io.Writer) {
	for _, d := range p.Disks {
		a, s, err := p.decide(ctx, d, Header, 0)
		path := p.Path(d)
		switch {
		case err != nil:
			fmt.Fprintf(w, "  data disk %s: refused: %v\n", d.Name, err)
		case a == Create:
			fmt.Fprintf(w, "  data disk %s missing: created with qemu-img create -f %s (%d bytes) at %s, then linked into place; %s\n", d.Name, d.Format, d.Bytes, path, s.Fit)
		case a == Grow:
			fmt.Fprintf(w, "  data disk %s is %d bytes: grown to %d with qemu-img resize; %s\n", d.Name, s.Size, d.Bytes, s.Fit)
		case a == GrowLater:
			fmt.Fprintf(w, "  data disk %s is %d bytes: NOT grown to %d, the volume has no room (a warning; vmm grows it once it has): %s\n", d.Name, s.Size, d.Bytes, s.Fit)
		case a == Keep:
			fmt.Fprintf(w, "  data disk %s exists (%s, %d bytes): kept, never overwritten\n", d.Name, d.Format, s.Size)
		case a == UseDevice:
			fmt.Fprintf(w, "  data disk %s: block device of %d bytes (at least %d): used as it is, never written\n", d.Name, s.Size, d.Bytes)
		}
	}
}
