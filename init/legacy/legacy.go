// Package legacy moves the pet disk of an earlier chart version into place.
// Those charts mounted the root disk's volume at DISK_DIR itself, so the
// overlay <VM>.qcow2, its record <VM>.json and the lock .<VM>.lock are at the
// volume's root; now DISK_DIR is Berth's own directory on the volume (subPath
// berth), and image-fetch also gets the volume's root (DISK_LEGACY_DIR).
//
// The two are two mounts of one filesystem, and rename(2) does not cross
// mount points even then (EXDEV): the files are renamed within the legacy
// mount, into the directory of it that is DISK_DIR (the same inode). A file
// is never copied: another filesystem is exit 2.
package legacy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
	"golang.org/x/sys/unix"
)

// Var is the variable naming the root disk volume's root.
const Var = "DISK_LEGACY_DIR"

// Layout is where the pet disk is now and where earlier charts kept it.
type Layout struct {
	VMName    string
	DiskDir   string // DISK_DIR
	LegacyDir string // DISK_LEGACY_DIR; "" = no legacy layout to look at
}

func (l Layout) names() []string { return []string{l.VMName + ".qcow2", l.VMName + ".json"} }

// Step is what Move does now.
type Step struct {
	// Move lists the file names to rename from LegacyDir into DISK_DIR, in order.
	Move []string
	// RemoveStale: DISK_DIR/<VM>.json is a record without its overlay (stale
	// by the overlay's contract), removed before the legacy pair comes in.
	RemoveStale bool
	// Both: DISK_DIR and LegacyDir both hold a pet disk; DISK_DIR's is used,
	// the legacy one left as it is.
	Both bool
}

// lstat says whether path exists, refusing anything but a regular file
// (never followed) as bad input naming variable.
func lstat(variable, dir, path string) (bool, error) {
	err := fsutil.CheckOwnFile(path)
	var nof *fsutil.NotOwnFileError
	if errors.As(err, &nof) {
		return false, stage.BadInputf(variable, dir, "%s is %s where the pet disk's file belongs: refused, left as it is (remove it if it is not the pet disk's)", path, nof.Found)
	}
	if err != nil {
		return false, err
	}
	_, err = os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Decide reads both directories (lstat only) and says what Move would do.
// A symlink, FIFO or directory in place of one of the files is exit 2.
func (l Layout) Decide() (Step, error) {
	if l.LegacyDir == "" {
		return Step{}, nil
	}
	var have [2][2]bool // [DISK_DIR, legacy][qcow2, json]
	for i, d := range []struct{ name, dir string }{{"DISK_DIR", l.DiskDir}, {Var, l.LegacyDir}} {
		for k, n := range l.names() {
			ok, err := lstat(d.name, d.dir, filepath.Join(d.dir, n))
			if err != nil {
				return Step{}, err
			}
			have[i][k] = ok
		}
	}
	disk, old := have[0], have[1]
	switch {
	case !disk[0] && old[0]: // the pet disk is still at the volume's root
		// A record in DISK_DIR without its overlay is stale (never
		// paired with the legacy overlay): removed first.
		s := Step{Move: []string{l.names()[0]}, RemoveStale: disk[1]}
		if old[1] {
			s.Move = append(s.Move, l.names()[1])
		}
		return s, nil
	case disk[0] && !disk[1] && !old[0] && old[1]: // a crash between the two renames
		return Step{Move: []string{l.names()[1]}}, nil
	case disk[0] && old[0]:
		return Step{Both: true}, nil
	}
	return Step{}, nil
}

// Move renames an earlier chart's pet disk and then its record from
// LegacyDir into DISK_DIR; a crash between the renames converges on the next
// run. Nothing else in LegacyDir is touched. The caller holds the pet disk's
// lock.
func (l Layout) Move(log *slog.Logger) error {
	s, err := l.Decide()
	if err != nil {
		return err
	}
	if s.Both {
		log.Warn("DISK_LEGACY_DIR holds a pet disk too (an earlier chart's layout): the one in DISK_DIR is used, the other is left as it is",
			"disk_dir", l.DiskDir, "legacy", filepath.Join(l.LegacyDir, l.names()[0]))
	}
	if len(s.Move) == 0 {
		return nil
	}
	dest, err := l.destination()
	if err != nil {
		return err
	}
	if s.RemoveStale {
		stale := filepath.Join(l.DiskDir, l.names()[1])
		if err := os.Remove(stale); err != nil {
			return fmt.Errorf("remove the stale record %s: %w", stale, err)
		}
		log.Info("removed a pet disk record without its pet disk (stale) before moving the legacy pet disk in", "record", stale)
	}
	for _, n := range s.Move {
		from, to := filepath.Join(l.LegacyDir, n), filepath.Join(dest, n)
		if err := renameNoReplace(from, to); err != nil {
			if errors.Is(err, syscall.EXDEV) {
				return l.otherFilesystem()
			}
			return fmt.Errorf("move the legacy pet disk file %s into DISK_DIR: %w", from, err)
		}
		if err := fsutil.SyncDir(dest); err != nil {
			return err
		}
		if err := fsutil.SyncDir(l.LegacyDir); err != nil {
			return err
		}
		log.Info("moved the pet disk of an earlier chart version into DISK_DIR", "from", from, "to", filepath.Join(l.DiskDir, n))
	}
	return nil
}

// destination is DISK_DIR as a directory of the legacy mount: the entry of
// LegacyDir that is the same directory (device and inode) as DISK_DIR.
func (l Layout) destination() (string, error) {
	var disk, root unix.Stat_t
	if err := unix.Stat(l.DiskDir, &disk); err != nil {
		return "", fmt.Errorf("DISK_DIR: %w", err)
	}
	if err := unix.Stat(l.LegacyDir, &root); err != nil {
		return "", fmt.Errorf("%s: %w", Var, err)
	}
	if disk.Dev != root.Dev {
		return "", l.otherFilesystem()
	}
	d, err := os.Open(l.LegacyDir)
	if err != nil {
		return "", fmt.Errorf("%s: %w", Var, err)
	}
	defer d.Close()
	for {
		entries, err := d.ReadDir(256)
		for _, e := range entries {
			if !e.IsDir() { // a symlink is not a directory here
				continue
			}
			var st unix.Stat_t
			p := filepath.Join(l.LegacyDir, e.Name())
			if unix.Lstat(p, &st) == nil && st.Dev == disk.Dev && st.Ino == disk.Ino {
				return p, nil
			}
		}
		if errors.Is(err, io.EOF) || len(entries) == 0 {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", Var, err)
		}
	}
	return "", stage.BadInputf(Var, l.LegacyDir, "DISK_DIR %s is not a directory directly in it (the chart mounts the volume's berth directory at DISK_DIR): the legacy pet disk is never copied, only renamed within the volume", l.DiskDir)
}

func (l Layout) otherFilesystem() error {
	return stage.BadInputf(Var, l.LegacyDir, "is on another filesystem than DISK_DIR %s: the legacy pet disk %s is never copied, only renamed within its volume (mount the root disk's volume there)", l.DiskDir, filepath.Join(l.LegacyDir, l.names()[0]))
}

// renameNoReplace renames old to new, failing if new exists
// (RENAME_NOREPLACE; where the filesystem lacks it, a check under the pet
// disk's lock, then rename).
func renameNoReplace(old, new string) error {
	err := unix.Renameat2(unix.AT_FDCWD, old, unix.AT_FDCWD, new, unix.RENAME_NOREPLACE)
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) {
		if _, lerr := os.Lstat(new); !errors.Is(lerr, fs.ErrNotExist) {
			return &os.LinkError{Op: "rename", Old: old, New: new, Err: syscall.EEXIST}
		}
		return os.Rename(old, new)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: err}
	}
	return nil
}

// Describe says, for --dry-run, what Move would do (reading only).
func (l Layout) Describe(w io.Writer) {
	if l.LegacyDir == "" {
		return
	}
	s, err := l.Decide()
	switch {
	case err != nil:
		fmt.Fprintf(w, "  legacy layout: refused: %v\n", err)
	case len(s.Move) > 0:
		fmt.Fprintf(w, "  legacy layout: %v in %s moved into DISK_DIR (renamed within the volume, never copied)\n", s.Move, l.LegacyDir)
	case s.Both:
		fmt.Fprintf(w, "  legacy layout: %s holds a pet disk too: left as it is, DISK_DIR's is used\n", l.LegacyDir)
	default:
		fmt.Fprintf(w, "  legacy layout: nothing to move from %s\n", l.LegacyDir)
	}
}

// Check is a difference when a move is pending (for --check).
func (l Layout) Check() ([]string, error) {
	s, err := l.Decide()
	if stage.IsBadInput(err) {
		return []string{err.Error()}, nil
	}
	if err != nil {
		return nil, err
	}
	if len(s.Move) > 0 {
		return []string{fmt.Sprintf("the pet disk's %v still in %s (the earlier chart's layout): the next run moves them into DISK_DIR", s.Move, l.LegacyDir)}, nil
	}
	return nil, nil
}
