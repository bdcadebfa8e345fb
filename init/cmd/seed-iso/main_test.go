package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stagetest"
	"github.com/berth-vm/berth/init/seed"
	"github.com/berth-vm/berth/init/seed/isowrite"
)

// End-to-end tests of the real binary: built once with CGO_ENABLED=0 as
// `make build` does, run with an environment like the pod's.

const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGa6A/W5z66HynjJfgmVsBpkHQfLUPqSK+A4fMxqoFYT test@berth"

// seedISO is the real binary, built once for the package's tests.
var seedISO = stagetest.NewBinary("seed-iso", ".")

func TestMain(m *testing.M) { stagetest.Main(m, seedISO) }

func runBinary(t *testing.T, env map[string]string, args ...string) stagetest.Result {
	t.Helper()
	return runAs(t, env, nil, args...)
}

// runAs runs the binary with exactly env (and the test's PATH) as cred (nil:
// as the test).
func runAs(t *testing.T, env map[string]string, cred *syscall.Credential, args ...string) stagetest.Result {
	t.Helper()
	return seedISO.Run(t, stagetest.Cmd{Env: env, Cred: cred, Args: args})
}

// podEnv is an environment with its own run dir and inputs directory.
func podEnv(t *testing.T) (map[string]string, string, string) {
	t.Helper()
	runDir := t.TempDir()
	inDir := t.TempDir()
	return map[string]string{
		"VM_NAME":         "vm-0",
		"BERTH_RUN_DIR":   runDir,
		"USERDATA":        filepath.Join(inDir, "userdata"),
		"METADATA":        filepath.Join(inDir, "metadata"),
		"TERMINATION_LOG": filepath.Join(inDir, "termination-log"),
	}, runDir, inDir
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBadInputExitsTwo(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, env map[string]string)
		want  string
	}{
		{"unknown SEED_FORMAT", func(t *testing.T, env map[string]string) { env["SEED_FORMAT"] = "iso9660" }, "SEED_FORMAT="},
		{"bad VM_NAME", func(t *testing.T, env map[string]string) { env["VM_NAME"] = "Not_A_Label" }, "VM_NAME="},
		{"invalid cloud-config", func(t *testing.T, env map[string]string) {
			write(t, env["USERDATA"], "#cloud-config\nusers:\n  - name: a\n   shell: /bin/sh\n")
		}, "line 4, column 4"},
		{"meta-data not a mapping", func(t *testing.T, env map[string]string) { write(t, env["METADATA"], "- a\n") }, "METADATA="},
		{"ambiguous ConfigMap directory", func(t *testing.T, env map[string]string) {
			write(t, filepath.Join(env["USERDATA"], "a"), "1")
			write(t, filepath.Join(env["USERDATA"], "b"), "2")
			write(t, filepath.Join(env["USERDATA"], "..data", "user-data"), "hidden")
		}, "found 2: a, b"},
		{"user-data over 16 MiB", func(t *testing.T, env map[string]string) {
			f, err := os.Create(env["USERDATA"])
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.Truncate(seed.MaxInputSize + 1)
		}, "16 MiB"},
		{"malformed SSH key", func(t *testing.T, env map[string]string) {
			env["SSH_AUTHORIZED_KEYS"] = "# team\n" + key + "\nssh-rsa AAAA\n"
		}, "line 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, runDir, inDir := podEnv(t)
			tt.setup(t, env)
			r := runBinary(t, env)
			if r.Code != 2 {
				t.Fatalf("exit %d, want 2\nstderr: %s", r.Code, r.Stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "seed-iso: bad input: ") || !strings.Contains(lines[0], tt.want) {
				t.Errorf("stderr %q: want one bad-input line with %q", r.Stderr, tt.want)
			}
			if entries, _ := os.ReadDir(runDir); len(entries) != 0 {
				t.Errorf("run dir not empty after bad input: %v", entries)
			}
			tl, _ := os.ReadFile(filepath.Join(inDir, "termination-log"))
			if !strings.Contains(string(tl), tt.want) {
				t.Errorf("termination log %q lacks %q", tl, tt.want)
			}
		})
	}
}

func TestHappyPath(t *testing.T) {
	env, runDir, _ := podEnv(t)
	// a ConfigMap-shaped directory for user-data, a plain file for meta-data
	cm := env["USERDATA"]
	write(t, filepath.Join(cm, "..2026_11_25_10_00_00.1", "user-data"), "#cloud-config\nruncmd:\n  - [touch, /tmp/ok]\n")
	os.Symlink("..2026_11_25_10_00_00.1", filepath.Join(cm, "..data"))
	os.Symlink("..data/user-data", filepath.Join(cm, "user-data"))
	write(t, env["METADATA"], "local-hostname: web-0\n")
	env["SSH_AUTHORIZED_KEYS"] = key + "\n"

	// --dry-run prints the plan and writes nothing
	r := runBinary(t, env, "--dry-run")
	if r.Code != 0 {
		t.Fatalf("--dry-run exit %d: %s", r.Code, r.Stderr)
	}
	for _, w := range []string{"config-2", seed.InstanceID("vm-0"), "web-0", "/openstack/latest/meta_data.json", "/openstack/latest/user_data", "ssh keys:    1"} {
		if !strings.Contains(r.Stdout, w) {
			t.Errorf("--dry-run output lacks %q:\n%s", w, r.Stdout)
		}
	}
	if entries, _ := os.ReadDir(runDir); len(entries) != 0 {
		t.Fatalf("--dry-run wrote %v", entries)
	}

	r = runBinary(t, env)
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	out := filepath.Join(runDir, "seed.iso")
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := isowrite.Label(img); err != nil || l != "config-2" {
		t.Errorf("label %q, %v", l, err)
	}
	if !strings.Contains(r.Stderr, "changed=true") {
		t.Errorf("first run log: %s", r.Stderr)
	}
	before, _ := os.Stat(out)

	// --check agrees, and disagrees once the file is changed
	if r = runBinary(t, env, "--check"); r.Code != 0 || r.Stdout != "seed-iso: the live state matches the plan\n" {
		t.Errorf("--check after a run: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r = runBinary(t, map[string]string{"VM_NAME": "vm-1", "BERTH_RUN_DIR": runDir, "USERDATA": env["USERDATA"], "METADATA": env["METADATA"]}, "--check"); r.Code != 1 ||
		!strings.HasPrefix(r.Stdout, "differs: "+out+" differs from the seed the inputs give") {
		t.Errorf("--check with another VM_NAME: exit %d, want 1 and the difference: %s%s", r.Code, r.Stdout, r.Stderr)
	}

	// a re-run (the pod restarted) leaves the identical file alone
	r = runBinary(t, env)
	if r.Code != 0 || !strings.Contains(r.Stderr, "changed=false") {
		t.Fatalf("re-run: exit %d: %s", r.Code, r.Stderr)
	}
	after, _ := os.Stat(out)
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Error("re-run replaced seed.iso")
	}

	// NoCloud from the same input
	env["SEED_FORMAT"] = "nocloud"
	if r = runBinary(t, env); r.Code != 0 {
		t.Fatalf("nocloud: exit %d: %s", r.Code, r.Stderr)
	}
	img, _ = os.ReadFile(out)
	if l, _ := isowrite.Label(img); l != "cidata" {
		t.Errorf("nocloud label %q", l)
	}
	if entries, _ := os.ReadDir(runDir); len(entries) != 1 {
		t.Errorf("run dir holds %v, want only seed.iso", entries)
	}
}

func TestHelpListsVariables(t *testing.T) {
	r := runBinary(t, nil, "-h")
	if r.Code != 0 {
		t.Fatalf("-h exit %d", r.Code)
	}
	for _, v := range []string{"USERDATA", "METADATA", "SSH_AUTHORIZED_KEYS", "SEED_FORMAT", "BERTH_RUN_DIR", "VM_NAME"} {
		if !strings.Contains(r.Stdout, v) {
			t.Errorf("-h lacks %s", v)
		}
	}
}

// TestRunsAsNonRoot runs the binary as uid 65534: it needs nothing but
// read access to its inputs and write access to the run dir; an unwritable
// run dir is a retryable failure (exit 1), not bad input.
func TestRunsAsNonRoot(t *testing.T) {
	roottest.Require(t)
	env, runDir, inDir := podEnv(t)
	for _, d := range []string{filepath.Dir(runDir), filepath.Dir(inDir), inDir} {
		os.Chmod(d, 0o755)
	}
	write(t, env["USERDATA"], "#!/bin/sh\necho hi\n")
	if err := os.Chown(runDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	env["TERMINATION_LOG"] = ""
	asNobody := func(env map[string]string) stagetest.Result {
		return runAs(t, env, &syscall.Credential{Uid: 65534, Gid: 65534})
	}
	if r := asNobody(env); r.Code != 0 {
		t.Fatalf("as uid 65534: exit %d: %s", r.Code, r.Stderr)
	}
	fi, err := os.Stat(filepath.Join(runDir, "seed.iso"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 {
		t.Errorf("seed.iso owned by %d", st.Uid)
	}

	locked := t.TempDir()
	os.Chmod(filepath.Dir(locked), 0o755)
	env["BERTH_RUN_DIR"] = locked // root's, mode 0755: not writable for 65534
	if r := asNobody(env); r.Code != 1 {
		t.Errorf("unwritable run dir: exit %d, want 1: %s", r.Code, r.Stderr)
	}
}
