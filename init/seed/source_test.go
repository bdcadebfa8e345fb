package seed

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-vm/berth/common/stage"
)

// configMapDir lays out a directory the way the kubelet mounts a ConfigMap:
// the data in a timestamped "..2026_..." directory, "..data" pointing at it,
// and every key a symlink through "..data".
func configMapDir(t *testing.T, keys map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	ts := "..2026_11_25_10_00_00.123456789"
	for k, v := range keys {
		writeFile(t, filepath.Join(dir, ts), k, []byte(v))
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReadSource(t *testing.T) {
	tests := []struct {
		name    string
		path    func(t *testing.T) string
		present bool
		data    string
		badIn   string // substring of a bad-input error; empty: no error
	}{
		{"missing path", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, false, "", ""},
		{"file", func(t *testing.T) string { return writeFile(t, t.TempDir(), "ud", []byte("#!/bin/sh\n")) }, true, "#!/bin/sh\n", ""},
		{"empty file", func(t *testing.T) string { return writeFile(t, t.TempDir(), "ud", nil) }, true, "", ""},
		{"configmap with the key", func(t *testing.T) string {
			return configMapDir(t, map[string]string{"user-data": "A", "other": "B"})
		}, true, "A", ""},
		{"configmap with one other key", func(t *testing.T) string {
			return configMapDir(t, map[string]string{"cloud-init.yaml": "C"})
		}, true, "C", ""},
		{"empty configmap", func(t *testing.T) string { return configMapDir(t, nil) }, false, "", ""},
		{"empty directory", func(t *testing.T) string { return t.TempDir() }, false, "", ""},
		{"configmap with several keys", func(t *testing.T) string {
			return configMapDir(t, map[string]string{"a": "1", "b": "2"})
		}, false, "", "found 2: a, b"},
		{"directory key that is a directory", func(t *testing.T) string {
			d := t.TempDir()
			if err := os.Mkdir(filepath.Join(d, "user-data"), 0o755); err != nil {
				t.Fatal(err)
			}
			return d
		}, false, "", "must be a regular file"},
		{"fifo", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "fifo")
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, false, "", "must be a regular file"},
		{"over 16 MiB", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "big")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(MaxInputSize + 1); err != nil {
				t.Fatal(err)
			}
			return p
		}, false, "", "at most 16777216"},
		{"exactly 16 MiB", func(t *testing.T) string {
			return writeFile(t, t.TempDir(), "ud", []byte(strings.Repeat("x", MaxInputSize)))
		}, true, strings.Repeat("x", MaxInputSize), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.path(t)
			s, err := ReadSource("USERDATA", p, "user-data")
			if tt.badIn != "" {
				if !stage.IsBadInput(err) || !strings.Contains(err.Error(), tt.badIn) || !strings.HasPrefix(err.Error(), "USERDATA=") {
					t.Fatalf("err = %v, want bad input on USERDATA with %q", err, tt.badIn)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Present != tt.present || string(s.Data) != tt.data {
				t.Errorf("got present=%v data=%.20q, want %v %.20q", s.Present, s.Data, tt.present, tt.data)
			}
		})
	}
}
