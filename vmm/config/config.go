// Package config reads vmm's environment into a Config: pure, checked, with
// every bad input reported as a stage.InputError (exit 2) that names the
// variable, its value and what is allowed.
package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berth-vm/berth/common/artifact"
	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/fsutil"
	"github.com/berth-vm/berth/common/quantity"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/firmware"
	"github.com/berth-vm/berth/vmm/status"
	"github.com/berth-vm/berth/vmm/swtpm"
)

// Accelerator choices (ACCEL).
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// What vmm does when the guest powers itself off (ON_POWEROFF).
const (
	// PoweroffRestart: vmm exits 0 and the kubelet starts the container
	// again, which boots the guest again (restartPolicy Always).
	PoweroffRestart = "restart"
	// PoweroffStop: vmm stays, holding no QEMU, not ready, until the pod is
	// deleted (the only way to start the VM again without an operator).
	PoweroffStop = "stop"
)

// What vmm does when the guest's kernel panics (ON_PANIC; the pvpanic device
// tells QEMU, which pauses the guest in status guest-panicked).
const (
	// PanicReset: a system reset in the same QEMU: the guest boots again.
	PanicReset = "reset"
	// PanicRestart: vmm ends QEMU and exits 1: the kubelet restarts the
	// container, and the guest boots in a new QEMU.
	PanicRestart = "restart"
)

// When `vmm probe ready` says the guest is ready (READY_WHEN). Each adds to
// the one before: the lease since the guest's boot always counts, and
// READY_TCP_PORT when set.
const (
	// ReadyLease: dnsmasq leased VM_IP since the guest's boot (and, with
	// READY_TCP_PORT, that port accepts: the behaviour before READY_WHEN).
	ReadyLease = "lease"
	// ReadyTCP: the lease and READY_TCP_PORT accepts; READY_TCP_PORT must be set.
	ReadyTCP = "tcp"
	// ReadyAgent: the lease (and READY_TCP_PORT when set), and the guest
	// agent answers guest-ping; GUEST_AGENT must be true.
	ReadyAgent = "agent"
)

// MinMemory is the least guest memory vmm accepts: below it no cloud image boots.
const MinMemory = 128 << 20

// MaxMemory bounds VM_MEMORY far above any real pod, so arithmetic cannot overflow.
const MaxMemory = 4 << 40

// Vars documents vmm's own variables for -h.
func Vars() []stage.Var {
	return []stage.Var{
		{Name: "VM_CPUS", Default: "1", Help: "virtual CPUs: a whole number from 1 to the host's CPU count"},
		{Name: "VM_MEMORY", Default: "1Gi", Help: "guest memory with a binary suffix, e.g. 1Gi, 1536Mi (Ki, Mi, Gi, Ti or plain bytes; 1G is refused); 128Mi to 4Ti, whole MiB"},
		{Name: "ACCEL", Default: "auto", Help: "auto (KVM when /dev/kvm really runs a guest, else TCG with a warning), kvm (fail without it) or tcg"},
		{Name: "DISK_DIR", Default: stage.DefaultDiskDir, Help: "holds the pet overlay <VM_NAME>.qcow2 made by image-fetch (an absolute path of " + PathChars + ")"},
		{Name: "DISK_SIZE", Help: "the pet overlay's virtual size (as image-fetch reads it, e.g. 20Gi; optional): vmm grows the running disk to it over QMP once its volume has room, never shrinks it"},
		{Name: disks.Var, Help: "the data disks: a JSON array of {name, size, volumeMode, format, bus, cache, discard} (common/disks; empty: none), each on QEMU's command line after the pet disk with serial <name>"},
		{Name: "DATA_DISK_DIR", Default: disks.DefaultDir, Help: "a Filesystem data disk <name> is the file <name>/<name>.qcow2 (or .raw) in it, made by image-fetch; a Block disk is " + disks.BlockDir + "/<name>"},
		{Name: "IMAGE_DIR", Default: stage.DefaultImageDir, Help: "holds the overlay's base image (QEMU opens it through the overlay); the overlay's backing file must be in it; and the ISOs of CDROMS"},
		{Name: artifact.CDROMsVar, Help: "read-only ISOs, the installer first: a JSON array of {source, sha256, target} as image-fetch reads it (common/artifact); each is IMAGE_DIR/<target>, put there and verified by image-fetch, opened by vmm without following a symlink and attached as a SATA CD-ROM that boots after the pet disk (at most 6)"},
		{Name: "TAP", Default: stage.DefaultTap, Help: "persistent tap made by net-setup (ifalias \"" + stage.TapAlias + "\", owned by vmm's uid, on net-setup's bridge); vmm attaches to it, never creates one, and hands QEMU the fd"},
		{Name: "NO_VNC", Default: "false", Help: "true: no VNC server at all"},
		{Name: "VNC_LISTEN", Default: "127.0.0.1", Help: "address QEMU's VNC (port 5900) listens on; a non-loopback address needs VNC_PASSWORD_FILE"},
		{Name: "VNC_PASSWORD_FILE", Help: "absolute path of a file whose first line is the VNC password (VNC uses at most 8 characters)"},
		{Name: "SHUTDOWN_TIMEOUT", Default: "60", Help: "seconds from SIGTERM until QEMU is told to quit if the guest has not powered off; keep it below terminationGracePeriodSeconds"},
		{Name: "VM_IP", Default: stage.DefaultVMIP, Help: "the guest's address (probe ready looks for its lease)"},
		{Name: "READY_TCP_PORT", Help: "probe ready also needs this TCP port on the guest to accept"},
		{Name: "READY_WHEN", Default: ReadyLease, Help: "what probe ready waits for: lease (VM_IP leased since the guest's boot, and READY_TCP_PORT when set), tcp (the lease and READY_TCP_PORT, which must be set) or agent (the lease, READY_TCP_PORT when set, and the guest agent answering guest-ping; needs GUEST_AGENT=true)"},
		{Name: "GUEST_AGENT", Default: "true", Help: "true: a virtio-serial channel org.qemu.guest_agent.0 for qemu-guest-agent in the guest, on $BERTH_RUN_DIR/" + stage.AgentSocketName + " (vmm agent, READY_WHEN=agent, the guest's OS and addresses in vmm's log); false: none"},
		{Name: "QEMU", Default: "qemu-system-x86_64", Help: "QEMU binary: a name in PATH or an absolute path"},
		{Name: "ON_POWEROFF", Default: PoweroffRestart, Help: "when the guest powers itself off: restart (vmm exits 0, the kubelet starts the container and so the guest again) or stop (vmm stays without QEMU, not ready, until the pod is deleted)"},
		{Name: "WATCHDOG", Default: "false", Help: "true: an i6300esb watchdog device; a guest that opens /dev/watchdog and then stops feeding it (hung) is reset by QEMU and boots again in the same QEMU (Linux: the i6300esb driver, in Debian's generic kernel, not in its cloud kernel)"},
		{Name: "METRICS_PORT", Help: "TCP port (1024-65535, not 5900; empty: none) vmm serves Prometheus metrics on at /metrics, on the pod IP: net-setup keeps it from the VM (read by both, the same way)"},
		{Name: "FIRMWARE", Default: firmware.BIOS, Help: "bios (SeaBIOS) or uefi (OVMF from OVMF_DIR; the VM's UEFI variable store is DISK_DIR/<VM_NAME>.efivars.fd, made once from OVMF's template and never overwritten, its record <VM_NAME>.efivars.json beside it)"},
		{Name: "SECURE_BOOT", Default: "false", Help: "true (FIRMWARE=uefi only): Secure Boot: q35 with SMM, OVMF's secure build, the variable store from the template with Microsoft's keys enrolled (shim-signed distributions and Windows boot; an unsigned bootloader or kernel is refused)"},
		{Name: "OVMF_DIR", Default: firmware.DefaultOVMFDir, Help: "holds OVMF's " + firmware.CodeFile + ", " + firmware.SecureCodeFile + ", " + firmware.VarsTemplate + " and " + firmware.SecureVarsTemplate + " (Debian's ovmf package; Berth's vmm image has them)"},
		{Name: "TPM", Default: "false", Help: "true: a TPM 2.0 (tpm-crb) backed by swtpm, which vmm runs beside QEMU; its state is DISK_DIR/<VM_NAME>.tpm/, made once and kept with the pet disk (its record <VM_NAME>.tpm.json)"},
		{Name: "SWTPM", Default: "swtpm", Help: "swtpm binary (TPM=true): a name in PATH or an absolute path (Berth's vmm image has Debian's)"},
		{Name: "ON_PANIC", Default: PanicReset, Help: "when the guest's kernel panics (pvpanic): reset (the guest boots again in the same QEMU) or restart (vmm ends QEMU and exits 1: the container restarts)"},
	}
}

// Config is everything vmm needs from its environment.
type Config struct {
	Name     string
	RunDir   string
	DiskDir  string
	ImageDir string
	QEMU     string

	// DiskSize is DISK_SIZE in bytes, 0 when unset: the size vmm grows the
	// running pet disk to.
	DiskSize uint64
	// DataDiskDir holds the Filesystem data disks' volumes (DATA_DISK_DIR).
	DataDiskDir string
	// DataDisks are DATA_DISKS, defaults filled in (disks.Parse), and
	// DataDisksText the value as written, for messages.
	DataDisks     []disks.Disk
	DataDisksText string
	// CDROMs are CDROMS: the read-only ISOs in ImageDir, the installer first.
	CDROMs []artifact.CDROM

	CPUs   int
	Memory uint64 // bytes, a whole number of MiB
	Accel  string // auto, kvm or tcg: the request, not the result

	Tap string

	VNC             bool
	VNCListen       string // IP literal
	VNCPasswordFile string

	ShutdownTimeout time.Duration

	OnPoweroff string // PoweroffRestart or PoweroffStop
	OnPanic    string // PanicReset or PanicRestart
	Watchdog   bool   // an i6300esb watchdog: QEMU resets the guest when it stops feeding it

	// GuestAgent: QEMU has the guest agent's channel (GUEST_AGENT).
	GuestAgent bool
	// ReadyWhen is ReadyLease, ReadyTCP or ReadyAgent (READY_WHEN).
	ReadyWhen string

	VMIP         netip.Addr
	ReadyTCPPort int // 0: none

	// MetricsPort is METRICS_PORT: vmm serves /metrics on it (0: no metrics).
	MetricsPort int

	// Firmware is FIRMWARE, SECURE_BOOT and OVMF_DIR.
	Firmware firmware.Spec

	// TPM: a TPM 2.0 backed by swtpm (SWTPM), its state in TPMDir.
	TPM   bool
	SWTPM string
}

// OverlayRecord is image-fetch's record of the pet disk (which base, or blank).
func (c Config) OverlayRecord() string { return filepath.Join(c.DiskDir, c.Name+".json") }

// CDROM is the i-th ISO's file in IMAGE_DIR.
func (c Config) CDROM(i int) string { return filepath.Join(c.ImageDir, c.CDROMs[i].Target) }

// TPMDir is the VM's TPM state directory (TPM=true).
func (c Config) TPMDir() string { return swtpm.StateDir(c.DiskDir, c.Name) }

// EFIVars is the VM's UEFI variable store (FIRMWARE=uefi).
func (c Config) EFIVars() string { return firmware.VarsPath(c.DiskDir, c.Name) }

// Overlay is the pet disk's path.
func (c Config) Overlay() string { return filepath.Join(c.DiskDir, c.Name+".qcow2") }

// SeedISO is the seed's path.
func (c Config) SeedISO() string { return filepath.Join(c.RunDir, stage.SeedISOName) }

// StatusFile is where vmm writes QEMU's status for `vmm probe ready`.
func (c Config) StatusFile() string { return filepath.Join(c.RunDir, status.FileName) }

// QMPSocket is the QMP socket's path.
func (c Config) QMPSocket() string { return filepath.Join(c.RunDir, stage.QMPSocketName) }

// AgentSocket is the guest agent channel's socket (GUEST_AGENT).
func (c Config) AgentSocket() string { return filepath.Join(c.RunDir, stage.AgentSocketName) }

// Leases is dnsmasq's lease file.
func (c Config) Leases() string { return filepath.Join(c.RunDir, stage.DnsmasqLeasesName) }

// TunFallback is the tun node net-setup makes when /dev/net/tun is absent.
func (c Config) TunFallback() string { return filepath.Join(c.RunDir, stage.TunNodeName) }

// MAC is the VM's stable MAC address, derived from its name.
func (c Config) MAC() net.HardwareAddr { return MAC(c.Name) }

// MAC derives a stable MAC from the VM name: 52:54 (locally administered,
// unicast, QEMU's customary prefix) and the first four bytes of
// sha256("berth-mac:" + name). The same name always gives the same MAC, so a
// guest's network configuration on its persistent disk keeps matching.
func MAC(name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("berth-mac:" + name))
	return net.HardwareAddr{0x52, 0x54, sum[0], sum[1], sum[2], sum[3]}
}

// Host holds the facts about the machine that the checks need; tests fake them.
type Host struct {
	NumCPU int
	// Stat is os.Stat in production.
	Stat func(string) (fs.FileInfo, error)
}

// FromEnv reads and checks the environment. It touches nothing but Stat.
// Every value is checked whole: no surrounding spaces or newlines, no commas
// or other characters that could change an option of QEMU's command line.
func FromEnv(env stage.Env, host Host) (Config, error) {
	var c Config
	var err error
	if c.Name, err = env.VMName(); err != nil {
		return c, err
	}
	if c.RunDir, err = RunDir(env); err != nil {
		return c, err
	}
	if c.DiskDir, err = AbsPath(env, "DISK_DIR", stage.DefaultDiskDir); err != nil {
		return c, err
	}
	if c.ImageDir, err = AbsPath(env, "IMAGE_DIR", stage.DefaultImageDir); err != nil {
		return c, err
	}
	if c.QEMU, err = qemuBinary(env); err != nil {
		return c, err
	}
	if c.DiskSize, err = diskSize(env); err != nil {
		return c, err
	}
	if c.DataDiskDir, err = AbsPath(env, "DATA_DISK_DIR", disks.DefaultDir); err != nil {
		return c, err
	}
	if v, ok := env.Lookup(disks.Var); ok {
		if c.DataDisks, err = disks.Parse(v); err != nil {
			return c, err
		}
		c.DataDisksText = v
	}
	if v, ok := env.Lookup(artifact.CDROMsVar); ok {
		if c.CDROMs, err = artifact.ParseCDROMs(v); err != nil {
			return c, err
		}
	}
	if c.Tap, err = tapName(env); err != nil {
		return c, err
	}
	if c.CPUs, err = cpus(env, host.NumCPU); err != nil {
		return c, err
	}
	if c.Memory, err = memory(env); err != nil {
		return c, err
	}
	if c.Accel, err = env.OneOf("ACCEL", AccelAuto, AccelAuto, AccelKVM, AccelTCG); err != nil {
		return c, err
	}

	noVNC, err := env.Bool("NO_VNC", false)
	if err != nil {
		return c, err
	}
	c.VNC = !noVNC
	if c.VNC {
		if err := vnc(env, &c, host); err != nil {
			return c, err
		}
	}

	secs, err := env.Int("SHUTDOWN_TIMEOUT", 60, 1, 86400)
	if err != nil {
		return c, err
	}
	c.ShutdownTimeout = time.Duration(secs) * time.Second
	if c.OnPoweroff, err = env.OneOf("ON_POWEROFF", PoweroffRestart, PoweroffRestart, PoweroffStop); err != nil {
		return c, err
	}
	if c.OnPanic, err = env.OneOf("ON_PANIC", PanicReset, PanicReset, PanicRestart); err != nil {
		return c, err
	}
	if c.Watchdog, err = env.Bool("WATCHDOG", false); err != nil {
		return c, err
	}
	if c.GuestAgent, err = GuestAgent(env); err != nil {
		return c, err
	}
	if c.ReadyWhen, err = ReadyWhen(env, c.GuestAgent); err != nil {
		return c, err
	}

	if c.VMIP, err = VMIP(env); err != nil {
		return c, err
	}
	if c.ReadyTCPPort, err = ReadyTCPPort(env); err != nil {
		return c, err
	}
	if c.MetricsPort, err = env.MetricsPort(); err != nil {
		return c, err
	}
	if c.Firmware, err = Firmware(env); err != nil {
		return c, err
	}
	if c.TPM, err = env.Bool("TPM", false); err != nil {
		return c, err
	}
	if c.SWTPM, err = binary(env, "SWTPM", "swtpm"); err != nil {
		return c, err
	}
	return c, nil
}

// Firmware reads FIRMWARE, SECURE_BOOT (uefi only) and OVMF_DIR.
func Firmware(env stage.Env) (firmware.Spec, error) {
	var f firmware.Spec
	var err error
	if f.Kind, err = env.OneOf("FIRMWARE", firmware.BIOS, firmware.BIOS, firmware.UEFI); err != nil {
		return f, err
	}
	if f.SecureBoot, err = env.Bool("SECURE_BOOT", false); err != nil {
		return f, err
	}
	if f.SecureBoot && !f.UEFI() {
		v, _ := env.Lookup("SECURE_BOOT")
		return f, stage.BadInput("SECURE_BOOT", v, "Secure Boot is a UEFI feature: it needs FIRMWARE=uefi (FIRMWARE is "+f.Kind+")")
	}
	if f.OVMFDir, err = AbsPath(env, "OVMF_DIR", firmware.DefaultOVMFDir); err != nil {
		return f, err
	}
	return f, nil
}

// PathChars are the characters a path variable may hold: nothing QEMU's
// option syntax (",", "="), its protocol prefixes (":") or a shell gives a
// meaning to, no spaces, no control characters, ASCII only.
const PathChars = "A-Z a-z 0-9 / . _ + @ -"

func pathChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._+@-", r)
}

// MaxSocketPath bounds BERTH_RUN_DIR: qmp.sock must fit a unix socket address
// (108 bytes with the terminating NUL).
const MaxSocketPath = 107

// PathAllowed says what AbsPath accepts: stage.CheckPath's paths of PathChars only.
const PathAllowed = "must be an absolute, clean path (no '.', '..', '//' or trailing '/') of the characters " + PathChars +
	" only (no commas, colons, spaces, newlines or non-ASCII: they would change QEMU's options), at most 1024 bytes"

// AbsPath reads a path variable (def when unset or empty): a path
// stage.CheckPath accepts (absolute, clean, at most 1024 bytes) of PathChars
// only, since vmm writes it into QEMU's options.
func AbsPath(env stage.Env, name, def string) (string, error) {
	v := env.String(name, def)
	if !qemuSafePath(name, v) {
		return "", stage.BadInput(name, v, PathAllowed)
	}
	return v, nil
}

// qemuSafePath: v passes stage.CheckPath (named name) and is of PathChars only.
func qemuSafePath(name, v string) bool {
	return stage.CheckPath(name, v) == nil && strings.IndexFunc(v, func(r rune) bool { return !pathChar(r) }) < 0
}

// RunDir reads BERTH_RUN_DIR, checked as AbsPath and short enough for qmp.sock.
func RunDir(env stage.Env) (string, error) {
	v, err := AbsPath(env, "BERTH_RUN_DIR", stage.DefaultRunDir)
	if err != nil {
		return "", err
	}
	if n := len(filepath.Join(v, stage.QMPSocketName)); n > MaxSocketPath {
		return "", stage.BadInputf("BERTH_RUN_DIR", v, "must be short enough for %s to be a unix socket path (at most %d bytes, this gives %d)", stage.QMPSocketName, MaxSocketPath, n)
	}
	return v, nil
}

// VMIP reads VM_IP as net-setup does (stage.HostIPv4): an address net-setup
// refuses is refused here too, not waited for as a lease that never comes.
func VMIP(env stage.Env) (netip.Addr, error) {
	return env.HostIPv4("VM_IP", stage.DefaultVMIP)
}

// ReadyTCPPort reads READY_TCP_PORT (0: unset), as vmm and `vmm probe ready` do.
func ReadyTCPPort(env stage.Env) (int, error) {
	return env.Int("READY_TCP_PORT", 0, 1, 65535)
}

// GuestAgent reads GUEST_AGENT (default true), as vmm and its probes do.
func GuestAgent(env stage.Env) (bool, error) { return env.Bool("GUEST_AGENT", true) }

// ReadyWhen reads READY_WHEN (default ReadyLease) against what it needs:
// tcp needs READY_TCP_PORT (read here as ReadyTCPPort reads it), agent needs
// GUEST_AGENT (agent).
func ReadyWhen(env stage.Env, agent bool) (string, error) {
	v, err := env.OneOf("READY_WHEN", ReadyLease, ReadyLease, ReadyTCP, ReadyAgent)
	if err != nil {
		return "", err
	}
	port, err := ReadyTCPPort(env)
	if err != nil {
		return "", err
	}
	switch {
	case v == ReadyTCP && port == 0:
		return "", stage.BadInput("READY_WHEN", v, "tcp needs READY_TCP_PORT (1 to 65535): set it, or READY_WHEN=lease")
	case v == ReadyAgent && !agent:
		return "", stage.BadInput("READY_WHEN", v, "agent needs the guest agent's channel: GUEST_AGENT=true (it is false), or READY_WHEN=lease or tcp")
	}
	return v, nil
}

// diskSize reads DISK_SIZE as image-fetch does: a size greater than 0, a
// multiple of 512, at most qcow2's limit; 0 when unset.
func diskSize(env stage.Env) (uint64, error) {
	v, ok := env.Lookup("DISK_SIZE")
	if !ok {
		return 0, nil
	}
	n, err := quantity.ParseBytes(v)
	if err != nil || n == 0 || strings.TrimSpace(v) != v {
		return 0, stage.BadInput("DISK_SIZE", v, "must be a size greater than 0: "+quantity.Allowed)
	}
	if n%512 != 0 || n > disks.MaxSize {
		return 0, stage.BadInputf("DISK_SIZE", v, "must be a multiple of 512 bytes, at most 2048Ti (is %d bytes)", n)
	}
	return n, nil
}

func qemuBinary(env stage.Env) (string, error) { return binary(env, "QEMU", "qemu-system-x86_64") }

// binary reads a binary variable: a name in PATH or an absolute path, of PathChars.
func binary(env stage.Env, name, def string) (string, error) {
	v := env.String(name, def)
	if strings.HasPrefix(v, "/") {
		if !qemuSafePath(name, v) {
			return "", stage.BadInput(name, v, "must be a binary name in PATH or "+strings.TrimPrefix(PathAllowed, "must be "))
		}
		return v, nil
	}
	if v[0] == '-' || v[0] == '.' || strings.IndexFunc(v, func(r rune) bool { return !pathChar(r) || r == '/' }) >= 0 {
		return "", stage.BadInput(name, v, "must be a binary name in PATH (of "+PathChars+", no '/', not starting with '-' or '.') or an absolute path")
	}
	return v, nil
}

func tapName(env stage.Env) (string, error) {
	v := env.String("TAP", stage.DefaultTap)
	if len(v) > 15 || v == "." || v == ".." || v[0] == '-' || strings.IndexFunc(v, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) >= 0 {
		return "", stage.BadInput("TAP", v, "must be a network interface name: 1 to 15 of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '-'")
	}
	return v, nil
}

// CheckFiles checks the files other stages must have made: the overlay and
// the ISOs (image-fetch) and the seed ISO (seed-iso). Probes do not need them.
// Both are in shared volumes: a symlink there (to the pet disk, to a device)
// is refused, never followed (fsutil.CheckOwnFile).
func CheckFiles(c Config) error {
	if err := OwnFile(c.Overlay()); err != nil {
		return stage.BadInputf("DISK_DIR", c.DiskDir, "pet overlay %s: %v: image-fetch makes it; run image-fetch first", c.Overlay(), err)
	}
	if err := OwnFile(c.SeedISO()); err != nil {
		return stage.BadInputf("BERTH_RUN_DIR", c.RunDir, "seed ISO %s: %v: seed-iso makes it; run seed-iso first", c.SeedISO(), err)
	}
	for i := range c.CDROMs {
		if err := OwnFile(c.CDROM(i)); err != nil {
			return stage.BadInputf("IMAGE_DIR", c.ImageDir, "ISO %s (%s): %v: image-fetch puts it there; run image-fetch first", c.CDROM(i), artifact.Name(i), err)
		}
	}
	return nil
}

// OwnFile: path is a regular file, not a symlink to one (nil), or why not.
func OwnFile(path string) error {
	if err := fsutil.CheckOwnFile(path); err != nil {
		var ne *fsutil.NotOwnFileError
		if errors.As(err, &ne) {
			return fmt.Errorf("is %s, not a regular file (refused, left as it is)", ne.Found)
		}
		return err
	}
	if _, err := os.Lstat(path); err != nil {
		return errors.New("does not exist")
	}
	return nil
}

func regular(host Host, path string) error {
	fi, err := host.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	return nil
}

// cause shortens *fs.PathError to its reason: the path is already in the message.
func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func cpus(env stage.Env, numCPU int) (int, error) {
	n, err := env.Int("VM_CPUS", 1, 1, 1024)
	if err != nil {
		return 0, err
	}
	if n > numCPU {
		v, _ := env.Lookup("VM_CPUS")
		return 0, stage.BadInputf("VM_CPUS", v, "must be at most the host's CPU count, %d", numCPU)
	}
	return n, nil
}

func memory(env stage.Env) (uint64, error) {
	v := env.String("VM_MEMORY", "1Gi")
	b, err := quantity.ParseBytes(v)
	if err != nil || strings.TrimSpace(v) != v {
		return 0, stage.BadInput("VM_MEMORY", v, "must be a size: "+quantity.Allowed)
	}
	if b < MinMemory || b > MaxMemory {
		return 0, stage.BadInput("VM_MEMORY", v, "must be from 128Mi to 4Ti")
	}
	if b%(1<<20) != 0 {
		return 0, stage.BadInput("VM_MEMORY", v, "must be a whole number of MiB")
	}
	return b, nil
}

func vnc(env stage.Env, c *Config, host Host) error {
	listen := env.String("VNC_LISTEN", "127.0.0.1")
	lit := listen
	if strings.HasPrefix(lit, "[") && strings.HasSuffix(lit, "]") {
		lit = lit[1 : len(lit)-1]
	}
	addr, err := netip.ParseAddr(lit)
	if err != nil || addr.Zone() != "" || (lit != listen && !addr.Is6()) {
		return stage.BadInput("VNC_LISTEN", listen, "must be an IP address, e.g. 127.0.0.1 or 0.0.0.0")
	}
	c.VNCListen = addr.String()
	if _, set := env.Lookup("VNC_PASSWORD_FILE"); set {
		if c.VNCPasswordFile, err = AbsPath(env, "VNC_PASSWORD_FILE", ""); err != nil {
			return err
		}
	}
	if c.VNCPasswordFile == "" {
		if !addr.IsLoopback() {
			return stage.BadInput("VNC_LISTEN", listen, "a non-loopback address needs a password: set VNC_PASSWORD_FILE (or NO_VNC=true, or VNC_LISTEN=127.0.0.1 with kubectl port-forward)")
		}
		return nil
	}
	if err := regular(host, c.VNCPasswordFile); err != nil {
		return stage.BadInputf("VNC_PASSWORD_FILE", c.VNCPasswordFile, "must be a readable file (%v)", cause(err))
	}
	return nil
}

// VNCPassword reads the password: the file's first line, without its newline.
// The file is a Secret's, whose mount is made of symlinks, so they are
// followed; but it must be a regular file (a FIFO would hang vmm) and only its
// first 4 KiB are read.
func VNCPassword(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("read VNC password: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "", stage.BadInput("VNC_PASSWORD_FILE", path, "must be a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("read VNC password: %w", err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimRight(pw, "\r")
	if pw == "" {
		return "", stage.BadInput("VNC_PASSWORD_FILE", path, "must hold a non-empty password on its first line")
	}
	return pw, nil
}
