package stage

import (
	"errors"
	"fmt"
	"github.com/berth-vm/berth/common/fsutil"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Var documents one environment variable a binary reads; -h lists them.
type Var struct {
	Name    string
	Default string // shown in -h; empty means none
	Help    string
}

// CommonVars are read by every stage (docs/design.md, "Environment").
var commonVars = []Var{
	{Name: "VM_NAME", Default: "(the hostname)", Help: "name of the VM: names the pet disk, the MAC, the instance id"},
	{Name: "BERTH_RUN_DIR", Default: DefaultRunDir, Help: "run volume shared by the pod's containers"},
	{Name: "LOG_FORMAT", Default: "text", Help: "log format: text or json"},
	{Name: "LOG_LEVEL", Default: "info", Help: "log level: debug, info, warn or error"},
	{Name: "TERMINATION_LOG", Default: "/dev/termination-log", Help: "file the failure reason is written to, when writable"},
}

// CommonVars returns the variables every stage reads.
func CommonVars() []Var { return append([]Var(nil), commonVars...) }

// Env reads environment variables. Its zero value is not usable: use OSEnv or
// MapEnv. Parsing methods return an *InputError naming the variable on bad input.
type Env struct {
	lookup func(string) (string, bool)
}

// OSEnv reads the process environment.
func OSEnv() Env { return Env{lookup: os.LookupEnv} }

// MapEnv reads from a map; for tests and for callers that build an environment.
func MapEnv(m map[string]string) Env {
	return Env{lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

// Lookup returns the raw value and whether it is set to something non-empty.
func (e Env) Lookup(name string) (string, bool) {
	v, ok := e.lookup(name)
	if !ok || v == "" {
		return "", false
	}
	return v, true
}

// String returns the value of name, or def when unset or empty.
func (e Env) String(name, def string) string {
	if v, ok := e.Lookup(name); ok {
		return v
	}
	return def
}

// Bool parses true or false (also 1/0, yes/no, on/off), lower case, exactly:
// nothing is trimmed or folded ("TRUE", " true", "true\n" are refused). Unset
// or empty gives def.
func (e Env) Bool(name string, def bool) (bool, error) {
	v, ok := e.Lookup(name)
	if !ok {
		return def, nil
	}
	switch v {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	}
	return false, BadInput(name, v, "must be true or false")
}

// Int parses a whole number within [min, max] written in decimal digits only:
// no sign, no spaces, no newline, nothing trimmed (" 5", "+5", "5\n" are
// refused), so a negative number cannot be given. Unset or empty gives def.
func (e Env) Int(name string, def, min, max int) (int, error) {
	v, ok := e.Lookup(name)
	if !ok {
		return def, nil
	}
	bad := BadInput(name, v, fmt.Sprintf("must be a whole number from %d to %d (decimal digits only)", min, max))
	if strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, bad
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		return 0, bad
	}
	return n, nil
}

// OneOf returns the value if it is one of allowed (unset gives def).
func (e Env) OneOf(name, def string, allowed ...string) (string, error) {
	v, ok := e.Lookup(name)
	if !ok {
		return def, nil
	}
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return "", BadInput(name, v, "must be one of "+strings.Join(allowed, ", "))
}

// VMName returns VM_NAME, defaulting to the hostname, checked to be usable as a
// file name and a DNS label: 1-63 of [a-z0-9-], not starting or ending with '-'.
func (e Env) VMName() (string, error) {
	name, ok := e.Lookup("VM_NAME")
	if !ok {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("VM_NAME unset and hostname unknown: %w", err)
		}
		name = h
	}
	if err := CheckVMName(name); err != nil {
		return "", err
	}
	return name, nil
}

// CheckVMName checks a VM name is a DNS label (RFC 1123), as a pod hostname is.
func CheckVMName(name string) error {
	bad := BadInput("VM_NAME", name, "must be a DNS label: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'")
	if len(name) == 0 || len(name) > 63 || name[0] == '-' || name[len(name)-1] == '-' {
		return bad
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return bad
		}
	}
	return nil
}

// RunDir returns BERTH_RUN_DIR (default /run/berth), unchecked (see Path).
func (e Env) RunDir() string { return e.String("BERTH_RUN_DIR", DefaultRunDir) }

// PathAllowed says what Path and CheckPath accept.
const PathAllowed = "must be an absolute, clean path (no '.', '..', '//' or trailing '/') of printable ASCII without spaces, quotes or backslashes, at most 1024 bytes"

// CheckPath checks a path given in the environment: absolute, clean, and of
// printable ASCII without spaces, quotes or backslashes: no control character
// (a newline would forge a log line or a record), no look-alike Unicode, and
// nothing that reads differently quoted and unquoted in a message.
func CheckPath(name, value string) error {
	if value == "" || value[0] != '/' || filepath.Clean(value) != value || len(value) > 1024 {
		return BadInput(name, value, PathAllowed)
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '`' || c == '\\' {
			return BadInput(name, value, PathAllowed)
		}
	}
	return nil
}

// Path returns the path in name (def when unset or empty), checked by CheckPath.
func (e Env) Path(name, def string) (string, error) {
	v := e.String(name, def)
	if err := CheckPath(name, v); err != nil {
		return "", err
	}
	return v, nil
}

// CheckVolumeDir checks that dir, named by the variable name, is a directory
// that exists and is not a symlink: the mount point of a volume (the run
// volume, the image cache, the pet disk's PVC). No stage creates one: a typo
// in the variable, or a volume that is not mounted, would otherwise put
// Berth's files — a pet disk — on the container's own filesystem, gone with
// the container.
func CheckVolumeDir(name, dir string) error {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return BadInput(name, dir, "does not exist: it must be the volume's mount point (no stage creates it; is the volume mounted there?)")
	case err != nil:
		return fmt.Errorf("%s %s: %w", name, dir, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return BadInput(name, dir, "is a symlink: it must be the directory itself (the volume's mount point), not a link to it")
	case !fi.IsDir():
		return BadInputf(name, dir, "is %s, not a directory", fsutil.Describe(fi.Mode()))
	}
	return nil
}

// HostIPv4Allowed says what HostIPv4 accepts.
const HostIPv4Allowed = "must be a unicast IPv4 address (not loopback, link-local, multicast, 0.0.0.0/8 or 240.0.0.0/4)"

// thisNetwork (0.0.0.0/8) and reservedNet (240.0.0.0/4, with the limited
// broadcast 255.255.255.255) cannot be a host's address (RFC 1122, RFC 1112).
var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	reservedNet = netip.MustParsePrefix("240.0.0.0/4")
)

// HostIPv4 reads the variable name (default def) as an IPv4 address a host
// can have: VM_IP and VM_GW, the one rule for net-setup and vmm.
func (e Env) HostIPv4(name, def string) (netip.Addr, error) {
	v := e.String(name, def)
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return netip.Addr{}, BadInput(name, v, "must be an IPv4 address like "+def)
	}
	if !IsHostIPv4(a) {
		return netip.Addr{}, BadInput(name, v, HostIPv4Allowed)
	}
	return a, nil
}

// IsHostIPv4 reports whether a is an IPv4 address a host can have (see
// HostIPv4Allowed): the VM's, its gateway's, the pod's.
func IsHostIPv4(a netip.Addr) bool {
	return a.Is4() && !a.IsLoopback() && !a.IsMulticast() && !a.IsUnspecified() && !a.IsLinkLocalUnicast() &&
		!thisNetwork.Contains(a) && !reservedNet.Contains(a)
}
