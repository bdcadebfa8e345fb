package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/artifact"
	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/vmm/config"
	"github.com/berth-vm/berth/vmm/firmware"
	"github.com/berth-vm/berth/vmm/qemu"
	"github.com/berth-vm/berth/vmm/qmp"
)

// livePlan is a plan and the live state of a QEMU started with it.
func livePlan() (qemu.Plan, Live) {
	c := config.Config{Name: "vm-0", RunDir: "/run/berth", DiskDir: "/var/lib/berth/disk", CPUs: 2, Memory: 1 << 30,
		Accel: config.AccelAuto, VNC: true, VNCListen: "127.0.0.1"}
	p := qemu.Plan{Config: c, Accel: config.AccelTCG}
	l := Live{Name: "vm-0", Memory: 1 << 30, CPUs: 2, Status: "running",
		Drives: map[string]Drive{
			"disk0": {File: "/var/lib/berth/disk/vm-0.qcow2", Format: "qcow2"},
			"seed":  {File: "/dev/fdset/1", Format: "raw", ReadOnly: true},
		},
		FDSets: map[int][]string{1: {"/run/berth/seed.iso"}},
		VNC:    VNC{Enabled: true, Host: "127.0.0.1", Service: "5900", Auth: "none"},
		Panic:  true,
	}
	return p, l
}

// withDataDisks plans a qcow2 data disk "data" (10Gi) and a Block disk "db"
// (1Gi), gives QEMU both as planned, then changes what QEMU has.
func withDataDisks(change func(l *Live)) func(p *qemu.Plan, l *Live) {
	return func(p *qemu.Plan, l *Live) {
		list, err := disks.Parse(`[{"name":"data","size":"10Gi"},{"name":"db","size":"1Gi","volumeMode":"Block"}]`)
		if err != nil {
			panic(err)
		}
		p.Config.DataDisks, p.Config.DataDiskDir = list, "/disks"
		l.Drives["disk-data"] = sized(Drive{File: "/disks/data/data.qcow2", Format: "qcow2"}, 10<<30)
		l.Drives["disk-db"] = sized(Drive{File: "/dev/berth/db", Format: "raw"}, 1<<30)
		change(l)
	}
}

// crb is the TPM QEMU has with TPM=true.
func crb() TPM {
	t := TPM{ID: "tpm0", Model: "tpm-crb"}
	t.Options.Type = "emulator"
	return t
}

func sized(d Drive, n uint64) Drive { d.Image.VirtualSize = n; return d }

// withUEFI plans FIRMWARE=uefi (Secure Boot as given), gives QEMU OVMF's two
// flash drives and the variable store's fd set as planned, then changes what
// QEMU has.
func withUEFI(secureBoot bool, change func(l *Live)) func(p *qemu.Plan, l *Live) {
	return func(p *qemu.Plan, l *Live) {
		p.Config.Firmware = firmware.Spec{Kind: firmware.UEFI, SecureBoot: secureBoot, OVMFDir: firmware.DefaultOVMFDir}
		l.Drives["pflash0"] = Drive{File: p.Config.Firmware.Code(), Format: "raw", ReadOnly: true}
		l.Drives["pflash1"] = Drive{File: "/dev/fdset/2", Format: "raw"}
		l.FDSets[2] = []string{"/var/lib/berth/disk/vm-0.efivars.fd"}
		change(l)
	}
}

// TestDifferences: each property of the running QEMU that differs from the
// plan is one line naming it (and the variable that decides it).
func TestDifferences(t *testing.T) {
	tests := []struct {
		name   string
		change func(p *qemu.Plan, l *Live)
		want   []string // one substring per line, in order
	}{
		{"the same", func(p *qemu.Plan, l *Live) {}, nil},
		{"name", func(p *qemu.Plan, l *Live) { l.Name = "vm-1" }, []string{`QEMU runs the VM named "vm-1", want "vm-0" (VM_NAME)`}},
		{"KVM works now, QEMU runs TCG", func(p *qemu.Plan, l *Live) { p.Accel = config.AccelKVM },
			[]string{"QEMU's accelerator is tcg, want kvm (ACCEL=auto, and the KVM probe runs a guest now)"}},
		{"ACCEL=tcg, QEMU runs KVM", func(p *qemu.Plan, l *Live) { p.Config.Accel = config.AccelTCG; l.KVM = true },
			[]string{"QEMU's accelerator is kvm, want tcg (ACCEL=tcg)"}},
		{"memory", func(p *qemu.Plan, l *Live) { l.Memory = 512 << 20 }, []string{"QEMU's guest memory is 512Mi, want 1024Mi (VM_MEMORY)"}},
		{"memory, not whole MiB", func(p *qemu.Plan, l *Live) { l.Memory = 1<<30 + 1 }, []string{"QEMU's guest memory is 1073741825 bytes, want 1024Mi"}},
		{"vCPUs", func(p *qemu.Plan, l *Live) { l.CPUs = 1 }, []string{"QEMU has 1 vCPUs, want 2 (VM_CPUS)"}},
		{"another overlay", func(p *qemu.Plan, l *Live) { l.Drives["disk0"] = Drive{File: "/elsewhere/vm-0.qcow2", Format: "qcow2"} },
			[]string{"QEMU's drive disk0 is /elsewhere/vm-0.qcow2, want the pet overlay /var/lib/berth/disk/vm-0.qcow2 (DISK_DIR, VM_NAME)"}},
		{"overlay raw and read-only", func(p *qemu.Plan, l *Live) {
			l.Drives["disk0"] = Drive{File: "/var/lib/berth/disk/vm-0.qcow2", Format: "raw", ReadOnly: true}
		}, []string{"drive disk0 has format raw, want qcow2", "drive disk0 is read-only, want writable"}},
		{"no overlay", func(p *qemu.Plan, l *Live) { delete(l.Drives, "disk0") }, []string{"QEMU has no medium in drive disk0, want the pet overlay"}},
		{"seed by path, writable", func(p *qemu.Plan, l *Live) { l.Drives["seed"] = Drive{File: "/run/berth/seed.iso", Format: "raw"} },
			[]string{"QEMU's drive seed is /run/berth/seed.iso, want /dev/fdset/1", "QEMU's drive seed is writable, want read-only"}},
		{"no seed", func(p *qemu.Plan, l *Live) { delete(l.Drives, "seed"); delete(l.FDSets, 1) },
			[]string{"QEMU has no medium in drive seed, want the seed ISO /run/berth/seed.iso", `QEMU's fd set 1 holds [], want the seed ISO /run/berth/seed.iso (BERTH_RUN_DIR)`}},
		{"seed from another run dir", func(p *qemu.Plan, l *Live) { l.FDSets[1] = []string{"/run/other/seed.iso"} },
			[]string{`QEMU's fd set 1 holds ["/run/other/seed.iso"], want the seed ISO /run/berth/seed.iso`}},
		{"paused", func(p *qemu.Plan, l *Live) { l.Status = "paused" }, []string{`QEMU's status is "paused", want "running"`}},
		{"no pvpanic", func(p *qemu.Plan, l *Live) { l.Panic = false }, []string{"QEMU has no pvpanic-pci device, want one (a kernel panic in the guest would go unseen: ON_PANIC)"}},
		{"VNC off, planned", func(p *qemu.Plan, l *Live) { l.VNC = VNC{} }, []string{"QEMU serves no VNC, want VNC on 127.0.0.1 port 5900 (NO_VNC, VNC_LISTEN)"}},
		{"VNC on, NO_VNC", func(p *qemu.Plan, l *Live) { p.Config.VNC = false }, []string{"QEMU serves VNC on 127.0.0.1 port 5900, want no VNC (NO_VNC=true)"}},
		{"VNC elsewhere, with a password", func(p *qemu.Plan, l *Live) { l.VNC.Host, l.VNC.Auth = "0.0.0.0", "vnc" },
			[]string{"QEMU's VNC listens on 0.0.0.0, want 127.0.0.1 (VNC_LISTEN)", "QEMU's VNC authentication is vnc, want none (VNC_PASSWORD_FILE)"}},
		{"VNC password planned", func(p *qemu.Plan, l *Live) { p.VNCPassword = true }, []string{"QEMU's VNC authentication is none, want vnc"}},
		{"VNC IPv6, written another way", func(p *qemu.Plan, l *Live) { p.Config.VNCListen, l.VNC.Host = "::1", "0:0::1" }, nil},
		{"VNC port", func(p *qemu.Plan, l *Live) { l.VNC.Service = "5901" }, []string{"QEMU's VNC is on port 5901, want 5900"}},
		{"data disks as planned", withDataDisks(func(l *Live) {}), nil},
		{"a data disk missing", withDataDisks(func(l *Live) { delete(l.Drives, "disk-db") }),
			[]string{"QEMU has no data disk db (drive disk-db), want /dev/berth/db (DATA_DISKS)"}},
		{"a data disk's other file", withDataDisks(func(l *Live) { l.Drives["disk-data"] = sized(Drive{File: "/tmp/x.qcow2", Format: "qcow2"}, 10<<30) }),
			[]string{"QEMU's data disk data is /tmp/x.qcow2, want /disks/data/data.qcow2 (DATA_DISKS, DATA_DISK_DIR)"}},
		{"a data disk's format", withDataDisks(func(l *Live) {
			l.Drives["disk-data"] = sized(Drive{File: "/disks/data/data.qcow2", Format: "raw"}, 10<<30)
		}), []string{"QEMU's data disk data has format raw, want qcow2 (DATA_DISKS)"}},
		{"a data disk smaller than its size", withDataDisks(func(l *Live) {
			l.Drives["disk-db"] = sized(Drive{File: "/dev/berth/db", Format: "raw"}, 512<<20)
		}), []string{"QEMU's data disk db is 512Mi, want 1024Mi (DATA_DISKS): vmm grows it once its volume has room"}},
		{"the pet disk smaller than DISK_SIZE", func(p *qemu.Plan, l *Live) {
			p.Config.DiskSize = 20 << 30
			l.Drives["disk0"] = sized(l.Drives["disk0"], 10<<30)
		}, []string{"QEMU's pet disk is 10240Mi, want 20480Mi (DISK_SIZE): vmm grows it once its volume has room"}},
		{"ISOs as planned", withCDROMs(func(l *Live) {}), nil},
		{"an ISO missing", withCDROMs(func(l *Live) { delete(l.Drives, "cdrom1"); delete(l.FDSets, 4) }),
			[]string{`QEMU's fd set 4 holds [], want the ISO /var/lib/berth/images/virtio-win.iso (CDROMS[1], target virtio-win.iso)`,
				"QEMU has no medium in drive cdrom1, want the ISO /var/lib/berth/images/virtio-win.iso"}},
		{"an ISO writable, another file", withCDROMs(func(l *Live) {
			l.Drives["cdrom0"] = Drive{File: "/dev/fdset/3", Format: "raw"}
			l.FDSets[3] = []string{"/var/lib/berth/images/other.iso"}
		}), []string{`QEMU's fd set 3 holds ["/var/lib/berth/images/other.iso"], want the ISO /var/lib/berth/images/installer.iso (CDROMS[0], target installer.iso)`,
			"QEMU's drive cdrom0 is writable, want read-only"}},
		{"an ISO still attached after CDROMS was emptied", func(p *qemu.Plan, l *Live) {
			l.Drives["cdrom0"] = Drive{File: "/dev/fdset/3", Format: "raw", ReadOnly: true}
		}, []string{"QEMU has the ISO drive cdrom0 (/dev/fdset/3), want none (CDROMS has 0)"}},
		{"UEFI as planned", withUEFI(false, func(l *Live) {}), nil},
		{"Secure Boot as planned", withUEFI(true, func(l *Live) {}), nil},
		{"UEFI planned, QEMU runs SeaBIOS", withUEFI(false, func(l *Live) { delete(l.Drives, "pflash0"); delete(l.Drives, "pflash1"); delete(l.FDSets, 2) }),
			[]string{"QEMU's fd set 2 holds [], want the UEFI variable store /var/lib/berth/disk/vm-0.efivars.fd (DISK_DIR, VM_NAME)",
				"QEMU has no medium in drive pflash0, want OVMF's code /usr/share/OVMF/OVMF_CODE_4M.fd",
				"QEMU has no medium in drive pflash1, want the UEFI variable store /var/lib/berth/disk/vm-0.efivars.fd"}},
		{"Secure Boot planned, QEMU runs OVMF without it", withUEFI(true, func(l *Live) {
			l.Drives["pflash0"] = Drive{File: "/usr/share/OVMF/OVMF_CODE_4M.fd", Format: "raw", ReadOnly: true}
		}), []string{"QEMU's drive pflash0 is /usr/share/OVMF/OVMF_CODE_4M.fd, want OVMF's code /usr/share/OVMF/OVMF_CODE_4M.secboot.fd (FIRMWARE, SECURE_BOOT, OVMF_DIR)"}},
		{"the variable store read-only, from another VM", withUEFI(false, func(l *Live) {
			l.Drives["pflash1"] = Drive{File: "/dev/fdset/2", Format: "raw", ReadOnly: true}
			l.FDSets[2] = []string{"/var/lib/berth/disk/vm-1.efivars.fd"}
		}), []string{`QEMU's fd set 2 holds ["/var/lib/berth/disk/vm-1.efivars.fd"], want the UEFI variable store /var/lib/berth/disk/vm-0.efivars.fd`,
			"QEMU's drive pflash1 is read-only, want writable"}},
		{"a TPM as planned", func(p *qemu.Plan, l *Live) { p.Config.TPM = true; l.TPMs = []TPM{crb()} }, nil},
		{"a TPM planned, QEMU has none", func(p *qemu.Plan, l *Live) { p.Config.TPM = true },
			[]string{"QEMU has the TPMs (none), want one tpm-crb backed by swtpm (TPM=true)"}},
		{"no TPM planned, QEMU has one", func(p *qemu.Plan, l *Live) { l.TPMs = []TPM{crb()} },
			[]string{"QEMU has the TPMs tpm0 (tpm-crb, emulator), want none (TPM=false)"}},
		{"a TPM planned, QEMU's is a passthrough TIS", func(p *qemu.Plan, l *Live) {
			p.Config.TPM = true
			l.TPMs = []TPM{crb()}
			l.TPMs[0].Model, l.TPMs[0].Options.Type = "tpm-tis", "passthrough"
		}, []string{"QEMU has the TPMs tpm0 (tpm-tis, passthrough), want one tpm-crb backed by swtpm (TPM=true)"}},
		{"BIOS planned, QEMU runs OVMF", func(p *qemu.Plan, l *Live) {
			l.Drives["pflash0"] = Drive{File: "/usr/share/OVMF/OVMF_CODE_4M.fd", Format: "raw", ReadOnly: true}
		}, []string{"QEMU has the flash drive pflash0 (/usr/share/OVMF/OVMF_CODE_4M.fd), want none: SeaBIOS (FIRMWARE=bios)"}},
		{"the pet disk larger than DISK_SIZE", func(p *qemu.Plan, l *Live) {
			p.Config.DiskSize = 20 << 30
			l.Drives["disk0"] = sized(l.Drives["disk0"], 30<<30)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, l := livePlan()
			tt.change(&p, &l)
			got := Differences(p, l)
			if len(got) != len(tt.want) {
				t.Fatalf("differences:\n%s\nwant %d lines like %q", strings.Join(got, "\n"), len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("line %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// withCDROMs plans two ISOs and gives QEMU them as vmm attaches them, then
// applies change.
func withCDROMs(change func(l *Live)) func(p *qemu.Plan, l *Live) {
	return func(p *qemu.Plan, l *Live) {
		var err error
		p.Config.ImageDir = "/var/lib/berth/images"
		if p.Config.CDROMs, err = artifact.ParseCDROMs(`[{"source":"https://h/installer.iso"},{"source":"/isos/virtio-win.iso"}]`); err != nil {
			panic(err)
		}
		for i := range p.Config.CDROMs {
			l.Drives[qemu.CDROMDrive(i)] = Drive{File: qemu.CDROMFile(i), Format: "raw", ReadOnly: true}
			l.FDSets[qemu.CDROMFDSet(i)] = []string{p.CDROM(i)}
		}
		change(l)
	}
}

// check runs `vmm --check` in the pod with env: its exit code, stdout and stderr.
func (p *pod) check(t *testing.T, env []string) (int, string, string) {
	t.Helper()
	cmd := p.cmd(t, env, "--check")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// TestBinaryCheck: `vmm --check` against the real QEMU a real vmm started:
// the same plan matches (exit 0); a QEMU started with another plan gives one
// "differs:" line per property (exit 1); a paused QEMU differs in its status;
// no QEMU to ask is exit 1 saying so; a symlink at qmp.sock is exit 2.
// TestHasPCIDevice reads query-pci answers of real QEMU (testdata: QEMU 7.2,
// -nodefaults, asked after SeaBIOS numbered the buses: without it QEMU lists
// no device behind a bridge), with pvpanic-pci behind a pci-bridge and without it.
func TestHasPCIDevice(t *testing.T) {
	for _, tt := range []struct {
		file string
		want bool
	}{
		{"query-pci-pvpanic-behind-bridge.json", true},
		{"query-pci-no-pvpanic.json", false},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		var buses []pciBus
		if err := json.Unmarshal(b, &buses); err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		if got := hasPCIDevice(buses, pvpanicVendor, pvpanicDevice); got != tt.want {
			t.Errorf("%s: pvpanic found %v, want %v", tt.file, got, tt.want)
		}
	}
}

func TestBinaryCheck(t *testing.T) {
	roottest.Require(t)
	needQEMU(t)
	p := newPod(t)
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(p.disk, "testvm.qcow2"), "64M")
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(p.disk, "othervm.qcow2"), "64M")
	disk2 := filepath.Join(p.work, "disk2")
	os.MkdirAll(disk2, 0o755)
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(disk2, "testvm.qcow2"), "64M")
	pw := filepath.Join(p.run, "vnc-password")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	os.WriteFile(filepath.Join(p.run, "seed.iso"), nil, 0o644)
	p.chown(t)
	sh(t, "chown", "-R", "65534:65534", disk2)
	// ACCEL=auto in both: the check probes KVM as the start did, and must come to the same answer.
	base := p.env("ACCEL=auto", "SHUTDOWN_TIMEOUT=1")
	disk := p.disk

	tests := []struct {
		name string
		run  []string // the running vmm's environment, beyond base
		want []string // one substring per "differs:" line, in order; none: the check passes
	}{
		{"the same plan", nil, nil},
		{"other memory", []string{"VM_MEMORY=768Mi"}, []string{"QEMU's guest memory is 768Mi, want 512Mi (VM_MEMORY)"}},
		{"other vCPUs", []string{"VM_CPUS=2"}, []string{"QEMU has 2 vCPUs, want 1 (VM_CPUS)"}},
		{"other name", []string{"VM_NAME=othervm"}, []string{`QEMU runs the VM named "othervm", want "testvm" (VM_NAME)`,
			"QEMU's drive disk0 is " + disk + "/othervm.qcow2, want the pet overlay " + disk + "/testvm.qcow2"}},
		{"other disk", []string{"DISK_DIR=" + disk2}, []string{"QEMU's drive disk0 is " + disk2 + "/testvm.qcow2, want the pet overlay " + disk + "/testvm.qcow2"}},
		{"no VNC", []string{"NO_VNC=true"}, []string{"QEMU serves no VNC, want VNC on 127.0.0.1 port 5900"}},
		{"VNC on every address with a password", []string{"VNC_LISTEN=0.0.0.0", "VNC_PASSWORD_FILE=" + pw},
			[]string{"QEMU's VNC listens on 0.0.0.0, want 127.0.0.1 (VNC_LISTEN)", "QEMU's VNC authentication is vnc, want none (VNC_PASSWORD_FILE)"}},
		{"all at once", []string{"VM_MEMORY=768Mi", "VM_CPUS=2", "NO_VNC=true"},
			[]string{"guest memory is 768Mi", "has 2 vCPUs", "serves no VNC"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := p.start(t, strings.ReplaceAll(tt.name, " ", "-"), append(append([]string{}, base...), tt.run...))
			until(t, 30*time.Second, "probe live", func() bool { c, _ := p.probe(t, base, "live"); return c == 0 })
			start := time.Now()
			code, stdout, stderr := p.check(t, base)
			t.Logf("--check took %s", time.Since(start).Round(time.Millisecond))
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if len(tt.want) == 0 {
				if code != 0 || stdout != "vmm: the live state matches the plan\n" {
					t.Errorf("--check: exit %d, stdout %q, stderr %q; want 0 and the match", code, stdout, stderr)
				}
			} else {
				if code != 1 || len(lines) != len(tt.want) {
					t.Errorf("--check: exit %d, stdout:\n%s\nwant exit 1 and %d lines like %q", code, stdout, len(tt.want), tt.want)
				}
				for i, w := range tt.want {
					if i < len(lines) && (!strings.HasPrefix(lines[i], "differs: ") || !strings.Contains(lines[i], w)) {
						t.Errorf("--check line %d = %q, want \"differs: ...%s...\"", i, lines[i], w)
					}
				}
				if !strings.Contains(stderr, "differs from the plan") {
					t.Errorf("--check stderr %q does not say the live state differs", stderr)
				}
			}
			if tt.name == "the same plan" {
				// Paused: the one property left to see.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if _, err := qmp.Do(ctx, filepath.Join(p.run, "qmp.sock"), "stop", nil); err != nil {
					t.Fatal(err)
				}
				code, stdout, _ := p.check(t, base)
				if code != 1 || stdout != "differs: QEMU's status is \"paused\", want \"running\"\n" {
					t.Errorf("--check of a paused QEMU: exit %d, stdout %q; want 1 and the status", code, stdout)
				}
			}
			v.cmd.Process.Signal(syscall.SIGTERM)
			v.exit(t, 30*time.Second)
		})
	}

	// No QEMU to ask: no socket (QEMU removes it when it quits), then a
	// socket nobody answers on (that of a QEMU killed).
	sock := filepath.Join(p.run, "qmp.sock")
	code, stdout, stderr := p.check(t, base)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "no QEMU to ask: "+sock+" does not exist") {
		t.Errorf("--check without a socket: exit %d, stdout %q, stderr %q; want 1 and no QEMU to ask", code, stdout, stderr)
	}
	v := p.start(t, "killed", base)
	until(t, 30*time.Second, "probe live", func() bool { c, _ := p.probe(t, base, "live"); return c == 0 })
	syscall.Kill(v.qemuPid(t), syscall.SIGKILL)
	v.exit(t, 30*time.Second)
	code, stdout, stderr = p.check(t, base)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "no QEMU to ask: nothing answers on "+sock) {
		t.Errorf("--check with QEMU killed: exit %d, stdout %q, stderr %q; want 1 and no QEMU to ask", code, stdout, stderr)
	}
	os.Remove(sock)
	// A symlink there is refused before any QMP, never connected through.
	os.Symlink("/run/other/qmp.sock", sock)
	code, _, stderr = p.check(t, base)
	if code != 2 || !strings.Contains(stderr, "qmp.sock is a symlink") {
		t.Errorf("--check with a symlink at qmp.sock: exit %d, stderr %q; want 2 naming the symlink", code, stderr)
	}
}
