package qemu

import (
	"strings"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/golden"
	"github.com/berth-vm/berth/vmm/config"
)

func base() config.Config {
	return config.Config{
		Name: "vm-0", RunDir: "/run/berth", DiskDir: "/var/lib/berth/disk", ImageDir: "/var/lib/berth/images",
		QEMU: "qemu-system-x86_64", CPUs: 2, Memory: 1 << 30, Accel: config.AccelAuto, Tap: "tap0",
		VNC: true, VNCListen: "127.0.0.1", ShutdownTimeout: 60 * time.Second,
	}
}

// TestArgsGolden pins the whole command line (and the reason for every option)
// for a few configurations. Update with: go test ./qemu -update
func TestArgsGolden(t *testing.T) {
	tests := []struct {
		name string
		plan func() Plan
	}{
		{"tcg-default", func() Plan { return Plan{Config: base(), Accel: config.AccelTCG} }},
		{"kvm-vhost-vnc-password", func() Plan {
			c := base()
			c.VNCListen, c.VNCPasswordFile, c.CPUs, c.Memory = "0.0.0.0", "/etc/berth/vnc", 4, 4<<30
			return Plan{Config: c, Accel: config.AccelKVM, Vhost: true, VNCPassword: true}
		}},
		{"no-vnc", func() Plan {
			c := base()
			c.VNC, c.CPUs, c.Memory = false, 1, 128<<20
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
