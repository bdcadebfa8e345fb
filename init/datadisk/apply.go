package datadisk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/qemuimg"
)

// decide checks disk d's volume and its temporary name, observes it and
// decides. Every refusal is exit 2 naming DATA_DISKS, before anything of
// this disk is changed.
func (p Plan) decide(ctx context.Context, d disks.Disk, depth Depth, timeout time.Duration) (Action, State, error) {
	if err := p.CheckVolume(d); err != nil {
		return 0, State{}, err
	}
	if !d.Block() {
		if err := fsutil.CheckOwnFileOf(p.tmpPath(d), os.Geteuid()); err != nil {
			var nof *fsutil.NotOwnFileError
			if errors.As(err, &nof) {
				return 0, State{}, stage.BadInputf(disks.Var, p.Value, "disk %s: %s is %s where image-fetch makes the new disk file: refused, left as it is (remove it if it is not yours)", d.Name, nof.Path, nof.Found)
			}
			return 0, State{}, err
		}
	}
	s, err := p.Observe(ctx, d, depth, timeout)
	if err != nil {
		return 0, State{}, err
	}
	a, err := Decide(p.Value, d, p.Path(d), s)
	return a, s, err
}

// Validate decides every disk and changes nothing: image-fetch calls it
// before it downloads anything, so a data disk that will be refused is found
// first.
func (p Plan) Validate(ctx context.Context, timeout time.Duration) error {
	for _, d := range p.Disks {
		if _, _, err := p.decide(ctx, d, QemuImg, timeout); err != nil {
			return err
		}
	}
	return nil
}

// Apply makes every disk true (decided again, on what is there now): creates
// the missing files, grows the smaller ones whose volume has room, warns
// about the others, checks the Block devices. Re-running it after a crash at
// any point converges: a new file is linked into place only once complete.
func (p Plan) Apply(ctx context.Context, log *slog.Logger, timeout time.Duration) error {
	for _, d := range p.Disks {
		a, s, err := p.decide(ctx, d, QemuImg, timeout)
		if err != nil {
			return err
		}
		path := p.Path(d)
		switch a {
		case Keep:
			log.Info("data disk exists, kept", "disk", d.Name, "path", path, "format", d.Format, "virtual_size", s.Size)
		case UseDevice:
			log.Info("data disk is a block device at least its size, used as it is", "disk", d.Name, "path", path, "device_size", s.Size, "size", d.Bytes)
		case GrowLater:
			log.Warn("data disk not grown: its volume has no room for it; vmm grows it once the volume has room",
				"disk", d.Name, "path", path, "virtual_size", s.Size, "size", d.Bytes,
				"volume_gives", s.Fit.Gives(), "needs", s.Fit.Need, "room", s.Fit.String())
		case Create:
			if err := p.create(ctx, log, d, timeout); err != nil {
				return err
			}
		case Grow:
			if err := writable(d, path); err != nil {
				return err
			}
			if err := fsutil.CheckOwnFile(path); err != nil { // qemu-img follows symlinks
				return fmt.Errorf("data disk %s: %w", d.Name, err)
			}
			if _, err := qemuimg.Run(ctx, timeout, "resize", "-q", "-f", d.Format, path, strconv.FormatUint(d.Bytes, 10)); err != nil {
				return fmt.Errorf("grow data disk %s (%s) to %d bytes: %w", d.Name, path, d.Bytes, err)
			}
			if err := fsutil.SyncFile(path); err != nil {
				return err
			}
			log.Info("data disk grown", "disk", d.Name, "path", path, "from", s.Size, "to", d.Bytes)
		}
	}
	return nil
}

// create makes the disk file under its temporary name with qemu-img create
// and links it into place: a link never replaces a file that appeared
// meanwhile.
func (p Plan) create(ctx context.Context, log *slog.Logger, d disks.Disk, timeout time.Duration) error {
	path, tmp := p.Path(d), p.tmpPath(d)
	if err := writable(d, path); err != nil {
		return err
	}
	// Left by a crash: never in place, safe to drop (decide checked it is a
	// regular file of this uid, or nothing).
	if err := fsutil.CheckOwnFile(tmp); err != nil {
		return fmt.Errorf("data disk %s: %w", d.Name, err)
	}
	_ = os.Remove(tmp)
	ok := false
	defer func() {
		if !ok && fsutil.CheckOwnFile(tmp) == nil {
			os.Remove(tmp)
		}
	}()
	if _, err := qemuimg.Run(ctx, timeout, "create", "-q", "-f", d.Format, tmp, strconv.FormatUint(d.Bytes, 10)); err != nil {
		return fmt.Errorf("create data disk %s: %w", d.Name, err)
	}
	if err := fsutil.SyncFile(tmp); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("put data disk %s in place at %s: %w", d.Name, path, err)
	}
	ok = true
	_ = os.Remove(tmp)
	if err := fsutil.SyncDir(filepath.Dir(path)); err != nil {
		return err
	}
	log.Info("data disk created", "disk", d.Name, "path", path, "format", d.Format, "virtual_size", d.Bytes)
	return nil
}

// writable says, before a disk file is made or grown, that this uid may
// write its volume directory (the disk-owner step gives it the directory).
func writable(d disks.Disk, path string) error {
	dir := filepath.Dir(path)
	if err := syscall.Access(dir, 2 /* W_OK */); err != nil {
		return fmt.Errorf("data disk %s: %s is not writable by uid %d gid %d: %w (the disk-owner step gives the volume's berth directory to the VM's uid)",
			d.Name, dir, os.Geteuid(), os.Getegid(), err)
	}
	return nil
}
