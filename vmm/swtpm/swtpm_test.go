package swtpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/stage"
)

func TestEnsureMakesOnceAndKeeps(t *testing.T) {
	disk := t.TempDir()
	s, err := Inspect(disk, "vm")
	if err != nil || s.Exists {
		t.Fatalf("empty volume: %+v, %v", s, err)
	}
	created, err := Ensure(&s)
	if err != nil || !created || !s.Exists || s.Record.Created == "" {
		t.Fatalf("Ensure: created=%v, %+v, %v", created, s, err)
	}
	if fi, err := os.Lstat(StateDir(disk, "vm")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the state directory: %v, %v; want a directory, 0700", fi, err)
	}
	if ok, err := MarkInitialized(&s); ok || err != nil {
		t.Errorf("MarkInitialized before swtpm wrote its state: %v, %v; want a no-op", ok, err)
	}

	// swtpm wrote its state: the record learns it once.
	if err := os.WriteFile(filepath.Join(s.Dir, StateFile), []byte("state"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, err := MarkInitialized(&s); !ok || err != nil || s.Record.Initialized == "" {
		t.Fatalf("MarkInitialized: %v, %v, %+v", ok, err, s.Record)
	}
	again, err := Inspect(disk, "vm")
	if err != nil || !again.Exists || again.Record != s.Record {
		t.Fatalf("the next start: %+v, %v; want the record %+v", again, err, s.Record)
	}
	if created, err := Ensure(&again); created || err != nil {
		t.Errorf("Ensure on an existing state: created=%v, %v", created, err)
	}
	if b, _ := os.ReadFile(filepath.Join(s.Dir, StateFile)); string(b) != "state" {
		t.Errorf("the state was changed: %q", b)
	}
	if ls, _ := filepath.Glob(filepath.Join(disk, ".*")); len(ls) != 0 {
		t.Errorf("left behind: %q", ls)
	}
}

// TestInspectRefuses: what is not the VM's TPM state, or a state that was
// lost, is exit 2 naming the variable, and nothing is changed.
func TestInspectRefuses(t *testing.T) {
	const initialized = `{"version":"2.0","created":"2026-12-01T00:00:00Z","initialized":"2026-12-01T00:00:05Z"}`
	const fresh = `{"version":"2.0","created":"2026-12-01T00:00:00Z"}`
	tests := []struct {
		name, variable, want string
		setup                func(t *testing.T, disk string)
	}{
		{"the state is a file", "DISK_DIR", "is a regular file, not a directory", func(t *testing.T, disk string) {
			write(t, filepath.Join(disk, "vm.tpm"), "x")
		}},
		{"the state is a symlink to a directory", "DISK_DIR", "not a directory", func(t *testing.T, disk string) {
			mkdir(t, filepath.Join(disk, "elsewhere"))
			symlink(t, filepath.Join(disk, "elsewhere"), filepath.Join(disk, "vm.tpm"))
		}},
		{"a directory without its record", "DISK_DIR", "its record", func(t *testing.T, disk string) {
			mkdir(t, filepath.Join(disk, "vm.tpm"))
		}},
		{"a record that is not one", "DISK_DIR", "not a valid record", func(t *testing.T, disk string) {
			mkdir(t, filepath.Join(disk, "vm.tpm"))
			write(t, filepath.Join(disk, "vm.tpm.json"), `{"version":"1.2"}`)
		}},
		{"the record is a symlink", "DISK_DIR", "record", func(t *testing.T, disk string) {
			mkdir(t, filepath.Join(disk, "vm.tpm"))
			write(t, filepath.Join(disk, "other.json"), fresh)
			symlink(t, filepath.Join(disk, "other.json"), filepath.Join(disk, "vm.tpm.json"))
		}},
		{"a symlink in the state to the pet disk", "DISK_DIR", "tpm2-00.permall, which is a symlink", func(t *testing.T, disk string) {
			mkdir(t, filepath.Join(disk, "vm.tpm"))
			write(t, filepath.Join(disk, "vm.tpm.json"), fresh)
			write(t, filepath.Join(disk, "vm.qcow2"), "pet")
			symlink(t, filepath.Join(disk, "vm.qcow2"), filepath.Join(disk, "vm.tpm", StateFile))
		}},
		{"the state file lost", "TPM", "refusing to give the guest a blank TPM", func(t *testing.T, disk string) {
			mkdir(t, filepath.Join(disk, "vm.tpm"))
			write(t, filepath.Join(disk, "vm.tpm.json"), initialized)
		}},
		{"the state directory lost", "TPM", "state directory", func(t *testing.T, disk string) {
			write(t, filepath.Join(disk, "vm.tpm.json"), initialized)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disk := t.TempDir()
			tt.setup(t, disk)
			before := snapshot(t, disk)
			_, err := Inspect(disk, "vm")
			var bad *stage.InputError
			if !errors.As(err, &bad) || bad.Var != tt.variable || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want bad input naming %s, saying %q", err, tt.variable, tt.want)
			}
			if after := snapshot(t, disk); after != before {
				t.Errorf("Inspect changed the volume:\n%s\nwas\n%s", after, before)
			}
		})
	}

	// A record alone that never saw swtpm's state is a crash between the two: made again.
	disk := t.TempDir()
	write(t, filepath.Join(disk, "vm.tpm.json"), fresh)
	if s, err := Inspect(disk, "vm"); err != nil || s.Exists {
		t.Errorf("a stale record: %+v, %v; want a state to make", s, err)
	}
}

// TestStartRealSwtpm runs Debian's swtpm on a socket pair as vmm does: it
// answers a control command on QEMU's end, takes a data channel the way
// QEMU's tpm-emulator hands it one (CMD_SET_DATAFD), ends by itself once QEMU
// closes both (--terminate), and one killed says so.
func TestStartRealSwtpm(t *testing.T) {
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		if os.Getenv("BERTH_REQUIRE_ROOT") == "1" {
			t.Fatal("swtpm is not installed (ci/install-deps.sh installs it)")
		}
		t.Skip("swtpm is not installed")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	dir := t.TempDir()
	p, qemuEnd, err := Start(log, bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	// CMD_GET_CAPABILITY (1): a 4-byte result then the capability bits.
	if _, err := qemuEnd.Write(binary.BigEndian.AppendUint32(nil, 1)); err != nil {
		t.Fatal(err)
	}
	qemuEnd.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp := make([]byte, 8)
	if _, err := io.ReadFull(qemuEnd, resp); err != nil {
		t.Fatalf("swtpm did not answer on its control channel: %v", err)
	}
	if res := binary.BigEndian.Uint32(resp); res != 0 {
		t.Errorf("CMD_GET_CAPABILITY: result %d", res)
	}
	// CMD_SET_DATAFD (16) with the data socket's other end as SCM_RIGHTS.
	data, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := qemuEnd.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var sendErr error
	if err := sc.Write(func(fd uintptr) bool {
		sendErr = unix.Sendmsg(int(fd), binary.BigEndian.AppendUint32(nil, 16), unix.UnixRights(data[1]), nil, 0)
		return true
	}); err != nil || sendErr != nil {
		t.Fatalf("CMD_SET_DATAFD: %v %v", err, sendErr)
	}
	unix.Close(data[1])
	if _, err := io.ReadFull(qemuEnd, resp[:4]); err != nil || binary.BigEndian.Uint32(resp) != 0 {
		t.Fatalf("CMD_SET_DATAFD: %v, result %x", err, resp[:4])
	}
	unix.Close(data[0])
	qemuEnd.Close()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("swtpm did not end when QEMU's ends of its channels closed")
	}

	p, qemuEnd, err = Start(log, bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer qemuEnd.Close()
	_ = p.cmd.Process.Kill()
	if err := p.ExitError(); !strings.Contains(err.Error(), "swtpm, the VM's TPM, ended (signal: killed)") {
		t.Errorf("killed: %v", err)
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// snapshot lists a directory tree: names, types and contents.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b bytes.Buffer
	_ = filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		b.WriteString(path + " " + fi.Mode().String())
		if fi.Mode().IsRegular() {
			c, _ := os.ReadFile(path)
			b.Write(c)
		}
		b.WriteByte('\n')
		return nil
	})
	return b.String()
}
