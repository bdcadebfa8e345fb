package seed

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/stage"
)

// MaxInputSize is the largest user-data or meta-data accepted (16 MiB): far
// above what cloud-init handles well, far below what a ConfigMap (1 MiB) or a
// Secret can hold, and small enough to build the image in memory.
const MaxInputSize = 16 << 20

// Source is one input (user-data or meta-data) as found on disk.
type Source struct {
	Var     string // the variable that names the path, e.g. USERDATA
	Path    string // the configured path
	File    string // the file actually read; empty when there is none
	Data    []byte
	Present bool
}

// ReadSource reads the input at path. A missing path, or an empty directory,
// is no input. A directory is a ConfigMap (or Secret) mount: the entry named
// key is read, else its only entry; Kubernetes' own entries ("..data",
// "..2026_11_25_...") are ignored. Several entries without key is bad input.
func ReadSource(varName, path, key string) (Source, error) {
	src := Source{Var: varName, Path: path}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return src, nil
	}
	if err != nil {
		return src, fmt.Errorf("read %s %s: %w", varName, path, err)
	}
	file := path
	if fi.IsDir() {
		names, err := keys(path)
		if err != nil {
			return src, fmt.Errorf("read %s directory %s: %w", varName, path, err)
		}
		switch {
		case contains(names, key):
			file = filepath.Join(path, key)
		case len(names) == 1:
			file = filepath.Join(path, names[0])
		case len(names) == 0:
			return src, nil
		default:
			return src, stage.BadInputf(varName, path,
				"a ConfigMap directory must hold the key %q or exactly one key, found %d: %s",
				key, len(names), strings.Join(names, ", "))
		}
	}
	// Inputs are read through symlinks (a ConfigMap's keys are links into
	// ..data), but a FIFO must not hang the stage: opened non-blocking, and
	// the type and size are checked on the opened file, not on the path.
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return src, fmt.Errorf("read %s %s: %w", varName, file, err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return src, fmt.Errorf("read %s %s: %w", varName, file, err)
	}
	if !fi.Mode().IsRegular() {
		return src, stage.BadInputf(varName, path, "must be a regular file or a ConfigMap directory, %s is %s", file, fsutil.Describe(fi.Mode()))
	}
	if fi.Size() > MaxInputSize {
		return src, stage.BadInputf(varName, path, "%s is %d bytes, at most %d (16 MiB) are allowed", file, fi.Size(), MaxInputSize)
	}
	if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
		return src, fmt.Errorf("read %s %s: %w", varName, file, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxInputSize+1))
	if err != nil {
		return src, fmt.Errorf("read %s %s: %w", varName, file, err)
	}
	if len(data) > MaxInputSize {
		return src, stage.BadInputf(varName, path, "%s is over %d bytes (16 MiB)", file, MaxInputSize)
	}
	src.File, src.Data, src.Present = file, data, true
	return src, nil
}

// keys lists a ConfigMap directory's keys: entries not starting with "..".
func keys(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
