//go:build e2e

// Package chaos is Berth under faults on the real single-node cluster
// (ci/cluster/up): four download faults (no guest boots for them), then four
// guest faults in sequence on one long-lived VM, each followed by the check
// of what must hold afterwards (docs/reliability.md). ci/chaos/run.sh brings
// the cluster, the images, the served directory and the paced file server
// pod up and runs this with flags; the release "chaos" (its VM vm1) is left
// running for TestBadInput and TestLeastPrivilege (-good-pod), which watch it
// as their good VM.
package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/e2e/internal/guest"
	"github.com/berth-vm/berth/e2e/internal/helm"
	"github.com/berth-vm/berth/e2e/internal/kube"
	"github.com/berth-vm/berth/e2e/internal/node"
	"github.com/berth-vm/berth/e2e/internal/phase"
	"github.com/berth-vm/berth/e2e/internal/wait"
)

const (
	target = "berth-testguest.qcow2" // vm1's image target
	vm1Pod = "chaos-vm1-0"
	mib    = 1 << 20
)

// run is the state the faults hand on.
type run struct {
	cfg     *config
	k       *kube.Cluster
	helm    helm.Runner
	ssh     guest.SSH
	ctrd    node.Containerd
	timings phase.Timer
	pubKey  string

	guestSize          int64
	guestSHA, otherSHA string

	faults, dataChecks int

	// the long-lived VM
	ip, dataSHA, boot string
	uid               types.UID
	pet, petID        string
	vmRestarts        int32
}

type fault struct {
	name  string
	check func(r *run, t *testing.T)
}

var faults = []fault{
	{"download-interrupted", (*run).downloadInterrupted},
	{"concurrent-download", (*run).concurrentDownload},
	{"image-changed", (*run).imageChanged},
	{"image-volume-full", (*run).imageVolumeFull},
	{"boot-vm1", (*run).bootVM1},
	{"kubelet-restart", (*run).kubeletRestart},
	{"dnsmasq-kill", (*run).dnsmasqKill},
	{"qemu-kill", (*run).qemuKill},
	{"guest-poweroff", (*run).guestPowerOff},
}

// TestFaults injects the faults in order; the first failing one ends the test.
func TestFaults(t *testing.T) {
	r := newRun(t)
	r.k.DiagnoseOnFailure(t, r.cfg.namespace)
	var run []phase.Step
	for _, f := range faults {
		run = append(run, phase.Step{Name: f.name, Run: func(t *testing.T) { f.check(r, t) }})
	}
	phase.RunSteps(t, &r.timings, run)
	summary := fmt.Sprintf("Faults survived: %d of %d. Data checks after a fault: %d, data lost: 0.", r.faults, 8, r.dataChecks)
	if r.faults != 8 {
		t.Errorf("%d faults checked, want 8", r.faults)
	}
	if err := os.WriteFile(filepath.Join(r.cfg.out, "faults.txt"), []byte(summary+"\n"), 0o644); err != nil {
		t.Error(err)
	}
	t.Log(summary)
}

func newRun(t *testing.T) *run {
	c := cfg
	for name, v := range map[string]string{"ssh-key": c.sshKey, "fileserver-url": c.fileserverURL, "srv": c.srv, "caches": c.caches} {
		if v == "" {
			t.Fatalf("-%s is required", name)
		}
	}
	k, err := kube.Connect(c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(c.sshKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	r := &run{
		cfg:     c,
		k:       k,
		helm:    helm.Runner{Path: c.helm, Kubeconfig: c.kubeconfig},
		ssh:     guest.SSH{Key: c.sshKey, NetNS: c.nodeNetNS},
		ctrd:    node.Containerd{Ctr: c.ctr, Address: c.containerd},
		timings: phase.Timer{Suite: "faults", File: filepath.Join(c.out, "timings.tsv"), Logf: t.Logf},
		pubKey:  strings.TrimSpace(string(pub)),
	}
	st, err := os.Stat(filepath.Join(c.srv, "guest.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	r.guestSize = st.Size()
	r.guestSHA = fileSHA(t, filepath.Join(c.srv, "guest.qcow2"))
	r.otherSHA = fileSHA(t, filepath.Join(c.srv, "other.qcow2"))
	t.Logf("file server at %s paced to %s/s; the guest is %d bytes, sha256 %s", c.fileserverURL, c.rate, r.guestSize, r.guestSHA)
	return r
}

// result is one row of results.tsv: fault, what was checked, PASS, seconds.
func (r *run) result(t *testing.T, name, checked string) {
	t.Helper()
	r.faults++
	f, err := os.OpenFile(filepath.Join(r.cfg.out, "results.tsv"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s\t%s\tPASS\t%.0f\n", name, checked, r.timings.Elapsed().Seconds()); err != nil {
		t.Fatal(err)
	}
	t.Logf("PASS: %s (%s)", name, checked)
}

// --- values ---------------------------------------------------------------------------------

// vmValues is one vms.<name> entry: 2 vCPU, 1Gi, 4Gi disk, shutdownTimeout 30, a hostPath
// cache, the run's SSH key; noBoot: accel kvm, which makes vmm exit 2 here (KVM does not work),
// so no guest boots.
func (r *run) vmValues(url, tgt, cache, sha string, noBoot bool) map[string]any {
	img := map[string]any{"source": url, "target": tgt}
	if sha != "" {
		img["sha256"] = sha
	}
	v := map[string]any{
		"image": img, "cpus": 2, "memory": "1Gi", "diskSize": "4Gi", "class_name": "berth-local",
		"imageCache":        map[string]any{"mode": "hostPath", "hostPath": cache},
		"shutdownTimeout":   30,
		"sshAuthorizedKeys": []string{r.pubKey},
		"userData":          "#cloud-config\nmanage_etc_hosts: true\n",
	}
	if noBoot {
		v["accel"] = "kvm"
	}
	return v
}

func (r *run) writeValues(t *testing.T, name string, vms map[string]any) string {
	t.Helper()
	b, err := yaml.Marshal(map[string]any{"vms": vms})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func (r *run) helmRun(t *testing.T, args ...string) {
	t.Helper()
	if _, err := r.helm.Run(t.Context(), args...); err != nil {
		t.Fatal(err)
	}
}

// --- pods and containers ----------------------------------------------------------------------

func (r *run) getPod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	p, err := r.k.Client.CoreV1().Pods(r.cfg.namespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitContainer waits until the container's status satisfies cond.
func (r *run) waitContainer(t *testing.T, pod, container, what string, timeout time.Duration, cond func(corev1.ContainerStatus) bool) corev1.ContainerStatus {
	t.Helper()
	var st corev1.ContainerStatus
	_, err := r.k.WaitPod(t.Context(), r.cfg.namespace, pod, pod+"/"+container+": "+what, timeout, t.Logf, func(p *corev1.Pod) (bool, string) {
		if p == nil {
			return false, "no pod"
		}
		s, ok := kube.ContainerStatus(p, container)
		if !ok {
			return false, "no status yet"
		}
		st = s
		return cond(s), fmt.Sprintf("restarts %d, state %s, last %s", s.RestartCount, brief(s.State), brief(s.LastTerminationState))
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func brief(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Waiting != nil:
		return "waiting " + s.Waiting.Reason
	case s.Terminated != nil:
		return fmt.Sprintf("exit %d", s.Terminated.ExitCode)
	}
	return "-"
}

// succeeded: the container's current state is a termination with exit 0.
func succeeded(s corev1.ContainerStatus) bool {
	return s.State.Terminated != nil && s.State.Terminated.ExitCode == 0
}

// lastOrCurrent is the last termination, else the current one (nil: none).
func lastOrCurrent(s corev1.ContainerStatus) *corev1.ContainerStateTerminated {
	if s.LastTerminationState.Terminated != nil {
		return s.LastTerminationState.Terminated
	}
	return s.State.Terminated
}

func exitedWith(code int32) func(corev1.ContainerStatus) bool {
	return func(s corev1.ContainerStatus) bool {
		t := lastOrCurrent(s)
		return t != nil && t.ExitCode == code
	}
}

// newPod waits until pod exists again with another uid than old.
func (r *run) newPod(t *testing.T, pod string, old types.UID, timeout time.Duration) {
	t.Helper()
	if _, err := r.k.WaitPod(t.Context(), r.cfg.namespace, pod, pod+": a new pod", timeout, t.Logf, func(p *corev1.Pod) (bool, string) {
		return p != nil && p.UID != old, "old or none"
	}); err != nil {
		t.Fatal(err)
	}
}

func (r *run) deletePod(t *testing.T, pod string, timeout time.Duration) types.UID {
	t.Helper()
	uid, err := r.k.DeletePod(t.Context(), r.cfg.namespace, pod, timeout, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func (r *run) logs(t *testing.T, pod string, opts corev1.PodLogOptions) string {
	t.Helper()
	s, err := r.k.Logs(t.Context(), r.cfg.namespace, pod, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// served are the file server's log lines of requests for path.
func (r *run) served(t *testing.T, path string) []string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(r.logs(t, r.cfg.fileserver, corev1.PodLogOptions{}), "\n") {
		if strings.Contains(l, " path="+path+" ") {
			lines = append(lines, l)
		}
	}
	return lines
}

func count(lines []string, substr string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// pvDir is the host directory of the pet disk behind the pod's disk PVC: Berth's own directory
// `berth` of the PV (the chart's subPath; the PV's root is root's and never re-owned).
func (r *run) pvDir(t *testing.T, pod string) string {
	t.Helper()
	p := r.getPod(t, pod)
	claims := kube.ClaimNames(p)
	if len(claims) == 0 {
		t.Fatalf("pod %s mounts no PVC", pod)
	}
	pvc, err := r.k.Client.CoreV1().PersistentVolumeClaims(r.cfg.namespace).Get(t.Context(), claims[0], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	root, err := r.k.VolumeRoot(t.Context(), pvc.Spec.VolumeName, filepath.Join(cfg.clusterDir, "kubelet"), string(p.UID))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "berth")
}

// --- files on the node --------------------------------------------------------------------------

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("sha256 of %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func size(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// recordSHA is the sha256 field of a pet disk record (NAME.json).
func recordSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("pet disk record %s: %v", path, err)
	}
	return rec.SHA256
}

// serve makes the file server's name serve the file from (atomically, as a new hard link).
func (r *run) serve(t *testing.T, name, from string) {
	t.Helper()
	tmp := filepath.Join(r.cfg.srv, name+".new")
	_ = os.Remove(tmp)
	if err := os.Link(filepath.Join(r.cfg.srv, from), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(r.cfg.srv, name)); err != nil {
		t.Fatal(err)
	}
}

// underCacheLock runs f holding the flock(2) image-fetch takes on lock (a
// download, its check and its discard all happen under it), waiting up to
// bound: image-fetch's own fsutil.LockFile.
func underCacheLock(t *testing.T, lock string, bound time.Duration, f func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()
	l, err := fsutil.LockFile(ctx, slog.New(slog.NewTextHandler(t.Output(), nil)), lock, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("the cache's lock (%s): %v", bound, err)
	}
	defer l.Unlock()
	f()
}

func listDir(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var names []string
	for _, e := range ents {
		info, _ := e.Info()
		if info != nil {
			names = append(names, fmt.Sprintf("%s (%d bytes)", e.Name(), info.Size()))
		}
	}
	return strings.Join(names, ", ")
}

// poll runs check every interval until done returns true, for at most timeout.
func poll(t *testing.T, what string, timeout, interval time.Duration, done func() bool) {
	t.Helper()
	if _, err := wait.For(t.Context(), what, timeout, interval, nil, func(context.Context) (bool, string, error) {
		return done(), "not yet", nil
	}); err != nil {
		t.Fatal(err)
	}
}

// --- the download faults (no guest boots for them) ------------------------------------------

// The pod deleted during the image download: the new pod continues the partial file (Range
// from where the old one stopped); the cache never holds anything but the verified image.
func (r *run) downloadInterrupted(t *testing.T) {
	cache := filepath.Join(r.cfg.caches, "vm1")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	values := r.writeValues(t, "vm1", map[string]any{"vm1": r.vmValues(r.cfg.fileserverURL+"/guest.qcow2", target, cache, "", false)})
	r.helmRun(t, "install", "chaos", r.cfg.chart, "-n", r.cfg.namespace, "-f", values)
	dir := filepath.Join(cache, "berth-images")
	base, part := filepath.Join(dir, target), filepath.Join(dir, "."+target+".part")
	// The target name only ever holds the whole, verified image (checked at every poll).
	checkCache := func() {
		t.Helper()
		if st, err := os.Stat(base); err == nil && st.Size() != r.guestSize {
			t.Fatalf("the cache holds %s with %d bytes, not the whole image (%d)", base, st.Size(), r.guestSize)
		}
	}
	var sz int64
	poll(t, "the download at 30 %", 180*time.Second, 200*time.Millisecond, func() bool {
		checkCache()
		sz = size(part)
		if exists(base) && sz*100 < r.guestSize*30 {
			t.Fatalf("the download finished before it could be interrupted (the pace %s is too fast)", r.cfg.rate)
		}
		return sz*100 >= r.guestSize*30
	})
	uid := r.deletePod(t, vm1Pod, 120*time.Second)
	kept := size(part)
	checkCache()
	if exists(base) {
		t.Fatal("the base is in place although its download was interrupted")
	}
	t.Logf("pod deleted at %d bytes downloaded; the partial file kept %d bytes", sz, kept)
	r.newPod(t, vm1Pod, uid, 90*time.Second)
	poll(t, "the new pod's image-fetch done", 240*time.Second, 300*time.Millisecond, func() bool {
		checkCache()
		p, err := r.k.Client.CoreV1().Pods(r.cfg.namespace).Get(t.Context(), vm1Pod, metav1.GetOptions{})
		if err != nil {
			return false
		}
		s, _ := kube.ContainerStatus(p, "image-fetch")
		return succeeded(s)
	})
	checkCache()
	rec, err := os.ReadFile(base + ".sha256")
	if err != nil || strings.Fields(string(rec) + " x")[0] != r.guestSHA || fileSHA(t, base) != r.guestSHA {
		t.Fatalf("the cached base or its record is not the guest image (sha256 %s): record %q %v", r.guestSHA, rec, err)
	}
	if exists(part) || exists(part+".meta") {
		t.Fatalf("a partial file is left in the cache: %s", listDir(dir))
	}
	var gets []string
	for _, l := range r.served(t, "/guest.qcow2") {
		if strings.Contains(l, "method=GET") {
			gets = append(gets, l)
		}
	}
	var sent int64
	resumedAt := int64(-1)
	bytesField := regexp.MustCompile(`(?:^| )bytes=(\d+)`)
	rangeField := regexp.MustCompile(`range="bytes=(\d+)-"`)
	for _, l := range gets {
		if m := bytesField.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			sent += n
		}
		if m := rangeField.FindStringSubmatch(l); m != nil && resumedAt < 0 && strings.Contains(l, "status=206") {
			resumedAt, _ = strconv.ParseInt(m[1], 10, 64)
		}
	}
	var how string
	if kept > 0 {
		if resumedAt != kept {
			t.Fatalf("the new pod did not continue the partial file of %d bytes (206 from %d); requests:\n%s", kept, resumedAt, strings.Join(gets, "\n"))
		}
		how = fmt.Sprintf("continued with Range from byte %d (%d of %d kept)", kept, kept, r.guestSize)
	} else {
		if count(gets, "status=200") != 2 {
			t.Fatalf("no partial file was kept and the download was not restarted cleanly:\n%s", strings.Join(gets, "\n"))
		}
		how = "restarted from zero (no partial file kept)"
	}
	if sent >= r.guestSize*3/2 {
		t.Fatalf("the server sent %d bytes for a %d-byte image: the download started over", sent, r.guestSize)
	}
	if kept > 0 && !strings.Contains(r.logs(t, vm1Pod, corev1.PodLogOptions{Container: "image-fetch"}), "continuing partial download") {
		t.Fatal("image-fetch's log does not say it continued the partial download")
	}
	r.result(t, "pod deleted during the image download", fmt.Sprintf("new pod %s; %d bytes sent in all for %d; the target name only ever held the whole verified image; no .part left", how, sent, r.guestSize))
	// vm1 boots now, in the background of the next (download) faults.
}

func (r *run) pairCache() string { return filepath.Join(r.cfg.caches, "pair") }

func (r *run) pairVMs(withFresh bool) map[string]any {
	url := r.cfg.fileserverURL + "/swap.qcow2"
	vms := map[string]any{
		"pet":    r.vmValues(url, "swap.qcow2", r.pairCache(), "", true),
		"pinned": r.vmValues(url, "swap.qcow2", r.pairCache(), r.guestSHA, true),
	}
	if withFresh {
		vms["fresh"] = r.vmValues(url, "swap.qcow2", r.pairCache(), r.guestSHA, true)
	}
	return vms
}

// Two VMs on one node starting at once with the same image: one download.
func (r *run) concurrentDownload(t *testing.T) {
	if err := os.MkdirAll(r.pairCache(), 0o755); err != nil {
		t.Fatal(err)
	}
	r.helmRun(t, "install", "pair", r.cfg.chart, "-n", r.cfg.namespace, "-f", r.writeValues(t, "pair", r.pairVMs(false)))
	for _, p := range []string{"pair-pet-0", "pair-pinned-0"} {
		r.waitContainer(t, p, "image-fetch", "exit 0", 240*time.Second, succeeded)
	}
	if got := count(r.served(t, "/swap.qcow2"), "method=GET"); got != 1 {
		t.Fatalf("two VMs starting at once downloaded the image %d times: %q", got, r.served(t, "/swap.qcow2"))
	}
	waited := 0
	for _, p := range []string{"pair-pet-0", "pair-pinned-0"} {
		if strings.Contains(r.logs(t, p, corev1.PodLogOptions{Container: "image-fetch"}), "waiting for another image-fetch") {
			waited++
		}
	}
	if waited != 1 {
		t.Fatalf("expected one image-fetch to wait for the other's download, %d did (did they start at once?)", waited)
	}
	for _, v := range []string{"pet", "pinned"} {
		rec := filepath.Join(r.pvDir(t, "pair-"+v+"-0"), v+".json")
		if got := recordSHA(t, rec); got != r.guestSHA {
			t.Fatalf("pair-%s-0: the pet disk record %s names another base (%s)", v, rec, got)
		}
	}
	if fileSHA(t, filepath.Join(r.pairCache(), "berth-images", "swap.qcow2")) != r.guestSHA {
		t.Fatal("the shared cache holds another image")
	}
	r.result(t, "two VMs start at once with the same image", "1 GET for 2 pods; one image-fetch waited on the cache lock and reused the verified file; both pet disks record the guest's sha256")
}

// The URL starts serving another image: an existing pet disk refuses it, never paired with it;
// a pinned IMG_SHA256 keeps the right one.
func (r *run) imageChanged(t *testing.T) {
	r.serve(t, "swap.qcow2", "other.qcow2")
	cacheDir := filepath.Join(r.pairCache(), "berth-images")
	// While the node's cache holds the verified base, a restart keeps it.
	uid := r.deletePod(t, "pair-pinned-0", 60*time.Second)
	r.newPod(t, "pair-pinned-0", uid, 60*time.Second)
	r.waitContainer(t, "pair-pinned-0", "image-fetch", "exit 0 after the URL changed", 120*time.Second, succeeded)
	if got := count(r.served(t, "/swap.qcow2"), "method=GET"); got != 1 {
		t.Fatalf("the pinned VM downloaded again although its base is cached (%d GETs)", got)
	}
	// The node loses its cache (as when the pod moves to another node): the existing pet disks
	// refuse the new image; a new VM pinned by IMG_SHA256 (vm fresh) refuses it too.
	for _, f := range []string{"swap.qcow2", "swap.qcow2.sha256"} {
		if err := os.Remove(filepath.Join(cacheDir, f)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"pair-pet-0", "pair-pinned-0"} {
		uid := r.deletePod(t, p, 60*time.Second)
		r.newPod(t, p, uid, 60*time.Second)
	}
	r.helmRun(t, "upgrade", "pair", r.cfg.chart, "-n", r.cfg.namespace, "-f", r.writeValues(t, "pair3", r.pairVMs(true)))
	want := map[string]string{
		"pair-pet-0":    "the pet disk /var/lib/berth/disk/pet.json wants " + r.guestSHA,
		"pair-pinned-0": "the pet disk /var/lib/berth/disk/pinned.json wants " + r.guestSHA,
		"pair-fresh-0":  "IMG_SHA256 wants " + r.guestSHA,
	}
	for _, p := range []string{"pair-pet-0", "pair-pinned-0", "pair-fresh-0"} {
		st := r.waitContainer(t, p, "image-fetch", "exit 1 (the other image refused)", 120*time.Second, exitedWith(1))
		msg := lastOrCurrent(st).Message
		// The message, in this order: what the URL served, what was wanted, that it was discarded
		// (kubectl describe pod prints this field as the container's Message).
		order := regexp.MustCompile(regexp.QuoteMeta("sha256 of "+r.cfg.fileserverURL+"/swap.qcow2 is "+r.otherSHA) + `(?s).*` +
			regexp.QuoteMeta(want[p]) + `.*discarded`)
		if !order.MatchString(msg) {
			t.Fatalf("%s: the termination message does not say why: %q", p, msg)
		}
		if !r.describes(t, p, want[p]) {
			t.Fatalf("%s: the pod's status and events (what kubectl describe pod shows) lack %q", p, want[p])
		}
		// The VM never started on the other base: the pod never got past image-fetch.
		vm, _ := kube.ContainerStatus(r.getPod(t, p), "vm")
		if vm.RestartCount != 0 || vm.State.Running != nil || vm.LastTerminationState.Terminated != nil {
			t.Fatalf("%s: the vm container ran after image-fetch refused the base: %+v", p, vm)
		}
		if exists(filepath.Join(cacheDir, "swap.qcow2")) {
			t.Fatalf("the cache holds swap.qcow2 after a refusal: %s", listDir(cacheDir))
		}
		t.Logf("%s refused: %s", p, msg)
	}
	freshDir := r.pvDir(t, "pair-fresh-0")
	if exists(filepath.Join(freshDir, "fresh.qcow2")) {
		t.Fatal("a pet disk was made for vm fresh on the wrong image")
	}
	// The init containers retry at once: a retry may be downloading now. Under the
	// cache's lock (image-fetch downloads and discards under it) no download is under
	// way, so a partial file seen then was left behind.
	underCacheLock(t, filepath.Join(cacheDir, ".swap.qcow2.lock"), 120*time.Second, func() {
		if strings.Contains(listDir(cacheDir), ".part") {
			t.Fatalf("a partial file is left: %s", listDir(cacheDir))
		}
	})
	// The URL serves the right image again: all three recover on their own (the init container's retry).
	r.serve(t, "swap.qcow2", "guest.qcow2")
	for _, p := range []string{"pair-pet-0", "pair-pinned-0", "pair-fresh-0"} {
		r.waitContainer(t, p, "image-fetch", "exit 0 once the right image is served", 180*time.Second, succeeded)
	}
	if fileSHA(t, filepath.Join(cacheDir, "swap.qcow2")) != r.guestSHA {
		t.Fatal("after recovery the cache holds another image")
	}
	if got := recordSHA(t, filepath.Join(freshDir, "fresh.json")); got != r.guestSHA {
		t.Fatalf("vm fresh's pet disk names another base (%s)", got)
	}
	r.dataChecks += 2
	r.result(t, "the image URL serves another image", "cached base kept on restart (no GET); cache lost: both existing pet disks refused it ('sha256 ... is <other>, the pet disk ... wants <guest>'), a new VM pinned by IMG_SHA256 refused it ('IMG_SHA256 wants'), exit 1, vm container never started, nothing in the cache, no pet disk on it; all recovered when the right image was served again")
	if _, err := r.helm.Run(t.Context(), "uninstall", "pair", "-n", r.cfg.namespace, "--wait", "--timeout", "120s"); err != nil {
		t.Fatal(err)
	}
}

// describes reports whether what kubectl describe pod shows of pod (the containers'
// states and last states with their messages, the pod's events) contains s.
func (r *run) describes(t *testing.T, pod, s string) bool {
	t.Helper()
	p := r.getPod(t, pod)
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, c := range list {
			for _, st := range []corev1.ContainerState{c.State, c.LastTerminationState} {
				if (st.Terminated != nil && strings.Contains(st.Terminated.Message, s)) ||
					(st.Waiting != nil && strings.Contains(st.Waiting.Message, s)) {
					return true
				}
			}
		}
	}
	ev, err := r.k.Client.CoreV1().Events(r.cfg.namespace).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ev.Items {
		if strings.Contains(e.Message, s) {
			return true
		}
	}
	return false
}

// The image volume (a small tmpfs with a ballast file) fills up during the download: a clear
// message, no partial file left, and success once the ballast is deleted.
func (r *run) imageVolumeFull(t *testing.T) {
	full := filepath.Join(r.cfg.caches, "full")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	// A tmpfs just larger than the image stands for the node's image volume.
	opts := fmt.Sprintf("size=%dm,mode=0755", r.guestSize/mib+16)
	if err := unix.Mount("berth-chaos-full", full, "tmpfs", 0, opts); err != nil {
		t.Fatalf("mount a tmpfs (%s) at %s: %v", opts, full, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(full, 0); err != nil {
			_ = unix.Unmount(full, unix.MNT_DETACH)
		}
	})
	values := r.writeValues(t, "full", map[string]any{"full": r.vmValues(r.cfg.fileserverURL+"/guest.qcow2", target, full, "", true)})
	r.helmRun(t, "install", "full", r.cfg.chart, "-n", r.cfg.namespace, "-f", values)
	// The chart keeps the cache in its own subdirectory of the hostPath.
	dir := filepath.Join(full, "berth-images")
	part := filepath.Join(dir, "."+target+".part")
	poll(t, "the download to the tmpfs at 20 %", 180*time.Second, 200*time.Millisecond, func() bool { return size(part) >= r.guestSize/5 })
	partIno := inode(t, part)
	// Once the download is under way, a ballast file takes all but 4 MiB of what is left.
	// The download goes on meanwhile: what statfs said may be gone by the fallocate
	// (ENOSPC), so it is measured again and retried.
	ballast := filepath.Join(full, "ballast")
	bf, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	for try := 1; ; try++ {
		var fs unix.Statfs_t
		if err := unix.Statfs(full, &fs); err != nil {
			t.Fatal(err)
		}
		left := int64(fs.Bavail)*fs.Bsize - 4*mib
		if left <= 0 {
			break // the download itself took the rest
		}
		err := unix.Fallocate(int(bf.Fd()), 0, 0, left)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENOSPC) || try == 20 {
			t.Fatalf("fallocate the ballast (%d bytes, try %d): %v", left, try, err)
		}
	}
	bf.Close()
	st := r.waitContainer(t, "full-full-0", "image-fetch", "exit 1 on the full volume", 180*time.Second, exitedWith(1))
	msg := lastOrCurrent(st).Message
	if !strings.Contains(msg, "no space left on device") {
		t.Fatalf("the termination message does not say the volume is full: %q", msg)
	}
	if !r.describes(t, "full-full-0", "no space left on device") {
		t.Fatal("what kubectl describe pod shows lacks 'no space left on device'")
	}
	// The failed attempt removed its partial file: that inode is gone (the init container is
	// retried at once, so a retry's own file may be there), and no retry continued a partial file.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Sys().(*syscall.Stat_t).Ino == partIno {
			t.Fatalf("the partial file of the failed download is left: %s", listDir(dir))
		}
	}
	if got := count(r.served(t, "/guest.qcow2"), `range="bytes=`); got != 1 {
		t.Fatalf("a retry continued a partial file on the full volume: %q", r.served(t, "/guest.qcow2"))
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	r.waitContainer(t, "full-full-0", "image-fetch", "exit 0 once space is freed", 240*time.Second, succeeded)
	if fileSHA(t, filepath.Join(dir, target)) != r.guestSHA {
		t.Fatal("after freeing space the cache holds another image")
	}
	r.result(t, "the image volume fills up during the download", fmt.Sprintf("'no space left on device' in kubectl describe pod (%s); the failed attempt's partial file removed (its inode gone, no retry sent a Range); success once the ballast was deleted", msg))
	if _, err := r.helm.Run(t.Context(), "uninstall", "full", "-n", r.cfg.namespace, "--wait", "--timeout", "120s"); err != nil {
		t.Fatal(err)
	}
	_, _ = r.k.WaitPod(t.Context(), r.cfg.namespace, "full-full-0", "full-full-0 gone", 60*time.Second, t.Logf, func(p *corev1.Pod) (bool, string) {
		return p == nil, "still there"
	})
}

// --- the long-lived VM: data in, then the guest faults --------------------------------------

func (r *run) waitVMReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	p, err := r.k.WaitPod(t.Context(), r.cfg.namespace, vm1Pod, vm1Pod+" Ready", timeout, t.Logf, func(p *corev1.Pod) (bool, string) {
		if p == nil {
			return false, "no pod"
		}
		return kube.Ready(p), string(p.Status.Phase)
	})
	if err != nil {
		t.Fatal(err)
	}
	r.ip = p.Status.PodIP
	if err := r.ssh.WaitUp(t.Context(), r.ip, 120*time.Second, t.Logf); err != nil {
		t.Fatalf("%s Ready but SSH does not answer: %v", vm1Pod, err)
	}
}

func (r *run) sshLine(t *testing.T, cmd string) string {
	t.Helper()
	out, err := r.ssh.Line(t.Context(), r.ip, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (r *run) bootID(t *testing.T) string {
	t.Helper()
	return r.sshLine(t, "cat /proc/sys/kernel/random/boot_id")
}

// petIdentity is the pet disk's inode and its record's sha256 on the node.
func (r *run) petIdentity(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(r.pet + ".json")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d %x", inode(t, r.pet+".qcow2"), sum)
}

// dataOK: the file written before the faults is there, whole, on the same pet disk.
func (r *run) dataOK(t *testing.T, when string) {
	t.Helper()
	if got := strings.Fields(r.sshLine(t, "sha256sum /var/tmp/chaos.bin") + " -")[0]; got != r.dataSHA {
		t.Fatalf("data lost %s: /var/tmp/chaos.bin differs or is gone (%s)", when, got)
	}
	if got := r.petIdentity(t); got != r.petID {
		t.Fatalf("%s: the pet disk %s.qcow2 or its record changed (%s -> %s)", when, r.pet, r.petID, got)
	}
	r.dataChecks++
}

func (r *run) restarts(t *testing.T, container string) int32 {
	t.Helper()
	return kube.RestartCount(r.getPod(t, vm1Pod), container)
}

func (r *run) bootVM1(t *testing.T) {
	r.waitVMReady(t, r.cfg.bootTimeout)
	if _, err := r.ssh.Run(t.Context(), r.ip, `sudo sh -c "head -c 8M /dev/urandom >/var/tmp/chaos.bin && sha256sum /var/tmp/chaos.bin >/var/tmp/chaos.sha && sync"`); err != nil {
		t.Fatalf("write the data file in the guest: %v", err)
	}
	r.dataSHA = r.sshLine(t, "cut -d' ' -f1 /var/tmp/chaos.sha")
	r.boot = r.bootID(t)
	// The pet disk on the node (the PV's directory): the same file (inode) and record after every fault.
	r.pet = filepath.Join(r.pvDir(t, vm1Pod), "vm1")
	r.petID = r.petIdentity(t)
	r.uid = r.getPod(t, vm1Pod).UID
	t.Logf("vm1 at %s, boot_id %s, 8 MiB written (sha256 %s)", r.ip, r.boot, r.dataSHA)
}

// kubelet restarted (SIGKILL, then ci/cluster/up starts it again, as it started it).
func (r *run) kubeletRestart(t *testing.T) {
	r.vmRestarts = r.restarts(t, "vm")
	kpid, err := node.Daemon(r.cfg.clusterDir, "kubelet")
	if err != nil {
		t.Fatal(err)
	}
	if !node.Ours(kpid, r.cfg.clusterDir) {
		t.Fatalf("the kubelet pid %d is not the cluster's", kpid)
	}
	if err := syscall.Kill(kpid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll(t, "the kubelet gone", 20*time.Second, time.Second, func() bool { return !node.Ours(kpid, r.cfg.clusterDir) })
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, r.cfg.clusterUp).CombinedOutput(); err != nil {
		t.Fatalf("ci/cluster/up after killing the kubelet: %v\n%s", err, out)
	}
	if now, _ := node.Daemon(r.cfg.clusterDir, "kubelet"); now == kpid {
		t.Fatal("the kubelet was not restarted")
	}
	if _, err := wait.For(t.Context(), "the node Ready", 60*time.Second, time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
		nodes, err := r.k.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil || len(nodes.Items) == 0 {
			return false, fmt.Sprintf("%v", err), nil
		}
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
					return false, n.Name + " " + c.Reason, nil
				}
			}
		}
		return true, "", nil
	}); err != nil {
		t.Fatal(err)
	}
	// 20 s for the new kubelet to sync the pod (and to restart anything it would restart), watched.
	for range 20 {
		p := r.getPod(t, vm1Pod)
		if p.UID != r.uid {
			t.Fatal("the pod was replaced after the kubelet restart")
		}
		if got := kube.RestartCount(p, "vm"); got != r.vmRestarts {
			t.Fatalf("the vm container restarted after the kubelet restart (%d -> %d)", r.vmRestarts, got)
		}
		time.Sleep(time.Second)
	}
	r.waitVMReady(t, 60*time.Second)
	if r.bootID(t) != r.boot {
		t.Fatal("the guest rebooted after the kubelet restart")
	}
	r.dataOK(t, "after the kubelet restart")
	r.result(t, "kubelet restarted", "same pod, no container restart, same guest boot_id, data intact")
}

// taskPid is the host pid of the container's first process, through containerd.
func (r *run) taskPid(t *testing.T, container string) (int, error) {
	t.Helper()
	s, ok := kube.ContainerStatus(r.getPod(t, vm1Pod), container)
	if !ok {
		return 0, fmt.Errorf("%s has no status", container)
	}
	return r.ctrd.TaskPid(t.Context(), s.ContainerID)
}

// dnsmasq sidecar killed: restarted, the guest keeps its address and renews its lease.
func (r *run) dnsmasqKill(t *testing.T) {
	before := r.restarts(t, "dnsmasq")
	dpid, err := r.taskPid(t, "dnsmasq")
	if err != nil {
		t.Fatalf("no running dnsmasq task: %v", err)
	}
	if c := node.Comm(dpid); c != "dnsmasq" {
		t.Fatalf("pid %d is %s, not dnsmasq", dpid, c)
	}
	if err := syscall.Kill(dpid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.waitContainer(t, vm1Pod, "dnsmasq", "restarted and running", 120*time.Second, func(s corev1.ContainerStatus) bool {
		return s.RestartCount > before && s.State.Running != nil
	})
	poll(t, "the dnsmasq task running", 30*time.Second, time.Second, func() bool {
		_, err := r.taskPid(t, "dnsmasq")
		return err == nil
	})
	// A DHCP exchange from the guest with the new dnsmasq (a one-shot dhclient that changes
	// nothing: -sf /bin/true; its own lease file), then the guest's address, boot and data.
	iface := r.sshLine(t, `ip -o -4 addr show | awk '/192\.168\.254\./ { print $2; exit }'`)
	if iface == "" {
		t.Fatal("the guest has no 192.168.254.x address after the dnsmasq restart")
	}
	dh, _ := r.ssh.Run(t.Context(), r.ip, "sudo timeout 40 dhclient -1 -v -sf /bin/true -pf /run/chaos-dhclient.pid -lf /run/chaos-dhclient.leases "+iface+
		" 2>&1; sudo dhclient -x -sf /bin/true -pf /run/chaos-dhclient.pid 2>/dev/null; true")
	if !strings.Contains(dh, "DHCPACK of 192.168.254.2") {
		t.Fatalf("the guest got no DHCPACK from the restarted dnsmasq: %s", dh)
	}
	if !regexp.MustCompile(`DHCPACK.*192\.168\.254\.2`).MatchString(r.logs(t, vm1Pod, corev1.PodLogOptions{Container: "dnsmasq"})) {
		t.Fatal("the restarted dnsmasq logged no DHCPACK")
	}
	if got := r.sshLine(t, "ip -o -4 addr show dev "+iface+" | awk '{ print $4 }'"); got != "192.168.254.2/30" {
		t.Fatalf("the guest's address changed: %s", got)
	}
	r.waitVMReady(t, 60*time.Second)
	if got := r.restarts(t, "vm"); got != r.vmRestarts {
		t.Fatal("the vm container restarted when dnsmasq was killed")
	}
	if r.bootID(t) != r.boot {
		t.Fatal("the guest rebooted when dnsmasq was killed")
	}
	r.dataOK(t, "after the dnsmasq kill")
	r.result(t, "dnsmasq sidecar killed", fmt.Sprintf("restarted (restartCount %d -> %d); the guest renewed 192.168.254.2 from the new dnsmasq (DHCPACK); same boot_id; pod Ready", before, r.restarts(t, "dnsmasq")))
}

// QEMU SIGKILLed: the container restarts, the guest boots again from the same pet disk.
func (r *run) qemuKill(t *testing.T) {
	vpid, err := r.taskPid(t, "vm")
	if err != nil {
		t.Fatalf("no running vm task: %v", err)
	}
	qpid, err := node.Child(vpid, "qemu-system")
	if err != nil {
		t.Fatalf("no QEMU child of vmm: %v", err)
	}
	if err := syscall.Kill(qpid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := r.waitContainer(t, vm1Pod, "vm", "restarted after QEMU was killed", 60*time.Second, func(s corev1.ContainerStatus) bool {
		return s.RestartCount > r.vmRestarts
	})
	var msg string
	if st.LastTerminationState.Terminated != nil {
		msg = st.LastTerminationState.Terminated.Message
	}
	if !strings.Contains(msg, "exited unexpectedly (signal: killed)") {
		t.Fatalf("the vm container's termination message: %q", msg)
	}
	r.vmRestarts = st.RestartCount
	r.waitVMReady(t, r.cfg.bootTimeout)
	if r.getPod(t, vm1Pod).UID != r.uid {
		t.Fatal("the pod was replaced after the QEMU kill")
	}
	b := r.bootID(t)
	if b == r.boot {
		t.Fatal("the guest did not boot again after QEMU was killed")
	}
	r.dataOK(t, "after the QEMU kill")
	r.boot = b
	r.result(t, "QEMU killed (SIGKILL)", fmt.Sprintf("vm container restarted in the same pod ('%s'), a new boot from the same pet disk (its inode and record unchanged on the node), data intact", msg))
}

// The guest powers itself off: vmm exits 0, the pod starts it again, same disk.
func (r *run) guestPowerOff(t *testing.T) {
	_, _ = r.ssh.Run(t.Context(), r.ip, "sudo systemctl poweroff")
	st := r.waitContainer(t, vm1Pod, "vm", "restarted after the guest powered off", 120*time.Second, func(s corev1.ContainerStatus) bool {
		return s.RestartCount > r.vmRestarts
	})
	if last := st.LastTerminationState.Terminated; last == nil || last.ExitCode != 0 {
		t.Fatalf("vmm did not exit 0 on the guest's power-off: %+v", st.LastTerminationState)
	}
	r.vmRestarts = st.RestartCount
	prev := r.logs(t, vm1Pod, corev1.PodLogOptions{Container: "vm", Previous: true})
	if !regexp.MustCompile(`reboot: Power down|System is powered off`).MatchString(prev) {
		t.Fatal("the previous console shows no power-off")
	}
	r.waitVMReady(t, r.cfg.bootTimeout)
	if r.getPod(t, vm1Pod).UID != r.uid {
		t.Fatal("the pod was replaced after the guest powered off")
	}
	if r.bootID(t) == r.boot {
		t.Fatal("the guest did not boot again after its power-off")
	}
	r.dataOK(t, "after the guest's power-off")
	r.result(t, "the guest powers itself off", "vmm exit 0 ('reboot: Power down' on the console), the container restarted in the same pod, a new boot, the same pet disk (inode, record), data intact")
}
