package phase

import "testing"

// Step is one named step of a scenario, run as a subtest.
type Step struct {
	Name string
	Run  func(t *testing.T)
}

// RunSteps runs the steps in order, each a subtest timed by timer: the first
// failing step ends the test (later steps build on it).
func RunSteps(t *testing.T, timer *Timer, steps []Step) {
	t.Helper()
	timer.Start()
	for _, s := range steps {
		if !t.Run(s.Name, s.Run) {
			t.FailNow()
		}
		if err := timer.End(s.Name); err != nil {
			t.Fatal(err)
		}
	}
}
