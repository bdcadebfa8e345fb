package apply

import (
	"context"
	"log/slog"
)

// A resource is one thing net-setup owns in the pod: the bridge, the tap, the
// tun node, a sysctl, the chains of one iptables table, a file in the run
// volume. Its type states each property once, and both ensure (Apply) and diff
// (--check) go through that statement, so the two cannot drift apart.
type resource interface {
	// ensure makes the live resource match the plan, fixing only what
	// differs; a second ensure changes nothing.
	ensure(ctx context.Context, log *slog.Logger) error
	// diff returns one line per property that differs from the plan, naming
	// the resource and the property. It changes nothing.
	diff() ([]string, error)
}

// A property is one thing a resource must be: differs reads the live state
// and says how it differs ("" when the property holds); fix makes it hold.
type property struct {
	differs func() (string, error)
	fix     func() error
}

// diffs returns what differs of props, in order.
func diffs(props []property) ([]string, error) {
	var out []string
	for _, p := range props {
		d, err := p.differs()
		if err != nil {
			return nil, err
		}
		if d != "" {
			out = append(out, d)
		}
	}
	return out, nil
}

// repair fixes, in order, each of props that differs. Each property is read
// just before its fix, so a fix that also makes a later property hold (one
// iptables-restore fills every chain of a table) is not repeated.
func repair(props []property) error {
	for _, p := range props {
		d, err := p.differs()
		if err != nil {
			return err
		}
		if d != "" {
			if err := p.fix(); err != nil {
				return err
			}
		}
	}
	return nil
}
