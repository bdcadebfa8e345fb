package node

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Real files in the test's own directory: 1 MiB allocated by fallocate is
// 1 MiB of st_blocks, a sparse file of the same apparent size takes nothing.
func TestAllocated(t *testing.T) {
	dir := t.TempDir()
	full, sparse := filepath.Join(dir, "full"), filepath.Join(dir, "sparse")
	f, err := os.Create(full)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 1<<20); err != nil {
		f.Close()
		t.Skipf("fallocate on %s: %v", dir, err)
	}
	f.Close()
	if err := os.WriteFile(sparse, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse, 1<<20); err != nil {
		t.Fatal(err)
	}
	if got, err := Allocated(full); err != nil || got < 1<<20 {
		t.Errorf("Allocated(fallocated 1 MiB) = %d, %v", got, err)
	}
	if got, err := Allocated(sparse); err != nil || got != 0 {
		t.Errorf("Allocated(sparse 1 MiB) = %d, %v", got, err)
	}
	if _, err := Allocated(filepath.Join(dir, "none")); err == nil {
		t.Error("Allocated of a missing file: no error")
	}
	if got := InContainer(42, "/var/lib/berth/disks/fill"); got != "/proc/42/root/var/lib/berth/disks/fill" {
		t.Errorf("InContainer = %q", got)
	}
}
