package datadisk

import (
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/diskroom"
)

func TestFromEnv(t *testing.T) {
	p, err := FromEnv(stage.MapEnv(map[string]string{
		"DATA_DISKS": `[{"name":"data","size":"1Gi"},{"name":"fast","size":"2Gi","volumeMode":"Block"},{"name":"r","size":"512","format":"raw"}]`}))
	if err != nil {
		t.Fatal(err)
	}
	if p.Dir != disks.DefaultDir || p.BlockDir != disks.BlockDir || len(p.Disks) != 3 {
		t.Fatalf("plan = %+v", p)
	}
	for i, want := range []string{"/var/lib/berth/disks/data/data.qcow2", "/dev/berth/fast", "/var/lib/berth/disks/r/r.raw"} {
		if got := p.Path(p.Disks[i]); got != want {
			t.Errorf("Path(%s) = %s, want %s", p.Disks[i].Name, got, want)
		}
	}
	if got := p.tmpPath(p.Disks[0]); got != "/var/lib/berth/disks/data/.data.qcow2.tmp" {
		t.Errorf("tmpPath = %s", got)
	}
	if s := p.String(); !strings.Contains(s, "fast: /dev/berth/fast (raw, 2Gi = 2147483648 bytes, Block)") {
		t.Errorf("String():\n%s", s)
	}
	if p, err := FromEnv(stage.MapEnv(nil)); err != nil || len(p.Disks) != 0 || !strings.Contains(p.String(), "none") {
		t.Errorf("no DATA_DISKS: %+v %v", p, err)
	}
	for _, tc := range []struct{ env map[string]string }{
		{map[string]string{"DATA_DISKS": `[{"name":"x"}]`}},
		{map[string]string{"DATA_DISKS": `{}`}},
		{map[string]string{"DATA_DISK_DIR": "disks"}},
		{map[string]string{"DATA_DISK_DIR": "/disks/"}},
	} {
		_, err := FromEnv(stage.MapEnv(tc.env))
		var name string
		for k := range tc.env {
			name = k
		}
		if !stage.IsBadInput(err) || !strings.Contains(err.Error(), name+"=") {
			t.Errorf("%v: err %v, want bad input naming %s", tc.env, err, name)
		}
	}
}

// TestDecide: every state a disk can be found in, and what is done.
func TestDecide(t *testing.T) {
	const gi = 1 << 30
	file := disks.Disk{Name: "data", Size: "1Gi", Bytes: gi, VolumeMode: "Filesystem", Format: "qcow2"}
	block := disks.Disk{Name: "fast", Size: "1Gi", Bytes: gi, VolumeMode: "Block", Format: "raw"}
	need := disks.FullAllocation("qcow2", gi)
	room := diskroom.Fit{Dir: "/v", Avail: need, Need: need}
	tight := diskroom.Fit{Dir: "/v", Avail: need - 1, Need: need}
	grown := diskroom.Fit{Dir: "/v", Avail: need - 100<<20, Used: 100 << 20, Need: need} // the file's blocks count
	for _, tc := range []struct {
		name    string
		d       disks.Disk
		s       State
		want    Action
		wantErr []string // in the refusal; nil: no refusal
	}{
		{"missing, room", file, State{Fit: room}, Create, nil},
		{"missing, one byte short", file, State{Fit: tight}, 0, []string{"cannot be created", "smaller than the disk needs", "gives the disk 1074135039 bytes", "needs 1074135040 bytes"}},
		{"same size", file, State{Found: true, Size: gi, Fit: tight}, Keep, nil},
		{"smaller, room", file, State{Found: true, Size: gi / 2, Fit: room}, Grow, nil},
		{"smaller, room counting its own blocks", file, State{Found: true, Size: gi / 2, Fit: grown}, Grow, nil},
		{"smaller, no room", file, State{Found: true, Size: gi / 2, Fit: tight}, GrowLater, nil},
		{"larger", file, State{Found: true, Size: 2 * gi, Fit: room}, 0, []string{"never shrunk", "2147483648"}},
		{"a symlink", file, State{Found: true, Wrong: "a symlink", Fit: room}, 0, []string{"is a symlink", "left as it is"}},
		{"a backing file", file, State{Found: true, Wrong: "a file refused as a qcow2 disk (qcow2 has a backing file)", Size: gi}, 0, []string{"backing file"}},
		{"block, larger device", block, State{Found: true, Size: 2 * gi}, UseDevice, nil},
		{"block, same size", block, State{Found: true, Size: gi}, UseDevice, nil},
		{"block, smaller device", block, State{Found: true, Size: gi - 512}, 0, []string{"1073741312 bytes", "smaller than its size 1Gi"}},
		{"block, missing", block, State{}, 0, []string{"does not exist", "volumeDevices"}},
		{"block, a regular file", block, State{Found: true, Wrong: "a regular file", Size: 2 * gi}, 0, []string{"is a regular file, not the block device"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Decide(`[…]`, tc.d, "/p", tc.s)
			if tc.wantErr == nil {
				if err != nil || a != tc.want {
					t.Fatalf("Decide = %v, %v; want %v", a, err, tc.want)
				}
				return
			}
			if !stage.IsBadInput(err) || !strings.HasPrefix(err.Error(), `DATA_DISKS="[…]": disk `+tc.d.Name+": ") {
				t.Fatalf("Decide = %v, %v; want a refusal naming DATA_DISKS and the disk", a, err)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("refusal %q does not say %q", err, s)
				}
			}
		})
	}
}
