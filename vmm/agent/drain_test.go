package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/vmm/agent"
	"github.com/berth-vm/berth/vmm/agent/agenttest"
)

// TestDrain: Drain reads what the agent has for a client (the fake writes
// its Stale bytes to each new connection), lets go after quiet and connects
// again (each connection's bytes are counted), and returns when ctx ends.
func TestDrain(t *testing.T) {
	a := agenttest.Start(t)
	const stale = "\xff{\"return\": 12}\n{\"return\": [{\"name\": \"lo\"}]}\n"
	a.Set(func(a *agenttest.Agent) { a.Stale = stale })
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	n, err := agent.Drain(ctx, a.Path, 30*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Drain returned %s after its context's 400ms", took)
	}
	if n%int64(len(stale)) != 0 || n/int64(len(stale)) < 2 {
		t.Errorf("drained %d bytes, want a multiple (2 or more connections) of the %d each connection gets", n, len(stale))
	}
}

// TestDrainRefusesSymlink: the run volume is shared; a symlink at the
// socket's path is not followed.
func TestDrainRefusesSymlink(t *testing.T) {
	a := agenttest.Start(t)
	a.Set(func(a *agenttest.Agent) { a.Stale = "secret" })
	link := filepath.Join(t.TempDir(), "qga.sock")
	if err := os.Symlink(a.Path, link); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if n, err := agent.Drain(ctx, link, 10*time.Millisecond); n != 0 || !errors.Is(err, fsutil.ErrNotOwnFile) {
		t.Errorf("symlink: %d bytes, %v; want 0 and a refusal", n, err)
	}
}
