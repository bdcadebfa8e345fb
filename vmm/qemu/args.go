// Package qemu builds QEMU's command line from a Plan: a list of options, each
// with the reason it is there, so --dry-run can show (and a golden file can
// pin) exactly what runs and why.
package qemu

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/berth-vm/berth/common/artifact"
	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/podmem"
	"github.com/berth-vm/berth/vmm/config"
)

// TapFD, SeedFD and MonitorFD are the descriptors QEMU finds the tap, the
// seed ISO and vmm's own QMP connection on: the first, second and third
// ExtraFiles entries.
const (
	TapFD     = 3
	SeedFD    = 4
	MonitorFD = 5
)

// SeedFDSet is the fd set (-add-fd) that holds the seed ISO's descriptor.
const SeedFDSet = 1

// VarsFD and VarsFDSet: with FIRMWARE=uefi, the VM's UEFI variable store is
// the fourth ExtraFiles entry, in fd set 2.
const (
	VarsFD    = 6
	VarsFDSet = 2
)

// TPMFD is QEMU's end of the TPM's control channel (TPM=true): the fifth
// ExtraFiles entry (the fourth is VarsFD's, empty without UEFI).
const TPMFD = 7

// CDROMFD, CDROMFDSet and CDROMDrive: the i-th ISO of CDROMS is the
// ExtraFiles entry of fd 8+i (after TPMFD's, empty without a TPM), alone in
// fd set 3+i, attached as drive cdrom<i>.
func CDROMFD(i int) int           { return TPMFD + 1 + i }
func CDROMFDSet(i int) int        { return VarsFDSet + 1 + i }
func CDROMDrive(i int) string     { return fmt.Sprintf("cdrom%d", i) }
func CDROMFile(i int) string      { return fmt.Sprintf("/dev/fdset/%d", CDROMFDSet(i)) }
func cdromBootIndex(i int) string { return fmt.Sprint(1 + i) }

// TPMChardev is the TPM control channel's chardev.
const TPMChardev = "tpm0ctrl"

// CodeDrive and VarsDrive are the ids QEMU gives the two pflash drives
// (-drive if=pflash, units 0 and 1): OVMF's code and the variable store.
const (
	CodeDrive = "pflash0"
	VarsDrive = "pflash1"
)

// VarsFile is the variable store's drive file: the fd set, not a path on the volume.
func VarsFile() string { return fmt.Sprintf("/dev/fdset/%d", VarsFDSet) }

// DiskDrive and SeedDrive are the ids of the overlay's and the seed's drives
// (-drive id=), the names QEMU reports them by (query-block).
const (
	DiskDrive = "disk0"
	SeedDrive = "seed"
)

// MonitorChardev is the chardev of vmm's own QMP monitor.
const MonitorChardev = "vmm"

// AgentChardev is the guest agent channel's chardev, AgentPort the name the
// guest finds the channel by (/dev/virtio-ports/org.qemu.guest_agent.0,
// where qemu-guest-agent looks for it).
const (
	AgentChardev = "qga0"
	AgentPort    = "org.qemu.guest_agent.0"
)

// DataDrive is a data disk's drive id (-drive id=), the name QEMU reports it
// by (query-block, BLOCK_IO_ERROR's device).
func DataDrive(name string) string { return "disk-" + name }

// OnError is every disk's error policy: a write that fails for lack of space
// pauses the guest (io-error) until vmm resumes it with cont, when QEMU
// retries the request, so nothing the guest wrote is lost; any other error
// goes to the guest as a disk error.
const OnError = "werror=enospc,rerror=report"

// SeedFile is the seed drive's file: the fd set, not a path in the run volume.
func SeedFile() string { return fmt.Sprintf("/dev/fdset/%d", SeedFDSet) }

// Plan is the Config plus what vmm found out about the machine.
type Plan struct {
	config.Config
	Accel       string // kvm or tcg: the result of ACCEL and the KVM probe
	Vhost       bool   // /dev/vhost-net can be opened
	VNCPassword bool   // VNC requires a password (set over QMP after start)
	TBSize      uint64 // TCG's translation buffer, MiB (podmem.PlanTB); 0 under KVM
	TBReason    string // why that size
}

// Arg is one option of the command line: Flag and Value (Value may be empty),
// and Why it is there.
type Arg struct {
	Flag  string
	Value string
	Why   string
}

// Args returns the options of QEMU's command line for the plan (without the
// binary itself).
func Args(p Plan) []Arg {
	var a []Arg
	add := func(flag, value, why string) { a = append(a, Arg{flag, value, why}) }

	add("-name", p.Name+",debug-threads=on", "the VM's name in QEMU and its thread names (top -H shows vCPU threads)")
	add("-nodefaults", "", "no default devices (no VGA, floppy, CD-ROM, NIC, monitor): only what is listed here")
	add("-no-user-config", "", "ignore any /etc/qemu config file: the command line is the whole truth")
	add("-display", "none", "no local display; the console is the serial port, the screen is VNC")
	if p.Firmware.SecureBoot {
		add("-machine", "q35,smm=on", "modern PC (PCIe) with System Management Mode: OVMF's secure build keeps the variable store (and so Secure Boot's keys) writable only from SMM (SECURE_BOOT=true); the accelerator is chosen by -accel")
		add("-global", "driver=cfi.pflash01,property=secure,value=on", "the flash answers writes only in SMM: the guest's OS cannot rewrite the keys behind the firmware's back")
	} else {
		add("-machine", "q35", "modern PC (PCIe); the accelerator is chosen by -accel")
	}
	switch p.Accel {
	case config.AccelKVM:
		add("-accel", "kvm", "hardware virtualisation: /dev/kvm ran a test guest")
		add("-cpu", "host", "pass the host CPU through: fastest, and the guest sees the real features")
	default:
		tb := p.TBSize
		if tb == 0 {
			tb = podmem.MaxTBSize
		}
		why := fmt.Sprintf("emulation (no working KVM): one host thread per vCPU; a %d MiB translation cache, resident in full, sized to the container's memory limit", tb)
		if p.TBReason != "" {
			why += ": " + p.TBReason
		}
		add("-accel", fmt.Sprintf("tcg,thread=multi,tb-size=%d", tb), why)
		add("-cpu", "max", "every CPU feature TCG can emulate (x86-64-v2 and more), so modern distributions boot")
	}
	add("-smp", fmt.Sprint(p.CPUs), "VM_CPUS virtual CPUs")
	add("-m", fmt.Sprintf("%dM", p.Memory>>20), "VM_MEMORY of guest memory")
	if p.Firmware.UEFI() {
		firmwareArgs(add, p)
	}

	add("-drive", "if=none,id="+DiskDrive+",file="+optEscape(p.Overlay())+",format=qcow2,aio="+AIO(false, "writeback")+",discard=unmap,detect-zeroes=unmap,"+OnError,
		"the pet overlay, format given (never probed); QEMU opens its base in IMAGE_DIR read-only through the overlay's backing file and backing_fmt; "+onErrorWhy)
	add("-device", "virtio-blk-pci,drive="+DiskDrive+",serial="+disks.RootSerial+",bootindex=0", "the overlay as a virtio disk, booted first; the guest finds it at /dev/disk/by-id/virtio-"+disks.RootSerial)
	add("-add-fd", fmt.Sprintf("fd=%d,set=%d,opaque=%s", SeedFD, SeedFDSet, optEscape(p.SeedISO())),
		"the seed ISO, opened by vmm without following a symlink (the run volume is shared: a planted link to the pet disk must not become the CD-ROM) and inherited as fd 4")
	add("-drive", "if=none,id="+SeedDrive+",file="+SeedFile()+",format=raw,media=cdrom,readonly=on",
		"the seed ISO made by seed-iso (cloud-init's config-drive or NoCloud), raw and read-only, from that fd set: QEMU opens no path in the run volume")
	add("-device", "virtio-scsi-pci,id=scsi0", "SCSI controller for the seed CD-ROM: Debian's cloud kernels have virtio-scsi and sr_mod but no AHCI driver")
	add("-device", "scsi-cd,bus=scsi0.0,drive="+SeedDrive, "the seed as a CD-ROM (/dev/sr0), where cloud-init looks for its config-drive or NoCloud volume")
	for i, cd := range p.CDROMs {
		name := artifact.Name(i)
		add("-add-fd", fmt.Sprintf("fd=%d,set=%d,opaque=%s", CDROMFD(i), CDROMFDSet(i), optEscape(p.CDROM(i))),
			"the ISO "+name+" ("+cd.Target+"), verified by image-fetch and opened read-only by vmm without following a symlink (the image cache is shared), inherited as fd "+fmt.Sprint(CDROMFD(i)))
		add("-drive", "if=none,id="+CDROMDrive(i)+",file="+CDROMFile(i)+",format=raw,media=cdrom,readonly=on",
			"the ISO "+name+", raw and read-only, from that fd set: QEMU opens no path in the image cache")
		add("-device", fmt.Sprintf("ide-cd,bus=ide.%d,drive=%s,bootindex=%s", i, CDROMDrive(i), cdromBootIndex(i)),
			"the ISO "+name+" as a SATA CD-ROM on port "+fmt.Sprint(i)+" of q35's built-in AHCI controller (every installer has a driver for it; Windows Setup has none for virtio-scsi), booted after the pet disk (bootindex 0): a blank disk boots the installer, the installed system boots after the installer's reboot")
	}

	netdev := fmt.Sprintf("tap,id=net0,fd=%d", TapFD)
	why := "the persistent tap made by net-setup, opened by vmm (TUNSETIFF) and inherited as fd 3: no scripts, no privileges in QEMU"
	if p.Vhost {
		netdev += ",vhost=on"
		why += "; vhost-net moves packets in the kernel (/dev/vhost-net opens)"
	}
	add("-netdev", netdev, why)
	add("-device", "virtio-net-pci,netdev=net0,mac="+p.MAC().String(), "virtio NIC with a MAC derived from VM_NAME: stable across restarts, so the guest's network config keeps matching")
	add("-device", "virtio-rng-pci", "entropy for the guest: cloud-init's SSH host keys do not wait for randomness")
	// The data disks come after the NIC: adding one never moves the NIC to
	// another PCI slot (a guest's interface name may depend on it).
	for _, d := range p.DataDisks {
		dataDisk(add, d, p.DataDiskDir)
	}

	add("-chardev", "stdio,id=console,signal=off", "vmm's stdout (kubectl logs -c vm); Ctrl-C is not a signal to QEMU")
	add("-serial", "chardev:console", "the guest's first serial port (ttyS0) is the console")
	add("-qmp", "unix:"+optEscape(p.QMPSocket())+",server=on,wait=off", "QMP for vmm (power-down, quit, VNC password) and the probes")
	add("-chardev", fmt.Sprintf("socket,id=%s,fd=%d", MonitorChardev, MonitorFD),
		"vmm's own QMP connection: one end of a socket pair inherited as fd 5, so nobody else can take it and it never waits for the probes' turn on qmp.sock")
	add("-mon", "chardev="+MonitorChardev+",mode=control", "vmm watches the guest's status and the disks' sizes over it: resumes a guest paused on a full volume, grows a disk whose volume grew")

	if p.VNC {
		vnc := vncAddr(p.VNCListen) + ":0"
		why := "VNC on port 5900 (display 0)"
		if p.VNCPassword {
			vnc += ",password=on"
			why += " with a password, set over QMP from VNC_PASSWORD_FILE; until then nobody gets in"
		} else {
			why += " on loopback only: reach it with kubectl port-forward"
		}
		add("-vnc", vnc, why)
		add("-device", "VGA", "a display for VNC to show")
		add("-device", "qemu-xhci", "USB controller for the tablet")
		add("-device", "usb-tablet", "absolute pointer: the VNC mouse follows the cursor")
	}
	// After every other device: no device a pet already had moves to another PCI slot.
	panicWhy := "the guest's kernel reports a panic to QEMU (Linux: the pvpanic-pci driver, loaded by its PCI id): "
	if p.OnPanic == config.PanicRestart {
		panicWhy += "vmm ends QEMU and exits 1, the container restarts (ON_PANIC=restart)"
	} else {
		panicWhy += "vmm resets the guest, which boots again in the same QEMU (ON_PANIC=reset)"
	}
	add("-device", "pvpanic-pci", panicWhy)
	// The guest agent's channel after pvpanic: a pet that had no channel keeps every device's slot
	// (only the optional watchdog comes later, so turning that on still moves nothing).
	if p.GuestAgent {
		add("-chardev", "socket,id="+AgentChardev+",path="+optEscape(p.AgentSocket())+",server=on,wait=off",
			"the guest agent's channel on a unix socket in the run volume, for `vmm agent` (freeze and thaw around a backup), READY_WHEN=agent and the guest's OS and addresses in vmm's log (GUEST_AGENT=true)")
		add("-device", "virtio-serial-pci,id=agent-serial0", "a virtio-serial controller for the guest agent's channel (the console stays on the serial port)")
		add("-device", "virtserialport,chardev="+AgentChardev+",name="+AgentPort,
			"the channel qemu-guest-agent opens in the guest (/dev/virtio-ports/"+AgentPort+"; Debian's package starts with it)")
	}
	if p.TPM {
		// tpm-crb is not a PCI device: turning the TPM on moves no device.
		add("-chardev", fmt.Sprintf("socket,id=%s,fd=%d", TPMChardev, TPMFD),
			"the TPM's control channel: one end of a socket pair whose other end is swtpm's (vmm runs swtpm beside QEMU, its state in "+optEscape(p.TPMDir())+"), inherited as fd 7: nothing in the run volume")
		add("-tpmdev", "emulator,id=tpm0,chardev="+TPMChardev, "a TPM 2.0 emulated by swtpm (TPM=true); QEMU passes it the data channel over the control channel")
		add("-device", "tpm-crb,tpmdev=tpm0", "the TPM as a CRB device (ACPI TPM2 table): Linux's tpm_crb driver gives /dev/tpm0 and /dev/tpmrm0, Windows 11 sees TPM 2.0")
	}
	add("-action", "reboot=reset,shutdown=poweroff,panic=pause",
		"a guest reboot is a reset inside this QEMU (no container restart); a guest power-off ends QEMU (then ON_POWEROFF="+p.OnPoweroff+"); a panic pauses the guest in status guest-panicked for vmm to act on, instead of QEMU's default of exiting")
	if p.Watchdog {
		// Optional, so last of all: turning it on moves no other device.
		add("-device", "i6300esb", "a watchdog (WATCHDOG=true): Linux's i6300esb driver is /dev/watchdog in the guest")
		add("-action", "watchdog=reset", "a guest that stops feeding its watchdog is reset in this QEMU and boots again (vmm logs the WATCHDOG event)")
	}
	add("-msg", "timestamp=on", "timestamps on QEMU's own messages on stderr")
	return a
}

// firmwareArgs adds OVMF's two flash drives (FIRMWARE=uefi): the code from
// the image, read-only, and the VM's own variable store from its fd set.
// Without them QEMU boots its own SeaBIOS.
func firmwareArgs(add func(flag, value, why string), p Plan) {
	code, vars := "OVMF's code", "OVMF's template "+filepath.Base(p.Firmware.Template())
	if p.Firmware.SecureBoot {
		code = "OVMF's secure build (Secure Boot, SMM)"
		vars += " (Microsoft's keys enrolled: Secure Boot is on)"
	}
	add("-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+optEscape(p.Firmware.Code()), "UEFI firmware (FIRMWARE=uefi): "+code+" from the vmm image, read-only")
	add("-add-fd", fmt.Sprintf("fd=%d,set=%d,opaque=%s", VarsFD, VarsFDSet, optEscape(p.EFIVars())),
		"the VM's UEFI variable store on its disk volume, opened read-write by vmm without following a symlink and inherited as fd 6")
	add("-drive", "if=pflash,format=raw,unit=1,file="+VarsFile()+",auto-read-only=off",
		"the UEFI variables (boot entries, Secure Boot's keys, what the guest stores), from that fd set: made once from "+vars+", kept with the pet disk across restarts; "+
			"opened read-write at once (auto-read-only=off: -drive's default opens a file read-only first, and the fd set holds only a read-write descriptor)")
}

// onErrorWhy explains OnError.
const onErrorWhy = "werror=enospc: a full volume pauses the guest (vmm resumes it once the volume has room; the write is retried, nothing is lost), rerror=report: read errors go to the guest"

// dataDisk adds a data disk's drive and device: a Filesystem disk by its
// file, a Block disk as the host device it is, cache, aio and discard as the
// disk asks, the serial its name.
func dataDisk(add func(flag, value, why string), d disks.Disk, dir string) {
	id := DataDrive(d.Name)
	path := optEscape(d.Path(dir))
	var drive, what string
	if d.Block() {
		drive = "file.driver=host_device,file.filename=" + path + ",format=raw"
		what = "the Block volume's device, raw, as it is"
	} else {
		drive = "file=" + path + ",format=" + d.Format
		what = "the " + d.Format + " file on its Filesystem volume, format given (never probed)"
	}
	drive += ",cache=" + d.Cache + ",aio=" + AIO(d.Block(), d.Cache) + ",discard=" + d.Discard
	if d.Discard == "unmap" {
		drive += ",detect-zeroes=unmap"
	}
	add("-drive", "if=none,id="+id+","+drive+","+OnError,
		fmt.Sprintf("data disk %s: %s; cache %s and discard %s from DATA_DISKS, aio %s for its volume mode; %s", d.Name, what, d.Cache, d.Discard, AIO(d.Block(), d.Cache), onErrorWhy))
	if d.Bus == "virtio-scsi" {
		add("-device", "scsi-hd,bus=scsi0.0,drive="+id+",serial="+d.Name,
			"data disk "+d.Name+" on the SCSI controller the seed's CD-ROM uses; the guest finds it at /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_"+d.Name)
		return
	}
	add("-device", "virtio-blk-pci,drive="+id+",serial="+d.Name, "data disk "+d.Name+" as a virtio disk; the guest finds it at /dev/disk/by-id/virtio-"+d.Name)
}

// Strings flattens the options into argv (without the binary).
func Strings(args []Arg) []string {
	var s []string
	for _, a := range args {
		s = append(s, a.Flag)
		if a.Value != "" {
			s = append(s, a.Value)
		}
	}
	return s
}

// Explain renders the command line for people: first the command as a shell
// can run it, one option a line, then every option again with why it is there.
func Explain(binary string, args []Arg) string {
	var b strings.Builder
	b.WriteString(shellQuote(binary))
	for _, a := range args {
		b.WriteString(" \\\n  " + a.Flag)
		if a.Value != "" {
			b.WriteString(" " + shellQuote(a.Value))
		}
	}
	b.WriteString("\n\n# Why each option:\n")
	for _, a := range args {
		opt := a.Flag
		if a.Value != "" {
			opt += " " + a.Value
		}
		fmt.Fprintf(&b, "# %s\n#     %s\n", opt, a.Why)
	}
	return b.String()
}

// vncAddr writes an address as QEMU's -vnc wants it (IPv6 in brackets).
func vncAddr(s string) string {
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() && !a.Is4In6() {
		return "[" + s + "]"
	}
	return s
}

// optEscape doubles commas: in QEMU's option syntax ",," is a literal comma.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
