package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/common/stagetest"
	"github.com/berth-vm/berth/init/overlay"
)

// makeQcow2 makes a qcow2 base of the given size with a marker written into
// it (so two bases differ), and returns its bytes.
func makeQcow2(t *testing.T, path, size, marker string) []byte {
	t.Helper()
	raw := path + ".raw"
	stagetest.QemuImg(t, "create", "-q", "-f", "raw", raw, size)
	f, err := os.OpenFile(raw, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(marker)
	f.Close()
	stagetest.QemuImg(t, "convert", "-q", "-f", "raw", "-O", "qcow2", raw, path)
	os.Remove(raw)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func planFor(t *testing.T, dir string, env map[string]string) Plan {
	t.Helper()
	full := map[string]string{"VM_NAME": "vm0", "IMG_TARGET": "base.qcow2",
		"IMAGE_DIR": stagetest.VolumeDir(t, dir, "images"), "DISK_DIR": stagetest.VolumeDir(t, dir, "disk")}
	for k, v := range env {
		full[k] = v
	}
	p, err := FromEnv(stage.MapEnv(full), statFile)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func overlayInfo(t *testing.T, path string) overlay.ImageInfo {
	t.Helper()
	var info overlay.ImageInfo
	if err := json.Unmarshal([]byte(stagetest.QemuImg(t, "info", "-f", "qcow2", "--output=json", path)), &info); err != nil {
		t.Fatal(err)
	}
	return info
}

// TestOverlayLifecycle: created once with the base as backing file, kept (same
// file) on every later run, grown never shrunk, and never paired with another base.
func TestOverlayLifecycle(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.qcow2")
	baseBytes := makeQcow2(t, src, "8M", "base one")
	p := planFor(t, dir, map[string]string{"IMG_SOURCE": src})
	ctx := context.Background()

	if err := testApplier(t).Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	info := overlayInfo(t, p.OverlayPath())
	if info.FullBackingFilename != p.BasePath() || info.BackingFormat != "qcow2" || info.VirtualSize != 8<<20 {
		t.Fatalf("overlay info = %+v", info)
	}
	rec, exists, err := overlay.ReadRecord(p.OverlayPath(), p.OverlayRecordPath())
	if err != nil || !exists || rec.SHA256 != sum(baseBytes) || rec.Base != "base.qcow2" || rec.Format != "qcow2" {
		t.Fatalf("record = %+v, %v, %v", rec, exists, err)
	}
	ino := inode(t, p.OverlayPath())
	if diffs, err := p.check(ctx, time.Minute); err != nil || len(diffs) > 0 {
		t.Fatalf("check after Apply: %q, %v", diffs, err)
	}
	// The guest writes into its disk.
	petBefore, _ := os.ReadFile(p.OverlayPath())

	// Second run: same overlay file, untouched.
	if err := testApplier(t).Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if inode(t, p.OverlayPath()) != ino {
		t.Fatal("overlay replaced by a new file")
	}
	if petAfter, _ := os.ReadFile(p.OverlayPath()); string(petAfter) != string(petBefore) {
		t.Fatal("overlay content changed on a second run")
	}

	// Grow to 16M; a smaller size is bad input and changes nothing.
	p16 := planFor(t, dir, map[string]string{"IMG_SOURCE": src, "DISK_SIZE": "16Mi"})
	if err := testApplier(t).Apply(ctx, p16); err != nil {
		t.Fatal(err)
	}
	if got := overlayInfo(t, p.OverlayPath()).VirtualSize; got != 16<<20 {
		t.Fatalf("virtual size %d after growing, want 16 MiB", got)
	}
	p12 := planFor(t, dir, map[string]string{"IMG_SOURCE": src, "DISK_SIZE": "12Mi"})
	if err := testApplier(t).Apply(ctx, p12); !stage.IsBadInput(err) || !strings.Contains(err.Error(), "DISK_SIZE") {
		t.Fatalf("shrink: err = %v, want bad input DISK_SIZE", err)
	}
	if got := overlayInfo(t, p.OverlayPath()).VirtualSize; got != 16<<20 {
		t.Fatalf("virtual size %d after a refused shrink", got)
	}
	if inode(t, p.OverlayPath()) != ino {
		t.Fatal("overlay replaced by a new file")
	}

	// IMG_SHA256 pinning another base than the pet's: bad input, nothing changes.
	pPin := planFor(t, dir, map[string]string{"IMG_SOURCE": src, "IMG_SHA256": strings.Repeat("0", 64)})
	if err := testApplier(t).Apply(ctx, pPin); !stage.IsBadInput(err) || !strings.Contains(err.Error(), "IMG_SHA256") {
		t.Fatalf("pin of another base: err = %v, want bad input IMG_SHA256", err)
	}
	// IMG_TARGET renamed under an existing pet: bad input.
	pTarget := planFor(t, dir, map[string]string{"IMG_SOURCE": src, "IMG_TARGET": "other.qcow2"})
	if err := testApplier(t).Apply(ctx, pTarget); !stage.IsBadInput(err) || !strings.Contains(err.Error(), "IMG_TARGET") {
		t.Fatalf("other target: err = %v, want bad input IMG_TARGET", err)
	}

	// The source now holds another image and the cache was emptied (the pod
	// moved to another node): fetched again, found different, refused; the
	// pet disk is untouched and the other image is not left in the cache.
	makeQcow2(t, src, "8M", "base two")
	os.Remove(p.BasePath())
	os.Remove(p.RecordPath())
	err = testApplier(t).Apply(ctx, p)
	if err == nil || !strings.Contains(err.Error(), "pet disk") || !strings.Contains(err.Error(), rec.SHA256) {
		t.Fatalf("changed base: err = %v, want a mismatch naming the pet disk and its base", err)
	}
	assertNothingInPlace(t, p)
	assertNoTemp(t, p)
	if inode(t, p.OverlayPath()) != ino {
		t.Fatal("overlay replaced")
	}
	if diffs, err := p.check(ctx, time.Minute); err != nil || len(diffs) == 0 || !strings.HasPrefix(diffs[0], "base") {
		t.Fatalf("check without the base: %q, %v", diffs, err)
	}

	// The cache holds the other image (another pod fetched it): refused, kept.
	pOther := planFor(t, t.TempDir(), map[string]string{"IMG_SOURCE": src, "IMAGE_DIR": p.ImageDir})
	if _, err := testApplier(t).EnsureBase(ctx, pOther, "", "IMG_SHA256"); err != nil {
		t.Fatal(err)
	}
	if err := testApplier(t).Apply(ctx, p); !stage.IsBadInput(err) || !strings.Contains(err.Error(), "never paired") {
		t.Fatalf("cache holds another base: err = %v, want bad input", err)
	}

	// The same image comes back: the cache is refilled and the pet disk kept.
	os.Chmod(p.BasePath(), 0o644)
	os.Remove(p.BasePath())
	os.Remove(p.RecordPath())
	if err := os.WriteFile(src, baseBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := testApplier(t).Apply(ctx, p); err != nil {
		t.Fatalf("same base again: %v", err)
	}
	assertInPlace(t, p, baseBytes)
	if inode(t, p.OverlayPath()) != ino {
		t.Fatal("overlay replaced")
	}
}

// TestOverlayEdgeCases: an overlay without its record is refused, a stale
// record without an overlay is replaced, a size below the base's is refused,
// and a stale temporary overlay from a crash is dropped.
func TestOverlayEdgeCases(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.qcow2")
	makeQcow2(t, src, "8M", "edge")

	t.Run("size below the base", func(t *testing.T) {
		p := planFor(t, t.TempDir(), map[string]string{"IMG_SOURCE": src, "DISK_SIZE": "4Mi"})
		if err := testApplier(t).Apply(ctx, p); !stage.IsBadInput(err) {
			t.Fatalf("err = %v, want bad input", err)
		}
		if _, err := os.Stat(p.OverlayPath()); err == nil {
			t.Fatal("overlay made despite the error")
		}
	})
	t.Run("overlay without record", func(t *testing.T) {
		p := planFor(t, t.TempDir(), map[string]string{"IMG_SOURCE": src})
		os.MkdirAll(p.DiskDir, 0o755)
		stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", p.OverlayPath(), "8M")
		before, _ := os.ReadFile(p.OverlayPath())
		if err := testApplier(t).Apply(ctx, p); err == nil || !strings.Contains(err.Error(), "record") {
			t.Fatalf("err = %v, want a missing record error", err)
		}
		if after, _ := os.ReadFile(p.OverlayPath()); string(after) != string(before) {
			t.Fatal("overlay without record was changed")
		}
	})
	t.Run("stale record and temp overlay", func(t *testing.T) {
		p := planFor(t, t.TempDir(), map[string]string{"IMG_SOURCE": src})
		os.MkdirAll(p.DiskDir, 0o755)
		os.WriteFile(p.OverlayRecordPath(), []byte(`{"base":"x","sha256":"y"}`), 0o644)
		os.WriteFile(filepath.Join(p.DiskDir, ".vm0.qcow2.tmp"), []byte("junk"), 0o644)
		if err := testApplier(t).Apply(ctx, p); err != nil {
			t.Fatal(err)
		}
		rec, _, err := overlay.ReadRecord(p.OverlayPath(), p.OverlayRecordPath())
		if err != nil || rec.Base != "base.qcow2" {
			t.Fatalf("record = %+v, %v", rec, err)
		}
		if _, err := os.Stat(filepath.Join(p.DiskDir, ".vm0.qcow2.tmp")); err == nil {
			t.Error("temporary overlay left")
		}
	})
	t.Run("raw base over http", func(t *testing.T) {
		body := rawImage(9, 1<<20)
		srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) { serveRange(w, r, body, modTime) })
		p := planFor(t, t.TempDir(), map[string]string{"IMG_SOURCE": srv.URL + "/disk.img", "IMG_TARGET": "", "DISK_SIZE": "2Mi"})
		if p.Target != "disk.img" {
			t.Fatalf("target %q, want the URL's base name", p.Target)
		}
		if err := testApplier(t).Apply(ctx, p); err != nil {
			t.Fatal(err)
		}
		info := overlayInfo(t, p.OverlayPath())
		if info.BackingFormat != "raw" || info.VirtualSize != 2<<20 {
			t.Fatalf("overlay info %+v", info)
		}
	})
}

// TestBackingFileImageIsBadInput: a qcow2 that names a backing file can never be a base: bad
// input naming IMG_SOURCE (exit 2, the message in the pod's termination log), nothing kept in
// the cache and no pet disk made.
func TestBackingFileImageIsBadInput(t *testing.T) {
	dir := t.TempDir()
	parent := filepath.Join(dir, "parent.qcow2")
	makeQcow2(t, parent, "8M", "parent")
	src := filepath.Join(dir, "child.qcow2")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-b", parent, "-F", "qcow2", src)
	p := planFor(t, dir, map[string]string{"IMG_SOURCE": src})
	err := testApplier(t).Apply(context.Background(), p)
	var ie *stage.InputError
	if !errors.As(err, &ie) || ie.Var != "IMG_SOURCE" || ie.Value != src || !strings.Contains(err.Error(), "backing file") {
		t.Fatalf("err = %v, want bad input IMG_SOURCE=%s naming the backing file", err, src)
	}
	if stage.ExitCode(err) != stage.ExitBadInput {
		t.Errorf("exit code %d, want %d", stage.ExitCode(err), stage.ExitBadInput)
	}
	for _, f := range []string{p.BasePath(), p.partPath(), p.OverlayPath()} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left behind after a refused image", f)
		}
	}
}
