package watch

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/berth-vm/berth/vmm/agent"
)

// How often and how long the greeting asks the guest agent (zero fields of
// Greeting take these): GreetTimeout bounds the sync (an agent that does not
// run yet never answers it), AnswerTimeout each command once the agent has
// answered the sync.
const (
	GreetEvery    = 5 * time.Second
	GreetTimeout  = 3 * time.Second
	AnswerTimeout = 30 * time.Second
)

// Greeting logs the guest's OS and addresses once per boot, as soon as the
// guest agent first answers: until then it asks every GreetEvery, each sync
// bounded by GreetTimeout and the connection closed at once (QEMU serves one
// client at a time on the channel: `vmm agent` and probe ready must get their
// turn). Once the agent has answered the sync, its replies are waited for
// (AnswerTimeout): a reply left unread keeps qemu-guest-agent spinning
// (agent.Drain says why).
type Greeting struct {
	Log    *slog.Logger
	Socket string // the agent channel's socket

	Every, Timeout, Answer time.Duration

	mu      sync.Mutex
	boot    time.Time // the guest's current boot
	greeted time.Time // the boot the agent last answered in
}

// NewBoot tells the greeting that the guest began a boot at t (the watch's
// Boot: QEMU's start, then each reset): the agent is asked again.
func (g *Greeting) NewBoot(t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.boot = t
}

// due: the current boot has not been greeted; and that boot.
func (g *Greeting) due() (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.boot, !g.boot.Equal(g.greeted)
}

// Run asks until ctx ends.
func (g *Greeting) Run(ctx context.Context) {
	if g.Every == 0 {
		g.Every = GreetEvery
	}
	if g.Timeout == 0 {
		g.Timeout = GreetTimeout
	}
	if g.Answer == 0 {
		g.Answer = AnswerTimeout
	}
	tick := time.NewTicker(g.Every)
	defer tick.Stop()
	for {
		if boot, due := g.due(); due && g.try(ctx, boot) {
			g.mu.Lock()
			g.greeted = boot
			g.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// try asks the agent once: true when it answered and the guest was logged.
func (g *Greeting) try(ctx context.Context, boot time.Time) bool {
	sctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	c, err := agent.Dial(sctx, g.Socket)
	if err != nil {
		g.Log.Debug("the guest agent does not answer yet", "err", err)
		return false
	}
	defer c.Close()
	ctx, cancel = context.WithTimeout(ctx, g.Answer)
	defer cancel()
	o, err := c.OSInfo(ctx)
	if err != nil {
		g.Log.Debug("guest agent: no OS info yet", "err", err)
		return false
	}
	attrs := []any{"os", o.PrettyName, "kernel", o.KernelRelease, "machine", o.Machine, "since_boot", time.Since(boot).Round(time.Second).String()}
	if ifs, err := c.Interfaces(ctx); err != nil {
		attrs = append(attrs, "addresses_err", err.Error())
	} else {
		attrs = append(attrs, "addresses", agent.Addresses(ifs))
	}
	g.Log.Info("the guest agent answers", attrs...)
	return true
}
