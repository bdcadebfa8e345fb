package hostile

import "strings"

// Kind is what a variable holds; it decides which classes of hostile value
// apply (classes.go). This file is the one place that knows the variables:
// a variable a stage's -h lists and this table does not gets KindString,
// which every string class applies to.
type Kind string

const (
	KindString Kind = "string" // unknown: the string classes only
	KindIP     Kind = "ip"     // an IPv4 (or IP) literal
	KindBool   Kind = "bool"
	KindEnum   Kind = "enum"   // one of a few words
	KindIfName Kind = "ifname" // a network interface name
	KindID     Kind = "id"     // a numeric uid or gid
	KindCount  Kind = "count"  // a whole number: CPUs, seconds, a port
	KindSize   Kind = "size"   // bytes with a unit
	KindName   Kind = "name"   // a bare name: a DNS label, a file name
	KindHex    Kind = "hex"    // a sha256
	KindText   Kind = "text"   // free text: SSH keys
	KindFile   Kind = "file"   // a file (or ConfigMap directory) the stage reads
	KindDir    Kind = "dir"    // a directory the stage reads and writes in
	KindOut    Kind = "out"    // a file the stage writes: the termination log
	KindSource Kind = "source" // a URL or an absolute path
	KindExec   Kind = "exec"   // a program: a name in PATH or a path
)

// kinds maps a variable to its kind; "stage/VAR" overrides "VAR".
var kinds = map[string]Kind{
	"VM_NAME":             KindName,
	"BERTH_RUN_DIR":       KindDir,
	"LOG_FORMAT":          KindEnum,
	"LOG_LEVEL":           KindEnum,
	"TERMINATION_LOG":     KindOut,
	"VM_IP":               KindIP,
	"VM_GW":               KindIP,
	"NO_VNC":              KindBool,
	"POD_IFACE":           KindIfName,
	"BRIDGE":              KindIfName,
	"TAP":                 KindIfName,
	"TAP_UID":             KindID,
	"TAP_GID":             KindID,
	"RESOLV_CONF":         KindFile,
	"IPTABLES_BACKEND":    KindEnum,
	"IMG_SOURCE":          KindSource,
	"IMG_TARGET":          KindName,
	"IMG_SHA256":          KindHex,
	"DISK_BLANK":          KindBool,
	"IMAGE_DIR":           KindDir,
	"DISK_DIR":            KindDir,
	"DISK_SIZE":           KindSize,
	"USERDATA":            KindFile,
	"METADATA":            KindFile,
	"SSH_AUTHORIZED_KEYS": KindText,
	"SEED_FORMAT":         KindEnum,
	"VM_CPUS":             KindCount,
	"VM_MEMORY":           KindSize,
	"ACCEL":               KindEnum,
	"VNC_LISTEN":          KindIP,
	"VNC_PASSWORD_FILE":   KindFile,
	"SHUTDOWN_TIMEOUT":    KindCount,
	"READY_TCP_PORT":      KindCount,
	"READY_WHEN":          KindEnum,
	"GUEST_AGENT":         KindBool,
	"QEMU":                KindExec,
	"ON_POWEROFF":         KindEnum,
	"ON_PANIC":            KindEnum,
	"WATCHDOG":            KindBool,
	"METRICS_PORT":        KindCount,
}

// KindOf returns the kind of a stage's variable.
func KindOf(stage, v string) Kind {
	if k, ok := kinds[stage+"/"+v]; ok {
		return k
	}
	if k, ok := kinds[v]; ok {
		return k
	}
	return KindString
}

// examples are valid values the injection classes build on ("<valid>\n...",
// "<valid>,file=..."), where the stage's baseline leaves the variable unset.
var examples = map[string]string{
	"VM_IP": "192.168.254.2", "VM_GW": "192.168.254.1", "NO_VNC": "false", "POD_IFACE": "eth0",
	"BRIDGE": "br0", "TAP": "tap0", "TAP_UID": "107", "TAP_GID": "107", "IPTABLES_BACKEND": "auto",
	"LOG_FORMAT": "text", "LOG_LEVEL": "info", "VM_NAME": "pet",
	"GUEST_AGENT": "true", "READY_WHEN": "lease",
	"IMG_TARGET": "base.qcow2", "IMG_SHA256": "", "DISK_BLANK": "false",
	"DISK_SIZE":           "64Mi", // the base's size: growing to it changes nothing
	"SEED_FORMAT":         "configdrive",
	"SSH_AUTHORIZED_KEYS": sshKey,
	"VM_CPUS":             "1", "VM_MEMORY": "1Gi", "ACCEL": "tcg", "VNC_LISTEN": "127.0.0.1",
	"SHUTDOWN_TIMEOUT": "60", "READY_TCP_PORT": "22", "QEMU": "qemu-system-x86_64",
	"ON_POWEROFF": "restart", "ON_PANIC": "reset", "WATCHDOG": "false",
	"METRICS_PORT": "19100",
}

// sshKey is a real public key (its private half was thrown away).
const sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFsJ6AbsSbMP+Q5HE2LDce0mVEmts+N+LyYS/hPsYOM7 hostile"

// alsoNamed: a bad value of the key may be reported as bad input of one of
// these instead, because the check is about the pair (VM_GW "must be in
// VM_IP's /30"), or because the default of one is derived from the other
// (IMG_TARGET from IMG_SOURCE), or because the file the value names is looked
// for under the other (vmm: the pet disk of VM_NAME in DISK_DIR).
var alsoNamed = map[string][]string{
	"VM_IP":      {"VM_GW"},
	"VM_GW":      {"VM_IP"},
	"BRIDGE":     {"TAP", "POD_IFACE"},
	"TAP":        {"BRIDGE", "POD_IFACE"},
	"POD_IFACE":  {"BRIDGE", "TAP"},
	"TAP_UID":    {"TAP_GID"},
	"IMG_SOURCE": {"IMG_TARGET"},
	"VM_NAME":    {"DISK_DIR", "IMG_TARGET"},
	"IMAGE_DIR":  {"DISK_DIR", "IMG_TARGET"},
	"DISK_DIR":   {"IMAGE_DIR", "IMG_TARGET"},
	"VNC_LISTEN": {"VNC_PASSWORD_FILE"},
}

// MayName reports whether a bad-input line about v may name got.
func MayName(v, got string) bool {
	if got == v || strings.HasPrefix(got, v+"[") { // CDROMS[0].source: an item of a list
		return true
	}
	for _, a := range alsoNamed[v] {
		if a == got {
			return true
		}
	}
	return false
}

// exitOne lists the cases where exit 1 (retryable) is the right answer: the
// value is well formed and could work, and what failed is the environment.
// Keys are "stage/VAR/class"; a trailing "*" matches any class prefix.
var exitOne = map[string]string{
	"image-fetch/IMG_SOURCE/url-ipv6":         "a well-formed URL of a server that does not answer (127.0.0.1:1, [::1]:1): retrying may work",
	"image-fetch/IMG_SOURCE/url-query-secret": "a well-formed URL of a server that does not answer: retrying may work",
	"image-fetch/IMG_SOURCE/url-fragment":     "a well-formed URL of a server that does not answer: retrying may work",
	"image-fetch/IMG_SOURCE/url-upper-scheme": "a well-formed URL (schemes are case-insensitive) of a server that does not answer",
	"image-fetch/IMG_SOURCE/url-no-file":      "a well-formed URL of a server that does not answer",
	"vmm probe live/*":                        "no QEMU runs in the sandbox: 1 (not live) is the right answer to every value",
	"vmm probe ready/BERTH_RUN_DIR/*":         "a run dir without dnsmasq's lease file is not ready yet (1), whatever its name",
	"vmm agent/BERTH_RUN_DIR/empty":           "unset: the default run dir, where no QEMU serves qga.sock: the agent does not answer (1)",
	"vmm agent/GUEST_AGENT/empty":             "unset: the default true; no QEMU serves qga.sock in the sandbox: the agent does not answer (1)",
}

// ExitOneReason returns why exit 1 is allowed for the case, or "".
func ExitOneReason(stage, v, class string) string {
	for k, why := range exitOne {
		pat := stage + "/" + v + "/" + class
		if strings.HasSuffix(k, "*") {
			if strings.HasPrefix(pat, strings.TrimSuffix(k, "*")) {
				return why
			}
		} else if k == pat {
			return why
		}
	}
	return ""
}

// notApplicable: classes left out for a variable, with the reason. An empty
// value is unset by the contract (stage.Env.Lookup), so for a variable whose
// default is a host path it would be that path, outside the sandbox.
var notApplicable = map[string]string{
	"TERMINATION_LOG/empty": "empty is unset: the default /dev/termination-log, on this host, which the sweep must not create",
}

// validValues are classes whose value is a valid, different value for the
// variable: accepted, the result rightly differs from the baseline's.
var validValues = map[string]string{
	"TAP_UID/zero": "uid 0 (root) is a valid owner of the tap",
	"TAP_GID/zero": "gid 0 is a valid group of the tap",
	// The baselines leave METRICS_PORT unset: any port accepted adds net-setup's exclusion.
	"METRICS_PORT/leading-zeros": "0019100 is port 19100 (digits only, as every count): a valid metrics port, whose exclusion rightly adds rules to the baseline's (none)",
	"VM_NAME/empty":              "unset: the hostname, another VM's name (its own pet disk)",
	"BERTH_RUN_DIR/empty":        "unset: the default /run/berth (a tmpfs in the sweep)",
	"RESOLV_CONF/empty":          "unset: the default /etc/resolv.conf, this host's",
	// RESOLV_CONF's content is filtered, never trusted: a regular file with no
	// nameserver or search line gives the VM no DNS options, rightly.
	"RESOLV_CONF/path-symlink-passwd": "a regular file (through a symlink, as a ConfigMap key is): its content is filtered, no nameserver line means no DNS option",
	"RESOLV_CONF/path-proc-environ":   "a regular file: its content is filtered, no nameserver line means no DNS option",
	"RESOLV_CONF/path-comma":          "a valid path to a regular file (commas are allowed in paths; what reaches dnsmasq.conf is filtered)",
}

// shapeChanging are variables whose valid values change the shape of QEMU's
// command line (vmm's baseline has none set).
var shapeChanging = map[string]string{
	"VNC_PASSWORD_FILE": "a password file adds password=on to -vnc",
}

// ChangesShape returns why v may change QEMU's command line's shape, or "".
func ChangesShape(v string) string { return shapeChanging[v] }

// ValidValue returns why the class's value is valid for v, or "".
func ValidValue(v, class string) string { return validValues[v+"/"+class] }

// Skip returns why class does not apply to v, or "".
func Skip(v, class string) string { return notApplicable[v+"/"+class] }

// Outputs are the files (relative to the sandbox) each stage may write in
// apply mode: a hostile value that is accepted may change these and nothing
// else. The pet disk is never among them.
var Outputs = map[string][]string{
	"net-setup":   {"run/dnsmasq.conf", "run/net.json", "run/tun"},
	"image-fetch": {"images/", "disk/pet.json", "disk/.pet.lock"},
	"seed-iso":    {"run/seed.iso"},
	"vmm":         {"run/qmp.sock", "run/qga.sock", "run/" + VMStatusName},
}

// VMStatusName is vmm's status file in the run volume (vmm/status.FileName):
// vmm writes it, `vmm probe ready` reads it.
const VMStatusName = "vm-status.json"

// MayWrite reports whether stage may change rel (a sandbox-relative path).
func MayWrite(stage, rel string) bool {
	for _, o := range Outputs[stage] {
		if rel == o || strings.HasSuffix(o, "/") && strings.HasPrefix(rel, o) {
			return true
		}
	}
	return false
}
