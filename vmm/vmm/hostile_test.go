package vmm

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/common/stage"
)

// Hostile input (issue 15): what vmm refuses before QEMU starts. A fake QEMU
// (QEMU=) records being started, the fds it got and its arguments; a refused
// run must leave no record, no qmp.sock and, for the tap, no new link.

// fakeQEMU writes a script that records its arguments and what fds 3 and 4
// are (readlink, and fd 3's tun attachment) into mark, then exits 0 (vmm
// reads that as the guest powering off).
func fakeQEMU(t *testing.T, dir, mark string) string {
	t.Helper()
	path := filepath.Join(dir, "fake-qemu")
	script := "#!/bin/sh\n{ echo \"args: $*\"; echo \"fd3: $(readlink /proc/$$/fd/3)\"; echo \"fd4: $(readlink /proc/$$/fd/4)\"; " +
		"cat /proc/$$/fdinfo/3; } >" + mark + " 2>&1\nexit 0\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// links lists the netns's links as "ifindex:name".
func links(t *testing.T, ns string) []string {
	t.Helper()
	var ls []struct {
		Index int    `json:"ifindex"`
		Name  string `json:"ifname"`
	}
	if err := json.Unmarshal([]byte(sh(t, "ip", "-n", ns, "-j", "link")), &ls); err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, l := range ls {
		s = append(s, strconv.Itoa(l.Index)+":"+l.Name)
	}
	return s
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// TestBinaryTap: vmm attaches only to the persistent tap net-setup made for
// its uid, on net-setup's bridge; anything else is exit 2 naming TAP and the
// problem, before QEMU starts, with no link created (as root too: TUNSETIFF
// would create a missing tap). The good case hands QEMU fd 3 attached to tap0
// and fd 4 the seed ISO.
func TestBinaryTap(t *testing.T) {
	roottest.Require(t)
	ip := func(p *pod, args ...string) { sh(t, "ip", append([]string{"-n", p.ns}, args...)...) }
	bridge := func(p *pod) {
		ip(p, "link", "add", "br0", "type", "bridge")
		ip(p, "link", "set", "br0", "alias", stage.BridgeAlias)
		ip(p, "link", "set", "br0", "up")
	}
	tapOf := func(p *pod, user string, alias bool, master string) {
		ip(p, "tuntap", "add", "tap0", "mode", "tap", "user", user, "group", strconv.Itoa(vmUID))
		if alias {
			ip(p, "link", "set", "tap0", "alias", stage.TapAlias)
		}
		if master != "" {
			ip(p, "link", "set", "tap0", "master", master)
		}
		ip(p, "link", "set", "tap0", "up")
	}
	me := strconv.Itoa(vmUID)
	tests := []struct {
		name  string
		uid   int // vmm runs as
		setup func(*pod)
		code  int
		want  string // in the one line on stderr and in the termination log; "" for the good case
	}{
		{"missing, vmm as root", 0, func(*pod) {}, 2, "no such network interface"},
		{"missing", vmUID, func(*pod) {}, 2, "no such network interface"},
		{"not net-setup's (no ifalias)", vmUID, func(p *pod) { bridge(p); tapOf(p, me, false, "br0") }, 2, "its ifalias is \"\""},
		{"wrong owner", vmUID, func(p *pod) { bridge(p); tapOf(p, "0", true, "br0") }, 2, "owned by uid 0, vmm runs as uid 65534"},
		{"on no bridge", vmUID, func(p *pod) { tapOf(p, me, true, "") }, 2, "on no bridge"},
		{"on a bridge not net-setup's", vmUID, func(p *pod) {
			ip(p, "link", "add", "cni0", "type", "bridge")
			tapOf(p, me, true, "cni0")
		}, 2, "bridge cni0 whose ifalias"},
		{"a veth named tap0", vmUID, func(p *pod) {
			ip(p, "link", "add", "tap0", "type", "veth", "peer", "name", "peer0")
			ip(p, "link", "set", "tap0", "alias", stage.TapAlias)
		}, 2, "is a veth, not a tap"},
		{"a bridge named tap0, vmm as root", 0, func(p *pod) { ip(p, "link", "add", "tap0", "type", "bridge") }, 2, "is a bridge, not a tap"},
		{"a tun named tap0", vmUID, func(p *pod) {
			ip(p, "tuntap", "add", "tap0", "mode", "tun", "user", me)
			ip(p, "link", "set", "tap0", "alias", stage.TapAlias)
		}, 2, "is a tun (IP-level) device"},
		{"down", vmUID, func(p *pod) {
			bridge(p)
			tapOf(p, me, true, "br0")
			ip(p, "link", "set", "tap0", "down")
		}, 2, "is down"},
		{"run dir tun node a symlink", vmUID, func(p *pod) {
			p.noDevTun = true
			p.netSetupLinks(t)
			os.Remove(filepath.Join(p.run, "tun"))
			os.Symlink("/dev/net/tun", filepath.Join(p.run, "tun"))
		}, 2, "symlink, not the tun device"},
		{"run dir tun node another device", vmUID, func(p *pod) {
			p.noDevTun = true
			p.netSetupLinks(t)
			os.Remove(filepath.Join(p.run, "tun"))
			sh(t, "mknod", filepath.Join(p.run, "tun"), "c", "1", "3")
		}, 2, "not the tun device"},
		{"net-setup's tap", vmUID, func(p *pod) { p.netSetupLinks(t) }, 0, ""},
		{"net-setup's tap, no /dev/net/tun: the run dir's node", vmUID, func(p *pod) { p.noDevTun = true; p.netSetupLinks(t) }, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newBarePod(t)
			sh(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(p.disk, "testvm.qcow2"), "64M")
			os.WriteFile(filepath.Join(p.run, "seed.iso"), nil, 0o644)
			tt.setup(p)
			p.chown(t)
			mark := filepath.Join(p.run, "qemu-started")
			env := p.env("ACCEL=tcg", "QEMU="+fakeQEMU(t, p.work, mark))
			tl := filepath.Join(p.run, "termination-log")
			before := links(t, p.ns)
			var stderr strings.Builder
			cmd := p.cmdAs(t, tt.uid, env)
			cmd.Stderr = &stderr
			code := exitCode(t, cmd.Run())
			after := links(t, p.ns)
			if !slices.Equal(before, after) {
				t.Errorf("links changed: before %q, after %q", before, after)
			}
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if tt.want == "" {
				rec := readFile(mark)
				tunOK := strings.Contains(rec, "fd3: /dev/net/tun") || strings.Contains(rec, "fd3: "+filepath.Join(p.run, "tun"))
				if p.noDevTun {
					tunOK = strings.Contains(rec, "fd3: "+filepath.Join(p.run, "tun"))
				}
				if !strings.Contains(rec, "iff:\ttap0") || !tunOK ||
					!strings.Contains(rec, "fd4: "+filepath.Join(p.run, "seed.iso")) || !strings.Contains(rec, "file=/dev/fdset/1") {
					t.Errorf("QEMU did not get the tap as fd 3 and the seed as fd 4:\n%s", rec)
				}
				return
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			if !strings.Contains(last, "bad input") || !strings.Contains(last, tt.want) {
				t.Errorf("last line %q, want bad input saying %q", last, tt.want)
			}
			if got := readFile(tl); !strings.Contains(got, tt.want) {
				t.Errorf("termination log %q, want it to say %q", got, tt.want)
			}
			if _, err := os.Stat(mark); err == nil {
				t.Errorf("QEMU was started:\n%s", readFile(mark))
			}
			if _, err := os.Lstat(filepath.Join(p.run, "qmp.sock")); err == nil {
				t.Error("qmp.sock exists: QEMU ran")
			}
		})
	}
}

// TestBinaryFiles: what another container can leave in the shared run volume,
// the disk PVC or the image cache (a symlink, a FIFO, a directory, an overlay
// pointing elsewhere) is refused with exit 2 naming the variable, without
// hanging and before QEMU starts. No tap is reached: no root needed.
func TestBinaryFiles(t *testing.T) {
	bin := buildVMM(t)
	mkfifo := func(path string) {
		if err := syscall.Mkfifo(path, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	qcow2 := func(path string, args ...string) {
		sh(t, "qemu-img", append(append([]string{"create", "-q", "-f", "qcow2"}, args...), path, "64M")...)
	}
	type dirs struct{ run, disk, images, overlay, seed string }
	tests := []struct {
		name  string
		setup func(d dirs)
		want  string // VAR=…: and a phrase
	}{
		{"seed a symlink to the pet disk", func(d dirs) { os.Remove(d.seed); os.Symlink(d.overlay, d.seed) }, "BERTH_RUN_DIR=.*a symlink"},
		{"seed a FIFO", func(d dirs) { os.Remove(d.seed); mkfifo(d.seed) }, "BERTH_RUN_DIR=.*a FIFO"},
		{"seed a directory", func(d dirs) { os.Remove(d.seed); os.Mkdir(d.seed, 0o755) }, "BERTH_RUN_DIR=.*a directory"},
		{"overlay a symlink", func(d dirs) {
			os.Rename(d.overlay, d.overlay+".real")
			os.Symlink(d.overlay+".real", d.overlay)
		}, "DISK_DIR=.*a symlink"},
		{"overlay a FIFO", func(d dirs) { os.Remove(d.overlay); mkfifo(d.overlay) }, "DISK_DIR=.*a FIFO"},
		{"overlay not qcow2", func(d dirs) { os.WriteFile(d.overlay, make([]byte, 1<<16), 0o644) }, "DISK_DIR=.*not a qcow2 file"},
		{"backing file outside IMAGE_DIR", func(d dirs) {
			other := filepath.Join(filepath.Dir(d.images), "other.qcow2")
			qcow2(other)
			os.Remove(d.overlay)
			qcow2(d.overlay, "-b", other, "-F", "qcow2")
		}, "IMAGE_DIR=.*not a file in IMAGE_DIR"},
		{"backing file relative", func(d dirs) {
			os.Remove(d.overlay)
			sh(t, "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "../images/base.qcow2", "-F", "qcow2", d.overlay, "64M")
		}, "IMAGE_DIR=.*not a file in IMAGE_DIR"},
		{"no backing format", func(d dirs) {
			// qemu-img no longer makes one: turn the backing_fmt header extension into an unknown one.
			b, _ := os.ReadFile(d.overlay)
			i := bytes.Index(b[:4096], []byte{0xe2, 0x79, 0x2a, 0xca})
			if i < 0 {
				t.Fatal("no backing_fmt extension in the overlay")
			}
			copy(b[i:], []byte{0x0b, 0xad, 0xf0, 0x0d})
			os.WriteFile(d.overlay, b, 0o644)
		}, "DISK_DIR=.*backing format \"\""},
		{"base a symlink", func(d dirs) {
			base := filepath.Join(d.images, "base.qcow2")
			os.Rename(base, base+".real")
			os.Symlink(base+".real", base)
		}, "IMAGE_DIR=.*a symlink"},
		{"base missing", func(d dirs) { os.Remove(filepath.Join(d.images, "base.qcow2")) }, "IMAGE_DIR=.*missing"},
		{"base not self-contained", func(d dirs) {
			base := filepath.Join(d.images, "base.qcow2")
			qcow2(filepath.Join(d.images, "deeper.qcow2"))
			os.Remove(base)
			qcow2(base, "-b", filepath.Join(d.images, "deeper.qcow2"), "-F", "qcow2")
		}, "IMAGE_DIR=.*not self-contained"},
		{"qmp.sock a symlink", func(d dirs) { os.Symlink("/etc/passwd", filepath.Join(d.run, "qmp.sock")) }, "BERTH_RUN_DIR=.*a symlink, not QEMU's socket"},
		{"qmp.sock a file", func(d dirs) { os.WriteFile(filepath.Join(d.run, "qmp.sock"), nil, 0o644) }, "BERTH_RUN_DIR=.*a regular file, not QEMU's socket"},
		{"qmp.sock a directory", func(d dirs) { os.Mkdir(filepath.Join(d.run, "qmp.sock"), 0o755) }, "BERTH_RUN_DIR=.*a directory, not QEMU's socket"},
		{"qga.sock a symlink", func(d dirs) { os.Symlink("/etc/passwd", filepath.Join(d.run, "qga.sock")) }, "BERTH_RUN_DIR=.*qga.sock is a symlink, not QEMU's socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			d := dirs{run: filepath.Join(dir, "run"), disk: filepath.Join(dir, "disk"), images: filepath.Join(dir, "images")}
			for _, x := range []string{d.run, d.disk, d.images} {
				os.MkdirAll(x, 0o755)
			}
			d.overlay, d.seed = filepath.Join(d.disk, "testvm.qcow2"), filepath.Join(d.run, "seed.iso")
			qcow2(filepath.Join(d.images, "base.qcow2"))
			qcow2(d.overlay, "-b", filepath.Join(d.images, "base.qcow2"), "-F", "qcow2")
			os.WriteFile(d.seed, nil, 0o644)
			tt.setup(d)
			mark := filepath.Join(dir, "qemu-started")
			tl := filepath.Join(dir, "tl")
			cmd := exec.Command(bin)
			cmd.Env = []string{"PATH=/usr/bin:/bin", "VM_NAME=testvm", "BERTH_RUN_DIR=" + d.run, "DISK_DIR=" + d.disk, "IMAGE_DIR=" + d.images,
				"TERMINATION_LOG=" + tl, "ACCEL=tcg", "TAP=nosuchtap0", "QEMU=" + fakeQEMU(t, dir, mark)}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-timeAfter(30):
				cmd.Process.Kill()
				t.Fatal("vmm hangs")
			}
			code := exitCode(t, err)
			line := strings.TrimSpace(stderr.String())
			line = line[strings.LastIndex(line, "\n")+1:]
			if code != 2 || !matches(tt.want, line) {
				t.Errorf("exit %d, last line %q; want 2 matching %q\nstderr:\n%s", code, line, tt.want, stderr.String())
			}
			if !matches(tt.want, readFile(tl)) {
				t.Errorf("termination log %q does not match %q", readFile(tl), tt.want)
			}
			if _, err := os.Stat(mark); err == nil {
				t.Error("QEMU was started")
			}
		})
	}
}

func timeAfter(secs int) <-chan time.Time { return time.After(time.Duration(secs) * time.Second) }

// matches reports whether s matches the regular expression re.
func matches(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

// TestBinaryHostileEnv: every variable vmm reads (vmm -h), set to malformed,
// out-of-range, injection-shaped (a comma: QEMU's option separator, a newline,
// "--", a space, unicode) and path-shaped values, is exit 2 with one line
// naming it and the termination log, before QEMU starts. vmm runs in a netns
// of its own with no links, so nothing on the host can be reached either way.
func TestBinaryHostileEnv(t *testing.T) {
	roottest.Require(t)
	bin := buildVMM(t)
	p := newBarePod(t)
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(p.disk, "testvm.qcow2"), "64M")
	os.WriteFile(filepath.Join(p.run, "seed.iso"), nil, 0o644)
	mark := filepath.Join(p.work, "qemu-started")
	tl := filepath.Join(p.work, "tl")
	base := map[string]string{"PATH": "/usr/bin:/bin", "VM_NAME": "testvm", "BERTH_RUN_DIR": p.run, "DISK_DIR": p.disk,
		"TERMINATION_LOG": tl, "ACCEL": "tcg", "QEMU": fakeQEMU(t, p.work, mark)}
	hostile := map[string][]string{
		"VM_NAME":           {"vm,format=raw", "vm\n", "--", "vm 0", "vmé", "../vm", "vm/0", "VM"},
		"BERTH_RUN_DIR":     {"run", p.run + ",x=y", p.run + "\n", p.run + " x", p.run + "é", p.run + "/../run", p.run + "/", "/run:x", "/" + strings.Repeat("r", 100)},
		"DISK_DIR":          {"disk", p.disk + ",file=/etc/shadow", p.disk + "\n-drive", p.disk + " x", p.disk + "ï", p.disk + "/../disk", p.disk + "/", "--"},
		"IMAGE_DIR":         {"img", "/i,x", "/i\n", "/i i", "/ï", "/i/./j", "--"},
		"QEMU":              {"qemu,x", "qemu\n", "--version", "qemu x", "qémü", "./qemu", "bin/qemu", "/usr/bin/../bin/qemu", "no-such-qemu-binary"},
		"TAP":               {"tap,0", "tap0\n", "--", "tap 0", "täp0", ".", "tap:0", "sixteen-chars-xx"},
		"VM_CPUS":           {"1,2", "1\n", "--", " 1", "１", "+1", "0x1", "0", "99999"},
		"VM_MEMORY":         {"1Gi,share=on", "1Gi\n", "--", " 1Gi", "1Gі", "1024M", "1G", "64Mi", "5Ti", "99999999999999999999Ti"},
		"ACCEL":             {"tcg,thread=single", "tcg\n", "--", " tcg", "tсg", "TCG"},
		"NO_VNC":            {"true,x", "true\n", "--", " true", "TRUE", "trüe"},
		"VNC_LISTEN":        {"127.0.0.1,password=off", "127.0.0.1\n", "--", " 127.0.0.1", "127.0.0.１", "[127.0.0.1]", "fe80::1%eth0", "unix:/tmp/s", "0.0.0.0"},
		"VNC_PASSWORD_FILE": {"pw", "/pw,x", "/pw\n", "/p w", "/pŵ", "/a/../pw", "/nonexistent"},
		"SHUTDOWN_TIMEOUT":  {"60,x", "60\n", "--", " 60", "６０", "+60", "-1", "0", "86401"},
		"VM_IP":             {"10.0.0.2,x", "10.0.0.2\n", "--", " 10.0.0.2", "10.0.0.２", "::ffff:10.0.0.2", "fe80::1"},
		"READY_TCP_PORT":    {"22,x", "22\n", "--", " 22", "２２", "+22", "0", "65536"},
		"ON_POWEROFF":       {"stop,x", "stop\n", "--", " stop", "stöp", "STOP", "halt"},
		"ON_PANIC":          {"reset,x", "reset\n", "--", " reset", "rеset", "RESET", "reboot"},
		"LOG_FORMAT":        {"json,x", "json\n", "--", "JSON"},
		"LOG_LEVEL":         {"debug,x", "debug\n", "--", "DEBUG"},
		"FIRMWARE":          {"uefi,x", "uefi\n", "--", " uefi", "uéfi", "UEFI", "efi", "ovmf"},
		"SECURE_BOOT":       {"true,x", "true\n", "--", "TRUE", "yes"},
		"OVMF_DIR":          {"ovmf", "/o,x", "/o\n", "/o o", "/ö", "/a/../o", "--"},
		"TPM":               {"true,x", "true\n", "--", "TRUE", "2.0"},
		"SWTPM":             {"swtpm,x", "swtpm\n", "--version", "swtpm x", "./swtpm", "bin/swtpm"},
		"CDROMS":            {"x.iso", `{"source":"/x.iso"}`, `[{"source":"/x.iso","bootindex":0}]`, `[{"source":"ftp://h/x.iso"}]`, `[{"source":"/x.iso","target":"../x.iso"}]`, `[{"source":"/x.iso","target":"x.iso,file=/etc/shadow"}]`, `[{"source":"/a/x.iso"},{"source":"/b/x.iso"}]`},
	}
	// run runs vmm in the netns with base's variables, over's replacing or adding to them, and
	// returns its exit code and stderr.
	run := func(over map[string]string) (int, string) {
		var argv []string
		for k, x := range base {
			if _, ok := over[k]; !ok {
				argv = append(argv, k+"="+x)
			}
		}
		for k, x := range over {
			argv = append(argv, k+"="+x)
		}
		cmd := exec.Command("ip", append(append([]string{"netns", "exec", p.ns, "env", "-i"}, argv...), bin)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		return exitCode(t, cmd.Run()), stderr.String()
	}
	for name, values := range hostile {
		for _, v := range values {
			over := map[string]string{name: v}
			if name == "VNC_PASSWORD_FILE" {
				over["VNC_LISTEN"] = "0.0.0.0"
			}
			os.Remove(tl)
			code, stderr := run(over)
			msg := strings.TrimSpace(stderr)
			if code != 2 || strings.Contains(msg, "\n") || !strings.Contains(msg, "bad input: "+name+"=") && !strings.Contains(msg, "bad input: "+name+"[") {
				t.Errorf("%s=%q: exit %d, stderr %q; want 2 and one line naming %s", name, v, code, msg, name)
			}
			if got := readFile(tl); !strings.Contains(got, name+"=") && !strings.Contains(got, name+"[") {
				t.Errorf("%s=%q: termination log %q does not name it", name, v, got)
			}
		}
	}
	// Values each fine alone that do not go together, or name what is not there.
	for _, tc := range []struct {
		env  map[string]string
		name string
	}{
		{map[string]string{"SECURE_BOOT": "true"}, "SECURE_BOOT"}, // FIRMWARE=bios
		{map[string]string{"FIRMWARE": "bios", "SECURE_BOOT": "true"}, "SECURE_BOOT"},
		{map[string]string{"FIRMWARE": "uefi", "OVMF_DIR": "/nonexistent"}, "FIRMWARE"},
		{map[string]string{"FIRMWARE": "uefi", "SECURE_BOOT": "true", "OVMF_DIR": p.work}, "FIRMWARE"},
		{map[string]string{"TPM": "true", "SWTPM": "/nonexistent/swtpm"}, "TPM"},
		{map[string]string{"TPM": "true", "SWTPM": "no-such-swtpm"}, "TPM"},
		{map[string]string{"CDROMS": `[{"source":"https://h/installer.iso"}]`}, "IMAGE_DIR"}, // not cached: image-fetch first
	} {
		if code, stderr := run(tc.env); code != 2 || !strings.Contains(stderr, "bad input: "+tc.name+"=") {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming %s", tc.env, code, strings.TrimSpace(stderr), tc.name)
		}
		if names, _ := os.ReadDir(p.disk); len(names) != 1 {
			t.Errorf("%v: the disk volume holds %d entries, want only the overlay: nothing is made before a refusal", tc.env, len(names))
		}
	}

	// The KVM probe child's variable alone does not turn vmm into the child
	// (which would run a test guest on that device and exit 0 or 1).
	if code, stderr := run(map[string]string{"BERTH_KVM_PROBE_CHILD": "/dev/null", "VM_CPUS": "0"}); code != 2 || !strings.Contains(stderr, "VM_CPUS=") {
		t.Errorf("BERTH_KVM_PROBE_CHILD set: exit %d, stderr %q; want 2 naming VM_CPUS", code, stderr)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Errorf("QEMU was started:\n%s", readFile(mark))
	}
}
