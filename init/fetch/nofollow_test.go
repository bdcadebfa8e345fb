package fetch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
)

// The operations refuse a symlink themselves, not only the check before the
// first change (checkVolumes): a link planted after that check (a race) is
// refused too. EnsureBase is called directly here, past checkVolumes.
func TestEnsureBaseRefusesSymlinkedPart(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.qcow2")
	makeQcow2(t, src, "1M", "base")
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	p := planFor(t, dir, map[string]string{"IMG_SOURCE": src})
	os.MkdirAll(p.ImageDir, 0o755)
	for _, link := range []string{p.partPath(), p.partPath() + ".meta"} {
		t.Run(filepath.Base(link), func(t *testing.T) {
			os.Remove(p.partPath())
			os.Remove(p.partPath() + ".meta")
			if err := os.Symlink(victim, link); err != nil {
				t.Fatal(err)
			}
			s := NewApplier(slog.New(slog.NewTextHandler(io.Discard, nil)))
			_, err := s.EnsureBase(context.Background(), p, "", "IMG_SHA256")
			if !errors.Is(err, fsutil.ErrNotOwnFile) {
				t.Fatalf("EnsureBase = %v, want ErrNotOwnFile", err)
			}
			if err := p.notOwn(err); !stage.IsBadInput(err) {
				t.Errorf("notOwn = %v, want bad input", err)
			}
			if b, _ := os.ReadFile(victim); !bytes.Equal(b, []byte("precious")) {
				t.Errorf("the link's target was written: %d bytes", len(b))
			}
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("the link was not left alone: %v %v", fi, err)
			}
			if _, err := os.Lstat(p.BasePath()); err == nil {
				t.Errorf("a base was put in place")
			}
		})
	}
	// copyLocal alone: O_NOFOLLOW on the .part.
	os.Remove(p.partPath() + ".meta")
	os.Remove(p.partPath())
	os.Symlink(victim, p.partPath())
	if _, err := copyLocal(context.Background(), "IMG_SOURCE", src, p.partPath()); !errors.Is(err, fsutil.ErrNotOwnFile) {
		t.Errorf("copyLocal through a symlink = %v, want ErrNotOwnFile", err)
	}
	if b, _ := os.ReadFile(victim); !bytes.Equal(b, []byte("precious")) {
		t.Errorf("copyLocal wrote through the link: %d bytes", len(b))
	}
}
