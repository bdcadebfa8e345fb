package vmm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/podmem"
	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/vmm/status"
)

// volume is a real ext4 filesystem on a loop device (mkfs.ext4's defaults,
// as a cloud volume or the test cluster's CSI volumes), mounted at dir, its
// root given to vmUID as disk-owner gives Berth's own directory.
type volume struct {
	file, loop, dir string
}

func newVolume(t *testing.T, dir string, size int64) *volume {
	t.Helper()
	v := &volume{file: dir + ".img", dir: dir}
	os.MkdirAll(dir, 0o755)
	f, err := os.Create(v.file)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	sh(t, "mkfs.ext4", "-q", v.file)
	v.loop = strings.TrimSpace(sh(t, "losetup", "-f", "--show", v.file))
	t.Cleanup(func() {
		if exec.Command("umount", v.dir).Run() != nil {
			exec.Command("umount", "-l", v.dir).Run()
		}
		exec.Command("losetup", "-d", v.loop).Run()
		os.Remove(v.file)
	})
	sh(t, "mount", v.loop, dir)
	sh(t, "chown", strconv.Itoa(vmUID)+":"+strconv.Itoa(vmUID), dir)
	return v
}

// fill takes the volume's room but leave bytes with a file of root's (the
// ballast), returned. (The volume is not grown online instead: resize2fs of
// a mounted ext4 needs CAP_SYS_RESOURCE, which root here lacks; room from
// removed files is the same to vmm.)
func (v *volume) fill(t *testing.T, leave int64) string {
	t.Helper()
	ballast := filepath.Join(v.dir, "ballast")
	var st syscall.Statfs_t
	if err := syscall.Statfs(v.dir, &st); err != nil {
		t.Fatal(err)
	}
	sh(t, "fallocate", "-l", strconv.FormatInt(int64(st.Bavail)*st.Bsize-leave, 10), ballast)
	syscall.Statfs(v.dir, &st)
	t.Logf("volume: %d MiB, %d MiB available to the disk's owner", int64(st.Blocks)*st.Bsize>>20, int64(st.Bavail)*st.Bsize>>20)
	return ballast
}

// driveSize is the virtual size QEMU reports for a drive (query-block over qmp.sock).
func driveSize(t *testing.T, p *pod, drive string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := QueryLive(ctx, filepath.Join(p.run, "qmp.sock"))
	if err != nil {
		t.Fatalf("query QEMU: %v", err)
	}
	d, ok := l.Drives[drive]
	if !ok {
		t.Fatalf("QEMU has no drive %s: %v", drive, l.Drives)
	}
	return d.Image.VirtualSize
}

// TestBinaryDiskGrowth: vmm grows disks over QMP while QEMU runs (no guest
// needed). The pet overlay (64Mi, DISK_SIZE 96Mi, room in its directory) is
// grown at once. A data disk (16Mi, size 64Mi) on a real ext4 volume with
// 32 MiB left is not: its volume cannot hold 64 MiB fully written, which vmm
// logs and --check names; once the volume has room (a file removed; a grown
// PVC is the same to vmm) vmm grows the disk and query-block shows its size.
// --dry-run shows the data disk.
func TestBinaryDiskGrowth(t *testing.T) {
	roottest.Require(t)
	needQEMU(t)
	p := newPod(t)
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(p.disk, "testvm.qcow2"), "64M")
	os.WriteFile(filepath.Join(p.run, "seed.iso"), nil, 0o644)
	dataDir := filepath.Join(p.work, "disks")
	vol := newVolume(t, filepath.Join(dataDir, "data"), 128<<20)
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(vol.dir, "data.qcow2"), "16M")
	ballast := vol.fill(t, 32<<20)
	p.chown(t)
	sh(t, "chown", "-R", strconv.Itoa(vmUID)+":"+strconv.Itoa(vmUID), vol.dir)
	env := p.env("ACCEL=tcg", "NO_VNC=true", "SHUTDOWN_TIMEOUT=1", "DISK_SIZE=96Mi",
		"DATA_DISK_DIR="+dataDir, `DATA_DISKS=[{"name":"data","size":"64Mi"}]`)

	out, err := p.cmd(t, env, "--dry-run").Output()
	if err != nil || !strings.Contains(string(out), "id=disk-data,file="+filepath.Join(vol.dir, "data.qcow2")+",format=qcow2") ||
		!strings.Contains(string(out), "virtio-blk-pci,drive=disk-data,serial=data") {
		t.Fatalf("--dry-run: %v, does not show the data disk:\n%s", err, out)
	}

	v := p.start(t, "growth", env)
	until(t, 30*time.Second, "probe live", func() bool { c, _ := p.probe(t, env, "live"); return c == 0 })
	until(t, 30*time.Second, "the pet disk grown to DISK_SIZE", func() bool { return driveSize(t, p, "disk0") == 96<<20 })
	until(t, 30*time.Second, "vmm's warning that the data disk waits for room", func() bool {
		return strings.Contains(readFile(v.stderr), `msg="not growing a disk yet: vmm grows it once its volume has room" disk=data`)
	})
	if got := driveSize(t, p, "disk-data"); got != 16<<20 {
		t.Fatalf("data disk grown to %d on a volume that cannot hold it", got)
	}
	code, stdout, _ := p.check(t, env)
	if code != 1 || !strings.Contains(stdout, "differs: QEMU's data disk data is 16Mi, want 64Mi (DATA_DISKS): vmm grows it once its volume has room") ||
		strings.Contains(stdout, "pet disk") {
		t.Errorf("--check before the volume grew: exit %d:\n%s", code, stdout)
	}

	roomy := time.Now()
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	until(t, 30*time.Second, "the data disk grown once its volume has room", func() bool { return driveSize(t, p, "disk-data") == 64<<20 })
	t.Logf("data disk grown %s after its volume had room", time.Since(roomy).Round(100*time.Millisecond))
	if st := readFile(v.stderr); !strings.Contains(st, `msg="grew a disk to its size: the guest sees the new size now" disk=data drive=disk-data from=16.0Mi to=64.0Mi`) ||
		!strings.Contains(st, `disk=root drive=disk0 from=64.0Mi to=96.0Mi`) {
		t.Errorf("vmm did not log both growths:\n%s", st)
	}
	if code, stdout, stderr := p.check(t, env); code != 0 {
		t.Errorf("--check after growth: exit %d:\n%s%s", code, stdout, stderr)
	}
	// A plan with a disk this QEMU was not started with: --check names it.
	extra := filepath.Join(dataDir, "extra")
	os.MkdirAll(extra, 0o755)
	sh(t, "qemu-img", "create", "-q", "-f", "raw", filepath.Join(extra, "extra.raw"), "1M")
	sh(t, "chown", "-R", strconv.Itoa(vmUID)+":"+strconv.Itoa(vmUID), extra)
	other := append(env[:len(env):len(env)], `DATA_DISKS=[{"name":"data","size":"64Mi"},{"name":"extra","size":"1Mi","format":"raw"}]`)
	if code, stdout, _ := p.check(t, other); code != 1 || stdout != "differs: QEMU has no data disk extra (drive disk-extra), want "+filepath.Join(extra, "extra.raw")+" (DATA_DISKS)\n" {
		t.Errorf("--check with a disk QEMU lacks: exit %d:\n%s", code, stdout)
	}
	v.cmd.Process.Signal(syscall.SIGTERM)
	v.exit(t, 30*time.Second)
	out, _ = exec.Command("qemu-img", "info", filepath.Join(vol.dir, "data.qcow2")).CombinedOutput()
	if !strings.Contains(string(out), "virtual size: 64 MiB") {
		t.Errorf("the data disk file after vmm: %s", out)
	}
	t.Logf("vmm's log:\n%s", readFile(v.stderr))
}

// startDnsmasq serves the guest's lease on br0 as the dnsmasq sidecar does.
func startDnsmasq(t *testing.T, p *pod) string {
	t.Helper()
	sh(t, "ip", "-n", p.ns, "addr", "add", "192.168.254.1/30", "dev", "br0")
	leases := filepath.Join(p.run, "dnsmasq.leases")
	dnsmasq := exec.Command("ip", "netns", "exec", p.ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface=br0", "--bind-interfaces", "--dhcp-range=192.168.254.2,192.168.254.2,255.255.255.252,1h",
		"--dhcp-leasefile="+leases, "--user=root", "--pid-file=", "--log-dhcp")
	dnsLog, _ := os.Create(filepath.Join(p.work, "dnsmasq.log"))
	dnsmasq.Stdout, dnsmasq.Stderr = dnsLog, dnsLog
	if err := dnsmasq.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dnsmasq.Process.Kill(); dnsmasq.Wait() })
	return leases
}

// testGuest builds (or finds) the test guest and makes the pet overlay on it.
func testGuest(t *testing.T, p *pod) string {
	t.Helper()
	return testGuestWith(t, p, "cloud")
}

// testGuestWith is testGuest with the guest's kernel: cloud (Debian's cloud
// kernel, the default guest) or generic (linux-image-amd64: its drivers
// include the i6300esb watchdog).
func testGuestWith(t *testing.T, p *pod, kernel string) string {
	t.Helper()
	return guestFrom(t, p, "build.sh", "TESTGUEST_KERNEL="+kernel)
}

// guestFrom builds (or finds) a test guest with ci/testguest/<script> and env
// (the last line of its stdout is the image) and makes the pet overlay on it.
// The image's directory is the VM's IMAGE_DIR.
func guestFrom(t *testing.T, p *pod, script string, env ...string) string {
	t.Helper()
	build := exec.Command("../../ci/testguest/" + script)
	build.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	build.Stderr = &stderr
	out, err := build.Output()
	if err != nil {
		t.Fatalf("%s ci/testguest/%s: %v\n%s", strings.Join(env, " "), script, err, tail(stderr.String(), 2000))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	image, err := filepath.EvalSymlinks(lines[len(lines)-1])
	if err != nil {
		t.Fatal(err)
	}
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", image, "-F", "qcow2", filepath.Join(p.disk, "testvm.qcow2"))
	return image
}

// seedWith writes a NoCloud seed ISO with user-data into the run dir.
func seedWith(t *testing.T, p *pod, userData string) {
	t.Helper()
	seed := filepath.Join(p.work, "seed")
	os.MkdirAll(seed, 0o755)
	os.WriteFile(filepath.Join(seed, "meta-data"), []byte("instance-id: testvm\nlocal-hostname: testvm\n"), 0o644)
	os.WriteFile(filepath.Join(seed, "user-data"), []byte(userData), 0o644)
	sh(t, "genisoimage", "-quiet", "-o", filepath.Join(p.run, "seed.iso"), "-volid", "cidata", "-J", "-R", seed)
}

// The guest's writes in TestBinaryFullVolume: fullPattern repeated to
// fullBytes, its sha256 printed on the console after it is read back.
const (
	fullPattern = "berth-full-volume\n"
	fullBytes   = 64 << 20
)

// fullGuestMiB is the guest's RAM in TestBinaryFullVolume.
const fullGuestMiB = 512

// fullVolumeUserData writes fullBytes onto the data disk (by its serial),
// O_DIRECT, then reads them back from the disk and prints their sha256. Then
// the guest fills its RAM: tail keeps a whole line in memory, and /dev/zero
// has no newline, so tail grows until the guest's own OOM killer ends it;
// every page of the guest's RAM is then touched.
const fullVolumeUserData = `#cloud-config
runcmd:
  - [sh, -c, "echo BERTH-WRITE-START >/dev/ttyS0; yes berth-full-volume | head -c 67108864 | dd of=/dev/disk/by-id/virtio-data bs=1M iflag=fullblock oflag=direct conv=fsync 2>/dev/ttyS0; echo BERTH-WRITE-DONE $(dd if=/dev/disk/by-id/virtio-data bs=1M count=64 iflag=direct 2>/dev/null | sha256sum) >/dev/ttyS0; echo BERTH-FILL-START >/dev/ttyS0; head -c 512M /dev/zero | tail >/dev/null; echo BERTH-FILL-DONE $(free -m | awk '/^Mem:/ {print $2}') >/dev/ttyS0"]
`

// TestBinaryFullVolume boots one TCG guest for two stories (a boot costs
// minutes).
//
// The full volume: a guest writes 64 MiB onto a data disk whose real ext4
// volume has about 16 MiB left for it. QEMU pauses the guest (werror=enospc);
// vmm logs the disk and how full its volume is, the status file says io-error
// and probe ready fails; a ballast file is removed, vmm resumes the guest
// (cont), the write completes, the guest reads back exactly what it wrote,
// and the qcow2 checks clean after shutdown.
//
// The guest fills its RAM: vmm runs in a memory cgroup limited as the pod's
// vm container is (guest memory + the chart's default memoryOverhead); it
// finds the limit and sizes tb-size to it; after its write the guest fills
// all its RAM; QEMU is not OOM-killed (the cgroup counts no OOM kill, vmm
// still runs), the guest answers afterwards (probe ready, its sshd), and
// SIGTERM still powers it down.
func TestBinaryFullVolume(t *testing.T) {
	roottest.Require(t)
	needQEMU(t)
	guest := uint64(fullGuestMiB) << 20
	limit := guest + chartMemoryOverhead(t)
	cg := newMemCgroup(t, limit)
	p := newPod(t)
	p.cgroupProcs, p.cgroupMount = cg.procs(), cg.mount()
	image := testGuest(t, p)
	seedWith(t, p, fullVolumeUserData)
	dataDir := filepath.Join(p.work, "disks")
	vol := newVolume(t, filepath.Join(dataDir, "data"), 192<<20)
	disk := filepath.Join(vol.dir, "data.qcow2")
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", disk, "128M")
	p.chown(t)
	sh(t, "chown", strconv.Itoa(vmUID)+":"+strconv.Itoa(vmUID), disk)
	ballast := vol.fill(t, 16<<20)
	leases := startDnsmasq(t, p)

	env := p.env("ACCEL=tcg", "VM_CPUS=1", "VM_MEMORY="+strconv.Itoa(fullGuestMiB)+"Mi", "NO_VNC=true", "SHUTDOWN_TIMEOUT=180",
		"READY_TCP_PORT=22", "IMAGE_DIR="+filepath.Dir(image), "DATA_DISK_DIR="+dataDir, `DATA_DISKS=[{"name":"data","size":"128Mi"}]`)
	start := time.Now()
	v := p.start(t, "full", env)
	alive := func() {
		t.Helper()
		select {
		case <-v.done:
			t.Fatalf("vmm exited (OOM kills in the cgroup: %d): %v\nstderr:\n%s\nconsole end:\n%s", cg.oomKills(t), v.err, readFile(v.stderr), tail(readFile(v.console), 2000))
		default:
		}
	}
	until(t, 60*time.Second, "vmm logs its tb-size", func() bool { alive(); return strings.Contains(readFile(v.stderr), "TCG translation buffer") })
	wantTB := fmt.Sprintf("tb_size=%dMi", podmem.PlanTB(limit, guest).MiB)
	if st := readFile(v.stderr); !strings.Contains(st, wantTB) || !strings.Contains(st, cg.dir) {
		t.Errorf("vmm did not size tb-size to the cgroup's limit %d MiB (%s): want %s and the limit's file named:\n%s", limit>>20, cg.dir, wantTB, st)
	}
	if strings.Contains(readFile(v.stderr), "level=WARN msg=\"the memory limit is too small") {
		t.Errorf("vmm warns the chart's default limit is too small:\n%s", readFile(v.stderr))
	}

	const pausedLog = `level=ERROR msg="the guest is paused: a disk's volume is full" disk=data drive=disk-data`
	until(t, 900*time.Second, "the guest paused on the full volume (vmm's log)", func() bool {
		alive()
		return strings.Contains(readFile(v.stderr), pausedLog)
	})
	t.Logf("paused %s after start", time.Since(start).Round(time.Second))
	if !strings.Contains(readFile(v.console), "BERTH-WRITE-START") {
		t.Errorf("paused before the guest's write began: something else filled the volume")
	}
	s, err := status.ReadOwnedBy(filepath.Join(p.run, status.FileName), vmUID)
	if err != nil || s.QEMU != "io-error" || !strings.Contains(s.Reason, "the volume of disk data is full") {
		t.Errorf("status file: %+v, %v; want io-error naming disk data", s, err)
	}
	if c, out := p.probe(t, env, "ready"); c != 1 || !strings.Contains(out, "the guest is not running") {
		t.Errorf("probe ready while paused: exit %d: %s", c, out)
	}
	if c, out := p.probe(t, env, "live"); c != 0 || !strings.Contains(out, "io-error") {
		t.Errorf("probe live while paused (QEMU answers): exit %d: %s", c, out)
	}
	time.Sleep(5 * time.Second)
	if strings.Contains(readFile(v.stderr), "resuming the guest") {
		t.Fatalf("vmm resumed the guest with the volume still full:\n%s", readFile(v.stderr))
	}

	freed := time.Now()
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	until(t, 30*time.Second, "vmm resumes the guest once the volume has room", func() bool {
		return strings.Contains(readFile(v.stderr), `level=INFO msg="resuming the guest: its full volumes have room again" data_avail=`)
	})
	t.Logf("resumed %s after the ballast was removed", time.Since(freed).Round(100*time.Millisecond))
	_, _ = v.expect(t, 300*time.Second, 0, "BERTH-WRITE-DONE ")
	want := sha256.Sum256(bytes.Repeat([]byte(fullPattern), fullBytes/len(fullPattern)+1)[:fullBytes])
	if c := readFile(v.console); !strings.Contains(c, "BERTH-WRITE-DONE "+hex.EncodeToString(want[:])) {
		t.Errorf("the guest read back other data than it wrote (want sha256 %x); console end:\n%s", want, tail(c, 2000))
	}
	if strings.Count(readFile(v.stderr), "the guest is paused: a disk's volume is full") != 1 {
		t.Logf("the guest paused more than once (backoff):\n%s", readFile(v.stderr))
	}

	until(t, 60*time.Second, "the guest begins to fill its RAM", func() bool { alive(); return strings.Contains(readFile(v.console), "BERTH-FILL-START") })
	t.Logf("filling from %s after start", time.Since(start).Round(time.Second))
	until(t, 600*time.Second, "the guest has filled its RAM", func() bool { alive(); return strings.Contains(readFile(v.console), "BERTH-FILL-DONE") })
	t.Logf("filled %s after start; the cgroup's peak: %d MiB of the %d MiB limit, %d MiB beyond guest RAM",
		time.Since(start).Round(time.Second), cg.peak()>>20, limit>>20, (cg.peak()-min(cg.peak(), guest))>>20)
	// probe ready after the resume and the fill: the guest runs and its sshd answers.
	deadline := time.Now().Add(300 * time.Second)
	for {
		alive()
		c, out := p.probe(t, env, "ready")
		if c == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe ready after the resume and the fill: %s\nleases: %s", out, readFile(leases))
		}
		time.Sleep(time.Second)
	}
	alive()
	if n := cg.oomKills(t); n != 0 {
		t.Errorf("the cgroup counts %d OOM kills", n)
	}
	// A guest whose RAM was just filled pages its shutdown's code back in from disk under
	// TCG: on a loaded 2-core CI machine that once took more than a minute (SHUTDOWN_TIMEOUT
	// is 180 s here; what the test asks is that the power-down is clean, not how fast).
	v.cmd.Process.Signal(syscall.SIGTERM)
	if code := v.exit(t, 240*time.Second); code != 0 {
		t.Errorf("SIGTERM: exit %d; stderr:\n%s\nconsole end:\n%s", code, readFile(v.stderr), tail(readFile(v.console), 3000))
	}
	if out, err := exec.Command("qemu-img", "check", disk).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check of the data disk: %v\n%s", err, out)
	}
	t.Logf("vmm's log:\n%s", readFile(v.stderr))
}
