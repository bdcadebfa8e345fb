package e2e

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/common/tuntap"
)

// TestCheckNamesEachProperty: after a run, each property of each resource
// net-setup owns is broken in turn; the real binary's --check names it (exit
// 1, a "differs:" line), and a second run repairs it: --check passes again and
// the state is the first run's. One row per property.
func TestCheckNamesEachProperty(t *testing.T) {
	e := newEnv(t, calico)
	e.mustNetSetup(nil)
	e.mustNetSetup(nil, "--check")
	want := e.snapshot()
	ipt := func(args ...string) func(*env) func() {
		return func(e *env) func() { e.run(e.pod, append([]string{"iptables-nft"}, args...)...); return nil }
	}
	ipb := func(cmds ...string) func(*env) func() {
		return func(e *env) func() { roottest.IPBatch(e.t, e.pod, cmds...); return nil }
	}
	tun := filepath.Join(e.runDir, stage.TunNodeName)
	for _, tc := range []struct {
		name  string
		brk   func(e *env) func() // breaks the property; what it returns (if not nil) undoes what --check must not see undone
		diffs []string            // what --check names, each in a "differs:" line
	}{
		{"bridge IPv6 address", ipb("addr add fd00::1/64 dev br0 nodad"), []string{"bridge br0 has IPv6 address fd00::1/64, want none"}},
		{"bridge IPv6 link-local", ipb("addr add fe80::1/64 dev br0 nodad"), []string{"bridge br0 has IPv6 address fe80::1/64, want none"}},
		{"bridge addrgenmode", ipb("link set br0 addrgenmode eui64"), []string{"bridge br0 has IPv6 addrgenmode 0, want none"}},
		{"bridge down", ipb("link set br0 down"), []string{"bridge br0 is down"}},
		{"bridge MTU", ipb("link set br0 mtu 1400"), []string{"bridge br0 has MTU 1400, want 1450"}},
		{"bridge address", ipb("addr del 192.168.254.1/30 dev br0", "addr add 192.168.254.5/30 dev br0"),
			[]string{"bridge br0 has 192.168.254.5/30, want 192.168.254.1/30"}},
		{"bridge second address", ipb("addr add 10.1.1.1/30 dev br0"), []string{"bridge br0 has 2 IPv4 addresses, want only 192.168.254.1/30"}},
		{"bridge missing", ipb("link del br0"), []string{"bridge br0 is missing", "tap tap0 is not attached to br0"}},
		{"bridge TX checksum", func(e *env) func() { e.run(e.pod, "ethtool", "-K", "br0", "tx", "on"); return nil },
			[]string{"bridge br0 has TX checksum offload on"}},
		{"tap IPv6 address", ipb("addr add fe80::2/64 dev tap0 nodad"), []string{"tap tap0 has IPv6 address fe80::2/64, want none"}},
		{"tap addrgenmode", ipb("link set tap0 addrgenmode eui64"), []string{"tap tap0 has IPv6 addrgenmode 0, want none"}},
		{"tap down", ipb("link set tap0 down"), []string{"tap tap0 is down"}},
		// The kernel lowers the bridge's MTU to its smallest port's.
		{"tap MTU", ipb("link set tap0 mtu 1400"), []string{"bridge br0 has MTU 1400, want 1450", "tap tap0 has MTU 1400, want 1450"}},
		{"tap not on the bridge", ipb("link set tap0 nomaster"), []string{"tap tap0 is not attached to br0"}},
		{"tap owner", func(e *env) func() { tapIoctl(e, unix.TUNSETOWNER, 1234).Close(); return nil },
			[]string{"tap tap0 is owned by 1234:65534, want 65534:65534"}},
		// A tap that is not persistent lives as long as its descriptor: the
		// descriptor is closed (the tap goes) before the repair.
		{"tap not persistent", func(e *env) func() { f := tapIoctl(e, unix.TUNSETPERSIST, 0); return func() { f.Close() } },
			[]string{"tap tap0 is not persistent"}},
		{"tap multi-queue", ipb("link del tap0", "tuntap add tap0 mode tap multi_queue user 65534 group 65534",
			`link set tap0 alias "`+stage.TapAlias+`"`), []string{"tap tap0 is multi-queue, want a single-queue tap"}},
		{"tap missing", ipb("link del tap0"), []string{"tap tap0 is missing"}},
		{"tun node mode", func(e *env) func() { must(e.t, os.Chmod(tun, 0o666)); return nil }, []string{"tun node " + tun + " has mode 0666, want 0600"}},
		{"tun node owner", func(e *env) func() { must(e.t, os.Chown(tun, 0, 0)); return nil }, []string{"tun node " + tun + " is owned by 0:0, want 65534:65534"}},
		{"tun node missing", func(e *env) func() { must(e.t, os.Remove(tun)); return nil }, []string{"tun node " + tun + " is missing"}},
		{"ip_forward", func(e *env) func() { e.run(e.pod, "sysctl", "-qw", "net.ipv4.ip_forward=0"); return nil }, []string{"net.ipv4.ip_forward is 0"}},
		{"bridge-nf-call-iptables", func(e *env) func() {
			e.run(e.pod, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
			return nil
		}, []string{"net.bridge.bridge-nf-call-iptables is 1: the VM cannot reach its own pod IP"}},
		{"nat rule missing", ipt("-t", "nat", "-D", "BERTH-PREROUTING", "1"), []string{"table nat: chain BERTH-PREROUTING is\n"}},
		{"nat jump missing", ipt("-t", "nat", "-D", "POSTROUTING", "-m", "comment", "--comment", "berth", "-j", "BERTH-POSTROUTING"),
			[]string{"table nat: POSTROUTING jumps to BERTH-POSTROUTING 0 times, want once"}},
		{"filter rule edited", ipt("-t", "filter", "-R", "BERTH-INPUT", "4", "-i", "br0", "-j", "ACCEPT"), []string{"table filter: chain BERTH-INPUT is\n"}},
		{"filter rule added", ipt("-t", "filter", "-A", "BERTH-FORWARD", "-j", "ACCEPT"), []string{"table filter: chain BERTH-FORWARD is\n"}},
		{"filter jump doubled", ipt("-t", "filter", "-A", "INPUT", "-m", "comment", "--comment", "berth", "-j", "BERTH-INPUT"),
			[]string{"table filter: INPUT jumps to BERTH-INPUT 2 times, want once"}},
		{"mangle chain missing", func(e *env) func() {
			ipt("-t", "mangle", "-D", "FORWARD", "-m", "comment", "--comment", "berth", "-j", "BERTH-MSS")(e)
			ipt("-t", "mangle", "-F", "BERTH-MSS")(e)
			ipt("-t", "mangle", "-X", "BERTH-MSS")(e)
			return nil
		}, []string{"table mangle: FORWARD jumps to BERTH-MSS 0 times, want once", "table mangle: chain BERTH-MSS is missing"}},
		{"dnsmasq.conf edited", appendTo(filepath.Join(e.runDir, "dnsmasq.conf"), "dhcp-range=10.0.0.2,10.0.0.2\n"),
			[]string{filepath.Join(e.runDir, "dnsmasq.conf") + " differs from the plan"}},
		{"net.json edited", appendTo(filepath.Join(e.runDir, "net.json"), " "), []string{filepath.Join(e.runDir, "net.json") + " differs from the plan"}},
		{"net.json missing", func(e *env) func() { must(e.t, os.Remove(filepath.Join(e.runDir, "net.json"))); return nil },
			[]string{filepath.Join(e.runDir, "net.json") + " is missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outer := e.t
			e.t = t // the env's helpers fail this row
			defer func() { e.t = outer }()
			undo := tc.brk(e)
			code, out, errOut := e.netSetup(nil, "--check")
			if undo != nil {
				undo()
			}
			if code != 1 {
				t.Errorf("--check exited %d, want 1:\n%s%s", code, out, errOut)
			}
			for _, d := range tc.diffs {
				if !strings.Contains(out, "differs: "+d) {
					t.Errorf("--check does not name %q:\n%s", d, out)
				}
			}
			if strings.Count(out, "differs: ") != len(tc.diffs) {
				t.Errorf("--check names %d differences, want %d (%q):\n%s", strings.Count(out, "differs: "), len(tc.diffs), tc.diffs, out)
			}
			e.mustNetSetup(nil)
			e.mustNetSetup(nil, "--check")
			// A re-made link has another index and comes later in the list.
			if got := sortedLines(normalize(e.snapshot(), e)); got != sortedLines(normalize(want, e)) {
				t.Errorf("the repaired state is not the first run's:\n%s\nwant:\n%s", got, sortedLines(normalize(want, e)))
			}
		})
	}
}

func sortedLines(s string) string {
	l := strings.Split(s, "\n")
	sort.Strings(l)
	return strings.Join(l, "\n")
}

func appendTo(path, data string) func(*env) func() {
	return func(e *env) func() {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		must(e.t, err)
		_, err = f.WriteString(data)
		must(e.t, err)
		must(e.t, f.Close())
		return nil
	}
}

// tapIoctl attaches to the pod's tap0 through /dev/net/tun, from a thread in
// the pod's namespace, and sets one of its TUNSET* values; it returns the
// descriptor, which the caller closes.
func tapIoctl(e *env, req uint, val int) *os.File {
	e.t.Helper()
	type result struct {
		f   *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread, in the pod's netns, ends with the goroutine
		r := result{}
		defer func() { done <- r }()
		ns, err := os.Open("/run/netns/" + e.pod)
		if r.err = err; err != nil {
			return
		}
		defer ns.Close()
		if r.err = unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); r.err != nil {
			return
		}
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if r.err = err; err != nil {
			return
		}
		f := os.NewFile(uintptr(fd), "/dev/net/tun")
		ifr, err := unix.NewIfreq("tap0")
		if r.err = err; err == nil {
			ifr.SetUint16(tuntap.Flags)
			if r.err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); r.err == nil {
				r.err = unix.IoctlSetInt(fd, req, val)
			}
		}
		if r.err != nil {
			f.Close()
			return
		}
		r.f = f
	}()
	r := <-done
	if r.err != nil {
		e.t.Fatalf("tap0 in %s: ioctl %#x = %d: %v", e.pod, req, val, r.err)
	}
	return r.f
}
