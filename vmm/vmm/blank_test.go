package vmm

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/config"
)

// TestStandaloneOverlay: an overlay without a backing file boots as it is
// when image-fetch made it blank (its record says so) or when no record
// exists (made by hand, with a warning); one whose record names a base lost
// its backing file and is refused (exit 2, naming DISK_DIR).
func TestStandaloneOverlay(t *testing.T) {
	for _, tc := range []struct {
		name, record   string // "" = no record
		wantStandalone bool
		wantBad        bool
	}{
		{"no record", "", true, false},
		{"made blank", `{"blank":true,"base":"","base_path":"","format":"","sha256":""}`, false, false},
		{"made on a base", `{"base":"debian.qcow2","base_path":"/var/lib/berth/images/debian.qcow2","format":"qcow2","sha256":"ab"}`, false, true},
		{"record not JSON", `blank`, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := config.Config{Name: "vm0", DiskDir: dir, ImageDir: filepath.Join(dir, "images")}
			if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", c.Overlay(), "64M").CombinedOutput(); err != nil {
				t.Fatalf("qemu-img: %v: %s", err, out)
			}
			if tc.record != "" {
				if err := os.WriteFile(c.OverlayRecord(), []byte(tc.record), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			standalone, err := checkDisk(c)
			if tc.wantBad {
				var ie *stage.InputError
				if !errors.As(err, &ie) || ie.Var != "DISK_DIR" {
					t.Fatalf("err = %v, want bad input naming DISK_DIR", err)
				}
				return
			}
			if err != nil || standalone != tc.wantStandalone {
				t.Fatalf("standalone = %v, %v; want %v, nil", standalone, err, tc.wantStandalone)
			}
		})
	}
}
