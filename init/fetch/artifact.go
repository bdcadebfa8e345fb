package fetch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berth-vm/berth/common/artifact"
	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/imgcheck"
)

// Kind is what a cached file is for: how it is verified, how it is named.
type Kind int

// The kinds of cached files.
const (
	// KindBase is the pet disk's base image: a self-contained qcow2 or raw.
	KindBase Kind = iota
	// KindISO is a read-only CD-ROM image: ISO 9660 (CDROMS).
	KindISO
)

// Artifact is one file image-fetch puts into the image cache: the base image
// or an ISO. Every one is fetched, resumed, verified, recorded and locked the
// same way (ensure).
type Artifact struct {
	// Var names the value it comes from in errors: IMG_SOURCE, or CDROMS[i].
	Var  string
	Kind Kind
	// Source is the URL (http/https) or the absolute local path.
	Source string
	// Remote is true for an http(s) URL.
	Remote bool
	// Target is the bare file name in IMAGE_DIR.
	Target string
	// SHA256 is the pinned hash, lower-case hex, or "" when not pinned.
	SHA256 string
}

// The variables that set the artifact's source, target and hash, for errors.
func (a Artifact) sourceVar() string { return a.field("IMG_SOURCE", "source") }
func (a Artifact) targetVar() string { return a.field("IMG_TARGET", "target") }
func (a Artifact) sha256Var() string { return a.field("IMG_SHA256", "sha256") }

func (a Artifact) field(base, iso string) string {
	if a.Kind == KindBase {
		return base
	}
	return a.Var + "." + iso
}

// what names the artifact in messages.
func (a Artifact) what() string {
	if a.Kind == KindBase {
		return "base"
	}
	return "ISO " + a.Var
}

func (a Artifact) sha256Text() string {
	if a.SHA256 != "" {
		return a.SHA256 + " (pinned)"
	}
	return "not pinned (recorded after download)"
}

// entry is an artifact's place in the cache directory.
type entry struct {
	Artifact
	Dir string
}

// Path is the cached file; RecordPath its recorded sha256 (sha256sum format).
func (e entry) Path() string       { return filepath.Join(e.Dir, e.Target) }
func (e entry) RecordPath() string { return e.Path() + ".sha256" }
func (e entry) partPath() string   { return filepath.Join(e.Dir, "."+e.Target+".part") }
func (e entry) lockPath() string   { return filepath.Join(e.Dir, "."+e.Target+".lock") }

// files are the entry's files that image-fetch creates, writes or locks.
func (e entry) files() []string {
	return []string{e.lockPath(), e.Path(), e.RecordPath(), e.partPath(), e.partPath() + ".meta"}
}

// checkSource checks a source value (name is its variable): an http(s) URL or
// an absolute path to a readable local file (stat). It returns whether it is
// remote and its base name.
func checkSource(name, src string, stat func(string) error) (bool, string, error) {
	remote, base, err := artifact.CheckSource(src)
	var se *artifact.SourceError
	if errors.As(err, &se) {
		shown := artifact.Shown(src)
		if se.Kind == artifact.BadPath || se.Kind == artifact.Credentials {
			shown = RedactText(src)
		}
		return false, "", stage.BadInput(name, shown, se.Reason)
	}
	if !remote {
		if err := statSource(name, src, stat); err != nil {
			return false, "", err
		}
	}
	return remote, base, nil
}

// statSource checks that a local source (name is its variable) is a readable file.
func statSource(name, src string, stat func(string) error) error {
	if err := stat(src); err != nil {
		return stage.BadInputf(name, src, "local file not readable: %v", err)
	}
	return nil
}

// cdromsFromEnv reads CDROMS (common/artifact) and checks each ISO against
// the plan: a local source readable, a target that is no other file of the
// plan's.
func cdromsFromEnv(env stage.Env, p Plan, stat func(string) error) ([]Artifact, error) {
	v, _ := env.Lookup(artifact.CDROMsVar)
	list, err := artifact.ParseCDROMs(v)
	if err != nil {
		return nil, err
	}
	var as []Artifact
	for i, c := range list {
		a := Artifact{Var: artifact.Name(i), Kind: KindISO, Source: c.Source, Remote: c.Remote, Target: c.Target, SHA256: c.SHA256}
		if !a.Remote { // the source itself is checked by ParseCDROMs
			if err := statSource(a.sourceVar(), a.Source, stat); err != nil {
				return nil, err
			}
		}
		if !p.Blank && a.Target == p.Target {
			return nil, stage.BadInputf(a.targetVar(), a.Target, "is the base image's file name in IMAGE_DIR (IMG_TARGET): each file needs its own (set target)")
		}
		if p.ImageDir == p.DiskDir && (a.Target == p.VMName+".qcow2" || a.Target == p.VMName+".json") {
			return nil, stage.BadInputf(a.targetVar(), a.Target, "is the pet disk's own file name in %s (IMAGE_DIR = DISK_DIR): set target", p.DiskDir)
		}
		as = append(as, a)
	}
	return as, nil
}

// Base is a verified file in the cache (the base image, or an ISO).
type Base struct {
	Path   string
	SHA256 string
	Image  imgcheck.Image
}

// EnsureBase puts the verified base into the cache (ensure). want ("" = any)
// is the sha256 the base must have; pinnedBy says who wants it. A fresh
// download that no overlay of DISK_SIZE fits on is discarded.
func (s *Applier) EnsureBase(ctx context.Context, p Plan, want, pinnedBy string) (Base, error) {
	return s.ensure(ctx, p.base(), want, pinnedBy, func(img imgcheck.Image) error {
		if p.DiskSize > 0 && p.DiskSize < img.VirtualSize {
			// Known now, before the base is cached: no overlay of DISK_SIZE can be
			// made on it (an overlay is never smaller than its base).
			return stage.BadInputf("DISK_SIZE", p.DiskSizeText, "is %d bytes, smaller than the base image's virtual size %d bytes (the download was discarded)", p.DiskSize, img.VirtualSize)
		}
		return nil
	})
}

// EnsureISOs puts every ISO of CDROMS into the cache (ensure), pinned by its
// sha256 if it has one.
func (s *Applier) EnsureISOs(ctx context.Context, p Plan) ([]Base, error) {
	var bs []Base
	for _, e := range p.cdroms() {
		b, err := s.ensure(ctx, e, e.SHA256, e.sha256Var(), nil)
		if err != nil {
			return nil, err
		}
		bs = append(bs, b)
	}
	return bs, nil
}

// verify checks a file as what it is for: a base image (self-contained, an
// overlay fits on it) or an ISO.
func (e entry) verify(ctx context.Context, path string, timeout time.Duration) (imgcheck.Image, error) {
	if e.Kind == KindISO {
		return imgcheck.CheckISO(ctx, path, timeout)
	}
	img, err := imgcheck.Check(ctx, path, timeout)
	if err == nil {
		err = imgcheck.CheckOverlaySize(path, img)
	}
	return img, err
}

// ensure puts the verified file into the cache, under the cache's lock for
// its target: of concurrent runs one downloads, the others wait and reuse it.
// want ("" = any) is the sha256 it must have; pinnedBy says who wants it.
// accept, if set, may refuse a fresh download before it is cached. A verified
// file in the cache is never replaced by another: overlays of other VMs may
// be backed by it, QEMUs of other VMs may have it open.
func (s *Applier) ensure(ctx context.Context, e entry, want, pinnedBy string, accept func(imgcheck.Image) error) (Base, error) {
	lock, err := fsutil.LockFile(ctx, s.Log, e.lockPath(), s.LockPoll)
	if err != nil {
		return Base{}, err
	}
	defer lock.Unlock()

	if b, ok, err := s.cached(ctx, e); err != nil {
		return Base{}, err
	} else if ok {
		if want != "" && b.SHA256 != want {
			if pinnedBy == e.sha256Var() {
				return Base{}, stage.BadInputf(e.sha256Var(), want, "IMAGE_DIR already holds another file %s (sha256 %s); a cached file is never replaced (other VMs may use it): choose another %s", b.Path, b.SHA256, e.targetVar())
			}
			return Base{}, stage.BadInputf(e.targetVar(), e.Target, "IMAGE_DIR holds %s with sha256 %s but %s was made from sha256 %s: a pet disk is never paired with another base", b.Path, b.SHA256, pinnedBy, want)
		}
		s.Log.Info(e.what()+" cached and verified, nothing downloaded", "path", b.Path, "sha256", b.SHA256, "format", b.Image.Format)
		return b, nil
	}

	part := e.partPath()
	for _, f := range []string{part, part + ".meta"} {
		// The download and the copy write part; qemu-img reads it.
		if err := fsutil.CheckOwnFile(f); err != nil {
			return Base{}, err
		}
	}
	var sum string
	if e.Remote {
		if sum, err = s.DL.Download(ctx, e.Source, part); err != nil {
			return Base{}, err
		}
	} else {
		if sum, err = copyLocal(ctx, e.sourceVar(), e.Source, part); err != nil {
			removePart(part)
			return Base{}, err
		}
	}
	if want != "" && sum != want {
		removePart(part)
		return Base{}, fmt.Errorf("sha256 of %s is %s, %s wants %s: the image was discarded", RedactText(e.Source), sum, pinnedBy, want)
	}
	if err := fsutil.CheckOwnFile(part); err != nil { // qemu-img follows symlinks
		return Base{}, err
	}
	img, err := e.verify(ctx, part, s.QemuTimeout)
	var refused *imgcheck.RefusedError
	if errors.As(err, &refused) && refused.NotAnImage {
		removePart(part) // perhaps an error page served instead of the file: retryable
		return Base{}, fmt.Errorf("verify %s: %w (the download was discarded)", RedactText(e.Source), err)
	}
	if errors.As(err, &refused) {
		// The file at the source can never be used (a backing file, another
		// format, no ISO): bad input, exit 2, not a retryable failure.
		removePart(part)
		return Base{}, stage.BadInputf(e.sourceVar(), RedactText(e.Source), "not a usable %s: %s (the download was discarded)", e.kindName(), refused.Reason)
	}
	if err != nil { // qemu-img failed to run: the file is kept, checked again next time
		return Base{}, fmt.Errorf("verify %s: %w", RedactText(e.Source), err)
	}
	if accept != nil {
		if err := accept(img); err != nil {
			removePart(part)
			return Base{}, err
		}
	}
	if err := fsutil.Chmod(part, 0o444); err != nil {
		removePart(part)
		return Base{}, fmt.Errorf("%s: %w", e.what(), err)
	}
	if err := fsutil.Rename(part, e.Path()); err != nil {
		removePart(part)
		return Base{}, fmt.Errorf("%s %s: %w", e.what(), e.Path(), err)
	}
	if err := fsutil.CheckOwnFile(part + ".meta"); err == nil {
		_ = os.Remove(part + ".meta")
	}
	if err := writeRecord(e, sum); err != nil {
		return Base{}, err
	}
	s.Log.Info(e.what()+" verified and in place", "path", e.Path(), "sha256", sum, "format", img.Format, "virtual_size", img.VirtualSize)
	return Base{Path: e.Path(), SHA256: sum, Image: img}, nil
}

// kindName is what the file must be, for refusals.
func (a Artifact) kindName() string {
	if a.Kind == KindISO {
		return "ISO"
	}
	return "base image"
}

// check is ensure's diff: the file is in place, matches its record (fully
// re-hashed) and its pin, and passes verify. It returns the hash and what
// verify learnt, one line per difference, and an error only when the live
// state could not be read (unreadable says which errors are that).
func (e entry) check(ctx context.Context, timeout time.Duration, unreadable func(error) bool) (string, imgcheck.Image, []string, error) {
	var diffs []string
	differs := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	recorded, err := readRecord(e)
	if err != nil {
		differs("%s record: %v", e.what(), err)
	}
	sum, err := fsutil.HashFile(ctx, e.Path())
	switch {
	case ctx.Err() != nil:
		return "", imgcheck.Image{}, nil, fmt.Errorf("check: %w", ctx.Err())
	case err != nil:
		differs("%s: %v", e.what(), err)
	case recorded != "" && sum != recorded:
		differs("%s %s has sha256 %s, its record says %s", e.what(), e.Path(), sum, recorded)
	case e.SHA256 != "" && sum != e.SHA256:
		differs("%s %s has sha256 %s, %s is %s", e.what(), e.Path(), sum, e.sha256Var(), e.SHA256)
	}
	var img imgcheck.Image
	if err == nil {
		if err = fsutil.CheckOwnFile(e.Path()); err != nil { // qemu-img follows symlinks
			differs("%s: %v", e.what(), err)
		} else if img, err = e.verify(ctx, e.Path(), timeout); err != nil {
			if unreadable(err) {
				return "", imgcheck.Image{}, nil, fmt.Errorf("check %s: %w", e.what(), err)
			}
			differs("%v", err)
		}
	}
	return sum, img, diffs, nil
}

// describe prints what is in the cache now and what ensure would do, reading
// only (no hashing, no qemu-img), for --dry-run.
func (e entry) describe(w io.Writer) {
	if fi, err := os.Lstat(e.Path()); err == nil && fi.Mode().IsRegular() {
		sum, rerr := readRecord(e)
		if rerr != nil {
			sum = "no valid record: " + rerr.Error()
		}
		fmt.Fprintf(w, "  %s cached (recorded sha256 %s): re-hashed and reused, nothing downloaded\n", e.what(), sum)
	} else if fi, err := os.Lstat(e.partPath()); err == nil && fi.Mode().IsRegular() {
		fmt.Fprintf(w, "  %s: partial download of %d bytes: continued if the server still serves the same version\n", e.what(), fi.Size())
	} else {
		fmt.Fprintf(w, "  %s not cached: fetched into %s, verified, renamed into place\n", e.what(), e.partPath())
	}
}

// cached returns the file in the cache if it is there and its content matches
// its record (hashed again only if the file changed after the record was
// written). A file whose content does not match its record is corrupt and is
// removed (it is fetched again). A file without a record (a crash between the
// rename and the record) is hashed and recorded: only verified files are ever
// renamed into place.
func (s *Applier) cached(ctx context.Context, e entry) (Base, bool, error) {
	path := e.Path()
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Base{}, false, nil
	}
	if err != nil {
		return Base{}, false, fmt.Errorf("%s %s: %w", e.what(), path, err)
	}
	if !fi.Mode().IsRegular() {
		return Base{}, false, fmt.Errorf("%s: %w", e.what(), fsutil.CheckOwnFile(path))
	}
	recorded, recErr := readRecord(e)
	var sum string
	if recErr == nil && unchangedSince(fi, e.RecordPath()) {
		// The file's ctime (set by the kernel on any write, chmod or rename;
		// not settable by users) is not after the record was written: the
		// file is the one that was hashed. Saves a full read on every start.
		sum = recorded
	} else if sum, err = fsutil.HashFile(ctx, path); err != nil {
		return Base{}, false, err
	}
	switch {
	case recErr != nil && errors.Is(recErr, fs.ErrNotExist):
		s.Log.Warn(e.what()+" has no record, recording its sha256", "path", path)
		if err := writeRecord(e, sum); err != nil {
			return Base{}, false, err
		}
	case recErr != nil || recorded != sum:
		s.Log.Warn("cached "+e.what()+" does not match its record: removing it and fetching again", "path", path, "recorded", recorded, "actual", sum, "err", recErr)
		if err := fsutil.CheckOwnFile(path); err != nil {
			return Base{}, false, err
		}
		if err := os.Remove(path); err != nil {
			return Base{}, false, fmt.Errorf("remove corrupt %s %s: %w", e.what(), path, err)
		}
		_ = os.Remove(e.RecordPath())
		return Base{}, false, nil
	}
	if err := fsutil.CheckOwnFile(path); err != nil { // qemu-img follows symlinks
		return Base{}, false, err
	}
	img, err := e.verify(ctx, path, s.QemuTimeout)
	var refused *imgcheck.RefusedError
	if errors.As(err, &refused) {
		// A cached file that fails today's checks (a truncated qcow2 cached
		// by a build before qemu-img check, an image too large for an
		// overlay): never replaced (other VMs may use it), so no retry helps;
		// only a person can unblock this target.
		return Base{}, false, stage.BadInputf(e.targetVar(), e.Target, "the cached %s %s is refused: %s; remove it (and its .sha256) from IMAGE_DIR if no VM uses it, or choose another %s", e.what(), path, refused.Reason, e.targetVar())
	}
	if err != nil {
		return Base{}, false, fmt.Errorf("cached %s %s: %w", e.what(), path, err)
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

// readRecord reads <target>.sha256 (sha256sum format: "<hex>  <name>").
func readRecord(e entry) (string, error) {
	f, err := fsutil.Open(e.RecordPath())
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, _ := bufio.NewReader(io.LimitReader(f, 4096)).ReadString('\n')
	sum, name, ok := strings.Cut(strings.TrimSpace(line), "  ")
	if !ok || len(sum) != 64 || strings.TrimPrefix(name, "*") != e.Target {
		return "", fmt.Errorf("record %s is not \"<sha256>  %s\"", e.RecordPath(), e.Target)
	}
	return sum, nil
}

// writeRecord writes <target>.sha256 so `sha256sum -c` works in IMAGE_DIR.
func writeRecord(e entry, sum string) error {
	return fsutil.WriteFileAtomic(e.RecordPath(), []byte(sum+"  "+e.Target+"\n"), 0o644)
}
