package apply

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/netsetup/dnsmasq"
)

// runFile is one of the files net-setup writes in the run volume for the
// other containers: dnsmasq.conf for the sidecar, net.json (the plan as
// applied). It holds exactly the rendered bytes; it is replaced atomically
// (temp file, fsync, rename), never written through a symlink, and an
// identical file is left alone.
type runFile struct {
	path string
	data []byte
}

// runFiles returns the run volume's files in the order they are written:
// net.json last, so its presence means a full run.
func runFiles(o Outputs, runDir string) []resource {
	return []resource{
		runFile{path: filepath.Join(runDir, dnsmasq.ConfName), data: o.Dnsmasq},
		runFile{path: filepath.Join(runDir, NetJSONName), data: o.NetJSON},
	}
}

func (f runFile) property() property {
	return property{
		differs: func() (string, error) {
			got, err := readOwn(f.path)
			switch {
			case errors.Is(err, fsutil.ErrNotOwnFile), errors.Is(err, errTooLarge):
				return err.Error(), nil
			case err != nil:
				return "", err
			case got == nil:
				return f.path + " is missing", nil
			case !bytes.Equal(got, f.data):
				return f.path + " differs from the plan", nil
			}
			return "", nil
		},
		fix: func() error { return fsutil.WriteFileAtomic(f.path, f.data, 0o644) },
	}
}

func (f runFile) ensure(context.Context, *slog.Logger) error {
	return repair([]property{f.property()})
}

func (f runFile) diff() ([]string, error) { return diffs([]property{f.property()}) }
