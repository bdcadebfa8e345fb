package vmm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/berth-vm/berth/common/artifact"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/config"
	"github.com/berth-vm/berth/vmm/qemu"
	"github.com/berth-vm/berth/vmm/qmp"
)

// CheckTimeout bounds --check's whole conversation with QEMU. QMP serves one
// client at a time: a check must not keep vmm's own power-down waiting long.
const CheckTimeout = 5 * time.Second

// Check asks the running QEMU over QMP ($BERTH_RUN_DIR/qmp.sock, a socket, never
// through a symlink) what it runs and compares that with the plan: one line
// per difference. No QEMU to ask is an error (exit 1), not a difference.
func (p *Plan) Check(r stage.Run) ([]string, error) {
	ctx, cancel := context.WithTimeout(r.Ctx, CheckTimeout)
	defer cancel()
	l, err := QueryLive(ctx, p.QEMU.QMPSocket())
	if err != nil {
		return nil, err
	}
	return Differences(p.QEMU, l), nil
}

// Live is what the running QEMU reports about itself over QMP.
type Live struct {
	Name   string           // query-name
	KVM    bool             // query-kvm: KVM enabled (else TCG)
	Memory uint64           // query-memory-size-summary: base-memory, bytes
	CPUs   int              // query-cpus-fast: how many
	Drives map[string]Drive // query-block: the drives with a medium, by id
	FDSets map[int][]string // query-fdsets: each set's descriptors' labels (opaque)
	Status string           // query-status: running, paused, prelaunch, ...
	VNC    VNC              // query-vnc
	Panic  bool             // query-pci: the pvpanic-pci device is there
	TPMs   []TPM            // query-tpm
}

// Drive is a drive's medium as query-block reports it.
type Drive struct {
	File     string `json:"file"`
	Format   string `json:"drv"`
	ReadOnly bool   `json:"ro"`
	Image    struct {
		VirtualSize uint64 `json:"virtual-size"`
	} `json:"image"`
}

// TPM is a TPM device as query-tpm reports it.
type TPM struct {
	ID      string `json:"id"`
	Model   string `json:"model"` // tpm-crb
	Options struct {
		Type string `json:"type"` // emulator
	} `json:"options"`
}

// VNC is QEMU's VNC server as query-vnc reports it.
type VNC struct {
	Enabled bool   `json:"enabled"`
	Host    string `json:"host"`
	Service string `json:"service"`
	Auth    string `json:"auth"`
}

// QueryLive connects to QEMU's QMP socket and asks it. No socket, or one
// nobody answers on, is an error saying there is no QEMU to ask.
func QueryLive(ctx context.Context, sock string) (Live, error) {
	c, err := qmp.Dial(ctx, sock)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Live{}, fmt.Errorf("no QEMU to ask: %s does not exist (QEMU makes it when vmm starts it; is vmm running?)", sock)
	case errors.Is(err, syscall.ECONNREFUSED):
		return Live{}, fmt.Errorf("no QEMU to ask: nothing answers on %s (the socket of a QEMU that has ended)", sock)
	case err != nil:
		return Live{}, fmt.Errorf("ask QEMU: %w", err)
	}
	defer c.Close()

	var (
		name struct {
			Name string `json:"name"`
		}
		kvm struct {
			Enabled bool `json:"enabled"`
		}
		mem struct {
			Base uint64 `json:"base-memory"`
		}
		cpus  []struct{}
		block []struct {
			Device   string `json:"device"`
			Inserted *Drive `json:"inserted"`
		}
		fdsets []struct {
			ID  int `json:"fdset-id"`
			FDs []struct {
				Opaque string `json:"opaque"`
			} `json:"fds"`
		}
		status qmp.Status
		pci    []pciBus
		l      Live
	)
	for _, q := range []struct {
		cmd string
		out any
	}{
		{"query-name", &name},
		{"query-kvm", &kvm},
		{"query-memory-size-summary", &mem},
		{"query-cpus-fast", &cpus},
		{"query-block", &block},
		{"query-fdsets", &fdsets},
		{"query-status", &status},
		{"query-vnc", &l.VNC},
		{"query-pci", &pci},
		{"query-tpm", &l.TPMs},
	} {
		if err := c.Query(ctx, q.cmd, q.out); err != nil {
			return Live{}, fmt.Errorf("ask QEMU on %s: %w", sock, err)
		}
	}
	l.Name, l.KVM, l.Memory, l.CPUs, l.Status = name.Name, kvm.Enabled, mem.Base, len(cpus), status.Status
	l.Panic = hasPCIDevice(pci, pvpanicVendor, pvpanicDevice)
	l.Drives = map[string]Drive{}
	for _, b := range block {
		if b.Inserted != nil {
			l.Drives[b.Device] = *b.Inserted
		}
	}
	l.FDSets = map[int][]string{}
	for _, s := range fdsets {
		for _, fd := range s.FDs {
			l.FDSets[s.ID] = append(l.FDSets[s.ID], fd.Opaque)
		}
	}
	return l, nil
}

// pvpanic-pci's PCI id: Red Hat's vendor id, QEMU's PVPANIC device.
const (
	pvpanicVendor = 0x1b36
	pvpanicDevice = 0x0011
)

// pciBus is a bus of query-pci: its devices, and the buses behind bridges.
type pciBus struct {
	Devices []pciDevice `json:"devices"`
}

type pciDevice struct {
	ID struct {
		Vendor int `json:"vendor"`
		Device int `json:"device"`
	} `json:"id"`
	Bridge *struct {
		Devices []pciDevice `json:"devices"` // the devices behind a PCI bridge
	} `json:"pci_bridge"`
}

// hasPCIDevice says whether a device of this vendor and device id is on any
// bus, behind bridges too.
func hasPCIDevice(buses []pciBus, vendor, device int) bool {
	var walk func([]pciDevice) bool
	walk = func(ds []pciDevice) bool {
		for _, d := range ds {
			if d.ID.Vendor == vendor && d.ID.Device == device {
				return true
			}
			if d.Bridge != nil && walk(d.Bridge.Devices) {
				return true
			}
		}
		return false
	}
	for _, b := range buses {
		if walk(b.Devices) {
			return true
		}
	}
	return false
}

// Differences compares the running QEMU with the plan: one line per property
// that differs, naming it and, where one decides it, the variable.
func Differences(p qemu.Plan, l Live) []string {
	var d []string
	add := func(format string, args ...any) { d = append(d, fmt.Sprintf(format, args...)) }

	if l.Name != p.Name {
		add("QEMU runs the VM named %q, want %q (VM_NAME)", l.Name, p.Name)
	}
	if accel := liveAccel(l); accel != p.Accel {
		add("QEMU's accelerator is %s, want %s (%s)", accel, p.Accel, accelReason(p))
	}
	if l.Memory != p.Memory {
		add("QEMU's guest memory is %s, want %s (VM_MEMORY)", size(l.Memory), size(p.Memory))
	}
	if l.CPUs != p.CPUs {
		add("QEMU has %d vCPUs, want %d (VM_CPUS)", l.CPUs, p.CPUs)
	}

	// The drives as planned: the pet overlay, writable qcow2; the seed and
	// each ISO, read-only raw through the fd set vmm opened it into; with UEFI, OVMF's
	// code, read-only, and the variable store, writable, through its fd set.
	type drive struct {
		id, medium, file, fileWhy, format string
		readOnly                          bool
	}
	drives := []drive{
		{qemu.DiskDrive, "the pet overlay " + p.Overlay(), p.Overlay(), "the pet overlay " + p.Overlay() + " (DISK_DIR, VM_NAME)", "qcow2", false},
		{qemu.SeedDrive, "the seed ISO " + p.SeedISO(), qemu.SeedFile(), qemu.SeedFile() + " (the seed ISO vmm opened)", "raw", true},
	}
	for i, cd := range p.CDROMs {
		name := artifact.Name(i)
		drives = append(drives, drive{qemu.CDROMDrive(i), "the ISO " + p.CDROM(i), qemu.CDROMFile(i), qemu.CDROMFile(i) + " (the ISO vmm opened)", "raw", true})
		if got := l.FDSets[qemu.CDROMFDSet(i)]; len(got) != 1 || got[0] != p.CDROM(i) {
			add("QEMU's fd set %d holds %q, want the ISO %s (%s, target %s)", qemu.CDROMFDSet(i), got, p.CDROM(i), name, cd.Target)
		}
	}
	for i := len(p.CDROMs); i < artifact.MaxCDROMs; i++ {
		if got, ok := l.Drives[qemu.CDROMDrive(i)]; ok {
			add("QEMU has the ISO drive %s (%s), want none (CDROMS has %d)", qemu.CDROMDrive(i), got.File, len(p.CDROMs))
		}
	}
	if p.Firmware.UEFI() {
		drives = append(drives,
			drive{qemu.CodeDrive, "OVMF's code " + p.Firmware.Code(), p.Firmware.Code(), "OVMF's code " + p.Firmware.Code() + " (FIRMWARE, SECURE_BOOT, OVMF_DIR)", "raw", true},
			drive{qemu.VarsDrive, "the UEFI variable store " + p.EFIVars(), qemu.VarsFile(), qemu.VarsFile() + " (the variable store vmm opened)", "raw", false})
		if got := l.FDSets[qemu.VarsFDSet]; len(got) != 1 || got[0] != p.EFIVars() {
			add("QEMU's fd set %d holds %q, want the UEFI variable store %s (DISK_DIR, VM_NAME)", qemu.VarsFDSet, got, p.EFIVars())
		}
	} else {
		for _, id := range []string{qemu.CodeDrive, qemu.VarsDrive} {
			if got, ok := l.Drives[id]; ok {
				add("QEMU has the flash drive %s (%s), want none: SeaBIOS (FIRMWARE=bios)", id, got.File)
			}
		}
	}
	for _, w := range drives {
		got, ok := l.Drives[w.id]
		if !ok {
			add("QEMU has no medium in drive %s, want %s", w.id, w.medium)
			continue
		}
		if got.File != w.file {
			add("QEMU's drive %s is %s, want %s", w.id, got.File, w.fileWhy)
		}
		if got.Format != w.format {
			add("QEMU's drive %s has format %s, want %s", w.id, got.Format, w.format)
		}
		if got.ReadOnly != w.readOnly {
			add("QEMU's drive %s is %s, want %s", w.id, access(got.ReadOnly), access(w.readOnly))
		}
	}
	for _, dd := range p.DataDisks {
		id, path := qemu.DataDrive(dd.Name), dd.Path(p.DataDiskDir)
		got, ok := l.Drives[id]
		switch {
		case !ok:
			add("QEMU has no data disk %s (drive %s), want %s (DATA_DISKS)", dd.Name, id, path)
			continue
		case got.File != path:
			add("QEMU's data disk %s is %s, want %s (DATA_DISKS, DATA_DISK_DIR)", dd.Name, got.File, path)
		case got.Format != dd.Format:
			add("QEMU's data disk %s has format %s, want %s (DATA_DISKS)", dd.Name, got.Format, dd.Format)
		case got.ReadOnly:
			add("QEMU's data disk %s is read-only, want writable", dd.Name)
		}
		if got.Image.VirtualSize < dd.Bytes {
			add("QEMU's data disk %s is %s, want %s (DATA_DISKS): vmm grows it once its volume has room", dd.Name, size(got.Image.VirtualSize), size(dd.Bytes))
		}
	}
	if got, ok := l.Drives[qemu.DiskDrive]; ok && got.Image.VirtualSize < p.DiskSize {
		add("QEMU's pet disk is %s, want %s (DISK_SIZE): vmm grows it once its volume has room", size(got.Image.VirtualSize), size(p.DiskSize))
	}
	if got := l.FDSets[qemu.SeedFDSet]; len(got) != 1 || got[0] != p.SeedISO() {
		add("QEMU's fd set %d holds %q, want the seed ISO %s (BERTH_RUN_DIR)", qemu.SeedFDSet, got, p.SeedISO())
	}

	if l.Status != "running" {
		add("QEMU's status is %q, want \"running\"", l.Status)
	}
	if !l.Panic {
		add("QEMU has no pvpanic-pci device, want one (a kernel panic in the guest would go unseen: ON_PANIC)")
	}

	switch {
	case p.TPM && (len(l.TPMs) != 1 || l.TPMs[0].Model != "tpm-crb" || l.TPMs[0].Options.Type != "emulator"):
		add("QEMU has the TPMs %s, want one tpm-crb backed by swtpm (TPM=true)", tpmDesc(l.TPMs))
	case !p.TPM && len(l.TPMs) > 0:
		add("QEMU has the TPMs %s, want none (TPM=false)", tpmDesc(l.TPMs))
	}

	switch {
	case !p.VNC && l.VNC.Enabled:
		add("QEMU serves VNC on %s port %s, want no VNC (NO_VNC=true)", l.VNC.Host, l.VNC.Service)
	case p.VNC && !l.VNC.Enabled:
		add("QEMU serves no VNC, want VNC on %s port 5900 (NO_VNC, VNC_LISTEN)", p.VNCListen)
	case p.VNC:
		if !sameAddr(l.VNC.Host, p.VNCListen) {
			add("QEMU's VNC listens on %s, want %s (VNC_LISTEN)", l.VNC.Host, p.VNCListen)
		}
		if l.VNC.Service != "5900" {
			add("QEMU's VNC is on port %s, want 5900", l.VNC.Service)
		}
		want := "none"
		if p.VNCPassword {
			want = "vnc"
		}
		if l.VNC.Auth != want {
			add("QEMU's VNC authentication is %s, want %s (VNC_PASSWORD_FILE)", l.VNC.Auth, want)
		}
	}
	return d
}

func tpmDesc(tpms []TPM) string {
	if len(tpms) == 0 {
		return "(none)"
	}
	var d []string
	for _, t := range tpms {
		d = append(d, fmt.Sprintf("%s (%s, %s)", t.ID, t.Model, t.Options.Type))
	}
	return strings.Join(d, ", ")
}

func liveAccel(l Live) string {
	if l.KVM {
		return config.AccelKVM
	}
	return config.AccelTCG
}

// accelReason says why the plan has its accelerator.
func accelReason(p qemu.Plan) string {
	switch {
	case p.Config.Accel != config.AccelAuto:
		return "ACCEL=" + p.Config.Accel
	case p.Accel == config.AccelKVM:
		return "ACCEL=auto, and the KVM probe runs a guest now"
	}
	return "ACCEL=auto, and the KVM probe does not run a guest now"
}

func sameAddr(a, b string) bool {
	x, errX := netip.ParseAddr(a)
	y, errY := netip.ParseAddr(b)
	if errX != nil || errY != nil {
		return a == b
	}
	return x == y
}

// size writes bytes as MiB when whole, else as bytes.
func size(b uint64) string {
	if b%(1<<20) == 0 {
		return fmt.Sprintf("%dMi", b>>20)
	}
	return fmt.Sprintf("%d bytes", b)
}

// access names a drive's access for a difference line.
func access(readOnly bool) string {
	if readOnly {
		return "read-only"
	}
	return "writable"
}
