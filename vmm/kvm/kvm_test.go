package kvm

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	ChildMain() // the probe re-executes this test binary as its child
	os.Exit(m.Run())
}

// TestProbeBounded: whatever this machine's KVM does, the probe answers within
// its timeout (plus the kill) and gives a reason. The answer itself differs
// between machines, so it is logged, not asserted.
func TestProbeBounded(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 2 * time.Second
	done := make(chan Result, 1)
	start := time.Now()
	go func() { done <- Probe(context.Background(), self, "/dev/kvm", timeout) }()
	select {
	case r := <-done:
		t.Logf("KVM probe here: ok=%v reason=%q after %s", r.OK, r.Reason, time.Since(start).Round(time.Millisecond))
		if r.Reason == "" {
			t.Error("probe gave no reason")
		}
	case <-time.After(timeout + 10*time.Second):
		t.Fatalf("probe did not return within %s", timeout+10*time.Second)
	}
}

func TestProbeMissingDevice(t *testing.T) {
	r := Probe(context.Background(), "/nonexistent", "/nonexistent/kvm", time.Second)
	if r.OK || r.Reason == "" {
		t.Fatalf("probe of a missing device = %+v, want not ok with a reason", r)
	}
}

// TestProbeNotKVM: a device that is not KVM fails with the ioctl's error, not a hang.
func TestProbeNotKVM(t *testing.T) {
	self, _ := os.Executable()
	r := Probe(context.Background(), self, "/dev/null", 5*time.Second)
	if r.OK || r.Reason == "" {
		t.Fatalf("probe of /dev/null = %+v, want not ok with a reason", r)
	}
	t.Logf("reason: %s", r.Reason)
}
