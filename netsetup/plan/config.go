// Package plan turns net-setup's environment and the pod's network facts into
// the network plan of docs/design.md. It is pure: no syscalls, table-tested.
package plan

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/berth-vm/berth/common/stage"
)

// net-setup's own defaults; the contract's (VM_IP, VM_GW, BRIDGE, TAP,
// BERTH_RUN_DIR) are common/stage's.
const (
	// DefaultTapOwner is the uid and gid of Debian's libvirt-qemu user, the
	// usual non-root QEMU user; the chart sets TAP_UID to the vm container's uid.
	DefaultTapOwner = 107
	DefaultResolv   = "/etc/resolv.conf"
	// VNCPort stays in the pod for QEMU's VNC unless NO_VNC.
	VNCPort = stage.VNCPort
)

// Config is net-setup's validated environment.
type Config struct {
	VMIP   netip.Addr
	VMGW   netip.Addr
	Subnet netip.Prefix // the /30 holding both
	NoVNC  bool
	// MetricsPort (METRICS_PORT; 0: none) stays in the pod for vmm's
	// metrics, as VNCPort does: the VM loses that TCP port.
	MetricsPort int
	PodIface    string // empty: the interface of the default route
	Bridge      string
	Tap         string
	TapUID      int
	TapGID      int
	Resolv      string
	Backend     string // iptables backend: auto, nft or legacy
	RunDir      string
}

// Vars documents the variables for -h.
func Vars() []stage.Var {
	return []stage.Var{
		{Name: "VM_IP", Default: stage.DefaultVMIP, Help: "the VM's address, handed out by dnsmasq; in one /30 with VM_GW"},
		{Name: "VM_GW", Default: stage.DefaultVMGW, Help: "the bridge's address, the VM's gateway"},
		{Name: "NO_VNC", Default: "false", Help: "true: forward TCP 5900 to the VM too (no VNC in the pod)"},
		{Name: "METRICS_PORT", Help: "vmm's metrics port (1024-65535, not 5900; empty: none): TCP to the pod IP on it stays in the pod, the VM loses that port"},
		{Name: "POD_IFACE", Default: "(the default route's interface)", Help: "the pod's interface whose global IPv4 address the VM takes over (not loopback)"},
		{Name: "BRIDGE", Default: stage.DefaultBridge, Help: "bridge name (1-15 bytes of [A-Za-z0-9._-]); an existing link of that name must be net-setup's (ifalias)"},
		{Name: "TAP", Default: stage.DefaultTap, Help: "persistent tap name for QEMU (1-15 bytes of [A-Za-z0-9._-]); an existing link of that name must be net-setup's (ifalias)"},
		{Name: "TAP_UID", Default: strconv.Itoa(DefaultTapOwner), Help: "uid owning the tap and the tun node: the uid QEMU runs as"},
		{Name: "TAP_GID", Default: "(TAP_UID)", Help: "gid owning the tap and the tun node"},
		{Name: "RESOLV_CONF", Default: DefaultResolv, Help: "the pod's resolv.conf (an absolute path to a regular file): nameservers and search domains for the VM"},
		{Name: "IPTABLES_BACKEND", Default: "auto", Help: "auto (detected: the one this pod already uses, else nft if it works, else legacy), nft or legacy"},
	}
}

// FromEnv reads and validates the environment. Every error is a bad input
// (exit 2) naming the variable.
func FromEnv(env stage.Env) (Config, error) {
	c := Config{Resolv: env.String("RESOLV_CONF", DefaultResolv)}
	var err error
	if c.RunDir, err = runDir(env); err != nil {
		return Config{}, err
	}
	if err := stage.CheckPath("RESOLV_CONF", c.Resolv); err != nil {
		return Config{}, stage.BadInput("RESOLV_CONF", c.Resolv, "the pod's resolv.conf: "+stage.PathAllowed)
	}
	if c.VMIP, err = ipv4(env, "VM_IP", stage.DefaultVMIP); err != nil {
		return Config{}, err
	}
	if c.VMGW, err = ipv4(env, "VM_GW", stage.DefaultVMGW); err != nil {
		return Config{}, err
	}
	if c.Subnet, err = subnet(c.VMIP, c.VMGW); err != nil {
		return Config{}, err
	}
	if c.NoVNC, err = env.Bool("NO_VNC", false); err != nil {
		return Config{}, err
	}
	if c.MetricsPort, err = env.MetricsPort(); err != nil {
		return Config{}, err
	}
	if v, ok := env.Lookup("POD_IFACE"); ok {
		if err := CheckLinkName(v); err != nil {
			return Config{}, stage.BadInput("POD_IFACE", v, err.Error())
		}
		c.PodIface = v
	}
	if c.Bridge, err = linkName(env, "BRIDGE", stage.DefaultBridge); err != nil {
		return Config{}, err
	}
	if c.Tap, err = linkName(env, "TAP", stage.DefaultTap); err != nil {
		return Config{}, err
	}
	if c.Bridge == c.Tap {
		return Config{}, stage.BadInput("TAP", c.Tap, "must differ from BRIDGE")
	}
	switch c.PodIface {
	case "":
	case c.Bridge:
		return Config{}, stage.BadInput("BRIDGE", c.Bridge, "must differ from POD_IFACE: net-setup makes its own bridge and never touches the pod's interface")
	case c.Tap:
		return Config{}, stage.BadInput("TAP", c.Tap, "must differ from POD_IFACE: net-setup makes its own tap and never touches the pod's interface")
	}
	if c.TapUID, err = id(env, "TAP_UID", DefaultTapOwner); err != nil {
		return Config{}, err
	}
	if c.TapGID, err = id(env, "TAP_GID", c.TapUID); err != nil {
		return Config{}, err
	}
	if c.Backend, err = env.OneOf("IPTABLES_BACKEND", "auto", "auto", "nft", "legacy"); err != nil {
		return Config{}, err
	}
	return c, nil
}

func ipv4(env stage.Env, name, def string) (netip.Addr, error) {
	return env.HostIPv4(name, def)
}

// subnet checks that ip and gw share one /30 and are its two host addresses.
func subnet(ip, gw netip.Addr) (netip.Prefix, error) {
	p := netip.PrefixFrom(ip, 30).Masked()
	network := p.Addr()
	broadcast := network.Next().Next().Next()
	switch {
	case ip == gw:
		return netip.Prefix{}, stage.BadInput("VM_GW", gw.String(), "must differ from VM_IP")
	case !p.Contains(gw):
		return netip.Prefix{}, stage.BadInputf("VM_GW", gw.String(), "must be in VM_IP's /30 %s", p)
	case ip == network || ip == broadcast:
		return netip.Prefix{}, stage.BadInputf("VM_IP", ip.String(), "must not be the network or broadcast address of %s (use %s or %s)", p, network.Next(), network.Next().Next())
	case gw == network || gw == broadcast:
		return netip.Prefix{}, stage.BadInputf("VM_GW", gw.String(), "must not be the network or broadcast address of %s (use %s or %s)", p, network.Next(), network.Next().Next())
	}
	return p, nil
}

func linkName(env stage.Env, name, def string) (string, error) {
	v := env.String(name, def)
	if err := CheckLinkName(v); err != nil {
		return "", stage.BadInput(name, v, err.Error())
	}
	return v, nil
}

// CheckLinkName accepts Linux interface names that are also safe to write
// into dnsmasq's config and iptables arguments: 1 to 15 bytes of ASCII
// letters, digits, '-', '_' and '.', starting with a letter or a digit (so no
// name reads as an option, like "--"), and not "all" or "default" (the
// kernel's own names under /proc/sys/net/ipv4/conf).
func CheckLinkName(s string) error {
	if len(s) == 0 || len(s) > 15 {
		return fmt.Errorf("must be 1 to 15 bytes (the kernel's IFNAMSIZ)")
	}
	if s == "all" || s == "default" {
		return fmt.Errorf("must not be \"all\" or \"default\" (the kernel refuses them)")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("starts with %q: must start with an ASCII letter or digit", c)
		}
		if !alnum && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("has %q: only ASCII letters, digits, '-', '_' and '.' are allowed (no '/', spaces or punctuation)", c)
		}
	}
	return nil
}

// MaxRunDirLen keeps $BERTH_RUN_DIR/qmp.sock within a unix socket address
// (108 bytes with the terminating NUL): vmm's QMP socket lives there.
const MaxRunDirLen = 107 - len("/qmp.sock")

// runDir reads BERTH_RUN_DIR by every stage's rule for a path
// (stage.CheckPath), and what net-setup needs beyond it to name the directory
// in dnsmasq.conf (dhcp-leasefile=) without quoting: not "/", at most
// MaxRunDirLen bytes, only ASCII letters, digits, '/', '-', '_' and '.'
// (dnsmasq's config cannot carry a comma, '#' or '=' in a value).
func runDir(env stage.Env) (string, error) {
	dir, err := env.Path("BERTH_RUN_DIR", stage.DefaultRunDir)
	if err != nil {
		return "", err
	}
	bad := func(format string, args ...any) error { return stage.BadInputf("BERTH_RUN_DIR", dir, format, args...) }
	if dir == "/" {
		return "", bad("must be an absolute path other than /")
	}
	if len(dir) > MaxRunDirLen {
		return "", bad("must be at most %d bytes (so $BERTH_RUN_DIR/qmp.sock fits a unix socket address)", MaxRunDirLen)
	}
	for i := 0; i < len(dir); i++ {
		if c := dir[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '-' || c == '_' || c == '.') {
			return "", bad("has %q: only ASCII letters, digits, '/', '-', '_' and '.' are allowed (dnsmasq.conf names it)", c)
		}
	}
	return dir, nil
}

func id(env stage.Env, name string, def int) (int, error) {
	v, ok := env.Lookup(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, stage.BadInput(name, v, "must be a numeric id from 0 to 4294967294")
	}
	return int(n), nil
}
