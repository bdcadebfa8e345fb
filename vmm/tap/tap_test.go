package tap

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/roottest"
)

// inNetns runs f on a thread switched into a fresh network namespace holding
// a persistent tap "tap0" created the way net-setup does (no VNET_HDR, owned by
// the uid that attaches: root here) and a
// tun-mode device "tun0".
func inNetns(t *testing.T, f func()) {
	t.Helper()
	roottest.Require(t)
	b := make([]byte, 3)
	rand.Read(b)
	ns := "vmmtap-" + hex.EncodeToString(b)
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"-n", ns, "tuntap", "add", "tap0", "mode", "tap", "user", "0"}, // owned by the test's uid, as net-setup's TAP_UID
		{"-n", ns, "tuntap", "add", "tun0", "mode", "tun"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })

	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its netns
		fd, err := unix.Open(filepath.Join("/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			t.Error(err)
			return
		}
		f()
	}()
	<-done
}

// TestAttachVnetHdr: attaching to a persistent tap made without VNET_HDR
// with VNET_HDR works (the kernel keeps the attaching file's choice), and the
// flags read back say so; the tap keeps working without it too.
func TestAttachVnetHdr(t *testing.T) {
	inNetns(t, func() {
		f, dev, vnet, err := Attach(Devices("/nonexistent"), "tap0")
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		flags, err := Flags(f)
		if err != nil {
			t.Error(err)
			return
		}
		t.Logf("attached through %s, vnet_hdr=%v, flags %#x", dev, vnet, flags)
		if !vnet || flags&VnetHdr == 0 || flags&unix.IFF_TAP == 0 || flags&unix.IFF_NO_PI == 0 {
			t.Errorf("vnet=%v flags=%#x, want TAP|NO_PI|VNET_HDR", vnet, flags)
		}
		f.Close()
		g, err := Open("/dev/net/tun", "tap0", BaseFlags)
		if err != nil {
			t.Errorf("re-attach without VNET_HDR: %v", err)
			return
		}
		g.Close()
	})
}

// TestAttachErrors: a tun-mode device, a missing device and a missing clone
// device all fail with errors naming what was tried.
func TestAttachErrors(t *testing.T) {
	inNetns(t, func() {
		if _, _, _, err := Attach([]string{"/dev/net/tun"}, "tun0"); err == nil {
			t.Error("attached a TAP to a TUN device")
		} else {
			t.Log(err)
		}
		_, _, _, err := Attach([]string{"/nonexistent/tun"}, "tap0")
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/tun") {
			t.Errorf("missing clone device: err = %v, want one naming it", err)
		}
		_, _, _, err = Attach([]string{"/nonexistent/tun"}, "nosuch0")
		if err == nil || !strings.Contains(err.Error(), "net-setup makes the tap") {
			t.Errorf("missing tap: err = %v, want one naming net-setup", err)
		}
		// The first device failing does not stop the second from being tried.
		f, dev, _, err := Attach([]string{"/nonexistent/tun", "/dev/net/tun"}, "tap0")
		if err != nil || dev != "/dev/net/tun" {
			t.Errorf("fallback: dev %q, err %v", dev, err)
			return
		}
		f.Close()
	})
}

// TestOpenNeverCreates: TUNSETIFF on a name that does not exist creates a
// transient tap when the caller has CAP_NET_ADMIN (this test runs as root):
// Open must refuse instead, and leave no link behind.
func TestOpenNeverCreates(t *testing.T) {
	inNetns(t, func() {
		f, err := Open("/dev/net/tun", "nosuch0", BaseFlags)
		if err == nil {
			t.Error("Open created and attached a tap that did not exist")
			f.Close()
			return
		}
		t.Log(err)
		if _, err := net.InterfaceByName("nosuch0"); err == nil {
			t.Error("a link nosuch0 exists after Open")
		}
		// A tap that exists and is this uid's still attaches.
		g, err := Open("/dev/net/tun", "tap0", BaseFlags)
		if err != nil {
			t.Errorf("attach to the existing tap: %v", err)
			return
		}
		g.Close()
	})
}

// TestOpenRefusesOtherNodes: the tun node in the shared run dir must be the tun
// clone device itself: a symlink to it, another character device and a FIFO
// are refused (the FIFO without hanging).
func TestOpenRefusesOtherNodes(t *testing.T) {
	inNetns(t, func() {
		dir := t.TempDir()
		link := filepath.Join(dir, "tun-symlink")
		fifo := filepath.Join(dir, "tun-fifo")
		null := filepath.Join(dir, "tun-null")
		if err := os.Symlink("/dev/net/tun", link); err != nil {
			t.Error(err)
			return
		}
		if err := unix.Mkfifo(fifo, 0o600); err != nil {
			t.Error(err)
			return
		}
		if err := unix.Mknod(null, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
			t.Error(err)
			return
		}
		for _, dev := range []string{link, fifo, null} {
			f, err := Open(dev, "tap0", BaseFlags)
			if err == nil {
				t.Errorf("%s: attached through it", dev)
				f.Close()
				continue
			}
			if !strings.Contains(err.Error(), dev) {
				t.Errorf("%s: error does not name it: %v", dev, err)
			}
			t.Log(err)
		}
	})
}
