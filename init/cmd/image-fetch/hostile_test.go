package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stagetest"
)

// Issue 15, "Hostile input": what another pod (or a person) can leave in the
// shared volumes, and what the environment can say. Each case runs the real
// binary against a real base and a real pet overlay made by the binary, and
// checks: the exit code, the message names the variable and the path, the
// termination message is written, nothing in the volumes changed (a tree
// snapshot: names, modes, owners, sizes, sha256, link targets) and the pet
// disk's bytes are the same.

// world is a pod's volumes after one successful image-fetch: the base cached
// in images/, the pet disk vm0.qcow2 (with data written into it) in disk/.
type world struct {
	root, images, disk, src, tl string
	env                         map[string]string
	cred                        *syscall.Credential
}

func (w world) pet() string     { return filepath.Join(w.disk, "vm0.qcow2") }
func (w world) base() string    { return filepath.Join(w.images, "base.qcow2") }
func (w world) part() string    { return filepath.Join(w.images, ".base.qcow2.part") }
func (w world) outside() string { return filepath.Join(w.root, "outside") }

// newWorld makes the volumes; cred != nil makes them as that uid (the
// binary runs as it).
func newWorld(t *testing.T, bin string, cred *syscall.Credential) world {
	t.Helper()
	root := t.TempDir()
	os.Chmod(filepath.Dir(root), 0o755) // t.TempDir's parent is 0700
	os.Chmod(root, 0o755)
	w := world{root: root, images: stagetest.VolumeDir(t, root, "images"), disk: stagetest.VolumeDir(t, root, "disk"),
		src: filepath.Join(root, "src", "base.qcow2"), tl: filepath.Join(root, "termination-log"), cred: cred}
	for _, d := range []string{w.images, w.disk, filepath.Dir(w.src)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if cred != nil {
			os.Chown(d, int(cred.Uid), int(cred.Gid))
		}
	}
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", w.src, "16M")
	os.Chmod(w.src, 0o644)
	if err := os.WriteFile(w.outside(), []byte("a file of someone else's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.env = map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": w.src, "IMAGE_DIR": w.images, "DISK_DIR": w.disk, "TERMINATION_LOG": w.tl}
	if r := run(t, bin, w.env, cred); r.Code != 0 {
		t.Fatalf("first run: exit %d\n%s", r.Code, r.Stderr)
	}
	// The guest's data: bytes only the pet disk holds.
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", w.pet()).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	return w
}

// uncache removes the cached base (as a corrupt base is removed): the next
// run copies IMG_SOURCE into the .part again, beside the existing pet disk.
func (w world) uncache(t *testing.T) {
	t.Helper()
	os.Remove(w.base())
	os.Remove(w.base() + ".sha256")
}

// expectRefused runs the binary and checks the refusal left everything as it was.
func (w world) expectRefused(t *testing.T, bin string, env map[string]string, wantCode int, wantInMsg ...string) {
	t.Helper()
	petBefore := ""
	if fi, err := os.Lstat(w.pet()); err == nil && fi.Mode().IsRegular() {
		petBefore = stagetest.FileSum(w.pet())
	}
	before := stagetest.Snapshot(t, w.images, w.disk, w.outside())
	// Kubernetes provides the termination log file; the binary only writes it.
	os.WriteFile(w.tl, nil, 0o644)
	os.Truncate(w.tl, 0)
	if w.cred != nil {
		os.Chown(w.tl, int(w.cred.Uid), int(w.cred.Gid))
	}
	r := run(t, bin, env, w.cred)
	if wantCode < 0 && r.Code == 0 || wantCode >= 0 && r.Code != wantCode {
		t.Errorf("exit %d, want %d\nstderr: %s", r.Code, wantCode, r.Stderr)
	}
	for _, s := range wantInMsg {
		if !strings.Contains(r.Stderr, s) {
			t.Errorf("message does not name %q:\n%s", s, r.Stderr)
		}
	}
	if tl, err := os.ReadFile(w.tl); err != nil || !strings.Contains(string(tl), "image-fetch: ") {
		t.Errorf("termination message not written: %q %v", tl, err)
	}
	if d := stagetest.DiffSnapshots(before, stagetest.Snapshot(t, w.images, w.disk, w.outside())); d != "" {
		t.Errorf("the volumes changed:\n%s", d)
	}
	if petBefore != "" && stagetest.FileSum(w.pet()) != petBefore {
		t.Errorf("the pet disk's bytes changed")
	}
}

type plant func(t *testing.T, w world, path string)

func symlinkTo(target func(world) string) plant {
	return func(t *testing.T, w world, path string) {
		os.Remove(path)
		if err := os.Symlink(target(w), path); err != nil {
			t.Fatal(err)
		}
	}
}

func fifo(t *testing.T, _ world, path string) {
	os.Remove(path)
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

func directory(t *testing.T, _ world, path string) {
	os.Remove(path)
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBinaryHostileFiles: a symlink (to the pet disk, to a file elsewhere), a
// FIFO or a directory where image-fetch keeps a file of its own, in IMAGE_DIR
// or DISK_DIR, in a pod whose base must be fetched again beside an existing
// pet disk. Before the fix a symlink at .<IMG_TARGET>.part made the copy
// overwrite the pet disk with the base (mode 0444), or any file it pointed at.
func TestBinaryHostileFiles(t *testing.T) {
	roottest.Require(t) // mkfifo, and the snapshot reads every file
	bin := imageFetch.Path(t)
	files := []struct {
		name, dirVar string
		path         func(world) string
	}{
		{".part", "IMAGE_DIR", world.part},
		{".part.meta", "IMAGE_DIR", func(w world) string { return w.part() + ".meta" }},
		{"base lock", "IMAGE_DIR", func(w world) string { return filepath.Join(w.images, ".base.qcow2.lock") }},
		{"base", "IMAGE_DIR", world.base},
		{"base record", "IMAGE_DIR", func(w world) string { return w.base() + ".sha256" }},
		{"disk lock", "DISK_DIR", func(w world) string { return filepath.Join(w.disk, ".vm0.lock") }},
		{"pet record", "DISK_DIR", func(w world) string { return filepath.Join(w.disk, "vm0.json") }},
		{"pet temp file", "DISK_DIR", func(w world) string { return filepath.Join(w.disk, ".vm0.qcow2.tmp") }},
		{"pet disk", "DISK_DIR", world.pet},
	}
	plants := []struct {
		name string
		do   plant
	}{
		{"symlink to the pet disk", symlinkTo(world.pet)},
		{"symlink to a file elsewhere", symlinkTo(world.outside)},
		{"dangling symlink", symlinkTo(func(w world) string { return filepath.Join(w.root, "nothing") })},
		{"FIFO", fifo},
		{"directory", directory},
	}
	for _, f := range files {
		for _, pl := range plants {
			t.Run(f.name+"/"+pl.name, func(t *testing.T) {
				w := newWorld(t, bin, nil)
				w.uncache(t)
				path := f.path(w)
				if path == w.pet() {
					// The pet disk itself replaced: move the real one away first
					// (kept outside, and in the snapshot through the link).
					os.Rename(w.pet(), w.outside())
				}
				pl.do(t, w, path)
				w.expectRefused(t, bin, w.env, 2, f.dirVar, path)
			})
		}
	}
}

// TestBinaryForeignFiles: a file of another uid, mode 0600, where image-fetch
// (running as uid 65534, as a pod without root) keeps its own: a clear error
// naming the path, no hang, the file left alone.
func TestBinaryForeignFiles(t *testing.T) {
	roottest.Require(t)
	bin := imageFetch.Path(t)
	cred := &syscall.Credential{Uid: 65534, Gid: 65534}
	for _, name := range []string{".base.qcow2.part", ".base.qcow2.part.meta", ".base.qcow2.lock", "base.qcow2.sha256"} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, bin, cred)
			w.uncache(t)
			path := filepath.Join(w.images, name)
			if err := os.WriteFile(path, []byte("root's\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chown(path, 0, 0)
			os.Chmod(path, 0o600)
			w.expectRefused(t, bin, w.env, -1, path)
		})
	}
	for _, name := range []string{".vm0.lock", "vm0.json", "vm0.qcow2"} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, bin, cred)
			path := filepath.Join(w.disk, name)
			if err := os.WriteFile(path, []byte("root's\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chown(path, 0, 0)
			os.Chmod(path, 0o600)
			w.expectRefused(t, bin, w.env, -1, path)
		})
	}
}

// TestBinaryHostileEnv: every variable image-fetch reads, malformed, out of
// range, injection-shaped or path-shaped: exit 2 naming it, the termination
// message, nothing changed.
func TestBinaryHostileEnv(t *testing.T) {
	roottest.Require(t)
	bin := imageFetch.Path(t)
	w := newWorld(t, bin, nil)
	imgLink := filepath.Join(w.root, "images-link")
	diskLink := filepath.Join(w.root, "disk-link")
	os.Symlink(w.images, imgLink)
	os.Symlink(w.disk, diskLink)
	notDir := w.outside()
	cases := []struct{ name, val string }{
		{"IMG_SOURCE", "relative/base.qcow2"},
		{"IMG_SOURCE", w.src + "/"},
		{"IMG_SOURCE", filepath.Dir(w.src) + "/../src/base.qcow2"},
		{"IMG_SOURCE", w.src + "\nx"},
		{"IMG_SOURCE", "--help"},
		{"IMG_SOURCE", "http://h/a b.qcow2"},
		{"IMG_SOURCE", "http://h/\u00e9.qcow2"},
		{"IMG_SOURCE", "file://" + w.src},
		{"IMG_SOURCE", filepath.Dir(w.src)},
		{"IMG_TARGET", "../x"},
		{"IMG_TARGET", "a\nb"},
		{"IMG_TARGET", "--x"},
		{"IMG_TARGET", "a b"},
		{"IMG_TARGET", "\u00e9.qcow2"},
		{"IMG_TARGET", ".hidden"},
		{"IMG_SHA256", strings.Repeat("a", 64) + "\n"},
		{"IMG_SHA256", " " + strings.Repeat("a", 64)},
		{"IMG_SHA256", strings.Repeat("g", 64)},
		{"IMAGE_DIR", "images"},
		{"IMAGE_DIR", w.images + "/"},
		{"IMAGE_DIR", w.images + "/../images"},
		{"IMAGE_DIR", w.images + "\n"},
		{"IMAGE_DIR", w.images + " x"},
		{"IMAGE_DIR", imgLink},
		{"IMAGE_DIR", notDir},
		{"DISK_DIR", "disk"},
		{"DISK_DIR", w.disk + "/"},
		{"DISK_DIR", w.disk + "/./"},
		{"DISK_DIR", "/\u00e9"},
		{"DISK_DIR", diskLink},
		{"DISK_DIR", notDir},
		{"DISK_SIZE", "16000000Ti"},
		{"DISK_SIZE", "2251799813685760"},
		{"DISK_SIZE", "1Gi\n"},
		{"DISK_SIZE", "-1"},
		{"DISK_SIZE", "1G"},
		{"DISK_SIZE", "1Mi"}, // smaller than the pet disk: never shrunk
		{"DISK_BLANK", "yes please"},
		{"DISK_BLANK", "true"}, // with IMG_SOURCE set
		{"CDROMS", "installer.iso"},
		{"CDROMS", `[{"source":"ftp://h/x.iso"}]`},
		{"CDROMS", `[{"source":"` + w.src + `"}]`}, // the base's own file name
		{"CDROMS", `[{"source":"/nonexistent.iso"}]`},
		{"CDROMS", `[{"source":"https://h/x.iso","sha256":"x"}]`},
		{"CDROMS", `[{"source":"https://h/x.iso","target":"../x.iso"}]`},
		{"VM_NAME", "../vm0"},
		{"VM_NAME", "vm0\n"},
		{"BERTH_RUN_DIR", "run"},
		{"BERTH_RUN_DIR", "/run/berth/"},
		{"LOG_FORMAT", "xml"},
		{"LOG_LEVEL", "--debug"},
	}
	for _, tc := range cases {
		t.Run(tc.name+"="+tc.val, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range w.env {
				env[k] = v
			}
			env[tc.name] = tc.val
			w.expectRefused(t, bin, env, 2, tc.name)
		})
	}
}

// TestBinaryUnoverlayableBase: a base no overlay can be made on (a qcow2 of
// 100 PiB, 2 MiB clusters) was cached forever and every start failed in
// qemu-img create. Now it is refused before it is cached (exit 2 naming
// IMG_SOURCE, the .part removed); one cached before is exit 2 naming
// IMG_TARGET; a DISK_SIZE smaller than a new base is refused before caching.
func TestBinaryUnoverlayableBase(t *testing.T) {
	bin := imageFetch.Path(t)
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.qcow2")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", huge, "100P")
	small := filepath.Join(dir, "small.qcow2")
	stagetest.QemuImg(t, "create", "-q", "-f", "qcow2", small, "64M")
	for _, tc := range []struct {
		name, src, size, wantVar string
		precached                bool
	}{
		{"100 PiB base", huge, "", "IMG_SOURCE", false},
		{"100 PiB base cached before", huge, "", "IMG_TARGET", true},
		{"DISK_SIZE below the base", small, "32Mi", "DISK_SIZE", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			images, disk, tl := stagetest.VolumeDir(t, d, "images"), stagetest.VolumeDir(t, d, "disk"), filepath.Join(d, "tl")
			os.MkdirAll(images, 0o755)
			target := filepath.Base(tc.src)
			if tc.precached {
				b, _ := os.ReadFile(tc.src)
				os.WriteFile(filepath.Join(images, target), b, 0o444)
				s := sha256.Sum256(b)
				os.WriteFile(filepath.Join(images, target+".sha256"), []byte(hex.EncodeToString(s[:])+"  "+target+"\n"), 0o644)
			}
			env := map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": tc.src, "IMAGE_DIR": images, "DISK_DIR": disk, "TERMINATION_LOG": tl}
			if tc.size != "" {
				env["DISK_SIZE"] = tc.size
			}
			for i := 0; i < 2; i++ { // and again: the same answer, not stuck in another way
				r := run(t, bin, env, nil)
				if r.Code != 2 || !strings.Contains(r.Stderr, tc.wantVar) {
					t.Fatalf("run %d: exit %d, want 2 naming %s:\n%s", i, r.Code, tc.wantVar, r.Stderr)
				}
				if b, _ := os.ReadFile(tl); !strings.Contains(string(b), tc.wantVar) {
					t.Errorf("termination message %q", b)
				}
				_, err := os.Stat(filepath.Join(images, target))
				if cached := err == nil; cached != tc.precached {
					t.Errorf("base cached: %v, want %v", cached, tc.precached)
				}
				if _, err := os.Stat(filepath.Join(images, "."+target+".part")); err == nil {
					t.Errorf("the .part is left")
				}
				if names := listDir(t, disk); len(names) > 1 { // the lock file only
					t.Errorf("DISK_DIR holds %v", names)
				}
			}
		})
	}
}

// TestBinaryRedactsURLs: a pre-signed URL's query (and a fragment) never
// shows: not in the logs (text and json), the error, the termination
// message, --dry-run, --check, nor the pet disk's record.
func TestBinaryRedactsURLs(t *testing.T) {
	bin := imageFetch.Path(t)
	srv, _ := qcow2Server(t)
	forbidden := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "signature expired", http.StatusForbidden)
	}))
	t.Cleanup(forbidden.Close)
	const secret = "SECRETSIG"
	for _, tc := range []struct {
		name, url string
		wantCode  int
		checkCode int // of --check after the run
	}{
		{"query, served", srv.URL + "/guest.qcow2?X-Amz-Signature=" + secret + "&X-Amz-Credential=" + secret, 0, 0},
		{"query and fragment, served", srv.URL + "/guest.qcow2?t=" + secret + "#" + secret, 0, 0},
		{"query, 403", forbidden.URL + "/guest.qcow2?X-Amz-Signature=" + secret, 2, 1}, // a 403 is permanent: exit 2 at once; nothing in place
		{"userinfo", "https://user:" + secret + "@h/guest.qcow2", 2, 2},
		{"bad URL with a query", "http://h/a b?sig=" + secret, 2, 2},
		{"no host", "http:///x?sig=" + secret, 2, 2},
	} {
		for _, format := range []string{"text", "json"} {
			t.Run(tc.name+"/"+format, func(t *testing.T) {
				dir := t.TempDir()
				env := map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": tc.url, "IMG_TARGET": "guest.qcow2",
					"IMAGE_DIR": stagetest.VolumeDir(t, dir, "images"), "DISK_DIR": stagetest.VolumeDir(t, dir, "disk"),
					"TERMINATION_LOG": filepath.Join(dir, "tl"), "LOG_FORMAT": format}
				dry := run(t, bin, env, nil, "--dry-run")
				r := run(t, bin, env, nil)
				if r.Code != tc.wantCode {
					t.Fatalf("exit %d, want %d:\n%s", r.Code, tc.wantCode, r.Stderr)
				}
				chk := run(t, bin, env, nil, "--check") // last: the termination log is its own
				if chk.Code != tc.checkCode {
					t.Errorf("--check exit %d, want %d:\n%s%s", chk.Code, tc.checkCode, chk.Stdout, chk.Stderr)
				}
				channels := map[string]string{"dry-run stdout": dry.Stdout, "dry-run stderr": dry.Stderr,
					"stdout": r.Stdout, "stderr": r.Stderr, "check stdout": chk.Stdout, "check stderr": chk.Stderr}
				filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
					if err == nil && d.Type().IsRegular() && !strings.HasSuffix(p, ".qcow2") {
						b, _ := os.ReadFile(p)
						channels[p] = string(b)
					}
					return nil
				})
				for ch, text := range channels {
					if strings.Contains(text, secret) {
						t.Errorf("%s holds the secret:\n%s", ch, text)
					}
				}
				if tc.wantCode == 0 {
					rec, _ := os.ReadFile(filepath.Join(dir, "disk", "vm0.json"))
					if !strings.Contains(string(rec), `"source": "`+srv.URL+"/guest.qcow2?REDACTED") {
						t.Errorf("the record does not keep the redacted source:\n%s", rec)
					}
				}
			})
		}
	}
}
