package imgcheck

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// The limit is qemu-img's: an overlay of MaxOverlaySize is created, one of
// 512 bytes more is not.
func TestMaxOverlaySizeIsQemuImgs(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		size uint64
		ok   bool
	}{{MaxOverlaySize, true}, {MaxOverlaySize + 512, false}} {
		out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(dir, "x.qcow2"), strconv.FormatUint(tc.size, 10)).CombinedOutput()
		if (err == nil) != tc.ok {
			t.Errorf("qemu-img create %d: err %v (%s), want ok=%v", tc.size, err, out, tc.ok)
		}
	}
}

func TestCheckOverlaySize(t *testing.T) {
	if err := CheckOverlaySize("b", Image{Format: QCOW2, VirtualSize: MaxOverlaySize}); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	err := CheckOverlaySize("b", Image{Format: QCOW2, VirtualSize: MaxOverlaySize + 512})
	var re *RefusedError
	if !errors.As(err, &re) || re.NotAnImage {
		t.Errorf("over the limit: %v, want a RefusedError (not NotAnImage)", err)
	}
}
