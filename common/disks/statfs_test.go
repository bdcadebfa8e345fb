package disks

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
)

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	avail, total, err := Usage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if total == 0 || avail > total {
		t.Fatalf("Usage(%s) = avail %d, total %d: want 0 <= avail <= total, total > 0", dir, avail, total)
	}
	if _, _, err := Usage(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Usage of a missing directory: err %v, want ENOENT", err)
	}
}
