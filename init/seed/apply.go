package seed

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
)

// Apply writes the seed (write) and logs what it wrote.
func (p *Plan) Apply(r stage.Run) error {
	changed, err := p.write()
	if err != nil {
		return err
	}
	r.Log.Info("seed ready", "path", p.Output, "changed", changed, "format", p.Format,
		"label", p.Label, "instance_id", p.InstanceID, "hostname", p.Hostname,
		"ssh_keys", len(p.Keys), "user_data", p.UserData, "bytes", len(p.Image))
	return nil
}

// write writes the plan's image to p.Output unless the file already holds
// exactly these bytes. It writes a temporary file in the same directory,
// fsyncs it and renames it over the output, so a crash never leaves a
// half-written seed.iso. It reports whether the file changed. A symlink, a
// FIFO or a directory at p.Output (or a symlink as BERTH_RUN_DIR) is refused
// with exit 2 and left alone.
func (p *Plan) write() (changed bool, err error) {
	if err := stage.CheckVolumeDir("BERTH_RUN_DIR", filepath.Dir(p.Output)); err != nil {
		return false, err
	}
	old, err := p.readOutput()
	switch {
	case err == nil && bytes.Equal(old, p.Image):
		return false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	if err := fsutil.WriteFileAtomic(p.Output, p.Image, 0o644); err != nil {
		return false, p.notOwn(err)
	}
	return true, nil
}

// Check compares p.Output with the plan's image: one difference when it is
// missing or holds other bytes. Anything but a regular file there (or a
// symlink as BERTH_RUN_DIR) is bad input, as for Apply; a file that cannot be
// read is an error.
func (p *Plan) Check(stage.Run) ([]string, error) {
	got, err := p.readOutput()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return []string{fmt.Sprintf("%s does not exist; run seed-iso to write it", p.Output)}, nil
	case err != nil:
		return nil, fmt.Errorf("check %s: %w", p.Output, err)
	case !bytes.Equal(got, p.Image):
		return []string{fmt.Sprintf("%s differs from the seed the inputs give (%d bytes, want %d); run seed-iso to rewrite it", p.Output, len(got), len(p.Image))}, nil
	}
	return nil, nil
}

// readOutput reads the current seed.iso without following a symlink, without
// blocking on a FIFO, and no more than one byte past the new image's size
// (a larger file differs anyway).
func (p *Plan) readOutput() ([]byte, error) {
	dir := filepath.Dir(p.Output)
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, stage.BadInput("BERTH_RUN_DIR", dir, "is a symlink: must be the directory itself (the run volume's mount point), not a link to it")
	}
	if err := fsutil.CheckOwnFileOf(p.Output, os.Geteuid()); err != nil {
		return nil, p.notOwn(err)
	}
	f, err := fsutil.Open(p.Output)
	if err != nil {
		return nil, p.notOwn(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(len(p.Image))+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p.Output, err)
	}
	return b, nil
}

// notOwn turns a refusal of something not a regular file at p.Output into
// bad input naming BERTH_RUN_DIR: no retry helps, someone must remove it.
func (p *Plan) notOwn(err error) error {
	var nof *fsutil.NotOwnFileError
	if !errors.As(err, &nof) {
		return err
	}
	return stage.BadInputf("BERTH_RUN_DIR", filepath.Dir(p.Output), "%s is %s where seed-iso writes its own file: refused, left as it is (remove it if it is not yours)", nof.Path, nof.Found)
}
