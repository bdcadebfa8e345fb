package datadisk

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/common/stagetest"
	"github.com/berth-vm/berth/init/internal/volumetest"
	"golang.org/x/sys/unix"
)

const timeout = 30 * time.Second

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
func (s *syncBuf) Reset()                      { s.mu.Lock(); defer s.mu.Unlock(); s.b.Reset() }

func testLog() (*slog.Logger, *syncBuf) {
	var buf syncBuf
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

// plan makes the plan of DATA_DISKS=value with DATA_DISK_DIR=dir, each
// Filesystem disk's volume directory made under dir (as the chart mounts it).
func plan(t *testing.T, dir, value string) Plan {
	t.Helper()
	p, err := FromEnv(stage.MapEnv(map[string]string{"DATA_DISKS": value, "DATA_DISK_DIR": dir}))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p.Disks {
		if !d.Block() {
			if err := os.MkdirAll(d.VolumeDir(dir), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return p
}

type imgInfo struct {
	Format      string `json:"format"`
	VirtualSize uint64 `json:"virtual-size"`
}

func info(t *testing.T, path string) imgInfo {
	t.Helper()
	var i imgInfo
	if err := json.Unmarshal([]byte(stagetest.QemuImg(t, "info", "--output=json", path)), &i); err != nil {
		t.Fatal(err)
	}
	return i
}

// TestApplyCreatesGrowsKeeps: real qemu-img; a qcow2 and a raw disk are
// created at their size, kept by a second run, grown (data kept), never shrunk.
func TestApplyCreatesGrowsKeeps(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	log, buf := testLog()
	p := plan(t, dir, `[{"name":"data","size":"64Mi"},{"name":"scratch","size":"32Mi","format":"raw"}]`)
	if err := p.Validate(ctx, timeout); err != nil {
		t.Fatal(err)
	}
	if n, _ := os.ReadDir(filepath.Join(dir, "data")); len(n) != 0 {
		t.Fatalf("Validate created %v", n)
	}
	if err := p.Apply(ctx, log, timeout); err != nil {
		t.Fatalf("Apply: %v\n%s", err, buf)
	}
	q, r := filepath.Join(dir, "data", "data.qcow2"), filepath.Join(dir, "scratch", "scratch.raw")
	if i := info(t, q); i.Format != "qcow2" || i.VirtualSize != 64<<20 {
		t.Errorf("qcow2 disk: %+v", i)
	}
	if i := info(t, r); i.Format != "raw" || i.VirtualSize != 32<<20 {
		t.Errorf("raw disk: %+v", i)
	}
	for _, d := range []string{"data", "scratch"} {
		if n, _ := os.ReadDir(filepath.Join(dir, d)); len(n) != 1 {
			t.Errorf("%s holds %v, want the disk only (no temporary file)", d, n)
		}
	}
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", q).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v %s", err, out)
	}
	before := stagetest.Snapshot(t, dir)
	if diffs, err := p.Check(ctx, timeout); err != nil || len(diffs) != 0 {
		t.Errorf("Check after Apply: %v %v", diffs, err)
	}
	if err := p.Apply(ctx, log, timeout); err != nil {
		t.Fatal(err)
	}
	if d := stagetest.DiffSnapshots(before, stagetest.Snapshot(t, dir)); d != "" || strings.Count(buf.String(), "data disk exists, kept") != 2 {
		t.Errorf("a second Apply changed:\n%s\nlog:\n%s", d, buf)
	}

	grown := plan(t, dir, `[{"name":"data","size":"128Mi"},{"name":"scratch","size":"48Mi","format":"raw"}]`)
	if diffs, err := grown.Check(ctx, timeout); err != nil || len(diffs) != 2 || !strings.Contains(diffs[0], "is 67108864 bytes, its size in DATA_DISKS is 128Mi") {
		t.Errorf("Check before growth: %q %v", diffs, err)
	}
	if err := grown.Apply(ctx, log, timeout); err != nil {
		t.Fatal(err)
	}
	if i := info(t, q); i.VirtualSize != 128<<20 {
		t.Errorf("qcow2 not grown: %+v", i)
	}
	if i := info(t, r); i.VirtualSize != 48<<20 {
		t.Errorf("raw not grown: %+v", i)
	}
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 0 1M", q).CombinedOutput(); err != nil || strings.Contains(string(out), "Pattern verification failed") {
		t.Errorf("the data did not survive growth: %v %s", err, out)
	}

	before = stagetest.Snapshot(t, dir)
	shrunk := plan(t, dir, `[{"name":"data","size":"64Mi"}]`)
	err := shrunk.Apply(ctx, log, timeout)
	if !stage.IsBadInput(err) || !strings.Contains(err.Error(), "DATA_DISKS=") || !strings.Contains(err.Error(), "never shrunk") {
		t.Errorf("shrink: %v", err)
	}
	if d := stagetest.DiffSnapshots(before, stagetest.Snapshot(t, dir)); d != "" {
		t.Errorf("a refused shrink changed:\n%s", d)
	}
}

// TestApplyMissingVolume: a Filesystem disk whose volume directory is not
// there (not mounted) is exit 2 naming DATA_DISKS; nothing is created.
func TestApplyMissingVolume(t *testing.T) {
	dir := t.TempDir()
	p, err := FromEnv(stage.MapEnv(map[string]string{"DATA_DISKS": `[{"name":"data","size":"1Mi"}]`, "DATA_DISK_DIR": dir}))
	if err != nil {
		t.Fatal(err)
	}
	log, _ := testLog()
	err = p.Apply(context.Background(), log, timeout)
	if !stage.IsBadInput(err) || !strings.Contains(err.Error(), "DATA_DISKS=") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Apply: %v", err)
	}
	if diffs, err := p.Check(context.Background(), timeout); err != nil || len(diffs) != 1 {
		t.Errorf("Check: %q %v", diffs, err)
	}
	if n, _ := os.ReadDir(dir); len(n) != 0 {
		t.Errorf("created %v", n)
	}
}

// TestRoomOnExt4: a real ext4 volume of 64 MiB made by mkfs.ext4 (root-owned
// 0755, 5 % reserved for root), as a CSI driver hands one out. A disk larger
// than what the volume gives non-root users is refused (even when it would
// fit in the blocks root keeps), growth without room is deferred with the
// warning and succeeds, growth with room works.
func TestRoomOnExt4(t *testing.T) {
	mnt := volumetest.Ext4(t, 64<<20)
	ctx := context.Background()
	log, buf := testLog()
	dir := filepath.Join(mnt, "disks")
	if err := os.MkdirAll(filepath.Join(dir, "big"), 0o755); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	avail, free := st.Bavail*uint64(st.Frsize), st.Bfree*uint64(st.Frsize)
	if avail >= free {
		t.Fatalf("the ext4 volume keeps nothing for root: avail %d, free %d", avail, free)
	}

	// Between what non-root users get and what is free: must not be created.
	between := (avail + (free-avail)/2) &^ 511
	p := plan(t, dir, `[{"name":"big","size":"`+itoa(between)+`","format":"raw"}]`)
	before := stagetest.Snapshot(t, mnt)
	err := p.Apply(ctx, log, timeout)
	for _, s := range []string{"DATA_DISKS=", "disk big", "smaller than the disk needs", "gives the disk " + itoa(avail) + " bytes", "needs " + itoa(between) + " bytes"} {
		if !stage.IsBadInput(err) || !strings.Contains(err.Error(), s) {
			t.Errorf("a disk over the volume's room: %v; want exit 2 saying %q", err, s)
		}
	}
	if d := stagetest.DiffSnapshots(before, stagetest.Snapshot(t, mnt)); d != "" {
		t.Errorf("the refusal changed the volume:\n%s", d)
	}

	// A qcow2 of 16 MiB with 8 MiB written, grown to what does not fit.
	small := plan(t, dir, `[{"name":"data","size":"16Mi"}]`)
	if err := small.Apply(ctx, log, timeout); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(dir, "data", "data.qcow2")
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 8M", q).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v %s", err, out)
	}
	tooBig := plan(t, dir, `[{"name":"data","size":"60Mi"}]`)
	buf.Reset()
	if err := tooBig.Apply(ctx, log, timeout); err != nil {
		t.Fatalf("growth without room must succeed: %v", err)
	}
	if i := info(t, q); i.VirtualSize != 16<<20 {
		t.Errorf("grown without room: %+v", i)
	}
	if l := buf.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "vmm grows it once the volume has room") ||
		!strings.Contains(l, "needs="+itoa(disks.FullAllocation("qcow2", 60<<20))) || !strings.Contains(l, "volume_gives=") {
		t.Errorf("no warning with both figures:\n%s", l)
	}
	if diffs, _ := tooBig.Check(ctx, timeout); len(diffs) != 1 {
		t.Errorf("Check of a deferred growth: %q", diffs)
	}

	fits := plan(t, dir, `[{"name":"data","size":"32Mi"}]`)
	if err := fits.Apply(ctx, log, timeout); err != nil {
		t.Fatal(err)
	}
	if i := info(t, q); i.VirtualSize != 32<<20 {
		t.Errorf("not grown with room: %+v", i)
	}
}

// TestBlockDevice: a Block disk is a real loop device, made at the plan's
// block directory with mknod (as the runtime makes volumeDevices): at least
// its size is used as it is, smaller is exit 2; never written. A symlink to
// the device, a regular file or a character device there is refused.
func TestBlockDevice(t *testing.T) {
	dev := volumetest.Loop(t, 32<<20)
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	blockDir := t.TempDir()
	node := filepath.Join(blockDir, "fast")
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Rdev)); err != nil {
		t.Fatal(err)
	}
	sum := func() string { return stagetest.FileSum(dev) }
	before := sum()
	ctx := context.Background()
	log, buf := testLog()
	for _, tc := range []struct {
		size string
		ok   bool
	}{{"32Mi", true}, {"16Mi", true}, {"33Mi", false}} {
		p := plan(t, t.TempDir(), `[{"name":"fast","size":"`+tc.size+`","volumeMode":"Block"}]`)
		p.BlockDir = blockDir
		err := p.Apply(ctx, log, timeout)
		diffs, cerr := p.Check(ctx, timeout)
		if tc.ok && (err != nil || cerr != nil || len(diffs) != 0) {
			t.Errorf("size %s on a 32 MiB device: %v; check %q %v\n%s", tc.size, err, diffs, cerr, buf)
		}
		if !tc.ok && (!stage.IsBadInput(err) || !strings.Contains(err.Error(), "33554432 bytes") || len(diffs) != 1) {
			t.Errorf("size %s on a 32 MiB device: %v, want exit 2 naming its size; check %q", tc.size, err, diffs)
		}
	}
	if sum() != before {
		t.Errorf("the device was written")
	}

	chr := filepath.Join(blockDir, "chr")
	if err := unix.Mknod(chr, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil { // /dev/null
		t.Fatal(err)
	}
	for name, plant := range map[string]func(string) error{
		"symlink to the device": func(p string) error { return os.Symlink(dev, p) },
		"regular file":          func(p string) error { return os.WriteFile(p, make([]byte, 64<<20), 0o600) },
		"character device":      func(p string) error { return os.Rename(chr, p) },
	} {
		os.Remove(node)
		if err := plant(node); err != nil {
			t.Fatal(err)
		}
		p := plan(t, t.TempDir(), `[{"name":"fast","size":"1Mi","volumeMode":"Block"}]`)
		p.BlockDir = blockDir
		if err := p.Apply(ctx, log, timeout); !stage.IsBadInput(err) || !strings.Contains(err.Error(), "not the block device") {
			t.Errorf("%s: %v, want exit 2", name, err)
		}
	}
	if sum() != before {
		t.Errorf("the device was written")
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
