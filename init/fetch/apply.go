package fetch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/imgcheck"
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

// Base is the verified base image in the cache.
type Base struct {
	Path   string
	SHA256 string
	Image  imgcheck.Image
}

func (p Plan) partPath() string     { return filepath.Join(p.ImageDir, "."+p.Target+".part") }
func (p Plan) lockPath() string     { return filepath.Join(p.ImageDir, "."+p.Target+".lock") }
func (p Plan) diskLockPath() string { return filepath.Join(p.DiskDir, "."+p.VMName+".lock") }

// Apply makes the plan true: the verified base in IMAGE_DIR, the pet overlay in
// DISK_DIR. Re-running it after a crash at any point converges.
func (s *Applier) Apply(ctx context.Context, p Plan) error {
	return p.notOwn(s.apply(ctx, p))
}

// ownFiles are the files of this plan that image-fetch creates, opens for
// writing, locks, chmods, renames or points qemu-img at.
func (p Plan) ownFiles() []string {
	part := p.partPath()
	ovDir, ovName := filepath.Split(p.OverlayPath())
	return []string{
		p.lockPath(), p.BasePath(), p.RecordPath(), part, part + ".meta",
		p.diskLockPath(), p.OverlayPath(), p.OverlayRecordPath(), filepath.Join(ovDir, "."+ovName+".tmp"),
	}
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
		if f == p.lockPath() || f == p.diskLockPath() {
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
		if f == p.partPath() {
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
	if petExists {
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
	} else if p.DiskSize > 0 {
		// Known before the download: a pet disk of DISK_SIZE its volume
		// cannot hold is refused now (overlay.Ensure checks again).
		if err := overlay.RoomToCreate(p.OverlayPath(), p.DiskSize, p.DiskSizeText); err != nil {
			return err
		}
	}

	base, err := s.EnsureBase(ctx, p, want, pinnedBy)
	if err != nil {
		return err
	}
	if err := overlay.Ensure(ctx, s.Log, overlay.Spec{
		Path: p.OverlayPath(), RecordPath: p.OverlayRecordPath(),
		Base:            overlay.Record{Base: p.Target, BasePath: base.Path, Format: base.Image.Format, SHA256: base.SHA256, Source: RedactText(p.Source)},
		BaseVirtualSize: base.Image.VirtualSize,
		Size:            p.DiskSize,
		SizeText:        p.DiskSizeText,
		Timeout:         s.QemuTimeout,
	}); err != nil {
		return err
	}
	return p.Data.Apply(ctx, s.Log, s.QemuTimeout)
}

// EnsureBase puts the verified base into the cache, under the cache's lock for
// this target: of concurrent runs one downloads, the others wait and reuse it.
// want ("" = any) is the sha256 the base must have; pinnedBy says who wants it.
// A verified base in the cache is never replaced by another image: overlays of
// other VMs may be backed by it.
func (s *Applier) EnsureBase(ctx context.Context, p Plan, want, pinnedBy string) (Base, error) {
	lock, err := fsutil.LockFile(ctx, s.Log, p.lockPath(), s.LockPoll)
	if err != nil {
		return Base{}, err
	}
	defer lock.Unlock()

	if b, ok, err := s.cached(ctx, p); err != nil {
		return Base{}, err
	} else if ok {
		if want != "" && b.SHA256 != want {
			if pinnedBy == "IMG_SHA256" {
				return Base{}, stage.BadInputf("IMG_SHA256", want, "IMAGE_DIR already holds another image %s (sha256 %s); a cached base is never replaced (other pets may use it): choose another IMG_TARGET", b.Path, b.SHA256)
			}
			return Base{}, stage.BadInputf("IMG_TARGET", p.Target, "IMAGE_DIR holds %s with sha256 %s but %s was made from sha256 %s: a pet disk is never paired with another base", b.Path, b.SHA256, pinnedBy, want)
		}
		s.Log.Info("base image cached and verified, nothing downloaded", "base", b.Path, "sha256", b.SHA256, "format", b.Image.Format)
		return b, nil
	}

	part := p.partPath()
	for _, f := range []string{part, part + ".meta"} {
		// The download and the copy write part; qemu-img reads it.
		if err := fsutil.CheckOwnFile(f); err != nil {
			return Base{}, err
		}
	}
	var sum string
	if p.Remote {
		if sum, err = s.DL.Download(ctx, p.Source, part); err != nil {
			return Base{}, err
		}
	} else {
		if sum, err = copyLocal(ctx, p.Source, part); err != nil {
			removePart(part)
			return Base{}, err
		}
	}
	if want != "" && sum != want {
		removePart(part)
		return Base{}, fmt.Errorf("sha256 of %s is %s, %s wants %s: the image was discarded", RedactText(p.Source), sum, pinnedBy, want)
	}
	if err := fsutil.CheckOwnFile(part); err != nil { // qemu-img follows symlinks
		return Base{}, err
	}
	img, err := imgcheck.Check(ctx, part, s.QemuTimeout)
	if err == nil {
		err = imgcheck.CheckOverlaySize(part, img)
	}
	var refused *imgcheck.RefusedError
	if errors.As(err, &refused) && refused.NotAnImage {
		removePart(part) // perhaps an error page served instead of the image: retryable
		return Base{}, fmt.Errorf("verify %s: %w (the download was discarded)", RedactText(p.Source), err)
	}
	if errors.As(err, &refused) {
		// The image at IMG_SOURCE can never be a base (a backing file, another format,
		// encryption): bad input, exit 2, not a retryable failure.
		removePart(part)
		return Base{}, stage.BadInputf("IMG_SOURCE", RedactText(p.Source), "not a usable base image: %s (the download was discarded)", refused.Reason)
	}
	if err != nil { // qemu-img failed to run: the file is kept, checked again next time
		return Base{}, fmt.Errorf("verify %s: %w", RedactText(p.Source), err)
	}
	if p.DiskSize > 0 && p.DiskSize < img.VirtualSize {
		// Known now, before the base is cached: no overlay of DISK_SIZE can be
		// made on it (an overlay is never smaller than its base).
		removePart(part)
		return Base{}, stage.BadInputf("DISK_SIZE", p.DiskSizeText, "is %d bytes, smaller than the base image's virtual size %d bytes (the download was discarded)", p.DiskSize, img.VirtualSize)
	}
	if err := fsutil.Chmod(part, 0o444); err != nil {
		removePart(part)
		return Base{}, fmt.Errorf("base image: %w", err)
	}
	if err := fsutil.Rename(part, p.BasePath()); err != nil {
		removePart(part)
		return Base{}, fmt.Errorf("base image %s: %w", p.BasePath(), err)
	}
	if err := fsutil.CheckOwnFile(part + ".meta"); err == nil {
		_ = os.Remove(part + ".meta")
	}
	if err := writeRecord(p, sum); err != nil {
		return Base{}, err
	}
	s.Log.Info("base image verified and in place", "base", p.BasePath(), "sha256", sum, "format", img.Format, "virtual_size", img.VirtualSize)
	return Base{Path: p.BasePath(), SHA256: sum, Image: img}, nil
}

// cached returns the base in the cache if it is there and its content matches
// its record (hashed again only if the file changed after the record was
// written). A base whose content does not match its record is corrupt and is
// removed (it is fetched again). A base without a record (a crash between the
// rename and the record) is hashed and recorded: only verified files are ever
// renamed into place.
func (s *Applier) cached(ctx context.Context, p Plan) (Base, bool, error) {
	path := p.BasePath()
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Base{}, false, nil
	}
	if err != nil {
		return Base{}, false, fmt.Errorf("base image %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return Base{}, false, fmt.Errorf("base image: %w", fsutil.CheckOwnFile(path))
	}
	recorded, recErr := readRecord(p)
	var sum string
	if recErr == nil && unchangedSince(fi, p.RecordPath()) {
		// The file's ctime (set by the kernel on any write, chmod or rename;
		// not settable by users) is not after the record was written: the
		// file is the one that was hashed. Saves a full read on every start.
		sum = recorded
	} else if sum, err = fsutil.HashFile(ctx, path); err != nil {
		return Base{}, false, err
	}
	switch {
	case recErr != nil && errors.Is(recErr, fs.ErrNotExist):
		s.Log.Warn("base image has no record, recording its sha256", "base", path)
		if err := writeRecord(p, sum); err != nil {
			return Base{}, false, err
		}
	case recErr != nil || recorded != sum:
		s.Log.Warn("cached base image does not match its record: removing it and fetching again", "base", path, "recorded", recorded, "actual", sum, "err", recErr)
		if err := fsutil.CheckOwnFile(path); err != nil {
			return Base{}, false, err
		}
		if err := os.Remove(path); err != nil {
			return Base{}, false, fmt.Errorf("remove corrupt base %s: %w", path, err)
		}
		_ = os.Remove(p.RecordPath())
		return Base{}, false, nil
	}
	if err := fsutil.CheckOwnFile(path); err != nil { // qemu-img follows symlinks
		return Base{}, false, err
	}
	img, err := imgcheck.Check(ctx, path, s.QemuTimeout)
	var refused *imgcheck.RefusedError
	if errors.As(err, &refused) {
		// A cached base that fails today's checks (a truncated qcow2 cached
		// by a build before qemu-img check): never replaced (other pets may
		// use it), so no retry helps; only a person can unblock this IMG_TARGET.
		return Base{}, false, stage.BadInputf("IMG_TARGET", p.Target, "the cached base %s is refused: %s; remove it (and its .sha256) from IMAGE_DIR if no pet uses it, or choose another IMG_TARGET", path, refused.Reason)
	}
	if err != nil {
		return Base{}, false, fmt.Errorf("cached base %s: %w", path, err)
	}
	if err := imgcheck.CheckOverlaySize(path, img); err != nil {
		// Cached before image-fetch checked the size: never replaced (other
		// pets may use it), so only a person can unblock this IMG_TARGET.
		return Base{}, false, stage.BadInputf("IMG_TARGET", p.Target, "the cached base %v; remove %s (and its .sha256) from IMAGE_DIR if no pet uses it, or choose another IMG_TARGET", err, path)
	}
	return Base{Path: path, SHA256: sum, Image: img}, true, nil
}

// unchangedSince reports whether the file (fi) was last changed (ctime) no
// later than the record at recPath was last written (mtime).
func unchangedSince(fi fs.FileInfo, recPath string) bool {
	rfi, err := os.Lstat(recPath)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	ctime := time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	return !ctime.After(rfi.ModTime())
}

// readRecord reads IMG_TARGET.sha256 (sha256sum format: "<hex>  <name>").
func readRecord(p Plan) (string, error) {
	f, err := fsutil.Open(p.RecordPath())
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, _ := bufio.NewReader(io.LimitReader(f, 4096)).ReadString('\n')
	sum, name, ok := strings.Cut(strings.TrimSpace(line), "  ")
	if !ok || len(sum) != 64 || strings.TrimPrefix(name, "*") != p.Target {
		return "", fmt.Errorf("record %s is not \"<sha256>  %s\"", p.RecordPath(), p.Target)
	}
	return sum, nil
}

// writeRecord writes IMG_TARGET.sha256 so `sha256sum -c` works in IMAGE_DIR.
func writeRecord(p Plan, sum string) error {
	return fsutil.WriteFileAtomic(p.RecordPath(), []byte(sum+"  "+p.Target+"\n"), 0o644)
}

// copyLocal copies a local image into part, hashing it on the way, and syncs.
func copyLocal(ctx context.Context, src, part string) (string, error) {
	// The source is read through symlinks (it may be a mounted ConfigMap-style
	// link), but never blocks on a FIFO and must be a regular file.
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", fmt.Errorf("read IMG_SOURCE: %w", err)
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "", stage.BadInputf("IMG_SOURCE", src, "must be a regular file (%v)", err)
	}
	if err := syscall.SetNonblock(int(in.Fd()), false); err != nil {
		return "", fmt.Errorf("read IMG_SOURCE: %w", err)
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
