package fetch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/init/imgcheck"
	"github.com/berth-vm/berth/init/overlay"
	"github.com/berth-vm/berth/init/qemuimg"
)

// check compares the live state with the plan and changes nothing: the base
// and each ISO are in place, match their records (fully re-hashed) and pins,
// pass their checks (entry.check); the pet disk exists, its record names this
// base (or says blank), it is backed by it (or by nothing), and it is at
// least DISK_SIZE. It returns one line per difference. The
// error is for a live state that could not be read: qemu-img did not run or
// answer (an image qemu-img refuses is a difference), or ctx ended.
func (p Plan) check(ctx context.Context, timeout time.Duration) ([]string, error) {
	var diffs []string
	differs := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	// unreadable tells a qemu-img that did not run or answer (the live state
	// is unknown) from one that refused the file (a difference).
	unreadable := func(err error) bool {
		var re *imgcheck.RefusedError
		var ee *qemuimg.ExitError
		return ctx.Err() != nil || !errors.As(err, &re) && !errors.As(err, &ee) && !errors.As(err, new(*fsutil.NotOwnFileError))
	}

	var sum string
	var img imgcheck.Image
	if !p.Blank {
		var more []string
		var err error
		sum, img, more, err = p.base().check(ctx, timeout, unreadable)
		if err != nil {
			return nil, err
		}
		diffs = append(diffs, more...)
	}
	for _, e := range p.cdroms() {
		_, _, more, err := e.check(ctx, timeout, unreadable)
		if err != nil {
			return nil, err
		}
		diffs = append(diffs, more...)
	}

	rec, exists, err := overlay.ReadRecord(p.OverlayPath(), p.OverlayRecordPath())
	switch {
	case err != nil:
		differs("%v", err)
	case !exists:
		differs("pet disk %s does not exist", p.OverlayPath())
	case rec.Blank != p.Blank:
		differs("pet disk record says blank=%v, IMG_SOURCE empty is %v", rec.Blank, p.Blank)
	default:
		if !p.Blank && (rec.Base != p.Target || (sum != "" && rec.SHA256 != sum)) {
			differs("pet disk record names base %s sha256 %s, the base is %s sha256 %s", rec.Base, rec.SHA256, p.Target, sum)
		}
		info, err := overlay.Info(ctx, p.OverlayPath(), timeout)
		if err != nil {
			if unreadable(err) {
				return nil, fmt.Errorf("check pet disk: %w", err)
			}
			differs("%v", err)
			break
		}
		wantBacking := p.BasePath()
		if p.Blank {
			wantBacking = ""
		}
		if info.FullBackingFilename != wantBacking {
			differs("pet disk backing file is %q, want %q", info.FullBackingFilename, wantBacking)
		}
		if img.Format != "" && info.BackingFormat != img.Format {
			differs("pet disk backing format is %q, the base is %s", info.BackingFormat, img.Format)
		}
		if p.DiskSize > uint64(info.VirtualSize) {
			differs("pet disk is %d bytes, DISK_SIZE is %d", info.VirtualSize, p.DiskSize)
		}
	}
	return diffs, nil
}
