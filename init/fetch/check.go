package fetch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/init/imgcheck"
	"github.com/berth-vm/berth/init/overlay"
)

// Check verifies the live state against the plan and changes nothing: the
// base is in place, matches its record (fully re-hashed) and the pin, passes
// the image check; the pet disk exists, its record names this base, it is
// backed by it, and it is at least DISK_SIZE. It returns every problem found.
func Check(ctx context.Context, p Plan, timeout time.Duration) error {
	return p.notOwn(check(ctx, p, timeout))
}

func check(ctx context.Context, p Plan, timeout time.Duration) error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	recorded, err := readRecord(p)
	if err != nil {
		bad("base record: %v", err)
	}
	sum, err := fsutil.HashFile(ctx, p.BasePath())
	switch {
	case err != nil:
		bad("base: %v", err)
	case recorded != "" && sum != recorded:
		bad("base %s has sha256 %s, its record says %s", p.BasePath(), sum, recorded)
	case p.SHA256 != "" && sum != p.SHA256:
		bad("base %s has sha256 %s, IMG_SHA256 is %s", p.BasePath(), sum, p.SHA256)
	}
	var img imgcheck.Image
	if err == nil {
		if err = fsutil.CheckOwnFile(p.BasePath()); err != nil { // qemu-img follows symlinks
			bad("base: %v", err)
		} else if img, err = imgcheck.Check(ctx, p.BasePath(), timeout); err != nil {
			bad("%v", err)
		}
	}

	rec, exists, err := overlay.ReadRecord(p.OverlayPath(), p.OverlayRecordPath())
	switch {
	case err != nil:
		bad("%v", err)
	case !exists:
		bad("pet disk %s does not exist", p.OverlayPath())
	default:
		if rec.Base != p.Target || (sum != "" && rec.SHA256 != sum) {
			bad("pet disk record names base %s sha256 %s, the base is %s sha256 %s", rec.Base, rec.SHA256, p.Target, sum)
		}
		info, err := overlay.Info(ctx, p.OverlayPath(), timeout)
		if err != nil {
			bad("%v", err)
			break
		}
		if info.FullBackingFilename != p.BasePath() {
			bad("pet disk backing file is %q, want %q", info.FullBackingFilename, p.BasePath())
		}
		if img.Format != "" && info.BackingFormat != img.Format {
			bad("pet disk backing format is %q, the base is %s", info.BackingFormat, img.Format)
		}
		if p.DiskSize > uint64(info.VirtualSize) {
			bad("pet disk is %d bytes, DISK_SIZE is %d", info.VirtualSize, p.DiskSize)
		}
	}
	if len(problems) > 0 {
		return errors.New("check: " + strings.Join(problems, "; "))
	}
	return nil
}
