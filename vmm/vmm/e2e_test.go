package vmm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/config"
)

// These tests run the vmm binary as the pod runs it: non-root (uid 65534), in
// a network namespace of its own with a persistent tap owned by that uid, the
// tap reached through a tun node in the run dir (this uid cannot open the
// host's /dev/net/tun), the console on stdout.

const vmUID = 65534

var (
	buildOnce sync.Once
	vmmBin    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if vmmBin != "" {
		os.RemoveAll(filepath.Dir(vmmBin))
	}
	os.Exit(code)
}

func buildVMM(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("/var/tmp", "vmm-bin-")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755)
		vmmBin = filepath.Join(dir, "vmm")
		out, err := exec.Command("go", "build", "-o", vmmBin, "../cmd/vmm").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("build vmm: %v", buildErr)
	}
	return vmmBin
}

func randomID() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// pod is a work dir (run, disk dirs owned by vmUID) and a netns with tap0.
type pod struct {
	ns, work, run, disk string
	cgroupProcs         string // when set, vmm starts in this cgroup (its cgroup.procs file)
	cgroupMount         string // with cgroupProcs: shell that mounts the cgroup hierarchy in vmm's mount namespace
	// noDevTun hides /dev/net/tun in vmm's mount namespace (a tmpfs over /dev/net), as in a
	// container given no tun device, whatever mode the host's udev gave the node: vmm must
	// then use the node net-setup made in the run dir.
	noDevTun bool
}

func newPod(t *testing.T) *pod {
	t.Helper()
	p := newBarePod(t)
	p.netSetupLinks(t)
	return p
}

// newBarePod is newPod without the links: a netns with lo only.
func newBarePod(t *testing.T) *pod {
	t.Helper()
	work, err := os.MkdirTemp("/var/tmp", "vmm-test-")
	if err != nil {
		t.Fatal(err)
	}
	p := &pod{ns: "vmmt-" + randomID(), work: work, run: filepath.Join(work, "run"), disk: filepath.Join(work, "disk")}
	t.Cleanup(func() {
		roottest.KillNetnsProcesses(p.ns)
		time.Sleep(200 * time.Millisecond)
		exec.Command("ip", "netns", "del", p.ns).Run()
		if !t.Failed() || os.Getenv("KEEP_WORK") == "" {
			os.RemoveAll(work)
		}
	})
	for _, d := range []string{p.run, p.disk} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(work, 0o755)
	sh(t, "ip", "netns", "add", p.ns)
	sh(t, "ip", "-n", p.ns, "link", "set", "lo", "up")
	sh(t, "mknod", filepath.Join(p.run, "tun"), "c", "10", "200")
	sh(t, "chmod", "600", filepath.Join(p.run, "tun"))
	return p
}

// netSetupLinks makes the links as net-setup does: bridge br0 and persistent
// tap0 owned by vmUID, each with its ifalias, tap0 enslaved to br0, both up.
func (p *pod) netSetupLinks(t *testing.T) {
	t.Helper()
	ip := func(args ...string) { sh(t, "ip", append([]string{"-n", p.ns}, args...)...) }
	ip("link", "add", "br0", "type", "bridge")
	ip("link", "set", "br0", "alias", stage.BridgeAlias)
	ip("tuntap", "add", "tap0", "mode", "tap", "user", strconv.Itoa(vmUID), "group", strconv.Itoa(vmUID))
	ip("link", "set", "tap0", "alias", stage.TapAlias)
	ip("link", "set", "tap0", "master", "br0")
	ip("link", "set", "br0", "up")
	ip("link", "set", "tap0", "up")
}

func (p *pod) chown(t *testing.T) {
	t.Helper()
	sh(t, "chown", "-R", strconv.Itoa(vmUID)+":"+strconv.Itoa(vmUID), p.run, p.disk)
}

func (p *pod) env(extra ...string) []string {
	return append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "VM_NAME=testvm", "BERTH_RUN_DIR=" + p.run,
		"DISK_DIR=" + p.disk, "TERMINATION_LOG=" + filepath.Join(p.run, "termination-log"), "VM_MEMORY=512Mi"}, extra...)
}

// cmd runs the vmm binary in the pod's netns as vmUID with env -i.
func (p *pod) cmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	return p.cmdAs(t, vmUID, env, args...)
}

// cmdAs is cmd as uid (0: root, as the defect of a root vmm creating the tap needs).
func (p *pod) cmdAs(t *testing.T, uid int, env []string, args ...string) *exec.Cmd {
	argv := []string{"netns", "exec", p.ns}
	var mounts []string
	if p.cgroupProcs != "" {
		// ip netns exec mounts a fresh /sys without the cgroup hierarchy: mount it again, as a
		// container runtime does in the container, before vmm looks for its limit.
		mounts = append(mounts, p.cgroupMount)
	}
	if p.noDevTun {
		// ip netns exec runs in a mount namespace of its own: the tmpfs stays there.
		mounts = append(mounts, "mount -t tmpfs -o mode=0755 berth-no-tun /dev/net")
	}
	if len(mounts) > 0 {
		argv = append(argv, "sh", "-c", strings.Join(mounts, " && ")+` && exec "$@"`, "sh")
	}
	if uid != 0 {
		argv = append(argv, "setpriv", "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(uid), "--clear-groups")
	}
	argv = append(append(argv, "env", "-i"), env...)
	argv = append(argv, buildVMM(t))
	if p.cgroupProcs != "" {
		// root's shell moves itself into the cgroup, then becomes vmm: vmm, QEMU and every page they
		// touch are charged there from the start, as in the pod's container.
		return exec.Command("sh", append([]string{"-c", `echo $$ >"$0" && exec "$@"`, p.cgroupProcs, "ip"}, append(argv, args...)...)...)
	}
	return exec.Command("ip", append(argv, args...)...)
}

// start runs vmm in the background, its stdout (the console) in console.
type vmmProc struct {
	cmd     *exec.Cmd
	console string
	stderr  string
	done    chan struct{}
	err     error
}

func (p *pod) start(t *testing.T, name string, env []string) *vmmProc {
	t.Helper()
	return p.launch(t, name, env, nil, nil)
}

// startTTY runs vmm as the kubelet runs a container with stdin and tty (the chart's
// console.serial.interactive): stdin and stdout are a fresh pty's terminal. The test reads the
// other end into the console file and types into it (the returned master), as kubectl attach -it.
func (p *pod) startTTY(t *testing.T, name string, env []string) (*vmmProc, *os.File) {
	t.Helper()
	master, term := openPTY(t)
	t.Cleanup(func() { master.Close() })
	return p.launch(t, name, env, master, term), master
}

// launch starts vmm with its stderr in <name>.stderr and its console in <name>.console: stdout
// itself, or with a terminal (term, master not nil) stdin and stdout on term and master copied.
func (p *pod) launch(t *testing.T, name string, env []string, master, term *os.File) *vmmProc {
	t.Helper()
	v := &vmmProc{console: filepath.Join(p.work, name+".console"), stderr: filepath.Join(p.work, name+".stderr"), done: make(chan struct{})}
	out, _ := os.Create(v.console)
	errf, _ := os.Create(v.stderr)
	v.cmd = p.cmd(t, env)
	v.cmd.Stdout, v.cmd.Stderr = out, errf
	if term != nil {
		v.cmd.Stdin, v.cmd.Stdout = term, term
	}
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	copied := make(chan struct{})
	if term != nil {
		term.Close() // vmm and QEMU hold it now; reads of master end (EIO) when they are gone
		go func() { io.Copy(out, master); close(copied) }()
	} else {
		close(copied)
	}
	go func() {
		v.err = v.cmd.Wait()
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
		}
		out.Close()
		errf.Close()
		close(v.done)
	}()
	t.Cleanup(func() { v.cmd.Process.Kill() })
	return v
}

// openPTY opens a pseudo-terminal pair: the master and the terminal (not the test's controlling one).
func openPTY(t *testing.T) (master, term *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/pts/%d: %v", n, err)
	}
	return m, s
}

// expect waits (bounded) until the console, after byte from, holds one of wants; it returns the
// index of the want found first in the console and the offset just past it (not the console's
// length: what came after the match, e.g. the next prompt, must stay visible to the next expect).
func (v *vmmProc) expect(t *testing.T, bound time.Duration, from int, wants ...string) (int, int) {
	t.Helper()
	which, end, ok := v.lookFor(t, bound, from, wants...)
	if !ok {
		t.Fatalf("console: none of %q within %s; its end:\n%s", wants, bound, tail(readFile(v.console), 1500))
	}
	return which, end
}

// lookFor is expect that reports a timeout (ok false) instead of failing the test; vmm's exit
// still fails it.
func (v *vmmProc) lookFor(t *testing.T, bound time.Duration, from int, wants ...string) (int, int, bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	exited := false
	for {
		c := readFile(v.console)
		from = min(from, len(c))
		rest := c[from:]
		best, at := -1, len(rest)
		for i, w := range wants {
			if j := strings.Index(rest, w); j >= 0 && j < at {
				best, at = i, j
			}
		}
		if best >= 0 {
			return best, from + at + len(wants[best]), true
		}
		if exited {
			t.Fatalf("console: vmm exited before any of %q; its end:\n%s\nvmm's stderr:\n%s", wants, tail(c, 1500), tail(readFile(v.stderr), 2000))
		}
		if time.Now().After(deadline) {
			return -1, from, false
		}
		select {
		case <-v.done: // one more look: the console may have its last words
			exited = true
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// exit waits (bounded) and returns vmm's exit code.
func (v *vmmProc) exit(t *testing.T, bound time.Duration) int {
	t.Helper()
	select {
	case <-v.done:
	case <-time.After(bound):
		t.Fatalf("vmm did not exit within %s; stderr:\n%s", bound, readFile(v.stderr))
	}
	var ee *exec.ExitError
	if errors.As(v.err, &ee) {
		return ee.ExitCode()
	}
	if v.err != nil {
		t.Fatal(v.err)
	}
	return 0
}

// qemuPid is vmm's child QEMU (any of vmm's threads may have forked it).
func (v *vmmProc) qemuPid(t *testing.T) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(v.cmd.Process.Pid), "task", "*", "children"))
	var all []string
	for _, file := range files {
		b, _ := os.ReadFile(file)
		all = append(all, strings.Fields(string(b))...)
	}
	for _, f := range all {
		if comm, _ := os.ReadFile(filepath.Join("/proc", f, "comm")); strings.HasPrefix(string(comm), "qemu-system") {
			pid, _ := strconv.Atoi(f)
			return pid
		}
	}
	t.Fatalf("no QEMU child of vmm (children: %q)", all)
	return 0
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }

func readFile(p string) string { b, _ := os.ReadFile(p); return string(b) }

// until polls f every interval until it is true, failing after bound.
func until(t *testing.T, bound time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, bound)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (p *pod) probe(t *testing.T, env []string, which string) (int, string) {
	out, err := p.cmd(t, env, "probe", which).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// TestBinaryInputs: bad input exits 2 with one line naming the variable (and
// for missing files, the stage that makes them); --dry-run prints the command
// line and starts nothing. No root needed.
func TestBinaryInputs(t *testing.T) {
	bin := buildVMM(t)
	dir := t.TempDir()
	run, disk := filepath.Join(dir, "run"), filepath.Join(dir, "disk")
	os.MkdirAll(run, 0o755)
	os.MkdirAll(disk, 0o755)
	base := []string{"VM_NAME=testvm", "BERTH_RUN_DIR=" + run, "DISK_DIR=" + disk, "TERMINATION_LOG=" + filepath.Join(dir, "tl"), "ACCEL=tcg"}
	exe := func(env []string, args ...string) (int, string, string) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(append([]string{}, base...), env...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String(), errb.String()
		}
		return 0, out.String(), errb.String()
	}
	code, _, stderr := exe(nil)
	if code != 2 || !strings.Contains(stderr, "image-fetch") {
		t.Errorf("no overlay: exit %d, stderr %q; want 2 naming image-fetch", code, stderr)
	}
	if tl := readFile(filepath.Join(dir, "tl")); !strings.Contains(tl, "image-fetch") {
		t.Errorf("termination log %q does not say why", tl)
	}
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(disk, "testvm.qcow2"), "64M")
	code, _, stderr = exe(nil)
	if code != 2 || !strings.Contains(stderr, "seed-iso") {
		t.Errorf("no seed: exit %d, stderr %q; want 2 naming seed-iso", code, stderr)
	}
	os.WriteFile(filepath.Join(run, "seed.iso"), nil, 0o644)
	for _, bad := range []string{"VM_CPUS=0", "VM_CPUS=9999", "VM_MEMORY=64Mi", "VM_MEMORY=big", "ACCEL=xen", "VNC_LISTEN=0.0.0.0"} {
		code, _, stderr := exe([]string{bad})
		name, _, _ := strings.Cut(bad, "=")
		if code != 2 || !strings.Contains(stderr, name+"=") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr %q; want 2 and one line naming %s", bad, code, stderr, name)
		}
	}
	code, stdout, stderr := exe(nil, "--dry-run")
	if code != 0 || !strings.HasPrefix(stdout, "qemu-system-x86_64 ") || !strings.Contains(stdout, "fd=3") {
		t.Errorf("--dry-run: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, _ = exe(nil, "-h")
	if code != 0 || !strings.Contains(stdout, "SHUTDOWN_TIMEOUT") {
		t.Errorf("-h: exit %d, does not list SHUTDOWN_TIMEOUT: %s", code, stdout)
	}
}

// TestBinaryNoGuest: QEMU with a blank disk (no OS): probe live answers, probe
// ready does not; SIGTERM → power-down ignored → quit after SHUTDOWN_TIMEOUT
// → exit 1 with the reason in the termination log; a second run with QEMU
// SIGKILLed → exit 1 naming the signal.
func TestBinaryNoGuest(t *testing.T) {
	roottest.Require(t)
	needQEMU(t)
	p := newPod(t)
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(p.disk, "testvm.qcow2"), "64M")
	os.WriteFile(filepath.Join(p.run, "seed.iso"), nil, 0o644)
	p.chown(t)
	env := p.env("ACCEL=auto", "SHUTDOWN_TIMEOUT=2")
	tl := filepath.Join(p.run, "termination-log")

	v := p.start(t, "timeout", env)
	until(t, 30*time.Second, "probe live", func() bool { c, _ := p.probe(t, env, "live"); return c == 0 })
	if c, out := p.probe(t, env, "ready"); c != 1 {
		t.Errorf("probe ready with no lease: exit %d (%s), want 1", c, out)
	}
	if st := readFile(v.stderr); !strings.Contains(st, "KVM probe") {
		t.Errorf("ACCEL=auto logged no KVM probe result:\n%s", st)
	}
	v.cmd.Process.Signal(syscall.SIGTERM)
	if code := v.exit(t, 30*time.Second); code != 1 {
		t.Errorf("SIGTERM with a guest that ignores power-down: exit %d, want 1", code)
	}
	if got := readFile(tl); !strings.Contains(got, "did not power off") {
		t.Errorf("termination log = %q, want the shutdown timeout", got)
	}
	t.Logf("stderr:\n%s", readFile(v.stderr))

	v = p.start(t, "killed", env)
	until(t, 30*time.Second, "probe live", func() bool { c, _ := p.probe(t, env, "live"); return c == 0 })
	syscall.Kill(v.qemuPid(t), syscall.SIGKILL)
	if code := v.exit(t, 30*time.Second); code != 1 {
		t.Errorf("QEMU killed: exit %d, want 1", code)
	}
	if got := readFile(tl); !strings.Contains(got, "signal: killed") {
		t.Errorf("termination log = %q, want QEMU's death", got)
	}
	if c, _ := p.probe(t, env, "live"); c == 0 {
		t.Error("probe live succeeds with QEMU gone")
	}
}

// TestBinaryRealGuest boots the test guest (ci/testguest/build.sh) through the
// tap with dnsmasq on a bridge: console on stdout reaches the login prompt,
// probe ready passes once the guest has its lease and SSH accepts, the lease
// carries the MAC derived from VM_NAME, a login and a command typed on the
// terminal (stdin and stdout a pty, as kubectl attach -it) are answered by the
// guest's shell, the guest agent answers and freezes the guest's writes until
// thaw (checkGuestAgent), SIGTERM → ACPI shutdown → exit 0.
func TestBinaryRealGuest(t *testing.T) {
	roottest.Require(t)
	needQEMU(t)
	p := newPod(t)
	image := testGuest(t, p)
	seedWith(t, p, serialUserData)
	p.chown(t)

	leases := startDnsmasq(t, p)

	env := p.env("ACCEL=tcg", "VM_CPUS=2", "VM_MEMORY=1Gi", "SHUTDOWN_TIMEOUT=60", "READY_TCP_PORT=22", "IMAGE_DIR="+filepath.Dir(image))
	start := time.Now()
	v, term := p.startTTY(t, "guest", env)
	until(t, 420*time.Second, "login prompt on the console (vmm's stdout)", func() bool {
		select {
		case <-v.done:
			t.Fatalf("vmm exited during boot: %v\n%s", v.err, readFile(v.stderr))
		default:
		}
		return strings.Contains(readFile(v.console), "login:")
	})
	t.Logf("login prompt %s after start", time.Since(start).Round(time.Second))
	waitReady(t, p, env, v, 180*time.Second)
	t.Logf("ready %s after start", time.Since(start).Round(time.Second))
	if mac := config.MAC("testvm").String(); !strings.Contains(readFile(leases), mac) {
		t.Errorf("lease file does not show the derived MAC %s:\n%s", mac, readFile(leases))
	}
	if c, out := p.probe(t, env, "live"); c != 0 {
		t.Errorf("probe live: exit %d: %s", c, out)
	}
	if !strings.Contains(readFile(v.stderr), "interactive (stdin is a terminal") {
		t.Errorf("vmm did not log the console as interactive:\n%s", readFile(v.stderr))
	}
	shell := login(t, v, term)
	shell.run("echo berth-$((6*7))-serial", "berth-42-serial")
	t.Log("logged in on the serial console and ran a command through the terminal")
	agentStart := time.Now()
	checkGuestAgent(t, p, env, v, shell)
	t.Logf("guest agent checks: %s (of which %s the freeze held a write)", time.Since(agentStart).Round(100*time.Millisecond), frozenFor)
	shell.run("exit", "")

	// A client that gave up on its replies: qemu-guest-agent then spins writing them to a channel
	// with no host client and does not stop on SIGTERM (systemd waits 90 s for it, past
	// SHUTDOWN_TIMEOUT's 60) unless vmm reads them during the shutdown (agent.Drain).
	const unread = 20
	abandonAgentReplies(t, filepath.Join(p.run, stage.AgentSocketName), unread)
	time.Sleep(3 * time.Second)
	stop := time.Now()
	v.cmd.Process.Signal(syscall.SIGTERM)
	if code := v.exit(t, 80*time.Second); code != 0 {
		t.Errorf("SIGTERM: exit %d, want 0; stderr:\n%s", code, readFile(v.stderr))
	}
	t.Logf("SIGTERM to exit: %s, with %d guest agent replies left unread before it", time.Since(stop).Round(100*time.Millisecond), unread)
	if c := readFile(v.console); !strings.Contains(c, "reboot: Power down") {
		t.Errorf("console shows no power-down; its end:\n%s", tail(c, 2000))
	}
	if !strings.Contains(readFile(v.stderr), "read the guest agent's replies that no client had read") {
		t.Errorf("vmm did not log reading the replies left unread:\n%s", tail(readFile(v.stderr), 2000))
	}
}

// abandonAgentReplies sends n commands to the guest agent and closes the
// channel without reading a reply, as a client that timed out does.
func abandonAgentReplies(t *testing.T, sock string, n int) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Repeat(`{"execute":"guest-network-get-interfaces"}`+"\n", n))); err != nil {
		t.Fatal(err)
	}
}

// serialUserData gives the default user a password (set-passwords runs in cloud-init's config
// stage, possibly after the login prompt appears: loginOnSerial retries).
const serialUserData = "#cloud-config\npassword: berth-serial\nchpasswd: {expire: false}\n"

// frozenFor is how long checkGuestAgent keeps the guest frozen with a write waiting.
const frozenFor = 5 * time.Second

// checkGuestAgent, in the running test guest (qemu-guest-agent installed,
// started by its udev rule): the agent answers vmm agent ping (asked until
// it does: it starts late in the boot), osinfo names Debian, probe ready
// with READY_WHEN=agent passes, vmm logged the guest's OS and address once;
// vmm agent freeze makes a write typed on the serial console (logged in:
// shell) wait for frozenFor, status says frozen, and after thaw the write
// completes and status says thawed.
func checkGuestAgent(t *testing.T, p *pod, env []string, v *vmmProc, shell *serialShell) {
	t.Helper()
	agent := func(args ...string) (int, string) {
		out, err := p.cmd(t, env, append([]string{"agent"}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	want := func(args string, wantOut string) {
		t.Helper()
		if c, out := agent(strings.Fields(args)...); c != 0 || !strings.Contains(out, wantOut) {
			t.Fatalf("vmm agent %s: exit %d, %q; want 0 with %q", args, c, out, wantOut)
		}
	}
	start := time.Now()
	var last string
	until(t, 90*time.Second, "vmm agent ping answered", func() bool {
		c, out := agent("ping")
		last = out
		return c == 0
	})
	t.Logf("the guest agent answers %s after the checks began (last ping: %s)", time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(last))
	want("osinfo", "Debian GNU/Linux 12")
	if c, out := p.probe(t, append(env, "READY_WHEN=agent"), "ready"); c != 0 || !strings.Contains(out, "the guest agent answers guest-ping") {
		t.Errorf("probe ready with READY_WHEN=agent: exit %d: %s", c, out)
	}
	const greeting = `msg="the guest agent answers"`
	until(t, 30*time.Second, "vmm logs the guest's OS and address", func() bool { return strings.Contains(readFile(v.stderr), greeting) })
	line := ""
	for _, l := range strings.Split(readFile(v.stderr), "\n") {
		if strings.Contains(l, greeting) {
			line = l
		}
	}
	t.Logf("vmm's log: %s", line)
	if !strings.Contains(line, `os="Debian GNU/Linux 12`) || !strings.Contains(line, "eth0="+stage.DefaultVMIP+"/") || strings.Contains(line, "127.0.0.1") {
		t.Errorf("vmm's greeting of the guest agent lacks the OS or eth0's address (or shows the loopback): %s", line)
	}

	want("status", "thawed")
	want("freeze", "froze")
	want("status", "frozen")
	before := shell.from
	shell.run("echo frozen >/home/debian/frozen-write && echo WRITE-$((6*7))-DONE", "")
	time.Sleep(frozenFor)
	if c := readFile(v.console); strings.Contains(c[min(before, len(c)):], "WRITE-42-DONE") {
		t.Errorf("a write completed while the guest was frozen; console end:\n%s", tail(c, 1500))
	}
	thawed := time.Now()
	want("thaw", "thawed")
	_, shell.from = v.expect(t, 30*time.Second, before, "WRITE-42-DONE")
	t.Logf("the write waiting for %s completed %s after the thaw began", frozenFor, time.Since(thawed).Round(10*time.Millisecond))
	want("status", "thawed")
	if n := strings.Count(readFile(v.stderr), greeting); n != 1 {
		t.Errorf("vmm greeted the guest agent %d times in one boot, want once", n)
	}
}

// serialLogin logs in as debian on the serial console through the terminal and returns the
// console offset after the shell's prompt.
func serialLogin(t *testing.T, v *vmmProc, term *os.File) int {
	t.Helper()
	typ := func(s string) {
		if _, err := term.WriteString(s); err != nil {
			t.Fatalf("type on the console: %v", err)
		}
	}
	from := len(readFile(v.console))
	typ("\r") // getty prints the prompt again
	for try := 1; ; try++ {
		// After "Login incorrect" login(1) prompts again by itself: another Enter there would be
		// an empty user name, answered with "Password:", not "login:". No prompt yet (an Enter
		// typed while getty was still starting is lost, and a loaded machine's TCG guest is
		// slow): Enter again, up to 4 times.
		found := false
		for enter := 0; enter < 4 && !found; enter++ {
			if enter > 0 {
				t.Logf("serial console: no login prompt within 45 s: Enter again")
				typ("\r")
			}
			_, from, found = v.lookFor(t, 45*time.Second, from, "login:")
		}
		if !found {
			t.Fatalf("console: no login prompt within 3 min, Enter typed 4 times; its end:\n%s", tail(readFile(v.console), 1500))
		}
		typ("debian\r")
		_, from = v.expect(t, 30*time.Second, from, "Password:")
		typ("berth-serial\r")
		var which int
		which, from = v.expect(t, 60*time.Second, from, "debian@testvm", "Login incorrect")
		if which == 0 {
			return from
		}
		if try == 12 {
			t.Fatalf("login on the serial console: still 'Login incorrect' after %d tries", try)
		}
		time.Sleep(5 * time.Second) // cloud-init has not set the password yet
	}
}

// TestBinaryPID1: vmm as PID 1 of a PID namespace (as in its container) reaps
// an orphan re-parented to it, and still turns SIGTERM into a shutdown. The
// orphan comes from a QEMU wrapper (QEMU=) that leaves a `sleep` behind.
func TestBinaryPID1(t *testing.T) {
	roottest.Require(t)
	bin := needQEMU(t)
	p := newPod(t)
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(p.disk, "testvm.qcow2"), "64M")
	os.WriteFile(filepath.Join(p.run, "seed.iso"), nil, 0o644)
	wrapper := filepath.Join(p.work, "qemu-wrapper")
	os.WriteFile(wrapper, []byte("#!/bin/sh\n(sleep 3 &)\nexec "+bin+" \"$@\"\n"), 0o755)
	p.chown(t)
	env := p.env("ACCEL=tcg", "SHUTDOWN_TIMEOUT=2", "NO_VNC=true", "QEMU="+wrapper)

	argv := append([]string{"netns", "exec", p.ns, "unshare", "--pid", "--fork", "--kill-child", "setpriv",
		"--reuid=" + strconv.Itoa(vmUID), "--regid=" + strconv.Itoa(vmUID), "--clear-groups", "env", "-i"}, env...)
	cmd := exec.Command("ip", append(argv, buildVMM(t))...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var vmmPid int
	until(t, 10*time.Second, "vmm running under unshare", func() bool {
		vmmPid = childNamed(cmd.Process.Pid, "vmm")
		return vmmPid != 0
	})
	until(t, 30*time.Second, "probe live", func() bool { c, _ := p.probe(t, env, "live"); return c == 0 })
	sleepPid := childNamed(vmmPid, "sleep")
	if sleepPid == 0 {
		t.Fatal("the orphan sleep was not re-parented to vmm: vmm is not PID 1 here, the test proves nothing")
	}
	until(t, 10*time.Second, "orphan reaped (no zombie left)", func() bool {
		_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(sleepPid)))
		return err != nil
	})
	syscall.Kill(vmmPid, syscall.SIGTERM)
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("vmm as PID 1 after SIGTERM (guest ignores power-down): %v, want exit 1", err)
		}
		if !strings.Contains(stderr.String(), "did not power off") {
			t.Errorf("stderr: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("vmm as PID 1 did not exit after SIGTERM")
	}
}

// childNamed returns a child of pid whose comm is name (0 if none).
func childNamed(pid int, name string) int {
	files, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "children"))
	for _, file := range files {
		b, _ := os.ReadFile(file)
		for _, f := range strings.Fields(string(b)) {
			if comm, _ := os.ReadFile(filepath.Join("/proc", f, "comm")); strings.TrimSpace(string(comm)) == name {
				n, _ := strconv.Atoi(f)
				return n
			}
		}
	}
	return 0
}
