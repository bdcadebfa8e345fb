package vmm

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-vm/berth/common/roottest"
	"github.com/berth-vm/berth/vmm/qmp"
)

// TestBinaryLifecycle boots the test guest with Debian's generic kernel (its
// drivers include the i6300esb watchdog's) once under vmm (ON_POWEROFF=stop,
// ON_PANIC=reset, WATCHDOG=true, no READY_TCP_PORT, so only the status file
// and the lease decide readiness) and walks it through the states a VM lives
// through:
//
//  1. ready; the guest's boot_id read on the serial console;
//  2. `sudo reboot` in the guest: vmm logs the reset, probe ready fails (the
//     lease is the last boot's) until the guest takes its lease again, the
//     same QEMU (pid) runs the new boot, the boot_id is new;
//  3. QMP stop: probe ready fails naming the pause, probe live passes; cont:
//     ready again;
//  4. a kernel panic (sysrq c): pvpanic tells QEMU, vmm logs it and resets
//     the guest in the same QEMU, which boots again (a new boot_id);
//  5. a hung guest: the guest arms its watchdog and stops feeding it (one
//     write to /dev/watchdog, closed without the magic 'V', as a watchdog
//     daemon that hangs leaves it); it fires, QEMU resets the guest, vmm logs
//     the WATCHDOG event, the guest boots again in the same QEMU;
//  6. `sudo poweroff`: vmm stays without QEMU, probe ready fails saying how to
//     start it again, probe live passes, the termination log says it;
//     SIGTERM then ends vmm with exit 0.
func TestBinaryLifecycle(t *testing.T) {
	roottest.Require(t)
	needQEMU(t)
	p := newPod(t)
	image := testGuestWith(t, p, "generic")
	seedWith(t, p, serialUserData)
	p.chown(t)
	startDnsmasq(t, p)
	env := p.env("ACCEL=tcg", "VM_CPUS=2", "VM_MEMORY=1Gi", "SHUTDOWN_TIMEOUT=60", "NO_VNC=true",
		"ON_POWEROFF=stop", "ON_PANIC=reset", "WATCHDOG=true", "IMAGE_DIR="+filepath.Dir(image))
	start := time.Now()
	v, term := p.startTTY(t, "lifecycle", env)
	waitReady(t, p, env, v, 480*time.Second)
	t.Logf("1. ready %s after start", time.Since(start).Round(time.Second))
	qemu := v.qemuPid(t)
	sh := login(t, v, term)
	boots := []string{bootID(t, sh)} // every boot's boot_id, in order

	// 2. A reboot inside the guest is a reset inside the same QEMU.
	mark := time.Now()
	sh.run("sudo reboot", "")
	until(t, 180*time.Second, "vmm logs the guest's reset", func() bool {
		return strings.Contains(readFile(v.stderr), "the guest reset itself (a reboot)")
	})
	sh = bootsAgain(t, p, env, v, term, qemu, mark, "2", "`sudo reboot`", &boots)

	// 3. A pause someone asked for: not ready, but live.
	qmpDo(t, p, "stop")
	until(t, 10*time.Second, "probe ready fails while paused", func() bool {
		c, out := p.probe(t, env, "ready")
		return c == 1 && strings.Contains(out, "paused by a QMP stop")
	})
	if c, out := p.probe(t, env, "live"); c != 0 || !strings.Contains(out, "status paused") {
		t.Errorf("probe live while paused: exit %d: %s; want 0 naming the pause", c, out)
	}
	qmpDo(t, p, "cont")
	waitReady(t, p, env, v, 30*time.Second)
	t.Log("3. paused by QMP stop: not ready, live; cont: ready")

	// 4. A kernel panic: pvpanic, vmm resets the guest in the same QEMU.
	mark = time.Now()
	sh.run("sudo sh -c 'echo 1 >/proc/sys/kernel/sysrq; echo c >/proc/sysrq-trigger'", "")
	until(t, 120*time.Second, "vmm logs the panic and the reset", func() bool {
		return strings.Contains(readFile(v.stderr), "the guest's kernel panicked: resetting it")
	})
	t.Logf("4. panic seen by vmm %s after sysrq c", time.Since(mark).Round(time.Second))
	if !strings.Contains(readFile(v.console), "Kernel panic - not syncing: sysrq triggered crash") {
		t.Errorf("the console shows no kernel panic; its end:\n%s", tail(readFile(v.console), 2000))
	}
	sh = bootsAgain(t, p, env, v, term, qemu, mark, "4", "the panic", &boots)

	// 5. A hung guest: its watchdog fires, QEMU resets it in the same QEMU.
	sh.run("echo WDT-$((6*7))-$(cat /sys/class/watchdog/watchdog0/identity)", "WDT-42-i6300ESB") // the driver's name: "i6300ESB timer"
	mark = time.Now()
	// One write, then close without the magic 'V': the driver says "unexpected close, not stopping
	// watchdog" and nobody feeds it again. Its default heartbeat is 30 s.
	sh.run("sudo sh -c 'echo 1 >/dev/watchdog'", "")
	until(t, 180*time.Second, "vmm logs the watchdog firing", func() bool {
		return strings.Contains(readFile(v.stderr), "the guest's watchdog fired")
	})
	t.Logf("5. the watchdog fired %s after it was armed and left unfed", time.Since(mark).Round(time.Second))
	sh = bootsAgain(t, p, env, v, term, qemu, mark, "5", "the watchdog was armed", &boots)

	// 6. The guest powers itself off: vmm stays, without QEMU.
	mark = time.Now()
	sh.run("sudo poweroff", "")
	until(t, 120*time.Second, "vmm logs the power-off and stays", func() bool {
		return strings.Contains(readFile(v.stderr), "vmm holds no QEMU and waits for the pod's deletion")
	})
	t.Logf("6. powered off %s after `sudo poweroff`", time.Since(mark).Round(time.Second))
	select {
	case <-v.done:
		t.Fatalf("vmm exited after the guest's power-off with ON_POWEROFF=stop: %v", v.err)
	case <-time.After(3 * time.Second):
	}
	if pid := childNamed(v.cmd.Process.Pid, "qemu-system-x86"); pid != 0 {
		t.Errorf("QEMU (pid %d) still runs after the power-off", pid)
	}
	if c, out := p.probe(t, env, "ready"); c != 1 || !strings.Contains(out, "kubectl delete pod") {
		t.Errorf("probe ready when powered off: exit %d: %s; want 1 saying how to start it again", c, out)
	}
	if c, out := p.probe(t, env, "live"); c != 0 || !strings.Contains(out, "ON_POWEROFF=stop") {
		t.Errorf("probe live when powered off: exit %d: %s; want 0", c, out)
	}
	if tl := readFile(p.run + "/termination-log"); !strings.Contains(tl, "powered itself off") || !strings.Contains(tl, "kubectl delete pod") {
		t.Errorf("termination log %q does not say the guest powered off and how to start it", tl)
	}
	v.cmd.Process.Signal(syscall.SIGTERM)
	if code := v.exit(t, 10*time.Second); code != 0 {
		t.Errorf("SIGTERM when powered off: exit %d, want 0; stderr:\n%s", code, readFile(v.stderr))
	}
	t.Logf("vmm's log:\n%s", readFile(v.stderr))
}

// bootsAgain follows a reset begun at mark (step names it in the log, after
// says what began it): probe ready fails, then passes again; the same QEMU
// (pid qemu) runs the new boot, whose boot_id is none of boots' (appended to
// them). It returns the shell of a new login.
func bootsAgain(t *testing.T, p *pod, env []string, v *vmmProc, term *os.File, qemu int, mark time.Time, step, after string, boots *[]string) *serialShell {
	t.Helper()
	notReadyAfterReset(t, p, env)
	waitReady(t, p, env, v, 300*time.Second)
	t.Logf("%s. ready again %s after %s", step, time.Since(mark).Round(time.Second), after)
	if got := v.qemuPid(t); got != qemu {
		t.Errorf("after %s QEMU is pid %d, want the same QEMU (pid %d)", after, got, qemu)
	}
	sh := login(t, v, term)
	id := bootID(t, sh)
	if slices.Contains(*boots, id) {
		t.Errorf("boot_id %s after %s: not a new boot (the boots before: %v)", id, after, *boots)
	}
	*boots = append(*boots, id)
	return sh
}

// notReadyAfterReset: once the guest was reset, probe ready fails until the
// guest's new boot takes its lease: the lease file still lists the address
// (a crash releases nothing), but it was written before this boot; or the
// guest released the lease as it shut down (a reboot's ifdown).
func notReadyAfterReset(t *testing.T, p *pod, env []string) {
	t.Helper()
	var out string
	until(t, 30*time.Second, "probe ready fails after the reset", func() bool {
		var c int
		c, out = p.probe(t, env, "ready")
		return c == 1 && (strings.Contains(out, "before the guest's current boot") || strings.Contains(out, "not leased yet"))
	})
	t.Logf("after the reset: %s", strings.TrimSpace(out))
}

// waitReady polls probe ready until it passes, logging each new answer; it fails if vmm exits, or
// after bound with the last answer, dnsmasq's log and the console's end.
func waitReady(t *testing.T, p *pod, env []string, v *vmmProc, bound time.Duration) {
	t.Helper()
	var last string
	deadline := time.Now().Add(bound)
	for {
		select {
		case <-v.done:
			t.Fatalf("vmm exited: %v\n%s", v.err, readFile(v.stderr))
		default:
		}
		c, out := p.probe(t, env, "ready")
		if c == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe ready not within %s; last: %s\ndnsmasq log:\n%s\nconsole end:\n%s", bound, out,
				readFile(filepath.Join(p.work, "dnsmasq.log")), tail(readFile(v.console), 3000))
		}
		if out != last {
			t.Logf("probe ready: %s", strings.TrimSpace(out))
			last = out
		}
		time.Sleep(time.Second)
	}
}

// qmpDo runs one command on the running QEMU's qmp.sock.
func qmpDo(t *testing.T, p *pod, cmd string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := qmp.Do(ctx, p.run+"/qmp.sock", cmd, nil); err != nil {
		t.Fatalf("QMP %s: %v", cmd, err)
	}
}

// serialShell is a shell logged in on the guest's serial console.
type serialShell struct {
	t    *testing.T
	v    *vmmProc
	term *os.File
	from int
}

// login logs in on the serial console (loginOnSerial's way, retrying while
// cloud-init has not set the password) and returns the shell.
func login(t *testing.T, v *vmmProc, term *os.File) *serialShell {
	t.Helper()
	return &serialShell{t: t, v: v, term: term, from: serialLogin(t, v, term)}
}

// run types cmd and, unless want is empty, waits for want after it.
func (s *serialShell) run(cmd, want string) string {
	s.t.Helper()
	if _, err := s.term.WriteString(cmd + "\r"); err != nil {
		s.t.Fatalf("type on the console: %v", err)
	}
	if want == "" {
		return ""
	}
	_, s.from = s.v.expect(s.t, 60*time.Second, s.from, want)
	return readFile(s.v.console)[:s.from]
}

var bootIDLine = regexp.MustCompile(`BOOT-42-([0-9a-f-]{36})`)

// bootID prints the guest's boot_id on the console and reads it back (the
// typed command shows "$((6*7))", the answer "42": only the answer matches).
func bootID(t *testing.T, s *serialShell) string {
	t.Helper()
	before := s.from
	s.run("echo BOOT-$((6*7))-$(cat /proc/sys/kernel/random/boot_id)", "")
	var id string
	until(t, 60*time.Second, "the boot_id on the console", func() bool {
		c := readFile(s.v.console)
		m := bootIDLine.FindStringSubmatchIndex(c[min(before, len(c)):])
		if m == nil {
			return false
		}
		id = c[before+m[2] : before+m[3]]
		s.from = before + m[1]
		return true
	})
	t.Logf("boot_id %s", id)
	return id
}
