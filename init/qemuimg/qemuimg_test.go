package qemuimg

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRun runs the real qemu-img and checks how each end is told apart: exit
// status 0, a refusal (*ExitError with its status and stderr), no answer in
// time (a FIFO, which qemu-img blocks on opening), and no qemu-img at all.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string // PATH, "" = the test's
		args    []string
		timeout time.Duration
		code    int    // want an *ExitError with this status; 0 = none
		err     string // in the error; "" = no error
		stdout  string // in stdout
	}{
		{name: "exit 0", args: []string{"--version"}, timeout: DefaultTimeout, stdout: "qemu-img version"},
		{name: "refused", args: []string{"info", "-f", "qcow2", filepath.Join(dir, "none.qcow2")}, timeout: DefaultTimeout,
			code: 1, err: "qemu-img info -f qcow2 " + filepath.Join(dir, "none.qcow2") + ": exit status 1: "},
		{name: "no answer", args: []string{"info", "-f", "raw", fifo}, timeout: 500 * time.Millisecond, err: "no answer within 500ms"},
		{name: "not installed", path: dir, args: []string{"--version"}, timeout: DefaultTimeout, err: "executable file not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.path != "" {
				t.Setenv("PATH", tt.path)
			}
			out, err := Run(context.Background(), tt.timeout, tt.args...)
			var ee *ExitError
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("err = %v, want %q", err, tt.err)
			case errors.As(err, &ee) != (tt.code != 0):
				t.Fatalf("err = %#v: an *ExitError is wanted only for a refusal", err)
			case ee != nil && (ee.Code != tt.code || ee.Stderr == "" || ee.Stderr != out.Stderr):
				t.Errorf("exit error %+v, stderr %q", ee, out.Stderr)
			}
			if !strings.Contains(string(out.Stdout), tt.stdout) {
				t.Errorf("stdout %q, want %q", out.Stdout, tt.stdout)
			}
			if len(out.Stderr) > MaxStderr {
				t.Errorf("stderr of %d bytes kept", len(out.Stderr))
			}
		})
	}
}

// TestCapped: what is kept stops at max bytes; every write reports all its
// bytes taken (qemu-img is never blocked nor failed by the cap).
func TestCapped(t *testing.T) {
	c := &capped{max: 10}
	for _, w := range []string{"0123", "456789ab", "cdef"} {
		if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	if got := c.buf.String(); got != "0123456789" {
		t.Errorf("kept %q", got)
	}
}
