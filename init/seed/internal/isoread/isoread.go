// Package isoread reads a whole ISO 9660 image back with the independent
// reader github.com/kdomanski/iso9660, for the seed tests.
package isoread

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/kdomanski/iso9660"
)

// Image is what the reader sees: the volume label (padding trimmed) and every
// regular file's bytes and mode, by slash path from the root ("openstack/latest/user_data").
type Image struct {
	Label string
	Files map[string][]byte
	Modes map[string]fs.FileMode
}

// Read reads every file of img.
func Read(img []byte) (Image, error) {
	im, err := iso9660.OpenImage(bytes.NewReader(img))
	if err != nil {
		return Image{}, fmt.Errorf("open image: %w", err)
	}
	label, err := im.Label()
	if err != nil {
		return Image{}, fmt.Errorf("read label: %w", err)
	}
	root, err := im.RootDir()
	if err != nil {
		return Image{}, fmt.Errorf("read root: %w", err)
	}
	out := Image{Label: strings.TrimRight(label, " "), Files: map[string][]byte{}, Modes: map[string]fs.FileMode{}}
	var walk func(dir string, f *iso9660.File) error
	walk = func(dir string, f *iso9660.File) error {
		children, err := f.GetChildren()
		if err != nil {
			return fmt.Errorf("list %s: %w", dir, err)
		}
		for _, c := range children {
			p := path.Join(dir, c.Name())
			if c.IsDir() {
				if err := walk(p, c); err != nil {
					return err
				}
				continue
			}
			data, err := io.ReadAll(c.Reader())
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			out.Files[p] = data
			out.Modes[p] = c.Mode()
		}
		return nil
	}
	if err := walk("", root); err != nil {
		return Image{}, err
	}
	return out, nil
}
