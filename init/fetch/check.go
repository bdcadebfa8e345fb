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
// is in place, matches its record (fully re-hashed) and the pin, passes the
// image check; the pet disk exists, its record names this base, it is backed
// by it, and it is at least DISK_SIZE. It returns one line per difference. The
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

	recorded, err := readRecord(p)
	if err != nil {
		differs("base record: %v", err)
	}
	sum, err := fsutil.HashFile(ctx, p.BasePath())
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("check: %w", ctx.Err())
	case err != nil:
		differs("base: %v", err)
	case recorded != "" && sum != recorded:
		differs("base %s has sha256 %s, its record says %s", p.BasePath(), sum, recorded)
	case p.SHA256 != "" && sum != p.SHA256:
		differs("base %s has sha256 %s, IMG_SHA256 is %s", p.BasePath(), sum, p.SHA256)
	}
	var img imgcheck.Image
	if err == nil {
		if err = fsutil.CheckOwnFile(p.BasePath()); err != nil { // qemu-img follows symlinks
			differs("base: %v", err)
		} else if img, err = imgcheck.Check(ctx, p.BasePath(), timeout); err != nil {
			if unreadable(err) {
				return nil, fmt.Errorf("check base: %w", err)
			}
			differs("%v", err)
		}
	}

	rec, exists, err := overlay.ReadRecord(p.OverlayPath(), p.OverlayRecordPath())
	switch {
	case err != nil:
		differs("%v", err)
	case !exists:
		differs("pet disk %s does not exist", p.OverlayPath())
	default:
		if rec.Base != p.Target || (sum != "" && rec.SHA256 != sum) {
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
		if info.FullBackingFilename != p.BasePath() {
			differs("pet disk backing file is %q, want %q", info.FullBackingFilename, p.BasePath())
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
