// Package volumetest makes real volumes for root tests: a small ext4
// filesystem made by mkfs.ext4 with its defaults on a loop device and mounted
// in a temporary directory (root-owned 0755, lost+found, 5 % reserved for
// root: what a CSI driver hands a pod), and a bare loop device (a Block
// volume). Everything is undone when the test ends.
package volumetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/roottest"
)

// Loop attaches a sparse file of size bytes to a free loop device and
// returns the device's path.
func Loop(t testing.TB, size int64) string {
	t.Helper()
	roottest.Require(t)
	backing := filepath.Join(t.TempDir(), "backing.img")
	f, err := os.Create(backing)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// Ext4 makes an ext4 filesystem of size bytes (mkfs.ext4's defaults) on a
// loop device, mounts it and returns the mount point.
func Ext4(t testing.TB, size int64) string {
	t.Helper()
	dev := Loop(t, size)
	if out, err := exec.Command("mkfs.ext4", "-q", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// Bind bind-mounts dir at a new temporary directory and returns it: a
// subPath mount of a volume, as the kubelet makes one.
func Bind(t testing.TB, dir string) string {
	t.Helper()
	roottest.Require(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "--bind", dir, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount --bind: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}
