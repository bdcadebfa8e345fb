package hostile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/common/stagetest"
)

// RunTimeout bounds every run of a binary: a stage that blocks (on a FIFO,
// on /dev/zero, on a lock) is a hang, reported as such.
const RunTimeout = 20 * time.Second

// Files the harness makes once per test binary.
var (
	binDir   string // the repo's bin/ (make build)
	shared   string // base image, fake QEMU, the mount wrapper
	hideSh   string
	fakeBin  string // holds the fake qemu-system-x86_64
	baseImg  string // the base image every file sandbox fetches from
	nodeNS   string // the "node" namespace the pods' veths end in
	setupErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		var err error
		if binDir, err = filepath.Abs("../bin"); err != nil {
			setupErr = err
		}
		if shared, err = os.MkdirTemp("", "berth-hostile-"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(shared)
		if os.Geteuid() == 0 && setupErr == nil {
			setupErr = setupShared()
		}
		defer func() {
			for _, p := range pools {
				p.drain()
			}
			if nodeNS != "" {
				roottest.KillNetnsProcesses(nodeNS)
				_ = exec.Command("ip", "netns", "del", nodeNS).Run()
			}
		}()
		// Four cases at once on two cores: a case mostly waits for the
		// processes it starts, and a hung one waits RunTimeout.
		if f := flag.Lookup("test.parallel"); f != nil && !parallelSet() {
			_ = f.Value.Set("4")
		}
		return m.Run()
	}()
	os.Exit(code)
}

// parallelSet reports whether -parallel was given on the command line.
func parallelSet() bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	return set
}

func setupShared() error {
	for _, b := range []string{"net-setup", "image-fetch", "seed-iso", "vmm"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("bin/%s missing (run make build): %w", b, err)
		}
	}
	// Each run sees tmpfs on /run and /var/lib, with the default dirs
	// (/run/berth, /var/lib/berth/...) empty in it: a value that falls back to
	// a default lands there, never on this host.
	hideSh = filepath.Join(shared, "hide.sh")
	if err := os.WriteFile(hideSh, []byte("#!/bin/sh\nmount -t tmpfs berth-hostile /run && mount -t tmpfs berth-hostile /var/lib &&\n"+
		"mkdir -p /run/berth /var/lib/berth/images /var/lib/berth/disk && exec \"$@\"\n"), 0o755); err != nil {
		return err
	}
	fakeBin = filepath.Join(shared, "fakebin")
	if err := os.Mkdir(fakeBin, 0o755); err != nil {
		return err
	}
	// The fake QEMU records its arguments and the tap its fd 3 is attached
	// to, and exits: vmm supervised "a guest that powered off".
	if err := os.WriteFile(filepath.Join(fakeBin, "qemu-system-x86_64"), []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$FAKE_QEMU_RECORD\"\n"+
		"sed -n 's/^iff:[[:space:]]*//p' /proc/$$/fdinfo/3 > \"$FAKE_QEMU_RECORD.tap\"\nexit 0\n"), 0o755); err != nil {
		return err
	}
	baseImg = filepath.Join(shared, "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", baseImg, "64M").CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img create: %v: %s", err, out)
	}
	if err := buildTemplate(); err != nil {
		return err
	}
	nodeNS = "bnode-hostile-" + strconv.Itoa(os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", nodeNS).CombinedOutput(); err != nil {
		nodeNS = ""
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	return nil
}

// requireSetup fails (or, not root and not required, skips) the test.
func requireSetup(t *testing.T) {
	t.Helper()
	roottest.Require(t)
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// stageDef is one binary (or one probe) under test.
type stageDef struct {
	Name   string   // as it prints itself: "net-setup", "vmm probe ready"
	Bin    string   // file in bin/
	Args   []string // before the mode's flags
	Probe  bool     // a probe: no termination log, no --dry-run
	Netns  string   // "pod": a pod-shaped netns; "tap": a netns holding a Berth tap
	Help   []string // how to list its variables
	ByHelp bool     // Help gives -h output (else a usage text)
}

var stages = []stageDef{
	{Name: "net-setup", Bin: "net-setup", Netns: "pod", Help: []string{"-h"}, ByHelp: true},
	{Name: "image-fetch", Bin: "image-fetch", Help: []string{"-h"}, ByHelp: true},
	{Name: "seed-iso", Bin: "seed-iso", Help: []string{"-h"}, ByHelp: true},
	{Name: "vmm", Bin: "vmm", Netns: "tap", Help: []string{"-h"}, ByHelp: true},
	{Name: "vmm probe ready", Bin: "vmm", Args: []string{"probe", "ready"}, Probe: true, Help: []string{"probe", "-h"}},
	{Name: "vmm probe live", Bin: "vmm", Args: []string{"probe", "live"}, Probe: true, Help: []string{"probe", "-h"}},
	{Name: "vmm agent", Bin: "vmm", Args: []string{"agent", "status"}, Probe: true, Help: []string{"agent", "-h"}},
}

// Vars lists the stage's variables from the real binary.
func (s stageDef) Vars(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, s.Bin), s.Help...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run() // `vmm probe` exits 2 with its usage
	var vars []string
	if s.ByHelp {
		vars = ParseHelpVars(out.String())
	} else {
		vars = ParseUsageVars(out.String())
	}
	if len(vars) == 0 {
		t.Fatalf("%s %s lists no variables:\n%s", s.Bin, strings.Join(s.Help, " "), out.String())
	}
	return vars
}

// sandbox is one case's files: root is what the snapshots cover; the
// termination log and QEMU's record are beside it.
type sandbox struct {
	dir, root, tlog, qrec string
}

// caseN numbers the sandboxes: shared/c000001, c000002, ... All have the
// template's path length, so a copy of the template is made by replacing
// its path with the case's, byte for byte, in every file (the overlay's
// backing file name, the pet disk's record) and symlink.
var (
	caseN    atomic.Int64
	template *sandbox
)

func sandboxAt(n int64) *sandbox {
	dir := filepath.Join(shared, fmt.Sprintf("c%06d", n))
	return &sandbox{dir: dir, root: filepath.Join(dir, "root"), tlog: filepath.Join(dir, "termination-log"), qrec: filepath.Join(dir, "qemu-argv")}
}

// buildTemplate makes the sandbox every case starts from: a VM set up once
// (the base in the cache, the pet overlay on it by the real image-fetch,
// the seed by the real seed-iso, a lease), the stages' input files, a
// canary and a stand-in /etc/passwd outside every volume, and the hostile
// objects the path classes name.
func buildTemplate() error {
	s := sandboxAt(0)
	var err error
	mk := func(f func() error) {
		if err == nil {
			err = f()
		}
	}
	for _, d := range []string{"run", "images", "disk", "outside", "hostile/dir", "cwd"} {
		mk(func() error { return os.MkdirAll(filepath.Join(s.root, d), 0o755) })
	}
	write := func(rel, data string, mode os.FileMode) {
		mk(func() error { return os.WriteFile(filepath.Join(s.root, rel), []byte(data), mode) })
	}
	write(Canary, "canary: nothing may change me\n", 0o644)
	write(Passwd, "root:x:0:0:root:/root:/bin/bash\n", 0o644)
	write("hostile/dir/inside", "x\n", 0o644)
	write(HFile, "a regular file\n", 0o644)
	write(HComma, "comma\n", 0o644)
	write(HNewline, "newline\n", 0o644)
	mk(func() error { return syscall.Mkfifo(filepath.Join(s.root, HFifo), 0o644) })
	mk(func() error { return os.Symlink(filepath.Join(s.root, PetDisk), filepath.Join(s.root, HLinkPet)) })
	mk(func() error { return os.Symlink(filepath.Join(s.root, Passwd), filepath.Join(s.root, HLinkPasswd)) })
	mk(func() error {
		return os.Symlink(filepath.Join(s.root, "hostile/nowhere"), filepath.Join(s.root, HDangling))
	})
	write("resolv.conf", "search ns.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n", 0o644)
	write("userdata", "#cloud-config\nhostname: pet\n", 0o644)
	write("metadata", "local-hostname: pet\n", 0o644)
	write("vnc-password", "secret\n", 0o600)
	for _, b := range []string{"image-fetch", "seed-iso"} {
		mk(func() error {
			if out, err := s.direct(stageByName(b)).CombinedOutput(); err != nil {
				return fmt.Errorf("setting up the template sandbox: %s: %v: %s", b, err, out)
			}
			return nil
		})
	}
	write("run/"+stage.DnsmasqLeasesName, "1900000000 52:54:de:10:3b:1f 192.168.254.2 pet 01:52:54:de:10:3b:1f\n", 0o644)
	// vmm's status file (vmm/status): the guest running, as vmm writes it, for `vmm probe ready`.
	write("run/"+VMStatusName, `{"qemu":"running","since":"2026-12-01T00:00:00Z"}`+"\n", 0o644)
	template = s
	return err
}

// newSandbox copies the template for one case; removed when the case ends.
func newSandbox(t *testing.T, st stageDef) *sandbox {
	t.Helper()
	s := sandboxAt(caseN.Add(1))
	t.Cleanup(func() { os.RemoveAll(s.dir) })
	from, to := []byte(template.root), []byte(s.root)
	err := filepath.WalkDir(template.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(template.root, p)
		dst := filepath.Join(s.root, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, fi.Mode().Perm())
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(strings.ReplaceAll(target, template.root, s.root), dst)
		case fi.Mode()&fs.ModeNamedPipe != 0:
			return syscall.Mkfifo(dst, uint32(fi.Mode().Perm()))
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(dst, bytes.ReplaceAll(b, from, to), fi.Mode().Perm()); err != nil {
				return err
			}
			return os.Chmod(dst, fi.Mode().Perm()) // past the umask
		}
	})
	if err != nil {
		t.Fatalf("copy the template sandbox: %v", err)
	}
	return s
}

func stageByName(name string) stageDef {
	for _, s := range stages {
		if s.Name == name {
			return s
		}
	}
	panic("no stage " + name)
}

// env is the stage's baseline: valid, everything in the sandbox.
func (s *sandbox) env(st stageDef) map[string]string {
	r := func(rel string) string { return filepath.Join(s.root, rel) }
	e := map[string]string{
		"PATH":            fakeBin + ":/usr/sbin:/usr/bin:/sbin:/bin",
		"VM_NAME":         "pet",
		"BERTH_RUN_DIR":   r("run"),
		"TERMINATION_LOG": s.tlog,
	}
	switch st.Name {
	case "net-setup":
		e["RESOLV_CONF"] = r("resolv.conf") // TAP_UID and TAP_GID: the default
	case "image-fetch":
		e["IMG_SOURCE"], e["IMAGE_DIR"], e["DISK_DIR"] = baseImg, r("images"), r("disk")
	case "seed-iso":
		e["USERDATA"], e["METADATA"] = r("userdata"), r("metadata")
	case "vmm":
		e["IMAGE_DIR"], e["DISK_DIR"], e["ACCEL"], e["FAKE_QEMU_RECORD"] = r("images"), r("disk"), "tcg", s.qrec
	}
	return e
}

// direct is the stage with its baseline environment, without the wrapper:
// for setting up a sandbox, where nothing is hostile.
func (s *sandbox) direct(st stageDef) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, st.Bin), st.Args...)
	for k, v := range s.env(st) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = filepath.Join(s.root, "cwd")
	return cmd
}

// validOf is the value the injection classes build on.
func validOf(env map[string]string, v string) string {
	if x, ok := env[v]; ok {
		return x
	}
	if x, ok := examples[v]; ok {
		return x
	}
	return "x"
}

// outcome is what one run of a binary did.
type outcome struct {
	code           int
	stdout, stderr string
	hung           bool
	tlog           string
	tlogWritten    bool
}

// run runs the binary with exactly env (env -i) and args, in netns if set,
// with tmpfs over /run and /var/lib, cwd root/cwd, stdin /dev/null.
func (s *sandbox) run(t *testing.T, st stageDef, env map[string]string, args []string, netns string) outcome {
	t.Helper()
	_ = os.Remove(s.tlog)
	_ = os.Remove(s.qrec)
	_ = os.Remove(s.qrec + ".tap")
	var argv []string
	if netns != "" {
		argv = append(argv, "ip", "netns", "exec", netns)
	}
	argv = append(argv, "unshare", "-m", hideSh, "env", "-i")
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		argv = append(argv, k+"="+env[k])
	}
	argv = append(argv, filepath.Join(binDir, st.Bin))
	argv = append(argv, st.Args...)
	argv = append(argv, args...)
	r := stagetest.Run(t, argv[0], stagetest.Cmd{Args: argv[1:], Dir: filepath.Join(s.root, "cwd"), Timeout: RunTimeout, MayHang: true})
	// The sandbox's path is long and says nothing: messages show it as $ROOT.
	o := outcome{code: r.Code, hung: r.Hung, stdout: strings.ReplaceAll(r.Stdout, s.root, "$ROOT"), stderr: strings.ReplaceAll(r.Stderr, s.root, "$ROOT")}
	if b, err := os.ReadFile(s.tlog); err == nil {
		o.tlog, o.tlogWritten = strings.ReplaceAll(string(b), s.root, "$ROOT"), true
	}
	return o
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// treeSnap describes every entry under root (without following symlinks):
// type, mode, owner, size, sha256 (root's path in contents written as $ROOT),
// link target. FIFOs are never opened.
func treeSnap(root string) map[string]string {
	snap := map[string]string{}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		if err != nil {
			snap[rel] = "error " + err.Error()
			return nil
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			snap[rel] = "error " + err.Error()
			return nil
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				desc += " unreadable=" + err.Error()
			} else {
				b = bytes.ReplaceAll(b, []byte(root), []byte("$ROOT"))
				sum := sha256.Sum256(b)
				desc += fmt.Sprintf(" size=%d sha256=%s", len(b), hex.EncodeToString(sum[:8]))
			}
		case syscall.S_IFLNK:
			target, _ := os.Readlink(p)
			desc += " -> " + strings.ReplaceAll(target, root, "$ROOT")
		case syscall.S_IFCHR, syscall.S_IFBLK:
			desc += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		snap[rel] = desc
		return nil
	})
	return snap
}

// diffSnap lists what differs, one entry a line, sorted.
func diffSnap(before, after map[string]string) []string {
	var d []string
	for k, b := range before {
		if a, ok := after[k]; !ok {
			d = append(d, fmt.Sprintf("%q removed (was %s)", k, b))
		} else if a != b {
			d = append(d, fmt.Sprintf("%q changed: %s", k, delta(b, a)))
		}
	}
	for k, a := range after {
		if _, ok := before[k]; !ok {
			d = append(d, fmt.Sprintf("%q added: %s", k, a))
		}
	}
	sort.Strings(d)
	return d
}

// delta shows what differs between two values: for JSON, only the fields.
func delta(before, after string) string {
	var b, a any
	if json.Unmarshal([]byte(before), &b) != nil || json.Unmarshal([]byte(after), &a) != nil {
		return before + " -> " + after
	}
	fb, fa := map[string]string{}, map[string]string{}
	flatten("", b, fb)
	flatten("", a, fa)
	var d []string
	for k, v := range fb {
		if fa[k] != v {
			d = append(d, fmt.Sprintf("%s: %s -> %s", k, v, orNone(fa, k)))
		}
	}
	for k, v := range fa {
		if _, ok := fb[k]; !ok {
			d = append(d, fmt.Sprintf("%s: none -> %s", k, v))
		}
	}
	sort.Strings(d)
	return "{" + strings.Join(d, ", ") + "}"
}

func orNone(m map[string]string, k string) string {
	if v, ok := m[k]; ok {
		return v
	}
	return "none"
}

func flatten(prefix string, v any, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			flatten(prefix+"."+k, e, out)
		}
	case []any:
		for i, e := range x {
			flatten(prefix+"["+strconv.Itoa(i)+"]", e, out)
		}
	default:
		b, _ := json.Marshal(x)
		out[strings.TrimPrefix(prefix, ".")] = string(b)
	}
}

// netScript prints, in the namespace, everything net-setup may change:
// links, addresses, routes, the rules of both iptables backends and nft, and
// the sysctls.
const netScript = `ip -d -j link; echo @@; ip -j addr; echo @@; ip -j -4 route show table all; echo @@; ip -j -6 route show table all; echo @@
iptables-legacy-save 2>/dev/null; echo @@
iptables-nft-save 2>/dev/null; echo @@
nft list ruleset 2>/dev/null; echo @@
grep -r . /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf /proc/sys/net/bridge /proc/sys/net/ipv6/conf 2>/dev/null; true
`

var (
	counters   = regexp.MustCompile(`\[\d+:\d+\]`)
	nftCounter = regexp.MustCompile(`packets \d+ bytes \d+`)
	macRe      = regexp.MustCompile(`\b[0-9a-f]{1,2}(:[0-9a-f]{1,2}){5}\b`)
	llRe       = regexp.MustCompile(`fe80::[0-9a-f:]+`)
)

// linkScript is netScript's links, addresses and routes only: what vmm may
// change (it attaches to a tap; it makes no rules).
const linkScript = `ip -d -j link; echo @@; ip -j addr; echo @@; ip -j -4 route show table all; echo @@; ip -j -6 route show table all; echo @@
echo @@; echo @@; echo @@
`

// netSnapScript returns the namespace's state, as script (netScript or
// linkScript) prints it, as keyed lines ("link eth0" -> its JSON). portable
// drops what differs between two namespaces built the same way (ifindex,
// MAC addresses, link-local addresses).
func netSnapScript(t *testing.T, ns string, portable bool, script string) map[string]string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c", script).Output()
	if err != nil {
		t.Fatalf("snapshot of netns %s: %v", ns, err)
	}
	parts := strings.Split(string(out), "@@\n")
	if len(parts) != 8 {
		t.Fatalf("snapshot of netns %s: %d parts", ns, len(parts))
	}
	snap := map[string]string{}
	drop := []string{"valid_life_time", "preferred_life_time", "expires"}
	if portable {
		drop = append(drop, "ifindex", "link_index", "address", "broadcast", "perm_address", "link_netnsid")
	}
	jsonLines := func(kind, s string, key func(map[string]any) string) {
		var items []map[string]any
		if err := json.Unmarshal([]byte(s), &items); err != nil {
			snap[kind+" unparsable"] = s
			return
		}
		for i, it := range items {
			if dst, _ := it["dst"].(string); kind == "route6" && it["type"] == "local" && strings.HasPrefix(dst, "fe80:") {
				continue // appears when DAD ends; the address itself is in "addr"
			}
			if dst, _ := it["dst"].(string); kind == "route6" && dst == "ff00::/8" {
				continue // the kernel adds it when a link gets carrier (QEMU opening the tap)
			}
			if kind == "route4" || kind == "route6" {
				delete(it, "flags") // linkdown: carrier, which comes and goes
			}
			scrub(it, drop)
			b, _ := json.Marshal(it)
			line := string(b)
			k := key(it)
			if portable {
				line = llRe.ReplaceAllString(macRe.ReplaceAllString(line, "MAC"), "fe80::LL")
				k = llRe.ReplaceAllString(k, "fe80::LL")
			}
			if _, dup := snap[kind+" "+k]; dup {
				k += "#" + strconv.Itoa(i)
			}
			snap[kind+" "+k] = line
		}
	}
	byName := func(m map[string]any) string { s, _ := m["ifname"].(string); return s }
	byRoute := func(m map[string]any) string {
		return fmt.Sprint(m["table"], " ", m["type"], " ", m["dst"], " ", m["dev"])
	}
	jsonLines("link", parts[0], byName)
	jsonLines("addr", parts[1], byName)
	jsonLines("route4", parts[2], byRoute)
	jsonLines("route6", parts[3], byRoute)
	text := func(kind, s string, re *regexp.Regexp, repl string) {
		n := 0
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
				continue
			}
			n++
			snap[fmt.Sprintf("%s %04d", kind, n)] = re.ReplaceAllString(l, repl)
		}
	}
	text("iptables-legacy", parts[4], counters, "[0:0]")
	text("iptables-nft", parts[5], counters, "[0:0]")
	text("nft", parts[6], nftCounter, "packets 0 bytes 0")
	for _, l := range strings.Split(parts[7], "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			snap["sysctl "+strings.TrimPrefix(k, "/proc/sys/")] = v
		}
	}
	return snap
}

func scrub(v any, drop []string) {
	switch x := v.(type) {
	case map[string]any:
		if port, ok := x["info_slave_data"].(map[string]any); ok {
			delete(port, "state") // a bridge port's STP state follows its carrier
		}
		for k, e := range x {
			// Timers, counters, carrier and DAD state change by themselves.
			gone := strings.HasSuffix(k, "_timer") || strings.HasPrefix(k, "stats") ||
				k == "operstate" || k == "tentative" || k == "linkmode"
			for _, d := range drop {
				gone = gone || k == d
			}
			if gone {
				delete(x, k)
				continue
			}
			if flags, ok := e.([]any); ok && k == "flags" {
				var keep []any
				for _, f := range flags {
					if f != "NO-CARRIER" && f != "LOWER_UP" && f != "M-DOWN" {
						keep = append(keep, f)
					}
				}
				x[k] = keep
				continue
			}
			scrub(e, drop)
		}
	case []any:
		for _, e := range x {
			scrub(e, drop)
		}
	}
}

// newTapNetns makes a namespace with the persistent tap net-setup would
// have made (tap0, Berth's alias, up, on Berth's bridge br0), for vmm to
// attach to; with vnet_hdr, which vmm's attach sets on it (as after a first
// run of vmm).
func newTapNetns() (string, func(), error) {
	ns, del, err := roottest.NewNetns("bvmm-")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	// addrgenmode none, as net-setup sets it: no IPv6 link-local address
	// appears on them after the snapshot.
	cmd.Stdin = strings.NewReader("link add br0 type bridge\nlink set br0 alias \"" + stage.BridgeAlias + "\" addrgenmode none\n" +
		"tuntap add tap0 mode tap vnet_hdr\nlink set tap0 alias \"" + stage.TapAlias + "\" addrgenmode none\n" +
		"link set tap0 master br0\nlink set br0 up\nlink set tap0 up\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		del()
		return "", nil, fmt.Errorf("make tap0: %v: %s", err, out)
	}
	return ns, del, nil
}

// nsPool hands out clean namespaces of one shape, and takes one back when
// a case left it exactly as clean as it got it (most cases: bad input
// changes nothing); any other is deleted. Making and deleting namespaces is
// most of a network case's cost.
type nsPool struct {
	mu     sync.Mutex
	make   func() (string, func(), error)
	script string
	free   []*pooled
}

type pooled struct {
	ns    string
	del   func()
	clean map[string]string // its netSnap when handed out
	back  bool              // put back (or deleted) by put
}

var pools = map[string]*nsPool{
	"pod": {make: func() (string, func(), error) { return roottest.NewPod(nodeNS) }, script: netScript},
	"tap": {make: newTapNetns, script: linkScript},
}

func (p *nsPool) get(t *testing.T) *pooled {
	t.Helper()
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		x := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return x
	}
	p.mu.Unlock()
	ns, del, err := p.make()
	if err != nil {
		t.Fatal(err)
	}
	return &pooled{ns: ns, del: del, clean: netSnapScript(t, ns, false, p.script)}
}

// put takes x back if now (its state after the case) is its clean state.
func (p *nsPool) put(x *pooled, now map[string]string) {
	x.back = true
	if len(diffSnap(x.clean, now)) > 0 {
		x.del()
		return
	}
	p.mu.Lock()
	p.free = append(p.free, &pooled{ns: x.ns, del: x.del, clean: x.clean})
	p.mu.Unlock()
}

// drain deletes the free namespaces (TestMain, at the end).
func (p *nsPool) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, x := range p.free {
		x.del()
	}
	p.free = nil
}
