package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stagetest"
)

// Issue 15, "Hostile input", for seed-iso: what can be left at
// $BERTH_RUN_DIR/seed.iso, what USERDATA and METADATA can point at, and what
// the environment can say. Each case checks the exit code, that the message
// names the variable (and the path), the termination message, and that
// nothing changed (a snapshot: names, modes, owners, sizes, sha256, link
// targets of the run dir, the inputs and a file outside).

type hostile struct {
	env                   map[string]string
	runDir, inDir, victim string
}

func newHostile(t *testing.T) hostile {
	t.Helper()
	env, runDir, inDir := podEnv(t)
	write(t, env["USERDATA"], "#cloud-config\n{}\n")
	write(t, env["METADATA"], "local-hostname: vm-0\n")
	victim := filepath.Join(inDir, "victim")
	write(t, victim, "someone else's file\n")
	return hostile{env: env, runDir: runDir, inDir: inDir, victim: victim}
}

// expectRefused runs seed-iso and checks it refused (wantCode, or any
// failure for -1) and changed nothing.
func (h hostile) expectRefused(t *testing.T, env map[string]string, wantCode int, cred *syscall.Credential, want ...string) {
	t.Helper()
	tl := env["TERMINATION_LOG"]
	os.WriteFile(tl, nil, 0o666)
	os.Truncate(tl, 0)
	if cred != nil {
		os.Chown(tl, int(cred.Uid), int(cred.Gid))
	}
	before := stagetest.Snapshot(t, h.runDir, h.inDir)
	var r stagetest.Result
	if cred != nil {
		r = runAs(t, env, cred)
	} else {
		r = runBinary(t, env)
	}
	if wantCode < 0 && r.Code == 0 || wantCode >= 0 && r.Code != wantCode {
		t.Errorf("exit %d, want %d\nstderr: %s", r.Code, wantCode, r.Stderr)
	}
	for _, s := range want {
		if !strings.Contains(r.Stderr, s) {
			t.Errorf("message does not name %q:\n%s", s, r.Stderr)
		}
	}
	if b, err := os.ReadFile(tl); err != nil || !strings.Contains(string(b), "seed-iso: ") {
		t.Errorf("termination message not written: %q %v", b, err)
	}
	// The termination log lives in inDir: leave it out of the comparison.
	after := stagetest.Snapshot(t, h.runDir, h.inDir)
	delete(before, tl)
	delete(after, tl)
	if d := stagetest.DiffSnapshots(before, after); d != "" {
		t.Errorf("changed:\n%s", d)
	}
}

// TestHostileOutput: a symlink (to a file elsewhere, dangling), a FIFO or a
// directory at $BERTH_RUN_DIR/seed.iso. Before the fix the FIFO hung seed-iso
// for ever (blocked in open, deaf to SIGTERM), and a symlink was read through.
func TestHostileOutput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, h hostile, path string)
	}{
		{"symlink elsewhere", func(t *testing.T, h hostile, p string) { os.Symlink(h.victim, p) }},
		{"dangling symlink", func(t *testing.T, h hostile, p string) { os.Symlink(filepath.Join(h.inDir, "none"), p) }},
		{"FIFO", func(t *testing.T, h hostile, p string) { syscall.Mkfifo(p, 0o644) }},
		{"directory", func(t *testing.T, h hostile, p string) { os.Mkdir(p, 0o755); write(t, filepath.Join(p, "x"), "x") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostile(t)
			path := filepath.Join(h.runDir, "seed.iso")
			tc.plant(t, h, path)
			h.expectRefused(t, h.env, 2, nil, "BERTH_RUN_DIR", path)
			h.expectRefused(t, h.env, 2, nil, "BERTH_RUN_DIR", path)
		})
	}
}

// TestHostileInputs: USERDATA and METADATA naming a FIFO (directly, through
// a symlink, as a ConfigMap key), a file over 16 MiB, a device.
func TestHostileInputs(t *testing.T) {
	for _, v := range []string{"USERDATA", "METADATA"} {
		for _, tc := range []struct {
			name  string
			plant func(t *testing.T, h hostile) string // returns the value of v
		}{
			{"FIFO", func(t *testing.T, h hostile) string {
				p := filepath.Join(h.inDir, "fifo")
				syscall.Mkfifo(p, 0o644)
				return p
			}},
			{"symlink to a FIFO", func(t *testing.T, h hostile) string {
				p := filepath.Join(h.inDir, "fifo")
				syscall.Mkfifo(p, 0o644)
				os.Symlink(p, filepath.Join(h.inDir, "link"))
				return filepath.Join(h.inDir, "link")
			}},
			{"ConfigMap key a FIFO", func(t *testing.T, h hostile) string {
				d := filepath.Join(h.inDir, "cm")
				os.Mkdir(d, 0o755)
				syscall.Mkfifo(filepath.Join(d, "only-key"), 0o644)
				return d
			}},
			{"20 MiB", func(t *testing.T, h hostile) string {
				p := filepath.Join(h.inDir, "big")
				write(t, p, "")
				os.Truncate(p, 20<<20)
				return p
			}},
			{"device", func(t *testing.T, h hostile) string { return "/dev/zero" }},
		} {
			t.Run(v+"/"+tc.name, func(t *testing.T) {
				h := newHostile(t)
				env := map[string]string{}
				for k, x := range h.env {
					env[k] = x
				}
				env[v] = tc.plant(t, h)
				h.expectRefused(t, env, 2, nil, v)
			})
		}
	}
}

// TestHostileEnv: each variable malformed or path-shaped: exit 2 naming it.
func TestHostileEnv(t *testing.T) {
	h := newHostile(t)
	link := filepath.Join(h.inDir, "run-link")
	os.Symlink(h.runDir, link)
	for _, tc := range []struct{ name, val string }{
		{"USERDATA", "userdata"},
		{"USERDATA", h.env["USERDATA"] + "/"},
		{"USERDATA", h.inDir + "/../x/userdata"},
		{"USERDATA", h.env["USERDATA"] + "\n"},
		{"USERDATA", h.env["USERDATA"] + " x"},
		{"METADATA", "--metadata"},
		{"METADATA", "/m\u00e9ta"},
		{"BERTH_RUN_DIR", "run"},
		{"BERTH_RUN_DIR", h.runDir + "/"},
		{"BERTH_RUN_DIR", h.runDir + "/."},
		{"BERTH_RUN_DIR", h.runDir + "\n"},
		{"BERTH_RUN_DIR", link},
		{"SEED_FORMAT", "nocloud "},
		{"SEED_FORMAT", "--nocloud"},
		{"SSH_AUTHORIZED_KEYS", key + "\nnot a key"},
		{"SSH_AUTHORIZED_KEYS", key + "\rcommand=\"x\""},
		{"VM_NAME", "vm-0\n"},
		{"VM_NAME", "VM"},
		{"LOG_FORMAT", "xml"},
	} {
		t.Run(tc.name+"="+tc.val, func(t *testing.T) {
			env := map[string]string{}
			for k, x := range h.env {
				env[k] = x
			}
			env[tc.name] = tc.val
			h.expectRefused(t, env, 2, nil, tc.name)
		})
	}
}

// TestHostileForeignOutput: seed.iso of another uid, mode 0600, with seed-iso
// running as uid 65534: a clear error naming it, the file left alone.
func TestHostileForeignOutput(t *testing.T) {
	roottest.Require(t)
	h := newHostile(t)
	for _, d := range []string{filepath.Dir(h.runDir), h.runDir, filepath.Dir(h.inDir), h.inDir} {
		os.Chmod(d, 0o755)
	}
	os.Chown(h.runDir, 65534, 65534)
	path := filepath.Join(h.runDir, "seed.iso")
	write(t, path, "root's seed\n")
	os.Chmod(path, 0o600)
	h.expectRefused(t, h.env, -1, &syscall.Credential{Uid: 65534, Gid: 65534}, path)
}
