package fsutil

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// hostile puts each kind of thing that is not a regular file of Berth's at
// name in a fresh directory, beside a victim file a symlink points at.
func hostile(t *testing.T) (dir, victim string, kinds map[string]string) {
	t.Helper()
	dir = t.TempDir()
	victim = filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("pet disk"), 0o600); err != nil {
		t.Fatal(err)
	}
	kinds = map[string]string{}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	kinds["a symlink"] = link
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "made-through-link"), dangling); err != nil {
		t.Fatal(err)
	}
	kinds["a symlink "] = dangling
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	kinds["a FIFO"] = fifo
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	kinds["a directory"] = sub
	return dir, victim, kinds
}

func assertUntouched(t *testing.T, dir, victim string) {
	t.Helper()
	b, err := os.ReadFile(victim)
	if err != nil || string(b) != "pet disk" {
		t.Fatalf("victim changed: %q %v", b, err)
	}
	fi, _ := os.Stat(victim)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("victim mode changed: %v", fi.Mode())
	}
	if _, err := os.Lstat(filepath.Join(dir, "made-through-link")); err == nil {
		t.Fatal("a file was created through a dangling symlink")
	}
}

func TestRefusesWhatIsNotOwnRegularFile(t *testing.T) {
	ops := map[string]func(path string) error{
		"OpenFile O_CREATE|O_TRUNC": func(p string) error {
			f, err := OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err == nil {
				f.Close()
			}
			return err
		},
		"Open": func(p string) error {
			f, err := Open(p)
			if err == nil {
				f.Close()
			}
			return err
		},
		"Chmod":        func(p string) error { return Chmod(p, 0o444) },
		"SyncFile":     SyncFile,
		"CheckOwnFile": CheckOwnFile,
		"HashFile":     func(p string) error { _, err := HashFile(context.Background(), p); return err },
		"LockFile": func(p string) error {
			l, err := LockFile(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), p, time.Millisecond)
			l.Unlock()
			return err
		},
		"WriteFileAtomic onto": func(p string) error { return WriteFileAtomic(p, []byte("base"), 0o444) },
		"Rename onto": func(p string) error {
			src := filepath.Join(filepath.Dir(p), "src")
			if err := os.WriteFile(src, []byte("base"), 0o644); err != nil {
				t.Fatal(err)
			}
			return Rename(src, p)
		},
		"Rename from": func(p string) error { return Rename(p, filepath.Join(filepath.Dir(p), "target")) },
	}
	for opName, op := range ops {
		dir, victim, kinds := hostile(t)
		for kind, path := range kinds {
			if kind == "a directory" && (opName == "Rename from") {
				continue
			}
			t.Run(opName+"/"+kind, func(t *testing.T) {
				done := make(chan error, 1)
				go func() { done <- op(path) }()
				var err error
				select {
				case err = <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("blocked (a FIFO opened without O_NONBLOCK?)")
				}
				if !errors.Is(err, ErrNotOwnFile) {
					t.Fatalf("got %v, want ErrNotOwnFile", err)
				}
				assertUntouched(t, dir, victim)
				if _, err := os.Lstat(path); err != nil {
					t.Fatalf("the hostile thing was removed: %v", err)
				}
			})
		}
	}
}

func TestOpenFileRegular(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	f, err := OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("x"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := CheckOwnFile(p); err != nil {
		t.Fatal(err)
	}
	if err := CheckOwnFile(p + ".missing"); err != nil {
		t.Fatalf("missing file: %v", err)
	}
	if err := Chmod(p, 0o444); err != nil {
		t.Fatal(err)
	}
}

// TestReadRecord: a record is read whole up to MaxRecord bytes; one byte more,
// a symlink (even to a good record), a FIFO (without blocking) and a directory
// are refused.
func TestReadRecord(t *testing.T) {
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	good := bytes.Repeat([]byte("x"), MaxRecord)
	if err := os.WriteFile(at("good"), good, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadRecord(at("good")); err != nil || !bytes.Equal(b, good) {
		t.Errorf("a record of MaxRecord bytes: %d bytes, %v", len(b), err)
	}
	os.WriteFile(at("big"), append(good, 'x'), 0o644)
	os.Symlink(at("good"), at("link"))
	syscall.Mkfifo(at("fifo"), 0o644)
	os.Mkdir(at("dir"), 0o755)
	for _, name := range []string{"big", "link", "fifo", "dir", "missing"} {
		if b, err := ReadRecord(at(name)); err == nil {
			t.Errorf("%s: read %d bytes, want a refusal", name, len(b))
		}
	}
}
