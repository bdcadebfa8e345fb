// Package stagetest runs a stage's real binary in end-to-end tests: built
// once per test binary with CGO_ENABLED=0, as make build does; run with
// exactly the environment given, as a given uid, under a deadline; its exit
// code, output and termination log returned. It also holds the helpers those
// tests share: a volume's mount point, and a snapshot of the files under a
// directory that shows what a refused run must not have changed.
package stagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultTimeout bounds a run: a hung binary (blocked on a FIFO, say) is
// killed and reported. Generous: it is no timing assertion.
const DefaultTimeout = 3 * time.Minute

// Binary is a stage's binary under test, built on first use.
type Binary struct {
	name, pkg string
	once      sync.Once
	dir, path string
	err       error
}

// NewBinary names a binary (image-fetch) and its main package: "." (the test's
// own package) or an import path. $BERTH_TEST_<NAME> (BERTH_TEST_IMAGE_FETCH)
// names another build to test instead: an older one, to see a regression test
// fail.
func NewBinary(name, pkg string) *Binary { return &Binary{name: name, pkg: pkg} }

// OverrideVar is the variable that names another build of the binary.
func (b *Binary) OverrideVar() string {
	return "BERTH_TEST_" + strings.ToUpper(strings.ReplaceAll(b.name, "-", "_"))
}

// Path builds the binary once, into a directory every uid may read (tests
// run it as uid 65534), and returns its path; a failed build fails t.
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(b.OverrideVar()); p != "" {
		return p
	}
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", b.name+"-bin-"); b.err != nil {
			return
		}
		if b.err = os.Chmod(b.dir, 0o755); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, b.name)
		cmd := exec.Command("go", "build", "-o", b.path, b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Remove removes the build; call it from TestMain once m.Run returned.
func (b *Binary) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// Cmd is one run of a binary.
type Cmd struct {
	// Env is the whole environment; PATH is the test's unless Env sets it.
	Env     map[string]string
	Args    []string
	Dir     string              // the working directory; "": the test's
	Cred    *syscall.Credential // run as this uid and gid; nil: as the test
	Timeout time.Duration       // 0: DefaultTimeout
	// MayHang returns a hung run as Result.Hung; otherwise it fails the test.
	MayHang bool
}

// Result is what a run did.
type Result struct {
	Code           int // the exit code; -1 for a hung run
	Stdout, Stderr string
	Hung           bool          // killed at the deadline
	TerminationLog string        // what $TERMINATION_LOG (Env's) holds after the run
	Elapsed        time.Duration // from start to exit
}

// Run runs the binary (built by Path) as c says.
func (b *Binary) Run(t testing.TB, c Cmd) Result {
	t.Helper()
	return Run(t, b.Path(t), c)
}

// Run runs the program at path as c says. A program that could not be
// started fails t.
func Run(t testing.TB, path string, c Cmd) Result {
	t.Helper()
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, c.Args...)
	if _, ok := c.Env["PATH"]; !ok {
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	}
	for k, v := range c.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = c.Dir
	if c.Cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.Cred}
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: so.String(), Stderr: se.String(), Elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		if !c.MayHang {
			t.Fatalf("%s hung (killed after %s); stderr:\n%s", filepath.Base(path), timeout, r.Stderr)
		}
		r.Hung, r.Code = true, -1
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %s: %v", path, err)
	}
	if tl := c.Env["TERMINATION_LOG"]; tl != "" {
		if b, err := os.ReadFile(tl); err == nil {
			r.TerminationLog = string(b)
		}
	}
	return r
}

// VolumeDir makes parent/name, a volume's mount point (no stage creates
// one), and returns its path.
func VolumeDir(t testing.TB, parent, name string) string {
	t.Helper()
	p := filepath.Join(parent, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Main is a test package's TestMain: it runs the tests, removes the builds of
// the binaries given and exits with the tests' code.
func Main(m *testing.M, built ...*Binary) {
	code := m.Run()
	for _, b := range built {
		b.Remove()
	}
	os.Exit(code)
}

// QemuImg runs the real qemu-img with args and returns what it printed; a
// failure fails t.
func QemuImg(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
	return string(out)
}
