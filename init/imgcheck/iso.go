package imgcheck

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
)

// isoMagic is the ISO 9660 standard identifier, at byte 1 of the first volume
// descriptor (sector 16 of 2048 bytes). UDF images made to boot (Windows'
// installers among them) carry the same ISO 9660 bridge.
const (
	isoMagic       = "CD001"
	isoMagicOffset = 16*2048 + 1
)

// CheckISO decides whether a file may be attached as a read-only CD-ROM: a
// raw image (by the same header checks and qemu-img info as a raw base) that
// is ISO 9660 (its first volume descriptor says CD001). A qcow2, another
// format, or a raw file that is no ISO (a disk image, an HTML page) is a
// *RefusedError; NotAnImage is set only when the file is no image at all
// (perhaps an error page served in its place).
func CheckISO(ctx context.Context, path string, timeout time.Duration) (Image, error) {
	img, err := Check(ctx, path, timeout)
	if err != nil {
		return Image{}, err
	}
	if img.Format != Raw {
		return Image{}, refused(path, "is a %s image, not an ISO 9660 CD-ROM image", img.Format)
	}
	f, err := fsutil.Open(path) // a shared cache: never through a symlink
	if err != nil {
		return Image{}, fmt.Errorf("check ISO: %w", err)
	}
	defer f.Close()
	var magic [len(isoMagic)]byte
	if _, err := f.ReadAt(magic[:], isoMagicOffset); err != nil && err != io.EOF {
		return Image{}, fmt.Errorf("check ISO %s: %w", path, err)
	}
	if string(magic[:]) != isoMagic {
		return Image{}, refused(path, "is not an ISO 9660 CD-ROM image (no %q at byte %#x): a raw disk image or another file", isoMagic, isoMagicOffset)
	}
	return img, nil
}
