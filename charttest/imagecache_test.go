package charttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// requireRoot is common/roottest.Require (charttest is a module of its own): skip unless root,
// fail instead with BERTH_REQUIRE_ROOT=1.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BERTH_REQUIRE_ROOT") == "1" {
		t.Fatal("this test needs root, and BERTH_REQUIRE_ROOT=1 forbids skipping it")
	}
	t.Skip("needs root (set BERTH_REQUIRE_ROOT=1 to make this a failure)")
}

func owner(t *testing.T, p string) (uid, gid uint32, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode()
}

// TestImageCacheStepOwnsOnlyItsOwnDirectory runs the image-cache init container's exact rendered
// command, as root, on an existing directory that stands for the node's imageCache.hostPath (an
// /etc-like directory: root's, with a file in it). The kubelet gives that container the volume's
// subPath berth-images: it makes berth-images (root, 0750) when missing and bind-mounts it at the
// mount path; here the mount path is that directory. Only berth-images may change owner.
func TestImageCacheStepOwnsOnlyItsOwnDirectory(t *testing.T) {
	requireRoot(t)
	s := sts(t, render(t, oneVM+"    imageCache: {hostPath: /srv/berth}\n"), "vm1")
	c := container(t, s, "image-cache")
	var mount corev1.VolumeMount
	for _, m := range c.VolumeMounts {
		if m.Name == "images" {
			mount = m
		}
	}
	if mount.SubPath != "berth-images" {
		t.Errorf("image-cache mounts the images volume with subPath %q, want berth-images", mount.SubPath)
	}
	host := t.TempDir() // the node's imageCache.hostPath, existing, not Berth's
	if err := os.Chmod(host, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "passwd"), []byte("root:x:0:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(host, mount.SubPath) // no subPath: the mount is the user's directory
	run := func() {
		t.Helper()
		// what the kubelet does for a missing subPath (doSafeMakeDir: mkdirat, fchmod 0750)
		if _, err := os.Lstat(sub); mount.SubPath != "" && os.IsNotExist(err) {
			if err := os.Mkdir(sub, 0o750); err != nil {
				t.Fatal(err)
			}
		}
		args := append(append([]string(nil), c.Command...), c.Args...)
		for i, a := range args {
			if a == mount.MountPath || strings.HasPrefix(a, mount.MountPath+"/") {
				args[i] = sub + strings.TrimPrefix(a, mount.MountPath)
			}
		}
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run()
	run() // a restarted pod: the same again, nothing else changes
	if uid, gid, mode := owner(t, host); uid != 0 || gid != 0 || mode.Perm() != 0o755 {
		t.Errorf("the user's directory is now %d:%d %v: Berth re-owned a directory it did not make", uid, gid, mode)
	}
	if uid, gid, mode := owner(t, filepath.Join(host, "berth-images")); uid != 107 || gid != 107 || mode.Perm() != 0o755 || !mode.IsDir() {
		t.Errorf("berth-images: %d:%d %v, want 107:107 drwxr-xr-x", uid, gid, mode)
	}
	if uid, _, mode := owner(t, filepath.Join(host, "passwd")); uid != 0 || mode.Perm() != 0o644 {
		t.Errorf("a file beside the cache changed: %d %v", uid, mode)
	}
}
