package vmm

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/vmm/firmware"
	"github.com/berth-vm/berth/vmm/swtpm"
)

// uefiGuest builds (or finds) the UEFI test guest (ci/testguest/build-uefi.sh:
// a GPT disk with an ESP holding Debian's signed shim and GRUB, and Debian's
// signed kernel; bootloader "unsigned" puts an unsigned GRUB behind the shim)
// and makes the pet overlay on it.
func uefiGuest(t *testing.T, p *pod, bootloader string) string {
	t.Helper()
	return guestFrom(t, p, "build-uefi.sh", "TESTGUEST_UEFI_BOOTLOADER="+bootloader)
}

// efiVar is the variable the guest writes: name-GUID as efivarfs names it.
const efiVar = "BerthTest-3b0d7c1e-6a2f-4c59-9a8e-1f2d3c4b5a69"

// nvIndex is the TPM NV index the guest defines and writes (owner
// hierarchy); nvSize is its size, len("berth-") + a boot id.
const (
	nvIndex = "0x1500016"
	nvSize  = "42"
)

// firmwareUserData reports on every boot (bootcmd) what the guest's firmware
// is, the SecureBoot variable's value, efiVar's value, whether it has a TPM
// and what nvIndex holds; then, if they are not there yet, it writes efiVar
// (non-volatile, boot and runtime access: a single write, as efivarfs wants)
// and defines and writes nvIndex with tpm2-tools, each value naming this boot.
const firmwareUserData = `#cloud-config
bootcmd:
  - |
    v=/sys/firmware/efi/efivars/` + efiVar + `
    boot=berth-$(cat /proc/sys/kernel/random/boot_id)
    fw=bios; [ -d /sys/firmware/efi ] && fw=uefi
    sb=$(od -An -t u1 -j4 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c 2>/dev/null | tr -d ' ')
    val=none; [ -e $v ] && val=$(cat $v | tail -c +5)
    i=0; while [ ! -e /dev/tpmrm0 ] && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done
    export TPM2TOOLS_TCTI=device:/dev/tpmrm0
    tpm=none; nv=none
    if [ -e /dev/tpm0 ]; then
      tpm=yes
      tpm2_getcap handles-nv-index | grep -q ` + nvIndex + ` && nv=$(tpm2_nvread -C o -s ` + nvSize + ` ` + nvIndex + `)
    fi
    echo "BERTH-FW firmware=$fw secureboot=${sb:-none} var=$val tpm=$tpm nv=$nv" >/dev/ttyS0
    if [ $fw = uefi ] && [ ! -e $v ]; then
      printf '\007\000\000\000%s' $boot >/run/berth-var && cat /run/berth-var >$v && echo "BERTH-EFI-WROTE $(cat $v | tail -c +5)" >/dev/ttyS0
    fi
    if [ $tpm = yes ] && [ $nv = none ]; then
      printf %s $boot >/run/berth-nv
      tpm2_nvdefine -C o -s ` + nvSize + ` -a 'ownerread|ownerwrite' ` + nvIndex + ` >/dev/ttyS0 2>&1 &&
        tpm2_nvwrite -C o -i /run/berth-nv ` + nvIndex + ` >/dev/ttyS0 2>&1 &&
        echo "BERTH-TPM-WROTE $(tpm2_nvread -C o -s ` + nvSize + ` ` + nvIndex + `)" >/dev/ttyS0
    fi
`

// report is the guest's BERTH-FW line.
var report = regexp.MustCompile(`BERTH-FW firmware=\S+ secureboot=\S+ var=\S+ tpm=\S+ nv=\S+`)

// TestBinaryUEFI boots the UEFI test guest with FIRMWARE=uefi,
// SECURE_BOOT=true and TPM=true (TCG): vmm makes the VM's variable store
// from OVMF's Microsoft-keys template and the TPM's state directory on the
// disk volume, each with its record; the guest has /sys/firmware/efi,
// SecureBoot=1 (shim, GRUB and the kernel verified) and /dev/tpm0, writes an
// EFI variable and a TPM NV index; --check agrees with the running QEMU
// (both flash drives, the store's fd set, the TPM); after a stop (ACPI
// power-down) a new vmm keeps both, and the guest reads back what it wrote
// in the first boot; swtpm killed then ends QEMU and vmm (exit 1, naming
// swtpm), and the TPM's state stays as it was.
func TestBinaryUEFI(t *testing.T) {
	roottest.Require(t)
	needQEMU(t)
	t.Parallel() // with TestBinarySecureBootRefusesUnsigned, after the other tests: one TCG vCPU each, two cores
	p := newPod(t)
	image := uefiGuest(t, p, "signed")
	seedWith(t, p, firmwareUserData)
	p.chown(t)
	startDnsmasq(t, p)
	env := p.env("ACCEL=tcg", "VM_CPUS=1", "VM_MEMORY=768Mi", "NO_VNC=true", "SHUTDOWN_TIMEOUT=120",
		"IMAGE_DIR="+filepath.Dir(image), "FIRMWARE=uefi", "SECURE_BOOT=true", "TPM=true")
	vars, record := firmware.VarsPath(p.disk, "testvm"), firmware.RecordPath(p.disk, "testvm")
	tpmDir := swtpm.StateDir(p.disk, "testvm")

	start := time.Now()
	v := p.start(t, "boot1", env)
	v.expect(t, 600*time.Second, 0, "BERTH-FW firmware=")
	t.Logf("first boot: the guest reported its firmware %s after start", time.Since(start).Round(time.Second))
	if first := report.FindString(readFile(v.console)); first != "BERTH-FW firmware=uefi secureboot=1 var=none tpm=yes nv=none" {
		t.Errorf("first boot: the guest says %q, want UEFI with Secure Boot on, a TPM, and neither value yet", first)
	}
	v.expect(t, 60*time.Second, 0, "BERTH-EFI-WROTE ")
	v.expect(t, 60*time.Second, 0, "BERTH-TPM-WROTE ")
	console := readFile(v.console)
	wroteVar := regexp.MustCompile(`BERTH-EFI-WROTE (berth-[0-9a-f-]+)`).FindStringSubmatch(console)
	wroteNV := regexp.MustCompile(`BERTH-TPM-WROTE (berth-[0-9a-f-]+)`).FindStringSubmatch(console)
	if wroteVar == nil || wroteNV == nil {
		t.Fatalf("the guest did not say what it wrote:\n%s", tail(console, 1500))
	}
	for _, want := range []string{`msg="UEFI variable store made from OVMF's template"`, `msg="TPM state directory made: the VM's TPM starts blank"`} {
		if !strings.Contains(readFile(v.stderr), want) {
			t.Errorf("vmm did not log %s:\n%s", want, readFile(v.stderr))
		}
	}
	if c, out, errOut := p.check(t, env); c != 0 {
		t.Errorf("vmm --check against the running UEFI QEMU: exit %d\n%s%s", c, out, errOut)
	}
	v.cmd.Process.Signal(syscall.SIGTERM)
	if code := v.exit(t, 180*time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit %d; stderr:\n%s", code, readFile(v.stderr))
	}

	var rec firmware.Record
	b, err := os.ReadFile(record)
	if err != nil || json.Unmarshal(b, &rec) != nil || !rec.SecureBoot || rec.Template != firmware.SecureVarsTemplate {
		t.Errorf("the store's record %s: %s (%v)", record, b, err)
	}
	store := mustRead(t, vars)
	template := mustRead(t, filepath.Join(firmware.DefaultOVMFDir, firmware.SecureVarsTemplate))
	if fi, _ := os.Stat(vars); fi.Size() != int64(len(template)) || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != vmUID {
		t.Errorf("the store: %d bytes (template %d), mode %v, uid %d; want the template's size, 0600, the VM's uid", fi.Size(), len(template), fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Uid)
	}
	if !bytes.Contains(store, utf16("BerthTest")) {
		t.Errorf("the guest's variable is not in the store %s", vars)
	}
	var trec swtpm.Record
	if b, err := os.ReadFile(swtpm.RecordPath(p.disk, "testvm")); err != nil || json.Unmarshal(b, &trec) != nil || trec.Initialized == "" {
		t.Errorf("the TPM's record: %s (%v); want it to say the TPM was initialised", b, err)
	}
	if fi, err := os.Stat(filepath.Join(tpmDir, swtpm.StateFile)); err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != vmUID {
		t.Errorf("the TPM's state file: %v %v; want it, 0600, the VM's uid", fi, err)
	}

	v = p.start(t, "boot2", env)
	v.expect(t, 600*time.Second, 0, "BERTH-FW firmware=")
	want := "BERTH-FW firmware=uefi secureboot=1 var=" + wroteVar[1] + " tpm=yes nv=" + wroteNV[1]
	if second := report.FindString(readFile(v.console)); second != want {
		t.Errorf("after the restart the guest says %q, want %q: what it wrote survives", second, want)
	}
	for _, want := range []string{`msg="UEFI variable store kept"`, `msg="TPM state kept"`} {
		if !strings.Contains(readFile(v.stderr), want) {
			t.Errorf("vmm did not log %s:\n%s", want, readFile(v.stderr))
		}
	}
	// swtpm killed under the running guest: QEMU is ended, vmm exits 1 naming swtpm (the
	// container restarts), and the TPM's state on the volume is still there, still initialised.
	state := mustRead(t, filepath.Join(tpmDir, swtpm.StateFile))
	pid := swtpmOf(t, tpmDir)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := v.exit(t, 60*time.Second); code != 1 || !strings.Contains(readFile(v.stderr), "swtpm, the VM's TPM, ended (signal: killed) while QEMU ran") {
		t.Errorf("swtpm killed: vmm exit %d, want 1 naming swtpm; stderr:\n%s", code, readFile(v.stderr))
	}
	if after, err := os.ReadFile(filepath.Join(tpmDir, swtpm.StateFile)); err != nil || len(after) == 0 {
		t.Errorf("the TPM's state after swtpm was killed: %d bytes (%d before), %v", len(after), len(state), err)
	}
	if st, err := swtpm.Inspect(p.disk, "testvm"); err != nil || !st.Exists || st.Record.Initialized == "" {
		t.Errorf("the TPM's state after swtpm was killed: %+v, %v; want it kept as it was", st, err)
	}
	t.Logf("vmm's log, second boot:\n%s", readFile(v.stderr))

	// The setting the store was made for is kept: SECURE_BOOT=false now is refused, before QEMU.
	off := p.env("ACCEL=tcg", "VM_CPUS=1", "VM_MEMORY=768Mi", "NO_VNC=true", "IMAGE_DIR="+filepath.Dir(image), "FIRMWARE=uefi", "SECURE_BOOT=false")
	before := mustRead(t, vars)
	var stderr strings.Builder
	cmd := p.cmd(t, off)
	cmd.Stderr = &stderr
	if code := exitCode(t, cmd.Run()); code != 2 || !strings.Contains(stderr.String(), "made with SECURE_BOOT=true") {
		t.Errorf("SECURE_BOOT=false on a store made with it: exit %d, want 2 saying so:\n%s", code, stderr.String())
	}
	if after := mustRead(t, vars); !bytes.Equal(after, before) {
		t.Error("the refused run changed the store")
	}
}

// TestBinarySecureBootRefusesUnsigned: with Secure Boot on, the shim refuses
// an unsigned GRUB (the unsigned variant of the UEFI test guest): the console
// says so and no kernel starts.
func TestBinarySecureBootRefusesUnsigned(t *testing.T) {
	roottest.Require(t)
	needQEMU(t)
	t.Parallel()
	p := newPod(t)
	image := uefiGuest(t, p, "unsigned")
	seedWith(t, p, firmwareUserData)
	p.chown(t)
	env := p.env("ACCEL=tcg", "VM_CPUS=1", "VM_MEMORY=512Mi", "NO_VNC=true", "IMAGE_DIR="+filepath.Dir(image), "FIRMWARE=uefi", "SECURE_BOOT=true")
	v := p.start(t, "unsigned", env)
	v.expect(t, 300*time.Second, 0, "Security Violation", "Verification failed")
	time.Sleep(5 * time.Second)
	if c := readFile(v.console); strings.Contains(c, "Linux version") || strings.Contains(c, "BERTH-FW") {
		t.Errorf("a kernel started behind an unsigned GRUB:\n%s", tail(c, 2000))
	}
	t.Logf("console:\n%s", tail(readFile(v.console), 800))
}

// swtpmOf finds the swtpm process running on the state directory dir.
func swtpmOf(t *testing.T, dir string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.HasPrefix(b, []byte("swtpm\x00")) && !bytes.Contains(b, []byte("/swtpm\x00")) {
			continue
		}
		if bytes.Contains(b, []byte("dir="+dir+",")) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			return pid
		}
	}
	t.Fatalf("no swtpm runs on %s", dir)
	return 0
}

// utf16 is s as UTF-16LE, how the variable store holds a variable's name.
func utf16(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r), 0)
	}
	return b
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
