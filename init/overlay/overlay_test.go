package overlay

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/init/internal/volumetest"
)

func TestReadRecord(t *testing.T) {
	dir := t.TempDir()
	ov, rec := filepath.Join(dir, "vm.qcow2"), filepath.Join(dir, "vm.json")
	if _, exists, err := ReadRecord(ov, rec); exists || err != nil {
		t.Fatalf("no overlay: exists=%v err=%v", exists, err)
	}
	os.WriteFile(rec, []byte(`{"base":"b","sha256":"s"}`), 0o644)
	if _, exists, err := ReadRecord(ov, rec); exists || err != nil {
		t.Fatalf("stale record without overlay must read as no overlay: exists=%v err=%v", exists, err)
	}
	os.WriteFile(ov, nil, 0o644)
	for _, bad := range []string{``, `{`, `{"base":"b"}`, `{"sha256":"s"}`, `[]`} {
		os.WriteFile(rec, []byte(bad), 0o644)
		if _, exists, err := ReadRecord(ov, rec); !exists || err == nil {
			t.Errorf("record %q: exists=%v err=%v, want an error", bad, exists, err)
		}
	}
	os.Remove(rec)
	if _, _, err := ReadRecord(ov, rec); err == nil || !strings.Contains(err.Error(), "record") {
		t.Errorf("overlay without record: err = %v", err)
	}
	os.WriteFile(rec, []byte(`{"base":"b","format":"raw","sha256":"s"}`), 0o644)
	if r, exists, err := ReadRecord(ov, rec); !exists || err != nil || r.Format != "raw" {
		t.Errorf("good record: %+v %v %v", r, exists, err)
	}
}

// TestEnsure: a real base, the overlay created once with backing file and
// format, never overwritten, grown, not shrunk, not paired with another base.
func TestEnsure(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", base, "2M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	s := Spec{Path: filepath.Join(dir, "vm.qcow2"), RecordPath: filepath.Join(dir, "vm.json"),
		Base:            Record{Base: "base.raw", BasePath: base, Format: "raw", SHA256: "aa"},
		BaseVirtualSize: 2 << 20, Timeout: time.Minute}
	if err := Ensure(ctx, log, s); err != nil {
		t.Fatal(err)
	}
	info, err := Info(ctx, s.Path, time.Minute)
	if err != nil || info.FullBackingFilename != base || info.BackingFormat != "raw" || info.VirtualSize != 2<<20 {
		t.Fatalf("info %+v %v", info, err)
	}
	before, _ := os.Stat(s.Path)
	if err := Ensure(ctx, log, s); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(s.Path)
	if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("overlay rewritten by a second Ensure")
	}
	s.Size = 4 << 20
	if err := Ensure(ctx, log, s); err != nil {
		t.Fatal(err)
	}
	if info, _ := Info(ctx, s.Path, time.Minute); info.VirtualSize != 4<<20 {
		t.Fatalf("not grown: %d", info.VirtualSize)
	}
	s.Size, s.SizeText = 3<<20, "3Mi"
	if err := Ensure(ctx, log, s); !stage.IsBadInput(err) || !strings.Contains(err.Error(), `DISK_SIZE="3Mi"`) {
		t.Fatalf("shrink: err = %v", err)
	}
	s.Size = 0
	s.Base.SHA256 = "bb"
	if err := Ensure(ctx, log, s); err == nil || !strings.Contains(err.Error(), "refusing to pair") {
		t.Fatalf("other base: err = %v", err)
	}
	s.Base.SHA256, s.Base.BasePath = "aa", filepath.Join(dir, "moved.raw")
	if err := Ensure(ctx, log, s); err == nil || !strings.Contains(err.Error(), "backing file") {
		t.Fatalf("moved base: err = %v", err)
	}
}

// TestEnsureRoomOnExt4: on a real ext4 volume of 64 MiB (mkfs.ext4's
// defaults: 5 % kept for root), a pet disk larger than the volume gives
// non-root users is not created (exit 2 naming DISK_SIZE with both figures),
// growth without room is deferred with a warning and succeeds, growth with
// room works.
func TestEnsureRoomOnExt4(t *testing.T) {
	mnt := volumetest.Ext4(t, 64<<20)
	base := filepath.Join(t.TempDir(), "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", base, "8M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ctx := context.Background()
	s := Spec{Path: filepath.Join(mnt, "vm.qcow2"), RecordPath: filepath.Join(mnt, "vm.json"),
		Base:            Record{Base: "base.qcow2", BasePath: base, Format: "qcow2", SHA256: "aa"},
		BaseVirtualSize: 8 << 20, Size: 60 << 20, SizeText: "60Mi", Timeout: time.Minute}
	avail, _, _ := disks.Usage(mnt)
	err := Ensure(ctx, log, s)
	for _, want := range []string{`DISK_SIZE="60Mi"`, "cannot be created", "gives the disk " + strconv.FormatUint(avail, 10) + " bytes",
		"needs " + strconv.FormatUint(disks.FullAllocation("qcow2", 60<<20), 10) + " bytes"} {
		if !stage.IsBadInput(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("a pet disk over the volume's room: %v; want exit 2 saying %q", err, want)
		}
	}
	if names, _ := os.ReadDir(mnt); len(names) != 1 { // lost+found
		t.Errorf("the refusal left %v", names)
	}

	s.Size, s.SizeText = 16<<20, "16Mi"
	if err := Ensure(ctx, log, s); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 8M", s.Path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v %s", err, out)
	}
	s.Size, s.SizeText = 60<<20, "60Mi"
	buf.Reset()
	if err := Ensure(ctx, log, s); err != nil {
		t.Fatalf("growth without room must succeed: %v", err)
	}
	if info, _ := Info(ctx, s.Path, time.Minute); info.VirtualSize != 16<<20 {
		t.Errorf("grown without room to %d", info.VirtualSize)
	}
	if l := buf.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "vmm grows it once the volume has room") || !strings.Contains(l, "volume_gives=") || !strings.Contains(l, "needs=") {
		t.Errorf("no warning with both figures:\n%s", l)
	}
	s.Size, s.SizeText = 32<<20, "32Mi"
	if err := Ensure(ctx, log, s); err != nil {
		t.Fatal(err)
	}
	if info, _ := Info(ctx, s.Path, time.Minute); info.VirtualSize != 32<<20 {
		t.Errorf("not grown with room: %d", info.VirtualSize)
	}
}
