package charttest

import "testing"

// TestFirmware: firmware, secureBoot and tpm reach vmm as FIRMWARE,
// SECURE_BOOT and TPM (defaults bios, false and false), per VM, vmDefaults
// included; secureBoot without uefi is refused, named, as are values outside
// the schema's.
func TestFirmware(t *testing.T) {
	r := render(t, `vmDefaults:
  firmware: uefi
`+oneVM[1:]+`
    secureBoot: true
    tpm: true
  vm2:
    image:
      source: http://images.example/other.qcow2
  vm3:
    image:
      source: http://images.example/other.qcow2
    firmware: bios
    tpm: true
`)
	for _, tc := range []struct{ vm, firmware, secureBoot, tpm string }{
		{"vm1", "uefi", "true", "true"},
		{"vm2", "uefi", "false", "false"},
		{"vm3", "bios", "false", "true"},
	} {
		e := env(container(t, sts(t, r, tc.vm), "vm"))
		if e["FIRMWARE"] != tc.firmware || e["SECURE_BOOT"] != tc.secureBoot || e["TPM"] != tc.tpm {
			t.Errorf("%s: FIRMWARE=%q SECURE_BOOT=%q TPM=%q, want %q %q %q", tc.vm, e["FIRMWARE"], e["SECURE_BOOT"], e["TPM"], tc.firmware, tc.secureBoot, tc.tpm)
		}
	}
	if e := env(container(t, sts(t, render(t, oneVM), "vm1"), "vm")); e["FIRMWARE"] != "bios" || e["SECURE_BOOT"] != "false" || e["TPM"] != "false" {
		t.Errorf("defaults: FIRMWARE=%q SECURE_BOOT=%q TPM=%q, want bios false false", e["FIRMWARE"], e["SECURE_BOOT"], e["TPM"])
	}
	c := load(t)
	for _, bad := range []struct{ values, msg string }{
		{"    secureBoot: true\n", "vms.vm1.secureBoot needs firmware: uefi (it is bios)"},
		{"    firmware: bios\n    secureBoot: true\n", "vms.vm1.secureBoot needs firmware: uefi"},
		{"    firmware: efi\n", "firmware"},
		{"    firmware: UEFI\n", "firmware"},
		{"    firmware: uefi\n    secureBoot: \"true\"\n", "secureBoot"},
		{"    tpm: 1\n", "tpm"},
	} {
		requireRefused(t, c, oneVM+bad.values, bad.msg)
	}
}
