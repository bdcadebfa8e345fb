// Package wait bounds every wait of the e2e tests: a condition polled until
// it holds, the deadline passes or the context ends, with a line of progress
// now and then and an error that says what was awaited and what was last seen.
package wait

import (
	"context"
	"errors"
	"fmt"
	"time"

	kwait "k8s.io/apimachinery/pkg/util/wait"
)

// Logf is where progress goes (testing.T.Logf fits).
type Logf func(format string, args ...any)

// For polls cond every interval until it returns true, for at most timeout.
// cond returns a description of what it saw (used in progress lines and in
// the timeout's error) and a non-nil error only when waiting longer cannot
// help. Progress is logged every 20 s when logf is not nil. It returns how
// long it waited.
func For(ctx context.Context, what string, timeout, interval time.Duration, logf Logf,
	cond func(ctx context.Context) (ok bool, seen string, err error)) (time.Duration, error) {
	start := time.Now()
	said := start
	var seen string
	err := kwait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		ok, s, err := cond(ctx)
		seen = s
		if ok || err != nil {
			return ok, err
		}
		if logf != nil && time.Since(said) >= 20*time.Second {
			said = time.Now()
			logf("waiting for %s (%.0fs): %s", what, time.Since(start).Seconds(), seen)
		}
		return false, nil
	})
	took := time.Since(start)
	switch {
	case err == nil:
		if logf != nil {
			logf("%s after %.1fs", what, took.Seconds())
		}
		return took, nil
	case errors.Is(err, context.DeadlineExceeded) || kwait.Interrupted(err):
		return took, fmt.Errorf("%s: not within %s (last seen: %s)", what, timeout, seen)
	default:
		return took, fmt.Errorf("%s: %w", what, err)
	}
}
