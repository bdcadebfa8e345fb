package fetch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/iotest"
)

// TestSinkHashesWhatItWrites: the digest is computed from the bytes as they
// are written, whatever sizes the reads return, and matches the file. The
// file is opened write-only: nothing is read back. A read error keeps (writes
// and hashes) what arrived before it.
func TestSinkHashesWhatItWrites(t *testing.T) {
	body := rawImage(20, 3<<20+12345)
	errCut := errors.New("connection reset")
	for _, tt := range []struct {
		name   string
		reader func() io.Reader
		buf    int
		prefix int   // bytes already in the file, hashed by catchUp first
		want   int   // bytes in the file at the end
		err    error // copyBody's error
	}{
		{"whole reads", func() io.Reader { return bytes.NewReader(body) }, 1 << 20, 0, len(body), nil},
		{"one byte at a time, small buffer", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(body[:200<<10])) }, 64 << 10, 0, 200 << 10, nil},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(body)) }, 1 << 20, 0, len(body), nil},
		{"continued after a prefix", func() io.Reader { return bytes.NewReader(body[1<<20:]) }, 1 << 20, 1 << 20, len(body), nil},
		{"cut mid-buffer", func() io.Reader {
			return io.MultiReader(bytes.NewReader(body[:1<<20+777]), iotest.ErrReader(errCut))
		}, 1 << 20, 0, 1<<20 + 777, errCut},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "part")
			if err := os.WriteFile(path, body[:tt.prefix], 0o644); err != nil {
				t.Fatal(err)
			}
			dg, buf := newDigest(), make([]byte, tt.buf)
			if tt.prefix > 0 {
				rf, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := dg.catchUp(context.Background(), rf, int64(tt.prefix), buf); err != nil {
					t.Fatal(err)
				}
				rf.Close()
			}
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var received atomic.Int64
			err = copyBody(&sink{f: f, d: dg, queued: int64(tt.prefix)}, io.NopCloser(tt.reader()), buf, &received)
			if !errors.Is(err, tt.err) {
				t.Fatalf("copyBody: %v, want %v", err, tt.err)
			}
			got, _ := os.ReadFile(path)
			if !bytes.Equal(got, body[:tt.want]) {
				t.Fatalf("file has %d bytes (sha256 %s), want the first %d of the body", len(got), sum(got), tt.want)
			}
			if dg.off != int64(tt.want) || dg.hex() != sum(got) {
				t.Errorf("digest of %d bytes %s, the file's %s", dg.off, dg.hex(), sum(got))
			}
			if r := received.Load(); r != int64(tt.want-tt.prefix) {
				t.Errorf("received %d, want %d", r, tt.want-tt.prefix)
			}
		})
	}
}

// TestCatchUpShortFile: a partial file shorter than it should be is an error, not a wrong hash.
func TestCatchUpShortFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "part")
	if err := os.WriteFile(path, []byte("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := newDigest().catchUp(context.Background(), f, 10, make([]byte, 4)); err == nil {
		t.Fatal("hashed 10 bytes of a 5-byte file")
	}
}
