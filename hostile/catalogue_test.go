package hostile

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseHelpVars(t *testing.T) {
	help := "Usage: x [flags]\n\nFlags:\n  --dry-run   print\n\nEnvironment:\n" +
		"  VM_IP                the VM's address (default 192.168.254.2)\n" +
		"  NEW_VAR              added later\n" +
		"  TERMINATION_LOG      file (default /dev/termination-log)\n\nExit codes: 0 done.\n"
	if got, want := ParseHelpVars(help), []string{"VM_IP", "NEW_VAR", "TERMINATION_LOG"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ParseHelpVars = %v, want %v", got, want)
	}
	if got := ParseHelpVars("Usage: x\n\nFlags:\n  --check  c\n"); len(got) != 0 {
		t.Errorf("no Environment section: got %v", got)
	}
	usage := "usage: vmm probe ready|live\n  ready: dnsmasq leased VM_IP (and, with READY_TCP_PORT, ...)\n  live: on $BERTH_RUN_DIR/qmp.sock, VM_IP again\n"
	if got, want := ParseUsageVars(usage), []string{"VM_IP", "READY_TCP_PORT", "BERTH_RUN_DIR"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ParseUsageVars = %v, want %v", got, want)
	}
}

func TestCatalogue(t *testing.T) {
	seen := map[string]bool{}
	ctx := Ctx{Valid: "br0", Root: "/sandbox"}
	for _, c := range Classes {
		if seen[c.Name] {
			t.Errorf("class %q twice", c.Name)
		}
		seen[c.Name] = true
		v := c.Value(ctx)
		if strings.ContainsRune(v, 0) {
			t.Errorf("class %q: a NUL cannot be passed in the environment", c.Name)
		}
		if hasKind(c.Kinds, KindDir) || hasKind(c.Kinds, KindFile) {
			if strings.HasPrefix(v, "/") && !strings.HasPrefix(v, ctx.Root) && !strings.HasPrefix(v, "/proc/self/") && v != "/dev/zero" {
				t.Errorf("path class %q names %q outside the sandbox", c.Name, v)
			}
		}
	}
	// Every kind gets the string classes and more; an unknown variable the string classes.
	for _, k := range []Kind{KindIP, KindBool, KindEnum, KindIfName, KindID, KindCount, KindSize, KindName, KindHex, KindText, KindFile, KindDir, KindOut, KindSource, KindExec} {
		if n := len(For("X", k)); n < len(For("X", KindString)) {
			t.Errorf("kind %s: %d classes, fewer than the string classes", k, n)
		}
	}
	if KindOf("any", "NEVER_HEARD_OF") != KindString {
		t.Error("an unknown variable must get KindString")
	}
	if len(For("NEVER_HEARD_OF", KindString)) < 20 {
		t.Error("too few string classes")
	}
	if !MayName("VM_IP", "VM_GW") || MayName("VM_IP", "TAP") {
		t.Error("MayName")
	}
	if ExitOneReason("vmm probe live", "VM_IP", "empty") == "" || ExitOneReason("vmm", "VM_IP", "empty") != "" {
		t.Error("ExitOneReason")
	}
	if !MayWrite("image-fetch", "images/x") || MayWrite("image-fetch", PetDisk) || MayWrite("seed-iso", Canary) {
		t.Error("MayWrite")
	}
}

func TestQemuShape(t *testing.T) {
	valid := qemuShape("-drive\nif=none,id=disk0,file=/d/pet.qcow2,format=qcow2\n-qmp\nunix:/r/qmp.sock,server=on,wait=off\n")
	escaped := qemuShape("-drive\nif=none,id=disk0,file=/d,,file=x/pet.qcow2,format=qcow2\n-qmp\nunix:/r/qmp.sock,server=on,wait=off\n")
	injected := qemuShape("-drive\nif=none,id=disk0,file=/d,file=/etc/passwd/pet.qcow2,format=qcow2\n-qmp\nunix:/r/qmp.sock,server=on,wait=off\n")
	if !reflect.DeepEqual(valid, escaped) {
		t.Errorf("an escaped comma changes the shape: %v vs %v", valid, escaped)
	}
	if reflect.DeepEqual(valid, injected) {
		t.Errorf("an injected option does not change the shape: %v", injected)
	}
}

func hasKind(ks []Kind, k Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}
