package diskroom

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-vm/berth/common/disks"
)

func TestIEC(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {3 << 29, "1.5 GiB"}, {1 << 40, "1.0 TiB"}, {2048 << 40, "2.0 PiB"}} {
		if got := IEC(tc.n); got != tc.want {
			t.Errorf("IEC(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestMeasure: a new file uses nothing; a written file counts its blocks
// (not its apparent size: a sparse raw file); need is FullAllocation.
func TestMeasure(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "d.raw")
	f, err := Measure(dir, p, "qcow2", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if f.Used != 0 || f.Need != disks.FullAllocation("qcow2", 1<<30) || f.Avail == 0 || f.Dir != dir {
		t.Errorf("new file: %+v", f)
	}
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 1<<30); err != nil { // 1 MiB written, 1 GiB apparent
		t.Fatal(err)
	}
	f, err = Measure(dir, p, "raw", 2<<30)
	if err != nil {
		t.Fatal(err)
	}
	if f.Used < 1<<20 || f.Used >= 1<<30 || f.Need != 2<<30 {
		t.Errorf("written file: %+v", f)
	}
	if f.OK() != (f.Avail+f.Used >= f.Need) {
		t.Errorf("OK() = %v for %+v", f.OK(), f)
	}
}
