// Package config reads vmm's environment into a Config: pure, checked, with
// every bad input reported as a stage.InputError (exit 2) that names the
// variable, its value and what is allowed.
package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-vm/berth/common/quantity"
	"github.com/berth-vm/berth/common/stage"
)

// Accelerator choices (ACCEL).
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// MinMemory is the least guest memory vmm accepts: below it no cloud image boots.
const MinMemory = 128 << 20

// MaxMemory bounds VM_MEMORY far above any real pod, so arithmetic cannot overflow.
const MaxMemory = 4 << 40

// Vars documents vmm's own variables for -h.
var Vars = []stage.Var{
	{Name: "VM_CPUS", Default: "1", Help: "virtual CPUs: a whole number from 1 to the host's CPU count"},
	{Name: "VM_MEMORY", Default: "1Gi", Help: "guest memory, e.g. 1Gi, 1024Mi, 1024M; at least 128Mi"},
	{Name: "ACCEL", Default: "auto", Help: "auto (KVM when /dev/kvm really runs a guest, else TCG with a warning), kvm (fail without it) or tcg"},
	{Name: "DISK_DIR", Default: "/var/lib/berth/disk", Help: "holds the pet overlay <VM_NAME>.qcow2 made by image-fetch"},
	{Name: "IMAGE_DIR", Default: "/var/lib/berth/images", Help: "holds the overlay's base image (QEMU opens it through the overlay)"},
	{Name: "TAP", Default: "tap0", Help: "persistent tap device made by net-setup; vmm attaches to it and hands QEMU the fd"},
	{Name: "NO_VNC", Default: "false", Help: "true: no VNC server at all"},
	{Name: "VNC_LISTEN", Default: "127.0.0.1", Help: "address QEMU's VNC (port 5900) listens on; a non-loopback address needs VNC_PASSWORD_FILE"},
	{Name: "VNC_PASSWORD_FILE", Help: "file whose first line is the VNC password (VNC uses at most 8 characters)"},
	{Name: "SHUTDOWN_TIMEOUT", Default: "60", Help: "seconds from SIGTERM until QEMU is told to quit if the guest has not powered off; keep it below terminationGracePeriodSeconds"},
	{Name: "VM_IP", Default: "192.168.254.2", Help: "the guest's address (probe ready looks for its lease)"},
	{Name: "READY_TCP_PORT", Help: "probe ready also needs this TCP port on the guest to accept"},
	{Name: "QEMU", Default: "qemu-system-x86_64", Help: "QEMU binary (name in PATH or absolute path)"},
}

// Config is everything vmm needs from its environment.
type Config struct {
	Name     string
	RunDir   string
	DiskDir  string
	ImageDir string
	QEMU     string

	CPUs   int
	Memory uint64 // bytes, a whole number of MiB
	Accel  string // auto, kvm or tcg: the request, not the result

	Tap string

	VNC             bool
	VNCListen       string // IP literal
	VNCPasswordFile string

	ShutdownTimeout time.Duration

	VMIP         netip.Addr
	ReadyTCPPort int // 0: none
}

// Overlay is the pet disk's path.
func (c Config) Overlay() string { return filepath.Join(c.DiskDir, c.Name+".qcow2") }

// SeedISO is the seed's path.
func (c Config) SeedISO() string { return filepath.Join(c.RunDir, stage.SeedISOName) }

// QMPSocket is the QMP socket's path.
func (c Config) QMPSocket() string { return filepath.Join(c.RunDir, stage.QMPSocketName) }

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
func FromEnv(env stage.Env, host Host) (Config, error) {
	var c Config
	var err error
	if c.Name, err = env.VMName(); err != nil {
		return c, err
	}
	c.RunDir = env.RunDir()
	c.DiskDir = env.String("DISK_DIR", "/var/lib/berth/disk")
	c.ImageDir = env.String("IMAGE_DIR", "/var/lib/berth/images")
	c.QEMU = env.String("QEMU", "qemu-system-x86_64")
	c.Tap = env.String("TAP", "tap0")
	if len(c.Tap) > 15 || strings.ContainsAny(c.Tap, "/ \t\n:") {
		return c, stage.BadInput("TAP", c.Tap, "must be a network interface name: 1 to 15 characters, no '/', ':' or spaces")
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

	ip := env.String("VM_IP", "192.168.254.2")
	if c.VMIP, err = netip.ParseAddr(ip); err != nil || !c.VMIP.Is4() {
		return c, stage.BadInput("VM_IP", ip, "must be an IPv4 address")
	}
	if c.ReadyTCPPort, err = env.Int("READY_TCP_PORT", 0, 1, 65535); err != nil {
		return c, err
	}
	return c, nil
}

// CheckFiles checks the files other stages must have made: the overlay
// (image-fetch) and the seed ISO (seed-iso). Probes do not need them.
func CheckFiles(c Config, host Host) error {
	if err := regular(host, c.Overlay()); err != nil {
		return stage.BadInputf("DISK_DIR", c.DiskDir, "no pet overlay %s (%v): image-fetch makes it; run image-fetch first", c.Overlay(), cause(err))
	}
	if err := regular(host, c.SeedISO()); err != nil {
		return stage.BadInputf("BERTH_RUN_DIR", c.RunDir, "no seed ISO %s (%v): seed-iso makes it; run seed-iso first", c.SeedISO(), cause(err))
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
	v, ok := env.Lookup("VM_CPUS")
	if !ok {
		return 1, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 {
		return 0, stage.BadInput("VM_CPUS", v, "must be a positive whole number")
	}
	if n > numCPU {
		return 0, stage.BadInputf("VM_CPUS", v, "must be at most the host's CPU count, %d", numCPU)
	}
	return n, nil
}

func memory(env stage.Env) (uint64, error) {
	v := env.String("VM_MEMORY", "1Gi")
	b, err := quantity.ParseBytes(v)
	if err != nil {
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
	addr, err := netip.ParseAddr(strings.Trim(listen, "[]"))
	if err != nil || addr.Zone() != "" {
		return stage.BadInput("VNC_LISTEN", listen, "must be an IP address, e.g. 127.0.0.1 or 0.0.0.0")
	}
	c.VNCListen = addr.String()
	c.VNCPasswordFile, _ = env.Lookup("VNC_PASSWORD_FILE")
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
func VNCPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
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
