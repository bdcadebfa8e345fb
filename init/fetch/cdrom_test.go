package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/common/stagetest"
	"github.com/berth-vm/berth/init/overlay"
)

// makeISO makes a real ISO 9660 image (genisoimage) holding one file.
func makeISO(t *testing.T, path, content string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("genisoimage", "-quiet", "-V", "TEST", "-o", path, dir).CombinedOutput(); err != nil {
		t.Fatalf("genisoimage: %v: %s", err, out)
	}
}

func cdromsJSON(t *testing.T, items ...map[string]string) string {
	t.Helper()
	b, err := json.Marshal(items)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// blankPlan is a plan with IMG_SOURCE empty (a blank pet disk) and env added.
func blankPlan(t *testing.T, dir string, env map[string]string) (Plan, error) {
	t.Helper()
	full := map[string]string{"VM_NAME": "vm0", "DISK_BLANK": "true", "DISK_SIZE": "64Mi",
		"IMAGE_DIR": stagetest.VolumeDir(t, dir, "images"), "DISK_DIR": stagetest.VolumeDir(t, dir, "disk")}
	for k, v := range env {
		full[k] = v
	}
	return FromEnv(stage.MapEnv(full), statFile)
}

func TestBlankAndCDROMsFromEnv(t *testing.T) {
	dir := t.TempDir()
	iso := filepath.Join(dir, "installer.iso")
	makeISO(t, iso, "installer")
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantVar string // "" = accepted
	}{
		{"blank with an ISO", map[string]string{"CDROMS": cdromsJSON(t, map[string]string{"source": iso})}, ""},
		{"blank without an ISO (after the install)", nil, ""},
		{"blank needs DISK_SIZE", map[string]string{"DISK_SIZE": ""}, "DISK_SIZE"},
		{"blank with IMG_SOURCE", map[string]string{"IMG_SOURCE": "https://h/x.qcow2"}, "DISK_BLANK"},
		{"DISK_BLANK not a bool", map[string]string{"DISK_BLANK": "blank"}, "DISK_BLANK"},
		{"blank with IMG_SHA256", map[string]string{"IMG_SHA256": strings.Repeat("a", 64)}, "IMG_SHA256"},
		{"blank with IMG_TARGET", map[string]string{"IMG_TARGET": "x.qcow2"}, "IMG_TARGET"},
		{"CDROMS not JSON", map[string]string{"CDROMS": "installer.iso"}, "CDROMS"},
		{"CDROMS unknown key", map[string]string{"CDROMS": `[{"source":"` + iso + `","boot":true}]`}, "CDROMS"},
		{"CDROMS ftp", map[string]string{"CDROMS": `[{"source":"ftp://h/x.iso"}]`}, "CDROMS[0].source"},
		{"CDROMS relative path", map[string]string{"CDROMS": `[{"source":"x.iso"}]`}, "CDROMS[0].source"},
		{"CDROMS credentials", map[string]string{"CDROMS": `[{"source":"https://u:SECRET@h/x.iso"}]`}, "CDROMS[0].source"},
		{"CDROMS missing local file", map[string]string{"CDROMS": `[{"source":"/nonexistent/x.iso"}]`}, "CDROMS[0].source"},
		{"CDROMS bad sha256", map[string]string{"CDROMS": `[{"source":"https://h/x.iso","sha256":"abc"}]`}, "CDROMS[0].sha256"},
		{"CDROMS hidden target", map[string]string{"CDROMS": `[{"source":"https://h/x.iso","target":".x"}]`}, "CDROMS[0].target"},
		{"CDROMS same target twice", map[string]string{"CDROMS": `[{"source":"https://h/a/x.iso"},{"source":"https://h/b/x.iso"}]`}, "CDROMS[1].target"},
		{"CDROMS URL without a file name", map[string]string{"CDROMS": `[{"source":"https://h/"}]`}, "CDROMS[0].target"},
		{"CDROMS target is the pet disk's", map[string]string{"CDROMS": `[{"source":"https://h/x.iso","target":"vm0.qcow2"}]`, "DISK_DIR": filepath.Join(dir, "images")}, "CDROMS[0].target"},
		{"CDROMS seven", map[string]string{"CDROMS": "[" + strings.TrimSuffix(strings.Repeat(`{"source":"https://h/x.iso"},`, 7), ",") + "]"}, "CDROMS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := blankPlan(t, dir, tc.env)
			if tc.wantVar == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !p.Blank {
					t.Errorf("plan not blank: %+v", p)
				}
				return
			}
			var ie *stage.InputError
			if !errors.As(err, &ie) || ie.Var != tc.wantVar {
				t.Fatalf("err = %v, want bad input naming %s", err, tc.wantVar)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error leaks the URL's secret: %v", err)
			}
		})
	}

	// The ISO's file name may not be the base's.
	_, err := FromEnv(stage.MapEnv(map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": "https://h/base.qcow2",
		"CDROMS": `[{"source":"https://h/x/base.qcow2"}]`}), statFile)
	var ie *stage.InputError
	if !errors.As(err, &ie) || ie.Var != "CDROMS[0].target" {
		t.Errorf("an ISO named as the base: %v, want bad input naming CDROMS[0].target", err)
	}
}

// TestBlankDiskWithISOs: a blank pet disk (no backing file, its record says
// blank) and two ISOs cached and recorded; run again, nothing changes; then
// the ISOs go (the install is done) and the disk is kept; a base cannot be
// paired with the blank disk.
func TestBlankDiskWithISOs(t *testing.T) {
	dir := t.TempDir()
	installer, drivers := filepath.Join(dir, "installer.iso"), filepath.Join(dir, "drivers.iso")
	makeISO(t, installer, "installer")
	makeISO(t, drivers, "drivers")
	cd := cdromsJSON(t, map[string]string{"source": installer}, map[string]string{"source": drivers, "target": "virtio-win.iso"})
	p, err := blankPlan(t, dir, map[string]string{"CDROMS": cd})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if diffs, err := p.check(ctx, time.Minute); err != nil || len(diffs) == 0 {
		t.Fatalf("check before apply: %q, %v", diffs, err)
	}
	if err := testApplier(t).Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if diffs, err := p.check(ctx, time.Minute); err != nil || len(diffs) != 0 {
		t.Fatalf("check after apply: %q, %v", diffs, err)
	}
	info := overlayInfo(t, p.OverlayPath())
	if info.FullBackingFilename != "" || info.VirtualSize != 64<<20 || info.Format != "qcow2" {
		t.Errorf("blank disk: %+v, want a qcow2 of 64 MiB without a backing file", info)
	}
	rec, exists, err := overlay.ReadRecord(p.OverlayPath(), p.OverlayRecordPath())
	if err != nil || !exists || !rec.Blank || rec.Base != "" || rec.SHA256 != "" {
		t.Errorf("record = %+v, %v, %v; want blank", rec, exists, err)
	}
	for _, name := range []string{"installer.iso", "virtio-win.iso"} {
		e := entry{Artifact{Target: name}, p.ImageDir}
		if _, err := readRecord(e); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if fi, err := os.Stat(e.Path()); err != nil || fi.Mode().Perm() != 0o444 {
			t.Errorf("%s: %v %v, want read-only", name, fi, err)
		}
	}
	ino := inode(t, p.OverlayPath())

	// Again: kept.
	if err := testApplier(t).Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	// The install is done: no ISOs, the same disk.
	after, err := blankPlan(t, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := testApplier(t).Apply(ctx, after); err != nil {
		t.Fatal(err)
	}
	if inode(t, p.OverlayPath()) != ino {
		t.Errorf("the pet disk was replaced")
	}
	// Grown, never shrunk.
	grown, _ := blankPlan(t, dir, map[string]string{"DISK_SIZE": "128Mi"})
	if err := testApplier(t).Apply(ctx, grown); err != nil {
		t.Fatal(err)
	}
	if got := overlayInfo(t, p.OverlayPath()).VirtualSize; got != 128<<20 {
		t.Errorf("after DISK_SIZE=128Mi: %d bytes", got)
	}

	// A base with the blank disk: refused, exit 2, the disk untouched.
	src := filepath.Join(dir, "base.qcow2")
	makeQcow2(t, src, "8M", "base")
	withBase := planFor(t, dir, map[string]string{"IMG_SOURCE": src})
	err = testApplier(t).Apply(ctx, withBase)
	var ie *stage.InputError
	if !errors.As(err, &ie) || ie.Var != "IMG_SOURCE" {
		t.Errorf("a base on the blank disk: %v, want bad input naming IMG_SOURCE", err)
	}
	if inode(t, p.OverlayPath()) != ino || overlayInfo(t, p.OverlayPath()).FullBackingFilename != "" {
		t.Errorf("the blank disk changed")
	}
}

// TestCDROMNotAnISO: a qcow2, a raw disk image and an HTML page given as an
// ISO are refused with exit 2 naming the item, and nothing is made: no pet
// disk, nothing cached.
func TestCDROMNotAnISO(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "disk.qcow2")
	makeQcow2(t, q, "8M", "x")
	raw := filepath.Join(dir, "disk.img")
	stagetest.QemuImg(t, "create", "-q", "-f", "raw", raw, "4M")
	html := filepath.Join(dir, "page.iso")
	if err := os.WriteFile(html, []byte("<!DOCTYPE html><html><body>Not found</body></html>\n"+strings.Repeat(" ", 4096-52)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{q, raw, html} {
		t.Run(filepath.Base(src), func(t *testing.T) {
			d := t.TempDir()
			p, err := blankPlan(t, d, map[string]string{"CDROMS": cdromsJSON(t, map[string]string{"source": src})})
			if err != nil {
				t.Fatal(err)
			}
			err = testApplier(t).Apply(context.Background(), p)
			if src == html {
				// No image at all (perhaps an error page in its place): a
				// retryable failure, the copy discarded.
				if err == nil || stage.IsBadInput(err) {
					t.Fatalf("err = %v, want a retryable failure", err)
				}
			} else {
				var ie *stage.InputError
				if !errors.As(err, &ie) || ie.Var != "CDROMS[0].source" || !strings.Contains(err.Error(), "not a usable ISO") {
					t.Fatalf("err = %v, want bad input naming CDROMS[0].source", err)
				}
			}
			for _, f := range []string{p.OverlayPath(), p.OverlayRecordPath(), filepath.Join(p.ImageDir, filepath.Base(src)), p.cdroms()[0].partPath()} {
				if _, err := os.Lstat(f); err == nil {
					t.Errorf("%s was made", f)
				}
			}
		})
	}
}

// TestBaseDiskNotMadeBlank: a pet disk made on a base is never taken as a
// blank one (DISK_BLANK=true on it is exit 2, the disk untouched).
func TestBaseDiskNotMadeBlank(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "base.qcow2")
	makeQcow2(t, src, "8M", "base")
	ctx := context.Background()
	if err := testApplier(t).Apply(ctx, planFor(t, dir, map[string]string{"IMG_SOURCE": src})); err != nil {
		t.Fatal(err)
	}
	p, err := blankPlan(t, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ino := inode(t, p.OverlayPath())
	err = testApplier(t).Apply(ctx, p)
	var ie *stage.InputError
	if !errors.As(err, &ie) || ie.Var != "DISK_BLANK" {
		t.Errorf("DISK_BLANK on a disk made on a base: %v, want bad input naming DISK_BLANK", err)
	}
	if inode(t, p.OverlayPath()) != ino {
		t.Errorf("the pet disk was replaced")
	}
}
