package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stagetest"
	"github.com/berth-vm/berth/init/internal/volumetest"
)

const twoDisks = `[{"name":"data","size":"64Mi"},{"name":"scratch","size":"32Mi","format":"raw"}]`

// withDataDisks is w's environment with DATA_DISKS=value and a volume
// directory per Filesystem disk under root/disks.
func withDataDisks(t *testing.T, w world, value string, names ...string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for k, v := range w.env {
		env[k] = v
	}
	dir := filepath.Join(w.root, "disks")
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
		if w.cred != nil {
			os.Chown(filepath.Join(dir, n), int(w.cred.Uid), int(w.cred.Gid))
		}
	}
	env["DATA_DISKS"], env["DATA_DISK_DIR"] = value, dir
	return env
}

// TestBinaryDataDisks: --dry-run names each disk and what will be done,
// the run creates them, --check agrees, a missing disk and a smaller DATA_DISKS
// size are differences; the second run keeps them.
func TestBinaryDataDisks(t *testing.T) {
	bin := imageFetch.Path(t)
	w := newWorld(t, bin, nil)
	env := withDataDisks(t, w, twoDisks, "data", "scratch")
	q, r := filepath.Join(w.root, "disks/data/data.qcow2"), filepath.Join(w.root, "disks/scratch/scratch.raw")

	dry := run(t, bin, env, nil, "--dry-run")
	for _, want := range []string{"data:     data: " + q + " (qcow2, 64Mi = 67108864 bytes, Filesystem)",
		"data disk data missing: created with qemu-img create -f qcow2", "data disk scratch missing: created with qemu-img create -f raw", "once the guest has written all of it"} {
		if dry.Code != 0 || !strings.Contains(dry.Stdout, want) {
			t.Errorf("--dry-run (exit %d) does not say %q:\n%s%s", dry.Code, want, dry.Stdout, dry.Stderr)
		}
	}
	if _, err := os.Lstat(q); err == nil {
		t.Fatal("--dry-run created a disk")
	}
	if chk := run(t, bin, env, nil, "--check"); chk.Code != 1 || !strings.Contains(chk.Stdout, "differs: data disk data: "+q+" does not exist") {
		t.Errorf("--check before: exit %d\n%s", chk.Code, chk.Stdout)
	}
	if res := run(t, bin, env, nil); res.Code != 0 || !strings.Contains(res.Stderr, "data disk created") {
		t.Fatalf("exit %d\n%s", res.Code, res.Stderr)
	}
	for path, want := range map[string]string{q: `"format": "qcow2"`, r: `"format": "raw"`} {
		if out := stagetest.QemuImg(t, "info", "--output=json", path); !strings.Contains(out, want) {
			t.Errorf("%s: %s", path, out)
		}
	}
	if chk := run(t, bin, env, nil, "--check"); chk.Code != 0 {
		t.Errorf("--check after: exit %d\n%s%s", chk.Code, chk.Stdout, chk.Stderr)
	}
	before := stagetest.Snapshot(t, filepath.Join(w.root, "disks"))
	if res := run(t, bin, env, nil); res.Code != 0 || strings.Count(res.Stderr, "data disk exists, kept") != 2 {
		t.Fatalf("second run: exit %d\n%s", res.Code, res.Stderr)
	}
	if d := stagetest.DiffSnapshots(before, stagetest.Snapshot(t, filepath.Join(w.root, "disks"))); d != "" {
		t.Errorf("a second run changed the data disks:\n%s", d)
	}
	bigger := withDataDisks(t, w, `[{"name":"data","size":"128Mi"},{"name":"scratch","size":"32Mi","format":"raw"}]`)
	if chk := run(t, bin, bigger, nil, "--check"); chk.Code != 1 || !strings.Contains(chk.Stdout, "differs: data disk data: "+q+" is 67108864 bytes, its size in DATA_DISKS is 128Mi") {
		t.Errorf("--check with a larger size: exit %d\n%s", chk.Code, chk.Stdout)
	}
	smaller := withDataDisks(t, w, `[{"name":"data","size":"32Mi"}]`)
	w.expectRefused(t, bin, smaller, 2, "DATA_DISKS=", "disks are never shrunk")
}

// TestBinaryHostileDataDisks: what another pod or a person can leave where a
// data disk belongs — a symlink (to the pet disk, elsewhere, dangling), a
// FIFO, a directory, a qcow2 with a backing file (the base: QEMU would open
// it), a raw file where a qcow2 belongs, a file of another uid, the same at
// the temporary name; and a disk whose volume directory is a symlink. Each:
// exit 2 naming DATA_DISKS and the path, the termination message, nothing
// in the volumes changed (the data disks' volume included).
func TestBinaryHostileDataDisks(t *testing.T) {
	roottest.Require(t)
	bin := imageFetch.Path(t)
	disk := func(w world) string { return filepath.Join(w.root, "disks/data/data.qcow2") }
	tmp := func(w world) string { return filepath.Join(w.root, "disks/data/.data.qcow2.tmp") }
	backed := func(t *testing.T, w world, path string) {
		stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", w.base(), path, "64M")
	}
	rawFile := func(t *testing.T, w world, path string) {
		if err := os.WriteFile(path, make([]byte, 64<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	foreign := func(t *testing.T, w world, path string) {
		stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", path, "64M")
		os.Chown(path, 4242, 4242)
	}
	cases := []struct {
		name string
		path func(world) string
		do   plant
		want string
	}{
		{"symlink to the pet disk", disk, symlinkTo(world.pet), "is a symlink"},
		{"symlink elsewhere", disk, symlinkTo(world.outside), "is a symlink"},
		{"dangling symlink", disk, symlinkTo(func(w world) string { return filepath.Join(w.root, "nothing") }), "is a symlink"},
		{"FIFO", disk, fifo, "is a FIFO"},
		{"directory", disk, directory, "is a directory"},
		{"qcow2 with a backing file", disk, backed, "backing file"},
		{"raw where a qcow2 belongs", disk, rawFile, "not a qcow2 file"},
		{"file of another uid", disk, foreign, "a file of uid 4242"},
		{"symlink at the temporary name", tmp, symlinkTo(world.pet), "is a symlink"},
		{"FIFO at the temporary name", tmp, fifo, "is a FIFO"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, bin, nil)
			env := withDataDisks(t, w, `[{"name":"data","size":"64Mi"}]`, "data")
			tc.do(t, w, tc.path(w))
			before := stagetest.Snapshot(t, filepath.Join(w.root, "disks"))
			w.expectRefused(t, bin, env, 2, "DATA_DISKS=", tc.path(w), tc.want)
			if d := stagetest.DiffSnapshots(before, stagetest.Snapshot(t, filepath.Join(w.root, "disks"))); d != "" {
				t.Errorf("the data disk's volume changed:\n%s", d)
			}
			if chk := run(t, bin, env, nil, "--check"); chk.Code != 1 || !strings.Contains(chk.Stdout, "differs: ") {
				t.Errorf("--check: exit %d\n%s%s", chk.Code, chk.Stdout, chk.Stderr)
			}
		})
	}
	t.Run("volume directory a symlink", func(t *testing.T) {
		w := newWorld(t, bin, nil)
		env := withDataDisks(t, w, `[{"name":"data","size":"64Mi"}]`)
		os.MkdirAll(filepath.Join(w.root, "disks"), 0o755)
		os.Symlink(w.disk, filepath.Join(w.root, "disks/data"))
		w.expectRefused(t, bin, env, 2, "DATA_DISKS=", "is a symlink")
	})
	t.Run("volume directory missing", func(t *testing.T) {
		w := newWorld(t, bin, nil)
		env := withDataDisks(t, w, `[{"name":"data","size":"64Mi"}]`)
		w.expectRefused(t, bin, env, 2, "DATA_DISKS=", "does not exist")
	})
}

// TestBinaryDataDiskNoRoom: on a real ext4 volume of 64 MiB (mkfs.ext4's
// defaults, as a CSI driver makes one), a data disk larger than the volume
// gives is exit 2 naming DATA_DISKS and both figures, and nothing is created;
// as uid 65534 on a directory the disk-owner step gave it.
func TestBinaryDataDiskNoRoom(t *testing.T) {
	bin := imageFetch.Path(t)
	cred := &syscall.Credential{Uid: 65534, Gid: 65534}
	w := newWorld(t, bin, cred)
	vol := volumetest.Ext4(t, 64<<20)
	berth := filepath.Join(vol, "berth")
	if out, err := exec.Command("install", "-d", "-o", "65534", "-g", "65534", "-m", "0750", berth).CombinedOutput(); err != nil {
		t.Fatalf("install -d: %v %s", err, out)
	}
	dir := filepath.Join(w.root, "disks")
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	mnt := volumetest.Bind(t, berth)
	if out, err := exec.Command("mount", "--bind", mnt, filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", filepath.Join(dir, "data")).Run() })
	env := withDataDisks(t, w, `[{"name":"data","size":"60Mi"}]`)
	w.expectRefused(t, bin, env, 2, "DATA_DISKS=", "disk data", "cannot be created", "the volume is smaller than the disk needs", "needs "+strconv.FormatUint(disks.FullAllocation("qcow2", 60<<20), 10)+" bytes")
	if names, _ := os.ReadDir(berth); len(names) != 0 {
		t.Errorf("the refusal left %v", names)
	}
	env = withDataDisks(t, w, `[{"name":"data","size":"32Mi"}]`)
	if r := run(t, bin, env, cred); r.Code != 0 {
		t.Fatalf("a disk that fits, as uid 65534: exit %d\n%s", r.Code, r.Stderr)
	}
	if fi, err := os.Stat(filepath.Join(berth, "data.qcow2")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Errorf("the disk: %v", err)
	}
}

// TestBinaryLegacyLayout: a pet disk made by an earlier chart at the root of
// its volume (a real ext4, DISK_DIR its berth directory bind-mounted as a
// subPath, DISK_LEGACY_DIR the root bind-mounted) is moved into DISK_DIR —
// the same inode, the guest's bytes — and used: no new overlay.
func TestBinaryLegacyLayout(t *testing.T) {
	bin := imageFetch.Path(t)
	w := newWorld(t, bin, nil)
	vol := volumetest.Ext4(t, 64<<20)
	for _, n := range []string{"vm0.qcow2", "vm0.json", ".vm0.lock"} {
		if out, err := exec.Command("cp", "-a", filepath.Join(w.disk, n), vol).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	sum := stagetest.FileSum(filepath.Join(vol, "vm0.qcow2"))
	fi, _ := os.Lstat(filepath.Join(vol, "vm0.qcow2"))
	inode := fi.Sys().(*syscall.Stat_t).Ino
	os.Mkdir(filepath.Join(vol, "berth"), 0o755)
	env := map[string]string{}
	for k, v := range w.env {
		env[k] = v
	}
	env["DISK_DIR"], env["DISK_LEGACY_DIR"] = volumetest.Bind(t, filepath.Join(vol, "berth")), volumetest.Bind(t, vol)

	if dry := run(t, bin, env, nil, "--dry-run"); dry.Code != 0 || !strings.Contains(dry.Stdout, "legacy layout: [vm0.qcow2 vm0.json] in "+env["DISK_LEGACY_DIR"]+" moved into DISK_DIR") {
		t.Errorf("--dry-run: exit %d\n%s%s", dry.Code, dry.Stdout, dry.Stderr)
	}
	if chk := run(t, bin, env, nil, "--check"); chk.Code != 1 || !strings.Contains(chk.Stdout, "the next run moves them into DISK_DIR") {
		t.Errorf("--check before the move: exit %d\n%s", chk.Code, chk.Stdout)
	}
	r := run(t, bin, env, nil)
	if r.Code != 0 || strings.Count(r.Stderr, "moved the pet disk of an earlier chart version") != 2 || !strings.Contains(r.Stderr, "pet disk exists, kept") {
		t.Fatalf("exit %d\n%s", r.Code, r.Stderr)
	}
	moved := filepath.Join(vol, "berth", "vm0.qcow2")
	if fi, err := os.Lstat(moved); err != nil || fi.Sys().(*syscall.Stat_t).Ino != inode || stagetest.FileSum(moved) != sum {
		t.Errorf("the pet disk was not renamed into DISK_DIR unchanged: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(vol, ".vm0.lock")); err != nil {
		t.Errorf("the legacy lock file was touched: %v", err)
	}
	if chk := run(t, bin, env, nil, "--check"); chk.Code != 0 {
		t.Errorf("--check after: exit %d\n%s%s", chk.Code, chk.Stdout, chk.Stderr)
	}
}

// TestBinaryPetDiskNoRoom: DISK_SIZE larger than the pet disk's volume (a
// real ext4 of 64 MiB) gives is exit 2 naming DISK_SIZE and both figures,
// before the base is downloaded; without DISK_SIZE (the base's own size,
// known once it is downloaded) it is refused after the download.
func TestBinaryPetDiskNoRoom(t *testing.T) {
	bin := imageFetch.Path(t)
	srv, gets := qcow2Server(t)
	vol := volumetest.Ext4(t, 64<<20)
	dir := t.TempDir()
	env := map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": srv.URL + "/guest.qcow2", "IMAGE_DIR": stagetest.VolumeDir(t, dir, "images"),
		"DISK_DIR": vol, "DISK_SIZE": "60Mi", "TERMINATION_LOG": filepath.Join(dir, "tl")}
	r := run(t, bin, env, nil)
	for _, want := range []string{`DISK_SIZE="60Mi"`, "cannot be created", "the volume is smaller than the disk needs",
		"needs " + strconv.FormatUint(disks.FullAllocation("qcow2", 60<<20), 10) + " bytes"} {
		if r.Code != 2 || !strings.Contains(r.Stderr, want) {
			t.Errorf("exit %d, want 2 saying %q:\n%s", r.Code, want, r.Stderr)
		}
	}
	if gets.Load() != 0 {
		t.Errorf("the base was downloaded (%d GETs) for a pet disk that cannot be made", gets.Load())
	}
	env["DISK_SIZE"] = "64Mi" // the base's size
	if r := run(t, bin, env, nil); r.Code != 2 {
		t.Errorf("DISK_SIZE 64Mi on a 64 MiB ext4: exit %d, want 2\n%s", r.Code, r.Stderr)
	}
	delete(env, "DISK_SIZE")
	if r := run(t, bin, env, nil); r.Code != 2 || !strings.Contains(r.Stderr, "DISK_SIZE unset: the base's virtual size") || gets.Load() != 1 {
		t.Errorf("the base's size on a 64 MiB ext4: exit %d (%d GETs), want 2 after the download\n%s", r.Code, gets.Load(), r.Stderr)
	}
}
