//go:build e2e

package localpod

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/roottest"
)

// guestServers answer on TCP 5900 and 8080 and UDP 9999 in the guest, each
// with its own name: what reaches the guest through the pod IP says so.
const guestServers = `
import socket, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen()
    while True:
        c, _ = s.accept(); c.sendall(b"guest-tcp-%d\n" % port); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        _, a = s.recvfrom(100); s.sendto(b"guest-udp-%d\n" % port, a)
for f, p in ((tcp, 5900), (tcp, 8080), (udp, 9999)):
    threading.Thread(target=f, args=(p,), daemon=True).start()
threading.Event().wait()
`

// guestBanner, run in the guest with ADDR PORT: the first bytes ADDR:PORT
// sends, or "none (why)".
const guestBanner = `
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    s.settimeout(3)
    print(s.recv(64).decode(errors="replace").strip() or "none")
except OSError as e:
    print("none (%s)" % e)
`

// guestShutdown is what the console shows when the guest powered off cleanly.
var guestShutdown = regexp.MustCompile(`reboot: Power down|System Power Off|Reached target.*Power-Off`)

// TestLocalPod is the whole pod's life without Kubernetes: a first start
// (download, new overlay, boot, every check of the running pod, SIGTERM), a
// second start on the same disk (no download, same overlay, data kept), and
// QEMU killed under vmm (vmm fails, its restart recovers).
func TestLocalPod(t *testing.T) {
	roottest.Require(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := FromEnv(repo)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := Start(ctx, cfg, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var b strings.Builder
		p.PrintTimings(&b)
		t.Logf("timings (never asserted):\n%s", b.String())
		p.Close()
	})
	t.Logf("work dir %s, namespaces %s %s, guest %s", p.Work, p.NodeNS, p.PodNS, p.GuestImage)

	var inode uint64
	token := "persist-" + fmt.Sprint(time.Now().UnixNano())
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"first-start", func(t *testing.T) {
			must(t, p.Stages(ctx, "first"))
			if p.ImageGets() < 1 {
				t.Fatal("image-fetch did not download from the node's image server")
			}
			inode = inodeOf(t, p.Overlay())
			must(t, p.WaitSSH(ctx, "first"))
		}},
		{"guest", func(t *testing.T) { checkGuest(ctx, t, p) }},
		{"ports", func(t *testing.T) { checkPorts(ctx, t, p) }},
		{"no-loopback-leak", func(t *testing.T) { checkNoLoopbackLeak(ctx, t, p) }},
		{"probes", func(t *testing.T) {
			must(t, p.Probe(ctx, "ready"))
			must(t, p.Probe(ctx, "live"))
		}},
		{"sigterm", func(t *testing.T) {
			if _, err := p.SSH(ctx, "echo "+token+" | sudo tee /var/lib/berth-persist >/dev/null && sync"); err != nil {
				t.Fatalf("could not write in the guest: %v", err)
			}
			checkSIGTERM(ctx, t, p, "first")
		}},
		{"second-start", func(t *testing.T) {
			gets := p.ImageGets()
			must(t, p.StopDnsmasq(ctx))
			must(t, p.Stages(ctx, "second"))
			if got := p.ImageGets(); got != gets {
				t.Fatalf("the second start downloaded the image again (%d GETs, %d before)", got, gets)
			}
			if got := inodeOf(t, p.Overlay()); got != inode {
				t.Fatalf("the overlay was replaced by a new file (inode %d, was %d)", got, inode)
			}
			must(t, p.WaitSSH(ctx, "second"))
			checkFile(ctx, t, p, token, "the file written before shutdown")
		}},
		{"qemu-killed", func(t *testing.T) {
			qemu := p.QEMUPid()
			if qemu == 0 {
				t.Fatalf("no QEMU child of vmm (pid %d)", p.VMM.Pid)
			}
			must(t, syscall.Kill(qemu, syscall.SIGKILL))
			code, err := p.VMM.Wait(ctx, 30*time.Second)
			must(t, err)
			if code == 0 {
				t.Fatal("vmm exited 0 after QEMU was killed, want non-zero")
			}
			t.Logf("QEMU SIGKILLed: vmm exit %d", code)
			must(t, p.StartVMM("restart"))
			must(t, p.WaitSSH(ctx, "restart"))
			checkFile(ctx, t, p, token, "after QEMU was killed and vmm restarted, the file")
			_, _, err = p.VMM.Stop(ctx, p.ShutdownTimeout+15*time.Second)
			must(t, err)
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			return // each step needs the ones before it
		}
	}
}

// checkGuest: the guest is the VM of the pod's spec: its hostname, the
// user-data's runcmd, the pod's DNS, the pod's MTU, its address on the /30.
func checkGuest(ctx context.Context, t *testing.T, p *Pod) {
	if got := ssh(ctx, t, p, "hostname"); got != p.VMName {
		t.Errorf("guest hostname is %q, want VM_NAME %q", got, p.VMName)
	}
	if _, err := p.SSHWithin(ctx, 200*time.Second, "timeout 180 cloud-init status --wait"); err != nil {
		t.Errorf("cloud-init status --wait failed or timed out: %v", err)
	}
	if got := ssh(ctx, t, p, "cat /var/lib/berth-marker 2>/dev/null || true"); got != "berth-runcmd-ok" {
		t.Errorf("the runcmd marker of user-data is missing (got %q)", got)
	}
	resolv := ssh(ctx, t, p, "cat /etc/resolv.conf")
	lines := strings.Split(resolv, "\n")
	for _, n := range Nameservers {
		if !contains(lines, "nameserver "+n) {
			t.Errorf("guest resolv.conf lacks nameserver %s:\n%s", n, resolv)
		}
	}
	// dhclient writes option 119's names as FQDNs (trailing dots): compare without them.
	var search []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "search" {
			for _, d := range f[1:] {
				search = append(search, strings.TrimSuffix(d, "."))
			}
		}
	}
	if got, want := strings.Join(search, " "), strings.Join(Search, " "); got != want {
		t.Errorf("guest resolv.conf search is %q, want the pod's %q:\n%s", got, want, resolv)
	}
	if got := ssh(ctx, t, p, "cat /sys/class/net/eth0/mtu"); got != fmt.Sprint(PodMTU) {
		t.Errorf("guest eth0 MTU is %s, want the pod's %d", got, PodMTU)
	}
	if got := ssh(ctx, t, p, "ip -4 -o addr show dev eth0 | awk '{print $4}'"); got != VMIP+"/30" {
		t.Errorf("guest eth0 has %q, want %s/30", got, VMIP)
	}
}

// checkPorts: the pod IP's ports are the guest's (TCP 8080, UDP 9999), but
// 5900 stays in the pod, where QEMU's VNC listens on loopback only.
func checkPorts(ctx context.Context, t *testing.T, p *Pod) {
	if _, err := p.SSH(ctx, "sudo systemd-run --quiet --unit berth-ports python3 -c '"+guestServers+"'"); err != nil {
		t.Fatalf("could not start the guest's test servers: %v", err)
	}
	must(t, Poll(ctx, 20*time.Second, "the guest's test servers listen on 8080", func() error {
		return guestListens(ctx, p, 8080)
	}))
	for _, c := range []struct {
		proto string
		port  int
	}{{"tcp", 8080}, {"udp", 9999}} {
		want := fmt.Sprintf("guest-%s-%d", c.proto, c.port)
		if got, err := Answer(p.NodeNS, c.proto, PodIP, c.port); got != want {
			t.Errorf("%s %d on the pod IP: got %q (%v), want the guest's %q", c.proto, c.port, got, err, want)
		}
	}
	got, err := Answer(p.NodeNS, "tcp", PodIP, 5900)
	if err := guestListens(ctx, p, 5900); err != nil {
		t.Fatalf("the guest's 5900 listener is not up, so the 5900 check proves nothing: %v", err)
	}
	if strings.HasPrefix(got, "guest-") {
		t.Errorf("TCP 5900 on the pod IP reached the guest (%q); it must stay in the pod", got)
	}
	if strings.HasPrefix(got, "RFB") {
		t.Errorf("TCP 5900 on the pod IP answered %q: QEMU's VNC is reachable from outside the pod", got)
	}
	t.Logf("TCP 8080 and UDP 9999 reach the guest; TCP 5900 does not (%q, %v)", got, err)
}

// guestListens: something listens on TCP port in the guest (read with ss,
// matched here).
func guestListens(ctx context.Context, p *Pod, port int) error {
	out, err := p.SSH(ctx, "ss -ltnH")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 4 && strings.HasSuffix(f[3], fmt.Sprintf(":%d", port)) {
			return nil
		}
	}
	return fmt.Errorf("nothing listens on %d in the guest:\n%s", port, out)
}

// checkNoLoopbackLeak: the pod's loopback services stay out of the guest's
// reach through the NAT (docs/security.md). QEMU's VNC answers RFB on the
// pod's 127.0.0.1:5900, and the guest gets no RFB banner at its gateway or at
// the pod IP. The control: the same path from the guest reaches its own 8080
// through the pod IP (hairpin). Needs the guest's servers of checkPorts.
func checkNoLoopbackLeak(ctx context.Context, t *testing.T, p *Pod) {
	if got, err := Answer(p.PodNS, "tcp", "127.0.0.1", 5900); !strings.HasPrefix(got, "RFB") {
		t.Fatalf("QEMU's VNC does not answer RFB on the pod's 127.0.0.1:5900 (%q, %v): the checks below would prove nothing", got, err)
	}
	for _, a := range []string{VMGW, PodIP} {
		if got := ssh(ctx, t, p, "python3 -c '"+guestBanner+"' "+a+" 5900"); strings.HasPrefix(got, "RFB") {
			t.Errorf("the guest reached QEMU's VNC at %s:5900 (%q)", a, got)
		}
	}
	if got := ssh(ctx, t, p, "python3 -c '"+guestBanner+"' "+PodIP+" 8080"); got != "guest-tcp-8080" {
		t.Errorf("control: the guest's own 8080 through the pod IP answered %q", got)
	}
}

// checkSIGTERM: SIGTERM to vmm powers the guest off by ACPI (the console
// shows it) and vmm exits 0 within SHUTDOWN_TIMEOUT.
func checkSIGTERM(ctx context.Context, t *testing.T, p *Pod, tag string) {
	code, took, err := p.VMM.Stop(ctx, p.ShutdownTimeout+15*time.Second)
	p.Timings = append(p.Timings, Timing{"sigterm-to-exit", took})
	must(t, err)
	console := p.ConsoleLog(tag)
	if code != 0 {
		t.Errorf("vmm exited %d after SIGTERM, want 0; the console ends:\n%s", code, Tail(console, 20))
	}
	if b, _ := os.ReadFile(console); !guestShutdown.Match(b) {
		t.Errorf("the console shows no guest shutdown after SIGTERM; it ends:\n%s", Tail(console, 20))
	}
	if took > p.ShutdownTimeout+time.Second { // SHUTDOWN_TIMEOUT is vmm's contract, in whole seconds
		t.Errorf("vmm took %s to exit after SIGTERM, longer than SHUTDOWN_TIMEOUT=%s", took.Round(time.Millisecond), p.ShutdownTimeout)
	}
}

func checkFile(ctx context.Context, t *testing.T, p *Pod, want, what string) {
	if got := ssh(ctx, t, p, "cat /var/lib/berth-persist"); got != want {
		t.Fatalf("%s is gone: /var/lib/berth-persist holds %q, want %q", what, got, want)
	}
}

// ssh runs cmd in the guest and fails the test when it fails.
func ssh(ctx context.Context, t *testing.T, p *Pod, cmd string) string {
	t.Helper()
	out, err := p.SSH(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func contains(lines []string, want string) bool {
	for _, l := range lines {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
