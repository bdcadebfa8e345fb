package vmm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/config"
)

// TestCheckDataDisks: a data disk QEMU may open is a self-contained qcow2 or
// a raw file in its volume's directory, or a block device; anything else is
// bad input naming DATA_DISKS and the disk, never followed or opened.
func TestCheckDataDisks(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	img := func(args ...string) {
		if out, err := exec.Command("qemu-img", append([]string{"create", "-q"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v: %s", err, out)
		}
	}
	mkdir := func(name string) string {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	img("-f", "qcow2", filepath.Join(mkdir("good"), "good.qcow2"), "1M")
	img("-f", "raw", filepath.Join(mkdir("raw"), "raw.raw"), "1M")
	mkdir("missing")
	img("-f", "qcow2", filepath.Join(dir, "base.qcow2"), "1M")
	img("-f", "qcow2", "-b", filepath.Join(dir, "base.qcow2"), "-F", "qcow2", filepath.Join(mkdir("backed"), "backed.qcow2"))
	os.Symlink(filepath.Join(dir, "good", "good.qcow2"), filepath.Join(mkdir("link"), "link.qcow2"))
	os.Symlink(filepath.Join(dir, "good"), filepath.Join(dir, "linkdir"))
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "notqcow2"), nil, 0o644)
	os.MkdirAll(filepath.Join(dir, "empty"), 0o755)
	os.WriteFile(filepath.Join(dir, "empty", "empty.qcow2"), []byte("not a qcow2 image"), 0o644)

	tests := []struct {
		disk string // DATA_DISKS
		want string // "" for accepted, else a part of the message
	}{
		{`[{"name":"good","size":"1Mi"}]`, ""},
		{`[{"name":"raw","size":"1Mi","format":"raw"}]`, ""},
		{`[{"name":"missing","size":"1Mi"}]`, "does not exist: image-fetch makes it"},
		{`[{"name":"nodir","size":"1Mi"}]`, "is not mounted"},
		{`[{"name":"backed","size":"1Mi"}]`, "has a backing file"},
		{`[{"name":"link","size":"1Mi"}]`, "a symlink"},
		{`[{"name":"linkdir","size":"1Mi"}]`, "is a symlink, not a directory"},
		{`[{"name":"file","size":"1Mi"}]`, "not a directory"},
		{`[{"name":"empty","size":"1Mi"}]`, "empty.qcow2"},
		{`[{"name":"good","size":"1Mi"},{"name":"missing","size":"1Mi"}]`, `disk "missing"`},
		// Block: the device at /dev/berth/<name>; none exists here.
		{`[{"name":"nodevice","size":"1Mi","volumeMode":"Block"}]`, "no such device"},
	}
	for _, tt := range tests {
		list, err := disks.Parse(tt.disk)
		if err != nil {
			t.Fatal(err)
		}
		err = checkDataDisks(config.Config{DataDiskDir: dir, DataDisks: list, DataDisksText: tt.disk})
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.disk, err)
			}
			continue
		}
		if !stage.IsBadInput(err) || !strings.HasPrefix(err.Error(), disks.Var+"=") || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v; want one line of bad input naming %s with %q", tt.disk, err, disks.Var, tt.want)
		}
	}
}

// TestCheckBlockDisk: a Block disk must be a block device, not a character
// device or a file (checkDataDisk with the device path of a test's own).
func TestCheckBlockDevice(t *testing.T) {
	for path, want := range map[string]string{"/dev/null": "a character device", "/etc/hostname": "a regular file"} {
		if _, err := os.Lstat(path); err != nil {
			t.Skip(err)
		}
		if got := blockDeviceProblem(path); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	if loops, _ := filepath.Glob("/dev/loop[0-9]*"); len(loops) > 0 {
		if got := blockDeviceProblem(loops[0]); got != "" {
			t.Errorf("%s: %q, want a block device accepted", loops[0], got)
		}
	}
}
