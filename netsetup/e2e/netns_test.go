// Package e2e runs the real net-setup binary in fresh network namespaces: a
// "node", a "pod" shaped like Calico's (or the bridge CNI's) and a "vm"
// namespace on the bridge standing in for the guest. Real dnsmasq, real
// busybox udhcpc, real iptables, real traffic. Root only.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stage"
)

var netSetup string // the binary under test, built by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-netsetup-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	netSetup = filepath.Join(dir, "net-setup")
	build := exec.Command("go", "build", "-o", netSetup, "../cmd/net-setup")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build net-setup: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	vmIP    = "192.168.254.2"
	vmGW    = "192.168.254.1"
	tapUID  = "65534"
	resolvC = "search berth-test.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\nnameserver 10.96.0.11\noptions ndots:5\n"
)

// shape is how the CNI wired the pod: make returns the node and the pod
// namespaces, deleted when the test ends.
type shape struct {
	name   string
	podIP  string
	nodeIP string
	mtu    int
	make   func(t *testing.T) (node, pod string)
}

// calico: common/roottest's Calico-shaped pod (/32, default via 169.254.1.1
// onlink), routed by its node (proxy ARP, a /32 route to the pod).
var calico = shape{name: "calico", podIP: roottest.PodIP, nodeIP: roottest.NodeIP, mtu: 1450,
	make: func(t *testing.T) (string, string) { return roottest.RoutedPod(t) }}

// bridgeCNI: the node's bridge holds the gateway of a /24.
var bridgeCNI = shape{name: "bridge", podIP: "10.88.0.7", nodeIP: "10.88.0.1", mtu: 1500, make: func(t *testing.T) (string, string) {
	node, pod := roottest.Netns(t, "bnode-"), roottest.Netns(t, "bpod-")
	roottest.IPBatch(t, node, "link add cni0 type bridge", "addr add 10.88.0.1/24 dev cni0", "link set cni0 up",
		"link add veth0 type veth peer name eth0 netns "+pod, "link set veth0 master cni0 up")
	roottest.IPBatch(t, pod, "addr add 10.88.0.7/24 dev eth0", "link set eth0 up", "route add default via 10.88.0.1")
	return node, pod
}}

// env is one test's namespaces and files.
type env struct {
	t                  *testing.T
	node, pod, vm      string
	podIP, nodeIP      string
	mtu                int
	runDir, resolvConf string
}

func newEnv(t *testing.T, s shape) *env {
	roottest.Require(t)
	e := &env{t: t, podIP: s.podIP, nodeIP: s.nodeIP, mtu: s.mtu}
	dir := t.TempDir()
	e.runDir = filepath.Join(dir, "run") // the run volume's mount point: net-setup never creates it
	if err := os.Mkdir(e.runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.resolvConf = filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(e.resolvConf, []byte(resolvC), 0o644); err != nil {
		t.Fatal(err)
	}
	e.node, e.pod = s.make(t)
	e.vm = roottest.Netns(t, "bvm-")
	return e
}

func (e *env) ip(args ...string) {
	e.t.Helper()
	roottest.IP(e.t, args...)
}

// run runs a command in a namespace and returns its stdout; fails the test on error.
func (e *env) run(ns string, args ...string) string {
	e.t.Helper()
	out, err := e.try(ns, args...)
	if err != nil {
		e.t.Fatalf("in %s: %s: %v", ns, strings.Join(args, " "), err)
	}
	return out
}

func (e *env) try(ns string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// netSetup runs the binary in the pod namespace with the test's environment
// plus extra, returning its exit code and output.
func (e *env) netSetup(extra map[string]string, args ...string) (int, string, string) {
	e.t.Helper()
	envv := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "BERTH_RUN_DIR=" + e.runDir, "RESOLV_CONF=" + e.resolvConf,
		"TAP_UID=" + tapUID, "TAP_GID=" + tapUID, "TERMINATION_LOG=" + filepath.Join(e.runDir, "..", "termination-log")}
	for k, v := range extra {
		envv = append(envv, k+"="+v)
	}
	// A bound, so that a run blocked (on a FIFO, say) fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", e.pod, "env", "-i"}, append(envv, append([]string{netSetup}, args...)...)...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func (e *env) mustNetSetup(extra map[string]string, args ...string) string {
	e.t.Helper()
	code, out, errOut := e.netSetup(extra, args...)
	if code != 0 {
		e.t.Fatalf("net-setup %v exited %d:\n%s%s", args, code, out, errOut)
	}
	return out
}

// background starts a long-running command in a namespace, killed at cleanup.
func (e *env) background(ns string, args ...string) {
	e.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if e.t.Failed() {
			e.t.Logf("%s: %s", strings.Join(args, " "), out.String())
		}
	})
}

// eventually retries f every 200 ms for up to d (a bound, not a timing claim).
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v (gave up after %s)", what, err, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// attachVM puts the "vm" namespace on the bridge through a veth (the tap has
// no reader in this test) and gets its address by DHCP with busybox udhcpc.
// It returns what the DHCP client saw.
func (e *env) attachVM() map[string]string {
	e.t.Helper()
	e.ip("-n", e.pod, "link", "add", "vmport", "mtu", fmt.Sprint(e.mtu), "type", "veth", "peer", "name", "eth0", "netns", e.vm)
	e.ip("-n", e.pod, "link", "set", "vmport", "master", "br0", "up")
	e.ip("-n", e.vm, "link", "set", "eth0", "up")
	leaseEnv := filepath.Join(e.runDir, "..", "udhcpc.env")
	script := filepath.Join(e.runDir, "..", "udhcpc.sh")
	// udhcpc calls the script with the lease in its environment; it applies
	// the address, router and MTU the way a guest's DHCP client would.
	if err := os.WriteFile(script, []byte(`#!/bin/sh
[ "$1" = bound ] || exit 0
env > `+leaseEnv+`
ip addr add "$ip/$mask" dev "$interface"
ip link set "$interface" mtu "$mtu"
ip route add default via "$router"
`), 0o755); err != nil {
		e.t.Fatal(err)
	}
	out, err := e.try(e.vm, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "1",
		"-O", "search", "-O", "mtu", "-O", "dns", "-s", script)
	if err != nil {
		e.t.Fatalf("udhcpc got no lease: %v\n%s", err, out)
	}
	b, err := os.ReadFile(leaseEnv)
	if err != nil {
		e.t.Fatal(err)
	}
	lease := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			lease[k] = v
		}
	}
	return lease
}

// listen starts a TCP and a UDP echo of name on port in ns.
func (e *env) listen(ns, name string, tcpPorts []int, udpPorts []int) {
	for _, p := range tcpPorts {
		e.background(ns, "socat", fmt.Sprintf("TCP-LISTEN:%d,fork,reuseaddr", p), "SYSTEM:echo "+name)
	}
	for _, p := range udpPorts {
		e.background(ns, "socat", fmt.Sprintf("UDP-RECVFROM:%d,fork,reuseaddr", p), "SYSTEM:echo "+name)
	}
}

// who asks ns's client to reach addr:port and returns what answered.
func (e *env) who(ns, proto, addr string, port int) (string, error) {
	out, err := e.try(ns, "sh", "-c", fmt.Sprintf("echo hi | socat -T2 - %s:%s:%d,connect-timeout=2", proto, addr, port))
	return strings.TrimSpace(out), err
}

func (e *env) expectWho(ns, proto, addr string, port int, want string) {
	e.t.Helper()
	eventually(e.t, 10*time.Second, fmt.Sprintf("%s %s:%d from %s answered by %s", proto, addr, port, ns, want), func() error {
		got, err := e.who(ns, proto, addr, port)
		if got != want {
			return fmt.Errorf("answered by %q (%v)", got, err)
		}
		return nil
	})
}

// TestDataPath: the VM side gets its lease from the real dnsmasq and takes
// over the pod IP for every port but TCP 5900 (and that too with NO_VNC) and,
// with METRICS_PORT, vmm's metrics port.
func TestDataPath(t *testing.T) {
	for _, s := range []shape{calico, bridgeCNI} {
		t.Run(s.name, func(t *testing.T) {
			e := newEnv(t, s)
			e.mustNetSetup(nil)
			e.mustNetSetup(nil, "--check")
			e.background(e.pod, "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file="+filepath.Join(e.runDir, "dnsmasq.conf"))

			lease := e.attachVM()
			for k, want := range map[string]string{
				"ip": vmIP, "router": vmGW, "mask": "30", "mtu": fmt.Sprint(s.mtu),
				"dns":    "10.96.0.10 10.96.0.11",
				"search": "berth-test.svc.cluster.local svc.cluster.local cluster.local",
			} {
				if got := strings.TrimSpace(lease[k]); got != want {
					t.Errorf("DHCP %s = %q, want %q (lease %v)", k, got, want, lease)
				}
			}
			leases, _ := os.ReadFile(filepath.Join(e.runDir, "dnsmasq.leases"))
			if !strings.Contains(string(leases), " "+vmIP+" ") {
				t.Errorf("dnsmasq.leases does not list %s: %q", vmIP, leases)
			}

			e.listen(e.vm, "vm", []int{22, 80, 5900, 8443, 19100, 19101}, []int{53, 5353, 19100})
			e.listen(e.pod, "pod", []int{5900, 19100}, nil)
			e.background(e.node, "socat", "TCP-LISTEN:7000,fork,reuseaddr", `SYSTEM:echo $SOCAT_PEERADDR`)

			for _, p := range []int{22, 80, 8443, 19100} { // 19100: no METRICS_PORT, the VM has it
				e.expectWho(e.node, "TCP", e.podIP, p, "vm")
			}
			for _, p := range []int{53, 5353} {
				e.expectWho(e.node, "UDP", e.podIP, p, "vm")
			}
			e.expectWho(e.node, "TCP", e.podIP, 5900, "pod")
			// The VM reaches the node with the pod IP as its source.
			e.expectWho(e.vm, "TCP", e.nodeIP, 7000, e.podIP)
			// Hairpin: the VM reaching its own pod IP reaches itself.
			e.expectWho(e.vm, "TCP", e.podIP, 80, "vm")
			if got, _ := e.try(e.node, "ping", "-c1", "-W2", e.podIP); !strings.Contains(got, "1 received") {
				t.Errorf("ping of the pod IP from the node: %q", got)
			}

			// METRICS_PORT: TCP to the pod IP on it stays in the pod (vmm's
			// /metrics); the port next to it, UDP on it and everything else
			// still reach the VM.
			metrics := map[string]string{"METRICS_PORT": "19100"}
			e.mustNetSetup(metrics)
			e.mustNetSetup(metrics, "--check")
			e.expectWho(e.node, "TCP", e.podIP, 19100, "pod")
			e.expectWho(e.node, "TCP", e.podIP, 5900, "pod")
			e.expectWho(e.node, "TCP", e.podIP, 19101, "vm")
			e.expectWho(e.node, "TCP", e.podIP, 80, "vm")
			e.expectWho(e.node, "UDP", e.podIP, 19100, "vm")
			// The guest reaches no metrics: its pod IP (hairpin) and its gateway on the port
			// stay in the pod, where BERTH-INPUT drops new TCP from the bridge.
			for _, addr := range []string{e.podIP, vmGW} {
				if got, _ := e.who(e.vm, "TCP", addr, 19100); got == "pod" {
					t.Errorf("the VM reached the pod's metrics port at %s:19100", addr)
				}
			}
			if code, out, _ := e.netSetup(nil, "--check"); code != 1 || !strings.Contains(out, "BERTH-PREROUTING") {
				t.Errorf("--check without METRICS_PORT against rules with it: exit %d, %q; want 1 naming the chain", code, out)
			}
			// The exclusion deleted by hand: --check sees it missing, a run puts it back.
			// (rule 1 is the pod interface's VNC exception, 2 its metrics exception)
			e.run(e.pod, "iptables-nft", "-t", "nat", "-D", "BERTH-PREROUTING", "2")
			if code, out, _ := e.netSetup(metrics, "--check"); code != 1 || strings.Count(out, "--dport 19100 -j RETURN") != 3 {
				t.Errorf("--check with the metrics exclusion deleted: exit %d, %q; want 1 showing the missing rule", code, out)
			}
			e.mustNetSetup(metrics)
			e.mustNetSetup(metrics, "--check")
			e.mustNetSetup(nil)
			e.expectWho(e.node, "TCP", e.podIP, 19100, "vm")

			// NO_VNC=true: the same run replaces the rules; 5900 goes to the VM.
			e.mustNetSetup(map[string]string{"NO_VNC": "true"})
			e.mustNetSetup(map[string]string{"NO_VNC": "true"}, "--check")
			e.expectWho(e.node, "TCP", e.podIP, 5900, "vm")
			if code, out, _ := e.netSetup(nil, "--check"); code != 1 || !strings.Contains(out, "BERTH-PREROUTING") {
				t.Errorf("--check with NO_VNC=false against NO_VNC=true rules: exit %d, %q; want 1 naming the chain", code, out)
			}
		})
	}
}

// snapshot is the state net-setup owns, for comparing two runs.
func (e *env) snapshot() string {
	var b strings.Builder
	for _, cmd := range [][]string{
		{"iptables-nft-save"},
		{"iptables-legacy-save"},
		// Links as configured: name, kind, flags, MTU, master, tap owner.
		{"sh", "-c", `ip -d -j link show | jq -c '.[] | {ifname, flags: (.flags - ["NO-CARRIER","LOWER_UP"]), mtu, master, kind: .linkinfo.info_kind, tun: (if .linkinfo.info_kind == "tun" then .linkinfo.info_data else null end)}'`},
		{"ip", "-4", "-o", "addr", "show"},
		{"sh", "-c", "ip route show | sed 's/ linkdown//'"},
		{"sysctl", "net.ipv4.ip_forward"},
	} {
		out := e.run(e.pod, cmd...)
		for _, l := range strings.Split(out, "\n") {
			if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") { // iptables-save's timestamps
				continue
			}
			b.WriteString(l + "\n")
		}
	}
	for _, f := range []string{"dnsmasq.conf", "net.json"} {
		data, _ := os.ReadFile(filepath.Join(e.runDir, f))
		b.Write(data)
	}
	return b.String()
}

func TestIdempotent(t *testing.T) {
	e := newEnv(t, calico)
	e.mustNetSetup(nil)
	first := e.snapshot()
	e.mustNetSetup(nil)
	if second := e.snapshot(); second != first {
		t.Fatalf("a second run changed the state:\nfirst:\n%s\nsecond:\n%s", first, second)
	}
	if n := strings.Count(e.run(e.pod, "iptables-nft-save", "-t", "nat"), "-j BERTH-PREROUTING"); n != 1 {
		t.Fatalf("PREROUTING jumps to BERTH-PREROUTING %d times, want 1", n)
	}
}

// TestConverges: from a state a crash or an older run could leave, a run
// converges to the plan: the bridge exists with another address and MTU, the
// tap belongs to someone else, a chain holds a stale rule, a jump is doubled,
// net.json is half-written. Then: net-setup killed at many points in its run,
// then run to the end.
func TestConverges(t *testing.T) {
	e := newEnv(t, calico)
	// An earlier run's links carry net-setup's ifalias (others are refused: hostile_test.go).
	e.ip("-n", e.pod, "link", "add", "br0", "mtu", "1500", "type", "bridge")
	e.ip("-n", e.pod, "link", "set", "br0", "alias", stage.BridgeAlias)
	e.ip("-n", e.pod, "addr", "add", "10.1.1.1/30", "dev", "br0")
	e.ip("-n", e.pod, "tuntap", "add", "tap0", "mode", "tap", "user", "1234")
	e.ip("-n", e.pod, "link", "set", "tap0", "alias", stage.TapAlias)
	e.run(e.pod, "iptables-nft", "-t", "nat", "-N", "BERTH-PREROUTING")
	e.run(e.pod, "iptables-nft", "-t", "nat", "-A", "BERTH-PREROUTING", "-j", "DNAT", "--to-destination", "10.1.1.2")
	for i := 0; i < 2; i++ {
		e.run(e.pod, "iptables-nft", "-t", "nat", "-A", "PREROUTING", "-m", "comment", "--comment", "berth", "-j", "BERTH-PREROUTING")
	}
	if err := os.MkdirAll(e.runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.runDir, "net.json"), []byte(`{"podIf`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := e.netSetup(nil, "--check"); code != 1 {
		t.Fatalf("--check on the broken state exited %d, want 1", code)
	}
	e.mustNetSetup(nil)
	e.mustNetSetup(nil, "--check")
	want := e.snapshot()

	// Kill it at many points of a run from scratch, then finish.
	e2 := newEnv(t, calico)
	for delay := 0 * time.Millisecond; delay < 60*time.Millisecond; delay += 4 * time.Millisecond {
		cmd := exec.Command("ip", "netns", "exec", e2.pod, "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
			"BERTH_RUN_DIR="+e2.runDir, "RESOLV_CONF="+e2.resolvConf, "TAP_UID="+tapUID, "TAP_GID="+tapUID, netSetup)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		// ip netns exec execs env, which execs net-setup: same pid.
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	e2.mustNetSetup(nil)
	e2.mustNetSetup(nil, "--check")
	if got := e2.snapshot(); normalize(got, e2) != normalize(want, e) {
		t.Fatalf("after kills and a full run the state differs from a clean run:\n%s\nwant:\n%s", normalize(got, e2), normalize(want, e))
	}
}

// normalize removes what differs between two namespaces by construction:
// link indexes, MAC addresses, the run dir path.
func normalize(s string, e *env) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		for i, w := range f {
			switch {
			case strings.Count(w, ":") == 5 && len(w) == 17:
				f[i] = "MAC"
			case i == 0 && strings.HasSuffix(w, ":") && strings.Trim(w, "0123456789:") == "":
				f[i] = "N:" // link index
			case strings.Contains(w, "@if"): // a veth's peer index
				f[i] = w[:strings.Index(w, "@if")] + "@ifN:"
			}
		}
		b.WriteString(strings.ReplaceAll(strings.Join(f, " "), e.runDir, "RUN") + "\n")
	}
	return b.String()
}

// TestBadInput: exit 2, one line naming the variable, nothing changed.
// Tried: VM_IP IPv6, VM_IP outside VM_GW's /30, VM_IP the /30's broadcast,
// VM_IP overlapping the pod address, TAP with '/', BRIDGE of 16 bytes,
// TAP_UID "qemu", POD_IFACE that does not exist, RESOLV_CONF missing.
func TestBadInput(t *testing.T) {
	e := newEnv(t, calico)
	for _, bad := range []map[string]string{
		{"VM_IP": "fd00::2"},
		{"VM_IP": "10.0.0.2"},
		{"VM_IP": "192.168.254.3"},
		{"VM_IP": "10.244.7.6", "VM_GW": "10.244.7.5"},
		{"TAP": "tap/0"},
		{"BRIDGE": "bridge0123456789"},
		{"TAP_UID": "qemu"},
		{"POD_IFACE": "net1"},
		{"RESOLV_CONF": "/nonexistent/resolv.conf"},
	} {
		code, out, errOut := e.netSetup(bad)
		var name string
		for k := range bad {
			if name == "" || k == "VM_IP" {
				name = k
			}
		}
		if code != 2 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, name) {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want exit 2 and one line naming %s", bad, code, errOut, out, name)
		}
	}
	if out, _ := e.try(e.pod, "ip", "link", "show", "br0"); out != "" {
		t.Errorf("bad input left a bridge: %s", out)
	}
	for _, save := range []string{"iptables-nft-save", "iptables-legacy-save"} {
		if out := e.run(e.pod, save); strings.Contains(out, "BERTH") {
			t.Errorf("bad input left rules in %s:\n%s", save, out)
		}
	}
	if entries, _ := os.ReadDir(e.runDir); len(entries) != 0 {
		t.Errorf("bad input wrote into the run dir: %v", entries)
	}
}

// TestDryRunChangesNothing: the plan is printed, the namespace is untouched.
func TestDryRunChangesNothing(t *testing.T) {
	e := newEnv(t, calico)
	before := e.snapshot()
	out := e.mustNetSetup(nil, "--dry-run")
	for _, want := range []string{"nothing was changed", "dhcp-range=192.168.254.2", "-j DNAT --to-destination 192.168.254.2", `"podIP": "10.244.7.5"`} {
		if !strings.Contains(out, want) {
			t.Errorf("--dry-run output lacks %q:\n%s", want, out)
		}
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("--dry-run changed the namespace:\n%s\nwant:\n%s", after, before)
	}
	if names, err := os.ReadDir(e.runDir); err != nil || len(names) != 0 {
		t.Errorf("--dry-run wrote into the run dir: %v %v", names, err)
	}
}

// TestIPForwardReadOnly: a read-only /proc/sys with ip_forward=0 fails with
// the fix named; with ip_forward already 1 (a pod sysctl) it succeeds.
func TestIPForwardReadOnly(t *testing.T) {
	e := newEnv(t, calico)
	readOnly := func(extra ...string) (int, string) {
		script := `mount --make-rprivate / && mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"`
		args := append([]string{"netns", "exec", e.pod, "unshare", "-m", "sh", "-c", script, "sh", "env", "-i",
			"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "BERTH_RUN_DIR=" + e.runDir, "RESOLV_CONF=" + e.resolvConf,
			"TAP_UID=" + tapUID}, extra...)
		args = append(args, netSetup)
		cmd := exec.Command("ip", args...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return code, string(out)
	}
	e.run(e.pod, "sysctl", "-qw", "net.ipv4.ip_forward=0")
	code, out := readOnly()
	if code != 1 || !strings.Contains(out, "securityContext") || !strings.Contains(out, "ip_forward") {
		t.Fatalf("read-only /proc/sys: exit %d, %q; want 1 naming securityContext and ip_forward", code, out)
	}
	e.run(e.pod, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	if code, out := readOnly(); code != 0 {
		t.Fatalf("read-only /proc/sys with ip_forward=1 already: exit %d: %s", code, out)
	}
}

// TestBackends: legacy works when forced, and auto picks the backend the
// namespace already uses.
func TestBackends(t *testing.T) {
	e := newEnv(t, calico)
	e.mustNetSetup(map[string]string{"IPTABLES_BACKEND": "legacy"})
	e.mustNetSetup(map[string]string{"IPTABLES_BACKEND": "legacy"}, "--check")
	if out := e.run(e.pod, "iptables-legacy-save", "-t", "nat"); !strings.Contains(out, "BERTH-PREROUTING") {
		t.Fatalf("legacy backend: no Berth chains in iptables-legacy-save:\n%s", out)
	}
	e.mustNetSetup(nil) // auto: Berth's chains are in legacy
	js, _ := os.ReadFile(filepath.Join(e.runDir, "net.json"))
	if !strings.Contains(string(js), `"iptablesBackend": "legacy"`) {
		t.Fatalf("auto after a legacy run did not keep legacy: %s", js)
	}
	if out := e.run(e.pod, "iptables-nft-save", "-t", "nat"); strings.Contains(out, "BERTH") {
		t.Fatalf("auto wrote into nft as well:\n%s", out)
	}

	e2 := newEnv(t, calico)
	e2.mustNetSetup(nil)
	js, _ = os.ReadFile(filepath.Join(e2.runDir, "net.json"))
	if !strings.Contains(string(js), `"iptablesBackend": "nft"`) {
		t.Fatalf("auto in a fresh namespace did not choose nft: %s", js)
	}
}
