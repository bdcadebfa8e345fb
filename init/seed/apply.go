package seed

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/berth-vm/berth/common/fsutil"
)

// Apply writes the plan's image to p.Output unless the file already holds
// exactly these bytes. It writes a temporary file in the same directory,
// fsyncs it and renames it over the output, so a crash never leaves a
// half-written seed.iso. It reports whether the file changed.
func (p *Plan) Apply() (changed bool, err error) {
	old, err := os.ReadFile(p.Output)
	switch {
	case err == nil && bytes.Equal(old, p.Image):
		return false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("read %s: %w", p.Output, err)
	}
	if err := fsutil.WriteFileAtomic(p.Output, p.Image, 0o644); err != nil {
		return false, err
	}
	return true, nil
}

// Check verifies that p.Output holds exactly the plan's image.
func (p *Plan) Check() error {
	got, err := os.ReadFile(p.Output)
	if err != nil {
		return fmt.Errorf("check %s: %w", p.Output, err)
	}
	if !bytes.Equal(got, p.Image) {
		return fmt.Errorf("check %s: it differs from the seed the inputs give (%d bytes, want %d); run seed-iso to rewrite it", p.Output, len(got), len(p.Image))
	}
	return nil
}
