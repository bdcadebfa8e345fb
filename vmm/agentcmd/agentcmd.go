// Package agentcmd is `vmm agent ping|osinfo|freeze|thaw|status`: one
// command to the guest agent over the channel's socket in the run volume,
// for people (kubectl exec <pod> -c vm -- vmm agent osinfo) and for backup
// tools, which freeze the guest's file systems around a volume snapshot
// (docs/vmm.md, "Guest agent"). One line on stdout, exit 0; the agent not
// answering or refusing is one line on stderr, exit 1; bad input, exit 2.
package agentcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/agent"
	"github.com/berth-vm/berth/vmm/config"
)

// The commands.
const (
	Ping   = "ping"
	OSInfo = "osinfo"
	Freeze = "freeze"
	Thaw   = "thaw"
	Status = "status"
)

// Commands lists them in the order of the usage.
var Commands = []string{Ping, OSInfo, Freeze, Thaw, Status}

// DefaultTimeout bounds a command; FreezeTimeout a freeze, which first syncs
// every file system in the guest. MaxTimeout bounds -timeout.
const (
	DefaultTimeout = 10 * time.Second
	FreezeTimeout  = 60 * time.Second
	MaxTimeout     = time.Hour
)

// Usage is `vmm agent -h`.
const Usage = "usage: vmm agent [-timeout DURATION] ping|osinfo|freeze|thaw|status\n" +
	"  ping:   the guest agent (qemu-guest-agent in the guest) answers\n" +
	"  osinfo: the guest's OS, kernel and machine\n" +
	"  freeze: sync and freeze the guest's file systems (writes wait) until thaw: before a volume snapshot\n" +
	"  thaw:   thaw them: after the snapshot\n" +
	"  status: frozen or thawed\n" +
	"  -timeout: the bound of the command (default 10s, freeze 60s; at most 1h)\n" +
	"Talks to $BERTH_RUN_DIR/" + stage.AgentSocketName + " (GUEST_AGENT=true); exit 0 done, 1 the agent failed or did not answer, 2 bad input.\n"

// Request is one parsed invocation.
type Request struct {
	Command string
	Timeout time.Duration
	RunDir  string // BERTH_RUN_DIR
	Socket  string
}

// Parse reads the arguments (after "agent") and the environment. Anything
// wrong is a *stage.InputError naming the argument or variable.
func Parse(args []string, env stage.Env) (Request, error) {
	var r Request
	fs := flag.NewFlagSet("vmm agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	timeout := fs.String("timeout", "", "")
	if err := fs.Parse(args); err != nil {
		return r, stage.BadInput("arguments", strings.Join(args, " "), "want [-timeout DURATION] and one of "+strings.Join(Commands, ", ")+" (vmm agent -h): "+err.Error())
	}
	if fs.NArg() != 1 || !oneOf(fs.Arg(0), Commands) {
		return r, stage.BadInput("arguments", strings.Join(fs.Args(), " "), "want exactly one of "+strings.Join(Commands, ", ")+" (vmm agent -h)")
	}
	r.Command = fs.Arg(0)
	r.Timeout = DefaultTimeout
	if r.Command == Freeze {
		r.Timeout = FreezeTimeout
	}
	if *timeout != "" {
		d, err := time.ParseDuration(*timeout)
		if err != nil || d <= 0 || d > MaxTimeout {
			return r, stage.BadInput("-timeout", *timeout, "must be a duration greater than 0 and at most 1h, e.g. 30s or 2m")
		}
		r.Timeout = d
	}
	runDir, err := config.RunDir(env)
	if err != nil {
		return r, err
	}
	on, err := config.GuestAgent(env)
	if err != nil {
		return r, err
	}
	if !on {
		return r, stage.BadInput("GUEST_AGENT", "false", "this VM has no guest agent channel: set GUEST_AGENT=true (chart: guestAgent.enabled) and restart the VM")
	}
	r.RunDir = runDir
	r.Socket = filepath.Join(runDir, stage.AgentSocketName)
	return r, nil
}

func oneOf(s string, list []string) bool {
	for _, x := range list {
		if s == x {
			return true
		}
	}
	return false
}

// Run does the request and returns its one line. A BERTH_RUN_DIR that is
// not the run volume's directory (missing, a symlink, a file) is bad input,
// as for every stage.
func Run(ctx context.Context, r Request) (string, error) {
	if err := stage.CheckVolumeDir("BERTH_RUN_DIR", r.RunDir); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	c, err := agent.Dial(ctx, r.Socket)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "", fmt.Errorf("%w (no answer: is qemu-guest-agent installed and running in the guest?)", err)
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("%w (QEMU is not running, or ran without GUEST_AGENT=true)", err)
	case err != nil:
		return "", err
	}
	defer c.Close()
	switch r.Command {
	case Ping:
		if err := c.Ping(ctx); err != nil {
			return "", err
		}
		return "the guest agent answers", nil
	case OSInfo:
		o, err := c.OSInfo(ctx)
		if err != nil {
			return "", err
		}
		return o.String(), nil
	case Freeze:
		n, err := c.Freeze(ctx)
		if err != nil {
			var ae *agent.Error
			if errors.As(err, &ae) {
				if s, serr := c.FreezeStatus(ctx); serr == nil && s == agent.Frozen {
					return "", fmt.Errorf("%w (the guest is frozen already: `vmm agent thaw` first)", err)
				}
			}
			return "", err
		}
		return fmt.Sprintf("froze %d file systems: writes in the guest wait until `vmm agent thaw`", n), nil
	case Thaw:
		n, err := c.Thaw(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("thawed %d file systems", n), nil
	case Status:
		return c.FreezeStatus(ctx)
	}
	return "", fmt.Errorf("unknown command %q", r.Command)
}

// Main runs `vmm agent`; args are what follows "agent".
func Main(args []string, env stage.Env, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprint(stdout, Usage)
		return stage.ExitOK
	}
	r, err := Parse(args, env)
	if err != nil {
		fmt.Fprintf(stderr, "vmm agent: bad input: %s\n", oneLine(err))
		return stage.ExitCode(err)
	}
	msg, err := Run(context.Background(), r)
	if stage.IsBadInput(err) {
		fmt.Fprintf(stderr, "vmm agent: bad input: %s\n", oneLine(err))
		return stage.ExitCode(err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmm agent %s: %s\n", r.Command, oneLine(err))
		return stage.ExitCode(err)
	}
	fmt.Fprintf(stdout, "vmm agent %s: %s\n", r.Command, msg)
	return stage.ExitOK
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }
