package fetch

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
)

// follower hashes the partial file while it is being written, so the sha256
// is ready when the download ends instead of costing another read of the
// whole file. It has hashed exactly the bytes [0, off) of the partial file;
// reset() must be called whenever the file is removed or truncated.
type follower struct {
	path string
	mu   sync.Mutex
	h    hash.Hash
	off  int64
	buf  []byte
}

func newFollower(path string) *follower {
	return &follower{path: path, h: sha256.New(), buf: make([]byte, 1<<20)}
}

func (f *follower) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.h.Reset()
	f.off = 0
}

// catchUp hashes the file from off up to limit (limit < 0: to its end). The
// caller guarantees the bytes below limit are written and final.
func (f *follower) catchUp(limit int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if limit >= 0 && limit <= f.off {
		return nil
	}
	file, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer file.Close()
	for limit < 0 || f.off < limit {
		want := int64(len(f.buf))
		if limit >= 0 {
			want = min(want, limit-f.off)
		}
		n, err := file.ReadAt(f.buf[:want], f.off)
		f.h.Write(f.buf[:n])
		f.off += int64(n)
		if errors.Is(err, io.EOF) {
			if limit >= 0 && f.off < limit {
				return fmt.Errorf("hash %s: file ends at %d, want %d", f.path, f.off, limit)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("hash %s: %w", f.path, err)
		}
	}
	return nil
}

// sum returns the sha256 once the whole file (of size) was hashed.
func (f *follower) sum(size int64) (string, error) {
	if err := f.catchUp(size); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off != size {
		return "", fmt.Errorf("hash %s: hashed %d bytes of %d", f.path, f.off, size)
	}
	return hex.EncodeToString(f.h.Sum(nil)), nil
}
