package charttest

import (
	"strings"
	"testing"
)

// TestRunningAndPowerValues: running false scales the VM's StatefulSet to 0
// (its PVC stays rendered: nothing is deleted), true (the default) to 1; one
// VM's value does not leak into another's; onPoweroff and onPanic reach vmm
// as ON_POWEROFF and ON_PANIC, defaults restart and reset; watchdog as
// WATCHDOG, default false.
func TestRunningAndPowerValues(t *testing.T) {
	r := render(t, oneVM+`
    running: false
    onPoweroff: stop
    onPanic: restart
    watchdog: true
  vm2:
    image:
      source: http://images.example/other.qcow2
`)
	for _, tc := range []struct {
		vm                            string
		replicas                      int32
		onPoweroff, onPanic, watchdog string
	}{
		{"vm1", 0, "stop", "restart", "true"},
		{"vm2", 1, "restart", "reset", "false"},
	} {
		s := sts(t, r, tc.vm)
		if *s.Spec.Replicas != tc.replicas {
			t.Errorf("%s: replicas %d, want %d", tc.vm, *s.Spec.Replicas, tc.replicas)
		}
		e := env(container(t, s, "vm"))
		if e["ON_POWEROFF"] != tc.onPoweroff || e["ON_PANIC"] != tc.onPanic || e["WATCHDOG"] != tc.watchdog {
			t.Errorf("%s: ON_POWEROFF=%q ON_PANIC=%q WATCHDOG=%q, want %q %q %q", tc.vm, e["ON_POWEROFF"], e["ON_PANIC"], e["WATCHDOG"], tc.onPoweroff, tc.onPanic, tc.watchdog)
		}
	}
	if !hasKind(r, "PersistentVolumeClaim/disk-rel-vm1-0") {
		t.Errorf("running: false renders no PVC for vm1's disk: %v", r.Kinds())
	}
	// vmDefaults.running: false stops every VM that does not say otherwise.
	r = render(t, "vmDefaults:\n  running: false\n"+oneVM+"    running: true\n  vm2:\n    image:\n      source: http://images.example/other.qcow2\n")
	if *sts(t, r, "vm1").Spec.Replicas != 1 || *sts(t, r, "vm2").Spec.Replicas != 0 {
		t.Errorf("vmDefaults.running false, vm1 running true: replicas %d and %d, want 1 and 0",
			*sts(t, r, "vm1").Spec.Replicas, *sts(t, r, "vm2").Spec.Replicas)
	}
	c := load(t)
	for _, bad := range []string{"    onPoweroff: halt\n", "    onPanic: reboot\n", "    running: \"no\"\n", "    onPoweroff: Stop\n"} {
		requireRefused(t, c, oneVM+bad, "")
	}
}

func hasKind(r *Rendered, kind string) bool {
	for _, k := range r.Kinds() {
		if k == kind {
			return true
		}
	}
	return false
}

// TestNotesStoppedVM: NOTES says a stopped VM is stopped and how to start it,
// and with onPoweroff: stop how to start a guest that powered off.
func TestNotesStoppedVM(t *testing.T) {
	r := render(t, oneVM+"    running: false\n    onPoweroff: stop\n")
	for _, want := range []string{"--set vms.vm1.running=true", "delete pod rel-vm1-0"} {
		if !strings.Contains(r.Notes, want) {
			t.Errorf("NOTES lacks %q:\n%s", want, r.Notes)
		}
	}
	if r := render(t, oneVM); strings.Contains(r.Notes, "running is false") || strings.Contains(r.Notes, "onPoweroff: stop") {
		t.Errorf("NOTES of a running VM speaks of a stopped one:\n%s", r.Notes)
	}
}
