package fetch

import (
	"fmt"
	"strings"
	"time"

	"github.com/berth-vm/berth/common/quantity"
	"github.com/berth-vm/berth/common/stage"
)

// Policy is how a download treats a failing, stalling or slow server: the
// IMG_FETCH_* variables.
type Policy struct {
	Attempts     int           // attempts per run for retryable failures (the pod restart retries further)
	Backoff      time.Duration // first wait between attempts, doubled each time
	MaxBackoff   time.Duration // the wait is never longer
	StallTimeout time.Duration // no response headers or no body byte for this long: the attempt fails
	MinRate      int64         // bytes/s averaged over RateWindow below which the attempt fails; 0: no minimum
	RateWindow   time.Duration
	Deadline     time.Duration // the whole download (all attempts of this run) ends after this long
}

// DefaultPolicy is the production policy.
func DefaultPolicy() Policy {
	return Policy{Attempts: 6, Backoff: 2 * time.Second, MaxBackoff: 30 * time.Second, StallTimeout: 60 * time.Second,
		MinRate: 16 << 10, RateWindow: 60 * time.Second, Deadline: 6 * time.Hour}
}

// PolicyFromEnv reads the IMG_FETCH_* variables; every error is an
// *stage.InputError naming the variable.
func PolicyFromEnv(env stage.Env) (Policy, error) {
	p := DefaultPolicy()
	var err error
	if p.Attempts, err = env.Int("IMG_FETCH_ATTEMPTS", p.Attempts, 1, 100); err != nil {
		return p, err
	}
	durs := []struct {
		name     string
		v        *time.Duration
		min, max time.Duration
	}{
		{"IMG_FETCH_BACKOFF", &p.Backoff, 0, time.Hour},
		{"IMG_FETCH_MAX_BACKOFF", &p.MaxBackoff, 0, time.Hour},
		{"IMG_FETCH_STALL_TIMEOUT", &p.StallTimeout, time.Second, time.Hour},
		{"IMG_FETCH_RATE_WINDOW", &p.RateWindow, time.Second, time.Hour},
		{"IMG_FETCH_DEADLINE", &p.Deadline, time.Second, 720 * time.Hour},
	}
	for _, d := range durs {
		s, ok := env.Lookup(d.name)
		if !ok {
			continue
		}
		v, perr := time.ParseDuration(strings.TrimSpace(s))
		if perr != nil || v < d.min || v > d.max {
			return p, stage.BadInputf(d.name, s, "must be a duration from %s to %s, with a unit (e.g. 500ms, 30s, 5m, 2h)", d.min, d.max)
		}
		*d.v = v
	}
	if p.MaxBackoff < p.Backoff {
		return p, stage.BadInputf("IMG_FETCH_MAX_BACKOFF", p.MaxBackoff.String(), "must not be shorter than IMG_FETCH_BACKOFF (%s)", p.Backoff)
	}
	if s, ok := env.Lookup("IMG_FETCH_MIN_RATE"); ok {
		n, perr := quantity.ParseBytes(s)
		if perr != nil || n > 1<<40 {
			return p, stage.BadInput("IMG_FETCH_MIN_RATE", s, "must be bytes per second, 0 (no minimum) to 1Ti: "+quantity.Allowed)
		}
		p.MinRate = int64(n)
	}
	return p, nil
}

// String is the policy in one line, for --dry-run.
func (p Policy) String() string {
	minRate := "no minimum rate"
	if p.MinRate > 0 {
		minRate = fmt.Sprintf("below %s over %s", rate(float64(p.MinRate)), p.RateWindow)
	}
	return fmt.Sprintf("%d attempts, waits from %s doubling to %s; an attempt fails after %s without a byte or %s; all ends after %s",
		p.Attempts, p.Backoff, p.MaxBackoff, p.StallTimeout, minRate, p.Deadline)
}

// Apply sets the policy on a Downloader.
func (p Policy) Apply(d *Downloader) {
	d.Attempts, d.Backoff, d.MaxBackoff = p.Attempts, p.Backoff, p.MaxBackoff
	d.IdleTimeout, d.MinRate, d.RateWindow, d.Deadline = p.StallTimeout, p.MinRate, p.RateWindow, p.Deadline
}
