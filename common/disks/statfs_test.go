package disks

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
)

func TestVolumeUsage(t *testing.T) {
	dir := t.TempDir()
	u, err := VolumeUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if u.Total == 0 || u.Avail > u.Total || u.Used > u.Total {
		t.Fatalf("VolumeUsage(%s) = %+v: want total > 0, avail and used at most total", dir, u)
	}
	if _, err := VolumeUsage(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("VolumeUsage of a missing directory: err %v, want ENOENT", err)
	}
}
