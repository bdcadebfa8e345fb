package stagetest

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/roottest"
)

var envdump = NewBinary("envdump", "./testdata/envdump")

func TestMain(m *testing.M) { Main(m, envdump) }

// TestBinary builds a real main package once and runs it with exactly the
// environment given (and the test's PATH).
func TestBinary(t *testing.T) {
	if got := envdump.OverrideVar(); got != "BERTH_TEST_ENVDUMP" {
		t.Errorf("OverrideVar = %q", got)
	}
	p := envdump.Path(t)
	if envdump.Path(t) != p {
		t.Error("built twice")
	}
	if fi, err := os.Stat(filepath.Dir(p)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("build directory %v %v: other uids cannot run the binary", fi.Mode(), err)
	}
	r := envdump.Run(t, Cmd{Env: map[string]string{"A": "1"}})
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if r.Code != 3 || len(lines) != 2 || lines[0] != "PATH="+os.Getenv("PATH") && lines[1] != "PATH="+os.Getenv("PATH") || !strings.Contains(r.Stdout, "A=1\n") {
		t.Errorf("exit %d, environment:\n%s", r.Code, r.Stdout)
	}
	if r = envdump.Run(t, Cmd{Env: map[string]string{"PATH": "/nowhere"}}); strings.TrimSpace(r.Stdout) != "PATH=/nowhere" {
		t.Errorf("PATH set by Env: environment:\n%s", r.Stdout)
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	tl := filepath.Join(dir, "termination-log")
	tests := []struct {
		name   string
		script string
		cmd    Cmd
		want   Result
	}{
		{name: "exit code and output", script: `echo out; echo err >&2; exit 7`, want: Result{Code: 7, Stdout: "out\n", Stderr: "err\n"}},
		{name: "termination log", script: `echo "x: bad input" > "$TERMINATION_LOG"; exit 2`,
			cmd: Cmd{Env: map[string]string{"TERMINATION_LOG": tl}}, want: Result{Code: 2, TerminationLog: "x: bad input\n"}},
		{name: "working directory", script: `pwd`, cmd: Cmd{Dir: dir}, want: Result{Stdout: dir + "\n"}},
		{name: "hung", script: `echo started; exec sleep 60`, cmd: Cmd{Timeout: 300 * time.Millisecond, MayHang: true},
			want: Result{Code: -1, Hung: true, Stdout: "started\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cmd
			c.Args = []string{"-c", tt.script}
			r := Run(t, "/bin/sh", c)
			r.Elapsed = 0
			if r != tt.want {
				t.Errorf("got %+v, want %+v", r, tt.want)
			}
		})
	}
}

// TestRunAs runs a program as uid 65534.
func TestRunAs(t *testing.T) {
	roottest.Require(t)
	r := Run(t, "/bin/sh", Cmd{Args: []string{"-c", "id -u; id -g"}, Cred: &syscall.Credential{Uid: 65534, Gid: 65534}})
	if r.Code != 0 || r.Stdout != "65534\n65534\n" {
		t.Errorf("exit %d, ids %q", r.Code, r.Stdout)
	}
}

// TestSnapshot: every kind of change shows, and nothing else; a FIFO is
// listed without being opened (the walk would hang).
func TestSnapshot(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "a")
	write("b", "b")
	write("gone", "x")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	before := Snapshot(t, dir)
	if d := DiffSnapshots(before, Snapshot(t, dir)); d != "" {
		t.Fatalf("unchanged tree differs:\n%s", d)
	}
	write("a", "A")
	os.Chmod(filepath.Join(dir, "b"), 0o600)
	os.Remove(filepath.Join(dir, "gone"))
	os.Remove(filepath.Join(dir, "link"))
	os.Symlink("b", filepath.Join(dir, "link"))
	write("new", "n")
	d := DiffSnapshots(before, Snapshot(t, dir))
	var kinds []string
	for _, l := range strings.Split(d, "\n") {
		kind, rest, _ := strings.Cut(l, " ")
		name, _, _ := strings.Cut(strings.TrimPrefix(rest, dir+"/"), ":")
		kinds = append(kinds, kind+" "+name)
	}
	want := "changed a,changed b,changed link,created new,removed gone"
	if got := strings.Join(kinds, ","); got != want {
		t.Errorf("diff:\n%s\nwant %s", d, want)
	}
}
