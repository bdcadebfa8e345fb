package qemu

import (
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/artifact"
	"github.com/berth-vm/berth/common/disks"
	"github.com/berth-vm/berth/common/golden"
	"github.com/berth-vm/berth/common/podmem"
	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/config"
	"github.com/berth-vm/berth/vmm/firmware"
)

func base() config.Config {
	return config.Config{
		Name: "vm-0", RunDir: "/run/berth", DiskDir: "/var/lib/berth/disk", ImageDir: "/var/lib/berth/images",
		QEMU: "qemu-system-x86_64", CPUs: 2, Memory: 1 << 30, Accel: config.AccelAuto, Tap: "tap0",
		VNC: true, VNCListen: "127.0.0.1", ShutdownTimeout: 60 * time.Second,
		OnPoweroff: config.PoweroffRestart, OnPanic: config.PanicReset, GuestAgent: true,
		Firmware: firmware.Spec{Kind: firmware.BIOS, OVMFDir: firmware.DefaultOVMFDir},
	}
}

func uefi(secureBoot bool) config.Config {
	c := base()
	c.Firmware.Kind, c.Firmware.SecureBoot = firmware.UEFI, secureBoot
	return c
}

// TestArgsGolden pins the whole command line (and the reason for every option)
// for a few configurations. Update with: go test ./qemu -update
func TestArgsGolden(t *testing.T) {
	tests := []struct {
		name string
		plan func() Plan
	}{
		{"tcg-default", func() Plan { return Plan{Config: base(), Accel: config.AccelTCG} }},
		{"tcg-small-limit", func() Plan {
			c := base()
			tb := podmem.PlanTB(c.Memory+200<<20, c.Memory) // room for less than the largest buffer
			return Plan{Config: c, Accel: config.AccelTCG, TBSize: tb.MiB, TBReason: tb.Reason}
		}},
		{"kvm-vhost-vnc-password", func() Plan {
			c := base()
			c.VNCListen, c.VNCPasswordFile, c.CPUs, c.Memory = "0.0.0.0", "/etc/berth/vnc", 4, 4<<30
			c.OnPoweroff, c.OnPanic, c.Watchdog = config.PoweroffStop, config.PanicRestart, true
			return Plan{Config: c, Accel: config.AccelKVM, Vhost: true, VNCPassword: true}
		}},
		{"no-vnc", func() Plan {
			c := base()
			c.VNC, c.CPUs, c.Memory = false, 1, 128<<20
			return Plan{Config: c, Accel: config.AccelTCG}
		}},
		{"no-guest-agent", func() Plan {
			c := base()
			c.GuestAgent = false
			return Plan{Config: c, Accel: config.AccelKVM}
		}},
		{"data-disks", func() Plan {
			c := base()
			c.VNC = false
			c.DataDiskDir = "/var/lib/berth/disks"
			var err error
			c.DataDisks, err = disks.Parse(`[{"name":"data","size":"10Gi"},` +
				`{"name":"logs","size":"1Gi","format":"raw","bus":"virtio-scsi","cache":"writeback","discard":"ignore"},` +
				`{"name":"db","size":"20Gi","volumeMode":"Block"},` +
				`{"name":"scratch","size":"4Gi","volumeMode":"Block","bus":"virtio-scsi","cache":"writethrough"}]`)
			if err != nil {
				t.Fatal(err)
			}
			return Plan{Config: c, Accel: config.AccelTCG}
		}},
		{"cdroms-uefi", func() Plan {
			c := uefi(true)
			c.TPM = true
			var err error
			c.CDROMs, err = artifact.ParseCDROMs(`[{"source":"https://example.com/Win11_24H2.iso"},{"source":"/isos/virtio-win.iso","target":"virtio,win.iso"}]`)
			if err != nil {
				t.Fatal(err)
			}
			return Plan{Config: c, Accel: config.AccelTCG}
		}},
		{"uefi", func() Plan { return Plan{Config: uefi(false), Accel: config.AccelTCG} }},
		{"uefi-secure-boot", func() Plan { return Plan{Config: uefi(true), Accel: config.AccelTCG} }},
		{"uefi-secure-boot-tpm", func() Plan {
			c := uefi(true)
			c.TPM = true
			return Plan{Config: c, Accel: config.AccelTCG}
		}},
		{"odd-paths-ipv6-vnc", func() Plan {
			c := base()
			c.Name, c.RunDir, c.DiskDir = "a", "/run/with,comma", "/disk dir/it's"
			c.VNCListen, c.VNCPasswordFile = "::", "/pw"
			return Plan{Config: c, Accel: config.AccelTCG, VNCPassword: true}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.plan()
			got := Explain(p.QEMU, Args(p))
			golden.Assert(t, tt.name+".golden", []byte(got))
		})
	}
}

// TestArgsInvariants checks what must hold for every plan, whatever the golden
// files say: explicit formats, the tap fd, no default devices, a reason each.
func TestArgsInvariants(t *testing.T) {
	for _, accel := range []string{config.AccelKVM, config.AccelTCG} {
		for _, vnc := range []bool{true, false} {
			c := base()
			c.VNC = vnc
			args := Args(Plan{Config: c, Accel: accel})
			line := strings.Join(Strings(args), " ")
			for _, want := range []string{
				"-nodefaults", "-display none", "format=qcow2", "format=raw,media=cdrom,readonly=on",
				"-netdev tap,id=net0,fd=3", "mac=" + config.MAC("vm-0").String(), "unix:/run/berth/qmp.sock,server=on,wait=off",
				"-serial chardev:console",
			} {
				if !strings.Contains(line, want) {
					t.Errorf("accel=%s vnc=%v: %q missing from %s", accel, vnc, want, line)
				}
			}
			if strings.Contains(line, "-vnc") != vnc {
				t.Errorf("vnc=%v but command line is %s", vnc, line)
			}
			wantCPU := map[string]string{config.AccelKVM: "-cpu host", config.AccelTCG: "-cpu max"}[accel]
			if !strings.Contains(line, wantCPU) {
				t.Errorf("accel=%s: want %q in %s", accel, wantCPU, line)
			}
			for _, a := range args {
				if a.Why == "" {
					t.Errorf("option %s %s has no reason", a.Flag, a.Value)
				}
			}
		}
	}
}

// TestFirmwareMovesNoDevice: UEFI and Secure Boot add flash drives and SMM,
// no device, and the TPM adds tpm-crb, no PCI device: a pet switched between
// firmwares, or given a TPM, keeps every device's PCI slot
// (its OS's interface and disk names), and the variable store is the fd set
// vmm opened, never a path QEMU opens on the volume.
func TestFirmwareMovesNoDevice(t *testing.T) {
	devices := func(c config.Config) (d []string) {
		for _, a := range Args(Plan{Config: c, Accel: config.AccelTCG}) {
			if a.Flag == "-device" {
				d = append(d, a.Value)
			}
		}
		return d
	}
	pci := func(c config.Config) (d []string) {
		for _, dev := range devices(c) {
			if !strings.HasPrefix(dev, "tpm-crb,") {
				d = append(d, dev)
			}
		}
		return d
	}
	bios := devices(base())
	withTPM := base()
	withTPM.TPM = true
	if got := pci(withTPM); !reflect.DeepEqual(got, bios) || len(devices(withTPM)) != len(bios)+1 {
		t.Errorf("TPM=true: devices %q, want BIOS's %q and tpm-crb", devices(withTPM), bios)
	}
	for _, sb := range []bool{false, true} {
		c := uefi(sb)
		if got := devices(c); !reflect.DeepEqual(got, bios) {
			t.Errorf("secureBoot=%v: devices %q, want BIOS's %q", sb, got, bios)
		}
		line := strings.Join(Strings(Args(Plan{Config: c, Accel: config.AccelTCG})), " ")
		for _, want := range []string{
			"-drive if=pflash,format=raw,unit=0,readonly=on,file=" + c.Firmware.Code(),
			fmt.Sprintf("-add-fd fd=%d,set=%d,opaque=%s", VarsFD, VarsFDSet, c.EFIVars()),
			"-drive if=pflash,format=raw,unit=1,file=/dev/fdset/2,auto-read-only=off ",
		} {
			if !strings.Contains(line, want) {
				t.Errorf("secureBoot=%v: %q missing from %s", sb, want, line)
			}
		}
		if strings.Contains(line, "smm=on") != sb || strings.Contains(line, "property=secure,value=on") != sb {
			t.Errorf("secureBoot=%v: SMM and the secure flash must come with Secure Boot only: %s", sb, line)
		}
	}
	if line := strings.Join(Strings(Args(Plan{Config: base(), Accel: config.AccelTCG})), " "); strings.Contains(line, "pflash") {
		t.Errorf("BIOS with a flash drive: %s", line)
	}
}

// TestAgentAfterEveryDevice: the guest agent's devices come after every other
// device but the optional watchdog, so turning GUEST_AGENT on (or a pet from
// before it) moves no device to another PCI slot, and turning WATCHDOG on
// moves no agent device: without the agent, the devices are those with it
// less its two, and the agent's are last but for the watchdog.
func TestAgentAfterEveryDevice(t *testing.T) {
	devices := func(p Plan) []string {
		var d []string
		for _, a := range Args(p) {
			if a.Flag == "-device" {
				d = append(d, a.Value)
			}
		}
		return d
	}
	agentDevs := []string{"virtio-serial-pci,id=agent-serial0", "virtserialport,chardev=" + AgentChardev + ",name=" + AgentPort}
	for _, vnc := range []bool{true, false} {
		for _, data := range []bool{true, false} {
			for _, watchdog := range []bool{false, true} {
				c := base()
				c.VNC, c.Watchdog = vnc, watchdog
				if data {
					c.DataDisks, _ = disks.Parse(`[{"name":"data","size":"1Gi"},{"name":"db","size":"1Gi","volumeMode":"Block"}]`)
				}
				with := devices(Plan{Config: c, Accel: config.AccelKVM})
				c.GuestAgent = false
				without := devices(Plan{Config: c, Accel: config.AccelKVM})
				tail := without[len(without):]
				if watchdog {
					tail = []string{"i6300esb"}
				}
				want := append(append(append([]string(nil), without[:len(without)-len(tail)]...), agentDevs...), tail...)
				if !reflect.DeepEqual(with, want) {
					t.Errorf("vnc=%v data=%v watchdog=%v: devices\n got %q\nwant %q", vnc, data, watchdog, with, want)
				}
			}
		}
	}
}

// optionKeys splits a QEMU option value as QEMU's option parser does and
// returns the key of each part: a part's name runs to its first '=' or ','
// (no '=' first: an implied key, ""), its value to the next single ',' (",,"
// is a literal comma).
func optionKeys(v string) []string {
	var keys []string
	for len(v) > 0 {
		n := strings.IndexAny(v, "=,")
		key := ""
		if n >= 0 && v[n] == '=' {
			key = v[:n]
		}
		keys = append(keys, key)
		i := max(n, 0)
		for ; i < len(v); i++ {
			if v[i] == ',' {
				if i+1 < len(v) && v[i+1] == ',' {
					i++
					continue
				}
				break
			}
		}
		if n < 0 || i >= len(v) {
			break
		}
		v = v[i+1:]
	}
	return keys
}

// TestNoOptionInjection: whatever the environment holds, it cannot add a QEMU
// option, a key to an option, or an argument: each value is either refused by
// config.FromEnv (exit 2) or gives the same flags with the same keys as the
// defaults. The values are the injection-shaped ones (commas are QEMU's option
// separator) and the odd ones that are allowed.
func TestNoOptionInjection(t *testing.T) {
	host := config.Host{NumCPU: 4, Stat: func(string) (fs.FileInfo, error) { return nil, fs.ErrNotExist }}
	shape := func(env map[string]string) (string, error) {
		m := map[string]string{"VM_NAME": "vm-0", "BERTH_RUN_DIR": "/run/berth"}
		for k, v := range env {
			m[k] = v
		}
		c, err := config.FromEnv(stage.MapEnv(m), host)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		for _, a := range Args(Plan{Config: c, Accel: config.AccelTCG}) {
			fmt.Fprintf(&b, "%s %q\n", a.Flag, optionKeys(a.Value))
		}
		return b.String(), nil
	}
	want, err := shape(nil)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string][]string{
		"VM_NAME":       {"vm,debug-threads=off", "vm,,x", "a-b-c", "0"},
		"BERTH_RUN_DIR": {"/run/berth,server=off", "/r,,x", "/r/x@y+z", "/run/b-e_r.t"},
		"DISK_DIR":      {"/d,file=/etc/shadow", "/d,,format=raw", "/d,format=raw", "/a@b/c+d"},
		"IMAGE_DIR":     {"/i,backing=x"},
		"VNC_LISTEN":    {"127.0.0.1,password=off", "127.0.0.1,,x", "::1", "[::1]", "127.0.0.2"},
		"VM_MEMORY":     {"1Gi,share=on", "1536Mi", "4194304Ki"},
		"VM_CPUS":       {"2,cores=2", "4"},
		"ACCEL":         {"tcg,thread=single"},
		"TAP":           {"tap0,vhost=on", "t.a_p-0"},
		"QEMU":          {"qemu,x", "/usr/bin/qemu-system-x86_64"},
	}
	// The second layer: should a comma reach a Config anyway, the command line
	// escapes it (",,") and it still adds nothing.
	keys := func(c config.Config) string {
		var b strings.Builder
		for _, a := range Args(Plan{Config: c, Accel: config.AccelTCG}) {
			fmt.Fprintf(&b, "%s %q\n", a.Flag, optionKeys(a.Value))
		}
		return b.String()
	}
	c := base()
	c.CPUs, c.Name = 1, "vm-0"
	c.DiskDir, c.RunDir, c.ImageDir = "/d,file=/etc/shadow", "/r,server=off,,x", "/i,backing=x"
	if got, plain := keys(c), keys(base()); got != plain {
		t.Errorf("commas in the paths of a Config change the options:\n%s\nwant\n%s", got, plain)
	}
	for name, vs := range values {
		for _, v := range vs {
			got, err := shape(map[string]string{name: v})
			if err != nil {
				if !stage.IsBadInput(err) {
					t.Errorf("%s=%q: %v, want bad input or accepted", name, v, err)
				}
				continue
			}
			if got != want {
				t.Errorf("%s=%q changes the options:\n%s\nwant\n%s", name, v, got, want)
			}
		}
	}
}
