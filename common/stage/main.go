package stage

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Spec describes a binary: its name, what it does, its variables and flags.
type Spec struct {
	Name    string
	Summary string // one paragraph for -h
	Vars    []Var  // the binary's own variables; the common ones are added
	// Flags registers extra flags on the binary's flag set.
	Flags func(*flag.FlagSet)
}

// Stage is the one shape of every Berth binary (docs/design.md, "One stage
// shape"): Plan decides everything from the environment and what the stage is
// handed, changing nothing; then Main prints the plan (--dry-run), compares the
// live state with it (--check) or applies it.
type Stage struct {
	Spec
	// Plan reads the environment (r.Env) and the stage's inputs and decides
	// what the stage will do. It changes nothing; bad input is an *InputError
	// (exit 2) and is found here, before the first change.
	Plan func(r Run) (Plan, error)
}

// Plan is a stage's decision, made before anything changes.
type Plan interface {
	// Print writes the plan for --dry-run. It changes nothing.
	Print(w io.Writer) error
	// Check compares the live state with the plan for --check: one line per
	// difference, naming the resource and the property that differs; none
	// when they agree. An error means the live state could not be read.
	// It changes nothing.
	Check(r Run) ([]string, error)
	// Apply makes the live state match the plan. It is idempotent: a second
	// Apply changes nothing.
	Apply(r Run) error
}

// Run is what a binary does once flags, environment and logging are wired.
type Run struct {
	Ctx    context.Context // cancelled on SIGTERM/SIGINT
	Log    *slog.Logger
	Env    Env
	DryRun bool // print the plan, change nothing
	Check  bool // verify the live state, change nothing
	Args   []string
	Stdout io.Writer
}

// Main runs a stage: it parses flags and environment, sets up logging and
// signals, makes the plan and prints, checks or applies it, and exits with the
// contract's code. It never returns.
func Main(s Stage) {
	os.Exit(MainArgs(s, os.Args[1:], OSEnv(), os.Stdout, os.Stderr))
}

// MainArgs is Main without the exit, for tests.
func MainArgs(s Stage, args []string, env Env, stdout, stderr io.Writer) int {
	return mainArgs(s.Spec, args, env, stdout, stderr, func(r Run) error { return Drive(s, r) })
}

// Drive makes the stage's plan and prints (r.DryRun), checks (r.Check) or
// applies it. A --check that finds differences prints each as "differs: ..."
// on r.Stdout and fails (exit 1) naming how many there are and the first.
func Drive(s Stage, r Run) error {
	p, err := s.Plan(r)
	if err != nil {
		return err
	}
	switch {
	case r.DryRun:
		return p.Print(r.Stdout)
	case r.Check:
		diffs, err := p.Check(r)
		if err != nil {
			return err
		}
		for _, d := range diffs {
			fmt.Fprintln(r.Stdout, "differs:", d)
		}
		if len(diffs) > 0 {
			places := "1 place"
			if len(diffs) > 1 {
				places = fmt.Sprintf("%d places", len(diffs))
			}
			return fmt.Errorf("the live state differs from the plan in %s (first: %s)", places, diffs[0])
		}
		fmt.Fprintf(r.Stdout, "%s: the live state matches the plan\n", s.Name)
		return nil
	}
	return p.Apply(r)
}

// mainArgs parses flags and environment, sets up logging and signals, calls
// run and returns the contract's exit code.
func mainArgs(spec Spec, args []string, env Env, stdout, stderr io.Writer, run func(Run) error) int {
	fs := flag.NewFlagSet(spec.Name, flag.ContinueOnError)
	// A bad flag is bad input like any other: one line naming it, exit 2 and
	// the termination log (below), not the flag package's usage dump.
	fs.SetOutput(io.Discard)
	dry := fs.Bool("dry-run", false, "print what would be done and change nothing")
	check := fs.Bool("check", false, "exit 0 only if the live state matches the plan; change nothing")
	if spec.Flags != nil {
		spec.Flags(fs)
	}
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			Usage(stdout, spec, fs)
			return ExitOK
		}
		return fail(spec.Name, env, stderr, BadInputf("flags", strings.Join(args, " "), "%v (see %s -h)", err, spec.Name))
	}
	if fs.NArg() > 0 {
		return fail(spec.Name, env, stderr, BadInputf("flags", strings.Join(args, " "), "unexpected argument %q: %s takes flags only (see %s -h)", fs.Arg(0), spec.Name, spec.Name))
	}

	logger, err := NewLogger(env, stderr)
	if err != nil {
		return fail(spec.Name, env, stderr, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	r := Run{Ctx: ctx, Log: logger, Env: env, DryRun: *dry, Check: *check, Args: fs.Args(), Stdout: stdout}
	if err := run(r); err != nil {
		return fail(spec.Name, env, stderr, err)
	}
	return ExitOK
}

// fail prints one line, writes the termination log and returns the exit code.
func fail(name string, env Env, stderr io.Writer, err error) int {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	kind := "error"
	if IsBadInput(err) {
		kind = "bad input"
	}
	fmt.Fprintf(stderr, "%s: %s: %s\n", name, kind, msg)
	WriteTerminationLog(env.String("TERMINATION_LOG", "/dev/termination-log"), fmt.Sprintf("%s: %s: %s", name, kind, msg))
	return ExitCode(err)
}

// WriteTerminationLog writes msg to path when the file exists or can be made
// (Kubernetes mounts /dev/termination-log); errors are ignored on purpose: the
// reason was already printed to stderr.
func WriteTerminationLog(path, msg string) {
	if path == "" {
		return
	}
	// Never through a symlink, and never blocking on a FIFO planted there.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.WriteString(f, msg+"\n")
}

// NewLogger builds the slog logger from LOG_FORMAT and LOG_LEVEL.
func NewLogger(env Env, w io.Writer) (*slog.Logger, error) {
	format, err := env.OneOf("LOG_FORMAT", "text", "text", "json")
	if err != nil {
		return nil, err
	}
	levelName, err := env.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error")
	if err != nil {
		return nil, err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(levelName))
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// Usage prints the help: summary, flags and the environment variables.
func Usage(w io.Writer, spec Spec, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s [flags]\n\n%s\n\nFlags:\n", spec.Name, spec.Summary)
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(w, "  --%-18s %s\n", f.Name, f.Usage)
	})
	fmt.Fprintf(w, "\nEnvironment:\n")
	for _, v := range append(append([]Var(nil), spec.Vars...), commonVars...) {
		def := ""
		if v.Default != "" {
			def = " (default " + v.Default + ")"
		}
		fmt.Fprintf(w, "  %-20s %s%s\n", v.Name, v.Help, def)
	}
	fmt.Fprintf(w, "\nExit codes: 0 done, 1 failure (retryable), 2 bad input.\n")
}
