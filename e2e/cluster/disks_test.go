//go:build e2e

package cluster

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/e2e/internal/guest"
	"github.com/berth-vm/berth/e2e/internal/kube"
	"github.com/berth-vm/berth/e2e/internal/node"
	"github.com/berth-vm/berth/e2e/internal/phase"
	"github.com/berth-vm/berth/e2e/internal/wait"
)

// The disk journey's release and VM: one VM for every disk check (each TCG
// boot costs minutes), its root disk and four data disks.
const (
	disksRelease = "disks"
	disksVM      = "d1"
	noExpRelease = "noexp" // a second release that never boots (its pod cannot be scheduled)
	noExpVM      = "d2"
	mib          = int64(1) << 20
	gib          = int64(1) << 30

	rootSize      = 4 * gib // vm1's diskSize
	grownRootSize = 5 * gib
	smallWrite    = 300 * mib // what the guest writes to its ext4 on `small`
	smallLeft     = 100 * mib // what the ballast leaves of the `small` volume

)

// The data disks, as the values give them and the guest must see them.
type dataDisk struct {
	name, class, mode string
	size              int64
	mkfs              bool // the guest makes an ext4 on it and mounts it at /mnt/<name>
}

func (c *config) dataDisks() []dataDisk {
	return []dataDisk{
		{"data", c.diskClass, "Filesystem", 256 * mib, true},
		{"blk", c.diskClass, "Block", 256 * mib, true},
		{"fill", c.diskClass, "Filesystem", 512 * mib, false},
		{"small", c.smallClass, "Filesystem", 768 * mib, true},
	}
}

// What vmm logs (vmm/watch): a guest not running, a stop on a full volume
// (with the disk's name), the resume, an online growth.
var (
	vmmPausedRE = regexp.MustCompile(`the guest is (not running|paused)`)
	vmmFullRE   = regexp.MustCompile(`the guest is paused: a disk's volume is full`)
	vmmResumeRE = regexp.MustCompile(`resuming the guest: its full volumes have room again`)
	vmmGrewRE   = regexp.MustCompile(`grew a disk to its size`)
	// image-fetch's message on a volume root it cannot write (issue 18's report).
	notWritableRE = regexp.MustCompile(`not writable`)
	// what the guest's kernel says of a disk that failed a write (werror=enospc must spare it that)
	guestDiskErrorRE = regexp.MustCompile(`I/O error|EXT4-fs error|EXT4-fs warning|critical (space|medium|target)`)
)

// journey is the state the disk steps hand on.
type journey struct {
	*scenario
	dir     string // the test's own directory (values files)
	ctrd    node.Containerd
	values  string
	pod     *corev1.Pod
	ip      string
	devices map[string]string // serial -> the device its by-id link names (/dev/vdb ...)
	report  []string          // the figures, for out/e2e/disks-<cni>.txt and docs/reliability.md
}

// TestDisks is issue 18 on one VM: the root disk on the CSI class with
// expansion, four data disks (qcow2 file, Block, a disk filled to 100 %, a
// disk on a small static ext4 PV), then a full volume, growth by helm upgrade
// (its new pod is the check that a pod's replacement keeps every disk at its
// by-id path with its files) and the chart's refusals.
func TestDisks(t *testing.T) {
	s := newScenario(t)
	s.uninstallOnFailure(t, disksRelease)
	s.k.DiagnoseOnFailure(t, s.cfg.namespace)
	j := &journey{scenario: s, dir: t.TempDir(), ctrd: node.Containerd{Ctr: s.cfg.ctr, Address: s.cfg.containerd}}
	t.Cleanup(func() {
		if len(j.report) == 0 {
			return
		}
		text := strings.Join(j.report, "\n") + "\n"
		t.Logf("disk figures:\n%s", text)
		if err := os.WriteFile(s.out("disks-%s.txt"), []byte(text), 0o644); err != nil {
			t.Error(err)
		}
	})
	phase.RunSteps(t, &s.timings, []phase.Step{
		{Name: "disks-install", Run: j.install},
		{Name: "disks-in-guest", Run: j.inGuest},
		{Name: "disks-fill-100", Run: j.fill},
		{Name: "disks-full-volume", Run: j.fullVolume},
		{Name: "disks-grow-root", Run: j.growRoot},
		{Name: "disks-refused", Run: j.refused},
		{Name: "disks-uninstall", Run: j.uninstall},
	})
}

// uninstallOnFailure uninstalls release when t failed (after the diagnostics,
// which are registered later), so that the next test does not share the two
// cores with a VM left running; its PVCs stay for a look.
func (s *scenario) uninstallOnFailure(t *testing.T, release string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if _, err := s.helm.Run(ctx, "uninstall", release, "-n", s.cfg.namespace, "--wait", "--timeout", "150s"); err != nil {
			t.Logf("uninstall %s after the failure: %v", release, err)
		}
	})
}

func (j *journey) note(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	j.report = append(j.report, line)
}

// vm1Settings is vm1's map in the run's values, and the values' other
// top-level keys (tests: the toolbox image).
func (s *scenario) vm1Settings(t *testing.T) (vm map[string]any, rest map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(s.cfg.values)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatalf("values %s: %v", s.cfg.values, err)
	}
	vms, _ := v["vms"].(map[string]any)
	vm, _ = vms["vm1"].(map[string]any)
	if vm == nil {
		t.Fatalf("values %s have no vms.vm1", s.cfg.values)
	}
	delete(v, "vms")
	return vm, v
}

// writeValues writes rest with vms to dir/name.yaml (dir: the whole test's,
// not a step's: a subtest's TempDir goes when the step ends).
func writeValues(t *testing.T, dir, name string, rest, vms map[string]any) string {
	t.Helper()
	v := map[string]any{"vms": vms}
	for k, x := range rest {
		v[k] = x
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// diskVMValues is vm1's settings (image, cache, key, user-data) without the
// consoles, on class, with disks.
func diskVMValues(vm1 map[string]any, class string, size int64, dd []dataDisk) map[string]any {
	vm := map[string]any{}
	for k, x := range vm1 {
		vm[k] = x
	}
	delete(vm, "console")
	vm["class_name"] = class
	vm["diskSize"] = sizeValue(size)
	var list []map[string]any
	for _, d := range dd {
		list = append(list, map[string]any{"name": d.name, "size": sizeValue(d.size), "storageClassName": d.class, "volumeMode": d.mode})
	}
	if list != nil {
		vm["disks"] = list
	}
	return vm
}

func sizeValue(b int64) string {
	if b%gib == 0 {
		return fmt.Sprintf("%dGi", b/gib)
	}
	return fmt.Sprintf("%dMi", b/mib)
}

func rootClaim(release, vm string) string { return "disk-" + release + "-" + vm + "-0" }
func dataClaim(release, vm, disk string) string {
	return "data-" + release + "-" + vm + "." + disk
}

// 1. helm install: the VM boots with its five disks; the PVCs are the chart's
// (names, classes, modes, kept on uninstall) and each holds its disk fully allocated.
func (j *journey) install(t *testing.T) {
	ctx := t.Context()
	vm1, rest := j.vm1Settings(t)
	vm := diskVMValues(vm1, j.cfg.diskClass, rootSize, j.cfg.dataDisks())
	j.values = writeValues(t, j.dir, "disks", rest, map[string]any{disksVM: vm})
	out, err := j.helm.Run(ctx, "install", disksRelease, j.cfg.chart, "-n", j.cfg.namespace, "-f", j.values)
	if werr := os.WriteFile(j.out("helm-install-disks-%s.txt"), []byte(out), 0o644); werr != nil {
		t.Error(werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	j.pod = j.waitVMReady(t, disksVM, "")
	j.ip = j.pod.Status.PodIP
	claims := kube.ClaimNames(j.pod)
	type claimed struct {
		name string
		disk dataDisk
	}
	want := []claimed{{rootClaim(disksRelease, disksVM), dataDisk{"root", j.cfg.diskClass, "Filesystem", rootSize, false}}}
	for _, d := range j.cfg.dataDisks() {
		want = append(want, claimed{dataClaim(disksRelease, disksVM, d.name), d})
	}
	for _, w := range want {
		name, d := w.name, w.disk
		if !slices.Contains(claims, name) {
			t.Errorf("pod %s does not mount PVC %s (it mounts %q)", j.pod.Name, name, claims)
			continue
		}
		cl, err := j.k.GetClaim(ctx, j.cfg.namespace, name)
		if err != nil {
			t.Error(err)
			continue
		}
		if cl.Class != d.class || string(cl.Mode) != d.mode || cl.Phase != corev1.ClaimBound {
			t.Errorf("PVC %s: class %q mode %s %s, want %q %s Bound", name, cl.Class, cl.Mode, cl.Phase, d.class, d.mode)
		}
		if cl.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("PVC %s is not kept on uninstall (annotations %v)", name, cl.Annotations)
		}
		need := int64(disks.FullAllocation("qcow2", uint64(d.size)))
		if d.mode == "Block" {
			need = d.size
		}
		if cl.Request < need {
			t.Errorf("PVC %s asks for %d bytes, less than its %s disk needs fully allocated (%d)", name, cl.Request, sizeValue(d.size), need)
		}
		j.note(t, "PVC %s (%s, %s): disk %s, request %d (%.1f %% over the disk's full allocation %d), capacity %d",
			name, d.class, d.mode, sizeValue(d.size), cl.Request, 100*float64(cl.Request-need)/float64(need), need, cl.Capacity)
	}
	j.imageFetchWritable(t, j.pod)
}

// imageFetchWritable: image-fetch never said a disk volume was not writable
// (the report of issue 18 on a root-owned volume).
func (s *scenario) imageFetchWritable(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	log, err := s.k.Logs(t.Context(), s.cfg.namespace, pod.Name, corev1.PodLogOptions{Container: "image-fetch"})
	if err != nil {
		t.Error(err)
		return
	}
	if m := notWritableRE.FindString(log); m != "" {
		t.Errorf("image-fetch of %s logged %q:\n%s", pod.Name, m, tail(log, 10))
	}
}

// 2. In the guest: a stable by-id link per disk; ext4 on data, blk and small;
// a file of known sha256 on data and blk.
func (j *journey) inGuest(t *testing.T) {
	ctx := t.Context()
	j.devices = j.byID(t)
	for _, n := range []string{"root", "data", "blk", "fill", "small"} {
		if !strings.HasPrefix(j.devices[n], "/dev/vd") && !strings.HasPrefix(j.devices[n], "/dev/sd") {
			t.Errorf("/dev/disk/by-id/virtio-%s: %q, want a disk device", n, j.devices[n])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	j.note(t, "by-id: %v", j.devices)
	script := "set -e\n"
	for _, d := range j.cfg.dataDisks() {
		if d.mkfs {
			script += fmt.Sprintf("mkfs.ext4 -q -F /dev/disk/by-id/virtio-%[1]s\nmkdir -p /mnt/%[1]s\nmount /dev/disk/by-id/virtio-%[1]s /mnt/%[1]s\n", d.name)
		}
	}
	for _, n := range []string{"data", "blk"} {
		script += fmt.Sprintf("yes %s | head -c %d >/mnt/%s/file\n", j.line(n), 8*mib, n)
	}
	script += "sync\n"
	if out, err := j.ssh.RunFor(ctx, 300*time.Second, j.ip, "sudo sh -c "+shellQuote(script)); err != nil {
		t.Fatalf("mkfs, mount and write in the guest: %v\n%s", err, out)
	}
	j.filesIntact(t)
}

// line is the text the guest's files on disk n repeat.
func (j *journey) line(n string) string { return "berth-e2e-" + n + "-" + j.cfg.marker }

// byID reads where each /dev/disk/by-id/virtio-<serial> points.
func (j *journey) byID(t *testing.T) map[string]string {
	t.Helper()
	out, err := j.ssh.Run(t.Context(), j.ip, `for l in /dev/disk/by-id/virtio-*; do echo "${l#/dev/disk/by-id/virtio-} $(readlink -f "$l")"; done`)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && !strings.Contains(f[0], "-part") {
			m[f[0]] = f[1]
		}
	}
	return m
}

// filesIntact: the files on data and blk have the sha256 they were written with.
func (j *journey) filesIntact(t *testing.T) {
	t.Helper()
	for _, n := range []string{"data", "blk"} {
		got, err := j.ssh.Line(t.Context(), j.ip, "sudo sha256sum /mnt/"+n+"/file")
		if want := guest.PatternSHA256(j.line(n), 8*mib); !strings.HasPrefix(got, want+" ") {
			t.Errorf("/mnt/%s/file in the guest: sha256sum %q (%v), want %s", n, got, err, want)
		}
	}
}

// 3. The guest writes all of `fill` (to the raw device, O_DIRECT): QEMU never
// stops, vmm logs no full volume, and the volume still has room.
func (j *journey) fill(t *testing.T) {
	ctx := t.Context()
	start := metav1.Now()
	dev := "/dev/disk/by-id/virtio-fill"
	line, err := j.ssh.Line(ctx, j.ip, "sudo blockdev --getsize64 "+dev)
	size, perr := strconv.ParseInt(line, 10, 64)
	if err != nil || perr != nil || size != 512*mib {
		t.Fatalf("%s: size %q (%v %v), want %d", dev, line, err, perr, 512*mib)
	}
	stop := j.watchRunning(t)
	ddStart := time.Now()
	out, err := j.ssh.RunFor(ctx, 900*time.Second, j.ip, fmt.Sprintf(
		"yes %s | sudo dd of=%s bs=1M count=%d iflag=fullblock oflag=direct status=none && sudo sync && echo written",
		j.line("fill"), dev, size/mib))
	took := time.Since(ddStart)
	statuses, notReady := stop()
	if err != nil || strings.TrimSpace(out) != "written" {
		t.Fatalf("write the whole of %s: %q %v", dev, out, err)
	}
	j.note(t, "fill: the guest wrote all %d bytes of %s in %.0fs (%.1f MiB/s, O_DIRECT); QEMU statuses seen: %v",
		size, dev, took.Seconds(), float64(size)/float64(mib)/took.Seconds(), statuses)
	for st := range statuses {
		if st != "running" {
			t.Errorf("QEMU's status was %q while the guest filled its disk (want running only: %v)", st, statuses)
		}
	}
	if notReady > 0 {
		t.Errorf("the pod was not Ready %d times while the guest filled its disk", notReady)
	}
	log := j.vmmLog(t, start)
	if l := firstLine(log, vmmPausedRE.MatchString); l != "" {
		t.Errorf("vmm logged %q while the guest filled a disk its volume holds", l)
	}
	// The volume from the node: the vm container's mount of it, through /proc/PID/root.
	pid := j.vmPid(t)
	d := disks.Disk{Name: "fill", Format: "qcow2", VolumeMode: "Filesystem"}
	vol, err := disks.VolumeUsage(node.InContainer(pid, d.VolumeDir(disks.DefaultDir)))
	if err != nil {
		t.Fatal(err)
	}
	used, err := node.Allocated(node.InContainer(pid, d.Path(disks.DefaultDir)))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := j.k.GetClaim(ctx, j.cfg.namespace, dataClaim(disksRelease, disksVM, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	j.note(t, "fill: PVC request %d, capacity %d; ext4 %d bytes, free %d, available to QEMU (uid 107) %d (%.1f %% of the filesystem); %s allocates %d (the disk %d + %d of qcow2 metadata; qemu-img measure's full allocation %d)",
		cl.Request, cl.Capacity, vol.Total, vol.Total-vol.Used, vol.Avail, 100*float64(vol.Avail)/float64(vol.Total),
		d.Path(disks.DefaultDir), used, size, int64(used)-size, disks.FullAllocation("qcow2", uint64(size)))
	if used < uint64(size) {
		t.Errorf("the qcow2 allocates %d bytes after the guest wrote all %d: not filled", used, size)
	}
	if vol.Avail == 0 {
		t.Errorf("the volume of fill has no room left for QEMU after the guest filled its disk (%+v)", vol)
	}
}

// watchRunning samples QEMU's status (vmm probe live) and the pod's Ready
// condition every 2 s until stop, which returns the statuses seen (with
// counts) and how often the pod was not Ready.
func (j *journey) watchRunning(t *testing.T) (stop func() (map[string]int, int)) {
	ctx, cancel := context.WithCancel(t.Context())
	var mu sync.Mutex
	statuses := map[string]int{}
	notReady := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			st := j.qemuStatus(ctx)
			p, err := j.k.Client.CoreV1().Pods(j.cfg.namespace).Get(ctx, j.pod.Name, metav1.GetOptions{})
			mu.Lock()
			if ctx.Err() == nil {
				statuses[st]++
				if err != nil || !kube.Ready(p) {
					notReady++
				}
			}
			mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() (map[string]int, int) {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return statuses, notReady
	}
}

var qemuStatusRE = regexp.MustCompile(`status (\S+)`)

// qemuStatus is QEMU's query-status as `vmm probe live` in the vm container
// reports it ("running", "io-error" ...), or what went wrong.
func (j *journey) qemuStatus(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := j.k.Exec(ctx, j.cfg.namespace, j.pod.Name, "vm", "vmm", "probe", "live")
	if m := qemuStatusRE.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return fmt.Sprintf("unknown (%q %v)", strings.TrimSpace(out), err)
}

// vmmLog is the vm container's log since a time.
func (j *journey) vmmLog(t *testing.T, since metav1.Time) string {
	t.Helper()
	log, err := j.k.Logs(t.Context(), j.cfg.namespace, j.pod.Name, corev1.PodLogOptions{Container: "vm", SinceTime: &since})
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// vmPid is the host pid of the vm container's first process (vmm).
func (j *journey) vmPid(t *testing.T) int {
	t.Helper()
	p, err := j.k.Client.CoreV1().Pods(j.cfg.namespace).Get(t.Context(), j.pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, ok := kube.ContainerStatus(p, "vm")
	if !ok {
		t.Fatalf("pod %s has no vm container status", p.Name)
	}
	pid, err := j.ctrd.TaskPid(t.Context(), st.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// 4. The `small` volume fills from the node while the guest writes to its
// ext4 there: QEMU stops the guest (werror=enospc), vmm says which disk, the
// pod is not Ready; once the ballast goes, vmm resumes, the write completes,
// nothing is lost and the filesystem checks clean.
func (j *journey) fullVolume(t *testing.T) {
	ctx := t.Context()
	cl, err := j.k.GetClaim(ctx, j.cfg.namespace, dataClaim(disksRelease, disksVM, "small"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := j.k.VolumeRoot(ctx, cl.Volume, filepath.Join(j.cfg.clusterDir, "kubelet"), string(j.pod.UID))
	if err != nil {
		t.Fatal(err)
	}
	before, err := disks.VolumeUsage(root)
	if err != nil {
		t.Fatal(err)
	}
	if before.Avail < uint64(smallLeft+64*mib) {
		t.Fatalf("the small volume %s has only %d bytes available before the ballast", root, before.Avail)
	}
	// The ballast is outside Berth's own directory (berth/), at the volume's root, as a
	// user's other files would be; root's allocation takes from the free blocks.
	ballast := filepath.Join(root, "berth-e2e-ballast")
	f, err := os.OpenFile(ballast, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(ballast) })
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(before.Avail)-smallLeft); err != nil {
		f.Close()
		t.Fatalf("fallocate the ballast %s: %v", ballast, err)
	}
	f.Close()
	after, err := disks.VolumeUsage(root)
	if err != nil {
		t.Fatal(err)
	}
	j.note(t, "small: PV %s (%s) at %s: ext4 %d bytes, available %d; with the ballast %d available",
		cl.Volume, cl.Class, root, before.Total, before.Avail, after.Avail)

	start := metav1.Now()
	if _, err := j.ssh.Run(ctx, j.ip, fmt.Sprintf("sudo rm -f /var/tmp/small.rc; sudo setsid sh -c "+
		"'yes %s | head -c %d | dd of=/mnt/small/big bs=1M iflag=fullblock conv=fsync status=none; echo $? >/var/tmp/small.rc' "+
		"</dev/null >/dev/null 2>&1 &", j.line("small"), smallWrite)); err != nil {
		t.Fatalf("start the guest's write to /mnt/small: %v", err)
	}
	paused := time.Now()
	if _, err := j.k.WaitPod(ctx, j.cfg.namespace, j.pod.Name, "the pod not Ready (the guest paused on the full volume)", 300*time.Second, t.Logf,
		func(p *corev1.Pod) (bool, string) {
			if p == nil || p.UID != j.pod.UID {
				return false, "not the pod"
			}
			return !kube.Ready(p), fmt.Sprintf("ready %t", kube.Ready(p))
		}); err != nil {
		t.Fatal(err)
	}
	if st := j.qemuStatus(ctx); st != "io-error" {
		t.Errorf("QEMU's status with the volume full: %q, want io-error", st)
	}
	var fullLine string
	if _, err := wait.For(ctx, "vmm's log of the full disk small", 60*time.Second, 2*time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
		fullLine = firstLine(j.vmmLog(t, start), func(l string) bool { return vmmFullRE.MatchString(l) && strings.Contains(l, "small") })
		return fullLine != "", "", nil
	}); err != nil {
		t.Error(err)
	}
	j.note(t, "small: the guest stopped %.0fs after it began writing %d MiB; vmm: %s", time.Since(paused).Seconds(), smallWrite/mib, fullLine)
	if t.Failed() {
		t.FailNow()
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	if _, err := j.k.WaitPod(ctx, j.cfg.namespace, j.pod.Name, "the pod Ready again (vmm resumed the guest)", 300*time.Second, t.Logf,
		func(p *corev1.Pod) (bool, string) {
			if p == nil || p.UID != j.pod.UID {
				return false, "not the pod"
			}
			return kube.Ready(p), fmt.Sprintf("ready %t", kube.Ready(p))
		}); err != nil {
		t.Fatal(err)
	}
	resumeLine := firstLine(j.vmmLog(t, start), func(l string) bool { return vmmResumeRE.MatchString(l) })
	if resumeLine == "" {
		t.Errorf("vmm logged no resume after the ballast was removed")
	}
	j.note(t, "small: Ready again %.0fs after the ballast was removed; vmm: %s", time.Since(freed).Seconds(), resumeLine)
	if restarts := kube.RestartCount(j.pod, "vm"); restarts != 0 {
		t.Logf("vm restarts before: %d", restarts)
	}
	var rc string
	if _, err := wait.For(ctx, "the guest's write to /mnt/small done", 600*time.Second, 5*time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
		out, err := j.ssh.Run(ctx, j.ip, "cat /var/tmp/small.rc 2>/dev/null || true")
		rc = strings.TrimSpace(out)
		return err == nil && rc != "", fmt.Sprintf("%q %v", rc, err), nil
	}); err != nil {
		t.Fatal(err)
	}
	if rc != "0" {
		t.Errorf("the guest's dd to /mnt/small exited %s", rc)
	}
	got, err := j.ssh.RunFor(ctx, 300*time.Second, j.ip, "sudo sha256sum /mnt/small/big")
	if want := guest.PatternSHA256(j.line("small"), smallWrite); !strings.HasPrefix(got, want+" ") {
		t.Errorf("/mnt/small/big after the full volume: sha256sum %q (%v), want %s", strings.TrimSpace(got), err, want)
	}
	dmesg, err := j.ssh.Run(ctx, j.ip, "sudo dmesg")
	if err != nil {
		t.Error(err)
	}
	dev := filepath.Base(j.devices["small"])
	if l := firstLine(dmesg, func(l string) bool { return strings.Contains(l, dev) && guestDiskErrorRE.MatchString(l) }); l != "" {
		t.Errorf("the guest's kernel saw an error on %s (werror=enospc should have paused it): %s", dev, l)
	}
	fsck, err := j.ssh.RunFor(ctx, 300*time.Second, j.ip, "sudo umount /mnt/small && sudo e2fsck -fn /dev/disk/by-id/virtio-small 2>&1")
	if err != nil {
		t.Errorf("e2fsck -fn of small after the full volume: %v\n%s", err, fsck)
	}
	j.note(t, "small: %d MiB written with fsync, sha256 intact, e2fsck -fn clean: %s", smallWrite/mib, lastLine(fsck))
}

// 5. helm upgrade with a larger diskSize: the PVC grows (CSI resizer), the
// guest sees the larger /dev/vda (online, or after the restart the upgrade
// causes), and after a boot the root filesystem is larger (growpart).
func (j *journey) growRoot(t *testing.T) {
	ctx := t.Context()
	claim := rootClaim(disksRelease, disksVM)
	before, err := j.k.GetClaim(ctx, j.cfg.namespace, claim)
	if err != nil {
		t.Fatal(err)
	}
	rootFS := j.rootFSSize(t)
	if _, err := j.helm.Run(ctx, "upgrade", disksRelease, j.cfg.chart, "-n", j.cfg.namespace, "--reuse-values",
		"--set", "vms."+disksVM+".diskSize="+sizeValue(grownRootSize)); err != nil {
		t.Fatal(err)
	}
	upgraded := time.Now()
	asked, err := j.k.GetClaim(ctx, j.cfg.namespace, claim)
	if err != nil {
		t.Fatal(err)
	}
	need := int64(disks.FullAllocation("qcow2", uint64(grownRootSize)))
	if asked.Request <= before.Request || asked.Request < need {
		t.Fatalf("PVC %s after helm upgrade: request %d (was %d), want more, and at least %d", claim, asked.Request, before.Request, need)
	}
	// The resizer and the kubelet's online resize bring the capacity to the new request.
	after, err := j.k.WaitClaimCapacity(ctx, j.cfg.namespace, claim, asked.Request, 300*time.Second, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	j.note(t, "grow: PVC %s request %d -> %d, capacity %d -> %d in %.0fs", claim, before.Request, after.Request, before.Capacity, after.Capacity, time.Since(upgraded).Seconds())
	// The guest sees 5 GiB: in the same pod (vmm's block_resize), or in the pod the upgrade made.
	how := ""
	if _, err := wait.For(ctx, "the guest's /dev/vda at "+sizeValue(grownRootSize), j.cfg.bootTimeout, 3*time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
		name, err := j.vmPodName(ctx, disksVM)
		if err != nil || name == "" {
			return false, fmt.Sprintf("no pod (%v)", err), nil
		}
		p, err := j.k.Client.CoreV1().Pods(j.cfg.namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		if p.UID != j.pod.UID && !kube.Ready(p) {
			return false, "a new pod, not Ready yet", nil
		}
		size, err := j.ssh.Line(ctx, p.Status.PodIP, "sudo blockdev --getsize64 /dev/vda")
		if err != nil || size != strconv.FormatInt(grownRootSize, 10) {
			return false, fmt.Sprintf("pod %s: /dev/vda %q %v", p.Name, size, err), nil
		}
		how = "online (vmm block_resize, same pod)"
		if p.UID != j.pod.UID {
			how = "after the pod restart the upgrade caused"
			j.pod, j.ip = p, p.Status.PodIP
		}
		return true, "", nil
	}); err != nil {
		t.Fatal(err)
	}
	j.note(t, "grow: the guest saw /dev/vda at %d bytes %s, %.0fs after helm upgrade", grownRootSize, how, time.Since(upgraded).Seconds())
	if l := firstLine(j.vmmLog(t, metav1.NewTime(upgraded.Add(-time.Second))), vmmGrewRE.MatchString); l != "" {
		j.note(t, "grow: vmm: %s", l)
	}
	// cloud-init's growpart grows the root filesystem at boot: when the disk grew after this
	// boot (online, or after the new pod booted), the guest is rebooted once.
	var grown int64
	grew := func(timeout time.Duration) error {
		_, err := wait.For(ctx, "the root filesystem grown (cloud-init growpart)", timeout, 5*time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
			grown = j.rootFSSize(t)
			return grown > rootFS+gib/2, fmt.Sprintf("%d bytes (was %d)", grown, rootFS), nil
		})
		return err
	}
	rebooted := "no reboot needed"
	if err := grew(60 * time.Second); err != nil {
		rebooted = "after a reboot of the guest"
		bootID, err := j.ssh.Line(ctx, j.ip, "cat /proc/sys/kernel/random/boot_id")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.ssh.Run(ctx, j.ip, "sudo systemctl reboot || true"); err != nil {
			t.Logf("reboot: %v", err)
		}
		if _, err := wait.For(ctx, "the guest booted again", j.cfg.bootTimeout, 5*time.Second, t.Logf, func(ctx context.Context) (bool, string, error) {
			id, err := j.ssh.RunFor(ctx, 15*time.Second, j.ip, "cat /proc/sys/kernel/random/boot_id")
			id = strings.TrimSpace(id)
			return err == nil && id != "" && id != bootID, fmt.Sprintf("%q %v", id, err), nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := grew(180 * time.Second); err != nil {
			t.Error(err)
		}
	}
	j.note(t, "grow: root filesystem %d -> %d bytes (%s)", rootFS, grown, rebooted)
	// The pod the upgrade made (it replaces the old one as kubectl delete pod
	// would), or the same pod after an online growth: the same disks at the same
	// by-id paths, and the files on them.
	if got := j.byID(t); !maps.Equal(got, j.devices) {
		t.Errorf("by-id in the pod after the growth: %v, before: %v", got, j.devices)
	}
	if out, err := j.ssh.RunFor(ctx, 120*time.Second, j.ip,
		"sudo sh -ec 'for n in data blk small; do mountpoint -q /mnt/$n || mount /dev/disk/by-id/virtio-$n /mnt/$n; done'"); err != nil {
		t.Fatalf("mount the data disks after the growth: %v\n%s", err, out)
	}
	j.filesIntact(t)
}

func (j *journey) rootFSSize(t *testing.T) int64 {
	t.Helper()
	out, err := j.ssh.Line(t.Context(), j.ip, "df -B1 --output=size / | tail -n 1")
	n, perr := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil || perr != nil {
		t.Fatalf("df of the guest's /: %q %v %v", out, err, perr)
	}
	return n
}

// The chart's refusals (chart/templates/_disks.tpl, berth.claims).
var (
	shrinkRE      = regexp.MustCompile(`is smaller than the disk it names, .*disks are never shrunk`)
	noExpansionRE = regexp.MustCompile(`does not allow expansion \(allowVolumeExpansion is not true\)`)
)

// 6. A smaller diskSize is refused by helm upgrade; a larger one on a class
// without expansion too (a second release whose pod is never scheduled).
func (j *journey) refused(t *testing.T) {
	ctx := t.Context()
	claim := rootClaim(disksRelease, disksVM)
	before, err := j.k.GetClaim(ctx, j.cfg.namespace, claim)
	if err != nil {
		t.Fatal(err)
	}
	_, err = j.helm.Run(ctx, "upgrade", disksRelease, j.cfg.chart, "-n", j.cfg.namespace, "--reuse-values",
		"--set", "vms."+disksVM+".diskSize="+sizeValue(rootSize))
	switch {
	case err == nil:
		t.Errorf("helm upgrade to a smaller diskSize (%s -> %s) succeeded", sizeValue(grownRootSize), sizeValue(rootSize))
	case !shrinkRE.MatchString(err.Error()):
		t.Errorf("helm upgrade to a smaller diskSize failed without the chart's message: %v", err)
	default:
		j.note(t, "refused: shrink: %s", chartMessage(err))
	}
	if now, err := j.k.GetClaim(ctx, j.cfg.namespace, claim); err != nil || now.Request != before.Request {
		t.Errorf("PVC %s after the refused shrink: request %d (was %d) %v", claim, now.Request, before.Request, err)
	}

	// A release on the class without expansion whose pod is never scheduled: no boot.
	vm1, rest := j.vm1Settings(t)
	vm := diskVMValues(vm1, j.cfg.localClass, rootSize, nil)
	vm["nodeSelector"] = map[string]any{"berth-e2e/never": "scheduled"}
	values := writeValues(t, j.dir, noExpRelease, rest, map[string]any{noExpVM: vm})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, _ = j.helm.Run(ctx, "uninstall", noExpRelease, "-n", j.cfg.namespace, "--wait", "--timeout", "60s")
		_ = j.k.Client.CoreV1().PersistentVolumeClaims(j.cfg.namespace).Delete(ctx, rootClaim(noExpRelease, noExpVM), metav1.DeleteOptions{})
	})
	if _, err := j.helm.Run(ctx, "install", noExpRelease, j.cfg.chart, "-n", j.cfg.namespace, "-f", values); err != nil {
		t.Fatal(err)
	}
	_, err = j.helm.Run(ctx, "upgrade", noExpRelease, j.cfg.chart, "-n", j.cfg.namespace, "--reuse-values",
		"--set", "vms."+noExpVM+".diskSize="+sizeValue(grownRootSize))
	switch {
	case err == nil:
		t.Errorf("helm upgrade to a larger diskSize on %s (no volume expansion) succeeded", j.cfg.localClass)
	case !noExpansionRE.MatchString(err.Error()):
		t.Errorf("helm upgrade to a larger diskSize on %s failed without the chart's message: %v", j.cfg.localClass, err)
	default:
		j.note(t, "refused: growth on %s: %s", j.cfg.localClass, chartMessage(err))
	}
}

// chartMessage is the line of helm's error that holds the chart's own words.
func chartMessage(err error) string {
	return firstLine(err.Error(), func(l string) bool { return strings.HasPrefix(l, "Error:") })
}

// 7. helm uninstall: every disk's PVC stays; then the test deletes them.
func (j *journey) uninstall(t *testing.T) {
	ctx := t.Context()
	if _, err := j.helm.Run(ctx, "uninstall", disksRelease, "-n", j.cfg.namespace, "--wait", "--timeout", "240s"); err != nil {
		t.Fatal(err)
	}
	names := []string{rootClaim(disksRelease, disksVM)}
	for _, d := range j.cfg.dataDisks() {
		names = append(names, dataClaim(disksRelease, disksVM, d.name))
	}
	pvcs := j.k.Client.CoreV1().PersistentVolumeClaims(j.cfg.namespace)
	for _, n := range names {
		if _, err := pvcs.Get(ctx, n, metav1.GetOptions{}); err != nil {
			t.Errorf("helm uninstall removed PVC %s: %v", n, err)
		}
	}
	for _, n := range names {
		if err := pvcs.Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete PVC %s: %v", n, err)
		}
	}
}

func firstLine(text string, match func(string) bool) string {
	for _, l := range strings.Split(text, "\n") {
		if match(l) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func lastLine(text string) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// shellQuote quotes s for sh as one word.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
