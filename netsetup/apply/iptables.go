package apply

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"

	"github.com/berth-vm/berth/netsetup/rules"
)

// Backend is one iptables implementation: its main and restore binaries.
type Backend struct {
	Name    string // nft or legacy
	Cmd     string // iptables-nft or iptables-legacy
	Restore string
	Save    string
}

// Backends in order of preference.
var backendNames = []string{"nft", "legacy"}

func backend(name string) Backend {
	return Backend{Name: name, Cmd: "iptables-" + name, Restore: "iptables-" + name + "-restore", Save: "iptables-" + name + "-save"}
}

const iptablesTimeout = 30 * time.Second

// DetectBackend picks the iptables backend for this pod, as Kubernetes'
// iptables-wrapper does, and never assumes one: forced by IPTABLES_BACKEND;
// else the one already holding Berth's chains (an earlier run); else the one
// holding more rules (what the CNI or the node uses in this netns); else nft
// when the kernel answers it; else legacy.
func DetectBackend(ctx context.Context, want string) (Backend, error) {
	if want == "nft" || want == "legacy" {
		b := backend(want)
		if _, err := exec.LookPath(b.Cmd); err != nil {
			return Backend{}, fmt.Errorf("IPTABLES_BACKEND=%s: %s is not installed: %w", want, b.Cmd, err)
		}
		return b, nil
	}
	type seen struct {
		b     Backend
		rules int
		berth bool
	}
	var usable []seen
	var errs []string
	for _, n := range backendNames {
		b := backend(n)
		if _, err := exec.LookPath(b.Save); err != nil {
			errs = append(errs, fmt.Sprintf("%s: not installed", b.Save))
			continue
		}
		out, err := run(ctx, nil, b.Save)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", b.Save, err))
			continue
		}
		s := seen{b: b}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "-A ") {
				s.rules++
			}
			if strings.HasPrefix(l, ":BERTH-") {
				s.berth = true
			}
		}
		usable = append(usable, s)
	}
	if len(usable) == 0 {
		return Backend{}, fmt.Errorf("no working iptables backend: %s", strings.Join(errs, "; "))
	}
	best := usable[0]
	for _, s := range usable[1:] {
		if s.berth && !best.berth || s.berth == best.berth && s.rules > best.rules {
			best = s
		}
	}
	return best.b, nil
}

func run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, iptablesTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (b Backend) iptables() (*iptables.IPTables, error) {
	path, err := exec.LookPath(b.Cmd)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", b.Cmd, err)
	}
	ipt, err := iptables.New(iptables.Path(path), iptables.Timeout(int(iptablesTimeout.Seconds())))
	if err != nil {
		return nil, fmt.Errorf("use %s: %w", path, err)
	}
	return ipt, nil
}

// ApplyRules flushes and refills Berth's chains, one atomic iptables-restore
// per table, then makes sure each built-in chain jumps to Berth's chain once,
// first. Running it again changes nothing.
func ApplyRules(ctx context.Context, b Backend, set rules.Set) error {
	for _, t := range set.Tables() {
		if _, err := run(ctx, set.Restore(t), b.Restore, "--noflush", "--wait"); err != nil {
			return fmt.Errorf("fill Berth's %s chains: %w", t, err)
		}
	}
	ipt, err := b.iptables()
	if err != nil {
		return err
	}
	for _, c := range set {
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
	}
	return nil
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

// CheckRules reports every difference between the live chains and the set.
func CheckRules(b Backend, set rules.Set) ([]string, error) {
	ipt, err := b.iptables()
	if err != nil {
		return nil, err
	}
	var diffs []string
	for _, c := range set {
		n, err := countJumps(ipt, c)
		if err != nil {
			return nil, err
		}
		if n != 1 {
			diffs = append(diffs, fmt.Sprintf("table %s: %s jumps to %s %d times, want once", c.Table, c.From, c.Name, n))
		}
		exists, err := ipt.ChainExists(c.Table, c.Name)
		if err != nil {
			return nil, fmt.Errorf("check chain %s: %w", c.Name, err)
		}
		if !exists {
			diffs = append(diffs, fmt.Sprintf("table %s: chain %s is missing", c.Table, c.Name))
			continue
		}
		live, err := ipt.List(c.Table, c.Name)
		if err != nil {
			return nil, fmt.Errorf("list chain %s: %w", c.Name, err)
		}
		want := []string{"-N " + c.Name}
		for _, r := range c.Rules {
			want = append(want, "-A "+c.Name+" "+strings.Join(r, " "))
		}
		if strings.Join(live, "\n") != strings.Join(want, "\n") {
			diffs = append(diffs, fmt.Sprintf("table %s: chain %s is\n  %s\nwant\n  %s", c.Table, c.Name,
				strings.Join(live, "\n  "), strings.Join(want, "\n  ")))
		}
	}
	return diffs, nil
}
