package watch

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-vm/berth/vmm/agent/agenttest"
	"github.com/berth-vm/berth/vmm/qmp"
	"github.com/berth-vm/berth/vmm/status"
)

// greetingRun is a Greeting of a fake agent running with short periods (a
// try every 10 ms, the sync bounded by 50 ms) until stop or 20 s.
type greetingRun struct {
	g    *Greeting
	logs *logBuffer
	ctx  context.Context
	stop func() // ends the greeting and waits for it
}

func runGreeting(t *testing.T, a *agenttest.Agent) *greetingRun {
	t.Helper()
	r := &greetingRun{logs: &logBuffer{}}
	r.g = &Greeting{Log: slog.New(slog.NewTextHandler(r.logs, nil)), Socket: a.Path, Every: 10 * time.Millisecond, Timeout: 50 * time.Millisecond}
	r.g.NewBoot(time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	r.ctx = ctx
	done := make(chan struct{})
	go func() { defer close(done); r.g.Run(ctx) }()
	r.stop = func() { cancel(); <-done }
	t.Cleanup(r.stop)
	return r
}

// until polls f until it holds; the run's bound ending first fails the test.
func (r *greetingRun) until(t *testing.T, what string, f func() bool) {
	t.Helper()
	for !f() {
		if r.ctx.Err() != nil {
			t.Fatalf("%s: not within the bound; log:\n%s", what, r.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// greeted is the greeting's log line.
const greeted = `msg="the guest agent answers"`

// TestGreeting: while the guest agent does not answer nothing is logged;
// once it does, the guest's OS, kernel and addresses (not the loopback's)
// are logged once for that boot, however long the greeting goes on; a new
// boot is greeted again.
func TestGreeting(t *testing.T) {
	a := agenttest.Start(t)
	a.Set(func(a *agenttest.Agent) { a.Silent = true })
	r := runGreeting(t, a)
	logs := r.logs
	r.until(t, "three tries of a silent agent", func() bool { return a.Count("guest-sync-delimited") >= 3 })
	if strings.Contains(logs.String(), greeted) {
		t.Fatalf("logged an answer of a silent agent:\n%s", logs.String())
	}
	a.Set(func(a *agenttest.Agent) { a.Silent = false })
	r.until(t, "the greeting", func() bool { return strings.Contains(logs.String(), greeted) })
	syncs := a.Count("guest-sync-delimited")
	time.Sleep(100 * time.Millisecond) // ten more periods
	if n := strings.Count(logs.String(), greeted); n != 1 || a.Count("guest-sync-delimited") != syncs {
		t.Errorf("greeted %d times, %d more connections in one boot, want once and none:\n%s", n, a.Count("guest-sync-delimited")-syncs, logs.String())
	}
	out := logs.String()
	for _, want := range []string{`os="Debian GNU/Linux 12 (bookworm)"`, "kernel=6.1.0-28-cloud-amd64", "addresses=\"[eth0=192.168.254.2/30 eth0=fe80::5054:ff:fe12:3456/64]\""} {
		if !strings.Contains(out, want) {
			t.Errorf("greeting lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "127.0.0.1") {
		t.Errorf("greeting shows the loopback:\n%s", out)
	}
	r.g.NewBoot(time.Now())
	r.until(t, "the greeting of the next boot", func() bool { return strings.Count(logs.String(), greeted) == 2 })
}

// TestGreetingWaitsForAnswers: once the agent has answered the sync, its
// replies are waited for past the sync's bound (a reply left unread keeps
// qemu-guest-agent spinning), so a slow guest's addresses are logged.
func TestGreetingWaitsForAnswers(t *testing.T) {
	a := agenttest.Start(t)
	a.Set(func(a *agenttest.Agent) { a.Slow = 150 * time.Millisecond })
	r := runGreeting(t, a)
	r.until(t, "the greeting", func() bool { return strings.Contains(r.logs.String(), greeted) })
	r.stop()
	if out := r.logs.String(); strings.Contains(out, "addresses_err") || !strings.Contains(out, "eth0=192.168.254.2/30") {
		t.Errorf("the greeting gave up on the slow agent's addresses:\n%s", out)
	}
	if n := a.Count("guest-sync-delimited"); n != 1 {
		t.Errorf("%d connections, want 1: the first sync answered, and its commands were waited for", n)
	}
}

// TestWatchTellsNewBoot: a reset seen by the watch (a RESET event) is a new
// boot for Reset (the greeting asks the agent again), with the boot's time;
// a poll without one tells nothing.
func TestWatchTellsNewBoot(t *testing.T) {
	mine, theirs := net.Pipe()
	f := &fakeMonitor{status: "running"}
	go f.serve(t, theirs)
	c, err := qmp.NewClient(context.Background(), mine)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var told []time.Time
	w := &Watch{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), QMP: c, StatusFile: filepath.Join(t.TempDir(), status.FileName),
		StatusEvery: time.Hour, RoomEvery: time.Hour, GrowEvery: time.Hour, Reset: func(b time.Time) { told = append(told, b) }, warned: map[string]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first := time.Now()
	if err := w.poll(ctx, first); err != nil {
		t.Fatal(err)
	}
	w.events([]qmp.Event{{Event: "RESET", Data: json.RawMessage(`{"guest":true,"reason":"guest-reset"}`)}})
	second := first.Add(time.Minute)
	if err := w.poll(ctx, second); err != nil {
		t.Fatal(err)
	}
	if len(told) != 1 || !told[0].Equal(second) || !w.Boot.Equal(second) {
		t.Errorf("Reset told %v (Boot %v), want once, %v", told, w.Boot, second)
	}
}
