package host

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const mountinfo = `24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334192k
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
301 27 7:3 / /var/lib/k/pods/u/volumes/kubernetes.io~csi/pvc-1/mount rw,relatime shared:5 - ext4 /dev/loop3 rw
302 27 0:6 /loop4 /var/lib/k/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-2/u rw - devtmpfs devtmpfs rw
303 27 0:6 /loop40 /elsewhere rw - devtmpfs devtmpfs rw
304 27 0:50 / /mnt/with\040space rw - tmpfs my\134tmp rw
`

func TestParseMountinfo(t *testing.T) {
	got, err := ParseMountinfo(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("%d mounts, want 6: %+v", len(got), got)
	}
	want := Mount{Root: "/", Point: "/var/lib/k/pods/u/volumes/kubernetes.io~csi/pvc-1/mount", FSType: "ext4", Source: "/dev/loop3"}
	if got[2] != want {
		t.Errorf("optional fields: got %+v, want %+v", got[2], want)
	}
	if want := (Mount{Root: "/", Point: "/mnt/with space", FSType: "tmpfs", Source: `my\tmp`}); got[5] != want {
		t.Errorf("escapes: got %+v, want %+v", got[5], want)
	}
	for _, bad := range []string{"1 2 3", "1 2 0:1 / /x rw shared:1 ext4 /dev/x rw"} {
		if _, err := ParseMountinfo(strings.NewReader(bad + "\n")); err == nil {
			t.Errorf("ParseMountinfo(%q): no error", bad)
		}
	}
}

func TestUsers(t *testing.T) {
	mounts, err := ParseMountinfo(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dev  string
		want []string
	}{
		{"/dev/loop3", []string{"/var/lib/k/pods/u/volumes/kubernetes.io~csi/pvc-1/mount"}},
		{"/dev/loop4", []string{"/var/lib/k/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-2/u"}},
		{"/dev/loop5", nil},
	} {
		var points []string
		for _, m := range Users(mounts, tc.dev) {
			points = append(points, m.Point)
		}
		if !reflect.DeepEqual(points, tc.want) {
			t.Errorf("Users(%s) = %q, want %q", tc.dev, points, tc.want)
		}
	}
	if !MountedAt(mounts, "/dev") || MountedAt(mounts, "/dev/") {
		t.Error("MountedAt is an exact match")
	}
}

func TestParseExt4Bytes(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
		bad      bool
	}{
		{"dumpe2fs 1.47", "Filesystem volume name:   <none>\nInode count:              65536\nBlock count:              262144\nReserved block count:     13107\nBlock size:               4096\n", 1 << 30, false},
		{"no block size", "Block count:              262144\n", 0, true},
		{"not a number", "Block count:   lots\nBlock size: 4096\n", 0, true},
		{"empty", "", 0, true},
	} {
		got, err := ParseExt4Bytes(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("%s: got %d, %v; want %d, error %v", tc.name, got, err, tc.want, tc.bad)
		}
	}
}

func TestLoopFor(t *testing.T) {
	sys := t.TempDir()
	for dev, backing := range map[string]string{"loop0": "/a/b.ext4\n", "loop1": "", "loop7": "/a/c.block\n"} {
		dir := filepath.Join(sys, dev)
		if backing != "" {
			dir = filepath.Join(dir, "loop")
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if backing != "" {
			if err := os.WriteFile(filepath.Join(dir, "backing_file"), []byte(backing), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(sys, "vda"), 0o755); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"/a/b.ext4": "/dev/loop0", "/a/c.block": "/dev/loop7", "/a/b": "", "/a/d.ext4": ""} {
		got, err := loopFor(sys, file)
		if err != nil || got != want {
			t.Errorf("loopFor(%s) = %q, %v; want %q", file, got, err, want)
		}
	}
}
