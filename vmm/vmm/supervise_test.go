package vmm

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/vmm/qmp"
)

// These tests run the real QEMU with no guest at all (-machine none): QMP
// answers, ACPI power-down is ignored (there is no ACPI), quit works.

func needQEMU(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("qemu-system-x86_64 not installed (ci/install-deps.sh installs qemu-system-x86): %v", err)
	}
	return p
}

type run struct {
	sup    *Supervisor
	cancel context.CancelFunc
	done   chan error
	proc   chan *os.Process
	stderr *bytes.Buffer
}

// startNone starts QEMU with -machine none under a Supervisor.
func startNone(t *testing.T, timeout time.Duration, extra ...string) *run {
	t.Helper()
	return startNoneWatched(t, timeout, nil, extra...)
}

// startNoneWatched is startNone with the supervisor's Watch set.
func startNoneWatched(t *testing.T, timeout time.Duration, watch func(context.Context, func(error)), extra ...string) *run {
	t.Helper()
	return startNoneWith(t, timeout, func(s *Supervisor) { s.Watch = watch }, extra...)
}

// startNoneWith is startNone with the supervisor adjusted by set before it runs.
func startNoneWith(t *testing.T, timeout time.Duration, set func(*Supervisor), extra ...string) *run {
	t.Helper()
	bin := needQEMU(t)
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	args := append([]string{"-machine", "none", "-nodefaults", "-display", "none", "-qmp", "unix:" + sock + ",server=on,wait=off"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	r := &run{done: make(chan error, 1), proc: make(chan *os.Process, 1), stderr: &bytes.Buffer{}}
	r.sup = &Supervisor{
		Log:             slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		QMPSocket:       sock,
		ShutdownTimeout: timeout,
		QuitGrace:       3 * time.Second,
		Stderr:          r.stderr,
		Started:         func(p *os.Process) { r.proc <- p },
	}
	set(r.sup)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.sup.Run(ctx, cmd) }()
	t.Cleanup(func() {
		cancel()
		select {
		case p := <-r.proc:
			p.Kill()
		default:
		}
	})
	return r
}

// wait returns Run's result, failing the test after bound.
func (r *run) wait(t *testing.T, bound time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(bound):
		t.Fatalf("supervisor did not return within %s", bound)
		return nil
	}
}

func waitQMP(t *testing.T, sock string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c, err := qmp.Dial(ctx, sock)
		if err == nil {
			st, err := c.QueryStatus(ctx)
			c.Close()
			if err != nil {
				t.Fatalf("query-status: %v", err)
			}
			if st.Status != "running" {
				t.Fatalf("status %q, want running", st.Status)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("QMP never answered: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRealQEMUShutdownTimeout: SIGTERM (ctx) with nothing to power down →
// power-down repeated, then quit after the timeout → ErrShutdownTimeout.
func TestRealQEMUShutdownTimeout(t *testing.T) {
	r := startNone(t, 2*time.Second)
	waitQMP(t, r.sup.QMPSocket)
	r.cancel()
	err := r.wait(t, 30*time.Second)
	if !errors.Is(err, ErrShutdownTimeout) {
		t.Fatalf("err = %v, want ErrShutdownTimeout", err)
	}
}

// TestRealQEMUStopping: Stopping runs from the stop request (not before)
// and its context ends before Run returns.
func TestRealQEMUStopping(t *testing.T) {
	started, ended := make(chan struct{}), make(chan struct{})
	r := startNoneWith(t, 2*time.Second, func(s *Supervisor) {
		s.Stopping = func(ctx context.Context) {
			close(started)
			<-ctx.Done()
			close(ended)
		}
	})
	waitQMP(t, r.sup.QMPSocket)
	select {
	case <-started:
		t.Fatal("Stopping ran before the stop request")
	default:
	}
	r.cancel()
	if err := r.wait(t, 30*time.Second); !errors.Is(err, ErrShutdownTimeout) {
		t.Fatalf("err = %v, want ErrShutdownTimeout", err)
	}
	for name, ch := range map[string]chan struct{}{"started": started, "ended": ended} {
		select {
		case <-ch:
		default:
			t.Errorf("Stopping not %s when Run returned", name)
		}
	}
}

// TestRealQEMUKilled: QEMU killed → an error saying so.
func TestRealQEMUKilled(t *testing.T) {
	r := startNone(t, 2*time.Second)
	waitQMP(t, r.sup.QMPSocket)
	p := <-r.proc
	p.Signal(syscall.SIGKILL)
	r.proc <- p
	err := r.wait(t, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Fatalf("err = %v, want one naming signal: killed", err)
	}
}

// TestRealQEMUStartError: QEMU refusing its command line → its message in the error.
func TestRealQEMUStartError(t *testing.T) {
	r := startNone(t, 2*time.Second, "-device", "no-such-device-model")
	err := r.wait(t, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "no-such-device-model") {
		t.Fatalf("err = %v, want QEMU's last stderr line naming the bad device", err)
	}
	if !strings.Contains(r.stderr.String(), "no-such-device-model") {
		t.Errorf("QEMU's stderr was not passed through: %q", r.stderr.String())
	}
}

// TestRealQEMUExitsByItself: QEMU exiting 0 unasked (what a guest powering
// off looks like) → nil.
func TestRealQEMUExitsByItself(t *testing.T) {
	r := startNone(t, 2*time.Second)
	waitQMP(t, r.sup.QMPSocket)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := qmp.Do(ctx, r.sup.QMPSocket, "quit", nil); err != nil {
		// QEMU may close the socket before replying to quit: only a dial error counts.
		if strings.Contains(err.Error(), "connect") {
			t.Fatal(err)
		}
	}
	if err := r.wait(t, 30*time.Second); err != nil {
		t.Fatalf("err = %v, want nil", err)
	}
	if !r.sup.PoweredOff {
		t.Error("PoweredOff not set after QEMU exited 0 by itself")
	}
}

// TestRealQEMUWatchAborts: the watch's abort (a panic with ON_PANIC=restart,
// an internal error) ends a running QEMU at once, without a power-down, and
// its error is Run's (exit 1); PoweredOff stays false.
func TestRealQEMUWatchAborts(t *testing.T) {
	why := errors.New("the guest's kernel panicked (ON_PANIC=restart)")
	r := startNoneWatched(t, time.Hour, func(ctx context.Context, abort func(error)) {
		select {
		case <-time.After(time.Second):
			abort(why)
		case <-ctx.Done():
		}
	})
	start := time.Now()
	err := r.wait(t, 30*time.Second)
	if !errors.Is(err, why) {
		t.Fatalf("err = %v, want the watch's", err)
	}
	if r.sup.PoweredOff {
		t.Error("PoweredOff set after an abort")
	}
	t.Logf("aborted QEMU ended %s after start (SHUTDOWN_TIMEOUT 1h was not waited for)", time.Since(start).Round(time.Millisecond))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
