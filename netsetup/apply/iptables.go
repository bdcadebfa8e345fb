package apply

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
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
