// Package guest reaches a test guest the way its user does: OpenSSH with the
// run's key, from a given network namespace (the cluster's node, or a local
// pod's), every command bounded.
package guest

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/berth-vm/berth/e2e/internal/wait"
)

// SSH runs commands in guests as User with the private key at Key; when NetNS
// is set (a path such as /var/run/netns/berth-node) ssh runs in that network
// namespace (nsenter --net).
type SSH struct {
	Key     string
	User    string        // default debian (the test guest's user)
	NetNS   string        // "" : this process's namespace
	Timeout time.Duration // per command; default 60 s
}

// Run runs cmd (one shell command line) on host and returns its standard
// output; a failure carries the exit status and standard error.
func (s SSH) Run(ctx context.Context, host, cmd string) (string, error) {
	return s.RunFor(ctx, s.timeout(), host, cmd)
}

// RunFor is Run with its own bound (for commands that wait in the guest).
func (s SSH) RunFor(ctx context.Context, timeout time.Duration, host, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	user := s.User
	if user == "" {
		user = "debian"
	}
	argv := []string{"ssh", "-i", s.Key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
		user + "@" + host, cmd}
	if s.NetNS != "" {
		argv = append([]string{"nsenter", "--net=" + s.NetNS}, argv...)
	}
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (after %s)", ctx.Err(), timeout)
		}
		return stdout.String(), fmt.Errorf("ssh %s@%s %q: %w (stderr: %s)", user, host, cmd, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Line is Run with the output's surrounding white space removed.
func (s SSH) Line(ctx context.Context, host, cmd string) (string, error) {
	out, err := s.Run(ctx, host, cmd)
	return strings.TrimSpace(out), err
}

// WaitUp waits until `true` runs on host over SSH, for at most timeout.
func (s SSH) WaitUp(ctx context.Context, host string, timeout time.Duration, logf wait.Logf) error {
	_, err := wait.For(ctx, "SSH at "+host, timeout, time.Second, logf, func(ctx context.Context) (bool, string, error) {
		_, err := s.RunFor(ctx, 15*time.Second, host, "true")
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
	return err
}

func (s SSH) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return 60 * time.Second
}
