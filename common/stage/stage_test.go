package stage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("boom"), 1},
		{BadInput("VM_IP", "x", "must be IPv4"), 2},
		{fmt.Errorf("plan: %w", BadInput("VM_IP", "x", "must be IPv4")), 2},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestEnvParsing(t *testing.T) {
	env := MapEnv(map[string]string{"B": "yes", "BADB": "maybe", "N": "4", "BADN": "4x", "BIG": "99", "E": ""})
	if b, err := env.Bool("B", false); err != nil || !b {
		t.Errorf("Bool(B) = %v, %v", b, err)
	}
	if _, err := env.Bool("BADB", false); !IsBadInput(err) || !strings.Contains(err.Error(), "BADB") {
		t.Errorf("Bool(BADB) err = %v, want bad input naming BADB", err)
	}
	if b, err := env.Bool("E", true); err != nil || !b {
		t.Errorf("empty var must take the default, got %v, %v", b, err)
	}
	if n, err := env.Int("N", 1, 1, 8); err != nil || n != 4 {
		t.Errorf("Int(N) = %d, %v", n, err)
	}
	for _, name := range []string{"BADN", "BIG"} {
		if _, err := env.Int(name, 1, 1, 8); !IsBadInput(err) {
			t.Errorf("Int(%s) err = %v, want bad input", name, err)
		}
	}
	if _, err := env.OneOf("B", "a", "a", "b"); !IsBadInput(err) {
		t.Errorf("OneOf accepted a value outside the list")
	}
}

func TestCheckVMName(t *testing.T) {
	for _, ok := range []string{"vm", "vm-0", "a", strings.Repeat("a", 63)} {
		if err := CheckVMName(ok); err != nil {
			t.Errorf("CheckVMName(%q) = %v", ok, err)
		}
	}
	// bad inputs tried: empty, too long, uppercase, path separators, dots, leading/trailing dash, spaces
	for _, bad := range []string{"", strings.Repeat("a", 64), "VM", "a/b", "..", "a.b", "-a", "a-", "a b"} {
		if err := CheckVMName(bad); !IsBadInput(err) {
			t.Errorf("CheckVMName(%q) = %v, want bad input", bad, err)
		}
	}
}

func TestMainArgsExitCodesAndTerminationLog(t *testing.T) {
	dir := t.TempDir()
	tlog := filepath.Join(dir, "termination-log")
	env := MapEnv(map[string]string{"TERMINATION_LOG": tlog})
	spec := Spec{Name: "x", Summary: "test", Vars: []Var{{Name: "FOO", Help: "foo"}}}

	var out, errb bytes.Buffer
	code := mainArgs(spec, nil, env, &out, &errb, func(Run) error { return BadInput("FOO", "bar", "must be baz") })
	if code != 2 {
		t.Fatalf("bad input exit = %d, want 2", code)
	}
	if got := strings.Count(errb.String(), "\n"); got != 1 {
		t.Errorf("want exactly one line on stderr, got %q", errb.String())
	}
	b, _ := os.ReadFile(tlog)
	if !strings.Contains(string(b), `FOO="bar": must be baz`) {
		t.Errorf("termination log = %q", b)
	}

	out.Reset()
	errb.Reset()
	if code := mainArgs(spec, []string{"-h"}, env, &out, &errb, nil); code != 0 {
		t.Fatalf("-h exit = %d", code)
	}
	if errb.Len() != 0 || strings.Count(out.String(), "Environment:") != 1 {
		t.Errorf("-h must print the usage once, on stdout; stdout %q, stderr %q", out.String(), errb.String())
	}
	for _, want := range []string{"FOO", "VM_NAME", "BERTH_RUN_DIR", "--dry-run", "LOG_FORMAT"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h output lacks %s:\n%s", want, out.String())
		}
	}

	if code := mainArgs(spec, nil, env, &out, &errb, func(Run) error { return errors.New("boom") }); code != 1 {
		t.Errorf("failure exit = %d, want 1", code)
	}
	for _, args := range [][]string{{"--nope"}, {"--dry-run", "extra"}} {
		errb.Reset()
		os.Remove(tlog)
		if code := mainArgs(spec, args, env, &out, &errb, func(Run) error { return nil }); code != 2 {
			t.Errorf("%q: exit = %d, want 2", args, code)
		}
		if lines := strings.Count(errb.String(), "\n"); lines != 1 || !strings.Contains(errb.String(), "flags=") {
			t.Errorf("%q: want one line naming the flags, got %q", args, errb.String())
		}
		if b, err := os.ReadFile(tlog); err != nil || !strings.Contains(string(b), args[len(args)-1]) {
			t.Errorf("%q: termination log %q %v", args, b, err)
		}
	}
	bad := MapEnv(map[string]string{"LOG_FORMAT": "xml", "TERMINATION_LOG": tlog})
	if code := mainArgs(spec, nil, bad, &out, &errb, func(Run) error { return nil }); code != 2 {
		t.Errorf("LOG_FORMAT=xml exit = %d, want 2", code)
	}
	var dry bool
	mainArgs(spec, []string{"--dry-run"}, env, &out, &errb, func(r Run) error { dry = r.DryRun; return nil })
	if !dry {
		t.Errorf("--dry-run not passed to run")
	}
}

func TestCheckPath(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"/var/lib/berth/images", true},
		{"/run/berth", true},
		{"/a/b-c_d.e+f@g~h", true},
		{"/tmp/TestX,_y_(z)1/001", true}, // t.TempDir of a subtest
		{"/a,b", true},                   // vmm escapes commas for QEMU
		{"/a'b", false},
		{"/a`b", false},
		{"/a\\b", false},
		{"", false},
		{"rel", false},
		{"./x", false},
		{"/a/", false},
		{"/a/../b", false},
		{"/a//b", false},
		{"/a/./b", false},
		{"/a b", false},
		{"/a\nb", false},
		{"/a\tb", false},
		{"/a\"b", false},
		{"/é", false},
		{"/a\x00b", false},
		{"/" + strings.Repeat("a", 1024), false},
	} {
		err := CheckPath("X_DIR", tc.v)
		if (err == nil) != tc.ok {
			t.Errorf("CheckPath(%q) = %v, want ok=%v", tc.v, err, tc.ok)
		}
		if err != nil && (!IsBadInput(err) || !strings.Contains(err.Error(), "X_DIR")) {
			t.Errorf("CheckPath(%q) = %v: want bad input naming X_DIR", tc.v, err)
		}
	}
}

func TestHostIPv4(t *testing.T) {
	for v, ok := range map[string]bool{
		"192.168.254.2": true, "10.244.7.5": true, "100.64.0.1": true,
		"127.0.0.1": false, "169.254.1.1": false, "224.0.0.1": false, "0.0.0.0": false, "0.1.2.3": false,
		"240.0.0.1": false, "255.255.255.255": false, "::1": false, "fe80::1": false, "10.0.0.2,x": false,
		" 10.0.0.2": false, "": false,
	} {
		_, err := MapEnv(map[string]string{"VM_IP": v}).HostIPv4("VM_IP", "192.168.254.2")
		if v == "" {
			continue // unset: the default
		}
		if (err == nil) != ok || (err != nil && !IsBadInput(err)) {
			t.Errorf("VM_IP=%q: %v, want ok=%v", v, err, ok)
		}
	}
}

// fakePlan records which of its methods Main called.
type fakePlan struct {
	called *[]string
	diffs  []string
}

func (p fakePlan) Print(w io.Writer) error {
	*p.called = append(*p.called, "print")
	_, err := io.WriteString(w, "the plan\n")
	return err
}
func (p fakePlan) Check(Run) ([]string, error) {
	*p.called = append(*p.called, "check")
	return p.diffs, nil
}
func (p fakePlan) Apply(Run) error { *p.called = append(*p.called, "apply"); return nil }

func TestMainDrivesTheStage(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		diffs    []string
		planErr  error
		want     string
		wantCode int
		wantOut  string
	}{
		{args: nil, want: "plan apply"},
		{args: []string{"--dry-run"}, want: "plan print", wantOut: "the plan\n"},
		{args: []string{"--check"}, want: "plan check", wantOut: "fake: the live state matches the plan\n"},
		{args: []string{"--check"}, diffs: []string{"a: b", "c: d"}, want: "plan check", wantCode: 1, wantOut: "differs: a: b\ndiffers: c: d\n"},
		{args: nil, planErr: BadInput("FOO", "x", "must be y"), want: "plan", wantCode: 2},
		{args: []string{"--check"}, planErr: BadInput("FOO", "x", "must be y"), want: "plan", wantCode: 2},
	} {
		var called []string
		s := Stage{Spec: Spec{Name: "fake", Summary: "a fake stage"}, Plan: func(Run) (Plan, error) {
			called = append(called, "plan")
			if tc.planErr != nil {
				return nil, tc.planErr
			}
			return fakePlan{called: &called, diffs: tc.diffs}, nil
		}}
		var out, errb bytes.Buffer
		env := MapEnv(map[string]string{"TERMINATION_LOG": filepath.Join(t.TempDir(), "tl")})
		code := MainArgs(s, tc.args, env, &out, &errb)
		if got := strings.Join(called, " "); got != tc.want || code != tc.wantCode {
			t.Errorf("%v: called %q exit %d, want %q exit %d (stderr %q)", tc.args, got, code, tc.want, tc.wantCode, errb.String())
		}
		if tc.wantOut != "" && out.String() != tc.wantOut {
			t.Errorf("%v: stdout %q, want %q", tc.args, out.String(), tc.wantOut)
		}
		if tc.diffs != nil && !strings.Contains(errb.String(), "differs from the plan in 2 places (first: a: b)") {
			t.Errorf("%v: stderr %q does not count the differences", tc.args, errb.String())
		}
	}
}
