package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/stage"
	"github.com/berth-vm/berth/vmm/firmware"
)

// fakeHost has 4 CPUs and no files.
func fakeHost() Host {
	return Host{NumCPU: 4, Stat: func(p string) (fs.FileInfo, error) {
		return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
	}}
}

func goodEnv() map[string]string {
	return map[string]string{"VM_NAME": "vm-0", "BERTH_RUN_DIR": "/run/berth"}
}

func TestDefaults(t *testing.T) {
	c, err := FromEnv(stage.MapEnv(goodEnv()), fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Name: "vm-0", RunDir: "/run/berth", DiskDir: "/var/lib/berth/disk", ImageDir: "/var/lib/berth/images",
		QEMU: "qemu-system-x86_64", CPUs: 1, Memory: 1 << 30, Accel: "auto", Tap: "tap0",
		VNC: true, VNCListen: "127.0.0.1", ShutdownTimeout: 60 * time.Second, VMIP: c.VMIP,
		OnPoweroff: PoweroffRestart, OnPanic: PanicReset, GuestAgent: true, ReadyWhen: ReadyLease,
		Firmware: firmware.Spec{Kind: firmware.BIOS, OVMFDir: "/usr/share/OVMF"}, SWTPM: "swtpm",
	}
	want.DataDiskDir = "/var/lib/berth/disks"
	if !reflect.DeepEqual(c, want) || c.VMIP.String() != "192.168.254.2" {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if c.Overlay() != "/var/lib/berth/disk/vm-0.qcow2" || c.SeedISO() != "/run/berth/seed.iso" || c.QMPSocket() != "/run/berth/qmp.sock" ||
		c.AgentSocket() != "/run/berth/qga.sock" {
		t.Errorf("paths: %s %s %s %s", c.Overlay(), c.SeedISO(), c.QMPSocket(), c.AgentSocket())
	}
}

func TestFirmware(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want firmware.Spec
	}{
		{map[string]string{"FIRMWARE": "uefi"}, firmware.Spec{Kind: firmware.UEFI, OVMFDir: "/usr/share/OVMF"}},
		{map[string]string{"FIRMWARE": "uefi", "SECURE_BOOT": "true", "OVMF_DIR": "/opt/ovmf"}, firmware.Spec{Kind: firmware.UEFI, SecureBoot: true, OVMFDir: "/opt/ovmf"}},
		{map[string]string{"FIRMWARE": "bios", "SECURE_BOOT": "false"}, firmware.Spec{Kind: firmware.BIOS, OVMFDir: "/usr/share/OVMF"}},
	} {
		env := goodEnv()
		for k, v := range tt.env {
			env[k] = v
		}
		c, err := FromEnv(stage.MapEnv(env), fakeHost())
		if err != nil || c.Firmware != tt.want {
			t.Errorf("%v: %+v, %v; want %+v", tt.env, c.Firmware, err, tt.want)
		}
		if c.EFIVars() != "/var/lib/berth/disk/vm-0.efivars.fd" {
			t.Errorf("EFIVars %s", c.EFIVars())
		}
	}
}

func TestDataDisks(t *testing.T) {
	env := goodEnv()
	env["DATA_DISKS"] = `[{"name":"data","size":"10Gi"},{"name":"db","size":"1Gi","volumeMode":"Block"}]`
	env["DATA_DISK_DIR"] = "/disks"
	env["DISK_SIZE"] = "20Gi"
	c, err := FromEnv(stage.MapEnv(env), fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	if c.DiskSize != 20<<30 || c.DataDiskDir != "/disks" || len(c.DataDisks) != 2 || c.DataDisksText != env["DATA_DISKS"] {
		t.Fatalf("got %+v", c)
	}
	if got := c.DataDisks[0].Path(c.DataDiskDir); got != "/disks/data/data.qcow2" {
		t.Errorf("data's path = %s", got)
	}
	if got := c.DataDisks[1].Path(c.DataDiskDir); got != "/dev/berth/db" || c.DataDisks[1].Format != "raw" {
		t.Errorf("db = %+v at %s", c.DataDisks[1], got)
	}
}

// TestReadyWhen: READY_WHEN with what each choice needs.
func TestReadyWhen(t *testing.T) {
	tests := []struct {
		env       map[string]string
		want      string
		wantAgent bool
	}{
		{map[string]string{}, ReadyLease, true},
		{map[string]string{"READY_TCP_PORT": "22"}, ReadyLease, true}, // the lease and the port: as before READY_WHEN
		{map[string]string{"READY_WHEN": "tcp", "READY_TCP_PORT": "22"}, ReadyTCP, true},
		{map[string]string{"READY_WHEN": "agent"}, ReadyAgent, true},
		{map[string]string{"READY_WHEN": "lease", "GUEST_AGENT": "false"}, ReadyLease, false},
	}
	for _, tt := range tests {
		env := goodEnv()
		for k, v := range tt.env {
			env[k] = v
		}
		c, err := FromEnv(stage.MapEnv(env), fakeHost())
		if err != nil || c.ReadyWhen != tt.want || c.GuestAgent != tt.wantAgent {
			t.Errorf("%v: ReadyWhen %q GuestAgent %v (%v), want %q %v", tt.env, c.ReadyWhen, c.GuestAgent, err, tt.want, tt.wantAgent)
		}
	}
}

func TestGoodValues(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	env := goodEnv()
	for k, v := range map[string]string{"VM_CPUS": "4", "VM_MEMORY": "1536Mi", "ACCEL": "tcg", "NO_VNC": "false",
		"VNC_LISTEN": "0.0.0.0", "VNC_PASSWORD_FILE": pw, "SHUTDOWN_TIMEOUT": "5", "READY_TCP_PORT": "22", "VM_IP": "10.0.0.2"} {
		env[k] = v
	}
	c, err := FromEnv(stage.MapEnv(env), Host{NumCPU: 4, Stat: os.Stat})
	if err != nil {
		t.Fatal(err)
	}
	if c.CPUs != 4 || c.Memory != 1536<<20 || c.Accel != "tcg" || !c.VNC || c.VNCListen != "0.0.0.0" ||
		c.ShutdownTimeout != 5*time.Second || c.ReadyTCPPort != 22 || c.VMIP.String() != "10.0.0.2" {
		t.Errorf("got %+v", c)
	}
	if p, err := VNCPassword(pw); err != nil || p != "secret" {
		t.Errorf("VNCPassword = %q, %v", p, err)
	}
}

// TestBadInput lists every bad input vmm refuses with exit 2, each naming its variable.
func TestBadInput(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string // the variable the message must name
	}{
		{map[string]string{"VM_CPUS": "0"}, "VM_CPUS"},
		{map[string]string{"VM_CPUS": "-1"}, "VM_CPUS"},
		{map[string]string{"VM_CPUS": "two"}, "VM_CPUS"},
		{map[string]string{"VM_CPUS": "1.5"}, "VM_CPUS"},
		{map[string]string{"VM_CPUS": "5"}, "VM_CPUS"}, // the fake host has 4
		{map[string]string{"VM_MEMORY": "lots"}, "VM_MEMORY"},
		{map[string]string{"VM_MEMORY": "1g"}, "VM_MEMORY"},
		{map[string]string{"VM_MEMORY": "127Mi"}, "VM_MEMORY"},
		{map[string]string{"VM_MEMORY": "0"}, "VM_MEMORY"},
		{map[string]string{"VM_MEMORY": "134217729"}, "VM_MEMORY"}, // not whole MiB
		{map[string]string{"VM_MEMORY": "5Ti"}, "VM_MEMORY"},
		{map[string]string{"ACCEL": "hvf"}, "ACCEL"},
		{map[string]string{"ACCEL": "KVM"}, "ACCEL"},
		{map[string]string{"NO_VNC": "maybe"}, "NO_VNC"},
		{map[string]string{"ON_POWEROFF": "halt"}, "ON_POWEROFF"},
		{map[string]string{"ON_POWEROFF": "Stop"}, "ON_POWEROFF"},
		{map[string]string{"ON_PANIC": "reboot"}, "ON_PANIC"},
		{map[string]string{"ON_PANIC": "restart "}, "ON_PANIC"},
		{map[string]string{"WATCHDOG": "reset"}, "WATCHDOG"},
		{map[string]string{"FIRMWARE": "efi"}, "FIRMWARE"},
		{map[string]string{"FIRMWARE": "UEFI"}, "FIRMWARE"},
		{map[string]string{"SECURE_BOOT": "true"}, "SECURE_BOOT"}, // FIRMWARE=bios
		{map[string]string{"SECURE_BOOT": "true", "FIRMWARE": "bios"}, "SECURE_BOOT"},
		{map[string]string{"SECURE_BOOT": "enabled", "FIRMWARE": "uefi"}, "SECURE_BOOT"},
		{map[string]string{"OVMF_DIR": "OVMF", "FIRMWARE": "uefi"}, "OVMF_DIR"},
		{map[string]string{"TPM": "2.0"}, "TPM"},
		{map[string]string{"SWTPM": "bin/swtpm", "TPM": "true"}, "SWTPM"},
		{map[string]string{"VNC_LISTEN": "0.0.0.0"}, "VNC_LISTEN"}, // no password file
		{map[string]string{"VNC_LISTEN": "10.1.2.3"}, "VNC_LISTEN"},
		{map[string]string{"VNC_LISTEN": "localhost"}, "VNC_LISTEN"},
		{map[string]string{"VNC_LISTEN": "0.0.0.0", "VNC_PASSWORD_FILE": "/nonexistent"}, "VNC_PASSWORD_FILE"},
		{map[string]string{"SHUTDOWN_TIMEOUT": "0"}, "SHUTDOWN_TIMEOUT"},
		{map[string]string{"SHUTDOWN_TIMEOUT": "1m"}, "SHUTDOWN_TIMEOUT"},
		{map[string]string{"VM_IP": "fe80::1"}, "VM_IP"},
		{map[string]string{"READY_TCP_PORT": "70000"}, "READY_TCP_PORT"},
		{map[string]string{"GUEST_AGENT": "maybe"}, "GUEST_AGENT"},
		{map[string]string{"READY_WHEN": "ssh"}, "READY_WHEN"},
		{map[string]string{"READY_WHEN": "tcp"}, "READY_WHEN"}, // no READY_TCP_PORT
		{map[string]string{"READY_WHEN": "agent", "GUEST_AGENT": "false"}, "READY_WHEN"},
		{map[string]string{"TAP": "a/b"}, "TAP"},
		{map[string]string{"TAP": "sixteen-chars-xx"}, "TAP"},
		{map[string]string{"VM_NAME": "Bad_Name"}, "VM_NAME"},
		{map[string]string{"DISK_SIZE": "10G"}, "DISK_SIZE"},
		{map[string]string{"DISK_SIZE": "0"}, "DISK_SIZE"},
		{map[string]string{"DISK_SIZE": "1000"}, "DISK_SIZE"},
		{map[string]string{"DISK_SIZE": "4096Ti"}, "DISK_SIZE"},
		{map[string]string{"DATA_DISKS": `[{"name":"data"}]`}, "DATA_DISKS"},
		{map[string]string{"DATA_DISKS": `[{"name":"root","size":"1Gi"}]`}, "DATA_DISKS"},
		{map[string]string{"DATA_DISKS": `{"name":"a","size":"1Gi"}`}, "DATA_DISKS"},
	}
	// Hostile shapes (issue 15): every variable, with a comma (QEMU's option
	// separator), a newline, "--", a space, unicode and path-shaped values.
	// None may be accepted, trimmed or passed on.
	hostile := map[string][]string{
		"VM_NAME":           {"vm,format=raw", "vm\n", "--", "vm 0", "vmé", "../vm", "vm/0"},
		"BERTH_RUN_DIR":     {"run", "/run/berth,x=y", "/run/berth\n", "/run/ berth", "/run/bérth", "/run/../etc", "/run/berth/", "//run", "/run:x", "/" + strings.Repeat("r", 100)},
		"DISK_DIR":          {"disk", "/d,file=/etc/shadow", "/d\n-drive", "/d d", "/dïsk", "/d/../e", "/d/", "-d"},
		"IMAGE_DIR":         {"img", "/i,x", "/i\n", "/i i", "/ï", "/i/./j", "--"},
		"QEMU":              {"qemu,x", "qemu\n", "--version", "qemu x", "qémü", "./qemu", "bin/qemu", "/usr/bin/../bin/qemu"},
		"TAP":               {"tap,0", "tap0\n", "--", "tap 0", "täp0", ".", "..", "tap:0"},
		"VM_CPUS":           {"1,2", "1\n", "--", " 1", "１", "+1", "0x1", "/1", "99999999999999999999"},
		"VM_MEMORY":         {"1Gi,share=on", "1Gi\n", "--", " 1Gi", "1Gі", "1024M", "1G", "/1Gi", "99999999999999999999Ti"},
		"ACCEL":             {"tcg,thread=single", "tcg\n", "--", " tcg", "tсg", "/tcg"},
		"NO_VNC":            {"true,x", "true\n", "--", " true", "TRUE", "trüe", "/true"},
		"VNC_LISTEN":        {"127.0.0.1,password=off", "127.0.0.1\n", "--", " 127.0.0.1", "127.0.0.１", "[127.0.0.1]", "[::1", "fe80::1%eth0", "/tmp/vnc.sock", "unix:/tmp/s"},
		"VNC_PASSWORD_FILE": {"pw", "/pw,x", "/pw\n", "/p w", "/pŵ", "/a/../pw"},
		"SHUTDOWN_TIMEOUT":  {"60,x", "60\n", "--", " 60", "６０", "+60", "-1", "86401"},
		"VM_IP":             {"10.0.0.2,x", "10.0.0.2\n", "--", " 10.0.0.2", "10.0.0.２", "::ffff:10.0.0.2", "/10.0.0.2"},
		"READY_TCP_PORT":    {"22,x", "22\n", "--", " 22", "２２", "+22", "0"},
		"METRICS_PORT":      {"19100,x", "19100\n", "--", " 19100", "１９１００", "+19100", "0", "5900", "1023", "65536"},
		"DISK_SIZE":         {"1Gi,x", "1Gi\n", "--", " 1Gi", "1Gі", "/1Gi"},
		"ON_POWEROFF":       {"stop,x", "stop\n", "--", " stop", "stöp", "STOP", "/stop"},
		"GUEST_AGENT":       {"true,x", "true\n", "--", " true", "TRUE", "trüe", "/true"},
		"READY_WHEN":        {"lease,x", "lease\n", "--", " lease", "lеase", "LEASE", "/lease"},
		"ON_PANIC":          {"reset,x", "reset\n", "--", " reset", "rеset", "RESET", "/reset"},
		"WATCHDOG":          {"true,x", "true\n", "--", " true", "TRUE", "trüe", "/true"},
		"FIRMWARE":          {"uefi,x", "uefi\n", "--", " uefi", "uеfi", "UEFI", "/uefi"},
		"SECURE_BOOT":       {"true,x", "true\n", "--", " true", "TRUE", "trüe", "/true"},
		"OVMF_DIR":          {"ovmf", "/o,file=/etc/shadow", "/o\n", "/o o", "/övmf", "/o/../p", "/o/", "-o"},
		"TPM":               {"true,x", "true\n", "--", " true", "TRUE", "trüe", "/true"},
		"SWTPM":             {"swtpm,x", "swtpm\n", "--version", "swtpm x", "swtpmé", "./swtpm", "bin/swtpm", "/usr/bin/../bin/swtpm"},
		"DATA_DISK_DIR":     {"disks", "/d,file=/etc/shadow", "/d\n-drive", "/d d", "/dïsk", "/d/../e", "/d/", "-d"},
		"DATA_DISKS":        {`[{"name":"d,file=/etc/shadow","size":"1Gi"}]`, `[{"name":"d","size":"1Gi","cache":"none,aio=io_uring"}]`, "--", `[{"name":"d\n","size":"1Gi"}]`},
	}
	for name, values := range hostile {
		for _, v := range values {
			env := map[string]string{name: v}
			if name == "VNC_PASSWORD_FILE" {
				env["VNC_LISTEN"] = "0.0.0.0"
			}
			tests = append(tests, struct {
				env  map[string]string
				want string
			}{env, name})
		}
	}
	for _, tt := range tests {
		env := goodEnv()
		for k, v := range tt.env {
			env[k] = v
		}
		_, err := FromEnv(stage.MapEnv(env), fakeHost())
		if !stage.IsBadInput(err) {
			t.Errorf("%v: err = %v, want bad input", tt.env, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.want+"=") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: message %q must be one line starting with %s=", tt.env, err, tt.want)
		}
	}
}

// TestCheckFiles: a missing overlay names image-fetch, a missing seed names seed-iso.
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	c := Config{Name: "vm-0", RunDir: filepath.Join(dir, "run"), DiskDir: filepath.Join(dir, "disk")}
	os.MkdirAll(c.RunDir, 0o755)
	os.MkdirAll(c.DiskDir, 0o755)
	err := CheckFiles(c)
	if !stage.IsBadInput(err) || !strings.Contains(err.Error(), "image-fetch") {
		t.Errorf("no overlay: err = %v, want bad input naming image-fetch", err)
	}
	os.WriteFile(c.Overlay(), nil, 0o644)
	err = CheckFiles(c)
	if !stage.IsBadInput(err) || !strings.Contains(err.Error(), "seed-iso") {
		t.Errorf("no seed: err = %v, want bad input naming seed-iso", err)
	}
	os.Mkdir(c.SeedISO(), 0o755) // a directory is not a seed
	if err := CheckFiles(c); !stage.IsBadInput(err) {
		t.Errorf("seed is a directory: err = %v, want bad input", err)
	}
	os.Remove(c.SeedISO())
	os.WriteFile(c.SeedISO(), nil, 0o644)
	if err := CheckFiles(c); err != nil {
		t.Errorf("both present: %v", err)
	}
	// Symlinks in the shared volumes are refused, not followed: a seed that is
	// a link to the pet disk must not become the CD-ROM, nor a link the disk.
	os.Remove(c.SeedISO())
	os.Symlink(c.Overlay(), c.SeedISO())
	if err := CheckFiles(c); !stage.IsBadInput(err) || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("seed is a symlink to the overlay: err = %v, want bad input naming the symlink", err)
	}
	os.Remove(c.SeedISO())
	os.WriteFile(c.SeedISO(), nil, 0o644)
	real := filepath.Join(dir, "elsewhere.qcow2")
	os.Rename(c.Overlay(), real)
	os.Symlink(real, c.Overlay())
	if err := CheckFiles(c); !stage.IsBadInput(err) || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("overlay is a symlink: err = %v, want bad input naming the symlink", err)
	}
}

// TestMAC: stable (pinned values), locally administered, unicast, distinct per name.
func TestMAC(t *testing.T) {
	pinned := map[string]string{
		"vm-0":        "52:54:6c:24:6e:96",
		"berth-local": "52:54:2f:66:76:20",
	}
	for name, want := range pinned {
		if got := MAC(name).String(); got != want {
			t.Errorf("MAC(%q) = %s, want %s: the MAC must never change for a name", name, got, want)
		}
	}
	seen := map[string]string{}
	for i := 0; i < 1000; i++ {
		name := "vm-" + strconv.Itoa(i)
		m := MAC(name)
		if m[0]&0x02 == 0 || m[0]&0x01 != 0 {
			t.Fatalf("MAC(%q) = %s: want locally administered unicast", name, m)
		}
		if MAC(name).String() != m.String() {
			t.Fatalf("MAC(%q) not stable", name)
		}
		if other, dup := seen[m.String()]; dup {
			t.Errorf("MAC(%q) = MAC(%q) = %s", name, other, m)
		}
		seen[m.String()] = name
	}
}

func FuzzFromEnv(f *testing.F) {
	f.Add("2", "1Gi", "auto", "127.0.0.1", "60")
	f.Add("0", "1g", "x", "::1", "-1")
	f.Fuzz(func(t *testing.T, cpus, mem, accel, vnc, timeout string) {
		env := goodEnv()
		env["VM_CPUS"], env["VM_MEMORY"], env["ACCEL"], env["VNC_LISTEN"], env["SHUTDOWN_TIMEOUT"] = cpus, mem, accel, vnc, timeout
		c, err := FromEnv(stage.MapEnv(env), fakeHost())
		if err != nil {
			if !stage.IsBadInput(err) {
				t.Fatalf("error that is not bad input: %v", err)
			}
			return
		}
		if c.CPUs < 1 || c.CPUs > 4 || c.Memory < MinMemory || c.Memory%(1<<20) != 0 || c.ShutdownTimeout <= 0 {
			t.Fatalf("accepted out-of-range config %+v", c)
		}
	})
}
