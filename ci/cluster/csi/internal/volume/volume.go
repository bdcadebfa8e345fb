// Package volume keeps the driver's volumes: one sparse file each in a directory, <id>.ext4 (a
// Filesystem volume, ext4 made by mkfs.ext4 with its defaults, as a cloud block volume is
// formatted) or <id>.block (a Block volume, raw). The file is the volume: its size is the
// volume's capacity, and growing the volume is growing the file.
package volume

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"syscall"

	"github.com/berth-vm/berth/ci/cluster/csi/internal/host"
)

// Kind is a volume's mode, and its file name's extension.
type Kind string

const (
	Filesystem Kind = "ext4"
	Block      Kind = "block"
)

// MiB is the unit capacities are rounded up to.
const MiB = 1 << 20

// DefaultSize is a volume's size when the request names none.
const DefaultSize = 1 << 30

// Errors the driver maps to gRPC codes.
var (
	ErrNotFound = errors.New("no such volume")
	ErrExists   = errors.New("a volume of that name exists with another kind or size")
	ErrRange    = errors.New("capacity out of range")
)

// Volume is one volume's file.
type Volume struct {
	ID   string
	Kind Kind
	Path string
	Size int64
}

// Store is the directory of volumes.
type Store struct {
	Dir string
}

var validID = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,127}$`)

// ValidID refuses a volume name that would not be a plain file name of its own (the
// provisioner's names are pvc-<uid>).
func ValidID(id string) error {
	if !validID.MatchString(id) || id == "." || id == ".." {
		return fmt.Errorf("volume name %q: want 1-128 of a-z 0-9 . - starting with a letter or digit", id)
	}
	return nil
}

// Size is the capacity a request for required bytes (0: DefaultSize) with a limit (0: none)
// gets: required rounded up to a MiB, or to 4 KiB when the MiB would pass the limit.
func Size(required, limit int64) (int64, error) {
	if required < 0 || limit < 0 {
		return 0, fmt.Errorf("%w: required %d, limit %d: negative", ErrRange, required, limit)
	}
	if required == 0 {
		required = DefaultSize
		if limit > 0 && limit < required {
			required = limit
		}
	}
	size := roundUp(required, MiB)
	if limit > 0 && size > limit {
		size = roundUp(required, 4096)
	}
	if limit > 0 && size > limit {
		return 0, fmt.Errorf("%w: %d bytes (required %d rounded to 4 KiB) exceeds the limit %d", ErrRange, size, required, limit)
	}
	return size, nil
}

func roundUp(n, unit int64) int64 { return (n + unit - 1) / unit * unit }

func (s Store) path(id string, kind Kind) string {
	return filepath.Join(s.Dir, id+"."+string(kind))
}

// Lookup finds the volume id, of either kind (ErrNotFound: none).
func (s Store) Lookup(id string) (Volume, error) {
	if err := ValidID(id); err != nil {
		return Volume{}, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	for _, kind := range []Kind{Filesystem, Block} {
		p := s.path(id, kind)
		st, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Volume{}, fmt.Errorf("volume %s: %w", id, err)
		}
		if !st.Mode().IsRegular() {
			return Volume{}, fmt.Errorf("volume %s: %s is not a regular file", id, p)
		}
		return Volume{ID: id, Kind: kind, Path: p, Size: st.Size()}, nil
	}
	return Volume{}, fmt.Errorf("volume %s: %w", id, ErrNotFound)
}

// Create makes volume id of the kind and size, or returns it when it exists with that kind and
// a size in [size, limit] (limit 0: any larger size); a different one is ErrExists. The file is
// made and formatted under a temporary name and renamed into place, so a crash leaves no
// half-made volume.
func (s Store) Create(ctx context.Context, id string, kind Kind, size, limit int64) (Volume, error) {
	if err := ValidID(id); err != nil {
		return Volume{}, err
	}
	if v, err := s.Lookup(id); err == nil {
		if v.Kind != kind || v.Size < size || (limit > 0 && v.Size > limit) {
			return Volume{}, fmt.Errorf("volume %s: %w (it is %s, %d bytes; asked %s, %d bytes)", id, ErrExists, v.Kind, v.Size, kind, size)
		}
		return v, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Volume{}, err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return Volume{}, fmt.Errorf("volume directory: %w", err)
	}
	final := s.path(id, kind)
	tmp := filepath.Join(s.Dir, "."+id+".tmp")
	_ = os.Remove(tmp) // a leftover of a crash
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", id, err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && kind == Filesystem {
		err = host.MakeExt4(ctx, tmp)
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return Volume{}, fmt.Errorf("creating volume %s: %w", id, err)
	}
	return Volume{ID: id, Kind: kind, Path: final, Size: size}, nil
}

// Delete removes volume id; one that does not exist is already deleted.
func (s Store) Delete(id string) error {
	v, err := s.Lookup(id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.Remove(v.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting volume %s: %w", id, err)
	}
	return nil
}

// Grow makes volume id's file at least size bytes (a sparse extension); it never shrinks.
func (s Store) Grow(id string, size int64) (Volume, error) {
	v, err := s.Lookup(id)
	if err != nil {
		return Volume{}, err
	}
	if v.Size >= size {
		return v, nil
	}
	if err := os.Truncate(v.Path, size); err != nil {
		return Volume{}, fmt.Errorf("growing volume %s to %d bytes: %w", id, size, err)
	}
	v.Size = size
	return v, nil
}
