package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// digest is the sha256 of the bytes [0, off) of the partial file. It is
// carried from one attempt to the next within a run, so a retry that
// continues the file hashes only what it adds.
type digest struct {
	h   hash.Hash
	off int64
}

func newDigest() *digest { return &digest{h: sha256.New()} }

func (d *digest) reset() { d.h.Reset(); d.off = 0 }

func (d *digest) hex() string { return hex.EncodeToString(d.h.Sum(nil)) }

// catchUp hashes f from d.off to size: the prefix a previous run left, read
// once when a partial file is continued (the only time anything written is
// read back). buf is the copy buffer, reused.
func (d *digest) catchUp(ctx context.Context, f *os.File, size int64, buf []byte) error {
	for d.off < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-d.off)], d.off)
		d.h.Write(buf[:n])
		d.off += int64(n)
		if errors.Is(err, io.EOF) && d.off < size {
			return fmt.Errorf("hash %s: file ends at %d, want %d", f.Name(), d.off, size)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("hash %s: %w", f.Name(), err)
		}
	}
	return nil
}

// writebackEvery is how many written bytes are handed to the kernel's
// writeback at a time (sync_file_range, not waiting): the disk writes while
// the network delivers, so the fsync at the end only waits for the tail.
const writebackEvery = 8 << 20

// sink writes the body at the end of the partial file and hashes the same
// bytes from the same buffer: one pass, nothing read back.
type sink struct {
	f      *os.File
	d      *digest
	queued int64 // writeback started for [0, queued)
}

// Write writes p at d.off and hashes what was written (also when a write
// error leaves only part of p on disk: the digest always matches the file).
func (s *sink) Write(p []byte) (int, error) {
	n, err := s.f.WriteAt(p, s.d.off)
	s.d.h.Write(p[:n])
	s.d.off += int64(n)
	if s.d.off-s.queued >= writebackEvery {
		// Advisory: where it is not supported the final fsync does it all.
		_ = unix.SyncFileRange(int(s.f.Fd()), s.queued, s.d.off-s.queued, unix.SYNC_FILE_RANGE_WRITE)
		s.queued = s.d.off
	}
	return n, err
}

// copyBody copies body into w through two buffers of len(buf) each: one is
// filled from the network while the other is written and hashed, so the
// receive and the write path run at once (no byte is copied in between).
// Each buffer is filled before it is written, so writes and hash updates
// are large whatever the reads return. received counts body bytes as they
// arrive (for progress, stall and rate checks). What was received before an
// error is written before the error is returned. On a write error body is
// closed, which ends the pending read.
func copyBody(w io.Writer, body io.ReadCloser, buf []byte, received *atomic.Int64) error {
	type chunk struct {
		b   []byte
		err error
	}
	free := make(chan []byte, 2)
	free <- buf
	free <- make([]byte, len(buf))
	full := make(chan chunk, 1)
	stop := make(chan struct{})
	go func() {
		defer close(full)
		for {
			var b []byte
			select {
			case b = <-free:
			case <-stop:
				return
			}
			n, err := fill(body, b, received)
			full <- chunk{b[:n], err}
			if err != nil {
				return
			}
		}
	}()
	for c := range full {
		if len(c.b) > 0 {
			if _, err := w.Write(c.b); err != nil {
				close(stop)
				body.Close()
				for range full { // until the reader is gone: the buffers are the caller's again
				}
				return err
			}
		}
		if c.err == io.EOF {
			return nil
		}
		if c.err != nil {
			return c.err
		}
		free <- c.b[:cap(c.b)]
	}
	return nil
}

// fill reads into buf until it is full or the reader fails (io.EOF at the end).
func fill(r io.Reader, buf []byte, received *atomic.Int64) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		received.Add(int64(m))
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
