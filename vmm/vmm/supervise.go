package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/vmm/lastline"
	"github.com/berth-vm/berth/vmm/qmp"
)

// Supervisor runs QEMU as a child and turns its life into vmm's exit:
//   - QEMU exits 0 by itself (the guest powered off): nil, exit 0, and
//     PoweredOff is true;
//   - QEMU dies otherwise: an error carrying its last stderr line;
//   - ctx is cancelled (SIGTERM): ACPI power-down over QMP every second until
//     QEMU exits or ShutdownTimeout ends, then QMP quit, then SIGKILL;
//   - the watch aborts (a panic with ON_PANIC=restart, an internal error):
//     QMP quit, then SIGKILL, and the watch's error (exit 1).
//
// As PID 1 (Reap) it also reaps orphans that the kernel re-parents to it.
type Supervisor struct {
	Log       *slog.Logger
	QMPSocket string
	// Sockets are the other sockets QEMU serves in the run volume (the
	// guest agent's channel): cleared before the start as QMPSocket is.
	Sockets         []string
	ShutdownTimeout time.Duration
	// QuitGrace is how long QEMU gets after quit before SIGKILL.
	QuitGrace time.Duration
	// Stderr receives QEMU's stderr as it comes (vmm's own stderr).
	Stderr io.Writer
	// Reap: reap every child, not just QEMU (set when vmm is PID 1).
	Reap bool
	// AfterStart runs once QMP answers (e.g. to set the VNC password); an
	// error is logged, QEMU keeps running.
	AfterStart func(ctx context.Context) error
	// Watch, if set, runs beside QEMU from its start until it exits (vmm's
	// watch over its own QMP connection). Its abort ends QEMU and makes err
	// Run's result: the guest cannot go on in this QEMU.
	Watch func(ctx context.Context, abort func(err error))
	// Stopping, if set, runs from the first ACPI power-down request until
	// QEMU exits (vmm's drain of the guest agent's channel).
	Stopping func(ctx context.Context)
	// Started, if set, is told QEMU's process once it runs (tests use it).
	Started func(*os.Process)
	// Keep are other children vmm waits for itself (swtpm): the reaper
	// leaves them.
	Keep []int

	// PoweredOff is set by Run when QEMU exited 0 by itself: the guest
	// powered itself off (ON_POWEROFF says what vmm does next).
	PoweredOff bool
}

// ErrShutdownTimeout is returned when the guest did not power off in time and
// QEMU had to be told to quit (or killed).
var ErrShutdownTimeout = errors.New("the guest did not power off within SHUTDOWN_TIMEOUT")

// forwarded signals go to QEMU unchanged; SIGTERM and SIGINT arrive as ctx.
var forwarded = []os.Signal{syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// Run starts cmd (its Stderr must be unset: the supervisor captures it) and
// supervises it until it exits.
func (s *Supervisor) Run(ctx context.Context, cmd *exec.Cmd) error {
	if s.QuitGrace == 0 {
		s.QuitGrace = 5 * time.Second
	}
	if s.Stderr == nil {
		s.Stderr = os.Stderr
	}
	name := cmd.Path
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("stderr pipe: %w", err)
	}
	cmd.Stderr = pw
	// A stale socket from a previous QEMU goes; anything else there (a
	// symlink, a FIFO, a file: the run volume is shared) is refused.
	for _, sock := range append([]string{s.QMPSocket}, s.Sockets...) {
		if err := removeStaleSocket(sock); err != nil {
			pr.Close()
			pw.Close()
			return err
		}
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	chld := make(chan os.Signal, 1)
	if s.Reap {
		signal.Notify(chld, syscall.SIGCHLD)
		defer signal.Stop(chld)
	}

	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	pw.Close()
	for _, f := range cmd.ExtraFiles {
		f.Close() // QEMU has its own copy; vmm must not hold the tap
	}
	s.Log.Info("QEMU started", "pid", cmd.Process.Pid)
	if s.Started != nil {
		s.Started(cmd.Process)
	}

	last := &lastline.Recorder{}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		defer pr.Close()
		last.Copy(pr, func(line string) { fmt.Fprintln(s.Stderr, line) }, s.Stderr)
	}()

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// QMP comes up a moment after the start: then the start-up work.
	startCtx, startCancel := context.WithCancel(ctx)
	defer startCancel()
	watchDone := make(chan struct{})
	aborts := make(chan error, 1)
	abort := func(err error) {
		select {
		case aborts <- err:
		default: // one is enough
		}
	}
	if s.Watch != nil {
		go func() { defer close(watchDone); s.Watch(startCtx, abort) }()
	} else {
		close(watchDone)
	}
	go func() {
		if err := s.waitQMP(startCtx); err != nil {
			if startCtx.Err() == nil {
				s.Log.Warn("QMP did not answer after start", "err", err)
			}
			return
		}
		s.Log.Info("QMP answers", "socket", s.QMPSocket)
		if s.AfterStart != nil {
			if err := s.AfterStart(startCtx); err != nil && startCtx.Err() == nil {
				s.Log.Error("after start", "err", err)
			}
		}
	}()

	finish := func(werr error, how exitKind) error {
		startCancel()
		select {
		case <-watchDone:
		case <-time.After(2 * time.Second):
		}
		select {
		case <-stderrDone:
		case <-time.After(2 * time.Second): // a grandchild holding stderr must not block us
		}
		switch {
		case werr == nil && how == byItself:
			s.Log.Info("QEMU exited: the guest powered off")
			s.PoweredOff = true
			return nil
		case werr == nil && how == asked:
			s.Log.Info("QEMU exited after ACPI power-down: the guest shut down cleanly")
			return nil
		case werr == nil:
			return nil
		}
		msg := last.Last()
		if msg == "" {
			msg = "(nothing on stderr)"
		}
		return fmt.Errorf("%s exited unexpectedly (%v); its last message: %s", name, werr, msg)
	}

	for {
		select {
		case werr := <-exited:
			return finish(werr, byItself)
		case sig := <-sigs:
			s.Log.Info("forwarding signal to QEMU", "signal", sig)
			_ = cmd.Process.Signal(sig)
		case <-chld:
			reapOthers(append(s.Keep, cmd.Process.Pid)...)
		case err := <-aborts:
			return s.end(cmd, exited, err, finish)
		case <-ctx.Done():
			return s.shutdown(cmd, exited, chld, finish)
		}
	}
}

// removeStaleSocket removes a socket a previous QEMU left at path; anything
// but a socket there is refused, left as it is.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s is not a socket (%v): refusing to let QEMU replace it", path, fi.Mode().Type())
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove the stale %s: %w", path, err)
	}
	return nil
}

// end stops a QEMU whose guest cannot go on (no power-down: there is no
// guest to ask): QMP quit, SIGKILL after QuitGrace; the result is why.
func (s *Supervisor) end(cmd *exec.Cmd, exited <-chan error, why error, finish func(error, exitKind) error) error {
	s.quitOrKill(cmd, exited)
	_ = finish(nil, timedOut)
	return why
}

// quitOrKill tells QEMU to quit over QMP and SIGKILLs it if it has not
// exited QuitGrace later. It returns QEMU's exit error when it exited
// (nil once killed: that error is the signal vmm sent).
func (s *Supervisor) quitOrKill(cmd *exec.Cmd, exited <-chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := qmp.Do(ctx, s.QMPSocket, "quit", nil)
	cancel()
	if err != nil {
		s.Log.Warn("QMP quit", "err", err)
	}
	select {
	case werr := <-exited:
		return werr
	case <-time.After(s.QuitGrace):
		s.Log.Warn("QEMU still running after quit: SIGKILL")
		_ = cmd.Process.Kill()
		<-exited
		return nil
	}
}

type exitKind int

const (
	byItself exitKind = iota // QEMU exited without being asked
	asked                    // after ACPI power-down
	timedOut                 // after quit or SIGKILL
)

// shutdown powers the guest down over ACPI, repeating every second (a guest
// still booting ignores the first request), until QEMU exits or the timeout
// ends; then QMP quit, then SIGKILL.
func (s *Supervisor) shutdown(cmd *exec.Cmd, exited <-chan error, chld <-chan os.Signal, finish func(error, exitKind) error) error {
	s.Log.Info("stop requested: ACPI power-down over QMP, repeated every second", "timeout", s.ShutdownTimeout)
	deadline := time.NewTimer(s.ShutdownTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	powerdown := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
		defer cancel()
		if _, err := qmp.Do(ctx, s.QMPSocket, "system_powerdown", nil); err != nil {
			s.Log.Debug("system_powerdown", "err", err)
		}
	}
	if s.Stopping != nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.Stopping(ctx) }()
		defer func() { cancel(); <-done }()
	}
	powerdown()
	for {
		select {
		case werr := <-exited:
			return finish(werr, asked)
		case <-chld:
			reapOthers(append(s.Keep, cmd.Process.Pid)...)
		case <-tick.C:
			powerdown()
		case <-deadline.C:
			s.Log.Warn("the guest did not power off in time: telling QEMU to quit", "timeout", s.ShutdownTimeout)
			if werr := s.quitOrKill(cmd, exited); werr != nil {
				return finish(werr, asked)
			}
			_ = finish(nil, timedOut)
			return fmt.Errorf("%w (%s): QEMU was stopped without a guest shutdown", ErrShutdownTimeout, s.ShutdownTimeout)
		}
	}
}

// waitQMP polls the socket until QMP answers query-status (at most 60 s).
func (s *Supervisor) waitQMP(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		c, err := qmp.Dial(ctx, s.QMPSocket)
		if err == nil {
			_, err = c.QueryStatus(ctx)
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reapOthers reaps exited children other than keep (QEMU and swtpm, which
// their cmd.Wait reaps): orphans re-parented to PID 1. WNOWAIT peeks without
// reaping.
func reapOthers(keep ...int) {
	for {
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
			return
		}
		// si_pid is the first field of the union after three int32s and padding.
		pid := *(*int32)(unsafe.Add(unsafe.Pointer(&info), 16))
		if pid == 0 || slices.Contains(keep, int(pid)) {
			return
		}
		var ws unix.WaitStatus
		_, _ = unix.Wait4(int(pid), &ws, unix.WNOHANG, nil)
	}
}
