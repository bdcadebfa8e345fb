package apply

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/berth-vm/berth/netsetup/rules"
)

// chainSet is Berth's chains of one iptables table: each holds exactly its
// rules, and its built-in chain jumps to it exactly once. The chains are
// flushed and refilled in one atomic iptables-restore for the table; the jump
// is inserted first in the built-in chain, and a duplicate (someone else's
// copy of the rule) removed.
type chainSet struct {
	backend Backend
	table   string
	set     rules.Set // the whole set: Restore takes this table's chains
}

// chainSets returns one chainSet per table of set, in set's order.
func chainSets(b Backend, set rules.Set) []resource {
	var out []resource
	for _, t := range set.Tables() {
		out = append(out, chainSet{backend: b, table: t, set: set})
	}
	return out
}

func (s chainSet) ensure(ctx context.Context, _ *slog.Logger) error {
	props, err := s.properties(ctx)
	if err != nil {
		return err
	}
	return repair(props)
}

func (s chainSet) diff() ([]string, error) {
	props, err := s.properties(context.Background())
	if err != nil {
		return nil, err
	}
	return diffs(props)
}

// properties: for each chain of the table, its rules (before its jump: a
// jump needs the chain), then its jump.
func (s chainSet) properties(ctx context.Context) ([]property, error) {
	ipt, err := s.backend.iptables()
	if err != nil {
		return nil, err
	}
	var props []property
	for _, c := range s.set {
		if c.Table != s.table {
			continue
		}
		props = append(props, property{
			differs: func() (string, error) { return chainDiff(ipt, c) },
			fix: func() error {
				if _, err := run(ctx, s.set.Restore(s.table), s.backend.Restore, "--noflush", "--wait"); err != nil {
					return fmt.Errorf("fill Berth's %s chains: %w", s.table, err)
				}
				return nil
			},
		}, property{
			differs: func() (string, error) {
				n, err := countJumps(ipt, c)
				if err != nil || n == 1 {
					return "", err
				}
				return fmt.Sprintf("table %s: %s jumps to %s %d times, want once", c.Table, c.From, c.Name, n), nil
			},
			fix: func() error { return fixJumps(ipt, c) },
		})
	}
	return props, nil
}

// chainDiff says how Berth's chain c differs from its rules ("" when it holds
// exactly them).
func chainDiff(ipt *iptables.IPTables, c rules.Chain) (string, error) {
	exists, err := ipt.ChainExists(c.Table, c.Name)
	if err != nil {
		return "", fmt.Errorf("check chain %s: %w", c.Name, err)
	}
	if !exists {
		return fmt.Sprintf("table %s: chain %s is missing", c.Table, c.Name), nil
	}
	live, err := ipt.List(c.Table, c.Name)
	if err != nil {
		return "", fmt.Errorf("list chain %s: %w", c.Name, err)
	}
	want := []string{"-N " + c.Name}
	for _, r := range c.Rules {
		want = append(want, "-A "+c.Name+" "+strings.Join(r, " "))
	}
	if strings.Join(live, "\n") == strings.Join(want, "\n") {
		return "", nil
	}
	return fmt.Sprintf("table %s: chain %s is\n  %s\nwant\n  %s", c.Table, c.Name,
		strings.Join(live, "\n  "), strings.Join(want, "\n  ")), nil
}

// countJumps counts the rules in c's built-in chain that equal c's jump.
func countJumps(ipt *iptables.IPTables, c rules.Chain) (int, error) {
	live, err := ipt.List(c.Table, c.From)
	if err != nil {
		return 0, fmt.Errorf("list %s in table %s: %w", c.From, c.Table, err)
	}
	want := "-A " + c.From + " " + strings.Join(c.Jump(), " ")
	n := 0
	for _, l := range live {
		if l == want {
			n++
		}
	}
	return n, nil
}

// fixJumps leaves exactly one jump to c, first in its built-in chain when it
// adds it.
func fixJumps(ipt *iptables.IPTables, c rules.Chain) error {
	n, err := countJumps(ipt, c)
	if err != nil {
		return err
	}
	if n == 0 {
		if err := ipt.Insert(c.Table, c.From, 1, c.Jump()...); err != nil {
			return fmt.Errorf("add jump %s -> %s in table %s: %w", c.From, c.Name, c.Table, err)
		}
	}
	for ; n > 1; n-- { // left by someone else's copy of the rule: keep exactly one
		if err := ipt.Delete(c.Table, c.From, c.Jump()...); err != nil {
			return fmt.Errorf("remove duplicate jump %s -> %s in table %s: %w", c.From, c.Name, c.Table, err)
		}
	}
	return nil
}
