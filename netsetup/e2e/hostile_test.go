package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-vm/berth/common/stage"
)

// Hostile input (issue 15, docs/security.md "Hostile input"): every refusal is
// exit 2, one line naming the variable, the termination message written, and
// nothing changed — links, addresses, routes, iptables and nft rules, sysctls
// and the run dir compared before and after.

// fullSnapshot is everything net-setup could change in the pod's netns and
// its files, with what moves by itself (operstate and carrier, IPv6 DAD, the
// bridge's timers) left out.
func (e *env) fullSnapshot(extraFiles ...string) string {
	e.t.Helper()
	var b strings.Builder
	const clean = `walk(if type == "object" then with_entries(select(.key | test("_timer$|^operstate$|^tentative$") | not)) else . end)` +
		` | walk(if type == "object" and has("flags") then .flags -= ["LOWER_UP", "NO-CARRIER", "M-DOWN"] else . end)`
	for _, cmd := range [][]string{
		{"sh", "-c", "ip -d -j link show | jq -S '" + clean + "'"},
		{"sh", "-c", "ip -j addr show | jq -S '" + clean + "'"},
		// linkdown follows carrier: a tap has it while net-setup holds it open.
		{"sh", "-c", `ip -4 -j route show table all | jq -S '[.[] | .flags -= ["linkdown"]]'`},
		// IPv6: the kernel adds a link-local address's local route when DAD ends,
		// and a multicast route whenever a link gets carrier (a tap does while
		// net-setup holds it open); neither is configuration.
		{"sh", "-c", `ip -6 -j route show table all | jq -S '[.[] | select((.type // "") != "multicast" and (.dst | startswith("fe80:") | not)) | .flags -= ["linkdown"]]'`},
		{"iptables-nft-save"},
		{"iptables-legacy-save"},
		{"sh", "-c", `nft list ruleset | sed 's/counter packets [0-9]* bytes [0-9]*/counter/'`},
		{"sh", "-c", "sysctl net.ipv4.ip_forward; cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || true"},
	} {
		out := e.run(e.pod, cmd...)
		fmt.Fprintf(&b, "## %s\n", strings.Join(cmd, " "))
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "#") { // iptables-save's timestamps
				continue
			}
			b.WriteString(l + "\n")
		}
	}
	fmt.Fprintf(&b, "## run dir %s\n%s", e.runDir, treeOf(e.t, e.runDir))
	for _, f := range extraFiles {
		fmt.Fprintf(&b, "## %s\n%s", f, describeFile(e.t, f))
	}
	return b.String()
}

// treeOf lists every entry under dir: type, mode, owner, device, link target, content hash.
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if os.IsNotExist(err) && path == dir {
			lines = append(lines, "(absent)")
			return nil
		}
		if err != nil {
			return err
		}
		lines = append(lines, describeFile(t, path))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func describeFile(t *testing.T, path string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return path + " " + err.Error()
	}
	s := fmt.Sprintf("%s mode=%o uid=%d gid=%d rdev=%d:%d", path, st.Mode, st.Uid, st.Gid, st.Rdev>>8&0xfff, st.Rdev&0xff)
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		target, _ := os.Readlink(path)
		s += " -> " + target
	case syscall.S_IFREG:
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		s += fmt.Sprintf(" size=%d sha256=%s", len(data), hex.EncodeToString(sum[:8]))
	}
	return s
}

func (e *env) terminationLog() string { return filepath.Join(e.runDir, "..", "termination-log") }

// refused runs net-setup with extra and checks the contract of bad input.
func (e *env) refused(extra map[string]string, name string, extraFiles ...string) {
	e.t.Helper()
	os.Remove(e.terminationLog())
	before := e.fullSnapshot(extraFiles...)
	code, out, errOut := e.netSetup(extra)
	if code != 2 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, name) {
		e.t.Errorf("%q: exit %d, stderr %q, stdout %q; want exit 2 and one line naming %s", extra, code, errOut, out, name)
	}
	if tl, err := os.ReadFile(e.terminationLog()); err != nil || !strings.Contains(string(tl), name) {
		e.t.Errorf("%q: termination log %q (%v), want the reason naming %s", extra, tl, err, name)
	}
	if after := e.fullSnapshot(extraFiles...); after != before {
		e.t.Errorf("%q: a refused run changed the pod:\n%s", extra, diffLines(before, after))
	}
}

// diffLines shows the lines only in a (-) and only in b (+).
func diffLines(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !mb[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ma[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// TestForeignLinksRefused: TAP, BRIDGE and POD_IFACE naming links of every
// kind that net-setup did not make, or the pod's own interface, or loopback:
// refused before anything changes. (The kernel here has no dummy module: ifb
// stands in for a link with no peer.)
func TestForeignLinksRefused(t *testing.T) {
	tap := func(mode string, args ...string) func(e *env) {
		return func(e *env) { e.ip(append([]string{"-n", e.pod, "tuntap", "add", "tap0", "mode", mode}, args...)...) }
	}
	for _, tc := range []struct {
		name  string
		setup func(e *env)
		env   map[string]string
		want  string // the variable named
	}{
		{"TAP eth0 the pod's interface", nil, map[string]string{"TAP": "eth0"}, "TAP"},
		{"BRIDGE eth0 the pod's interface", nil, map[string]string{"BRIDGE": "eth0"}, "BRIDGE"},
		{"TAP POD_IFACE", nil, map[string]string{"POD_IFACE": "eth0", "TAP": "eth0"}, "TAP"},
		{"BRIDGE POD_IFACE", nil, map[string]string{"POD_IFACE": "eth0", "BRIDGE": "eth0"}, "BRIDGE"},
		{"POD_IFACE lo", nil, map[string]string{"POD_IFACE": "lo"}, "POD_IFACE"},
		{"TAP lo", nil, map[string]string{"TAP": "lo"}, "TAP"},
		{"BRIDGE lo", nil, map[string]string{"BRIDGE": "lo"}, "BRIDGE"},
		{"TAP net1 a Multus veth", multusVeth, map[string]string{"TAP": "net1"}, "TAP"},
		{"BRIDGE net1 a Multus veth", multusVeth, map[string]string{"BRIDGE": "net1"}, "BRIDGE"},
		{"POD_IFACE net2 no IPv4 address", func(e *env) {
			e.ip("-n", e.pod, "link", "add", "net2", "type", "veth", "peer", "name", "net2p")
		}, map[string]string{"POD_IFACE": "net2"}, "POD_IFACE"},
		{"TAP net1 a macvlan", func(e *env) {
			e.ip("-n", e.pod, "link", "add", "net1", "link", "eth0", "type", "macvlan", "mode", "bridge")
		}, map[string]string{"TAP": "net1"}, "TAP"},
		{"TAP ifb0", func(e *env) { e.ip("-n", e.pod, "link", "add", "ifb0", "type", "ifb") }, map[string]string{"TAP": "ifb0"}, "TAP"},
		{"BRIDGE ifb0", func(e *env) { e.ip("-n", e.pod, "link", "add", "ifb0", "type", "ifb") }, map[string]string{"BRIDGE": "ifb0"}, "BRIDGE"},
		{"br0 a bridge not Berth's", func(e *env) {
			e.ip("-n", e.pod, "link", "add", "br0", "type", "bridge")
			e.ip("-n", e.pod, "addr", "add", "10.99.0.1/24", "dev", "br0")
		}, nil, "BRIDGE"},
		{"br0 a bridge with another alias", func(e *env) {
			e.ip("-n", e.pod, "link", "add", "br0", "type", "bridge")
			e.ip("-n", e.pod, "link", "set", "br0", "alias", "someone else's")
		}, nil, "BRIDGE"},
		{"br0 a tap with Berth's tap alias", func(e *env) {
			tap("tap")(e)
			e.ip("-n", e.pod, "link", "set", "tap0", "alias", stage.TapAlias)
		}, map[string]string{"BRIDGE": "tap0", "TAP": "tap1"}, "BRIDGE"},
		{"tap0 single-queue not Berth's", tap("tap", "user", "1234"), nil, "TAP"},
		{"tap0 multi-queue not Berth's", tap("tap", "multi_queue"), nil, "TAP"},
		{"tap0 a tun not Berth's", tap("tun"), nil, "TAP"},
		{"tap0 a tap with another alias", func(e *env) {
			tap("tap")(e)
			e.ip("-n", e.pod, "link", "set", "tap0", "alias", "qemu's")
		}, nil, "TAP"},
		{"TAP names Berth's bridge", func(e *env) {
			e.ip("-n", e.pod, "link", "add", "br9", "type", "bridge")
			e.ip("-n", e.pod, "link", "set", "br9", "alias", stage.BridgeAlias)
		}, map[string]string{"TAP": "br9"}, "TAP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, calico)
			if tc.setup != nil {
				tc.setup(e)
			}
			e.refused(tc.env, tc.want)
		})
	}
}

// multusVeth gives the pod a second interface, as Multus does: net1, a veth
// to the node with an address.
func multusVeth(e *env) {
	e.ip("-n", e.node, "link", "add", "m1", "type", "veth", "peer", "name", "net1", "netns", e.pod)
	e.ip("-n", e.pod, "addr", "add", "10.77.0.2/24", "dev", "net1")
	e.ip("-n", e.pod, "link", "set", "net1", "up")
	e.ip("-n", e.node, "link", "set", "m1", "up")
}

// TestBerthLinksAccepted: links net-setup made (they carry its ifalias) are
// reused, corrected and a second run changes nothing; a tap of net-setup's of
// the wrong shape (multi-queue) is re-made. A fresh run marks both links.
func TestBerthLinksAccepted(t *testing.T) {
	alias := func(e *env) map[string]string {
		out := e.run(e.pod, "sh", "-c", `ip -d -j link show | jq -r '.[] | "\(.ifname) \(.ifalias // "") \(.linkinfo.info_data.multi_queue // false)"'`)
		m := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			name, rest, _ := strings.Cut(l, " ")
			m[name] = rest
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		setup func(e *env)
	}{
		{"fresh", func(e *env) {}},
		{"earlier run's bridge and tap with other MTU owner and address", func(e *env) {
			e.ip("-n", e.pod, "link", "add", "br0", "mtu", "1500", "type", "bridge")
			e.ip("-n", e.pod, "link", "set", "br0", "alias", stage.BridgeAlias)
			e.ip("-n", e.pod, "addr", "add", "10.1.1.1/30", "dev", "br0")
			e.ip("-n", e.pod, "tuntap", "add", "tap0", "mode", "tap", "user", "1234")
			e.ip("-n", e.pod, "link", "set", "tap0", "alias", stage.TapAlias)
		}},
		{"Berth's tap multi-queue", func(e *env) {
			e.ip("-n", e.pod, "tuntap", "add", "tap0", "mode", "tap", "multi_queue")
			e.ip("-n", e.pod, "link", "set", "tap0", "alias", stage.TapAlias)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, calico)
			tc.setup(e)
			e.mustNetSetup(nil)
			e.mustNetSetup(nil, "--check")
			first := e.fullSnapshot()
			e.mustNetSetup(nil)
			if second := e.fullSnapshot(); second != first {
				t.Fatalf("a second run changed the pod:\n%s", diffLines(first, second))
			}
			a := alias(e)
			if a["br0"] != stage.BridgeAlias+" false" || a["tap0"] != stage.TapAlias+" false" {
				t.Fatalf("br0 %q, tap0 %q: want net-setup's ifalias on both and a single-queue tap", a["br0"], a["tap0"])
			}
			if leftovers := e.run(e.pod, "sh", "-c", "ip -o link show | grep -c ' berth-' || true"); strings.TrimSpace(leftovers) != "0" {
				t.Fatalf("a temporary bridge was left: %s", e.run(e.pod, "ip", "-o", "link", "show"))
			}
		})
	}
}

// TestHostileRunDir: a symlink, a FIFO, a directory (and, for the tun node,
// a regular file or another device) planted where net-setup writes its own
// files in the run volume is refused, exit 2 naming BERTH_RUN_DIR, and left
// alone, as is whatever a symlink points to.
func TestHostileRunDir(t *testing.T) {
	type plant struct {
		name string
		make func(t *testing.T, path, victim string)
	}
	symlink := plant{"symlink", func(t *testing.T, path, victim string) { must(t, os.Symlink(victim, path)) }}
	danglingSymlink := plant{"dangling symlink", func(t *testing.T, path, victim string) { must(t, os.Symlink(victim+".new", path)) }}
	fifo := plant{"FIFO", func(t *testing.T, path, _ string) { must(t, syscall.Mkfifo(path, 0o644)) }}
	dir := plant{"directory", func(t *testing.T, path, _ string) { must(t, os.Mkdir(path, 0o755)) }}
	regular := plant{"regular file", func(t *testing.T, path, _ string) { must(t, os.WriteFile(path, []byte("x"), 0o644)) }}
	devNull := plant{"char device 1:3", func(t *testing.T, path, _ string) {
		must(t, syscall.Mknod(path, syscall.S_IFCHR|0o666, 1<<8|3))
	}}
	symlinkToTun := plant{"symlink to a tun node", func(t *testing.T, path, victim string) {
		real := filepath.Join(filepath.Dir(victim), "real-tun")
		must(t, syscall.Mknod(real, syscall.S_IFCHR|0o666, 10<<8|200))
		must(t, os.Symlink(real, path))
	}}
	for _, tc := range []struct {
		file   string
		plants []plant
	}{
		{"dnsmasq.conf", []plant{symlink, danglingSymlink, fifo, dir}},
		{"net.json", []plant{symlink, danglingSymlink, fifo, dir}},
		{"tun", []plant{symlink, danglingSymlink, symlinkToTun, fifo, dir, regular, devNull}},
	} {
		for _, pl := range tc.plants {
			t.Run(tc.file+"/"+pl.name, func(t *testing.T) {
				e := newEnv(t, calico)
				must(t, os.MkdirAll(e.runDir, 0o755))
				victim := filepath.Join(filepath.Dir(e.runDir), "victim")
				must(t, os.WriteFile(victim, []byte("not net-setup's\n"), 0o640))
				pl.make(t, filepath.Join(e.runDir, tc.file), victim)
				e.refused(nil, "BERTH_RUN_DIR", victim, filepath.Join(filepath.Dir(e.runDir), "real-tun"))
				// --check reads the same files: it reports the plant, neither blocking on a
				// FIFO nor following a symlink.
				before := e.fullSnapshot(victim)
				if code, out, errOut := e.netSetup(nil, "--check"); code != 1 || !strings.Contains(out, filepath.Join(e.runDir, tc.file)) {
					t.Errorf("--check: exit %d, %q %q; want 1 naming %s", code, out, errOut, tc.file)
				}
				if after := e.fullSnapshot(victim); after != before {
					t.Errorf("--check changed the pod:\n%s", diffLines(before, after))
				}
			})
		}
	}
	t.Run("run dir is a file", func(t *testing.T) {
		e := newEnv(t, calico)
		must(t, os.Remove(e.runDir))
		must(t, os.WriteFile(e.runDir, nil, 0o644))
		e.refused(nil, "BERTH_RUN_DIR")
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestHostileEnv: malformed, out-of-range, injection- and path-shaped values
// of every variable net-setup reads (bin/net-setup -h), through the real
// binary: exit 2 naming the variable, nothing changed.
func TestHostileEnv(t *testing.T) {
	e := newEnv(t, calico)
	dir := filepath.Dir(e.runDir)
	fifo := filepath.Join(dir, "resolv.fifo")
	must(t, syscall.Mkfifo(fifo, 0o644))
	huge := filepath.Join(dir, "resolv.huge")
	must(t, os.WriteFile(huge, []byte(strings.Repeat("nameserver 10.0.0.1\n", 1<<16)), 0o644))
	resolvDir := filepath.Join(dir, "resolv.d")
	must(t, os.Mkdir(resolvDir, 0o755))
	for _, tc := range []struct {
		name, value string
	}{
		{"RESOLV_CONF", resolvDir},
		{"RESOLV_CONF", fifo},
		{"RESOLV_CONF", huge},
		{"RESOLV_CONF", "/dev/zero"},
		{"RESOLV_CONF", filepath.Join(dir, "missing")},
		{"RESOLV_CONF", "resolv.conf"},
		{"BERTH_RUN_DIR", e.runDir + ",x"},
		{"BERTH_RUN_DIR", e.runDir + "\ndhcp-range=1"},
		{"BERTH_RUN_DIR", e.runDir + "#x"},
		{"BERTH_RUN_DIR", e.runDir + " x"},
		{"BERTH_RUN_DIR", e.runDir + "/../run"},
		{"BERTH_RUN_DIR", e.runDir + "/ü"},
		{"BERTH_RUN_DIR", "run"},
		{"BRIDGE", "--"},
		{"BRIDGE", "br0\ninterface=eth0"},
		{"TAP", "tap 0"},
		{"TAP", "täp"},
		{"POD_IFACE", "eth0 "},
		{"VM_IP", "192.168.254.2\n"},
		{"VM_GW", "192.168.254.1 --"},
		{"VM_IP", "0.0.0.2"},
		{"TAP_UID", "107 --"},
		{"TAP_GID", "-1"},
		{"NO_VNC", "yes please"},
		{"IPTABLES_BACKEND", "nft;legacy"},
		{"LOG_LEVEL", "debug\n"},
		{"LOG_FORMAT", "json "},
	} {
		e.refused(map[string]string{tc.name: tc.value}, tc.name)
	}
}

// TestTempBridgeLeftByAKill: a net-setup killed between making its bridge
// under the temporary name and renaming it leaves a down, port-less
// berth-XXXXXXXX bridge (TestConverges met one); the next run removes it, and
// only such a bridge: one of another name, up, or with a port stays.
func TestTempBridgeLeftByAKill(t *testing.T) {
	e := newEnv(t, calico)
	e.ip("-n", e.pod, "link", "add", "berth-0a1b2c3d", "type", "bridge")           // a kill before the alias
	e.ip("-n", e.pod, "link", "add", "berth-4e5f6071", "type", "bridge")           // a kill before the rename
	e.ip("-n", e.pod, "link", "set", "berth-4e5f6071", "alias", stage.BridgeAlias) //
	e.ip("-n", e.pod, "link", "add", "berth-notmine", "type", "bridge")            // not the reserved name
	e.ip("-n", e.pod, "link", "add", "berth-8a9b0c1d", "type", "bridge")           // up: in use by someone
	e.ip("-n", e.pod, "link", "set", "berth-8a9b0c1d", "up")                       //
	e.mustNetSetup(nil)
	links := e.run(e.pod, "ip", "-o", "link", "show")
	for name, want := range map[string]bool{"berth-0a1b2c3d": false, "berth-4e5f6071": false, "berth-notmine": true, "berth-8a9b0c1d": true} {
		if got := strings.Contains(links, " "+name+":"); got != want {
			t.Errorf("%s present %v, want %v:\n%s", name, got, want, links)
		}
	}
}
