package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// build compiles the real binary once for the package's tests, into a temp
// directory readable by uid 65534 (the permission test runs it as that uid).
func build(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("BERTH_TEST_IMAGE_FETCH"); b != "" {
		return b // another build, e.g. an older one to see a regression test fail
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "image-fetch-bin-")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755)
		binPath = filepath.Join(dir, "image-fetch")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, bin string, env map[string]string, cred *syscall.Credential, args ...string) result {
	t.Helper()
	// A hung binary (a FIFO opened for reading blocks forever) is killed and
	// reported: generous, this is no timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s hung (killed after 3 minutes); stderr:\n%s", bin, se.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, so.String(), se.String()}
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
	bin := build(t)
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
			env := map[string]string{"VM_NAME": "vm0", "IMAGE_DIR": mkd(t, dir, "images"),
				"DISK_DIR": mkd(t, dir, "disk"), "TERMINATION_LOG": filepath.Join(dir, "termination-log")}
			for k, v := range tt.env {
				env[k] = v
			}
			r := run(t, bin, env, nil, tt.args...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2\n%s", r.code, r.stderr)
			}
			if tt.wantVar == "" {
				return
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tt.wantVar+"=") {
				t.Errorf("stderr = %q, want one line naming %s", r.stderr, tt.wantVar)
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
	bin := build(t)
	srv, gets := qcow2Server(t)
	dir := t.TempDir()
	env := map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": srv.URL + "/guest.qcow2",
		"IMAGE_DIR": mkd(t, dir, "images"), "DISK_DIR": mkd(t, dir, "disk"), "DISK_SIZE": "128Mi",
		"LOG_FORMAT": "json"}

	r := run(t, bin, env, nil, "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "base not cached") || !strings.Contains(r.stdout, "guest.qcow2") {
		t.Fatalf("dry-run exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if names := listDir(t, dir+"/images"); len(names) != 0 || gets.Load() != 0 {
		t.Fatalf("--dry-run changed something (images dir holds %v, %d GETs)", names, gets.Load())
	}

	if r := run(t, bin, env, nil); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, f := range []string{"images/guest.qcow2", "images/guest.qcow2.sha256", "disk/vm0.qcow2", "disk/vm0.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	if r := run(t, bin, map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": env["IMG_SOURCE"], "IMAGE_DIR": t.TempDir(), "DISK_DIR": t.TempDir()}, nil, "--check"); r.code != 1 {
		t.Errorf("--check on an empty state: exit %d, want 1", r.code)
	}
	sumOut, err := exec.Command("sh", "-c", "cd "+dir+"/images && sha256sum -c guest.qcow2.sha256").CombinedOutput()
	if err != nil {
		t.Errorf("sha256sum -c on the record: %v %s", err, sumOut)
	}
	if r := run(t, bin, env, nil); r.code != 0 || gets.Load() != 1 {
		t.Fatalf("second run: exit %d, %d GETs (want 1)\n%s", r.code, gets.Load(), r.stderr)
	}
	if r := run(t, bin, env, nil, "--check"); r.code != 0 || r.stdout != "image-fetch: the live state matches the plan\n" {
		t.Errorf("--check on a done state: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	bigger := map[string]string{"DISK_SIZE": "1Gi"}
	for k, v := range env {
		if _, ok := bigger[k]; !ok {
			bigger[k] = v
		}
	}
	if r := run(t, bin, bigger, nil, "--check"); r.code != 1 || !strings.HasPrefix(r.stdout, "differs: ") || !strings.Contains(r.stdout, "DISK_SIZE") {
		t.Errorf("--check with a larger DISK_SIZE: exit %d, want 1 and a difference naming DISK_SIZE\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, bin, env, nil, "--dry-run")
	if !strings.Contains(r.stdout, "pet disk exists") || !strings.Contains(r.stdout, "base cached") {
		t.Errorf("dry-run on a done state:\n%s", r.stdout)
	}

	// Two processes, a fresh cache, one target.
	gets.Store(0)
	shared := mkd(t, t.TempDir(), "images")
	var wg sync.WaitGroup
	codes := make([]result, 2)
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
		if r.code != 0 {
			t.Errorf("concurrent run %d exit %d\n%s", i, r.code, r.stderr)
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
	bin := build(t)
	srv, _ := qcow2Server(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir's parent is 0700
	os.Chmod(dir, 0o755)
	for _, d := range []string{"images", "disk"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chown(mkd(t, dir, "disk"), 65534, 65534)
	env := map[string]string{"VM_NAME": "vm0", "IMG_SOURCE": srv.URL + "/guest.qcow2",
		"IMAGE_DIR": mkd(t, dir, "images"), "DISK_DIR": mkd(t, dir, "disk")}
	r := run(t, bin, env, &syscall.Credential{Uid: 65534, Gid: 65534})
	if r.code != 1 || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("exit %d, want 1 with permission denied:\n%s", r.code, r.stderr)
	}
	if names := listDir(t, mkd(t, dir, "images")); len(names) != 0 {
		t.Errorf("left in the image dir: %v", names)
	}

	// Owned by 65534: works without root.
	os.Chown(mkd(t, dir, "images"), 65534, 65534)
	if r := run(t, bin, env, &syscall.Credential{Uid: 65534, Gid: 65534}); r.code != 0 {
		t.Fatalf("as uid 65534 on its own dirs: exit %d\n%s", r.code, r.stderr)
	}
}

// TestBinaryWithoutQemuImg: no qemu-img in PATH is a clear error before any download.
func TestBinaryWithoutQemuImg(t *testing.T) {
	bin := build(t)
	srv, gets := qcow2Server(t)
	dir := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + t.TempDir(), "VM_NAME=vm0", "IMG_SOURCE=" + srv.URL + "/guest.qcow2",
		"IMAGE_DIR=" + mkd(t, dir, "images"), "DISK_DIR=" + mkd(t, dir, "disk")}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "qemu-utils") {
		t.Fatalf("err = %v, want exit 1 naming qemu-utils:\n%s", err, out)
	}
	if gets.Load() != 0 {
		t.Errorf("downloaded without qemu-img")
	}
}

// mkd makes dir/name, a volume's mount point (no stage creates one), and returns it.
func mkd(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
