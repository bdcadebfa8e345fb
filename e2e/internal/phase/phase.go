// Package phase times the steps of a scenario: each step's seconds are
// printed and appended to a TSV file (suite, phase, seconds), never asserted.
package phase

import (
	"fmt"
	"os"
	"time"
)

// Timer measures from its start, or from the end of the last phase.
type Timer struct {
	Suite string // the TSV's first column (the CNI, the chaos suite)
	File  string // appended to; "" : printed only
	Logf  func(format string, args ...any)
	start time.Time
}

// Start begins the first phase now.
func (t *Timer) Start() { t.start = time.Now() }

// End ends the running phase under name and starts the next one.
func (t *Timer) End(name string) error {
	took := time.Since(t.start)
	t.start = time.Now()
	if t.Logf != nil {
		t.Logf("phase %s/%s: %.0fs", t.Suite, name, took.Seconds())
	}
	if t.File == "" {
		return nil
	}
	f, err := os.OpenFile(t.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("timings: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s\t%s\t%.0f\n", t.Suite, name, took.Seconds())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("timings %s: %w", t.File, err)
	}
	return nil
}

// Elapsed is the time since the running phase began.
func (t *Timer) Elapsed() time.Duration { return time.Since(t.start) }
