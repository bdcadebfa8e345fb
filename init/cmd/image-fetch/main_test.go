package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stagetest"
)

// imageFetch is the real binary, built once for the package's tests.
var imageFetch = stagetest.NewBinary("image-fetch", ".")

func TestMain(m *testing.M) { stagetest.Main(m, imageFetch) }

// run runs bin with exactly env (and the test's PATH), as cred (nil: as the test).
func run(t *testing.T, bin string, env map[string]string, cred *syscall.Credential, args ...string) stagetest.Result {
	t.Helper()
	return stagetest.Run(t, bin, stagetest.Cmd{Env: env, Cred: cred, Args: args})
}

// qcow2Server serves a small qcow2 made by qemu-img and counts GETs.
func qcow2Server(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "guest.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", img, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	body, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			gets.Add(1)
			time.Sleep(100 * time.Millisecond) // concurrent runs overlap
		}
		http.ServeContent(w, r, "guest.qcow2", time.Unix(1e9, 0), bytes.NewReader(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &gets
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestBinaryBadInput: each bad input exits 2 with one line naming the variable,
// writes the termination log and creates nothing.
// Cases: IMG_SOURCE unset, empty, file://, ftp://, data:, s3://, a missing local
// path; IMG_TARGET "..", "/", hidden, a path; IMG_SHA256 not 64 hex; DISK_SIZE
// unparsable; an unknown flag.
func TestBinaryBadInput(t *testing.T) {
	bin := imageFetch.Path(t)
	tests := []struct {
		name, wantVar string
		env           map[string]string
		args          []string
	}{
		{"source unset", "IMG_SOURCE", nil, nil},
		{"source empty", "IMG_SOURCE", map[string]string{"IMG_SOURCE": ""}, nil},
		{"file scheme", "IMG_SOURCE", map[string]string{"IMG_SOURCE": "file:///etc/hostname"}, nil},
		{"ftp scheme", "IMG_SOURCE", map[string]string{"IMG_SOURCE": "ftp://h/x.qcow2"}, nil},
		{"data scheme", "IMG_SOURCE", map[string]string{"IMG_SOURCE": "data:,x"}, nil},
		{"s3 scheme", "IMG_SOURCE", map[string]string{"IMG_SOURCE": "s3://b/x.qcow2"}, nil},
		{"missing local", "IMG_SOURCE", map[string]string{"IMG_SOURCE": "/nonexistent/x.qcow2"}, nil},
		{"target dotdot", "IMG_TARGET", map[string]string{"IMG_SOURCE": "http://127.0.0.1:1/x.qcow2", "IMG_TARGET": ".."}, nil},
		{"target slash", "IMG_TARGET", map[string]string{"IMG_SOURCE": "http://127.0.0.1:1/x.qcow2", "IMG_TARGET": "/"}, nil},
		{"target hidden", "IMG_TARGET", map[string]string{"IMG_SOURCE": "http://127.0.0.1:1/x.qcow2", "IMG_TARGET": ".x"}, nil},
		{"target path", "IMG_TARGET", map[string]string{"IMG_SOURCE": "http://127.0.0.1:1/x.qcow2", "IMG_TARGET": "a/b"}, nil},
		{"sha", "IMG_SHA256", map[string]string{"IMG_SOURCE": "http://127.0.0.1:1/x.qcow2", "IMG_SHA256": "xyz"}, nil},
		{"size", "DISK_SIZE", map[string]string{"IMG_SOURCE": "http://127.0.0.1:1/x.qcow2", "DISK_SIZE": "lots"}, nil},
		{"flag", "", map[string]string{"IMG_SOURCE": "http://127.0.0.1:1/x.qcow2"}, []string{"--nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			env := map[string]string{"VM_NAME": "vm0", "IMAGE_DIR": stagetest.VolumeDir(t, dir, "images"),
				"DISK_DIR": stagetest.VolumeDir(t, dir, "disk"), "TERMINATION_LOG": filepath.Join(dir, "termination-log")}
			for k, v := range tt.env {
				env[k] = v
			}
			r := run(t, bin, env, nil, tt.args...)
			if r.Code != 2 {
				t.Fatalf("exit %d, want 2\n%s", r.Code, r.Stderr)
			}
			if tt.wantVar == "" {
				return
			}
			if strings.Count(r.Stderr, "\n") != 1 || !strings.Contains(r.Stderr, tt.wantVar+"=") {
				t.Errorf("stderr = %q, want one line naming %s", r.Stderr, tt.wantVar)
			}
			if b, _ := os.ReadFile(env["TERMINATION_LOG"]); !strings.Contains(string(b), tt.wantVar) {
				t.Errorf("termination log = %q", b)
			}
			// only the termination log beside the (empty) volume directories
			if names, imgs, disk := listDir(t, dir), listDir(t, env["IMAGE_DIR"]), listDir(t, env["DISK_DIR"]); len(names) != 3 || len(imgs)+len(disk) != 0 {
				t.Errorf("bad input created %v (images %v, disk %v)", names, imgs, disk)
			}
		})
	}
}

// TestBinaryHappyPath: download, overlay, a second run that downloads nothing,
// --dry-run that changes nothing, and two concurrent processes on a fresh
// target that download once (flock between processes).
func TestBinaryHappyPath(t *testing.T) {
	bin := imageFetch.Path(t)
	srv, gets := qcow2Server(t)
	dir := t.TempDir()
	env := map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": srv.URL + "/guest.qcow2",
		"IMAGE_DIR": stagetest.VolumeDir(t, dir, "images"), "DISK_DIR": stagetest.VolumeDir(t, dir, "disk"), "DISK_SIZE": "128Mi",
		"LOG_FORMAT": "json"}

	r := run(t, bin, env, nil, "--dry-run")
	if r.Code != 0 || !strings.Contains(r.Stdout, "base not cached") || !strings.Contains(r.Stdout, "guest.qcow2") {
		t.Fatalf("dry-run exit %d:\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if names := listDir(t, dir+"/images"); len(names) != 0 || gets.Load() != 0 {
		t.Fatalf("--dry-run changed something (images dir holds %v, %d GETs)", names, gets.Load())
	}

	if r := run(t, bin, env, nil); r.Code != 0 {
		t.Fatalf("exit %d\n%s", r.Code, r.Stderr)
	}
	for _, f := range []string{"images/guest.qcow2", "images/guest.qcow2.sha256", "disk/vm0.qcow2", "disk/vm0.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	if r := run(t, bin, map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": env["IMG_SOURCE"], "IMAGE_DIR": t.TempDir(), "DISK_DIR": t.TempDir()}, nil, "--check"); r.Code != 1 {
		t.Errorf("--check on an empty state: exit %d, want 1", r.Code)
	}
	sumOut, err := exec.Command("sh", "-c", "cd "+dir+"/images && sha256sum -c guest.qcow2.sha256").CombinedOutput()
	if err != nil {
		t.Errorf("sha256sum -c on the record: %v %s", err, sumOut)
	}
	if r := run(t, bin, env, nil); r.Code != 0 || gets.Load() != 1 {
		t.Fatalf("second run: exit %d, %d GETs (want 1)\n%s", r.Code, gets.Load(), r.Stderr)
	}
	if r := run(t, bin, env, nil, "--check"); r.Code != 0 || r.Stdout != "image-fetch: the live state matches the plan\n" {
		t.Errorf("--check on a done state: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	bigger := map[string]string{"DISK_SIZE": "1Gi"}
	for k, v := range env {
		if _, ok := bigger[k]; !ok {
			bigger[k] = v
		}
	}
	if r := run(t, bin, bigger, nil, "--check"); r.Code != 1 || !strings.HasPrefix(r.Stdout, "differs: ") || !strings.Contains(r.Stdout, "DISK_SIZE") {
		t.Errorf("--check with a larger DISK_SIZE: exit %d, want 1 and a difference naming DISK_SIZE\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = run(t, bin, env, nil, "--dry-run")
	if !strings.Contains(r.Stdout, "pet disk exists") || !strings.Contains(r.Stdout, "base cached") {
		t.Errorf("dry-run on a done state:\n%s", r.Stdout)
	}

	// Two processes, a fresh cache, one target.
	gets.Store(0)
	shared := stagetest.VolumeDir(t, t.TempDir(), "images")
	var wg sync.WaitGroup
	codes := make([]stagetest.Result, 2)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			e["IMAGE_DIR"] = shared
			e["VM_NAME"] = []string{"vm-a", "vm-b"}[i]
			codes[i] = run(t, bin, e, nil)
		}()
	}
	wg.Wait()
	for i, r := range codes {
		if r.Code != 0 {
			t.Errorf("concurrent run %d exit %d\n%s", i, r.Code, r.Stderr)
		}
	}
	if gets.Load() != 1 {
		t.Errorf("two concurrent processes made %d GETs, want 1", gets.Load())
	}
}

// TestBinaryPermissionDenied: run as uid 65534 (as in the pod) on an image dir
// it cannot write: exit 1 with a clear message, nothing in place.
func TestBinaryPermissionDenied(t *testing.T) {
	roottest.Require(t)
	bin := imageFetch.Path(t)
	srv, _ := qcow2Server(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir's parent is 0700
	os.Chmod(dir, 0o755)
	for _, d := range []string{"images", "disk"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(stagetest.VolumeDir(t, dir, "disk"), 65534, 65534)
	env := map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": srv.URL + "/guest.qcow2",
		"IMAGE_DIR": stagetest.VolumeDir(t, dir, "images"), "DISK_DIR": stagetest.VolumeDir(t, dir, "disk")}
	r := run(t, bin, env, &syscall.Credential{Uid: 65534, Gid: 65534})
	if r.Code != 1 || !strings.Contains(r.Stderr, "permission denied") {
		t.Fatalf("exit %d, want 1 with permission denied:\n%s", r.Code, r.Stderr)
	}
	if names := listDir(t, stagetest.VolumeDir(t, dir, "images")); len(names) != 0 {
		t.Errorf("left in the image dir: %v", names)
	}

	// Owned by 65534: works without root.
	os.Chown(stagetest.VolumeDir(t, dir, "images"), 65534, 65534)
	if r := run(t, bin, env, &syscall.Credential{Uid: 65534, Gid: 65534}); r.Code != 0 {
		t.Fatalf("as uid 65534 on its own dirs: exit %d\n%s", r.Code, r.Stderr)
	}
}

// TestBinaryWithoutQemuImg: no qemu-img in PATH is a clear error before any download.
func TestBinaryWithoutQemuImg(t *testing.T) {
	bin := imageFetch.Path(t)
	srv, gets := qcow2Server(t)
	dir := t.TempDir()
	r := run(t, bin, map[string]string{"PATH": t.TempDir(), "VM_NAME": "vm0", "IMG_SOURCE": srv.URL + "/guest.qcow2",
		"IMAGE_DIR": stagetest.VolumeDir(t, dir, "images"), "DISK_DIR": stagetest.VolumeDir(t, dir, "disk")}, nil)
	if r.Code != 1 || !strings.Contains(r.Stderr, "qemu-utils") {
		t.Fatalf("exit %d, want 1 naming qemu-utils:\n%s", r.Code, r.Stderr)
	}
	if gets.Load() != 0 {
		t.Errorf("downloaded without qemu-img")
	}
}
