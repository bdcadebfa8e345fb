package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/legacy"
	"github.com/berth-vm/berth/init/overlay"
	"github.com/berth-vm/berth/init/qemuimg"
)

// Applier applies a Plan.
type Applier struct {
	Log         *slog.Logger
	DL          *Downloader
	QemuTimeout time.Duration // bounds each qemu-img run
	LockPoll    time.Duration
}

// NewApplier returns an Applier with the production defaults.
func NewApplier(log *slog.Logger) *Applier {
	return &Applier{Log: log, DL: NewDownloader(log), QemuTimeout: qemuimg.DefaultTimeout, LockPoll: 200 * time.Millisecond}
}

func (p Plan) partPath() string     { return p.base().partPath() }
func (p Plan) lockPath() string     { return p.base().lockPath() }
func (p Plan) diskLockPath() string { return filepath.Join(p.DiskDir, "."+p.VMName+".lock") }

// Apply makes the plan true: the verified base in IMAGE_DIR, the pet overlay in
// DISK_DIR. Re-running it after a crash at any point converges.
func (s *Applier) Apply(ctx context.Context, p Plan) error {
	return p.notOwn(s.apply(ctx, p))
}

// ownFiles are the files of this plan that image-fetch creates, opens for
// writing, locks, chmods, renames or points qemu-img at.
func (p Plan) ownFiles() []string {
	ovDir, ovName := filepath.Split(p.OverlayPath())
	var fs []string
	if !p.Blank {
		fs = p.base().files()
	}
	for _, e := range p.cdroms() {
		fs = append(fs, e.files()...)
	}
	return append(fs, p.diskLockPath(), p.OverlayPath(), p.OverlayRecordPath(), filepath.Join(ovDir, "."+ovName+".tmp"))
}

// isLock says whether f is one of the plan's lock files.
func (p Plan) isLock(f string) bool {
	if f == p.diskLockPath() || (!p.Blank && f == p.lockPath()) {
		return true
	}
	for _, e := range p.cdroms() {
		if f == e.lockPath() {
			return true
		}
	}
	return false
}

// isPart says whether f is one of the plan's partial downloads.
func (p Plan) isPart(f string) bool {
	if !p.Blank && f == p.partPath() {
		return true
	}
	for _, e := range p.cdroms() {
		if f == e.partPath() {
			return true
		}
	}
	return false
}

// checkVolumes refuses, before anything is created, a directory that is a
// symlink or not a directory, and anything but a regular file where one of the
// plan's own files goes (a symlink, a FIFO, a directory, a device): all are
// left as they are. The operations themselves refuse them too (race-free:
// fsutil opens without following symlinks); this check only makes sure that
// nothing, not even a lock file, is created before the refusal.
func (p Plan) checkVolumes() error {
	for _, d := range []struct{ name, dir string }{{"IMAGE_DIR", p.ImageDir}, {"DISK_DIR", p.DiskDir}, {legacy.Var, p.LegacyDir}} {
		if d.dir == "" {
			continue
		}
		if err := stage.CheckVolumeDir(d.name, d.dir); err != nil {
			return err
		}
	}
	for _, f := range p.ownFiles() {
		check := func(f string) error { return fsutil.CheckOwnFileOf(f, os.Geteuid()) }
		if p.isLock(f) {
			// Lock files are shared by pods of any uid by design: opened
			// read-only, never written, only flock'ed.
			check = fsutil.CheckOwnFile
		}
		if err := check(f); err != nil {
			return err
		}
		// A file of another uid that this one cannot use (a root-owned 0600
		// record, say) would be replaced by a rename or fail half-way: refused
		// now, left alone. Files of other uids that can be read are normal in
		// a shared cache.
		mode := uint32(4) // R_OK
		if p.isPart(f) {
			mode |= 2 // W_OK: it is continued
		}
		if fi, err := os.Lstat(f); err == nil && syscall.Access(f, mode) != nil {
			st, _ := fi.Sys().(*syscall.Stat_t)
			uid := -1
			if st != nil {
				uid = int(st.Uid)
			}
			return fmt.Errorf("%s is owned by uid %d with mode %v, which uid %d cannot use: refusing to touch it (left as it is; fix its owner or remove it)", f, uid, fi.Mode().Perm(), os.Geteuid())
		}
	}
	return nil
}

// notOwn turns a refusal of a symlink, FIFO or directory in place of one of
// image-fetch's files into bad input naming the directory's variable: no
// retry helps, someone must remove it.
func (p Plan) notOwn(err error) error {
	var nof *fsutil.NotOwnFileError
	if !errors.As(err, &nof) || stage.IsBadInput(err) {
		return err
	}
	name, dir := "IMAGE_DIR", p.ImageDir
	base := filepath.Base(nof.Path)
	if filepath.Dir(nof.Path) == p.DiskDir && (p.DiskDir != p.ImageDir ||
		base == p.VMName+".qcow2" || base == p.VMName+".json" || strings.HasPrefix(base, "."+p.VMName+".")) {
		name, dir = "DISK_DIR", p.DiskDir
	}
	return stage.BadInputf(name, dir, "%s is %s where image-fetch keeps a file of its own: refused, left as it is (remove it if it is not yours)", nof.Path, nof.Found)
}

func (s *Applier) apply(ctx context.Context, p Plan) error {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return fmt.Errorf("qemu-img is needed (Debian package qemu-utils): %w", err)
	}
	if err := p.checkVolumes(); err != nil {
		return err
	}
	// Read only: a legacy pet disk or a data disk that will be refused is
	// found before anything is created or downloaded.
	if _, err := p.Legacy().Decide(); err != nil {
		return err
	}
	if err := p.Data.Validate(ctx, s.QemuTimeout); err != nil {
		return err
	}
	for _, d := range []struct{ name, dir string }{{"IMAGE_DIR", p.ImageDir}, {"DISK_DIR", p.DiskDir}} {
		if err := syscall.Access(d.dir, 2 /* W_OK */); err != nil {
			return fmt.Errorf("%s %s is not writable by uid %d gid %d: %w (the volume's owner or the pod's fsGroup must allow it)",
				d.name, d.dir, os.Geteuid(), os.Getegid(), err)
		}
	}
	dlock, err := fsutil.LockFile(ctx, s.Log, p.diskLockPath(), s.LockPoll)
	if err != nil {
		return err
	}
	defer dlock.Unlock()

	// Before anything else: an earlier chart's pet disk at the volume's root.
	if err := p.Legacy().Move(s.Log); err != nil {
		return err
	}

	// The pet disk, if it exists, pins the base it was made from.
	rec, petExists, err := overlay.ReadRecord(p.OverlayPath(), p.OverlayRecordPath())
	if err != nil {
		return err
	}
	want, pinnedBy := p.SHA256, "IMG_SHA256"
	switch {
	case petExists && rec.Blank != p.Blank:
		if rec.Blank {
			return stage.BadInputf("IMG_SOURCE", RedactText(p.Source), "the pet disk %s was made blank (an OS installed on it from an ISO): it has no base image, and none is ever paired with it; set DISK_BLANK=true and IMG_SOURCE empty, or move the disk away", p.OverlayPath())
		}
		return stage.BadInputf("DISK_BLANK", "true", "the pet disk %s was made from base %q, not blank: set IMG_SOURCE to that base's source and DISK_BLANK=false, or move the disk away", p.OverlayPath(), rec.Base)
	case petExists && !p.Blank:
		if rec.Base != p.Target {
			return stage.BadInputf("IMG_TARGET", p.Target, "the pet disk %s was made from base %q: a pet disk is never paired with another base (set IMG_TARGET=%s, or move the disk away)", p.OverlayPath(), rec.Base, rec.Base)
		}
		if rec.BasePath != "" && rec.BasePath != p.BasePath() {
			// Checked before any download: the overlay names its backing file
			// by absolute path, so the base can only ever be where it was.
			return stage.BadInputf("IMAGE_DIR", p.ImageDir, "the pet disk %s was made on the base %s (its backing file, written in the overlay): IMAGE_DIR must be %s, where the base was", p.OverlayPath(), rec.BasePath, filepath.Dir(rec.BasePath))
		}
		if want != "" && want != rec.SHA256 {
			return stage.BadInputf("IMG_SHA256", want, "the pet disk %s was made from base sha256 %s: a pet disk is never paired with another base", p.OverlayPath(), rec.SHA256)
		}
		want, pinnedBy = rec.SHA256, "the pet disk "+p.OverlayRecordPath()
	case !petExists && p.DiskSize > 0:
		// Known before the download: a pet disk of DISK_SIZE its volume
		// cannot hold is refused now (overlay.Ensure checks again).
		if err := overlay.RoomToCreate(p.OverlayPath(), p.DiskSize, p.DiskSizeText); err != nil {
			return err
		}
	}

	spec := overlay.Spec{
		Path: p.OverlayPath(), RecordPath: p.OverlayRecordPath(),
		Base:     overlay.Record{Blank: true},
		Size:     p.DiskSize,
		SizeText: p.DiskSizeText,
		Timeout:  s.QemuTimeout,
	}
	if !p.Blank {
		base, err := s.EnsureBase(ctx, p, want, pinnedBy)
		if err != nil {
			return err
		}
		spec.Base = overlay.Record{Base: p.Target, BasePath: base.Path, Format: base.Image.Format, SHA256: base.SHA256, Source: RedactText(p.Source)}
		spec.BaseVirtualSize = base.Image.VirtualSize
	}
	// The ISOs before the pet disk: an ISO that is refused leaves no new
	// (blank) disk behind.
	if _, err := s.EnsureISOs(ctx, p); err != nil {
		return err
	}
	if err := overlay.Ensure(ctx, s.Log, spec); err != nil {
		return err
	}
	return p.Data.Apply(ctx, s.Log, s.QemuTimeout)
}

// copyLocal copies a local file (the value of the variable name) into part, hashing it on the way, and syncs.
func copyLocal(ctx context.Context, name, src, part string) (string, error) {
	// The source is read through symlinks (it may be a mounted ConfigMap-style
	// link), but never blocks on a FIFO and must be a regular file.
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "", stage.BadInputf(name, src, "must be a regular file (%v)", err)
	}
	if err := syscall.SetNonblock(int(in.Fd()), false); err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	if err := fsutil.CheckOwnFile(part + ".meta"); err != nil {
		return "", err
	}
	_ = os.Remove(part + ".meta")
	out, err := fsutil.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	defer out.Close()
	sum, err := fsutil.CopyHash(ctx, out, in)
	if err != nil {
		return "", fmt.Errorf("copy %s to %s: %w", src, part, err)
	}
	if err := out.Sync(); err != nil {
		return "", fmt.Errorf("copy %s: fsync: %w", part, err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("copy %s: %w", part, err)
	}
	return sum, nil
}
