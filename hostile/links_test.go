package hostile

import (
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stage"
)

// linkFixture is a link of some kind, made in the case's namespace before
// the run (ip -batch lines), and the name a variable is set to.
type linkFixture struct {
	name string   // what it is
	link string   // its interface name
	cmds []string // ip commands that make it; none: it is there already
	// impostor: it carries Berth's name and alias but is not what Berth
	// made; net-setup may replace it (exit 0, the valid result) or refuse.
	impostor bool
}

var alias = func(name, a string) string { return "link set " + name + " alias \"" + a + "\"" }

// linkFixtures are the links of every kind TAP, BRIDGE and POD_IFACE may name.
var linkFixtures = []linkFixture{
	{name: "pod-eth0", link: "eth0"},
	{name: "loopback", link: "lo"},
	{name: "veth", link: "vethx", cmds: []string{"link add vethx type veth peer name vethy"}},
	// ifb stands for dummy (a link with nothing behind it): this host's
	// kernel has no dummy module.
	{name: "ifb", link: "ifb0", cmds: []string{"link add ifb0 type ifb"}},
	{name: "bridge-not-berth", link: "brx", cmds: []string{"link add brx type bridge"}},
	{name: "tap-not-berth", link: "tapx", cmds: []string{"tuntap add tapx mode tap"}},
	{name: "tap-multiqueue-not-berth", link: "tapmq", cmds: []string{"tuntap add tapmq mode tap multi_queue"}},
	{name: "macvlan", link: "mvl0", cmds: []string{"link add mvl0 link eth0 type macvlan mode bridge"}},
	{name: "br0-ifb-with-bridge-alias", link: "br0", impostor: true, cmds: []string{"link add br0 type ifb", alias("br0", stage.BridgeAlias)}},
	{name: "br0-tap-with-bridge-alias", link: "br0", impostor: true, cmds: []string{"tuntap add br0 mode tap", alias("br0", stage.BridgeAlias)}},
	{name: "tap0-bridge-with-tap-alias", link: "tap0", impostor: true, cmds: []string{"link add tap0 type bridge", alias("tap0", stage.TapAlias)}},
	{name: "tap0-multiqueue-with-tap-alias", link: "tap0", impostor: true, cmds: []string{"tuntap add tap0 mode tap multi_queue", alias("tap0", stage.TapAlias)}},
	{name: "tap0-veth-with-tap-alias", link: "tap0", impostor: true, cmds: []string{"link add tap0 type veth peer name tap0peer", alias("tap0", stage.TapAlias)}},
}

// linkCombos set several of the names at once.
var linkCombos = []struct {
	name  string
	env   map[string]string
	after bool // run after a valid net-setup (br0 and tap0 made by Berth); a second VM subnet keeps clear of br0's
}{
	{name: "tap-is-bridge", env: map[string]string{"TAP": "br0"}},
	{name: "bridge-is-tap", env: map[string]string{"BRIDGE": "tap0"}},
	{name: "tap-and-bridge-brx", env: map[string]string{"TAP": "brx", "BRIDGE": "brx"}},
	{name: "bridge-is-pod-iface", env: map[string]string{"POD_IFACE": "eth0", "BRIDGE": "eth0"}},
	{name: "tap-is-pod-iface", env: map[string]string{"POD_IFACE": "eth0", "TAP": "eth0"}},
	{name: "pod-iface-is-bridge", env: map[string]string{"POD_IFACE": "br0"}},
	{name: "pod-iface-is-tap", env: map[string]string{"POD_IFACE": "tap0"}},
	{name: "swapped-after-valid-run", env: map[string]string{"BRIDGE": "tap0", "TAP": "br0"}, after: true},
	{name: "pod-iface-is-berth-bridge-after-valid-run", env: map[string]string{"POD_IFACE": "br0", "BRIDGE": "br1", "TAP": "tap1", "VM_IP": "192.168.253.2", "VM_GW": "192.168.253.1"}, after: true},
	{name: "tap-is-berth-bridge-after-valid-run", env: map[string]string{"TAP": "br0", "BRIDGE": "br1", "VM_IP": "192.168.253.2", "VM_GW": "192.168.253.1"}, after: true},
}

// TestLinks: net-setup with TAP, BRIDGE and POD_IFACE each naming a link of
// every kind, and combinations of them; vmm with TAP naming each.
func TestLinks(t *testing.T) {
	requireSetup(t)
	ns := stageByName("net-setup")
	base := validBaseline(t, ns)
	for _, v := range []string{"TAP", "BRIDGE", "POD_IFACE"} {
		for _, f := range linkFixtures {
			if v == "POD_IFACE" && f.link == "eth0" {
				continue // the valid value
			}
			if f.impostor && v == "POD_IFACE" {
				continue
			}
			t.Run("net-setup/"+v+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				linkCase(t, ns, map[string]string{v: f.link}, f, false, base)
			})
		}
	}
	for _, c := range linkCombos {
		t.Run("net-setup/"+c.name, func(t *testing.T) {
			t.Parallel()
			linkCase(t, ns, c.env, linkFixture{name: c.name}, c.after, base)
		})
	}
	vmm := stageByName("vmm")
	vbase := validBaseline(t, vmm)
	for _, f := range append(linkFixtures, linkFixture{name: "nonexistent", link: "tapnone"}) {
		if f.link == "tap0" && !f.impostor || f.link == "eth0" || f.name == "macvlan" {
			continue // the tap netns has no eth0 (macvlan needs one)
		}
		t.Run("vmm/TAP/"+f.name, func(t *testing.T) {
			t.Parallel()
			linkCase(t, vmm, map[string]string{"TAP": f.link}, f, false, vbase)
		})
	}
}

func linkCase(t *testing.T, st stageDef, set map[string]string, f linkFixture, after bool, base baseline) {
	s := newSandbox(t, st)
	var ns string
	if st.Name == "vmm" {
		ns = roottest.Netns(t, "bvmm-")
		cmds := f.cmds
		if f.link != "tap0" { // the Berth tap is there too, unused
			cmds = append([]string{"tuntap add tap0 mode tap vnet_hdr", alias("tap0", stage.TapAlias)}, cmds...)
		}
		roottest.IPBatch(t, ns, cmds...)
	} else {
		ns = roottest.Pod(t, nodeNS)
		if len(f.cmds) > 0 {
			roottest.IPBatch(t, ns, f.cmds...)
		}
	}
	env := s.env(st)
	if after {
		if o := s.run(t, st, env, nil, ns); o.code != 0 {
			t.Fatalf("valid run before the case exited %d: %s", o.code, o.stderr)
		}
	}
	var names []string
	for k, v := range set {
		env[k] = v
		names = append(names, k+"="+v)
	}
	sort.Strings(names)
	vars := make([]string, 0, len(set))
	for k := range set {
		vars = append(vars, k)
	}
	sort.Strings(vars)
	id := caseID{stage: st.Name, v: strings.Join(vars, ","), class: Class{Name: "link-" + f.name}, value: strings.Join(names, " ")}
	before := s.snap(t, ns, st.snapScript(), nil)
	for _, args := range st.modes() {
		mode := modeName(st, args)
		o := s.run(t, st, env, args, ns)
		var problems []string
		switch {
		case o.hung:
			problems = append(problems, "hung: no exit within "+RunTimeout.String()+" (killed)")
		case o.code == 2:
			problems = append(problems, checkLinkLine(st, vars, o)...)
		case o.code == 0 && mode == "dry-run" && (f.impostor || st.Name == "vmm"):
			// vmm's dry-run prints the command line and looks at no link
		case o.code == 0 && mode == "apply" && f.impostor && st.Name == "net-setup":
			// net-setup may replace an impostor: the result is checked below
		default:
			problems = append(problems, "exit "+strconv.Itoa(o.code)+", want 2 naming "+id.v+": "+short(last(ownLines(st, o.stderr), o.stderr)))
		}
		after := s.snap(t, ns, st.snapScript(), nil)
		changed := diffSnap(before, after)
		if o.code == 0 && mode == "apply" {
			problems = append(problems, checkAccepted(t, st, s, ns, changed, base)...)
		} else if len(changed) > 0 {
			problems = append(problems, "changed: "+summary(changed))
		}
		if st.Name == "vmm" && o.code != 0 {
			if _, err := os.Stat(s.qrec); err == nil {
				problems = append(problems, "QEMU was started")
			}
		}
		for _, p := range problems {
			t.Errorf("%s", id.line(mode, p))
		}
		before = after
	}
}

// checkLinkLine: one bad-input line naming one of vars (or what they may name).
func checkLinkLine(st stageDef, vars []string, o outcome) []string {
	var first []string
	for _, v := range vars {
		p := checkBadInputLine(st, v, ownLines(st, o.stderr), o)
		if len(p) == 0 {
			return nil
		}
		if first == nil {
			first = p
		}
	}
	return first
}
