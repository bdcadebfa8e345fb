package legacy

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/common/stagetest"
	"github.com/berth-vm/berth/init/internal/volumetest"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func ino(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestDecide: every combination of the pair in both places.
func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name      string
		disk, old []string
		want      Step
	}{
		{"fresh volume", nil, nil, Step{}},
		{"already moved", []string{"vm0.qcow2", "vm0.json"}, nil, Step{}},
		{"legacy pair", nil, []string{"vm0.qcow2", "vm0.json"}, Step{Move: []string{"vm0.qcow2", "vm0.json"}}},
		{"legacy overlay without record", nil, []string{"vm0.qcow2"}, Step{Move: []string{"vm0.qcow2"}}},
		{"crash between the renames", []string{"vm0.qcow2"}, []string{"vm0.json"}, Step{Move: []string{"vm0.json"}}},
		{"stale record in DISK_DIR", []string{"vm0.json"}, []string{"vm0.qcow2", "vm0.json"}, Step{Move: []string{"vm0.qcow2", "vm0.json"}, RemoveStale: true}},
		{"both hold a pet disk", []string{"vm0.qcow2", "vm0.json"}, []string{"vm0.qcow2", "vm0.json"}, Step{Both: true}},
		{"only a legacy record", nil, []string{"vm0.json"}, Step{}},
		{"another VM's legacy disk", nil, []string{"vm1.qcow2", "vm1.json"}, Step{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			l := Layout{VMName: "vm0", DiskDir: filepath.Join(root, "berth"), LegacyDir: root}
			os.Mkdir(l.DiskDir, 0o755)
			for _, n := range tc.disk {
				write(t, filepath.Join(l.DiskDir, n), n)
			}
			for _, n := range tc.old {
				write(t, filepath.Join(root, n), n)
			}
			s, err := l.Decide()
			if err != nil || !reflect.DeepEqual(s, tc.want) {
				t.Errorf("Decide = %+v, %v; want %+v", s, err, tc.want)
			}
		})
	}
	if s, err := (Layout{VMName: "vm0", DiskDir: t.TempDir()}).Decide(); err != nil || !reflect.DeepEqual(s, Step{}) {
		t.Errorf("no DISK_LEGACY_DIR: %+v %v", s, err)
	}
}

// podVolume is the root disk's volume as the pod sees it: a real ext4
// filesystem, DISK_DIR its berth directory bind-mounted (subPath), the
// legacy dir its root bind-mounted (another mount of the same filesystem).
func podVolume(t *testing.T) (vol string, l Layout) {
	vol = volumetest.Ext4(t, 32<<20)
	if err := os.Mkdir(filepath.Join(vol, "berth"), 0o755); err != nil {
		t.Fatal(err)
	}
	return vol, Layout{VMName: "vm0", DiskDir: volumetest.Bind(t, filepath.Join(vol, "berth")), LegacyDir: volumetest.Bind(t, vol)}
}

// TestMoveAcrossMounts: the legacy pair is renamed (same inodes, same bytes)
// into DISK_DIR although DISK_DIR and the legacy dir are two mounts;
// everything else at the volume's root is left as it was; a second run
// changes nothing.
func TestMoveAcrossMounts(t *testing.T) {
	vol, l := podVolume(t)
	write(t, filepath.Join(l.LegacyDir, "vm0.qcow2"), "the guest's data")
	write(t, filepath.Join(l.LegacyDir, "vm0.json"), `{"base":"b"}`)
	write(t, filepath.Join(l.LegacyDir, ".vm0.lock"), "")
	write(t, filepath.Join(l.LegacyDir, "vm1.qcow2"), "another VM's")
	inodes := []uint64{ino(t, filepath.Join(vol, "vm0.qcow2")), ino(t, filepath.Join(vol, "vm0.json"))}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	if err := l.Move(log); err != nil {
		t.Fatal(err)
	}
	for i, n := range []string{"vm0.qcow2", "vm0.json"} {
		if got := ino(t, filepath.Join(l.DiskDir, n)); got != inodes[i] {
			t.Errorf("%s: inode %d, want %d (renamed, not copied)", n, got, inodes[i])
		}
		if _, err := os.Lstat(filepath.Join(l.LegacyDir, n)); err == nil {
			t.Errorf("%s is still in the legacy dir", n)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(l.DiskDir, "vm0.qcow2")); string(b) != "the guest's data" {
		t.Errorf("moved pet disk holds %q", b)
	}
	var left []string
	entries, _ := os.ReadDir(l.LegacyDir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{".vm0.lock", "berth", "lost+found", "vm1.qcow2"}; !reflect.DeepEqual(left, want) {
		t.Errorf("the legacy dir holds %v, want %v", left, want)
	}
	if c := strings.Count(buf.String(), "moved the pet disk of an earlier chart version"); c != 2 {
		t.Errorf("logged %d moves:\n%s", c, buf.String())
	}
	before := stagetest.Snapshot(t, vol)
	if err := l.Move(log); err != nil {
		t.Fatal(err)
	}
	if d := stagetest.DiffSnapshots(before, stagetest.Snapshot(t, vol)); d != "" {
		t.Errorf("a second run changed:\n%s", d)
	}
}

// TestMoveCrashBetweenRenames: the pet disk moved, its record not yet: the
// next run moves the record.
func TestMoveCrashBetweenRenames(t *testing.T) {
	_, l := podVolume(t)
	write(t, filepath.Join(l.DiskDir, "vm0.qcow2"), "moved")
	write(t, filepath.Join(l.LegacyDir, "vm0.json"), "record")
	if err := l.Move(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(l.DiskDir, "vm0.json")); err != nil || string(b) != "record" {
		t.Errorf("record not moved: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(l.LegacyDir, "vm0.json")); err == nil {
		t.Errorf("record still in the legacy dir")
	}
}

// TestMoveRefused: another filesystem (never copied), and a symlink, a FIFO
// or a directory in place of one of the pair: exit 2 naming the variable,
// nothing moved.
func TestMoveRefused(t *testing.T) {
	plantPair := func(t *testing.T, l Layout) {
		write(t, filepath.Join(l.LegacyDir, "vm0.qcow2"), "data")
		write(t, filepath.Join(l.LegacyDir, "vm0.json"), "record")
	}
	for _, tc := range []struct {
		name, wantVar, want string
		setup               func(t *testing.T) (vol string, l Layout)
	}{
		{"another filesystem", Var, "another filesystem", func(t *testing.T) (string, Layout) {
			vol, l := podVolume(t)
			tmp := t.TempDir()
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "berth-test", tmp).CombinedOutput(); err != nil {
				t.Fatalf("mount: %v %s", err, out)
			}
			t.Cleanup(func() { exec.Command("umount", tmp).Run() })
			l.DiskDir = tmp
			plantPair(t, l)
			return vol, l
		}},
		{"DISK_DIR not directly in it", Var, "not a directory directly in it", func(t *testing.T) (string, Layout) {
			vol, l := podVolume(t)
			deep := filepath.Join(vol, "a", "b")
			os.MkdirAll(deep, 0o755)
			l.DiskDir = volumetest.Bind(t, deep)
			plantPair(t, l)
			return vol, l
		}},
		{"symlink at the legacy pet disk", Var, "is a symlink", func(t *testing.T) (string, Layout) {
			vol, l := podVolume(t)
			write(t, filepath.Join(vol, "elsewhere"), "x")
			os.Symlink(filepath.Join(vol, "elsewhere"), filepath.Join(l.LegacyDir, "vm0.qcow2"))
			write(t, filepath.Join(l.LegacyDir, "vm0.json"), "record")
			return vol, l
		}},
		{"FIFO at the legacy record", Var, "is a FIFO", func(t *testing.T) (string, Layout) {
			vol, l := podVolume(t)
			write(t, filepath.Join(l.LegacyDir, "vm0.qcow2"), "data")
			syscall.Mkfifo(filepath.Join(l.LegacyDir, "vm0.json"), 0o644)
			return vol, l
		}},
		{"directory at the legacy pet disk", Var, "is a directory", func(t *testing.T) (string, Layout) {
			vol, l := podVolume(t)
			os.Mkdir(filepath.Join(l.LegacyDir, "vm0.qcow2"), 0o755)
			return vol, l
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol, l := tc.setup(t)
			before := stagetest.Snapshot(t, vol, l.DiskDir)
			err := l.Move(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
			if !stage.IsBadInput(err) || !strings.HasPrefix(err.Error(), tc.wantVar+"=") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Move: %v; want exit 2 naming %s saying %q", err, tc.wantVar, tc.want)
			}
			if d := stagetest.DiffSnapshots(before, stagetest.Snapshot(t, vol, l.DiskDir)); d != "" {
				t.Errorf("a refused move changed:\n%s", d)
			}
		})
	}
}

// TestMoveStaleRecord: a record in DISK_DIR without its pet disk (a crash
// while a new pet disk was made) is never paired with the legacy pet disk:
// it is removed, and the legacy pair comes in.
func TestMoveStaleRecord(t *testing.T) {
	_, l := podVolume(t)
	write(t, filepath.Join(l.DiskDir, "vm0.json"), "stale")
	write(t, filepath.Join(l.LegacyDir, "vm0.qcow2"), "data")
	write(t, filepath.Join(l.LegacyDir, "vm0.json"), "record")
	if err := l.Move(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[string]string{"vm0.qcow2": "data", "vm0.json": "record"} {
		if b, err := os.ReadFile(filepath.Join(l.DiskDir, n)); err != nil || string(b) != want {
			t.Errorf("%s holds %q (%v), want %q", n, b, err, want)
		}
	}
}
