package hostile

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestSharedVolumes plants, in turn, a symlink (to the pet disk, to the
// canary), a dangling symlink, a FIFO, a directory and a file of another
// owner (mode 0600) in place of every file of VolumeFiles, and runs the stage
// (dry-run, then apply): no hang, exit 2 naming the volume's variable (or 0
// where the file is declared replaced), the plant left as it was, the pet
// disk and the canary unchanged.
func TestSharedVolumes(t *testing.T) {
	requireSetup(t)
	for _, vf := range VolumeFiles {
		st := stageByName(vf.Stage)
		for _, plant := range Plants {
			if plant == "symlink-pet-disk" && vf.Rel == PetDisk {
				continue // the pet disk itself: the canary symlink covers it
			}
			t.Run(vf.Stage+"/"+vf.Rel+"/"+plant, func(t *testing.T) {
				t.Parallel()
				volumeCase(t, st, vf, plant)
			})
		}
	}
}

func volumeCase(t *testing.T, st stageDef, vf VolumeFile, plant string) {
	s, ns, _ := newCase(t, st) // planted in: never back to the pool
	// The pet disk the symlinks point at must exist even for the stage that
	// has none (net-setup): newSandbox made a stand-in.
	p := filepath.Join(s.root, vf.Rel)
	orig, _ := os.ReadFile(p)
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	switch plant {
	case "symlink-pet-disk":
		must(t, os.Symlink(filepath.Join(s.root, PetDisk), p))
	case "symlink-canary":
		must(t, os.Symlink(filepath.Join(s.root, Canary), p))
	case "dangling-symlink":
		must(t, os.Symlink(filepath.Join(s.root, "hostile/nowhere"), p))
	case "fifo":
		must(t, syscall.Mkfifo(p, 0o644))
	case "directory":
		must(t, os.Mkdir(p, 0o755))
		must(t, os.WriteFile(filepath.Join(p, "inside"), []byte("x\n"), 0o644))
	case "foreign-owner":
		if orig == nil {
			orig = []byte("another owner's file\n")
		}
		must(t, os.WriteFile(p, orig, 0o600))
		must(t, os.Chown(p, ForeignUID, ForeignUID))
	}
	env := s.env(st)
	id := caseID{stage: st.Name, v: vf.Var, class: Class{Name: "plant-" + plant + ":" + vf.Rel}, value: env[vf.Var]}
	id.value = strings.ReplaceAll(id.value, s.root, "$ROOT")
	before := s.snap(t, ns, st.snapScript(), nil)
	for _, args := range st.modes() {
		mode := modeName(st, args)
		o := s.run(t, st, env, args, ns)
		var problems []string
		why, replaced := vf.Replaced[plant]
		switch {
		case o.hung:
			problems = append(problems, "hung: no exit within "+RunTimeout.String()+" (killed)")
		case st.Probe && (o.code == 1 || o.code == 2):
			// not ready / bad input: both say no; the message is free
		case mode == "dry-run" && o.code == 0:
			// dry-run reads; it need not look at the file
		case o.code == 0 && replaced:
			t.Logf("replaced, as declared: %s", why)
		case o.code == 0 && vf.Idle[plant] != "":
			t.Logf("left alone, as declared: %s", vf.Idle[plant]) // and nothing may change: below
		case o.code == 2:
			problems = append(problems, checkBadInputLine(st, vf.Var, ownLines(st, o.stderr), o)...)
		default:
			problems = append(problems, "exit "+strconv.Itoa(o.code)+", want 2 naming "+vf.Var+" (a "+plant+" where Berth's own file is expected): "+short(last(ownLines(st, o.stderr), o.stderr)))
		}
		if strings.Contains(o.stderr, "panic:") {
			problems = append(problems, "panicked: "+firstLine(o.stderr, "panic:"))
		}
		if st.Probe && o.tlogWritten {
			problems = append(problems, "a probe wrote the termination log")
		}
		after := s.snap(t, ns, st.snapScript(), nil)
		var bad []string
		for _, d := range diffSnap(before, after) {
			rel := diffKey(d)
			switch {
			case o.code == 0 && mode == "apply" && rel == vf.Rel && replaced:
			case o.code == 0 && mode == "apply" && MayWrite(st.Name, rel) && rel != vf.Rel && rel != PetDisk:
			default:
				bad = append(bad, d)
			}
		}
		if len(bad) > 0 {
			problems = append(problems, "changed: "+summary(bad))
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
}
