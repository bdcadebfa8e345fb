package disks

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/stage"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    []Disk
		wantErr string
	}{
		{"", nil, ""},
		{"  ", nil, ""},
		{`[]`, []Disk{}, ""},
		{`[{"name":"data","size":"10Gi"}]`, []Disk{{Name: "data", Size: "10Gi", VolumeMode: "Filesystem", Format: "qcow2", Bus: "virtio-blk", Cache: "none", Discard: "unmap", Bytes: 10 << 30}}, ""},
		{`[{"name":"db","size":"1Gi","volumeMode":"Block","bus":"virtio-scsi","cache":"writeback","discard":"ignore"}]`,
			[]Disk{{Name: "db", Size: "1Gi", VolumeMode: "Block", Format: "raw", Bus: "virtio-scsi", Cache: "writeback", Discard: "ignore", Bytes: 1 << 30}}, ""},
		{`[{"name":"a","size":"512","format":"raw"}]`, []Disk{{Name: "a", Size: "512", VolumeMode: "Filesystem", Format: "raw", Bus: "virtio-blk", Cache: "none", Discard: "unmap", Bytes: 512}}, ""},
		// bad inputs
		{`{"name":"data"}`, nil, "not a JSON array"},
		{`[{"name":"data","size":"1Gi","color":"red"}]`, nil, "unknown field"},
		{`[] []`, nil, "more than one"},
		{`[{"name":"Data","size":"1Gi"}]`, nil, "DNS label"},
		{`[{"name":"a-very-long-name-for-a","size":"1Gi"}]`, nil, "at most 20"},
		{`[{"name":"root","size":"1Gi"}]`, nil, "root disk"},
		{`[{"name":"x-","size":"1Gi"}]`, nil, "DNS label"},
		{`[{"name":"d","size":"1G"}]`, nil, "binary suffix"},
		{`[{"name":"d","size":"1000"}]`, nil, "multiple of 512"},
		{`[{"name":"d","size":"0"}]`, nil, "multiple of 512"},
		{`[{"name":"d","size":"4096Ti"}]`, nil, "2048Ti"},
		{`[{"name":"d","size":"1Gi","bus":"ide"}]`, nil, "bus \"ide\""},
		{`[{"name":"d","size":"1Gi","cache":"unsafe"}]`, nil, "cache"},
		{`[{"name":"d","size":"1Gi","volumeMode":"block"}]`, nil, "volumeMode"},
		{`[{"name":"d","size":"1Gi","volumeMode":"Block","format":"qcow2"}]`, nil, "raw"},
		{`[{"name":"d","size":"1Gi"},{"name":"d","size":"2Gi"}]`, nil, "taken by another disk"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), Var) || !stage.IsBadInput(err) {
				t.Errorf("Parse(%s) = %v, %v; want a bad-input error naming %s with %q", tt.in, got, err, Var, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%s): %v", tt.in, err)
			continue
		}
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(tt.want)
		if string(g) != string(w) || len(got) != len(tt.want) {
			t.Errorf("Parse(%s) = %s, want %s", tt.in, g, w)
		}
		for i := range got {
			if got[i].Bytes != tt.want[i].Bytes {
				t.Errorf("Parse(%s)[%d].Bytes = %d, want %d", tt.in, i, got[i].Bytes, tt.want[i].Bytes)
			}
		}
	}
}

func TestPath(t *testing.T) {
	fs := Disk{Name: "data", VolumeMode: "Filesystem", Format: "qcow2"}
	if got := fs.Path(DefaultDir); got != "/var/lib/berth/disks/data/data.qcow2" {
		t.Errorf("Path = %s", got)
	}
	blk := Disk{Name: "db", VolumeMode: "Block", Format: "raw"}
	if got := blk.Path(DefaultDir); got != "/dev/berth/db" {
		t.Errorf("Path = %s", got)
	}
}

// TestFullAllocationMatchesQemuImg: the estimate is qemu-img's own for a fully
// allocated qcow2 image ("fully-allocated" of qemu-img measure).
func TestFullAllocationMatchesQemuImg(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	for _, size := range []uint64{512, 64 << 10, 1 << 20, 1 << 30, 10 << 30, 20<<30 + 512, 100 << 30, 2 << 40, 64 << 40} {
		out, err := exec.Command("qemu-img", "measure", "--size", strconv.FormatUint(size, 10), "-O", "qcow2", "--output=json").Output()
		if err != nil {
			t.Fatalf("qemu-img measure: %v", err)
		}
		var m struct {
			Full uint64 `json:"fully-allocated"`
		}
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatal(err)
		}
		if got := FullAllocation("qcow2", size); got != m.Full {
			t.Errorf("FullAllocation(qcow2, %d) = %d, qemu-img measure says %d", size, got, m.Full)
		}
	}
	if got := FullAllocation("raw", 1<<30); got != 1<<30 {
		t.Errorf("raw: %d", got)
	}
}
