package helm

import (
	"bytes"
	"context"
	"os/exec"
	"time"
)

// Template runs `helm template args...` (no cluster is needed) and returns
// its standard output and standard error apart: a refused value's message is
// on standard error, and err is the exit status.
func (r Runner) Template(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 300 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.Path, append([]string{"template"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}
