package firmware

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/stage"
)

// fakeOVMF writes the four files into a directory: the templates with
// distinct contents, so a store shows which one it was made from.
func fakeOVMF(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, fill := range map[string]byte{CodeFile: 'c', SecureCodeFile: 's', VarsTemplate: 'v', SecureVarsTemplate: 'm'} {
		if err := os.WriteFile(filepath.Join(dir, name), bytes.Repeat([]byte{fill}, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestEnsureMakesOnceAndKeeps(t *testing.T) {
	for _, sb := range []bool{false, true} {
		s := Spec{Kind: UEFI, SecureBoot: sb, OVMFDir: fakeOVMF(t)}
		disk := t.TempDir()
		v, err := s.Inspect(disk, "vm")
		if err != nil || v.Exists {
			t.Fatalf("secureBoot=%v: empty volume: %+v, %v", sb, v, err)
		}
		created, err := s.Ensure(v)
		if err != nil || !created {
			t.Fatalf("secureBoot=%v: Ensure: created=%v, %v", sb, created, err)
		}
		tmpl, _ := os.ReadFile(s.Template())
		got, _ := os.ReadFile(VarsPath(disk, "vm"))
		if !bytes.Equal(got, tmpl) {
			t.Errorf("secureBoot=%v: the store is not a copy of %s", sb, s.Template())
		}
		if fi, _ := os.Stat(VarsPath(disk, "vm")); fi.Mode().Perm() != 0o600 {
			t.Errorf("the store's mode is %v, want 0600", fi.Mode().Perm())
		}
		var rec Record
		b, _ := os.ReadFile(RecordPath(disk, "vm"))
		if err := json.Unmarshal(b, &rec); err != nil || rec.SecureBoot != sb || rec.Template != filepath.Base(s.Template()) || rec.Size != 4096 || len(rec.TemplateSHA256) != 64 {
			t.Errorf("record %s: %+v, %v", b, rec, err)
		}
		if ls, _ := filepath.Glob(filepath.Join(disk, ".*")); len(ls) != 0 {
			t.Errorf("left behind: %q", ls)
		}

		// The guest wrote variables: the next start keeps them.
		written := bytes.Repeat([]byte{'g'}, 4096)
		if err := os.WriteFile(VarsPath(disk, "vm"), written, 0o600); err != nil {
			t.Fatal(err)
		}
		v, err = s.Inspect(disk, "vm")
		if err != nil || !v.Exists || v.Record.SecureBoot != sb {
			t.Fatalf("existing store: %+v, %v", v, err)
		}
		if created, err := s.Ensure(v); err != nil || created {
			t.Fatalf("Ensure of an existing store: created=%v, %v", created, err)
		}
		f, err := Open(v)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if got, _ := os.ReadFile(VarsPath(disk, "vm")); !bytes.Equal(got, written) {
			t.Errorf("secureBoot=%v: the guest's variables were overwritten", sb)
		}
	}
}

// TestInspectRefuses: what another container, an old release or a changed
// value can leave is refused with exit 2 naming the variable, and nothing is
// changed: the store is never replaced.
func TestInspectRefuses(t *testing.T) {
	s := Spec{Kind: UEFI, OVMFDir: fakeOVMF(t)}
	tests := []struct {
		name    string
		setup   func(t *testing.T, disk string)
		spec    Spec
		wantVar string
		want    string
	}{
		{"a store without its record", func(t *testing.T, disk string) {
			write(t, VarsPath(disk, "vm"), "x")
		}, s, "DISK_DIR", "its record"},
		{"the store a symlink to the pet disk", func(t *testing.T, disk string) {
			write(t, filepath.Join(disk, "vm.qcow2"), "pet")
			os.Symlink("vm.qcow2", VarsPath(disk, "vm"))
		}, s, "DISK_DIR", "is a symlink"},
		{"the record a symlink", func(t *testing.T, disk string) {
			write(t, VarsPath(disk, "vm"), "x")
			write(t, filepath.Join(disk, "other.json"), `{"template":"OVMF_VARS_4M.fd","size":1}`)
			os.Symlink("other.json", RecordPath(disk, "vm"))
		}, s, "DISK_DIR", "symlink"},
		{"a record that is not JSON", func(t *testing.T, disk string) {
			write(t, VarsPath(disk, "vm"), "x")
			write(t, RecordPath(disk, "vm"), "not json")
		}, s, "DISK_DIR", "is not valid"},
		{"made without Secure Boot, now with it", func(t *testing.T, disk string) {
			write(t, VarsPath(disk, "vm"), "x")
			write(t, RecordPath(disk, "vm"), `{"template":"OVMF_VARS_4M.fd","secure_boot":false,"size":1}`)
		}, Spec{Kind: UEFI, SecureBoot: true, OVMFDir: s.OVMFDir}, "SECURE_BOOT", "made with SECURE_BOOT=false"},
		{"made with Secure Boot, now without", func(t *testing.T, disk string) {
			write(t, VarsPath(disk, "vm"), "x")
			write(t, RecordPath(disk, "vm"), `{"template":"OVMF_VARS_4M.ms.fd","secure_boot":true,"size":1}`)
		}, s, "SECURE_BOOT", "made with SECURE_BOOT=true"},
		{"a store of another size", func(t *testing.T, disk string) {
			write(t, VarsPath(disk, "vm"), "xy")
			write(t, RecordPath(disk, "vm"), `{"template":"OVMF_VARS_4M.fd","size":1}`)
		}, s, "DISK_DIR", "is 2 bytes, its record says 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disk := t.TempDir()
			tt.setup(t, disk)
			before := snapshot(t, disk)
			_, err := tt.spec.Inspect(disk, "vm")
			var ie *stage.InputError
			if !stage.IsBadInput(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Inspect: %v; want bad input saying %q", err, tt.want)
			}
			if errors.As(err, &ie); ie.Var != tt.wantVar {
				t.Errorf("names %s, want %s: %v", ie.Var, tt.wantVar, err)
			}
			if after := snapshot(t, disk); after != before {
				t.Errorf("the volume changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestEnsureStaleLeftovers: a record without its store (a crash before the
// store was linked into place) is stale and rewritten; a temporary file left
// as a symlink is refused, and what it points at is untouched.
func TestEnsureStaleLeftovers(t *testing.T) {
	s := Spec{Kind: UEFI, OVMFDir: fakeOVMF(t)}
	disk := t.TempDir()
	write(t, RecordPath(disk, "vm"), `{"template":"OVMF_VARS_4M.ms.fd","secure_boot":true,"size":9}`)
	v, err := s.Inspect(disk, "vm")
	if err != nil || v.Exists {
		t.Fatalf("a stale record: %+v, %v", v, err)
	}
	if _, err := s.Ensure(v); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Inspect(disk, "vm"); err != nil || !v.Exists || v.Record.SecureBoot {
		t.Fatalf("after Ensure: %+v, %v", v, err)
	}

	disk = t.TempDir()
	write(t, filepath.Join(disk, "vm.qcow2"), "pet")
	os.Symlink("vm.qcow2", filepath.Join(disk, ".vm.efivars.fd.tmp"))
	v, _ = s.Inspect(disk, "vm")
	if _, err := s.Ensure(v); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("Ensure with a planted temporary symlink: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(disk, "vm.qcow2")); string(b) != "pet" {
		t.Errorf("the pet disk was written through the symlink: %q", b)
	}
	if _, err := os.Lstat(VarsPath(disk, "vm")); err == nil {
		t.Error("a store was put in place")
	}
}

func TestCheckFiles(t *testing.T) {
	dir := fakeOVMF(t)
	for _, sb := range []bool{false, true} {
		if err := (Spec{Kind: UEFI, SecureBoot: sb, OVMFDir: dir}).CheckFiles(); err != nil {
			t.Errorf("secureBoot=%v: %v", sb, err)
		}
	}
	os.Remove(filepath.Join(dir, SecureVarsTemplate))
	err := Spec{Kind: UEFI, SecureBoot: true, OVMFDir: dir}.CheckFiles()
	if !stage.IsBadInput(err) || !strings.Contains(err.Error(), "FIRMWARE=") || !strings.Contains(err.Error(), SecureVarsTemplate) {
		t.Errorf("no MS-keys template: %v", err)
	}
	if err := (Spec{Kind: UEFI, OVMFDir: "/nonexistent"}).CheckFiles(); !stage.IsBadInput(err) {
		t.Errorf("no OVMF: %v", err)
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// snapshot lists a directory's entries with their link targets or contents.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if l, err := os.Readlink(p); err == nil {
			b.WriteString(e.Name() + "->" + l + ";")
			continue
		}
		c, _ := os.ReadFile(p)
		b.WriteString(e.Name() + "=" + string(c) + ";")
	}
	return b.String()
}
