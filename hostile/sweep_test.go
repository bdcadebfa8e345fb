package hostile

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// baseline is what a valid run of a stage gives, for comparing an accepted
// hostile value with.
type baseline struct {
	net  map[string]string // net-setup: the portable network snapshot after apply, and run/
	qemu []string          // vmm: the shape of QEMU's command line (qemuShape)
	tap  string            // vmm: the tap QEMU's fd 3 is attached to
}

// TestSweep runs every stage x every variable its binary lists x every class
// that applies (classes.go), in dry-run and apply mode, each case in its own
// sandbox (and network namespace), and checks the invariants of
// docs/security.md, "Hostile input".
func TestSweep(t *testing.T) {
	requireSetup(t)
	for _, st := range stages {
		t.Run(st.Name, func(t *testing.T) {
			vars := st.Vars(t)
			base := validBaseline(t, st)
			t.Parallel()
			for _, v := range vars {
				for _, c := range For(v, KindOf(st.Name, v)) {
					t.Run(v+"/"+c.Name, func(t *testing.T) {
						t.Parallel()
						sweepCase(t, st, v, c, base)
					})
				}
			}
		})
	}
}

// newCase makes the sandbox of one case and takes a clean namespace from
// the stage's pool; done gives it back (or deletes it) with its last state.
func newCase(t *testing.T, st stageDef) (*sandbox, string, *pooled) {
	s := newSandbox(t, st)
	if st.Netns == "" {
		return s, "", nil
	}
	x := pools[st.Netns].get(t)
	t.Cleanup(func() {
		if !x.back {
			x.del() // the case ended early, or changed it on purpose
		}
	})
	return s, x.ns, x
}

// snapScript is the network snapshot a stage's cases take.
func (st stageDef) snapScript() string {
	if st.Netns == "" {
		return ""
	}
	return pools[st.Netns].script
}

// modes are the flags of each run of a case: --dry-run, then apply.
func (st stageDef) modes() [][]string {
	if st.Probe {
		return [][]string{nil}
	}
	return [][]string{{"--dry-run"}, nil}
}

func modeName(st stageDef, args []string) string {
	switch {
	case st.Probe:
		return "probe"
	case len(args) > 0:
		return "dry-run"
	}
	return "apply"
}

// validBaseline runs the stage with its valid environment; it must succeed
// (a probe live answers "no": no QEMU runs) and change nothing it would not.
func validBaseline(t *testing.T, st stageDef) baseline {
	t.Helper()
	s, ns, _ := newCase(t, st) // a valid run changes it: deleted at the end
	env := s.env(st)
	var b baseline
	for _, args := range st.modes() {
		o := s.run(t, st, env, args, ns)
		want := 0
		if st.Name == "vmm probe live" || st.Name == "vmm agent" { // no QEMU in the sandbox: not live, no agent
			want = 1
		}
		if o.code != want {
			t.Fatalf("valid baseline of %s (%s) exited %d, want %d:\n%s%s", st.Name, modeName(st, args), o.code, want, o.stdout, o.stderr)
		}
	}
	switch st.Name {
	case "net-setup":
		b.net = acceptedView(t, s, ns)
	case "vmm":
		argv, err := os.ReadFile(s.qrec)
		if err != nil {
			t.Fatalf("valid baseline of vmm: the fake QEMU was not run: %v", err)
		}
		b.qemu = qemuShape(string(argv))
		tap, _ := os.ReadFile(s.qrec + ".tap")
		if b.tap = strings.TrimSpace(string(tap)); b.tap != "tap0" {
			t.Fatalf("valid baseline of vmm: QEMU's fd 3 is attached to %q, want tap0", b.tap)
		}
	}
	return b
}

// acceptedView is net-setup's result as comparable between two namespaces.
func acceptedView(t *testing.T, s *sandbox, ns string) map[string]string {
	v := netSnapScript(t, ns, true, netScript)
	for k, d := range treeSnap(s.root) {
		if strings.HasPrefix(k, "run/") {
			v["file "+k] = d
		}
	}
	return v
}

// snap is the whole state a case may not change: the sandbox's files and,
// with a namespace, its network (net: a pooled namespace's known clean
// state instead of a new snapshot).
func (s *sandbox) snap(t *testing.T, ns, script string, net map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range treeSnap(s.root) {
		m["file "+k] = v
	}
	if ns != "" && net == nil {
		net = netSnapScript(t, ns, false, script)
	}
	for k, v := range net {
		m[k] = v
	}
	return m
}

// netPart is a snap's network entries.
func netPart(snap map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range snap {
		if !strings.HasPrefix(k, "file ") {
			m[k] = v
		}
	}
	return m
}

func sweepCase(t *testing.T, st stageDef, v string, c Class, base baseline) {
	s, ns, x := newCase(t, st)
	env := s.env(st)
	val := c.Value(Ctx{Valid: validOf(env, v), Root: s.root})
	env[v] = val
	id := caseID{stage: st.Name, v: v, class: c, value: strings.ReplaceAll(val, s.root, "$ROOT")}
	var clean map[string]string
	if x != nil {
		clean = x.clean
	}
	before := s.snap(t, ns, st.snapScript(), clean)
	for _, args := range st.modes() {
		mode := modeName(st, args)
		o := s.run(t, st, env, args, ns)
		problems := checkOutcome(st, v, c, o)
		after := s.snap(t, ns, st.snapScript(), nil)
		changed := diffSnap(before, after)
		if o.code == 0 && mode == "apply" {
			if why := ValidValue(v, c.Name); why != "" {
				t.Logf("accepted, as declared valid: %s", why)
			} else {
				b := base
				if ChangesShape(v) != "" {
					b.qemu = nil // not compared
				}
				problems = append(problems, checkAccepted(t, st, s, ns, changed, b)...)
			}
		} else if len(changed) > 0 {
			problems = append(problems, "changed: "+summary(changed))
		}
		if st.Name == "vmm" && o.code != 0 {
			if _, err := os.Stat(s.qrec); err == nil {
				problems = append(problems, "QEMU was started")
			}
		}
		for _, p := range problems {
			t.Errorf("%s", id.line(mode, p))
		}
		before = after
	}
	if x != nil {
		pools[st.Netns].put(x, netPart(before))
	}
}

// caseID names a case in a failure line.
type caseID struct {
	stage, v string
	class    Class
	value    string
}

// line is one failure: stage, variable, value (escaped, shortened), class, mode, what happened.
func (c caseID) line(mode, problem string) string {
	return fmt.Sprintf("HOSTILE %s %s=%s [%s] %s: %s", c.stage, c.v, short(c.value), c.class.Name, mode, problem)
}

func short(s string) string {
	q := strconv.Quote(s)
	if len(q) > 200 {
		q = q[:180] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return q
}

func summary(lines []string) string {
	if len(lines) > 3 {
		return strings.Join(lines[:3], "; ") + fmt.Sprintf("; and %d more", len(lines)-3)
	}
	return strings.Join(lines, "; ")
}

var badLine = regexp.MustCompile(`^(.*?): bad input: ([A-Za-z_][A-Za-z0-9_]*)=`)

// checkOutcome checks exit code, message and termination log of one run.
func checkOutcome(st stageDef, v string, c Class, o outcome) []string {
	var p []string
	if o.hung {
		return []string{fmt.Sprintf("hung: no exit within %s (killed)", RunTimeout)}
	}
	if strings.Contains(o.stderr, "panic:") || strings.Contains(o.stderr, "goroutine ") {
		p = append(p, "panicked: "+firstLine(o.stderr, "panic:"))
	}
	lines := ownLines(st, o.stderr)
	switch o.code {
	case 0:
	case 2:
		p = append(p, checkBadInputLine(st, v, lines, o)...)
	case 1:
		if why := ExitOneReason(st.Name, v, c.Name); why == "" {
			p = append(p, fmt.Sprintf("exit 1 (retryable) for a value that cannot work, want 2 naming %s: %s", v, short(last(lines, o.stderr))))
		}
	default:
		p = append(p, fmt.Sprintf("exit %d, want 0 or 2: %s", o.code, short(last(lines, o.stderr))))
	}
	if c.Secret != "" && (strings.Contains(o.stderr, c.Secret) || strings.Contains(o.stdout, c.Secret) || strings.Contains(o.tlog, c.Secret)) {
		p = append(p, fmt.Sprintf("the secret %q in the value is printed", c.Secret))
	}
	if st.Probe && o.tlogWritten {
		p = append(p, "a probe wrote the termination log")
	}
	return p
}

// ownLines are the stderr lines the stage prints itself ("<stage>: ..."),
// not its log lines.
func ownLines(st stageDef, stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, st.Name+": ") {
			out = append(out, l)
		}
	}
	return out
}

func checkBadInputLine(st stageDef, v string, lines []string, o outcome) []string {
	if len(lines) != 1 {
		return []string{fmt.Sprintf("exit 2 with %d lines %q on stderr, want exactly one naming %s: %s", len(lines), st.Name+": ", v, short(o.stderr))}
	}
	line := lines[0]
	var got string
	if st.Probe {
		// The probes' form: "vmm probe ready: bad input: VAR=...: what is allowed".
		if m := regexp.MustCompile(`^` + regexp.QuoteMeta(st.Name) + `: bad input: ([A-Z_][A-Z0-9_]*)=`).FindStringSubmatch(line); m != nil {
			got = m[1]
		}
	} else if m := badLine.FindStringSubmatch(line); m != nil && m[1] == st.Name {
		got = m[2]
	}
	var p []string
	switch {
	case got == "":
		p = append(p, fmt.Sprintf("exit 2 but the line is not %q naming a variable: %s", st.Name+": bad input: VAR=", short(line)))
	case !MayName(v, got):
		p = append(p, fmt.Sprintf("exit 2 naming %s, want %s: %s", got, v, short(line)))
	}
	if !st.Probe && v != "TERMINATION_LOG" {
		switch {
		case !o.tlogWritten:
			p = append(p, "exit 2 but no termination log written")
		case o.tlog != line+"\n":
			p = append(p, fmt.Sprintf("termination log %s differs from the stderr line", short(o.tlog)))
		}
	}
	return p
}

// checkAccepted: a hostile value was accepted in apply mode. It must have
// written only what the stage writes, never the pet disk or the canary, and
// (net-setup) built what the valid value builds, (vmm) run QEMU with the
// valid command line's shape.
func checkAccepted(t *testing.T, st stageDef, s *sandbox, ns string, changed []string, base baseline) []string {
	var p []string
	switch st.Name {
	case "net-setup":
		got := acceptedView(t, s, ns)
		if d := diffSnap(base.net, got); len(d) > 0 {
			p = append(p, "accepted, and the result differs from the valid value's: "+summary(d))
		}
	default:
		var bad []string
		for _, c := range changed {
			rel := diffKey(c)
			if !MayWrite(st.Name, rel) {
				bad = append(bad, c)
			}
		}
		if len(bad) > 0 {
			p = append(p, "accepted, and changed what the stage never writes: "+summary(bad))
		}
	}
	if st.Name == "vmm" {
		argv, err := os.ReadFile(s.qrec)
		switch {
		case err != nil:
			p = append(p, "exit 0 but QEMU was not run")
		case base.qemu != nil && strings.Join(qemuShape(string(argv)), " ") != strings.Join(base.qemu, " "):
			p = append(p, fmt.Sprintf("accepted, and QEMU's command line has another shape (option injection?): %s", short(firstDiff(qemuShape(string(argv)), base.qemu))))
		}
		if tap, _ := os.ReadFile(s.qrec + ".tap"); err == nil && strings.TrimSpace(string(tap)) != base.tap {
			p = append(p, fmt.Sprintf("accepted, and QEMU got a tap other than net-setup's %s: %q", base.tap, strings.TrimSpace(string(tap))))
		}
	}
	return p
}

// qemuShape reduces QEMU's argv (one argument a line) to its options and the
// keys of their key=value lists: a value that smuggles in ",file=..." adds a
// key; one that smuggles in a newline adds an argument.
func qemuShape(argv string) []string {
	var shape []string
	for _, a := range strings.Split(strings.TrimSuffix(argv, "\n"), "\n") {
		switch {
		case strings.HasPrefix(a, "-"):
			shape = append(shape, a)
		case strings.Contains(a, "="):
			var keys []string
			for _, kv := range splitOpts(a) {
				k, _, ok := strings.Cut(kv, "=")
				if !ok {
					k = "V" // a positional part: unix:<path>
				}
				keys = append(keys, k)
			}
			sort.Strings(keys)
			shape = append(shape, "{"+strings.Join(keys, ",")+"}")
		default:
			shape = append(shape, "V")
		}
	}
	return shape
}

// splitOpts splits a QEMU option list on commas; ",," is an escaped comma.
func splitOpts(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				cur.WriteString(",,")
				i++
				continue
			}
			out = append(out, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(s[i])
	}
	return append(out, cur.String())
}

// diffKey is the snapshot key a diffSnap line is about; a file's key
// without "file ".
func diffKey(d string) string {
	q, err := strconv.QuotedPrefix(d)
	if err != nil {
		return d
	}
	k, _ := strconv.Unquote(q)
	return strings.TrimPrefix(k, "file ")
}

func firstDiff(a, b []string) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return fmt.Sprintf("argument %d is %s, valid gives %s", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("%d arguments, valid gives %d", len(a), len(b))
}

func firstLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

func last(lines []string, stderr string) string {
	if len(lines) > 0 {
		return lines[len(lines)-1]
	}
	ls := strings.Split(strings.TrimSpace(stderr), "\n")
	return ls[len(ls)-1]
}
