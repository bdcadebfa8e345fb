// Package helm runs the helm binary the way a user does (install, upgrade,
// test, uninstall), against the tests' kubeconfig, each call bounded.
package helm

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Runner runs Path with --kubeconfig Kubeconfig.
type Runner struct {
	Path       string
	Kubeconfig string
	Timeout    time.Duration // per call; default 300 s
}

// Run runs helm with args and returns its standard output; a failure carries
// its standard error and output.
func (r Runner) Run(ctx context.Context, args ...string) (string, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 300 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.Path, append([]string{"--kubeconfig", r.Kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}
