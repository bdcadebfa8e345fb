package fsutil

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two"} {
		if err := WriteFileAtomic(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		fi, _ := os.Stat(p)
		if string(b) != content || fi.Mode().Perm() != 0o640 {
			t.Errorf("got %q %v", b, fi.Mode())
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o644); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func TestHashFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("abc"), 0o644)
	sum, err := HashFile(context.Background(), p)
	if err != nil || sum != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("HashFile = %s, %v", sum, err)
	}
}

// TestLockFile: a second holder waits until the first unlocks, and gives up
// when its context ends.
func TestLockFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), ".lock")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l1, err := LockFile(context.Background(), log, p, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := LockFile(ctx, log, p, time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: err = %v, want deadline exceeded", err)
	}
	got := make(chan error, 1)
	go func() {
		l2, err := LockFile(context.Background(), log, p, time.Millisecond)
		if err == nil {
			l2.Unlock()
		}
		got <- err
	}()
	l1.Unlock()
	if err := <-got; err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
}
