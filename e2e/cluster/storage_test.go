//go:build e2e

package cluster

// TestStorage proves the cluster's dynamic storage (ci/cluster/up step 7, docs/cluster.md
// "Storage") with plain pods, no Berth: a Filesystem PVC of class berth-csi is provisioned and
// mounted root-owned 0755 with fsGroup ignored (the CSIDriver's fsGroupPolicy None), grows after
// the PVC is edited, and a Block PVC's device can be opened by uid 107 (containerd's
// device_ownership_from_security_context) and grows while the pod runs. Deleting the claims
// deletes the volumes' files and leaves no loop device. Run alone:
//
//	cd e2e && GOWORK=off go test -tags e2e -count=1 -v -run TestStorage ./cluster/
//
// It needs the cluster up and the e2e toolbox image imported (ci/e2e/toolbox-image.sh).

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-vm/berth/e2e/internal/kube"
	"github.com/berth-vm/berth/e2e/internal/wait"
)

var (
	storageImage     = flag.String("storage-image", "localhost/berth/e2e-toolbox:0.1.0", "an image with busybox (stat, df, dd, blockdev) for TestStorage's pods")
	storageVolumeDir = flag.String("storage-volume-dir", "/var/lib/berth-cluster/csi/volumes", "where the cluster's CSI driver keeps its volumes' files")
)

const (
	storageNS    = "berth-e2e-storage"
	storageClass = "berth-csi"
	qemuUID      = 107 // the uid QEMU runs as in Berth's pod
)

type storage struct {
	k    *kube.Cluster
	logf wait.Logf
}

func TestStorage(t *testing.T) {
	k, err := kube.Connect(cfg.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	s := storage{k: k, logf: t.Logf}
	s.freshNamespace(t)
	k.DiagnoseOnFailure(t, storageNS)
	t.Run("filesystem", s.filesystem)
	t.Run("block", s.block)
}

func (s storage) freshNamespace(t *testing.T) {
	ctx := t.Context()
	ns := s.k.Client.CoreV1().Namespaces()
	if err := ns.Delete(ctx, storageNS, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if _, err := wait.For(ctx, "namespace "+storageNS+" gone", 120*time.Second, time.Second, s.logf, func(ctx context.Context) (bool, string, error) {
		_, err := ns.Get(ctx, storageNS, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err), nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: storageNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = ns.Delete(context.Background(), storageNS, metav1.DeleteOptions{})
		}
	})
}

// filesystem: a Filesystem volume as a cloud block volume arrives, and its growth.
func (s storage) filesystem(t *testing.T) {
	ctx := t.Context()
	claim := s.claim(t, "fs", corev1.PersistentVolumeFilesystem, "64Mi")
	pod := s.pod(t, "fs", claim, corev1.PersistentVolumeFilesystem)
	file := s.volumeFile(t, claim, "ext4")

	// fsGroup 107 is ignored (fsGroupPolicy None): the root stays root's, 0755, not writable by 107.
	if got := s.exec(t, pod, "stat", "-c", "%u %g %a", "/data"); got != "0 0 755" {
		t.Errorf("volume root: %q, want \"0 0 755\" (root-owned 0755, fsGroup ignored)", got)
	}
	if got := s.exec(t, pod, "ls", "/data"); got != "lost+found" {
		t.Errorf("volume root holds %q, want lost+found only (mkfs.ext4's defaults)", got)
	}
	if out, err := s.k.Exec(ctx, storageNS, pod, "c", "touch", "/data/x"); err == nil {
		t.Errorf("uid %d wrote the volume's root (%q): fsGroup was applied", qemuUID, out)
	}
	before := s.dfBytes(t, pod, "/data")
	if before < 50<<20 || before > 64<<20 {
		t.Errorf("df /data: %d bytes for a 64Mi claim", before)
	}

	s.resize(t, claim, "128Mi")
	// Online growth needs CAP_SYS_RESOURCE on the node (resize2fs of a mounted ext4); where the
	// node lacks it (this CI sandbox), the driver says so and grows the filesystem at the next
	// publish, so the pod is recreated.
	online := nodeHasSysResource(t)
	if !online {
		s.waitEvent(t, "CAP_SYS_RESOURCE")
		t.Log("the node lacks CAP_SYS_RESOURCE: ext4 cannot grow while mounted; recreating the pod")
		s.deletePod(t, pod)
		pod = s.pod(t, "fs", claim, corev1.PersistentVolumeFilesystem)
	}
	// ext4 grown by 64 MiB is ~60 MiB larger (the new block groups' inode tables and bitmaps)
	if _, err := wait.For(ctx, "df /data in the pod 56 MiB larger", 180*time.Second, 2*time.Second, s.logf, func(ctx context.Context) (bool, string, error) {
		n := s.dfBytes(t, pod, "/data")
		return n >= before+56<<20, fmt.Sprintf("%d bytes (before: %d)", n, before), nil
	}); err != nil {
		t.Fatal(err)
	}
	s.waitClaimCapacity(t, claim, "128Mi")
	t.Logf("df /data: %d bytes before, %d after growth (online: %t)", before, s.dfBytes(t, pod, "/data"), online)

	s.deleteAll(t, pod, claim, file)
}

// block: a Block volume's device for uid 107, grown while the pod runs.
func (s storage) block(t *testing.T) {
	claim := s.claim(t, "block", corev1.PersistentVolumeBlock, "32Mi")
	pod := s.pod(t, "block", claim, corev1.PersistentVolumeBlock)
	file := s.volumeFile(t, claim, "block")

	if got := s.exec(t, pod, "stat", "-c", "%u %g %F", "/dev/xvda"); got != fmt.Sprintf("%d %d block special file", qemuUID, qemuUID) {
		t.Errorf("device in the pod: %q, want owned by %d:%d (device_ownership_from_security_context)", got, qemuUID, qemuUID)
	}
	s.exec(t, pod, "dd", "if=/dev/zero", "of=/dev/xvda", "bs=4096", "count=16", "conv=fsync")
	s.exec(t, pod, "dd", "if=/dev/xvda", "of=/dev/null", "bs=4096", "count=16")
	if got := s.exec(t, pod, "blockdev", "--getsize64", "/dev/xvda"); got != strconv.Itoa(32<<20) {
		t.Errorf("device size %s, want %d", got, 32<<20)
	}

	s.resize(t, claim, "64Mi")
	if _, err := wait.For(t.Context(), "the device in the running pod at 64 MiB", 180*time.Second, 2*time.Second, s.logf, func(ctx context.Context) (bool, string, error) {
		got := s.exec(t, pod, "blockdev", "--getsize64", "/dev/xvda")
		return got == strconv.Itoa(64<<20), got + " bytes", nil
	}); err != nil {
		t.Fatal(err)
	}
	s.waitClaimCapacity(t, claim, "64Mi")

	s.deleteAll(t, pod, claim, file)
}

func (s storage) claim(t *testing.T, name string, mode corev1.PersistentVolumeMode, size string) string {
	class := storageClass
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			VolumeMode:       &mode,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	if _, err := s.k.Client.CoreV1().PersistentVolumeClaims(storageNS).Create(t.Context(), pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// pod runs busybox as uid/gid 107 with fsGroup 107 on the claim: at /data (Filesystem) or as
// /dev/xvda (Block); it waits until the pod is Ready.
func (s storage) pod(t *testing.T, name, claim string, mode corev1.PersistentVolumeMode) string {
	uid := int64(qemuUID)
	no := false
	c := corev1.Container{
		Name: "c", Image: *storageImage, ImagePullPolicy: corev1.PullNever,
		Command: []string{"sleep", "3600"},
		SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
	}
	if mode == corev1.PersistentVolumeBlock {
		c.VolumeDevices = []corev1.VolumeDevice{{Name: "v", DevicePath: "/dev/xvda"}}
	} else {
		c.VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/data"}}
	}
	grace := int64(1)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			SecurityContext:               &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &uid},
			Containers:                    []corev1.Container{c},
			Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}},
		},
	}
	if _, err := s.k.Client.CoreV1().Pods(storageNS).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.k.WaitPod(t.Context(), storageNS, name, "pod "+name+" Ready", 180*time.Second, s.logf, func(p *corev1.Pod) (bool, string) {
		if p == nil {
			return false, "no pod"
		}
		return kube.Ready(p), string(p.Status.Phase)
	}); err != nil {
		t.Fatal(err)
	}
	return name
}

// volumeFile is the driver's file behind the claim's PV: <volume dir>/<volume handle>.<kind>.
func (s storage) volumeFile(t *testing.T, claim, kind string) string {
	pvc, err := s.k.Client.CoreV1().PersistentVolumeClaims(storageNS).Get(t.Context(), claim, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv, err := s.k.Client.CoreV1().PersistentVolumes().Get(t.Context(), pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != "csi.berth.dev" {
		t.Fatalf("PV %s is not of the driver csi.berth.dev: %+v", pv.Name, pv.Spec.PersistentVolumeSource)
	}
	file := filepath.Join(*storageVolumeDir, pv.Spec.CSI.VolumeHandle+"."+kind)
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the volume's file: %v", err)
	}
	if dev := loopOf(t, file); dev == "" {
		t.Errorf("%s has no loop device while the pod uses it", file)
	}
	return file
}

func (s storage) exec(t *testing.T, pod string, cmd ...string) string {
	t.Helper()
	out, err := s.k.Exec(t.Context(), storageNS, pod, "c", cmd...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// dfBytes is the filesystem's size as df in the pod reports it.
func (s storage) dfBytes(t *testing.T, pod, path string) int64 {
	t.Helper()
	lines := strings.Split(s.exec(t, pod, "df", "-k", path), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 2 {
		t.Fatalf("df -k %s: %q", path, lines)
	}
	kb, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatalf("df -k %s: %q", path, lines)
	}
	return kb << 10
}

func (s storage) resize(t *testing.T, claim, size string) {
	patch := fmt.Sprintf(`{"spec":{"resources":{"requests":{"storage":%q}}}}`, size)
	if _, err := s.k.Client.CoreV1().PersistentVolumeClaims(storageNS).Patch(t.Context(), claim, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (s storage) waitClaimCapacity(t *testing.T, claim, size string) {
	want := resource.MustParse(size)
	if _, err := wait.For(t.Context(), "claim "+claim+" at "+size, 120*time.Second, time.Second, s.logf, func(ctx context.Context) (bool, string, error) {
		pvc, err := s.k.Client.CoreV1().PersistentVolumeClaims(storageNS).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		got := pvc.Status.Capacity[corev1.ResourceStorage]
		return got.Cmp(want) == 0, fmt.Sprintf("capacity %s, conditions %v", got.String(), pvc.Status.Conditions), nil
	}); err != nil {
		t.Fatal(err)
	}
}

// waitEvent waits for an event in the namespace (the kubelet's about the pod or the claim)
// whose message holds text.
func (s storage) waitEvent(t *testing.T, text string) {
	if _, err := wait.For(t.Context(), "an event naming "+text, 120*time.Second, 2*time.Second, s.logf, func(ctx context.Context) (bool, string, error) {
		evs, err := s.k.Client.CoreV1().Events(storageNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		var seen []string
		for _, e := range evs.Items {
			if strings.Contains(e.Message, text) {
				return true, e.Message, nil
			}
			seen = append(seen, e.InvolvedObject.Name+":"+e.Reason)
		}
		return false, fmt.Sprint(seen), nil
	}); err != nil {
		t.Fatal(err)
	}
}

func (s storage) deletePod(t *testing.T, pod string) {
	if _, err := s.k.DeletePod(t.Context(), storageNS, pod, 120*time.Second, s.logf); err != nil {
		t.Fatal(err)
	}
}

// deleteAll deletes the pod and the claim; reclaim policy Delete removes the PV and the
// driver the file, and no loop device is left on it.
func (s storage) deleteAll(t *testing.T, pod, claim, file string) {
	ctx := t.Context()
	s.deletePod(t, pod)
	if err := s.k.Client.CoreV1().PersistentVolumeClaims(storageNS).Delete(ctx, claim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := wait.For(ctx, "the volume's file "+file+" deleted", 120*time.Second, time.Second, s.logf, func(ctx context.Context) (bool, string, error) {
		_, err := os.Stat(file)
		return os.IsNotExist(err), fmt.Sprint(err), nil
	}); err != nil {
		t.Fatal(err)
	}
	if dev := loopOf(t, file); dev != "" {
		t.Errorf("loop device %s still on the deleted %s", dev, file)
	}
}

// loopOf is the loop device whose backing file is file ("" when none), from the kernel's record.
func loopOf(t *testing.T, file string) string {
	t.Helper()
	paths, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err == nil && strings.TrimSpace(string(b)) == file {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(p)))
		}
	}
	return ""
}

// nodeHasSysResource: the node is this machine (ci/cluster's processes run here); ext4's online
// resize needs CAP_SYS_RESOURCE in the bounding set.
func nodeHasSysResource(t *testing.T) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return caps&(1<<24) != 0
		}
	}
	t.Fatal("no CapBnd in /proc/self/status")
	return false
}
