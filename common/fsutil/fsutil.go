// Package fsutil writes files the way every Berth stage must: a temporary file
// in the same directory, fsync, rename, fsync of the directory. A reader never
// sees a half-written file, and a crash leaves the old file or the new one.
package fsutil

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// WriteFileAtomic writes data to path atomically with mode perm.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return nil
}

// Rename renames the regular file old to new and fsyncs the directory of new.
// Neither may be a symlink or anything but a regular file (a *NotOwnFileError):
// a rename would otherwise move a planted link into Berth's own name.
func Rename(old, new string) error {
	fi, err := os.Lstat(old)
	if err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("rename into place: %w", &NotOwnFileError{Path: old, Found: Describe(fi.Mode())})
	}
	if err := CheckOwnFile(new); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	if err := os.Rename(old, new); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	return SyncDir(filepath.Dir(new))
}

// SyncDir fsyncs a directory so a rename in it survives a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// SyncFile fsyncs a file's data.
func SyncFile(path string) error {
	f, err := OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}

// HashFile returns the sha256 of a file in lower-case hex.
func HashFile(ctx context.Context, path string) (string, error) {
	f, err := Open(path)
	if err != nil {
		return "", fmt.Errorf("sha256 %s: %w", path, err)
	}
	defer f.Close()
	sum, err := CopyHash(ctx, io.Discard, f)
	if err != nil {
		return "", fmt.Errorf("sha256 %s: %w", path, err)
	}
	return sum, nil
}

// CopyHash copies src to dst in 1 MiB chunks, stopping when ctx ends, and
// returns the sha256 of what it copied in lower-case hex.
func CopyHash(ctx context.Context, dst io.Writer, src io.Reader) (string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			if _, err := dst.Write(buf[:n]); err != nil {
				return "", fmt.Errorf("write: %w", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return "", fmt.Errorf("read: %w", rerr)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Lock is an exclusive flock on a lock file.
type Lock struct{ f *os.File }

// LockFile takes an exclusive flock on path (created if missing; never through
// a symlink, see OpenFile), waiting
// until it is free or ctx ends, logging while it waits. Opened read-only so
// pods running as different uids can share one lock file.
func LockFile(ctx context.Context, log *slog.Logger, path string, poll time.Duration) (*Lock, error) {
	f, err := OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	start, nextLog := time.Now(), time.Duration(0)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if w := time.Since(start); w >= nextLog {
			log.Info("waiting for another image-fetch working on the same image", "lock", path, "waited", w.Round(time.Second).String())
			nextLog += 30 * time.Second
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, context.Cause(ctx))
		case <-time.After(poll):
		}
	}
}

// Unlock releases the lock.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		l.f.Close()
		l.f = nil
	}
}
