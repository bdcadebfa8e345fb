// Package qemuimg runs qemu-img for the init stages: each run bounded by a
// timeout, its stderr kept up to MaxStderr, and its end told apart: qemu-img
// ran and exited non-zero (an *ExitError: it refused the image), or it did not
// start, was killed, or gave no answer in time (any other error).
package qemuimg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// DefaultTimeout bounds one qemu-img run.
const DefaultTimeout = 60 * time.Second

// MaxStderr bounds what is kept of qemu-img's stderr: a truncated image makes
// qemu-img check print one line per cluster past the end.
const MaxStderr = 4 << 10

// waitDelay is how long a killed qemu-img's pipes may stay open.
const waitDelay = 5 * time.Second

// Output is what one run printed.
type Output struct {
	Stdout []byte
	Stderr string // trimmed, at most MaxStderr bytes
}

// ExitError is a qemu-img that ran and exited with a status other than 0.
type ExitError struct {
	Args   []string
	Code   int
	Stderr string // trimmed, at most MaxStderr bytes
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("qemu-img %s: exit status %d: %s", strings.Join(e.Args, " "), e.Code, e.Stderr)
}

// Run runs `qemu-img args...`, killed after timeout. The Output is filled in
// whatever the end; the error is nil on exit status 0, an *ExitError on any
// other status, and a plain error when qemu-img did not run to its end.
func Run(ctx context.Context, timeout time.Duration, args ...string) (Output, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-img", args...)
	var stdout bytes.Buffer
	stderr := &capped{max: MaxStderr}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	out := Output{Stdout: stdout.Bytes(), Stderr: strings.TrimSpace(stderr.buf.String())}
	if ctx.Err() != nil {
		return out, fmt.Errorf("qemu-img %s: no answer within %s: %w", strings.Join(args, " "), timeout, ctx.Err())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, nil
	case errors.As(err, &ee) && ee.Exited():
		return out, &ExitError{Args: args, Code: ee.ExitCode(), Stderr: out.Stderr}
	}
	return out, fmt.Errorf("qemu-img %s: %w: %s", strings.Join(args, " "), err, out.Stderr)
}

// capped keeps the first max bytes written to it and drops the rest.
type capped struct {
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
